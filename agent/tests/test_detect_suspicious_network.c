/* suspicious_network: socket tables, process samples and /proc/net/snmp
 * counters as the network_activity and process collectors observe them. */
//needs: detector suspicious_network
#include "detect_harness.h"

#include <unistd.h>

static void listeners(void)
{
	h_sock_add("tcp", "0.0.0.0", 22, "0.0.0.0", 0, "LISTEN", 100, 200);
	h_sock_add("tcp6", "::", 443, "::", 0, "LISTEN", 101, 201);
	h_sock_add("udp", "0.0.0.0", 53, "0.0.0.0", 0, "CLOSE", 102, 202);
	h_sock_add("udp", "0.0.0.0", 45123, "0.0.0.0", 0, "CLOSE", 103, 202); /* resolver client port */
}

static void process(int pid, const char *name, const char *exe, const char *std)
{
	h_process(pid, name, exe, name, 10, std, "");
}

static void new_listener_alerts_and_ends(void **state)
{
	(void)state;
	h_config("{\"SuspiciousNetwork_AllowedPorts\":\"8080\"}");
	h_sock_reset();
	listeners();
	h_sock_send(); /* the baseline */
	h_advance(30);
	assert_int_equal(h_total(), 0);
	process(999, "nc", "/usr/bin/nc.openbsd", "");
	h_sock_reset();
	listeners();
	h_sock_add("tcp", "0.0.0.0", 4444, "0.0.0.0", 0, "LISTEN", 300, 999);
	h_sock_add("tcp", "0.0.0.0", 8080, "0.0.0.0", 0, "LISTEN", 301, 998);
	h_sock_send();
	h_advance(30);
	assert_int_equal(h_count("UnexpectedListeningPort", "Active"), 1);
	cJSON *a = h_alert("UnexpectedListeningPort", "Active", 0);
	assert_string_equal(h_str(a, "Severity"), "Medium");
	assert_int_equal(h_num(a, "Evidence.LocalPort"), 4444);
	assert_string_equal(h_str(a, "Evidence.Executable"), "/usr/bin/nc.openbsd");
	h_sock_send();
	h_advance(30);
	assert_int_equal(h_count("UnexpectedListeningPort", "Active"), 1);
	h_sock_reset();
	listeners();
	h_sock_send();
	h_advance(30);
	assert_int_equal(h_count("UnexpectedListeningPort", "Ended"), 1);
}

static void telnet_alerts_even_in_the_baseline(void **state)
{
	(void)state;
	h_sock_reset();
	listeners();
	h_sock_add("tcp", "0.0.0.0", 23, "0.0.0.0", 0, "LISTEN", 104, 203);
	h_sock_send();
	h_advance(1);
	assert_int_equal(h_count("UnexpectedListeningPort", "Active"), 1);
	h_sock_send();
	h_advance(30);
	cJSON *a = h_alert("UnexpectedListeningPort", "Active", 0);
	assert_non_null(a);
	assert_string_equal(h_str(a, "Severity"), "High");
	assert_int_equal(h_count("UnexpectedListeningPort", "Active"), 1);
}

static void reverse_shell(void **state)
{
	(void)state;
	h_sock_reset();
	listeners();
	h_sock_send();
	h_sock_add("tcp", "10.0.2.15", 41000, "203.0.113.5", 4444, "ESTABLISHED", 5555, 321);
	h_sock_add("tcp", "127.0.0.1", 41001, "127.0.0.1", 9000, "ESTABLISHED", 5556, 322);
	h_sock_send();
	process(321, "sh", "/bin/busybox", "[0,5555],[1,5555],[2,5555]");
	process(322, "python3", "/usr/bin/python3.11", "[0,5556],[1,5556]"); /* loopback: a local tool */
	process(323, "bash", "/bin/bash", "[1,777]");                         /* a unix socket */
	h_advance(10);
	assert_int_equal(h_count("ReverseShell", "Active"), 1);
	cJSON *a = h_alert("ReverseShell", "Active", 0);
	assert_string_equal(h_str(a, "Severity"), "Critical");
	assert_string_equal(h_str(a, "MitreTechnique"), "T1059");
	assert_string_equal(h_str(a, "Evidence.RemoteAddress"), "203.0.113.5");
	assert_int_equal(h_num(a, "Evidence.RemotePort"), 4444);
	assert_int_equal(h_num(a, "Evidence.ProcessId"), 321);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "Evidence"), "Fds")), 3);
	/* the shell exits: the next samples lack it */
	h_advance(10);
	h_sock_reset();
	listeners();
	h_sock_send();
	process(322, "python3", "/usr/bin/python3.11", "");
	h_advance(10);
	assert_int_equal(h_count("ReverseShell", "Ended"), 1);
}

static void counters(long rsts, long noports, long unreach)
{
	h_feed("NetworkCounters",
	       "{\"SampleTimeMs\":%lld,\"Tcp\":{\"ActiveOpens\":1,\"PassiveOpens\":1,\"AttemptFails\":0,"
	       "\"EstabResets\":0,\"InSegs\":1,\"OutSegs\":1,\"RetransSegs\":0,\"InErrs\":0,\"OutRsts\":%ld},"
	       "\"Udp\":{\"InDatagrams\":1,\"NoPorts\":%ld,\"InErrors\":0,\"OutDatagrams\":1},"
	       "\"Icmp\":{\"OutDestUnreachs\":%ld,\"InDestUnreachs\":0}}",
	       H.virtual_ms, rsts, noports, unreach);
}

static void port_scan_from_counters(void **state)
{
	(void)state;
	counters(1000, 50, 10);
	h_advance(30);
	counters(1020, 52, 10); /* 44 per minute: normal noise */
	h_advance(30);
	assert_int_equal(h_total(), 0);
	counters(1900, 300, 90); /* nmap: ~2400 refused per minute */
	h_advance(30);
	cJSON *a = h_alert("PortScan", "Active", 0);
	assert_non_null(a);
	assert_int_equal(h_num(a, "Evidence.OutRsts"), 1900);
	assert_true(h_num(a, "Evidence.RefusedPerMinute") > 1000);
	counters(1901, 300, 90);
	h_advance(30);
	counters(1902, 300, 90);
	h_advance(30);
	assert_int_equal(h_count("PortScan", "Ended"), 1);
	assert_int_equal(h_count("PortScan", "Active"), 1);
}

static void port_scan_from_half_open_connections(void **state)
{
	(void)state;
	h_sock_reset();
	listeners();
	h_sock_send();
	for (int p = 0; p < 20; p++)
		h_sock_add("tcp", "10.0.2.15", 20 + p, "192.0.2.99", 50000, "SYN_RECV", 0, 0);
	for (int p = 0; p < 5; p++)
		h_sock_add("tcp", "10.0.2.15", 443, "198.51.100.1", 40000 + p, "SYN_RECV", 0, 0);
	h_sock_send();
	h_advance(10);
	assert_int_equal(h_count("PortScan", "Active"), 1);
	cJSON *a = h_alert("PortScan", "Active", 0);
	assert_string_equal(h_str(a, "Evidence.RemoteAddress"), "192.0.2.99");
	assert_int_equal(h_num(a, "Evidence.HalfOpenPorts"), 20);
}

static void threat_intel_inline_and_file(void **state)
{
	(void)state;
	char path[] = "/tmp/test-intel-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *text = "# feed\n203.0.113.0/24\nnot-an-address\n2001:db8:bad::/48  # v6\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	char cfg[256];
	snprintf(cfg, sizeof(cfg),
		 "{\"SuspiciousNetwork_ThreatIntel\":[\"198.51.100.7\"],\"SuspiciousNetwork_ThreatIntelFile\":\"%s\"}",
		 path);
	h_config(cfg);
	unlink(path);
	h_sock_reset();
	listeners();
	h_sock_add("tcp", "10.0.2.15", 40000, "198.51.100.7", 443, "ESTABLISHED", 400, 50);
	h_sock_add("tcp6", "fd00::2", 40001, "2001:db8:bad::99", 6667, "SYN_SENT", 401, 51);
	h_sock_add("tcp", "10.0.2.15", 40002, "203.0.113.200", 80, "ESTABLISHED", 402, 52);
	h_sock_add("tcp", "10.0.2.15", 40003, "198.51.100.8", 443, "ESTABLISHED", 403, 53);
	h_sock_send();
	h_advance(10);
	assert_int_equal(h_count("ThreatIntelConnection", "Active"), 3);
	cJSON *a = h_alert("ThreatIntelConnection", "Active", 2);
	assert_string_equal(h_str(a, "Evidence.RemoteAddress"), "203.0.113.200");
	assert_string_equal(h_str(a, "Evidence.MatchedEntry"), "203.0.113.0/24");
	a = h_alert("ThreatIntelConnection", "Active", 1);
	assert_string_equal(h_str(a, "Evidence.MatchedEntry"), "2001:db8:bad::/48");
	/* a bad inline entry is refused as a whole key */
	cJSON *doc = cJSON_Parse("{\"SuspiciousNetwork_ThreatIntel\":\"1.2.3.4,1.2.3\"}");
	cJSON *bad = agent_apply_desired(&H, doc, false);
	assert_int_equal(cJSON_GetArraySize(bad), 1);
	cJSON_Delete(bad);
	cJSON_Delete(doc);
}

static void busy_gateway_is_quiet(void **state)
{
	(void)state;
	char addr[32];
	for (int round = 0; round < 10; round++) {
		h_sock_reset();
		listeners();
		for (int i = 0; i < 400; i++) {
			snprintf(addr, sizeof(addr), "%d.%d.%d.%d", 20 + i % 150, (i * 7 + round) % 250, i % 250, 1 + i % 200);
			h_sock_add("tcp", "10.0.2.15", 30000 + i, addr, i % 3 ? 443 : 8883, "ESTABLISHED", 10000 + i, 400 + i % 9);
		}
		for (int i = 0; i < 50; i++)
			h_sock_add("tcp", "10.0.2.15", 443, "192.0.2.1", 50000 + i, "ESTABLISHED", 20000 + i, 201);
		h_sock_send();
		process(400, "gatewayd", "/usr/bin/gatewayd", "");
		process(401, "sh", "/bin/sh", "[0,30],[1,31]"); /* pipes/unix, not in the table */
		counters(100 + round * 5, 10 + round, 3);
		h_advance(30);
	}
	assert_int_equal(h_total(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(new_listener_alerts_and_ends, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(telnet_alerts_even_in_the_baseline, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(reverse_shell, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(port_scan_from_counters, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(port_scan_from_half_open_connections, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(threat_intel_inline_and_file, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(busy_gateway_is_quiet, h_setup, h_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
