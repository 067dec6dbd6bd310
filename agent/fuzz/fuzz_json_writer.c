/* The core's JSON writer against cJSON: it must write exactly the bytes
 * cJSON_PrintUnformatted writes for any document cJSON parses, and an
 * object that waits in a cache (as text, its member names shared by shape)
 * must come out as the same object. The input is a JSON document. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cJSON *doc = cJSON_ParseWithLength((const char *)data, size);
	if (!doc)
		return 0;
	char *expected = cJSON_PrintUnformatted(doc);
	if (!expected) {
		cJSON_Delete(doc);
		return 0;
	}
	size_t n = strlen(expected);
	char *buf = malloc(n + 1);
	struct json_out o = { .buf = buf, .cap = n + 1 };
	json_write(&o, doc);
	if (o.failed || o.len != n || memcmp(buf, expected, n) != 0) {
		fprintf(stderr, "writer: %zu bytes, cJSON: %zu bytes\n%.*s\n%s\n", o.len, n,
			(int)(o.len < n ? o.len : n), buf, expected);
		abort();
	}
	if (cJSON_IsObject(doc)) {
		/* twice, the second keyed, so a duplicate is merged */
		struct entry_cache c;
		cache_init(&c, 4);
		cache_add(&c, cJSON_Duplicate(doc, 1), NULL);
		cache_add(&c, cJSON_Duplicate(doc, 1), "k");
		cache_add(&c, cJSON_Duplicate(doc, 1), "k");
		size_t count;
		struct cache_slot *slots = cache_take(&c, &count);
		for (size_t i = 0; i < count; i++) {
			struct json_out w = { .buf = NULL, .cap = 0 };
			cache_write_slot(&w, &slots[i]);
			char *text = malloc(w.len + 1);
			struct json_out t = { .buf = text, .cap = w.len + 1 };
			cache_write_slot(&t, &slots[i]);
			text[t.len] = 0;
			cJSON *back = cJSON_Parse(text);
			if (!back) {
				fprintf(stderr, "cached entry %zu is not JSON: %s\n", i, text);
				abort();
			}
			/* keyed entries carry a HitCount (2 after the merge) */
			cJSON_DeleteItemFromObjectCaseSensitive(back, "HitCount");
			cJSON *want = cJSON_Duplicate(doc, 1);
			cJSON_DeleteItemFromObjectCaseSensitive(want, "HitCount");
			/* compared as text: cJSON_Compare looks members up by name,
			 * which a document with a repeated name defeats */
			char *got = cJSON_PrintUnformatted(back), *exp = cJSON_PrintUnformatted(want);
			if (!got || !exp || strcmp(got, exp) != 0) {
				fprintf(stderr, "cached entry %zu changed: %s\nwas: %s\n", i, text, expected);
				abort();
			}
			free(got);
			free(exp);
			cJSON_Delete(want);
			cJSON_Delete(back);
			free(text);
		}
		cache_slots_free(slots, count);
		cache_free(&c);
	}
	free(buf);
	free(expected);
	cJSON_Delete(doc);
	return 0;
}
