/* A bounded map for detector state: string keys (at most 63 bytes) to
 * fixed-size zero-initialised values, with least-recently-used eviction,
 * so a flood of distinct sources or pids cannot grow memory. */
#ifndef AGENT_LIB_DETECT_LRU_H
#define AGENT_LIB_DETECT_LRU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DLRU_KEY_MAX 64

struct dlru_node {
	char key[DLRU_KEY_MAX];
	uint32_t hash;
	int32_t prev, next;  /* recency list: head is the most recent */
	int32_t chain;       /* next node in the same hash bucket */
};

struct dlru {
	struct dlru_node *nodes;
	unsigned char *values;
	int32_t *buckets;
	size_t capacity, value_size, nbuckets, len;
	size_t top;          /* nodes from here on were never handed out */
	int32_t head, tail, free_head;
	size_t evicted;      /* how many entries were pushed out when full */
};

/* Returns 0, or -1 when out of memory. capacity >= 1. */
int dlru_init(struct dlru *m, size_t capacity, size_t value_size);
void dlru_free(struct dlru *m);
/* The value for key (marked most recent), or NULL. With create, a missing
 * key gets a zeroed value, evicting the least recent entry when full; then
 * *created says whether it is new (created may be NULL). */
void *dlru_get(struct dlru *m, const char *key, bool create, bool *created);
/* The value for key without changing its recency, or NULL. */
void *dlru_peek(const struct dlru *m, const char *key);
void dlru_remove(struct dlru *m, void *value);
const char *dlru_key(const struct dlru *m, const void *value);
/* Iterate from the least recent: v = dlru_next(m, NULL); v; v = dlru_next(m, v).
 * Removing the current value is allowed if the caller fetched the next first. */
void *dlru_next(const struct dlru *m, const void *value);
/* The least recent value (the next to be evicted), or NULL. */
void *dlru_oldest(const struct dlru *m);
/* Drop everything; keep the capacity. */
void dlru_clear(struct dlru *m);

#endif
