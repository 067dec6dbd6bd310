/* Per-process facts that several detectors keep from ProcessSample
 * entries, and the evidence fields they put in alerts. */
#ifndef AGENT_LIB_DETECT_PROC_H
#define AGENT_LIB_DETECT_PROC_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "lib/detect_lru.h"

struct agent_ctx;

struct dproc_info {
	long pid, uid;
	long long seen_ms;     /* SampleTimeMs of the last ProcessSample; 0: never sampled */
	bool deleted;
	char name[32];
	char exe[256];
	char cmdline[512];
};

/* The fields of one ProcessSample (or Process) entry, read in one pass:
 * every detector that watches processes reads every sample of every poll.
 * The strings point into the entry. */
struct dproc_sample {
	long pid, uid;
	const char *name, *exe, *cmdline;
	bool deleted;
	double cpu_ticks, clock_ticks;
	long long sample_ms;          /* -1 when absent */
	const cJSON *socket_inodes, *fd_targets;
};
void dproc_parse(const cJSON *entry, struct dproc_sample *s);
/* Copy the identity fields; returns whether the name, executable or
 * command line changed. */
bool dproc_fill(struct dproc_info *p, const struct dproc_sample *s);
/* ProcessId, Executable, Name, CommandLine, Uid into evidence. */
void dproc_evidence(cJSON *e, const struct dproc_info *p);
/* The executable lies where attackers drop binaries (/tmp, /var/tmp,
 * /dev/shm, /var/run, /run/user... ) or is a memfd. */
bool dproc_exe_in_temp(const char *exe);

/* The value for pid in a map keyed by pid, or NULL. */
void *dproc_lookup(struct dlru *m, long pid, bool create);
/* Whether a tracked process has ended: it is missing from the latest pass
 * over /proc (a pass takes well under 5 s), or it is known only from a
 * socket that the latest socket table no longer shows. */
bool dproc_gone(const struct dproc_info *p, long long socket_seen_ms, long long process_ms, long long socket_ms);
/* End alert `name`'s incident "pid:<pid>" (if it is open). */
void dproc_end(struct agent_ctx *ctx, const char *name, long pid);

#endif
