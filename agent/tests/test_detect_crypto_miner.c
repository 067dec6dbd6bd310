/* crypto_miner: process samples (names, command lines, CPU ticks) and socket tables. */
//needs: detector crypto_miner
#include "detect_harness.h"

static void baseline_sockets(void)
{
	h_sock_reset();
	h_sock_add("tcp", "0.0.0.0", 22, "0.0.0.0", 0, "LISTEN", 100, 200);
}

static void miner_command_line_alerts_at_once(void **state)
{
	(void)state;
	baseline_sockets();
	h_sock_add("tcp", "10.0.2.15", 40000, "198.51.100.20", 3333, "ESTABLISHED", 500, 777);
	h_sock_send();
	h_process(777, "kworker", "/tmp/.x/kworker", "kworker -o stratum+tcp://198.51.100.20:3333 -u wallet --donate-level 1",
		  100, "", "");
	h_advance(30);
	assert_int_equal(h_count("CryptoMiner", "Active"), 1);
	cJSON *a = h_alert("CryptoMiner", "Active", 0);
	assert_string_equal(h_str(a, "Severity"), "High");
	assert_string_equal(h_str(a, "MitreTechnique"), "T1496");
	assert_int_equal(h_num(a, "Evidence.ProcessId"), 777);
	assert_string_equal(h_str(a, "Evidence.Executable"), "/tmp/.x/kworker");
	assert_string_equal(h_str(a, "Evidence.RemoteAddress"), "198.51.100.20");
	assert_int_equal(h_num(a, "Evidence.RemotePort"), 3333);
	assert_string_equal(h_str(a, "Evidence.MatchedPattern"), "stratum+tcp://");
	/* the next cycles do not repeat it; the exit ends it */
	h_sock_send();
	h_process(777, "kworker", "/tmp/.x/kworker", "kworker -o stratum+tcp://198.51.100.20:3333", 3100, "", "");
	h_advance(30);
	assert_int_equal(h_count("CryptoMiner", "Active"), 1);
	h_feed("Process", "{\"EventType\":\"Exit\",\"ProcessId\":777}");
	h_advance(30);
	assert_int_equal(h_count("CryptoMiner", "Ended"), 1);
}

static void known_miner_name(void **state)
{
	(void)state;
	h_process(900, "xmrig", "/opt/xmrig/xmrig", "/opt/xmrig/xmrig -c config.json", 5, "", "");
	h_advance(5);
	assert_int_equal(h_count("CryptoMiner", "Active"), 1);
}

/* A process burning `pct` percent of a core for `seconds`, sampled every 30 s. */
static void burn(int pid, const char *name, const char *exe, int pct, int seconds)
{
	long ticks = 1000;
	for (int t = 0; t <= seconds; t += 30) {
		h_process(pid, name, exe, name, ticks, "", "");
		h_process(1, "init", "/sbin/init", "init", 50, "", "");
		h_advance(30);
		ticks += 30L * pct; /* 100 ticks per second is one core */
	}
}

static void sustained_cpu_alerts_after_five_minutes(void **state)
{
	(void)state;
	burn(1234, "updater", "/usr/bin/updater", 95, 270);
	assert_int_equal(h_total(), 0);
	burn(1234, "updater", "/usr/bin/updater", 95, 60);
	cJSON *a = h_alert("CryptoMiner", "Active", 0);
	assert_non_null(a);
	assert_string_equal(h_str(a, "Severity"), "Medium");
	assert_true(h_num(a, "Evidence.CpuPercent") >= 90);
	assert_true(h_num(a, "Evidence.HighCpuSeconds") >= 300);
}

static void allowlisted_compiler_is_quiet(void **state)
{
	(void)state;
	h_config("{\"CryptoMiner_Allowlist\":\"/usr/lib/gcc/*/cc1*,make\"}");
	burn(4321, "cc1plus", "/usr/lib/gcc/x86_64-linux-gnu/12/cc1plus", 99, 900);
	assert_int_equal(h_total(), 0);
	/* the same burn without the allowlist entry does alert: the test can fail */
	h_config("{\"CryptoMiner_Allowlist\":\"\"}");
	burn(4321, "cc1plus", "/usr/lib/gcc/x86_64-linux-gnu/12/cc1plus", 99, 330);
	assert_int_equal(h_count("CryptoMiner", "Active"), 1);
}

static void thresholds_change_through_config(void **state)
{
	(void)state;
	h_config("{\"CryptoMiner_CpuPercent\":50,\"CryptoMiner_CpuSeconds\":60}");
	burn(55, "render", "/usr/bin/render", 60, 90);
	assert_int_equal(h_count("CryptoMiner", "Active"), 1);
}

static void firmware_download_over_https_is_quiet(void **state)
{
	(void)state;
	long ticks = 0;
	for (int i = 0; i < 12; i++) {
		baseline_sockets();
		h_sock_add("tcp", "10.0.2.15", 45000, "93.184.216.34", 443, "ESTABLISHED", 600, 42);
		h_sock_send();
		/* curl at 30% of a core for six minutes */
		h_process(42, "curl", "/usr/bin/curl", "curl -fLo /tmp/fw.bin https://updates.example.com/fw.bin", ticks,
			  "", "");
		ticks += 900;
		h_advance(30);
	}
	assert_int_equal(h_total(), 0);
}

static void pool_port_and_temp_binary_together(void **state)
{
	(void)state;
	baseline_sockets();
	h_sock_add("tcp", "10.0.2.15", 40000, "198.51.100.30", 14444, "ESTABLISHED", 501, 88);
	h_sock_send();
	h_process(88, "systemd-helper", "/dev/shm/systemd-helper", "systemd-helper", 10, "", "");
	h_advance(10);
	cJSON *a = h_alert("CryptoMiner", "Active", 0);
	assert_non_null(a);
	cJSON *ind = cJSON_GetObjectItem(cJSON_GetObjectItem(a, "Evidence"), "Indicators");
	assert_int_equal(cJSON_GetArraySize(ind), 2);
	/* one weak sign alone does not alert */
	baseline_sockets();
	h_sock_add("tcp", "10.0.2.15", 40001, "198.51.100.31", 8888, "ESTABLISHED", 502, 89);
	h_sock_send();
	h_process(88, "systemd-helper", "/dev/shm/systemd-helper", "systemd-helper", 10, "", "");
	h_process(89, "webui", "/usr/bin/webui", "webui", 10, "", "");
	h_advance(10);
	assert_int_equal(h_count("CryptoMiner", "Active"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(miner_command_line_alerts_at_once, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(known_miner_name, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(sustained_cpu_alerts_after_five_minutes, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(allowlisted_compiler_is_quiet, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(thresholds_change_through_config, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(firmware_download_over_https_is_quiet, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(pool_port_and_temp_binary_together, h_setup, h_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
