#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/cache.h"

static size_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return (size_t)h;
}

void cache_init(struct entry_cache *c, size_t limit)
{
	memset(c, 0, sizeof(*c));
	c->limit = limit ? limit : 1;
}

void cache_set_limit(struct entry_cache *c, size_t limit)
{
	c->limit = limit ? limit : 1;
}

static void reindex(struct entry_cache *c)
{
	size_t want = 16;
	while (want < c->len * 2 + 2)
		want *= 2;
	if (want != c->index_cap) {
		free(c->index);
		c->index = malloc(want * sizeof(size_t));
		if (!c->index)
			abort();
		c->index_cap = want;
	}
	memset(c->index, 0, c->index_cap * sizeof(size_t));
	for (size_t i = 0; i < c->len; i++) {
		if (!c->slots[i].key)
			continue;
		size_t h = c->slots[i].hash & (c->index_cap - 1);
		while (c->index[h])
			h = (h + 1) & (c->index_cap - 1);
		c->index[h] = i + 1;
	}
}

static struct cache_slot *lookup(struct entry_cache *c, const char *key)
{
	if (!c->index_cap)
		return NULL;
	size_t h = hash(key) & (c->index_cap - 1);
	while (c->index[h]) {
		struct cache_slot *s = &c->slots[c->index[h] - 1];
		if (s->key && strcmp(s->key, key) == 0)
			return s;
		h = (h + 1) & (c->index_cap - 1);
	}
	return NULL;
}

int cache_add(struct entry_cache *c, cJSON *entry, const char *key)
{
	if (key) {
		struct cache_slot *s = lookup(c, key);
		if (s) {
			cJSON *hc = cJSON_GetObjectItemCaseSensitive(s->entry, "HitCount");
			double add = 1;
			cJSON *nhc = cJSON_GetObjectItemCaseSensitive(entry, "HitCount");
			if (cJSON_IsNumber(nhc))
				add = nhc->valuedouble;
			if (cJSON_IsNumber(hc))
				cJSON_SetNumberValue(hc, hc->valuedouble + add);
			else
				cJSON_AddNumberToObject(s->entry, "HitCount", 1 + add);
			cJSON_Delete(entry);
			return 1;
		}
	}
	int dropped = 0;
	if (c->len >= c->limit) {
		/* The retired agent dropped the oldest entry when its cache was full. */
		cJSON_Delete(c->slots[0].entry);
		free(c->slots[0].key);
		memmove(c->slots, c->slots + 1, (c->len - 1) * sizeof(*c->slots));
		c->len--;
		c->dropped++;
		dropped = 1;
	}
	if (c->len == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 16;
		c->slots = realloc(c->slots, c->cap * sizeof(*c->slots));
		if (!c->slots)
			abort();
	}
	if (key && !cJSON_GetObjectItemCaseSensitive(entry, "HitCount"))
		cJSON_AddNumberToObject(entry, "HitCount", 1);
	struct cache_slot *s = &c->slots[c->len++];
	s->key = key ? strdup(key) : NULL;
	s->hash = key ? hash(key) : 0;
	s->entry = entry;
	if (dropped || c->len * 2 + 2 > c->index_cap)
		reindex(c);
	else if (key) {
		size_t h = s->hash & (c->index_cap - 1);
		while (c->index[h])
			h = (h + 1) & (c->index_cap - 1);
		c->index[h] = c->len;
	}
	return 0;
}

cJSON *cache_take(struct entry_cache *c)
{
	cJSON *arr = cJSON_CreateArray();
	for (size_t i = 0; i < c->len; i++) {
		cJSON_AddItemToArray(arr, c->slots[i].entry);
		free(c->slots[i].key);
	}
	c->len = 0;
	c->dropped = 0;
	if (c->index)
		memset(c->index, 0, c->index_cap * sizeof(size_t));
	return arr;
}

void cache_clear(struct entry_cache *c)
{
	cJSON_Delete(cache_take(c));
}

void cache_free(struct entry_cache *c)
{
	cache_clear(c);
	free(c->slots);
	free(c->index);
	memset(c, 0, sizeof(*c));
}
