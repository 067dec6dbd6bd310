/* A bounded cache of payload entries for one collector, aggregating
 * duplicates by key (the retired agent's behaviour: a duplicate raises
 * HitCount; when full the oldest entry is dropped), and the JSON writer
 * that serializes entries and messages.
 *
 * Entries wait in the cache as JSON text, not as cJSON trees: a tree
 * takes about four times the memory of its text (a 64-byte node and a
 * malloc'd value per field), and hundreds of entries wait between two
 * messages. */
#ifndef AGENT_CACHE_H
#define AGENT_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

/* Where JSON text goes: a stream (through buf, cap bytes, when given:
 * the writer puts out many small pieces; json_flush at the end), a buffer
 * of cap bytes (what does not fit is only counted), or nowhere (f and buf
 * NULL: only len counts). */
struct json_out {
	FILE *f;
	char *buf;
	size_t cap;
	size_t len;          /* bytes written (or counted) so far */
	size_t held;         /* with f: bytes in buf not yet written to f */
	bool failed;         /* an item cJSON could not print either (cJSON_Invalid, raw NULL) */
};
void json_put(struct json_out *o, const char *s, size_t n);
void json_flush(struct json_out *o);
/* The same bytes as cJSON_PrintUnformatted(item). */
void json_write(struct json_out *o, const cJSON *item);
/* An object's opening brace and members, without its closing brace. */
void json_write_open(struct json_out *o, const cJSON *object);
void json_put_number(struct json_out *o, double d);

/* The member names of entries, as JSON ("Name": with the comma before
 * all but the first), kept once per cache and shared by the entries that
 * have these members in this order: in a socket or process entry the names
 * are half the text. */
struct cache_shape;

struct cache_slot {
	char *text;      /* the values of the entry's members as JSON, each
			  * followed by a NUL, then (keyed) its key: one allocation */
	struct cache_shape *shape;
	size_t hash;     /* of the key, kept so that reindexing hashes no string */
	double hits;     /* HitCount now: a duplicate raises it without touching text */
	uint32_t len;    /* of the values and their NULs */
	int16_t hc;      /* which member is HitCount (-1: none) */
	bool keyed;
};
/* The key of an aggregated entry, or NULL. */
static inline const char *cache_slot_key(const struct cache_slot *s)
{
	return s->keyed ? s->text + s->len : NULL;
}

struct entry_cache {
	struct cache_slot *slots;  /* insertion order, oldest first */
	size_t len, cap;
	size_t limit;
	size_t dropped;            /* since the last take */
	/* open-addressing index of slots by key: index into slots + 1, 0 empty */
	uint32_t *index;
	size_t index_cap;
	struct cache_shape *shapes; /* those seen, most recent first (bounded) */
	size_t nshapes;
};

void cache_init(struct entry_cache *c, size_t limit);
void cache_set_limit(struct entry_cache *c, size_t limit);
/* Takes ownership of entry (a JSON object) and deletes it. Returns 1 when
 * a duplicate was merged, 0 when added, and counts a drop when the oldest
 * had to go. */
int cache_add(struct entry_cache *c, cJSON *entry, const char *key);
/* Moves every entry out (the caller frees them with cache_slots_free) and
 * empties the cache; *n gets their count. */
struct cache_slot *cache_take(struct entry_cache *c, size_t *n);
/* One entry as JSON, with its current HitCount. */
void cache_write_slot(struct json_out *o, const struct cache_slot *s);
void cache_slots_free(struct cache_slot *slots, size_t n);
void cache_clear(struct entry_cache *c);
void cache_free(struct entry_cache *c);

#endif
