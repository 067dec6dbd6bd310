/* /proc/net table lines and /proc/PID/stat and status parsing, on the
 * kernel's own formats and on hostile lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/proc_pid.h"
#include "lib/procnet.h"

static void parses_a_tcp_listener(void **state)
{
	(void)state;
	struct procnet_socket s;
	char a[46];
	assert_int_equal(procnet_parse_line("   0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 "
					    "00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n",
					    PROCNET_TCP, &s),
			 0);
	procnet_format_address(&s, false, a);
	assert_string_equal(a, "127.0.0.1");
	assert_int_equal(s.lport, 631);
	assert_int_equal(s.state, PROCNET_LISTEN);
	assert_string_equal(procnet_state_name(s.state), "LISTEN");
	assert_int_equal(s.inode, 12345);
	assert_int_equal(s.uid, 0);
	assert_true(procnet_is_listening(&s));
}

static void parses_an_established_tcp6_connection(void **state)
{
	(void)state;
	struct procnet_socket s;
	char a[46];
	/* [2001:db8::10]:22 <- [2001:db8::20]:52000, uid 1001 */
	assert_int_equal(procnet_parse_line("   1: B80D0120000000000000000010000000:0016 B80D0120000000000000000020000000:CB20 "
					    "01 00000000:00000000 02:000A2B1C 00000000  1001        0 9901 1 "
					    "ffff88800a000000 20 4 30 10 -1",
					    PROCNET_TCP6, &s),
			 0);
	procnet_format_address(&s, false, a);
	assert_string_equal(a, "2001:db8::10");
	procnet_format_address(&s, true, a);
	assert_string_equal(a, "2001:db8::20");
	assert_int_equal(s.lport, 22);
	assert_int_equal(s.rport, 52000);
	assert_string_equal(procnet_state_name(s.state), "ESTABLISHED");
	assert_int_equal(s.uid, 1001);
	assert_false(procnet_is_listening(&s));
	assert_string_equal(procnet_protocol((enum procnet_table)s.table), "tcp6");
}

static void udp_bound_is_listening_and_connected_is_not(void **state)
{
	(void)state;
	struct procnet_socket s;
	assert_int_equal(procnet_parse_line(" 1234: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 "
					    "00000000     0        0 6501 2 ffff88800a000000 0",
					    PROCNET_UDP, &s),
			 0);
	assert_true(procnet_is_listening(&s));
	assert_string_equal(procnet_state_name(s.state), "CLOSE");
	assert_int_equal(procnet_parse_line(" 1235: 3201A8C0:9543 7B6433C6:007B 01 00000000:00000000 00:00000000 "
					    "00000000     0        0 5250 2 ffff88800a000000 0",
					    PROCNET_UDP, &s),
			 0);
	assert_false(procnet_is_listening(&s));
	char a[46];
	procnet_format_address(&s, true, a);
	assert_string_equal(a, "198.51.100.123");
	assert_int_equal(s.rport, 123);
}

static void raw_sockets_are_never_listeners(void **state)
{
	(void)state;
	struct procnet_socket s;
	assert_int_equal(procnet_parse_line("  0: 00000000:0006 00000000:0000 07 00000000:00000000 00:00000000 "
					    "00000000     0        0 777 2 ffff88800a000000 0",
					    PROCNET_RAW, &s),
			 0);
	assert_int_equal(s.lport, 6); /* the IP protocol: TCP */
	assert_false(procnet_is_listening(&s));
}

static void tcp_time_wait_has_no_inode(void **state)
{
	(void)state;
	struct procnet_socket s;
	assert_int_equal(procnet_parse_line("   4: 0502000C:0016 0A02000C:C35A 06 00000000:00000000 03:00000F2C "
					    "00000000     0        0 0 3 ffff88800a000000",
					    PROCNET_TCP, &s),
			 0);
	assert_string_equal(procnet_state_name(s.state), "TIME_WAIT");
	assert_int_equal(s.inode, 0);
}

static void refuses_headers_and_hostile_lines(void **state)
{
	(void)state;
	struct procnet_socket s;
	const char *bad[] = {
		"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
		"",
		"\n",
		"   0: 0100007F:0277",                                           /* truncated */
		"   0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0", /* no inode */
		"   0: 0100007G:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",  /* not hex */
		"   0: 0100007F:02770 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1", /* long port */
		"   0: 0100007F0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",  /* no colon */
		"   0: 0100007F:0277 00000000:0000 0A0 00000000:00000000 00:00000000 00000000 0 0 1", /* state */
		"   0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000 -1 0 1", /* uid */
		"   0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 99999999999999999999999",
		"   x: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
		"\xff\xfe garbage \x01\x02",
		/* an IPv6 address in an IPv4 table */
		"   1: B80D0120000000000000000010000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 0 0 0 1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(procnet_parse_line(bad[i], PROCNET_TCP, &s), -1);
	/* An IPv4 address in an IPv6 table. */
	assert_int_equal(procnet_parse_line("   0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 "
					    "00000000     0        0 12345 1",
					    PROCNET_TCP6, &s),
			 -1);
	assert_string_equal(procnet_state_name(0), "UNKNOWN");
	assert_string_equal(procnet_state_name(200), "UNKNOWN");
}

static void parses_stat_with_a_hostile_comm(void **state)
{
	(void)state;
	struct proc_stat st;
	assert_int_equal(proc_parse_stat("4242 (a) b (c) S 1 2) R 77 4242 4242 0 -1 4194560 120 0 1 0 300 45 0 0 20 0 "
					 "1 0 9001 4194304 300 18446744073709551615 1 1 0\n",
					 &st),
			 0);
	assert_string_equal(st.comm, "a) b (c) S 1 2");
	assert_int_equal(st.state, 'R');
	assert_int_equal(st.ppid, 77);
	assert_int_equal(st.utime, 300);
	assert_int_equal(st.stime, 45);
	assert_int_equal(st.starttime, 9001);
	assert_int_equal(st.flags & PROC_PF_KTHREAD, 0);

	assert_int_equal(proc_parse_stat("2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0", &st), 0);
	assert_true(st.flags & PROC_PF_KTHREAD);
}

static void refuses_truncated_and_garbage_stat(void **state)
{
	(void)state;
	struct proc_stat st;
	const char *bad[] = {
		"",
		"4242",
		"4242 (sh",
		"4242 (sh) S 1 2 3",                                          /* truncated before starttime */
		"4242 (sh) S 1 4242 4242 0 -1 4194560 120 0 1 0 3 2 0 0 20 0 1 0", /* no starttime */
		"4242 sh) S 1 4242 4242 0 -1 4194560 120 0 1 0 3 2 0 0 20 0 1 0 5",
		"-1 (sh) S 1 4242 4242 0 -1 4194560 120 0 1 0 3 2 0 0 20 0 1 0 5",
		"4242 (sh) S x 4242 4242 0 -1 4194560 120 0 1 0 3 2 0 0 20 0 1 0 5",
		"4242 (sh) S -5 4242 4242 0 -1 4194560 120 0 1 0 3 2 0 0 20 0 1 0 5",
		"4242 (sh)S 1 4242 4242 0 -1 4194560 120 0 1 0 3 2 0 0 20 0 1 0 5",
		"4242 (sh) S 1 4242 4242 0 -1 4194560 120 0 1 0 3 2 0 0 20 0 1 0 99999999999999999999999",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(proc_parse_stat(bad[i], &st), -1);
}

static void cuts_a_long_comm(void **state)
{
	(void)state;
	char line[512];
	char comm[300];
	memset(comm, 'x', sizeof(comm) - 1);
	comm[sizeof(comm) - 1] = 0;
	snprintf(line, sizeof(line), "7 (%s) S 1 7 7 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5", comm);
	struct proc_stat st;
	assert_int_equal(proc_parse_stat(line, &st), 0);
	assert_int_equal(strlen(st.comm), sizeof(st.comm) - 1);
	assert_int_equal(st.starttime, 5);
}

static void reads_the_real_uid_from_status(void **state)
{
	(void)state;
	unsigned uid = 0;
	assert_int_equal(proc_parse_status_uid("Name:\tsshd\nPPid:\t1\nUid:\t1001\t0\t0\t0\nGid:\t0\n", &uid), 0);
	assert_int_equal(uid, 1001);
	assert_int_equal(proc_parse_status_uid("Uid:\t33\t33\t33\t33\n", &uid), 0);
	assert_int_equal(uid, 33);
	assert_int_equal(proc_parse_status_uid("Name:\tx\nGid:\t0\n", &uid), -1);
	assert_int_equal(proc_parse_status_uid("Name:\tx\nUid:\tabc\n", &uid), -1);
	assert_int_equal(proc_parse_status_uid("Name:\tx\nUid:\t99999999999\n", &uid), -1);
	/* A comm that imitates the line is on the Name: line, not a line of its own. */
	assert_int_equal(proc_parse_status_uid("Name:\tUid: 0\nUid:\t1000\t1000\t1000\t1000\n", &uid), 0);
	assert_int_equal(uid, 1000);
}

static void recognises_socket_links(void **state)
{
	(void)state;
	assert_int_equal(proc_socket_inode("socket:[12345]"), 12345);
	assert_int_equal(proc_socket_inode("socket:[]"), 0);
	assert_int_equal(proc_socket_inode("socket:[12a]"), 0);
	assert_int_equal(proc_socket_inode("socket:[12]x"), 0);
	assert_int_equal(proc_socket_inode("pipe:[12345]"), 0);
	assert_int_equal(proc_socket_inode("/dev/watchdog"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parses_a_tcp_listener),
		cmocka_unit_test(parses_an_established_tcp6_connection),
		cmocka_unit_test(udp_bound_is_listening_and_connected_is_not),
		cmocka_unit_test(raw_sockets_are_never_listeners),
		cmocka_unit_test(tcp_time_wait_has_no_inode),
		cmocka_unit_test(refuses_headers_and_hostile_lines),
		cmocka_unit_test(parses_stat_with_a_hostile_comm),
		cmocka_unit_test(refuses_truncated_and_garbage_stat),
		cmocka_unit_test(cuts_a_long_comm),
		cmocka_unit_test(reads_the_real_uid_from_status),
		cmocka_unit_test(recognises_socket_links),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
