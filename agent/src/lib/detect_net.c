#include "lib/detect_net.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/detect_util.h"

bool dnet_parse(const char *text, struct dnet_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (!text || !*text)
		return false;
	if (strchr(text, ':')) {
		if (inet_pton(AF_INET6, text, out->a) != 1)
			return false;
		static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		if (memcmp(out->a, mapped, 12) == 0) {
			memmove(out->a, out->a + 12, 4);
			memset(out->a + 4, 0, 12);
			out->family = 4;
		} else {
			out->family = 6;
		}
		return true;
	}
	if (inet_pton(AF_INET, text, out->a) != 1)
		return false;
	out->family = 4;
	return true;
}

bool dnet_is_loopback(const struct dnet_addr *a)
{
	if (a->family == 4)
		return a->a[0] == 127;
	static const uint8_t one[16] = { [15] = 1 };
	return memcmp(a->a, one, 16) == 0;
}

bool dnet_is_any(const struct dnet_addr *a)
{
	static const uint8_t zero[16];
	return memcmp(a->a, zero, 16) == 0;
}

bool dnet_text_is_local(const char *text)
{
	struct dnet_addr a;
	return !dnet_parse(text, &a) || dnet_is_loopback(&a) || dnet_is_any(&a);
}

static void mask_bits(struct dnet_addr *a, int bits)
{
	int total = a->family == 4 ? 32 : 128;
	for (int i = bits; i < total; i++)
		a->a[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
}

bool dnet_cidr_parse(const char *text, struct dnet_cidr *out)
{
	char buf[64];
	if (!text || strlen(text) >= sizeof(buf))
		return false;
	snprintf(buf, sizeof(buf), "%s", text);
	char *slash = strchr(buf, '/');
	if (slash)
		*slash = 0;
	if (!dnet_parse(buf, &out->net))
		return false;
	int max = out->net.family == 4 ? 32 : 128;
	out->bits = max;
	if (slash) {
		char *end;
		long b = strtol(slash + 1, &end, 10);
		/* "::ffff:1.2.3.0/120" is an IPv4 network of /24 */
		if (strchr(buf, ':') && out->net.family == 4)
			b -= 96;
		if (*end || end == slash + 1 || b < 0 || b > max)
			return false;
		out->bits = (int)b;
	}
	mask_bits(&out->net, out->bits);
	return true;
}

static int cmp_cidr(const void *pa, const void *pb)
{
	const struct dnet_cidr *a = pa, *b = pb;
	if (a->net.family != b->net.family)
		return a->net.family - b->net.family;
	if (a->bits != b->bits)
		return a->bits - b->bits;
	return memcmp(a->net.a, b->net.a, 16);
}

bool dnet_set_add(struct dnet_set *s, const char *text)
{
	struct dnet_cidr c;
	if (!dnet_cidr_parse(text, &c))
		return false;
	if (s->len == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct dnet_cidr *n = realloc(s->items, cap * sizeof(*n));
		if (!n)
			return false;
		s->items = n;
		s->cap = cap;
	}
	s->items[s->len++] = c;
	s->sorted = false;
	return true;
}

int dnet_set_add_json(struct dnet_set *s, const cJSON *v)
{
	int idx = 0;
	if (cJSON_IsArray(v)) {
		const cJSON *it;
		cJSON_ArrayForEach(it, v) {
			if (!cJSON_IsString(it) || !dnet_set_add(s, it->valuestring))
				return idx;
			idx++;
		}
		return -1;
	}
	if (!cJSON_IsString(v))
		return v && !cJSON_IsNull(v) ? 0 : -1;
	const char *p = v->valuestring;
	while (*p) {
		size_t n = strcspn(p, ", \t\n");
		if (n) {
			char item[64];
			if (n >= sizeof(item))
				return idx;
			memcpy(item, p, n);
			item[n] = 0;
			if (!dnet_set_add(s, item))
				return idx;
			idx++;
		}
		p += n;
		if (*p)
			p++;
	}
	return -1;
}

const struct dnet_cidr *dnet_set_match(struct dnet_set *s, const struct dnet_addr *a)
{
	if (!s->len)
		return NULL;
	if (!s->sorted) {
		qsort(s->items, s->len, sizeof(*s->items), cmp_cidr);
		s->sorted = true;
	}
	/* Walk the distinct prefix lengths of this family, most specific last. */
	size_t i = 0;
	while (i < s->len) {
		const struct dnet_cidr *first = &s->items[i];
		size_t j = i;
		while (j < s->len && s->items[j].net.family == first->net.family && s->items[j].bits == first->bits)
			j++;
		if (first->net.family == a->family) {
			struct dnet_cidr key = { *a, first->bits };
			mask_bits(&key.net, key.bits);
			const struct dnet_cidr *hit = bsearch(&key, s->items + i, j - i, sizeof(key), cmp_cidr);
			if (hit)
				return hit;
		}
		i = j;
	}
	return NULL;
}

const struct dnet_cidr *dnet_set_match_text(struct dnet_set *s, const char *text)
{
	struct dnet_addr a;
	return dnet_parse(text, &a) ? dnet_set_match(s, &a) : NULL;
}

const char *dnet_check_list(const cJSON *v)
{
	struct dnet_set s = { 0 };
	int bad = dnet_set_add_json(&s, v);
	dnet_set_clear(&s);
	return bad < 0 ? NULL : "a list of IP addresses or CIDR networks such as \"10.0.0.0/8,192.0.2.7\"";
}

void dnet_cidr_format(const struct dnet_cidr *c, char *out, size_t size)
{
	char buf[INET6_ADDRSTRLEN];
	inet_ntop(c->net.family == 4 ? AF_INET : AF_INET6, c->net.a, buf, sizeof(buf));
	snprintf(out, size, "%s/%d", buf, c->bits);
}

void dnet_set_clear(struct dnet_set *s)
{
	free(s->items);
	memset(s, 0, sizeof(*s));
}

static const char *ports_add_text(struct dnet_ports *p, const char *t)
{
	while (*t) {
		char *end;
		while (*t == ' ' || *t == ',')
			t++;
		if (!*t)
			break;
		long a = strtol(t, &end, 10), b = a;
		if (end == t)
			return "port numbers or ranges such as \"22,80,8000-8100\"";
		if (*end == '-') {
			const char *s = end + 1;
			b = strtol(s, &end, 10);
			if (end == s)
				return "port numbers or ranges such as \"22,80,8000-8100\"";
		}
		if (a < 0 || b > 65535 || a > b || (*end && *end != ',' && *end != ' '))
			return "port numbers from 0 to 65535 or ranges such as \"8000-8100\"";
		for (long x = a; x <= b; x++)
			p->bits[x >> 3] |= (uint8_t)(1u << (x & 7));
		t = end;
	}
	return NULL;
}

const char *dnet_ports_parse(struct dnet_ports *p, const cJSON *v)
{
	memset(p, 0, sizeof(*p));
	if (!v || cJSON_IsNull(v))
		return NULL;
	if (cJSON_IsString(v))
		return ports_add_text(p, v->valuestring);
	if (!cJSON_IsArray(v))
		return "a list of ports such as \"22,80,8000-8100\"";
	const cJSON *it;
	cJSON_ArrayForEach(it, v) {
		const char *why;
		if (cJSON_IsNumber(it)) {
			char buf[32];
			snprintf(buf, sizeof(buf), "%.0f", it->valuedouble);
			if (it->valuedouble != (double)(long)it->valuedouble)
				return "whole port numbers";
			why = ports_add_text(p, buf);
		} else if (cJSON_IsString(it)) {
			why = ports_add_text(p, it->valuestring);
		} else {
			why = "a list of ports such as \"22,80,8000-8100\"";
		}
		if (why)
			return why;
	}
	return NULL;
}

const char *dnet_check_ports(const cJSON *v)
{
	struct dnet_ports *p = malloc(sizeof(*p));
	if (!p)
		return "a list of ports (out of memory)";
	const char *why = dnet_ports_parse(p, v);
	free(p);
	return why;
}
