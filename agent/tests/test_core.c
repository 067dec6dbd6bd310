/* The core's cache, configuration validator and message model. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/agent.h"
#include "core/cache.h"
#include "core/config_internal.h"

/* The cache's entries as a JSON array, as the core writes them. */
static cJSON *take_json(struct entry_cache *c)
{
	size_t n;
	struct cache_slot *slots = cache_take(c, &n);
	cJSON *arr = cJSON_CreateArray();
	for (size_t i = 0; i < n; i++) {
		struct json_out size = { 0 };
		cache_write_slot(&size, &slots[i]);
		struct json_out o = { .buf = malloc(size.len + 1), .cap = size.len };
		cache_write_slot(&o, &slots[i]);
		o.buf[o.len] = 0;
		assert_int_equal(o.len, size.len);
		cJSON *e = cJSON_Parse(o.buf);
		assert_non_null(e);
		cJSON_AddItemToArray(arr, e);
		free(o.buf);
	}
	cache_slots_free(slots, n);
	return arr;
}

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
	cJSON *arr = take_json(&c);
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
	cJSON *arr = take_json(&c);
	assert_int_equal(cJSON_GetArraySize(arr), 3);
	assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "n")->valueint, 2);
	assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 2), "HitCount")->valueint, 2);
	cJSON_Delete(arr);
	cache_free(&c);
}

/* The writer the core serializes entries and messages with writes what
 * cJSON_PrintUnformatted writes, escapes and number formats included. */
static void json_write_matches_cjson(void **state)
{
	(void)state;
	const char *doc =
		"{\"s\":\"q\\\" b\\\\ \\b\\f\\n\\r\\t \\u0001\\u001f \\u00e9 \\u20ac /\","
		"\"n\":[0,1,-1,42,2147483647,2147483648,-3000000000,999999999999999,1e15,1e20,-1e300,"
		"0.1,0.3333333333333333,1.5e-7,123456.789,5e-324],"
		"\"e\":{},\"a\":[],\"t\":true,\"f\":false,\"z\":null,"
		"\"deep\":[{\"k\":[[1],{\"x\":\"y\"}]}],\"\":\"empty key\"}";
	cJSON *v = cJSON_Parse(doc);
	assert_non_null(v);
	cJSON_AddItemToObject(v, "raw", cJSON_CreateRaw("{\"r\":1}"));
	cJSON_AddItemToObject(v, "nan", cJSON_CreateNumber(NAN));
	char *want = cJSON_PrintUnformatted(v);
	struct json_out size = { 0 };
	json_write(&size, v);
	struct json_out o = { .buf = calloc(1, size.len + 1), .cap = size.len };
	json_write(&o, v);
	assert_false(o.failed);
	assert_int_equal(o.len, size.len);
	assert_string_equal(o.buf, want);
	free(o.buf);
	free(want);
	cJSON_Delete(v);
}

/* A duplicate raises the HitCount written in the entry's place, wherever
 * the collector put it. */
static void cache_hitcount_in_place(void **state)
{
	(void)state;
	struct entry_cache c;
	cache_init(&c, 8);
	for (int i = 0; i < 12; i++) {
		cJSON *e = cJSON_CreateObject();
		cJSON_AddNumberToObject(e, "HitCount", 1);
		cJSON_AddStringToObject(e, "Name", "x");
		cache_add(&c, e, "k");
	}
	size_t n;
	struct cache_slot *slots = cache_take(&c, &n);
	assert_int_equal(n, 1);
	char buf[64];
	struct json_out o = { .buf = buf, .cap = sizeof(buf) - 1 };
	cache_write_slot(&o, &slots[0]);
	buf[o.len] = 0;
	assert_string_equal(buf, "{\"HitCount\":12,\"Name\":\"x\"}");
	cache_slots_free(slots, n);
	cache_free(&c);
}

/* Entries of many shapes (more than a cache lists), some of them merged
 * duplicates, come out as cJSON prints them, with their HitCount. */
static void cache_entries_of_many_shapes(void **state)
{
	(void)state;
	struct entry_cache c;
	cache_init(&c, 100);
	cJSON *want = cJSON_CreateArray();
	char key[32], name[32];
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 40; i++) {
			cJSON *e = cJSON_CreateObject();
			snprintf(name, sizeof(name), "Field%d", i % 25);
			cJSON_AddStringToObject(e, name, "v\"1\n");
			cJSON_AddNumberToObject(e, "N", i);
			if (i % 3 == 0)
				cJSON_AddItemToObject(e, "Nested", cJSON_Parse("{\"a\":[1,{\"b\":null}],\"c\":{}}"));
			snprintf(key, sizeof(key), "k%d", i);
			if (round == 0) {
				cJSON *w = cJSON_Duplicate(e, 1);
				cJSON_AddNumberToObject(w, "HitCount", 2);
				cJSON_AddItemToArray(want, w);
			}
			assert_int_equal(cache_add(&c, e, key), round);
		}
	}
	cJSON *got = take_json(&c);
	assert_true(cJSON_Compare(got, want, 1));
	char *a = cJSON_PrintUnformatted(got), *b = cJSON_PrintUnformatted(want);
	assert_string_equal(a, b);
	free(a);
	free(b);
	cJSON_Delete(got);
	cJSON_Delete(want);
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

/* The hand-written UTC text is strftime's, byte for byte, over the years it
 * covers (core.c: 1000-9999), and the epoch outside them. */
static void utc_text_matches_gmtime_and_strftime(void **state)
{
	(void)state;
	char got[21], want[21];
	long long checked = 0;
	for (long long t = -30610224000LL; t < 253402300800LL; t += 86400LL * 13 + 3607, checked++) {
		time_t tt = (time_t)t;
		if ((long long)tt != t)
			continue; /* a 32-bit time_t */
		struct tm tm;
		gmtime_r(&tt, &tm);
		assert_int_equal(strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%SZ", &tm), 20);
		agent_format_utc(tt, got);
		assert_string_equal(got, want);
	}
	assert_true(checked > 100000);
	/* every second of a leap day and the turn of a century */
	for (time_t t = 951696000; t < 951696000 + 3 * 86400; t += 7) {
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%SZ", &tm);
		agent_format_utc(t, got);
		assert_string_equal(got, want);
	}
	agent_format_utc((time_t)-1, got);
	assert_string_equal(got, "1969-12-31T23:59:59Z");
	if (sizeof(time_t) > 4) {
		agent_format_utc((time_t)253402300800LL, got);
		assert_string_equal(got, "1970-01-01T00:00:00Z");
	}
}

/* Booleans and enum words match without regard to ASCII case, whole words
 * only, and an enum value is stored as the declared word. */
static void config_words_ignore_case_whole_words_only(void **state)
{
	(void)state;
	char err[512];
	struct agent_config *cfg = config_new();
	static const struct {
		const char *doc;
		int rc;
	} cases[] = {
		{ "{\"Heartbeat_Disabled\":\"TRUE\",\"Heartbeat_MessageFrequency\":\"mEdIuM\"}", 0 },
		{ "{\"Heartbeat_Disabled\":\"true \"}", -1 },
		{ "{\"Heartbeat_Disabled\":\"tru\"}", -1 },
		{ "{\"Heartbeat_Disabled\":\"\"}", -1 },
		{ "{\"Heartbeat_MessageFrequency\":\"Hig\"}", -1 },
		{ "{\"Heartbeat_MessageFrequency\":\"Highs\"}", -1 },
		{ "{\"Heartbeat_MessageFrequency\":\"H@gh\"}", -1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *doc = cJSON_Parse(cases[i].doc);
		assert_int_equal(config_merge(cfg, doc, err, sizeof(err), NULL), cases[i].rc);
		if (cases[i].rc)
			assert_non_null(strstr(err, "key 'Heartbeat_"));
		cJSON_Delete(doc);
	}
	assert_true(config_bool(cfg, "Heartbeat_Disabled"));
	assert_string_equal(config_string(cfg, "Heartbeat_MessageFrequency"), "Medium");
	config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(cache_aggregates_duplicates),
		cmocka_unit_test(cache_drops_oldest_when_full),
		cmocka_unit_test(cache_hitcount_in_place),
		cmocka_unit_test(cache_entries_of_many_shapes),
		cmocka_unit_test(json_write_matches_cjson),
		cmocka_unit_test(config_rejects_bad_values_and_keeps_old),
		cmocka_unit_test(config_accepts_twin_style_booleans_and_null),
		cmocka_unit_test(utc_text_matches_gmtime_and_strftime),
		cmocka_unit_test(config_words_ignore_case_whole_words_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
