#include "lib/detect_util.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "core/agent.h"

const char *dfield_str(const cJSON *entry, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(entry, key);
	return cJSON_IsString(v) ? v->valuestring : "";
}

double dfield_num(const cJSON *entry, const char *key, double def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(entry, key);
	if (cJSON_IsNumber(v))
		return v->valuedouble;
	if (cJSON_IsString(v) && *v->valuestring) {
		char *end;
		double d = strtod(v->valuestring, &end);
		if (!*end)
			return d;
	}
	return def;
}

bool dfield_bool(const cJSON *entry, const char *key)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(entry, key));
}

time_t dparse_utc(const char *text)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = text && *text ? strptime(text, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
	if (!end || (*end && *end != 'Z' && *end != '.'))
		return (time_t)-1;
	return timegm(&tm);
}

/* Units leak out whole, one per leak period (as CrowdSec's buckets do), so
 * "5 with a 10 s leak" means 5 failures within one 10 s period trip it. */
static double leaked(const struct dbucket *b, double t, double leak_seconds)
{
	if (t <= b->last || leak_seconds <= 0)
		return 0;
	return (double)(long long)((t - b->last) / leak_seconds);
}

double dbucket_level(const struct dbucket *b, double t, double leak_seconds)
{
	double level = b->level - leaked(b, t, leak_seconds);
	return level < 0 ? 0 : level;
}

void dbucket_shift(struct dbucket *b, long jump)
{
	if (b->last)
		b->last += (double)jump;
}

double dbucket_add(struct dbucket *b, double t, double weight, double leak_seconds)
{
	double n = leaked(b, t, leak_seconds);
	if (b->level <= 0 || b->level - n <= 0) {
		b->level = 0;
		b->last = t; /* an empty bucket starts its leak period now */
	} else {
		b->level -= n;
		b->last += n * leak_seconds;
	}
	b->level += weight;
	return b->level;
}

void dbasename(const char *path, char *out, size_t size)
{
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	size_t n = strlen(base);
	static const char deleted[] = " (deleted)";
	if (n >= sizeof(deleted) - 1 && strcmp(base + n - (sizeof(deleted) - 1), deleted) == 0)
		n -= sizeof(deleted) - 1;
	if (n >= size)
		n = size - 1;
	memcpy(out, base, n);
	out[n] = 0;
}

void dlist_get(struct dlist *l, const struct agent_config *cfg, const char *key)
{
	l->n = config_list(cfg, key, &l->items);
}

bool dlist_has(const struct dlist *l, const char *item)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->items[i], item) == 0)
			return true;
	return false;
}

static int plain_match(const char *pattern, const char *s, int flags)
{
	(void)flags;
	return strcmp(pattern, s);
}

bool dname_in(const struct dlist *l, const char *exe, const char *name)
{
	const char *const *items = l->items;
	size_t n = l->n;
	char base[256];
	dbasename(exe ? exe : "", base, sizeof(base));
	for (size_t i = 0; i < n; i++) {
		const char *p = items[i];
		/* most items are plain names: strcmp is fnmatch's answer for them */
		int (*match)(const char *, const char *, int) = strpbrk(p, "*?[\\") ? fnmatch : plain_match;
		if (strchr(p, '/')) {
			if (exe && match(p, exe, 0) == 0)
				return true;
		} else if ((*base && match(p, base, 0) == 0) || (name && *name && match(p, name, 0) == 0)) {
			return true;
		}
	}
	return false;
}

bool dcontains_nocase(const char *hay, const char *needle)
{
	return hay && needle && *needle && strcasestr(hay, needle) != NULL;
}

void dadd_utc(cJSON *obj, const char *key, time_t t)
{
	char ts[21];
	agent_format_utc(t, ts);
	cJSON_AddStringToObject(obj, key, ts);
}

void dincident_addr(const struct agent_ctx *ctx, const char *prefix, const char *addr, char *out, size_t size)
{
	if (!config_bool(agent_config(ctx), "Agent_MaskRemoteAddresses")) {
		snprintf(out, size, "%s%s", prefix, addr);
		return;
	}
	/* Keyed with a per-run secret: an IPv4 address could otherwise be
	 * recovered from its hash by trying all of them. */
	static unsigned char key[16];
	static bool keyed;
	if (!keyed) {
		if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key))
			memset(key, 0xa5, sizeof(key));
		keyed = true;
	}
	unsigned long long h = 1469598103934665603ULL;
	for (size_t i = 0; i < sizeof(key); i++)
		h = (h ^ key[i]) * 1099511628211ULL;
	for (const char *p = addr; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	snprintf(out, size, "%saddr-%012llx", prefix, h & 0xffffffffffffULL);
}

long long dsample_ms(const struct agent_ctx *ctx, const cJSON *entry)
{
	return (long long)dfield_num(entry, "SampleTimeMs", (double)agent_monotonic_ms(ctx));
}

void dalert(struct agent_ctx *ctx, const struct alert *kind, const char *severity, const char *description,
	    const char *incident, cJSON *evidence)
{
	struct alert a = *kind;
	a.severity = severity ? severity : a.severity;
	a.description = description ? description : a.description;
	a.incident = incident;
	a.evidence = evidence;
	agent_alert(ctx, &a);
}
