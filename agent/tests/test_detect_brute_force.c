/* brute_force: failed-login entries as the login collector reports them. */
//needs: detector brute_force
#include "detect_harness.h"

#define FAIL(addr, user) \
	h_feed("Login", "{\"Operation\":\"LoginFailed\",\"RemoteAddress\":\"%s\",\"UserName\":\"%s\"," \
		"\"Executable\":\"sshd\",\"Weight\":1}", addr, user)

static void login_ok(const char *addr, const char *user)
{
	h_feed("Login", "{\"Operation\":\"Login\",\"RemoteAddress\":\"%s\",\"UserName\":\"%s\",\"Executable\":\"sshd\"}",
	       addr, user);
}

static void fast_burst_alerts_once_then_ends(void **state)
{
	(void)state;
	for (int i = 0; i < 12; i++) {
		FAIL("203.0.113.7", "pi");
		if (i % 4 == 3)
			h_advance(1);
	}
	assert_int_equal(h_count("BruteForce", "Active"), 1);
	cJSON *a = h_alert("BruteForce", "Active", 0);
	assert_string_equal(h_str(a, "Severity"), "High");
	assert_string_equal(h_str(a, "MitreTechnique"), "T1110");
	assert_string_equal(h_str(a, "Evidence.RemoteAddress"), "203.0.113.7");
	assert_string_equal(h_str(a, "Evidence.Variant"), "fast");
	assert_int_equal(h_num(a, "Evidence.FailedCount"), 5);
	assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "Evidence"), "Users"), 0)->valuestring, "pi");
	assert_string_equal(h_str(a, "Evidence.FirstSeenUTC"), "2026-01-01T00:00:00Z");
	h_advance(300);
	assert_int_equal(h_count("BruteForce", "Ended"), 0); /* not yet quiet for the window */
	h_advance(301);
	assert_int_equal(h_count("BruteForce", "Ended"), 1);
	assert_int_equal(h_count("BruteForce", "Active"), 1);
}

static void root_target_is_critical(void **state)
{
	(void)state;
	for (int i = 0; i < 5; i++)
		FAIL("198.51.100.1", i == 3 ? "root" : "ubuntu");
	cJSON *a = h_alert("BruteForce", "Active", 0);
	assert_non_null(a);
	assert_string_equal(h_str(a, "Severity"), "Critical");
}

static void developer_with_two_typos_is_quiet(void **state)
{
	(void)state;
	FAIL("192.168.1.20", "dev");
	h_advance(4);
	FAIL("192.168.1.20", "dev");
	h_advance(5);
	login_ok("192.168.1.20", "dev");
	h_advance(3600);
	assert_int_equal(h_total(), 0);
}

static void busybox_line_counts_three(void **state)
{
	(void)state;
	for (int i = 0; i < 2; i++)
		h_feed("Login", "{\"Operation\":\"LoginFailed\",\"RemoteAddress\":\"10.1.1.1\",\"UserName\":\"admin\","
				"\"Executable\":\"login\",\"Weight\":3}");
	cJSON *a = h_alert("BruteForce", "Active", 0);
	assert_non_null(a);
	assert_int_equal(h_num(a, "Evidence.FailedCount"), 6);
}

static void slow_attack_trips_the_window(void **state)
{
	(void)state;
	/* one failure every 100 s: the buckets leak it away, the 10-minute window does not */
	for (int i = 0; i < 4; i++) {
		FAIL("203.0.113.9", "admin");
		h_advance(100);
	}
	assert_int_equal(h_total(), 0);
	FAIL("203.0.113.9", "admin");
	cJSON *a = h_alert("BruteForce", "Active", 0);
	assert_non_null(a);
	assert_string_equal(h_str(a, "Evidence.Variant"), "window");
	assert_int_equal(h_num(a, "Evidence.WindowSeconds"), 600);
}

static void low_and_slow_attack(void **state)
{
	(void)state;
	/* one guess every 15 minutes: no bucket or 10-minute window sees it */
	for (int i = 0; i < 3; i++) {
		FAIL("203.0.113.44", "admin");
		h_advance(900);
	}
	assert_int_equal(h_count("BruteForce", "Active"), 0);
	FAIL("203.0.113.44", "admin");
	cJSON *a = h_alert("BruteForce", "Active", 0);
	assert_non_null(a);
	assert_string_equal(h_str(a, "Evidence.Variant"), "low-and-slow");
	assert_int_equal(h_num(a, "Evidence.WindowSeconds"), 7200);
	/* it goes on: the incident ends when quiet, and no new alert within the period */
	for (int i = 0; i < 4; i++) {
		h_advance(900);
		FAIL("203.0.113.44", "admin");
	}
	assert_int_equal(h_count("BruteForce", "Active"), 1);
	/* a user who mistypes once a day never adds up */
	for (int i = 0; i < 6; i++) {
		FAIL("192.168.1.30", "dev");
		h_advance(86400);
	}
	assert_int_equal(h_count("BruteForce", "Active"), 1);
}

static void user_enumeration(void **state)
{
	(void)state;
	const char *users[] = { "admin", "oracle", "test", "guest", "ftp" };
	for (int i = 0; i < 5; i++) {
		FAIL("203.0.113.10", users[i]);
		h_advance(20);
	}
	cJSON *a = h_alert("BruteForce", "Active", 0);
	assert_non_null(a);
	assert_string_equal(h_str(a, "Evidence.Variant"), "user-enumeration");
	assert_int_equal(h_num(a, "Evidence.DistinctUsers"), 5);
}

static void success_after_brute_force_is_critical(void **state)
{
	(void)state;
	for (int i = 0; i < 6; i++)
		FAIL("203.0.113.7", "root");
	h_advance(2);
	login_ok("203.0.113.7", "root");
	cJSON *a = h_alert("BruteForceSuccess", "Active", 0);
	assert_non_null(a);
	assert_string_equal(h_str(a, "Severity"), "Critical");
	assert_string_equal(h_str(a, "Evidence.UserName"), "root");
	assert_int_equal(h_num(a, "Evidence.FailedCount"), 6);
	/* a success from elsewhere is not */
	login_ok("192.168.1.20", "root");
	assert_int_equal(h_count("BruteForceSuccess", "Active"), 1);
	h_advance(700);
	assert_int_equal(h_count("BruteForceSuccess", "Ended"), 1);
	assert_int_equal(h_count("BruteForce", "Ended"), 1);
}

static void distributed_attack_on_one_user(void **state)
{
	(void)state;
	char addr[32];
	for (int i = 0; i < 8; i++) {
		snprintf(addr, sizeof(addr), "198.18.0.%d", i + 1);
		FAIL(addr, "root");
	}
	assert_int_equal(h_count("BruteForce", "Active"), 1);
	cJSON *a = h_alert("BruteForce", "Active", 0);
	assert_string_equal(h_str(a, "Incident"), "user:root");
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "Evidence"), "RemoteAddresses")), 4);
}

static void thresholds_change_through_config(void **state)
{
	(void)state;
	for (int i = 0; i < 3; i++)
		FAIL("203.0.113.20", "pi");
	assert_int_equal(h_total(), 0);
	h_advance(3600);
	h_config("{\"BruteForce_FastThreshold\":3,\"BruteForce_WindowThreshold\":3}");
	for (int i = 0; i < 3; i++)
		FAIL("203.0.113.21", "pi");
	assert_int_equal(h_count("BruteForce", "Active"), 1);
}

static void allowed_sources_are_not_counted(void **state)
{
	(void)state;
	h_config("{\"BruteForce_AllowedSources\":\"10.9.0.0/16\"}");
	for (int i = 0; i < 20; i++)
		FAIL("10.9.3.4", "monitor");
	assert_int_equal(h_total(), 0);
	cJSON *doc = cJSON_Parse("{\"BruteForce_AllowedSources\":\"10.9.0.0/33\"}");
	cJSON *bad = agent_apply_desired(&H, doc, false);
	assert_int_equal(cJSON_GetArraySize(bad), 1);
	cJSON_Delete(bad);
	cJSON_Delete(doc);
}

static void old_log_lines_do_not_alert(void **state)
{
	(void)state;
	for (int i = 0; i < 20; i++)
		h_feed("Login", "{\"Operation\":\"LoginFailed\",\"RemoteAddress\":\"203.0.113.7\",\"UserName\":\"root\","
				"\"TimestampUTC\":\"2025-12-30T10:00:%02dZ\"}", i);
	assert_int_equal(h_total(), 0);
}

static void flood_is_bounded_and_gives_few_alerts(void **state)
{
	(void)state;
	char addr[32];
	/* 100,000 failures from 10,000 sources, ten in a row each */
	for (int s = 0; s < 10000; s++) {
		snprintf(addr, sizeof(addr), "100.%d.%d.%d", s >> 16, (s >> 8) & 255, s & 255);
		for (int i = 0; i < 10; i++)
			FAIL(addr, "root");
		if (s % 100 == 0)
			h_advance(1);
	}
	int active = h_count("BruteForce", "Active");
	assert_true(active <= 64 + 2); /* per source, the storm, the per-user one */
	assert_non_null(h_alert("BruteForce", "Active", active - 1));
	bool storm = false;
	for (int i = 0; i < active; i++)
		storm |= strcmp(h_str(h_alert("BruteForce", "Active", i), "Incident"), "many-sources") == 0;
	assert_true(storm);
}

/* The bench's flood (100,000 failures, each from one of 10,000 sources
 * drawn at random, random users) with twenty real attackers in it, each
 * trying six passwords 500 lines apart: the bounded table must keep every
 * attacker long enough to cross its threshold, however many one-off
 * sources pass through it, and each is alerted by its own address. */
static void attackers_in_a_flood_are_alerted(void **state)
{
	(void)state;
	static const char *const users[] = { "root", "admin", "pi",     "ubnt",  "support",
					     "user", "test",  "oracle", "guest", "ftp" };
	enum { ATTACKERS = 20, TRIES = 6, GAP = 500, SPACING = 4500 };
	char addr[32];
	unsigned seed = 7;
	for (int i = 0; i < 100000; i++) {
		seed = seed * 1103515245u + 12345u;
		unsigned s = (seed >> 8) % 10000;
		snprintf(addr, sizeof(addr), "100.%u.%u.%u", 64 + (s >> 16), (s >> 8) & 255, s & 255);
		FAIL(addr, users[(seed >> 4) % 10]);
		int a = i / SPACING, k = i % SPACING;
		if (a < ATTACKERS && k % GAP == 0 && k / GAP < TRIES) {
			snprintf(addr, sizeof(addr), "198.51.100.%d", a + 1);
			FAIL(addr, "admin");
		}
		if (i % 300 == 299)
			h_advance(1); /* 300 lines a second, as in the bench's replay */
	}
	for (int a = 0; a < ATTACKERS; a++) {
		snprintf(addr, sizeof(addr), "198.51.100.%d", a + 1);
		const cJSON *found = NULL;
		for (int n = 0; !found && h_alert("BruteForce", "Active", n); n++)
			if (strcmp(h_str(h_alert("BruteForce", "Active", n), "Incident"), addr) == 0)
				found = h_alert("BruteForce", "Active", n);
		if (!found)
			fail_msg("no BruteForce for attacker %s in the flood", addr);
		assert_int_equal(h_num(found, "Evidence.FailedCount"), 5);
		assert_string_equal(h_str(found, "Evidence.Variant"), "fast");
		assert_string_equal(h_str(found, "Severity"), "Critical");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(fast_burst_alerts_once_then_ends, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(root_target_is_critical, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(developer_with_two_typos_is_quiet, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(busybox_line_counts_three, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(slow_attack_trips_the_window, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(low_and_slow_attack, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(user_enumeration, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(success_after_brute_force_is_critical, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(distributed_attack_on_one_user, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(thresholds_change_through_config, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(allowed_sources_are_not_counted, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(old_log_lines_do_not_alert, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(flood_is_bounded_and_gives_few_alerts, h_setup, h_teardown),
		cmocka_unit_test_setup_teardown(attackers_in_a_flood_are_alerted, h_setup, h_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
