/* The three kinds of feature the agent is built from. Each is one source file
 * that defines one `const struct collector collector_<name>` (or detector_,
 * transport_) and declares itself with //feature: lines; the build generates
 * the NULL-terminated tables below from the enabled ones. The core walks these
 * tables and knows no feature by name. */
#ifndef AGENT_REGISTRY_H
#define AGENT_REGISTRY_H

#include <poll.h>
#include <stdbool.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "core/config.h"

struct agent_ctx;

#define AGENT_CAP(c) (1ULL << (c))

enum agent_priority { PRIORITY_HIGH, PRIORITY_MEDIUM, PRIORITY_LOW, PRIORITY_COUNT };

/* The retired agent's event categories. */
enum event_category {
	CATEGORY_PERIODIC,   /* a snapshot: each collection replaces the previous one */
	CATEGORY_AGGREGATED, /* entries pile up between messages; duplicates raise HitCount */
	CATEGORY_TRIGGERED,  /* sent as soon as possible (alerts) */
};

struct collector {
	const char *name;            /* build and --list-features name: "process" */
	const char *event_name;      /* event Name and config key prefix: "Process" */
	enum agent_priority priority;  /* default <Event>_MessageFrequency */
	enum event_category category;
	/* How often collect() runs, in milliseconds, for collectors that watch
	 * for change (process, login, ...). 0: collect() runs once per message,
	 * when the collector's priority interval comes due. May be overridden by
	 * the collector's own config key through sample_ms_key. */
	unsigned sample_ms;
	const char *sample_ms_key;   /* optional CFG_INT key in milliseconds */
	const struct config_key *keys; /* keys it owns, {NULL}-terminated; may be NULL */
	/* Linux capabilities it needs when the agent drops root
	 * (Agent_RunAsUser): a mask of AGENT_CAP(CAP_...) values. */
	unsigned long long caps;

	/* All callbacks but collect are optional. state is what init returned. */
	void *(*init)(struct agent_ctx *ctx);
	/* Look at the system and agent_report()/agent_observe() what was seen. */
	int (*collect)(struct agent_ctx *ctx, void *state);
	/* Event-driven collectors (netlink) give a descriptor to poll and are
	 * called when it is readable. */
	int (*pollfd)(void *state);
	void (*on_readable)(struct agent_ctx *ctx, void *state);
	/* The configuration changed (already validated). */
	void (*configure)(struct agent_ctx *ctx, void *state);
	void (*fini)(void *state);
};

struct detector {
	const char *name;            /* "brute_force" */
	const struct config_key *keys;
	void *(*init)(struct agent_ctx *ctx);
	/* Every entry any collector reports or observes, as it is produced.
	 * `event` is the collector's event_name, `entry` one payload object. */
	void (*on_entry)(struct agent_ctx *ctx, void *state, const char *event, const cJSON *entry);
	/* A typed sample (agent_observe_sample), instead of on_entry for it. */
	void (*on_sample)(struct agent_ctx *ctx, void *state, const char *kind, const void *sample);
	/* After each collection pass: expire windows, end incidents. */
	void (*tick)(struct agent_ctx *ctx, void *state);
	void (*configure)(struct agent_ctx *ctx, void *state);
	void (*fini)(void *state);
};

struct transport {
	const char *name;            /* "iothub", "mqtt", "local" */
	const struct config_key *keys;
	void *(*init)(struct agent_ctx *ctx);
	/* Take one serialized security message. Returns 0 once the transport
	 * owns it (queued or sent), -1 if it cannot take it now; the core then
	 * keeps it and offers it again. */
	int (*publish)(struct agent_ctx *ctx, void *state, const char *json, const char *message_id);
	/* Descriptors to poll (up to max) with their events; returns the count. */
	int (*pollfds)(void *state, struct pollfd *fds, int max);
	/* Called after poll with the same descriptors and their revents. */
	void (*on_poll)(struct agent_ctx *ctx, void *state, struct pollfd *fds, int n);
	/* Milliseconds until the transport wants on_poll called without I/O
	 * (keep-alive, reconnect, token renewal); -1: no timer. */
	int (*timeout_ms)(void *state);
	/* Deliver what is queued before exit, within the time given. */
	void (*flush)(struct agent_ctx *ctx, void *state, int timeout_ms);
	void (*configure)(struct agent_ctx *ctx, void *state);
	void (*fini)(void *state);
};

extern const struct collector *const agent_collectors[];
extern const struct detector *const agent_detectors[];
extern const struct transport *const agent_transports[];

#endif
