/* The agent's core: feature slots, the message model, alerts, the
 * scheduler and the event loop. It knows features only through the
 * registry tables. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"

/* Arrays of characters, not of pointers: a pointer in a position-independent
 * binary costs 8 bytes and a 24-byte relocation (docs/footprint.md). */
static const char priority_names[][7] = { "High", "Medium", "Low" };
static const char category_names[][11] = { "Periodic", "Aggregated", "Triggered" };
static const char level_names[][8] = { "debug", "info", "warning", "error" };

/* ---- time ---- */

time_t agent_now(const struct agent_ctx *ctx)
{
	if (ctx && ctx->virtual_clock)
		return ctx->virtual_now;
	/* clock_gettime rather than time(3): agent_monotonic_ms needs it
	 * anyway, and each libc function used maps its 64 KB of code around it
	 * (the kernel's fault-around), which counts in the agent's RSS. */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec;
}

long long agent_monotonic_ms(const struct agent_ctx *ctx)
{
	if (ctx && ctx->virtual_clock)
		return ctx->virtual_ms;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void agent_format_utc(time_t t, char out[21])
{
	/* Every entry has a timestamp, and a pass makes hundreds within the
	 * same second. */
	static time_t last = -1;
	static char last_text[21];
	if (t == last) {
		memcpy(out, last_text, 21);
		return;
	}
	/* Civil from days (H. Hinnant's algorithm) rather than gmtime_r and
	 * strftime (with the fallback's strcpy, three imported functions: the
	 * same size, and less of libc mapped): the same text for the years
	 * 1000-9999. Outside them strftime wrote another width, and the clock
	 * is never there: the agent writes the epoch. */
	static const long long first = -30610224000LL, end = 253402300800LL; /* 1000-01-01, 10000-01-01 */
	unsigned long long secs = (unsigned long long)((long long)t >= first && (long long)t < end ? t : 0) - first;
	unsigned sod = (unsigned)(secs % 86400);
	unsigned z = (unsigned)(secs / 86400) + 365183; /* days since 0000-03-01 */
	unsigned era = z / 146097, doe = z % 146097;
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	unsigned v[6] = { yoe + era * 400 + (mp >= 10), mp < 10 ? mp + 3 : mp - 9, doy - (153 * mp + 2) / 5 + 1,
			  sod / 3600, sod / 60 % 60, sod % 60 };
	static const unsigned char last_digit[6] = { 3, 6, 9, 12, 15, 18 };
	memcpy(out, "0000-00-00T00:00:00Z", 21);
	for (int i = 0; i < 6; i++)
		for (char *p = out + last_digit[i]; v[i]; v[i] /= 10)
			*p-- = (char)('0' + v[i] % 10);
	last = t;
	memcpy(last_text, out, 21);
}

static void uuid4(char out[37])
{
	unsigned char b[16];
	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
		/* getrandom only fails before the pool is seeded on very old
		 * kernels; ids need uniqueness, not secrecy. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
		for (int i = 0; i < 16; i++) {
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
			b[i] = (unsigned char)(x >> 56);
		}
	}
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	/* By hand rather than "%02x" sixteen times: printf's padding code is
	 * 64 KB of libc the agent otherwise never maps (see agent_now). */
	static const char hex[] = "0123456789abcdef";
	char *o = out;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = hex[b[i] >> 4];
		*o++ = hex[b[i] & 15];
	}
	*o = 0;
}

/* ---- logging and counters ---- */

void agent_log(const struct agent_ctx *ctx, const char *level, const char *fmt, ...)
{
	int lv = 1;
	for (int i = 0; i < 4; i++)
		if (strcmp(level, level_names[i]) == 0)
			lv = i;
	if (ctx && lv < ctx->log_level)
		return;
	const char *who = "core";
	if (ctx && ctx->current)
		who = ctx->current->c->name;
	else if (ctx && ctx->current_detector)
		who = ctx->current_detector->name;
	else if (ctx && ctx->in_transport && ctx->transport)
		who = ctx->transport->name;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* One line per message: a hostile string must not forge log lines. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "defender-iot-agent: %s: %s: %s\n", level, who, msg);
}

void agent_count(struct agent_ctx *ctx, const char *what, const char *reason, long n)
{
	cJSON *w = cJSON_GetObjectItemCaseSensitive(ctx->counters, what);
	if (!w)
		w = cJSON_AddObjectToObject(ctx->counters, what);
	cJSON *r = cJSON_GetObjectItemCaseSensitive(w, reason);
	if (r) {
		/* what cJSON_SetNumberValue does, without importing it */
		r->valuedouble += (double)n;
		r->valueint = r->valuedouble >= 2147483647.0 ? 2147483647 : (int)r->valuedouble;
	} else
		cJSON_AddNumberToObject(w, reason, (double)n);
}

const cJSON *agent_counters(const struct agent_ctx *ctx)
{
	return ctx->counters;
}

const struct agent_config *agent_config(const struct agent_ctx *ctx)
{
	return ctx->config;
}

const char *agent_state_dir(const struct agent_ctx *ctx)
{
	return ctx->state_dir;
}

/* ---- privacy ---- */

#ifndef AGENT_NO_MASK_ADDRESSES
static void mask_address(const struct agent_ctx *ctx, const char *addr, char *out, size_t size)
{
	/* A keyed hash: the same address maps to the same token within one run,
	 * so repeated contacts stay visible, but the address is not sent. */
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < sizeof(ctx->mask_key); i++)
		h = (h ^ ctx->mask_key[i]) * 1099511628211ULL;
	for (const char *p = addr; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	snprintf(out, size, "masked-%012llx", (unsigned long long)(h & 0xffffffffffffULL));
}

/* Replace every RemoteAddress value (and RemoteAddresses item) under v. */
static void mask_tree(const struct agent_ctx *ctx, cJSON *v)
{
	cJSON *it;
	cJSON_ArrayForEach(it, v) {
		bool one = it->string && strcmp(it->string, "RemoteAddress") == 0;
		bool many = it->string && strcmp(it->string, "RemoteAddresses") == 0;
		if (one && agent_json_is(it, cJSON_String) && *it->valuestring) {
			char out[32];
			mask_address(ctx, it->valuestring, out, sizeof(out));
			cJSON_SetValuestring(it, out);
		} else if (many && agent_json_is(it, cJSON_Array)) {
			cJSON *a;
			cJSON_ArrayForEach(a, it) {
				if (agent_json_is(a, cJSON_String)) {
					char out[32];
					mask_address(ctx, a->valuestring, out, sizeof(out));
					cJSON_SetValuestring(a, out);
				}
			}
		} else if (agent_json_is(it, cJSON_Object) || agent_json_is(it, cJSON_Array)) {
			mask_tree(ctx, it);
		}
	}
}
#endif

/* ---- reporting ---- */

/* sample: a typed sample, for detectors with on_sample (entry is NULL then). */
static void dispatch(struct agent_ctx *ctx, const char *event, const cJSON *entry, const void *sample)
{
	if (!agent_detectors[0])
		return; /* a build without detectors: the code goes (link-time optimisation) */
	const struct detector *saved = ctx->current_detector;
	struct collector_slot *saved_c = ctx->current;
	ctx->current = NULL;
	for (size_t i = 0; i < ctx->ndetectors; i++) {
		struct detector_slot *d = &ctx->detectors[i];
		ctx->current_detector = d->d;
		if (sample && d->d->on_sample)
			d->d->on_sample(ctx, d->state, event, sample);
		else if (d->d->on_entry && (entry || (entry = agent_sample_json(ctx))))
			d->d->on_entry(ctx, d->state, event, entry);
	}
	ctx->current_detector = saved;
	ctx->current = saved_c;
}

void agent_report(struct agent_ctx *ctx, cJSON *entry, const char *key)
{
	struct collector_slot *s = ctx->current;
	if (!s || !entry) {
		cJSON_Delete(entry);
		return;
	}
	dispatch(ctx, s->c->event_name, entry, NULL);
	if (s->c->category != CATEGORY_AGGREGATED)
		key = NULL;
	/* Masked now rather than when sent: the entry waits in the cache as
	 * text. A configuration that changes the setting first sends what was
	 * collected (agent_apply_desired, reload_config). */
#ifndef AGENT_NO_MASK_ADDRESSES
	if (ctx->mask_remote)
		mask_tree(ctx, entry);
#endif
	size_t before = s->cache.dropped;
	cache_add(&s->cache, entry, key);
	if (s->cache.dropped != before) {
		agent_count(ctx, s->c->event_name, "dropped: cache full", 1);
		if (before == 0)
			agent_warn(ctx, "cache of %zu entries is full; dropping the oldest (raise %s_CacheSize)",
				   s->cache.limit, s->c->event_name);
	}
}

void agent_observe(struct agent_ctx *ctx, const char *kind, const cJSON *entry)
{
	if (entry)
		dispatch(ctx, kind, entry, NULL);
}

void agent_observe_sample(struct agent_ctx *ctx, const char *kind, const void *sample,
			  cJSON *(*to_json)(const void *sample))
{
	if (!sample)
		return;
	ctx->sample = sample;
	ctx->sample_to_json = to_json;
	dispatch(ctx, kind, NULL, sample);
	cJSON_Delete(ctx->sample_json);
	ctx->sample_json = NULL;
	ctx->sample = NULL;
}

const cJSON *agent_sample_json(struct agent_ctx *ctx)
{
	if (!ctx->sample_json && ctx->sample)
		ctx->sample_json = ctx->sample_to_json(ctx->sample);
	return ctx->sample_json;
}

bool agent_observed(const struct agent_ctx *ctx)
{
	for (size_t i = 0; i < ctx->ndetectors; i++)
		if (ctx->detectors[i].d->on_entry || ctx->detectors[i].d->on_sample)
			return true;
	return false;
}

/* ---- alerts ---- */

/* An event's header and, unless payload is NULL (the core writes the
 * cached entries in its place), its payload of `entries` entries. */
static cJSON *new_event(const char *type, const char *name, enum event_category cat, cJSON *payload,
			size_t entries, time_t now)
{
	char id[37], ts[21];
	uuid4(id);
	agent_format_utc(now, ts);
	cJSON *ev = cJSON_CreateObject();
	cJSON_AddStringToObject(ev, "EventType", type);
	cJSON_AddStringToObject(ev, "Category", category_names[cat]);
	cJSON_AddStringToObject(ev, "Name", name);
	cJSON_AddBoolToObject(ev, "IsEmpty", entries == 0);
	cJSON_AddStringToObject(ev, "PayloadSchemaVersion", "1.0");
	cJSON_AddStringToObject(ev, "Id", id);
	cJSON_AddStringToObject(ev, "TimestampUTC", ts);
	if (payload)
		cJSON_AddItemToObject(ev, "Payload", payload);
	return ev;
}

static int incident_find(const struct agent_ctx *ctx, const char *k)
{
	int i = 0;
	const cJSON *it;
	cJSON_ArrayForEach(it, ctx->incidents) {
		if (strcmp(it->valuestring, k) == 0)
			return i;
		i++;
	}
	return -1;
}

void agent_alert(struct agent_ctx *ctx, const struct alert *a)
{
	char key[512];
	snprintf(key, sizeof(key), "%s\x1f%s", a->name, a->incident ? a->incident : "");
	if (incident_find(ctx, key) >= 0) {
		/* Once per incident: the alert stands until the detector ends it. */
		cJSON_Delete(a->evidence);
		return;
	}
	if (cJSON_GetArraySize(ctx->incidents) >= 1024)
		cJSON_DeleteItemFromArray(ctx->incidents, 0);
	cJSON_AddItemToArray(ctx->incidents, cJSON_CreateString(key));

	char ts[21];
	agent_format_utc(agent_now(ctx), ts);
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "Severity", a->severity);
	cJSON_AddStringToObject(p, "Description", a->description ? a->description : "");
	cJSON_AddStringToObject(p, "Remediation", a->remediation ? a->remediation : "");
	cJSON_AddStringToObject(p, "MitreTechnique", a->mitre ? a->mitre : "");
	cJSON_AddStringToObject(p, "Incident", a->incident ? a->incident : "");
	cJSON_AddStringToObject(p, "State", "Active");
	cJSON_AddStringToObject(p, "StartTimeUTC", ts);
	cJSON_AddStringToObject(p, "Detector", ctx->current_detector ? ctx->current_detector->name : "");
	cJSON_AddItemToObject(p, "Evidence", a->evidence ? a->evidence : cJSON_CreateObject());
	cJSON *payload = cJSON_CreateArray();
	cJSON_AddItemToArray(payload, p);
	cJSON_AddItemToArray(ctx->alerts, new_event("Alert", a->name, CATEGORY_TRIGGERED, payload, 1, agent_now(ctx)));
	agent_count(ctx, "alerts", a->name, 1);
	agent_info(ctx, "alert %s (%s) %s", a->name, a->severity, a->incident ? a->incident : "");
}

void agent_alert_end(struct agent_ctx *ctx, const char *name, const char *incident, cJSON *evidence)
{
	char key[512];
	snprintf(key, sizeof(key), "%s\x1f%s", name, incident ? incident : "");
	int i = incident_find(ctx, key);
	if (i < 0) {
		cJSON_Delete(evidence);
		return;
	}
	cJSON_DeleteItemFromArray(ctx->incidents, i);
	char ts[21];
	agent_format_utc(agent_now(ctx), ts);
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "Incident", incident ? incident : "");
	cJSON_AddStringToObject(p, "State", "Ended");
	cJSON_AddStringToObject(p, "EndTimeUTC", ts);
	cJSON_AddStringToObject(p, "Detector", ctx->current_detector ? ctx->current_detector->name : "");
	cJSON_AddItemToObject(p, "Evidence", evidence ? evidence : cJSON_CreateObject());
	cJSON *payload = cJSON_CreateArray();
	cJSON_AddItemToArray(payload, p);
	cJSON_AddItemToArray(ctx->alerts, new_event("Alert", name, CATEGORY_TRIGGERED, payload, 1, agent_now(ctx)));
}

/* ---- messages ---- */

/* One event of a message: a whole cJSON event (alerts), or a collector's
 * event header (new_event without a payload) whose payload is the cached
 * entries slots[from, to). */
struct out_event {
	cJSON *ev;
	bool header;
	const struct cache_slot *slots;
	size_t from, to;
};

struct out_list {
	struct out_event *v;
	size_t n, cap;
};

static void out_insert(struct out_list *l, size_t at, struct out_event e)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		if (!l->v)
			abort();
	}
	memmove(l->v + at + 1, l->v + at, (l->n - at) * sizeof(*l->v));
	l->v[at] = e;
	l->n++;
}

static void write_event(struct json_out *o, const struct out_event *e)
{
	if (!e->header) {
		json_write(o, e->ev);
		return;
	}
	/* new_event's members, then the payload as the last one */
	json_write_open(o, e->ev);
	json_put(o, ",\"Payload\":[", 12);
	for (size_t i = e->from; i < e->to; i++) {
		if (i > e->from)
			json_put(o, ",", 1);
		cache_write_slot(o, &e->slots[i]);
	}
	json_put(o, "]}", 2);
}

static cJSON *message_header(const struct agent_ctx *ctx, char id[37])
{
	uuid4(id);
	cJSON *hdr = cJSON_CreateObject();
	cJSON_AddStringToObject(hdr, "AgentVersion", AGENT_VERSION);
	cJSON_AddStringToObject(hdr, "AgentId", ctx->agent_id);
	cJSON_AddStringToObject(hdr, "MessageSchemaVersion", AGENT_SCHEMA_VERSION);
	cJSON_AddStringToObject(hdr, "MessageId", id);
	return hdr;
}

/* Writes the message (header and events) to o. */
static void write_message(struct json_out *o, const cJSON *hdr, const struct out_event *v, size_t n)
{
	json_write_open(o, hdr);
	json_put(o, ",\"Events\":[", 11);
	for (size_t i = 0; i < n; i++) {
		if (i)
			json_put(o, ",", 1);
		write_event(o, &v[i]);
	}
	json_put(o, "]}", 2);
}

/* Hands one message with the events v[0..n) to the transport, in one
 * buffer sized beforehand. */
static void publish_message(struct agent_ctx *ctx, const struct out_event *v, size_t n)
{
	char id[37];
	cJSON *hdr = message_header(ctx, id);
	struct json_out size = { 0 };
	write_message(&size, hdr, v, n);
	struct json_out o = { .buf = malloc(size.len + 1), .cap = size.len };
	if (!o.buf)
		abort();
	write_message(&o, hdr, v, n);
	o.buf[o.len] = 0;
	cJSON_Delete(hdr);
	ctx->in_transport++;
	int refused = ctx->transport->publish(ctx, ctx->transport_state, o.buf, id);
	ctx->in_transport--;
	if (refused != 0) {
		agent_count(ctx, "messages", "dropped: transport refused", 1);
		agent_warn(ctx, "the %s transport refused a message; it is dropped", ctx->transport->name);
	}
	free(o.buf);
	agent_count(ctx, "messages", "built", 1);
}

/* Without a transport, a message is written to the standard output as
 * its events come, and stays open between calls of emit_events until
 * out_close: --once writes each collector's event as soon as the
 * collector has run (see core_once). */
static void out_event(struct agent_ctx *ctx, const struct out_event *e)
{
	char buf[4096];
	struct json_out o = { .f = ctx->stdout_sink, .buf = buf, .cap = sizeof(buf) };
	if (!ctx->msg_open) {
		char id[37];
		cJSON *hdr = message_header(ctx, id);
		json_write_open(&o, hdr);
		json_put(&o, ",\"Events\":[", 11);
		cJSON_Delete(hdr);
		ctx->msg_open = true;
	} else {
		json_put(&o, ",", 1);
	}
	write_event(&o, e);
	json_flush(&o);
}

static void out_close(struct agent_ctx *ctx)
{
	if (!ctx->msg_open)
		return;
	fwrite("]}\n", 1, 3, ctx->stdout_sink);
	fflush(ctx->stdout_sink);
	ctx->msg_open = false;
	ctx->msg_used = 256;
	agent_count(ctx, "messages", "built", 1);
}

/* Put the events into messages of at most Agent_MaxMessageBytes,
 * splitting a payload that is too large on its own; frees the events'
 * cJSON parts and l's array (not the slots). keep_open: the message on
 * the standard output is left open for more events. */
static void emit_events(struct agent_ctx *ctx, struct out_list *l, bool keep_open)
{
	long max = config_int(ctx->config, "Agent_MaxMessageBytes");
#ifndef AGENT_NO_MASK_ADDRESSES
	bool mask = config_bool(ctx->config, "Agent_MaskRemoteAddresses");
#endif
	bool stream = !ctx->transport && ctx->stdout_sink;
	long used = stream ? ctx->msg_used : 256;
	size_t first = 0; /* the transport's batch is l->v[first..i) */
	for (size_t i = 0; i < l->n;) {
		struct out_event *e = &l->v[i];
#ifndef AGENT_NO_MASK_ADDRESSES
		if (mask && !e->header)
			mask_tree(ctx, e->ev); /* cached entries were masked when reported */
#endif
		struct json_out size = { 0 };
		write_event(&size, e);
		long len = size.failed ? -1 : (long)size.len;
		if (len + 256 > max) {
			size_t n = e->to - e->from;
			if (e->header && n > 1) {
				/* Halve the payload into two events with the same header. */
				cJSON *second = cJSON_Duplicate(e->ev, 1);
				char nid[37];
				uuid4(nid);
				cJSON_ReplaceItemInObjectCaseSensitive(second, "Id", cJSON_CreateString(nid));
				struct out_event half = { second, true, e->slots, e->from + n / 2, e->to };
				e->to = e->from + n / 2;
				out_insert(l, i + 1, half);
				continue;
			}
			agent_count(ctx, "messages", "dropped: entry too large", 1);
			agent_warn(ctx, "dropping one %s entry of %ld bytes: larger than Agent_MaxMessageBytes",
				   cJSON_GetObjectItemCaseSensitive(e->ev, "Name")->valuestring, len);
		}
		if (len < 0 || len + 256 > max) {
			cJSON_Delete(e->ev);
			memmove(e, e + 1, (l->n - i - 1) * sizeof(*e));
			l->n--;
			continue;
		}
		if (used + len > max && (stream ? ctx->msg_open : i > first)) {
			if (stream) {
				out_close(ctx);
			} else if (ctx->transport) {
				publish_message(ctx, l->v + first, i - first);
				first = i;
			}
			used = 256;
		}
		if (stream)
			out_event(ctx, e);
		used += len + 1;
		i++;
	}
	if (stream) {
		ctx->msg_used = used;
		if (!keep_open)
			out_close(ctx);
	} else if (ctx->transport && l->n > first) {
		publish_message(ctx, l->v + first, l->n - first);
	}
	for (size_t i = 0; i < l->n; i++)
		cJSON_Delete(l->v[i].ev);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static bool slot_enabled(const struct agent_ctx *ctx, const struct collector_slot *s)
{
	char key[128];
	snprintf(key, sizeof(key), "%s_Disabled", s->c->event_name);
	return !config_bool(ctx->config, key);
}

static enum agent_priority slot_priority(const struct agent_ctx *ctx, const struct collector_slot *s)
{
	char key[128];
	snprintf(key, sizeof(key), "%s_MessageFrequency", s->c->event_name);
	const char *v = config_string(ctx->config, key);
	for (int p = 0; p < PRIORITY_COUNT; p++)
		if (strcmp(v, priority_names[p]) == 0)
			return (enum agent_priority)p;
	return s->c->priority;
}

static long long slot_sample_ms(const struct agent_ctx *ctx, const struct collector_slot *s)
{
	if (s->c->sample_ms_key)
		return config_int(ctx->config, s->c->sample_ms_key);
	return s->c->sample_ms;
}

long long core_interval_ms(const struct agent_ctx *ctx, enum agent_priority p)
{
	const char *s = config_string(ctx->config, "CollectorsCore_PriorityIntervals");
	double v[3] = { 30, 120, 1440 };
	for (int i = 0; i < 3 && *s; i++) {
		char *end;
		v[i] = strtod(s, &end);
		s = *end == ',' ? end + 1 : end;
	}
	long long ms = (long long)(v[p] * 60000.0);
	return ms < 1000 ? 1000 : ms;
}

/* Moves the alerts waiting into l. */
static void take_alerts(struct agent_ctx *ctx, struct out_list *l)
{
	cJSON *a;
	if (!agent_detectors[0])
		return; /* only detectors raise alerts */
	while ((a = cJSON_DetachItemFromArray(ctx->alerts, 0)) != NULL)
		out_insert(l, l->n, (struct out_event){ .ev = a });
}

/* core_flush, or with `only` that collector's event alone (and no alerts),
 * leaving the message on the standard output open. */
static void flush(struct agent_ctx *ctx, enum agent_priority prio, const struct collector_slot *only)
{
	struct out_list l = { 0 };
	/* Everything at once (--once, shutdown): the alerts go in the same
	 * message, first. */
	if (prio == PRIORITY_COUNT && !only)
		take_alerts(ctx, &l);
	/* The entries taken from the caches, freed once they went out. */
	struct taken {
		struct cache_slot *slots;
		size_t n;
	} *taken = calloc(ctx->ncollectors ? ctx->ncollectors : 1, sizeof(*taken));
	if (!taken)
		abort();
	size_t ntaken = 0;
	for (size_t i = 0; i < ctx->ncollectors; i++) {
		struct collector_slot *s = &ctx->collectors[i];
		if (!s->initialised || !slot_enabled(ctx, s) || (only && s != only))
			continue;
		if (prio != PRIORITY_COUNT && slot_priority(ctx, s) != prio)
			continue;
		/* A change-watching collector with nothing new sends nothing; a
		 * snapshot collector always reports, empty or not. */
		if (s->c->category == CATEGORY_AGGREGATED && s->cache.len == 0)
			continue;
		if (s->cache.dropped)
			agent_count(ctx, s->c->event_name, "dropped: cache full", 0);
		struct taken *t = &taken[ntaken++];
		t->slots = cache_take(&s->cache, &t->n);
		cJSON *hdr = new_event("Security", s->c->event_name, s->c->category, NULL, t->n, agent_now(ctx));
		out_insert(&l, l.n, (struct out_event){ hdr, true, t->slots, 0, t->n });
	}
	emit_events(ctx, &l, only != NULL);
	for (size_t i = 0; i < ntaken; i++)
		cache_slots_free(taken[i].slots, taken[i].n);
	free(taken);
}

void core_flush(struct agent_ctx *ctx, enum agent_priority prio)
{
	flush(ctx, prio, NULL);
}

void core_flush_alerts(struct agent_ctx *ctx)
{
	if (!agent_detectors[0] || !ctx->alerts->child)
		return;
	struct out_list l = { 0 };
	take_alerts(ctx, &l);
	emit_events(ctx, &l, false);
}

static void ensure_init(struct agent_ctx *ctx, struct collector_slot *s)
{
	if (s->initialised)
		return;
	ctx->current = s;
	s->state = s->c->init ? s->c->init(ctx) : NULL;
	ctx->current = NULL;
	s->initialised = true;
}

static void run_collect(struct agent_ctx *ctx, struct collector_slot *s)
{
	ensure_init(ctx, s);
	if (s->c->category == CATEGORY_PERIODIC)
		cache_clear(&s->cache);
	ctx->current = s;
	if (s->c->collect(ctx, s->state) != 0)
		agent_count(ctx, s->c->event_name, "collection errors", 1);
	ctx->current = NULL;
}

void core_detectors_tick(struct agent_ctx *ctx)
{
	for (size_t i = 0; i < ctx->ndetectors; i++) {
		struct detector_slot *d = &ctx->detectors[i];
		if (!d->d->tick)
			continue;
		ctx->current_detector = d->d;
		d->d->tick(ctx, d->state);
	}
	ctx->current_detector = NULL;
}

void core_once(struct agent_ctx *ctx)
{
	/* The message holds the alerts first, and only detectors raise them.
	 * Without detectors, each collector's event goes to the standard
	 * output as soon as the collector has run: the entries of one
	 * collector wait in memory, not those of all (the same message, byte
	 * for byte). */
	bool stream = ctx->ndetectors == 0 && !ctx->transport && ctx->stdout_sink;
	for (size_t i = 0; i < ctx->ncollectors; i++) {
		struct collector_slot *s = &ctx->collectors[i];
		if (!slot_enabled(ctx, s))
			continue;
		run_collect(ctx, s);
		if (stream)
			flush(ctx, PRIORITY_COUNT, s);
	}
	core_detectors_tick(ctx);
	if (stream)
		out_close(ctx);
	else
		core_flush(ctx, PRIORITY_COUNT);
}

void core_collect_all(struct agent_ctx *ctx, bool force_all)
{
	long long now = agent_monotonic_ms(ctx);
	bool due[PRIORITY_COUNT];
	for (int p = 0; p < PRIORITY_COUNT; p++) {
		due[p] = force_all || now >= ctx->next_due_ms[p];
		if (due[p])
			ctx->next_due_ms[p] = now + core_interval_ms(ctx, (enum agent_priority)p);
	}
	for (size_t i = 0; i < ctx->ncollectors; i++) {
		struct collector_slot *s = &ctx->collectors[i];
		if (!slot_enabled(ctx, s))
			continue;
		long long sample = slot_sample_ms(ctx, s);
		if (sample > 0) {
			if (force_all || now >= s->next_sample_ms) {
				run_collect(ctx, s);
				s->next_sample_ms = now + sample;
			}
		} else if (due[slot_priority(ctx, s)]) {
			run_collect(ctx, s);
		}
	}
	core_detectors_tick(ctx);
	core_flush_alerts(ctx);
	for (int p = 0; p < PRIORITY_COUNT; p++)
		if (due[p])
			core_flush(ctx, (enum agent_priority)p);
}

void core_reconfigure(struct agent_ctx *ctx)
{
#ifndef AGENT_NO_MASK_ADDRESSES
	ctx->mask_remote = config_bool(ctx->config, "Agent_MaskRemoteAddresses");
#endif
	ctx->log_level = 1;
	const char *lv = config_string(ctx->config, "Agent_LogLevel");
	for (int i = 0; i < 4; i++)
		if (strcmp(lv, level_names[i]) == 0)
			ctx->log_level = i;
	for (size_t i = 0; i < ctx->ncollectors; i++) {
		struct collector_slot *s = &ctx->collectors[i];
		if (s->c->category == CATEGORY_AGGREGATED) {
			char key[128];
			snprintf(key, sizeof(key), "%s_CacheSize", s->c->event_name);
			cache_set_limit(&s->cache, (size_t)config_int(ctx->config, key));
		}
		if (!slot_enabled(ctx, s))
			cache_clear(&s->cache); /* a disabled collector's events stop now */
		if (s->initialised && s->c->configure) {
			ctx->current = s;
			s->c->configure(ctx, s->state);
			ctx->current = NULL;
		}
	}
	for (size_t i = 0; i < ctx->ndetectors; i++) {
		struct detector_slot *d = &ctx->detectors[i];
		if (d->d->configure) {
			ctx->current_detector = d->d;
			d->d->configure(ctx, d->state);
		}
	}
	ctx->current_detector = NULL;
	if (ctx->transport && ctx->transport->configure) {
		ctx->in_transport++;
		ctx->transport->configure(ctx, ctx->transport_state);
		ctx->in_transport--;
	}
	/* A changed interval takes effect from now. */
	long long now = agent_monotonic_ms(ctx);
	for (int p = 0; p < PRIORITY_COUNT; p++) {
		long long iv = core_interval_ms(ctx, (enum agent_priority)p);
		if (ctx->next_due_ms[p] > now + iv)
			ctx->next_due_ms[p] = now + iv;
	}
}

cJSON *agent_apply_desired(struct agent_ctx *ctx, const cJSON *desired, bool replace)
{
	char err[512];
	cJSON *invalid = cJSON_CreateArray();
	struct agent_config *next = replace ? config_new() : config_clone(ctx->config);
	if (replace && ctx->config_path) {
		/* The whole desired state is applied over the local file, not over
		 * earlier patches. */
		struct agent_config *file = config_load_file(ctx->config_path, err, sizeof(err));
		if (file) {
			config_free(next);
			next = file;
		}
	}
	if (config_merge(next, desired, err, sizeof(err), invalid) != 0) {
		agent_warn(ctx, "twin: %s; keeping the last good configuration", err);
		config_free(next);
		return invalid;
	}
	cJSON *before = config_to_json(ctx->config), *after = config_to_json(next);
	bool same = cJSON_Compare(before, after, 1);
	cJSON_Delete(before);
	cJSON_Delete(after);
	if (same) {
		config_free(next);
		return invalid;
	}
	/* As the retired agent did: what was collected under the old
	 * configuration goes out before the new one applies (a collector being
	 * disabled would otherwise lose its cached entries). */
	core_flush_alerts(ctx);
	core_flush(ctx, PRIORITY_COUNT);
	config_free(ctx->config);
	ctx->config = next;
	core_reconfigure(ctx);
	return invalid;
}

cJSON *agent_config_snapshot(const struct agent_ctx *ctx)
{
	return config_to_json(ctx->config);
}

/* ---- lifecycle ---- */

static void derive_agent_id(struct agent_ctx *ctx)
{
	const char *cfg = config_string(ctx->config, "Agent_Id");
	if (*cfg) {
		snprintf(ctx->agent_id, sizeof(ctx->agent_id), "%s", cfg);
		return;
	}
	char *mid = agent_read_file(ctx, "/etc/machine-id", 64, NULL);
	char hex[33] = "";
	size_t n = 0;
	for (const char *p = mid; p && *p && n < 32; p++)
		if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))
			hex[n++] = *p;
	hex[n] = 0;
	free(mid);
	if (n == 32) {
		snprintf(ctx->agent_id, sizeof(ctx->agent_id), "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8,
			 hex + 12, hex + 16, hex + 20);
		return;
	}
	uuid4(ctx->agent_id);
}

int core_init(struct agent_ctx *ctx, struct agent_config *cfg, const char *root)
{
	snprintf(ctx->root, sizeof(ctx->root), "%s", root ? root : "");
	/* "/" as root means the real root; avoid "//proc". */
	size_t rl = strlen(ctx->root);
	while (rl > 0 && ctx->root[rl - 1] == '/')
		ctx->root[--rl] = 0;
	ctx->config = cfg;
	ctx->msg_used = 256;
	ctx->counters = cJSON_CreateObject();
	ctx->alerts = cJSON_CreateArray();
	ctx->incidents = cJSON_CreateArray();
#ifndef AGENT_NO_MASK_ADDRESSES
	if (getrandom(ctx->mask_key, sizeof(ctx->mask_key), 0) != (ssize_t)sizeof(ctx->mask_key))
		memset(ctx->mask_key, 0x5a, sizeof(ctx->mask_key));
#endif
	snprintf(ctx->state_dir, sizeof(ctx->state_dir), "%s", config_string(cfg, "Agent_StateDirectory"));
	derive_agent_id(ctx);

	size_t n = 0;
	while (agent_collectors[n])
		n++;
	ctx->collectors = calloc(n ? n : 1, sizeof(*ctx->collectors));
	ctx->ncollectors = n;
	for (size_t i = 0; i < n; i++) {
		ctx->collectors[i].c = agent_collectors[i];
		cache_init(&ctx->collectors[i].cache, 1024);
	}
	n = 0;
	while (agent_detectors[n])
		n++;
	ctx->detectors = calloc(n ? n : 1, sizeof(*ctx->detectors));
	ctx->ndetectors = n;
	for (size_t i = 0; i < n; i++) {
		ctx->detectors[i].d = agent_detectors[i];
		ctx->current_detector = agent_detectors[i];
		ctx->detectors[i].state = agent_detectors[i]->init ? agent_detectors[i]->init(ctx) : NULL;
	}
	ctx->current_detector = NULL;
	core_reconfigure(ctx);
	return 0;
}

void core_fini(struct agent_ctx *ctx)
{
	for (size_t i = 0; i < ctx->ncollectors; i++) {
		struct collector_slot *s = &ctx->collectors[i];
		if (s->initialised && s->c->fini)
			s->c->fini(s->state);
		cache_free(&s->cache);
	}
	for (size_t i = 0; i < ctx->ndetectors; i++)
		if (ctx->detectors[i].d->fini)
			ctx->detectors[i].d->fini(ctx->detectors[i].state);
	if (ctx->transport && ctx->transport->fini)
		ctx->transport->fini(ctx->transport_state);
	free(ctx->collectors);
	free(ctx->detectors);
	cJSON_Delete(ctx->alerts);
	cJSON_Delete(ctx->counters);
	cJSON_Delete(ctx->incidents);
	config_free(ctx->config);
	free(ctx->config_path);
	memset(ctx, 0, sizeof(*ctx));
}

/* ---- the event loop ---- */

static int choose_transport(struct agent_ctx *ctx)
{
	const char *want = config_string(ctx->config, "Agent_Transport");
	for (const struct transport *const *t = agent_transports; *t; t++) {
		if (!*want || strcmp(want, (*t)->name) == 0) {
			ctx->transport = *t;
			ctx->in_transport++;
			ctx->transport_state = (*t)->init ? (*t)->init(ctx) : NULL;
			ctx->in_transport--;
			if ((*t)->init && !ctx->transport_state) {
				agent_log(ctx, "error", "the %s transport could not start", (*t)->name);
				return -1;
			}
			return 0;
		}
	}
	if (*want) {
		agent_log(ctx, "error", "Agent_Transport '%s' is not compiled into this build (see --list-features)",
			  want);
		return -1;
	}
	/* No transport compiled in: messages go to standard output. */
	ctx->stdout_sink = stdout;
	return 0;
}

static void reload_config(struct agent_ctx *ctx)
{
	char err[512];
	if (!ctx->config_path) {
		agent_info(ctx, "SIGHUP: no --config file to reload");
		return;
	}
	struct agent_config *next = config_load_file(ctx->config_path, err, sizeof(err));
	if (!next) {
		agent_warn(ctx, "reload: %s; keeping the last good configuration", err);
		agent_count(ctx, "config", "rejected reloads", 1);
		return;
	}
#ifndef AGENT_NO_MASK_ADDRESSES
	if (config_bool(next, "Agent_MaskRemoteAddresses") != ctx->mask_remote) {
		/* As for a twin patch: what was collected under the old setting
		 * goes out first (the cached entries are already masked or not). */
		core_flush_alerts(ctx);
		core_flush(ctx, PRIORITY_COUNT);
	}
#endif
	config_free(ctx->config);
	ctx->config = next;
	core_reconfigure(ctx);
	agent_info(ctx, "configuration reloaded from %s", ctx->config_path);
}

int core_run(struct agent_ctx *ctx)
{
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	/* SIGPIPE blocked rather than ignored (signal(2): one import more): a
	 * write to a closed reader then fails with EPIPE all the same, and
	 * signalfd, asked for the three above, never reads it. */
	sigaddset(&mask, SIGPIPE);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	if (sfd < 0) {
		agent_log(ctx, "error", "signalfd: %s", strerror(errno));
		return 1;
	}
	if (choose_transport(ctx) != 0 || core_drop_privileges(ctx) != 0) {
		close(sfd);
		return 1;
	}
	agent_info(ctx, "started: agent %s, transport %s, root '%s'", ctx->agent_id,
		   ctx->transport ? ctx->transport->name : "stdout", ctx->root);

	/* Collect everything once at start so the hub sees the device at once. */
	core_collect_all(ctx, true);

	enum { MAXFD = 32 };
	struct pollfd fds[MAXFD];
	struct collector_slot *owner[MAXFD];
	int rc = 0;
	for (;;) {
		int n = 0;
		fds[n].fd = sfd;
		fds[n].events = POLLIN;
		owner[n++] = NULL;
		for (size_t i = 0; i < ctx->ncollectors && n < MAXFD - 8; i++) {
			struct collector_slot *s = &ctx->collectors[i];
			if (!s->initialised || !s->c->pollfd || !slot_enabled(ctx, s))
				continue;
			int fd = s->c->pollfd(s->state);
			if (fd < 0)
				continue;
			fds[n].fd = fd;
			fds[n].events = POLLIN;
			owner[n++] = s;
		}
		int tfirst = n;
		if (ctx->transport && ctx->transport->pollfds)
			n += ctx->transport->pollfds(ctx->transport_state, fds + n, MAXFD - n);

		long long now = agent_monotonic_ms(ctx);
		long long next = now + 3600 * 1000;
		for (int p = 0; p < PRIORITY_COUNT; p++)
			if (ctx->next_due_ms[p] < next)
				next = ctx->next_due_ms[p];
		for (size_t i = 0; i < ctx->ncollectors; i++) {
			struct collector_slot *s = &ctx->collectors[i];
			if (slot_enabled(ctx, s) && slot_sample_ms(ctx, s) > 0 && s->next_sample_ms < next)
				next = s->next_sample_ms;
		}
		long long timeout = next - now;
		if (timeout < 0)
			timeout = 0;
		if (ctx->transport && ctx->transport->timeout_ms) {
			int t = ctx->transport->timeout_ms(ctx->transport_state);
			if (t >= 0 && t < timeout)
				timeout = t;
		}
		for (int i = 0; i < n; i++)
			fds[i].revents = 0;
		int r = poll(fds, (nfds_t)n, (int)timeout);
		if (r < 0 && errno != EINTR) {
			agent_log(ctx, "error", "poll: %s", strerror(errno));
			rc = 1;
			break;
		}
		if (fds[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			bool stop = false;
			while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				if (si.ssi_signo == SIGHUP)
					reload_config(ctx);
				else
					stop = true;
			}
			if (stop)
				break;
		}
		for (int i = 1; i < tfirst; i++) {
			if (fds[i].revents && owner[i]->c->on_readable) {
				ctx->current = owner[i];
				owner[i]->c->on_readable(ctx, owner[i]->state);
				ctx->current = NULL;
			}
		}
		if (ctx->transport && ctx->transport->on_poll) {
			ctx->in_transport++;
			ctx->transport->on_poll(ctx, ctx->transport_state, fds + tfirst, n - tfirst);
			ctx->in_transport--;
		}
		core_collect_all(ctx, false);
	}
	agent_info(ctx, "stopping: sending what is queued");
	/* On SIGTERM what was collected goes out (or to the spool). */
	core_flush_alerts(ctx);
	core_flush(ctx, PRIORITY_COUNT);
	if (ctx->transport && ctx->transport->flush) {
		ctx->in_transport++;
		ctx->transport->flush(ctx, ctx->transport_state, 5000);
		ctx->in_transport--;
	}
	close(sfd);
	return rc;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int core_run_replay(struct agent_ctx *ctx, const char *dir, int step_seconds)
{
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "defender-iot-agent: --replay %s: %s\n", dir, strerror(errno));
		return 2;
	}
	char **steps = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char p[4096];
		struct stat st;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			steps = realloc(steps, cap * sizeof(char *));
		}
		steps[n++] = strdup(de->d_name);
	}
	closedir(d);
	if (n == 0) {
		fprintf(stderr, "defender-iot-agent: --replay %s: expected step directories (000, 001, ...)\n", dir);
		free(steps);
		return 2;
	}
	qsort(steps, n, sizeof(char *), cmp_names);
	ctx->stdout_sink = stdout;
	for (size_t i = 0; i < n; i++) {
		snprintf(ctx->root, sizeof(ctx->root), "%s/%s", dir, steps[i]);
		for (size_t c = 0; c < ctx->ncollectors; c++) {
			struct collector_slot *s = &ctx->collectors[c];
			if (slot_enabled(ctx, s))
				run_collect(ctx, s);
		}
		core_detectors_tick(ctx);
		core_flush_alerts(ctx);
		ctx->virtual_now += step_seconds;
		ctx->virtual_ms += (long long)step_seconds * 1000;
		free(steps[i]);
	}
	free(steps);
	core_flush(ctx, PRIORITY_COUNT);
	return 0;
}
