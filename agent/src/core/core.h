/* The core's own state. Features see only agent.h. */
#ifndef AGENT_CORE_H
#define AGENT_CORE_H

#include <poll.h>
#include <stdbool.h>
#include <stdio.h>

#include "core/agent.h"
#include "core/cache.h"
#include "core/config_internal.h"

struct collector_slot {
	const struct collector *c;
	void *state;
	bool initialised;
	struct entry_cache cache;      /* what the next message carries */
	long long next_sample_ms;      /* monotonic; for sample_ms collectors */
};

struct detector_slot {
	const struct detector *d;
	void *state;
};

struct agent_ctx {
	char root[1024];
	struct agent_config *config;
	char *config_path;               /* for SIGHUP reloads */
	char agent_id[64];
	char state_dir[1024];

	struct collector_slot *collectors;
	size_t ncollectors;
	struct detector_slot *detectors;
	size_t ndetectors;
	const struct transport *transport;
	void *transport_state;

	struct collector_slot *current;  /* whose collect() is running */
	const struct detector *current_detector;
	/* the typed sample being dispatched, and its JSON once built */
	const void *sample;
	cJSON *(*sample_to_json)(const void *sample);
	cJSON *sample_json;
	int in_transport;                /* depth of calls into the transport, for log lines */

	cJSON *alerts;                   /* alert events waiting to go out */
	cJSON *counters;
	/* Open incidents as "Name\x1fIncident" strings, oldest first (bounded:
	 * an alert fires once per incident until its detector ends it). */
	cJSON *incidents;

	long long next_due_ms[PRIORITY_COUNT];

	/* --replay: a virtual clock */
	bool virtual_clock;
	time_t virtual_now;
	long long virtual_ms;

	/* where messages go when there is no transport (--once, --replay) */
	FILE *stdout_sink;
	bool msg_open;                   /* a message is being written to it */
	long msg_used;                   /* its size so far, as emit_events counts */
	int log_level;
	bool mask_remote;                /* Agent_MaskRemoteAddresses */
	unsigned char mask_key[16];
};

int core_init(struct agent_ctx *ctx, struct agent_config *cfg, const char *root);
void core_fini(struct agent_ctx *ctx);
/* Run every due sample-collector, and for each priority whose interval is
 * due the rest of its collectors, then build and hand out messages. */
void core_collect_all(struct agent_ctx *ctx, bool force_all);
/* --once: every enabled collector once, then one message with the alerts
 * and every event. */
void core_once(struct agent_ctx *ctx);
/* Build the messages for `prio` (or every priority if PRIORITY_COUNT) and
 * hand them to the sink. */
void core_flush(struct agent_ctx *ctx, enum agent_priority prio);
void core_flush_alerts(struct agent_ctx *ctx);
void core_detectors_tick(struct agent_ctx *ctx);
/* Apply a new config (already validated): tell every feature. */
void core_reconfigure(struct agent_ctx *ctx);
int core_run(struct agent_ctx *ctx);
/* Switch to Agent_RunAsUser keeping the collectors' capabilities. */
#ifdef AGENT_NO_RUN_AS_USER
static inline int core_drop_privileges(struct agent_ctx *ctx)
{
	(void)ctx;
	return 0; /* left out of the build, and Agent_RunAsUser with it */
}
#else
int core_drop_privileges(struct agent_ctx *ctx);
#endif
int core_run_replay(struct agent_ctx *ctx, const char *dir, int step_seconds);

/* Interval of a priority in milliseconds, from CollectorsCore_PriorityIntervals. */
long long core_interval_ms(const struct agent_ctx *ctx, enum agent_priority p);

#endif
