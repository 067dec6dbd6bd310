/* Per-process facts that several detectors keep from ProcessSample
 * entries, and the evidence fields they put in alerts. */
#ifndef AGENT_LIB_DETECT_PROC_H
#define AGENT_LIB_DETECT_PROC_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "core/agent.h"
#include "lib/detect_lru.h"
#include "lib/detect_net.h"


struct dproc_info {
	long pid, uid;
	long long seen_ms;     /* SampleTimeMs of the last ProcessSample; 0: never sampled */
	bool deleted;
	char name[32];
	char exe[256];
	char cmdline[512];
};

/* Copy the identity fields; returns whether the name, executable or
 * command line changed. */
bool dproc_fill(struct dproc_info *p, const struct process_sample *s);
/* ProcessId, Executable, Name, CommandLine, Uid into evidence. */
void dproc_evidence(cJSON *e, const struct dproc_info *p);
/* The executable lies where attackers drop binaries (/tmp, /var/tmp,
 * /dev/shm, /var/run, /run/user... ) or is a memfd. */
bool dproc_exe_in_temp(const char *exe);

/* The value for pid in a map keyed by pid, or NULL. */
void *dproc_lookup(struct dlru *m, long pid, bool create);
/* End alert `name`'s incident "pid:<pid>" (if it is open). */
void dproc_end(struct agent_ctx *ctx, const char *name, long pid);

/* ---- a table of processes, each with at most one open incident ----------
 * A detector whose state starts with a dproc_table, and whose entries start
 * with a dproc_entry, uses the table's on_entry, tick and fini: it sees each
 * process sample and socket table, and judges each live process once per
 * cycle until it alerts; the incident ends when the process does. */
struct dproc_entry {
	struct dproc_info p;
	long long socket_ms;   /* the latest socket table that showed one of its sockets */
	bool alerted;          /* its incident "pid:<pid>" is open */
};

struct dproc_ops {
	struct alert kind;            /* what it raises (see dalert) */
	size_t state_size, entry_size;
	void (*sample)(struct agent_ctx *ctx, void *state, const struct process_sample *s);
	void (*sockets)(struct agent_ctx *ctx, void *state, const struct dsock *tab, size_t n);
	/* an entry that was sampled, still runs and has no open incident */
	void (*evaluate)(struct agent_ctx *ctx, void *state, void *entry);
};

struct dproc_table {
	const struct dproc_ops *ops;
	struct dlru procs;                 /* pid -> entry */
	long long process_ms, socket_ms;   /* the latest process sample and socket table */
};

/* The detector's init: a zeroed state of ops->state_size bytes. */
void *dproc_table_new(struct agent_ctx *ctx, const struct dproc_ops *ops);
void dproc_table_free(void *state);
void dproc_table_on_entry(struct agent_ctx *ctx, void *state, const char *event, const cJSON *entry);
void dproc_table_on_sample(struct agent_ctx *ctx, void *state, const char *kind, const void *sample);
void dproc_table_tick(struct agent_ctx *ctx, void *state);
/* dproc_fill, and the sample's time as e's and the table's latest. */
bool dproc_table_fill(struct agent_ctx *ctx, struct dproc_table *t, struct dproc_entry *e,
		      const struct process_sample *s);
/* Open e's incident. */
void dproc_table_alert(struct agent_ctx *ctx, struct dproc_table *t, struct dproc_entry *e, const char *severity,
		       const char *description, cJSON *evidence);

#endif
