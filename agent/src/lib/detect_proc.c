#include "lib/detect_proc.h"

#include <stdio.h>
#include <string.h>

#include "core/agent.h"
#include "lib/detect_util.h"

void dproc_fill(struct dproc_info *p, const cJSON *entry)
{
	p->pid = (long)dfield_num(entry, "ProcessId", 0);
	p->uid = (long)dfield_num(entry, "Uid", -1);
	const char *exe = dfield_str(entry, "Executable");
	p->deleted = dfield_bool(entry, "ExecutableDeleted") || strstr(exe, " (deleted)") != NULL;
	/* Samples repeat the same text every poll: copy only what changed. */
	if (strncmp(p->exe, exe, sizeof(p->exe) - 1) != 0)
		snprintf(p->exe, sizeof(p->exe), "%s", exe);
	const char *name = dfield_str(entry, "Name");
	if (*name && strncmp(p->name, name, sizeof(p->name) - 1) != 0)
		snprintf(p->name, sizeof(p->name), "%s", name);
	const char *cmd = dfield_str(entry, "CommandLine");
	if (*cmd && strncmp(p->cmdline, cmd, sizeof(p->cmdline) - 1) != 0)
		snprintf(p->cmdline, sizeof(p->cmdline), "%s", cmd);
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
	static const char *const dirs[] = { "/tmp/", "/var/tmp/", "/dev/shm/", "/var/run/", "/run/user/", "/mnt/",
					    "/memfd:", NULL };
	for (const char *const *d = dirs; *d; d++)
		if (strncmp(exe, *d, strlen(*d)) == 0)
			return true;
	return false;
}

void *dproc_lookup(struct dlru *m, long pid, bool create)
{
	char key[24];
	snprintf(key, sizeof(key), "%ld", pid);
	return create ? dlru_get(m, key, true, NULL) : dlru_peek(m, key);
}

bool dproc_gone(const struct dproc_info *p, long long socket_seen_ms, long long process_ms, long long socket_ms)
{
	return p->seen_ms ? p->seen_ms + 5000 < process_ms : socket_seen_ms < socket_ms;
}

void dproc_end(struct agent_ctx *ctx, const char *name, long pid)
{
	char inc[32];
	snprintf(inc, sizeof(inc), "pid:%ld", pid);
	cJSON *e = cJSON_CreateObject();
	cJSON_AddNumberToObject(e, "ProcessId", (double)pid);
	agent_alert_end(ctx, name, inc, e);
}
