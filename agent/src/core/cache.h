/* A bounded cache of payload entries for one collector, aggregating
 * duplicates by key (the retired agent's behaviour: a duplicate raises
 * HitCount; when full the oldest entry is dropped). */
#ifndef AGENT_CACHE_H
#define AGENT_CACHE_H

#include <stddef.h>

#include <cjson/cJSON.h>

struct cache_slot {
	char *key;       /* NULL: not aggregated */
	size_t hash;     /* of key, kept so that reindexing hashes no string */
	cJSON *entry;
	unsigned long long seq;
};

struct entry_cache {
	struct cache_slot *slots;  /* insertion order, oldest first */
	size_t len, cap;
	size_t limit;
	size_t dropped;            /* since the last take */
	/* open-addressing index of slots by key: index into slots + 1, 0 empty */
	size_t *index;
	size_t index_cap;
};

void cache_init(struct entry_cache *c, size_t limit);
void cache_set_limit(struct entry_cache *c, size_t limit);
/* Takes ownership of entry. Returns 1 when a duplicate was merged, 0 when
 * added, and counts a drop when the oldest had to go. */
int cache_add(struct entry_cache *c, cJSON *entry, const char *key);
/* Moves every entry into a new JSON array (caller frees) and empties the cache. */
cJSON *cache_take(struct entry_cache *c);
void cache_clear(struct entry_cache *c);
void cache_free(struct entry_cache *c);

#endif
