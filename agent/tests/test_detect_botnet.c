/* botnet: Mirai-style indicators in process samples and socket tables. */
//needs: detector botnet
#include "detect_harness.h"

static void services(bool telnet)
{
	h_sock_reset();
	h_sock_add("tcp", "0.0.0.0", 22, "0.0.0.0", 0, "LISTEN", 100, 200);
	h_sock_add("tcp", "0.0.0.0", 80, "0.0.0.0", 0, "LISTEN", 101, 201);
	if (telnet)
		h_sock_add("tcp", "0.0.0.0", 23, "0.0.0.0", 0, "LISTEN", 102, 202);
}

static void normal_processes(void)
{
	h_process(1, "init", "/sbin/init", "init", 10, "", "\"/dev/watchdog\"");
	h_process(200, "dropbear", "/usr/sbin/dropbear", "dropbear -R", 10, "", "");
	h_process(201, "httpd", "/bin/busybox", "httpd -f", 10, "", "");
	h_process(300, "watchdog", "/bin/busybox", "watchdog /dev/watchdog", 10, "", "\"/dev/watchdog\"");
}

static void mirai_infection(void **state)
{
	(void)state;
	services(true);
	h_sock_send();
	normal_processes();
	h_process(202, "telnetd", "/usr/sbin/telnetd", "telnetd", 10, "", "");
	h_advance(30);
	assert_int_equal(h_count("Botnet", "Active"), 0);

	/* the bot: deleted from /tmp, random name, lock port, raw scanner, telnet
	 * listener killed, fan-out to telnet ports */
	services(false);
	h_sock_add("tcp", "127.0.0.1", 48101, "0.0.0.0", 0, "LISTEN", 700, 666);
	h_sock_add("raw", "0.0.0.0", 0, "0.0.0.0", 6, "CLOSE", 701, 666);
	char addr[32];
	for (int i = 0; i < 12; i++) {
		snprintf(addr, sizeof(addr), "45.%d.%d.%d", i, i * 3, i + 7);
		h_sock_add("tcp", "10.0.2.15", 50000 + i, addr, i % 10 ? 23 : 2323, "SYN_SENT", 800 + i, 666);
	}
	h_sock_send();
	normal_processes();
	h_process(666, "x8k2mz0qp4d1", "/tmp/mirai.x86 (deleted)", "x8k2mz0qp4d1", 10, "", "\"/dev/watchdog\"");
	h_advance(30);
	assert_int_equal(h_count("Botnet", "Active"), 1);
	cJSON *a = h_alert("Botnet", "Active", 0);
	assert_string_equal(h_str(a, "Severity"), "Critical");
	assert_int_equal(h_num(a, "Evidence.ProcessId"), 666);
	assert_int_equal(h_num(a, "Evidence.LockPort"), 48101);
	assert_int_equal(h_num(a, "Evidence.FanOutCount"), 12);
	cJSON *ind = cJSON_GetObjectItem(cJSON_GetObjectItem(a, "Evidence"), "Indicators");
	assert_int_equal(cJSON_GetArraySize(ind), 8);
	assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "Evidence"), "ServicesGone"), 0)->valueint, 23);
	/* process killed: the incident ends */
	services(false);
	h_sock_send();
	normal_processes();
	h_advance(30);
	assert_int_equal(h_count("Botnet", "Ended"), 1);
}

static void lock_port_alone_is_enough(void **state)
{
	(void)state;
	services(false);
	h_sock_send();
	h_sock_add("tcp", "127.0.0.1", 48101, "0.0.0.0", 0, "LISTEN", 700, 667);
	h_sock_send();
	h_process(667, "sshd", "/usr/sbin/sshd", "sshd", 10, "", "");
	h_advance(30);
	cJSON *a = h_alert("Botnet", "Active", 0);
	assert_non_null(a);
	assert_string_equal(h_str(a, "Severity"), "High");
}

static void one_weak_sign_is_not_enough(void **state)
{
	(void)state;
	services(true);
	h_sock_send();
	/* an upgraded daemon still running its old, deleted binary */
	h_process(200, "dropbear", "/usr/sbin/dropbear (deleted)", "dropbear -R", 10, "", "");
	/* a test binary run from /tmp */
	h_process(201, "a.out", "/tmp/build/a.out", "./a.out", 10, "", "");
	/* an allowlisted raw TCP socket */
	h_sock_add("raw", "0.0.0.0", 0, "0.0.0.0", 6, "CLOSE", 900, 202);
	h_sock_send();
	h_process(202, "tcpdump", "/usr/bin/tcpdump", "tcpdump -i eth0", 10, "", "");
	h_advance(30);
	assert_int_equal(h_count("Botnet", "Active"), 0);
	/* take tcpdump off the allowlist: its raw socket now alerts */
	h_config("{\"Botnet_RawSocketAllowlist\":\"\"}");
	h_sock_send();
	h_process(202, "tcpdump", "/usr/bin/tcpdump", "tcpdump -i eth0", 10, "", "");
	h_advance(30);
	assert_int_equal(h_count("Botnet", "Active"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(mirai_infection, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(lock_port_alone_is_enough, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(one_weak_sign_is_not_enough, h_setup, h_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
