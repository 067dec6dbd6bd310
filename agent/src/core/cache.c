#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/cache.h"
#include "core/config.h"

/* ---- the JSON writer ----
 * Hand-written rather than cJSON_PrintUnformatted for two reasons the
 * bench (bench/agent_cycle.py) measured: cJSON 1.7.15 (Debian 12) prints
 * every number with sprintf("%1.15g") and reads it back with sscanf, which
 * was 40% of a cycle's CPU; and it prints only into a buffer it grows by
 * realloc, so a message existed twice (the tree and its text) before it
 * went out. It writes the bytes cJSON writes: the same escapes
 * (print_string_ptr), the same number formats, no whitespace. */

void json_flush(struct json_out *o)
{
	if (o->f && o->held)
		fwrite(o->buf, 1, o->held, o->f);
	o->held = 0;
}

void json_put(struct json_out *o, const char *s, size_t n)
{
	if (o->f && o->buf) {
		if (o->held + n > o->cap)
			json_flush(o);
		if (n > o->cap) {
			fwrite(s, 1, n, o->f);
		} else {
			memcpy(o->buf + o->held, s, n);
			o->held += n;
		}
	} else if (o->f) {
		fwrite(s, 1, n, o->f);
	} else if (o->buf && o->len + n <= o->cap) {
		memcpy(o->buf + o->len, s, n);
	}
	o->len += n;
}

static void put_string(struct json_out *o, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	json_put(o, "\"", 1);
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	for (;;) {
		const unsigned char *run = p;
		while (*p >= 32 && *p != '"' && *p != '\\')
			p++;
		if (p > run)
			json_put(o, (const char *)run, (size_t)(p - run));
		if (!*p)
			break;
		char esc[6] = { '\\', 0, '0', '0', 0, 0 };
		size_t n = 2;
		switch (*p) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			esc[1] = 'u';
			esc[4] = hex[*p >> 4];
			esc[5] = hex[*p & 15];
			n = 6;
		}
		json_put(o, esc, n);
		p++;
	}
	json_put(o, "\"", 1);
}

void json_put_number(struct json_out *o, double d)
{
	char buf[32];
	int n;
	if (isnan(d) || isinf(d)) {
		json_put(o, "null", 4);
		return;
	}
	double mag = d < 0 ? -d : d;
	if (mag < 1e15 && d == (double)(long long)d && !(d == 0 && signbit(d))) {
		/* What "%1.15g" prints for an integer below 10^15, without
		 * printf's floating-point path. */
		unsigned long long v = (unsigned long long)(long long)mag;
		char *e = buf + sizeof(buf), *p = e;
		do
			*--p = (char)('0' + v % 10);
		while (v /= 10);
		if (d < 0)
			*--p = '-';
		json_put(o, p, (size_t)(e - p));
		return;
	}
	/* cJSON's print_number: 15 digits if they read back as the same
	 * double, else 17. */
	n = snprintf(buf, sizeof(buf), "%1.15g", d);
	double back = strtod(buf, NULL);
	double bmag = back < 0 ? -back : back, max = mag > bmag ? mag : bmag;
	double diff = back - d;
	if ((diff < 0 ? -diff : diff) > max * DBL_EPSILON)
		n = snprintf(buf, sizeof(buf), "%1.17g", d);
	json_put(o, buf, (size_t)n);
}

static void write_members(struct json_out *o, const cJSON *object)
{
	bool first = true;
	for (const cJSON *it = object->child; it; it = it->next) {
		if (!first)
			json_put(o, ",", 1);
		first = false;
		put_string(o, it->string);
		json_put(o, ":", 1);
		json_write(o, it);
	}
}

void json_write(struct json_out *o, const cJSON *item)
{
	switch (item->type & 0xff) {
	case cJSON_NULL:
		json_put(o, "null", 4);
		break;
	case cJSON_False:
		json_put(o, "false", 5);
		break;
	case cJSON_True:
		json_put(o, "true", 4);
		break;
	case cJSON_Number:
		json_put_number(o, item->valuedouble);
		break;
	case cJSON_String:
		put_string(o, item->valuestring);
		break;
	case cJSON_Raw:
		if (item->valuestring)
			json_put(o, item->valuestring, strlen(item->valuestring));
		else
			o->failed = true;
		break;
	case cJSON_Array:
		json_put(o, "[", 1);
		for (const cJSON *it = item->child; it; it = it->next) {
			if (it != item->child)
				json_put(o, ",", 1);
			json_write(o, it);
		}
		json_put(o, "]", 1);
		break;
	case cJSON_Object:
		json_write_open(o, item);
		json_put(o, "}", 1);
		break;
	default:
		o->failed = true;
	}
}

void json_write_open(struct json_out *o, const cJSON *object)
{
	json_put(o, "{", 1);
	write_members(o, object);
}

/* ---- the cache ---- */

struct cache_shape {
	struct cache_shape *next;
	unsigned refs;     /* the slots using it, and the cache's list */
	size_t n;          /* members */
	size_t len;        /* of names */
	char names[];      /* n names as JSON ("\"Name\":", with a leading comma
			    * for all but the first), each followed by a NUL */
};

enum { MAX_SHAPES = 16 };

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

static void shape_unref(struct cache_shape *sh)
{
	if (sh && --sh->refs == 0)
		free(sh);
}

static void slot_free(struct cache_slot *s)
{
	free(s->text); /* and the key, in the same allocation */
	shape_unref(s->shape);
}

/* The shape of object o, shared with earlier entries when they have the
 * same member names; a new one joins the cache's list while it has room
 * (a collector makes a handful of shapes; one that made more only loses
 * the sharing). Returns a reference for the caller. */
static struct cache_shape *shape_of(struct entry_cache *c, const cJSON *o)
{
	char scratch[1024];
	struct json_out names = { .buf = scratch, .cap = sizeof(scratch) };
	size_t n = 0;
	for (const cJSON *it = o->child; it; it = it->next, n++) {
		if (n)
			json_put(&names, ",", 1);
		put_string(&names, it->string);
		json_put(&names, ":", 2); /* and the NUL */
	}
	if (names.len <= sizeof(scratch)) {
		for (struct cache_shape *sh = c->shapes; sh; sh = sh->next) {
			if (sh->n == n && sh->len == names.len && memcmp(sh->names, scratch, names.len) == 0) {
				sh->refs++;
				return sh;
			}
		}
	}
	struct cache_shape *sh = malloc(sizeof(*sh) + names.len);
	if (!sh)
		abort();
	sh->n = n;
	sh->len = names.len;
	sh->refs = 1;
	if (names.len <= sizeof(scratch)) {
		memcpy(sh->names, scratch, names.len);
	} else {
		names = (struct json_out){ .buf = sh->names, .cap = sh->len };
		for (const cJSON *it = o->child; it; it = it->next) {
			if (names.len)
				json_put(&names, ",", 1);
			put_string(&names, it->string);
			json_put(&names, ":", 2);
		}
	}
	if (c->nshapes < MAX_SHAPES) {
		sh->next = c->shapes;
		c->shapes = sh;
		c->nshapes++;
		sh->refs++;
	}
	return sh;
}

/* The values of o's members, each followed by a NUL (JSON text holds
 * none: control characters in strings are escaped). */
static void write_values(struct json_out *out, const cJSON *o)
{
	for (const cJSON *it = o->child; it; it = it->next) {
		json_write(out, it);
		json_put(out, "", 1);
	}
}

static void reindex(struct entry_cache *c)
{
	size_t want = 16;
	while (want < c->len * 2 + 2)
		want *= 2;
	if (want != c->index_cap) {
		free(c->index);
		c->index = malloc(want * sizeof(*c->index));
		if (!c->index)
			abort();
		c->index_cap = want;
	}
	memset(c->index, 0, c->index_cap * sizeof(*c->index));
	for (size_t i = 0; i < c->len; i++) {
		if (!c->slots[i].keyed)
			continue;
		size_t h = c->slots[i].hash & (c->index_cap - 1);
		while (c->index[h])
			h = (h + 1) & (c->index_cap - 1);
		c->index[h] = (uint32_t)(i + 1);
	}
}

static struct cache_slot *lookup(struct entry_cache *c, const char *key)
{
	if (!c->index_cap)
		return NULL;
	size_t h = hash(key) & (c->index_cap - 1);
	while (c->index[h]) {
		struct cache_slot *s = &c->slots[c->index[h] - 1];
		if (s->keyed && strcmp(cache_slot_key(s), key) == 0)
			return s;
		h = (h + 1) & (c->index_cap - 1);
	}
	return NULL;
}

int cache_add(struct entry_cache *c, cJSON *entry, const char *key)
{
	if (!agent_json_is(entry, cJSON_Object)) {
		cJSON_Delete(entry); /* payload entries are objects */
		return 0;
	}
	cJSON *hc = key ? cJSON_GetObjectItemCaseSensitive(entry, "HitCount") : NULL;
	if (key) {
		struct cache_slot *s = lookup(c, key);
		if (s) {
			s->hits += agent_json_is(hc, cJSON_Number) ? hc->valuedouble : 1;
			cJSON_Delete(entry);
			return 1;
		}
		if (!hc)
			hc = cJSON_AddNumberToObject(entry, "HitCount", 1);
		else if (!agent_json_is(hc, cJSON_Number))
			cJSON_ReplaceItemInObjectCaseSensitive(entry, "HitCount", hc = cJSON_CreateNumber(1));
	}
	/* Written to the stack first, so that the text takes exactly its size;
	 * the rare larger entry is written again once its size is known. */
	char scratch[2048];
	struct json_out o = { .buf = scratch, .cap = sizeof(scratch) };
	write_values(&o, entry);
	if (o.failed || o.len > UINT32_MAX / 2) {
		cJSON_Delete(entry); /* nothing a message could carry */
		return 0;
	}
	size_t klen = key ? strlen(key) + 1 : 0;
	struct cache_slot n = { .text = malloc(o.len + klen), .len = (uint32_t)o.len, .hc = -1 };
	if (!n.text)
		abort();
	if (o.len <= sizeof(scratch)) {
		memcpy(n.text, scratch, o.len);
	} else {
		o = (struct json_out){ .buf = n.text, .cap = o.len };
		write_values(&o, entry);
	}
	if (key) {
		memcpy(n.text + o.len, key, klen);
		n.keyed = true;
		n.hash = hash(key);
	}
	int16_t i = 0;
	for (const cJSON *it = entry->child; hc && it && i < INT16_MAX; it = it->next, i++) {
		if (it == hc) {
			n.hc = i;
			n.hits = hc->valuedouble;
		}
	}
	n.shape = shape_of(c, entry);
	cJSON_Delete(entry);

	int dropped = 0;
	if (c->len >= c->limit) {
		/* The retired agent dropped the oldest entry when its cache was full. */
		slot_free(&c->slots[0]);
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
	c->slots[c->len++] = n;
	if (dropped || c->len * 2 + 2 > c->index_cap)
		reindex(c);
	else if (key) {
		size_t h = n.hash & (c->index_cap - 1);
		while (c->index[h])
			h = (h + 1) & (c->index_cap - 1);
		c->index[h] = (uint32_t)c->len;
	}
	return 0;
}

void cache_write_slot(struct json_out *o, const struct cache_slot *s)
{
	const char *name = s->shape->names, *value = s->text;
	json_put(o, "{", 1);
	for (size_t i = 0; i < s->shape->n; i++) {
		size_t nl = strlen(name), vl = strlen(value);
		json_put(o, name, nl);
		if ((int)i == s->hc)
			json_put_number(o, s->hits);
		else
			json_put(o, value, vl);
		name += nl + 1;
		value += vl + 1;
	}
	json_put(o, "}", 1);
}

struct cache_slot *cache_take(struct entry_cache *c, size_t *n)
{
	struct cache_slot *slots = c->slots;
	*n = c->len;
	c->slots = NULL;
	c->len = c->cap = 0;
	c->dropped = 0;
	if (c->index)
		memset(c->index, 0, c->index_cap * sizeof(*c->index));
	return slots;
}

void cache_slots_free(struct cache_slot *slots, size_t n)
{
	for (size_t i = 0; i < n; i++)
		slot_free(&slots[i]);
	free(slots);
}

void cache_clear(struct entry_cache *c)
{
	size_t n;
	struct cache_slot *slots = cache_take(c, &n);
	cache_slots_free(slots, n);
}

void cache_free(struct entry_cache *c)
{
	cache_clear(c);
	while (c->shapes) {
		struct cache_shape *next = c->shapes->next;
		shape_unref(c->shapes);
		c->shapes = next;
	}
	free(c->index);
	memset(c, 0, sizeof(*c));
}
