/* What the core offers to collectors, detectors and transports. */
#ifndef AGENT_AGENT_H
#define AGENT_AGENT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "core/config.h"
#include "core/registry.h"

#define AGENT_VERSION "0.1.0"
#define AGENT_SCHEMA_VERSION "1.0"

struct agent_ctx;

/* ---- time ---------------------------------------------------------------
 * All features take the time from here, never from time(): replayed
 * scenarios (--replay) run on a virtual clock. */
time_t agent_now(const struct agent_ctx *ctx);
/* Monotonic milliseconds (virtual under --replay). */
long long agent_monotonic_ms(const struct agent_ctx *ctx);
/* "2026-11-22T01:02:03Z" */
void agent_format_utc(time_t t, char out[21]);

/* ---- the system under --root ------------------------------------------
 * Every read of /proc, /sys, /etc, /var goes through these so tests can feed
 * recorded snapshot trees. `path` is absolute ("/proc/net/tcp"). */
const char *agent_root(const struct agent_ctx *ctx);         /* "" for the real root */
/* Writes root+path into buf; returns buf, or NULL if it does not fit. */
char *agent_path(const struct agent_ctx *ctx, const char *path, char *buf, size_t size);
/* open(2) under the root, always with O_CLOEXEC|O_NOFOLLOW on the last
 * component and O_NONBLOCK for FIFOs an attacker may have planted. */
int agent_open(const struct agent_ctx *ctx, const char *path, int flags);
FILE *agent_fopen(const struct agent_ctx *ctx, const char *path);
/* Reads a whole file (at most max bytes, NUL-terminated; the text is cut at
 * max). Returns a malloc'd buffer and sets *len, or NULL if it cannot be read. */
char *agent_read_file(const struct agent_ctx *ctx, const char *path, size_t max, size_t *len);

/* ---- configuration ---------------------------------------------------- */
const struct agent_config *agent_config(const struct agent_ctx *ctx);

/* ---- reporting (collectors) -------------------------------------------
 * Hand one payload entry (a JSON object; ownership passes to the core) to the
 * core. It is passed to every detector, then kept for the collector's next
 * message. For CATEGORY_AGGREGATED collectors, `key` (may be NULL: no
 * aggregation) identifies duplicates: an entry whose key is already cached
 * raises that entry's "HitCount" instead of taking a slot. For
 * CATEGORY_PERIODIC collectors each collect() pass replaces the payload. */
void agent_report(struct agent_ctx *ctx, cJSON *entry, const char *key);
/* An entry for detectors only (per-poll samples such as CPU time or socket
 * tables); it never appears in a message. Ownership stays with the caller. */
void agent_observe(struct agent_ctx *ctx, const char *kind, const cJSON *entry);
/* The same for a typed sample (a struct of lib/samples.h, valid during the
 * call): detectors with on_sample take the struct; for those with only
 * on_entry the core builds the JSON entry with to_json, once per sample and
 * only when one of them is there. Parsing back JSON built for detectors
 * would cost more than the collection itself. */
void agent_observe_sample(struct agent_ctx *ctx, const char *kind, const void *sample,
			  cJSON *(*to_json)(const void *sample));
/* Within on_sample: the sample as JSON, built at the first call (a rule
 * over its fields asks); owned by the core. */
const cJSON *agent_sample_json(struct agent_ctx *ctx);
/* Whether anything reads what agent_observe() passes (a detector with
 * on_entry or on_sample): a collector skips building samples nobody reads. */
bool agent_observed(const struct agent_ctx *ctx);

/* ---- alerts (detectors) -----------------------------------------------
 * Raise an alert. `name` is e.g. "BruteForce" or "Custom:rule-id", severity one
 * of Informational|Low|Medium|High|Critical, `evidence` a JSON object whose
 * ownership passes to the core. Alerts go out at once, in a message of their
 * own. `incident` is a stable key for the incident (e.g. "ssh:10.0.2.2"). */
struct alert {
	const char *name;
	const char *severity;
	const char *description;
	const char *remediation;
	const char *mitre;         /* "T1110" */
	const char *incident;
	cJSON *evidence;
};
void agent_alert(struct agent_ctx *ctx, const struct alert *alert);
/* The incident with this key is over; sends an alert entry with
 * "State": "Ended". */
void agent_alert_end(struct agent_ctx *ctx, const char *name, const char *incident, cJSON *evidence);

/* ---- configuration changes from a transport (module twin) ------------
 * Validate `desired` (a flat object of keys; "$version" and unknown
 * "$"-prefixed keys are ignored) merged over the current config and apply it
 * when every key is good. Returns a new JSON array of the invalid key names
 * (empty on success; the caller frees it). When some key is bad nothing
 * changes. `replace`: the document is the whole desired state rather than a
 * patch. */
cJSON *agent_apply_desired(struct agent_ctx *ctx, const cJSON *desired, bool replace);
/* The effective configuration as a JSON object (caller frees), for reporting. */
cJSON *agent_config_snapshot(const struct agent_ctx *ctx);

/* ---- logging -----------------------------------------------------------
 * One line to stderr: "defender-iot-agent: <feature>: message". */
void agent_log(const struct agent_ctx *ctx, const char *level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
#define agent_warn(ctx, ...) agent_log(ctx, "warning", __VA_ARGS__)
#define agent_info(ctx, ...) agent_log(ctx, "info", __VA_ARGS__)
#define agent_debug(ctx, ...) agent_log(ctx, "debug", __VA_ARGS__)

/* Count something for the statistics collector: e.g.
 * agent_count(ctx, "messages_dropped", "timeout", 1). */
void agent_count(struct agent_ctx *ctx, const char *what, const char *reason, long n);
/* The counters so far, as {"what": {"reason": n}}; caller does not free. */
const cJSON *agent_counters(const struct agent_ctx *ctx);

/* The data directory for state that must survive a restart (spool,
 * baselines): Agent_StateDirectory, default /var/lib/defender-iot. */
const char *agent_state_dir(const struct agent_ctx *ctx);

#endif
