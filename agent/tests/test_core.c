/* The core's cache, configuration validator and message model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/cache.h"
#include "core/config_internal.h"

static void cache_aggregates_duplicates(void **state)
{
	(void)state;
	struct entry_cache c;
	cache_init(&c, 4);
	for (int i = 0; i < 3; i++) {
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "Executable", "/bin/sh");
		cache_add(&c, e, "sh|0");
	}
	cJSON *arr = cache_take(&c);
	assert_int_equal(cJSON_GetArraySize(arr), 1);
	assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "HitCount")->valueint, 3);
	cJSON_Delete(arr);
	cache_free(&c);
}

static void cache_drops_oldest_when_full(void **state)
{
	(void)state;
	struct entry_cache c;
	cache_init(&c, 3);
	char key[16];
	for (int i = 0; i < 5; i++) {
		cJSON *e = cJSON_CreateObject();
		cJSON_AddNumberToObject(e, "n", i);
		snprintf(key, sizeof(key), "k%d", i);
		cache_add(&c, e, key);
	}
	assert_int_equal(c.dropped, 2);
	/* a duplicate of a kept key still merges after the drops */
	cJSON *dup = cJSON_CreateObject();
	assert_int_equal(cache_add(&c, dup, "k4"), 1);
	cJSON *arr = cache_take(&c);
	assert_int_equal(cJSON_GetArraySize(arr), 3);
	assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "n")->valueint, 2);
	assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 2), "HitCount")->valueint, 2);
	cJSON_Delete(arr);
	cache_free(&c);
}

static void config_rejects_bad_values_and_keeps_old(void **state)
{
	(void)state;
	char err[512];
	struct agent_config *cfg = config_new();
	cJSON *good = cJSON_Parse("{\"Heartbeat_MessageFrequency\":\"high\",\"CollectorsCore_PriorityIntervals\":\"0.1,1,2\"}");
	assert_int_equal(config_merge(cfg, good, err, sizeof(err), NULL), 0);
	assert_string_equal(config_string(cfg, "Heartbeat_MessageFrequency"), "High");

	cJSON *invalid = cJSON_CreateArray();
	cJSON *bad = cJSON_Parse("{\"Heartbeat_MessageFrequency\":\"Low\",\"Agent_MaxMessageBytes\":5,"
				 "\"Heartbeat_Disabld\":true}");
	assert_int_equal(config_merge(cfg, bad, err, sizeof(err), invalid), -1);
	assert_non_null(strstr(err, "Agent_MaxMessageBytes"));
	assert_int_equal(cJSON_GetArraySize(invalid), 2);
	assert_string_equal(cJSON_GetArrayItem(invalid, 1)->valuestring, "Heartbeat_Disabld");
	/* nothing of the bad document was applied */
	assert_string_equal(config_string(cfg, "Heartbeat_MessageFrequency"), "High");

	cJSON *typo = cJSON_Parse("{\"Heartbeat_Disabld\":true}");
	assert_int_equal(config_merge(cfg, typo, err, sizeof(err), NULL), -1);
	assert_non_null(strstr(err, "did you mean 'Heartbeat_Disabled'"));

	cJSON *intervals = cJSON_Parse("{\"CollectorsCore_PriorityIntervals\":\"30,x,1440\"}");
	assert_int_equal(config_merge(cfg, intervals, err, sizeof(err), NULL), -1);
	assert_non_null(strstr(err, "CollectorsCore_PriorityIntervals"));

	cJSON_Delete(good);
	cJSON_Delete(bad);
	cJSON_Delete(typo);
	cJSON_Delete(intervals);
	cJSON_Delete(invalid);
	config_free(cfg);
}

static void config_accepts_twin_style_booleans_and_null(void **state)
{
	(void)state;
	char err[512];
	struct agent_config *cfg = config_new();
	cJSON *doc = cJSON_Parse("{\"Heartbeat_Disabled\":\"True\",\"$version\":4}");
	assert_int_equal(config_merge(cfg, doc, err, sizeof(err), NULL), 0);
	assert_true(config_bool(cfg, "Heartbeat_Disabled"));
	cJSON *reset = cJSON_Parse("{\"Heartbeat_Disabled\":null}");
	assert_int_equal(config_merge(cfg, reset, err, sizeof(err), NULL), 0);
	assert_false(config_bool(cfg, "Heartbeat_Disabled"));
	cJSON_Delete(doc);
	cJSON_Delete(reset);
	config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(cache_aggregates_duplicates),
		cmocka_unit_test(cache_drops_oldest_when_full),
		cmocka_unit_test(config_rejects_bad_values_and_keeps_old),
		cmocka_unit_test(config_accepts_twin_style_booleans_and_null),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
