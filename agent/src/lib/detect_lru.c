#include "lib/detect_lru.h"

#include <stdlib.h>
#include <string.h>

static uint32_t hash_key(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static size_t index_of(const struct dlru *m, const void *value)
{
	return (size_t)((const unsigned char *)value - m->values) / m->value_size;
}

static void *value_at(const struct dlru *m, int32_t i)
{
	return m->values + (size_t)i * m->value_size;
}

void dlru_clear(struct dlru *m)
{
	for (size_t i = 0; i < m->nbuckets; i++)
		m->buckets[i] = -1;
	/* Nodes are handed out from `top` before any is reused, so a table
	 * never filled never touches (makes resident) its untouched pages. */
	m->top = 0;
	m->free_head = -1;
	m->head = m->tail = -1;
	m->len = 0;
}

int dlru_init(struct dlru *m, size_t capacity, size_t value_size)
{
	memset(m, 0, sizeof(*m));
	if (capacity < 1)
		capacity = 1;
	m->capacity = capacity;
	m->value_size = value_size ? value_size : 1;
	m->nbuckets = 16;
	while (m->nbuckets < capacity * 2)
		m->nbuckets *= 2;
	/* Not zeroed (calloc would write every page of a recycled heap
	 * block): nodes are handed out in order and each value is cleared
	 * when it is, so a detector pays RSS for the entries it has used, not
	 * for its capacity. */
	m->nodes = malloc(capacity * sizeof(*m->nodes));
	m->values = malloc(capacity * m->value_size);
	m->buckets = malloc(m->nbuckets * sizeof(*m->buckets));
	if (!m->nodes || !m->values || !m->buckets) {
		dlru_free(m);
		return -1;
	}
	dlru_clear(m);
	return 0;
}

void dlru_free(struct dlru *m)
{
	free(m->nodes);
	free(m->values);
	free(m->buckets);
	memset(m, 0, sizeof(*m));
}

static void unlink_recency(struct dlru *m, int32_t i)
{
	struct dlru_node *n = &m->nodes[i];
	if (n->prev >= 0)
		m->nodes[n->prev].next = n->next;
	else
		m->head = n->next;
	if (n->next >= 0)
		m->nodes[n->next].prev = n->prev;
	else
		m->tail = n->prev;
}

static void push_front(struct dlru *m, int32_t i)
{
	struct dlru_node *n = &m->nodes[i];
	n->prev = -1;
	n->next = m->head;
	if (m->head >= 0)
		m->nodes[m->head].prev = i;
	m->head = i;
	if (m->tail < 0)
		m->tail = i;
}

static int32_t find(const struct dlru *m, const char *key, uint32_t h)
{
	for (int32_t i = m->buckets[h & (m->nbuckets - 1)]; i >= 0; i = m->nodes[i].chain)
		if (m->nodes[i].hash == h && strcmp(m->nodes[i].key, key) == 0)
			return i;
	return -1;
}

static void remove_index(struct dlru *m, int32_t i)
{
	struct dlru_node *n = &m->nodes[i];
	int32_t *p = &m->buckets[n->hash & (m->nbuckets - 1)];
	while (*p != i)
		p = &m->nodes[*p].chain;
	*p = n->chain;
	unlink_recency(m, i);
	n->chain = m->free_head;
	m->free_head = i;
	m->len--;
}

/* The key as stored: longer keys are cut (two keys equal in their first 63
 * bytes share an entry, which only merges state, never loses the bound). */
static void cut_key(char k[DLRU_KEY_MAX], const char *key)
{
	size_t n = strnlen(key, DLRU_KEY_MAX - 1);
	memcpy(k, key, n);
	k[n] = 0;
}

void *dlru_peek(const struct dlru *m, const char *key)
{
	char k[DLRU_KEY_MAX];
	if (!m->nodes)
		return NULL;
	cut_key(k, key);
	int32_t i = find(m, k, hash_key(k));
	return i < 0 ? NULL : value_at(m, i);
}

void *dlru_get(struct dlru *m, const char *key, bool create, bool *created)
{
	char k[DLRU_KEY_MAX];
	if (created)
		*created = false;
	if (!m->nodes)
		return NULL;
	cut_key(k, key);
	uint32_t h = hash_key(k);
	int32_t i = find(m, k, h);
	if (i >= 0) {
		unlink_recency(m, i);
		push_front(m, i);
		return value_at(m, i);
	}
	if (!create)
		return NULL;
	if (m->free_head < 0 && m->top == m->capacity) {
		remove_index(m, m->tail);
		m->evicted++;
	}
	if (m->free_head >= 0) {
		i = m->free_head;
		m->free_head = m->nodes[i].chain;
	} else {
		i = (int32_t)m->top++;
	}
	struct dlru_node *n = &m->nodes[i];
	memcpy(n->key, k, sizeof(k));
	n->hash = h;
	n->chain = m->buckets[h & (m->nbuckets - 1)];
	m->buckets[h & (m->nbuckets - 1)] = i;
	push_front(m, i);
	m->len++;
	memset(value_at(m, i), 0, m->value_size);
	if (created)
		*created = true;
	return value_at(m, i);
}

void dlru_remove(struct dlru *m, void *value)
{
	if (value)
		remove_index(m, (int32_t)index_of(m, value));
}

const char *dlru_key(const struct dlru *m, const void *value)
{
	return m->nodes[index_of(m, value)].key;
}

void *dlru_next(const struct dlru *m, const void *value)
{
	if (!m->nodes)
		return NULL;
	int32_t i = value ? m->nodes[index_of(m, value)].prev : m->tail;
	return i < 0 ? NULL : value_at(m, i);
}

void *dlru_oldest(const struct dlru *m)
{
	return m->nodes && m->tail >= 0 ? value_at(m, m->tail) : NULL;
}
