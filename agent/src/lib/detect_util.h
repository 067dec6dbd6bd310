/* Small helpers the detectors share: reading fields of event entries,
 * leaky buckets, and matching names against allowlists. */
#ifndef AGENT_LIB_DETECT_UTIL_H
#define AGENT_LIB_DETECT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <cjson/cJSON.h>

struct agent_ctx;
struct agent_config;
struct alert;

/* A field's string value, or "" when missing or not a string. */
const char *dfield_str(const cJSON *entry, const char *key);
/* A field's number (a numeric string counts), or def. */
double dfield_num(const cJSON *entry, const char *key, double def);
bool dfield_bool(const cJSON *entry, const char *key);
/* "2026-11-22T01:02:03Z" -> time_t, or (time_t)-1. */
time_t dparse_utc(const char *text);

/* Leaky bucket (CrowdSec style): each event adds its weight, one unit
 * leaks out every `leak_seconds`. */
struct dbucket {
	double level;
	double last;    /* time of the last update, seconds */
};
/* Adds weight at time t (seconds); returns the new level. */
double dbucket_add(struct dbucket *b, double t, double weight, double leak_seconds);
/* The level at time t without adding. */
double dbucket_level(const struct dbucket *b, double t, double leak_seconds);
/* The wall clock jumped by `jump` seconds: an untouched bucket stays so. */
void dbucket_shift(struct dbucket *b, long jump);

/* The last path component ("/usr/bin/xmrig (deleted)" -> "xmrig"), written
 * to out without a " (deleted)" suffix. */
void dbasename(const char *path, char *out, size_t size);
/* A CFG_LIST's items, kept by a detector from configure() to the next
 * change (the core's pointers stay valid that long). */
struct dlist {
	const char *const *items;
	size_t n;
};
void dlist_get(struct dlist *l, const struct agent_config *cfg, const char *key);
bool dlist_has(const struct dlist *l, const char *item);
/* Whether the executable path (or the name) matches any item: a pattern
 * with '/' is a glob over the path, otherwise over the base name or the
 * process name. */
bool dname_in(const struct dlist *l, const char *exe, const char *name);
/* Case-insensitive substring search. */
bool dcontains_nocase(const char *hay, const char *needle);
/* An incident key for an address: the address itself, or a keyed hash
 * of it when Agent_MaskRemoteAddresses is on (incident keys are sent
 * and are not masked by the core). */
void dincident_addr(const struct agent_ctx *ctx, const char *prefix, const char *addr, char *out, size_t size);
/* agent_format_utc into obj[key] */
void dadd_utc(cJSON *obj, const char *key, time_t t);
/* An entry's SampleTimeMs, or the monotonic clock when it has none. */
long long dsample_ms(const struct agent_ctx *ctx, const cJSON *entry);
/* Raise an alert of `kind`: a detector declares each kind once (a static
 * struct alert with the name, MITRE id, remediation, and the severity and
 * description when they never change); severity and description, when not
 * NULL, are this alert's. */
void dalert(struct agent_ctx *ctx, const struct alert *kind, const char *severity, const char *description,
	    const char *incident, cJSON *evidence);

#endif
