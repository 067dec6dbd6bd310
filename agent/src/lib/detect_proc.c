#include "lib/detect_proc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/agent.h"
#include "lib/detect_util.h"

/* Copies src into dst (of size n) unless it already holds it; returns
 * whether it changed. Samples repeat the same text every poll. */
static bool update(char *dst, size_t n, const char *src)
{
	if (strncmp(dst, src, n - 1) == 0)
		return false;
	snprintf(dst, n, "%s", src);
	return true;
}

bool dproc_fill(struct dproc_info *p, const struct process_sample *s)
{
	p->pid = s->pid;
	p->uid = s->uid;
	p->deleted = s->deleted;
	if (s->unchanged && p->seen_ms)
		return false; /* filled from this process's previous sample */
	bool changed = update(p->exe, sizeof(p->exe), s->exe);
	if (*s->name)
		changed |= update(p->name, sizeof(p->name), s->name);
	if (*s->cmdline)
		changed |= update(p->cmdline, sizeof(p->cmdline), s->cmdline);
	return changed;
}

void dproc_evidence(cJSON *e, const struct dproc_info *p)
{
	cJSON_AddNumberToObject(e, "ProcessId", (double)p->pid);
	cJSON_AddStringToObject(e, "Executable", p->exe);
	cJSON_AddStringToObject(e, "Name", p->name);
	cJSON_AddStringToObject(e, "CommandLine", p->cmdline);
	if (p->uid >= 0)
		cJSON_AddNumberToObject(e, "Uid", (double)p->uid);
}

bool dproc_exe_in_temp(const char *exe)
{
	/* asked for every process of every poll: most paths fail the second letter */
	if (exe[0] != '/' || !strchr("tvdrm", exe[1]))
		return false;
	static const char *const dirs[] = { "/tmp/", "/var/tmp/", "/dev/shm/", "/var/run/", "/run/user/", "/mnt/",
					    "/memfd:", NULL };
	for (const char *const *d = dirs; *d; d++)
		if (strncmp(exe, *d, strlen(*d)) == 0)
			return true;
	return false;
}

void *dproc_lookup(struct dlru *m, long pid, bool create)
{
	/* by hand: snprintf would cost more than the lookup */
	char key[24], *k = key + sizeof(key) - 1;
	unsigned long v = pid < 0 ? 0UL - (unsigned long)pid : (unsigned long)pid;
	*k = 0;
	do
		*--k = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	if (pid < 0)
		*--k = '-';
	return create ? dlru_get(m, k, true, NULL) : dlru_peek(m, k);
}

void dproc_end(struct agent_ctx *ctx, const char *name, long pid)
{
	char inc[32];
	snprintf(inc, sizeof(inc), "pid:%ld", pid);
	cJSON *e = cJSON_CreateObject();
	cJSON_AddNumberToObject(e, "ProcessId", (double)pid);
	agent_alert_end(ctx, name, inc, e);
}

enum { MAX_PIDS = 1024 };

void *dproc_table_new(struct agent_ctx *ctx, const struct dproc_ops *ops)
{
	struct dproc_table *t = calloc(1, ops->state_size);
	if (!t || dlru_init(&t->procs, MAX_PIDS, ops->entry_size) != 0)
		agent_warn(ctx, "out of memory");
	if (t)
		t->ops = ops;
	return t;
}

void dproc_table_free(void *state)
{
	struct dproc_table *t = state;
	if (t)
		dlru_free(&t->procs);
	free(t);
}

/* Whether a tracked process has ended: it is missing from the latest pass
 * over /proc (a pass takes well under 5 s), or it is known only from a
 * socket that the latest socket table no longer shows. */
static bool gone(const struct dproc_table *t, const struct dproc_entry *e)
{
	return e->p.seen_ms ? e->p.seen_ms + 5000 < t->process_ms : e->socket_ms < t->socket_ms;
}

static void end_incident(struct agent_ctx *ctx, struct dproc_table *t, struct dproc_entry *e)
{
	if (e->alerted)
		dproc_end(ctx, t->ops->kind.name, e->p.pid);
	dlru_remove(&t->procs, e);
}

void dproc_table_on_sample(struct agent_ctx *ctx, void *state, const char *kind, const void *sample)
{
	struct dproc_table *t = state;
	if (SAMPLE_IS_PROCESS(kind)) {
		t->ops->sample(ctx, state, sample);
	} else if (SAMPLE_IS_SOCKETS(kind)) {
		const struct socket_sample *ss = sample;
		t->socket_ms = ss->sample_ms;
		t->ops->sockets(ctx, state, ss->v, ss->n);
	}
}

void dproc_table_on_entry(struct agent_ctx *ctx, void *state, const char *event, const cJSON *entry)
{
	struct dproc_table *t = state;
	/* every entry of every collector comes here: the first letter first */
	if (event[0] == 'P' && strcmp(event, "Process") == 0 && strcmp(dfield_str(entry, "EventType"), "Exit") == 0) {
		struct dproc_entry *e = dproc_lookup(&t->procs, (long)dfield_num(entry, "ProcessId", 0), false);
		if (e)
			end_incident(ctx, t, e);
	}
}

void dproc_table_tick(struct agent_ctx *ctx, void *state)
{
	struct dproc_table *t = state;
	struct dproc_entry *next;
	for (struct dproc_entry *e = dlru_next(&t->procs, NULL); e; e = next) {
		next = dlru_next(&t->procs, e);
		if (gone(t, e))
			end_incident(ctx, t, e);
		else if (!e->alerted && e->p.seen_ms)
			t->ops->evaluate(ctx, state, e);
	}
}

bool dproc_table_fill(struct agent_ctx *ctx, struct dproc_table *t, struct dproc_entry *e,
		      const struct process_sample *s)
{
	bool changed = dproc_fill(&e->p, s);
	e->p.seen_ms = s->sample_ms >= 0 ? s->sample_ms : agent_monotonic_ms(ctx);
	if (e->p.seen_ms > t->process_ms)
		t->process_ms = e->p.seen_ms;
	return changed;
}

void dproc_table_alert(struct agent_ctx *ctx, struct dproc_table *t, struct dproc_entry *e, const char *severity,
		       const char *description, cJSON *evidence)
{
	char inc[32];
	snprintf(inc, sizeof(inc), "pid:%ld", e->p.pid);
	e->alerted = true;
	dalert(ctx, &t->ops->kind, severity, description, inc, evidence);
}
