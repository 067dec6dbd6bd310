/* A real agent core on a virtual clock for detector tests: entries go in
 * through the core's dispatch, exactly as collectors hand them over, and the
 * alerts the core would send are read back. */
#ifndef DETECT_HARNESS_H
#define DETECT_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"

static struct agent_ctx H;

static inline int h_setup(void **state)
{
	(void)state;
	memset(&H, 0, sizeof(H));
	H.virtual_clock = true;
	H.virtual_now = 1767225600; /* 2026-01-01T00:00:00Z */
	H.virtual_ms = 1000000;
	return core_init(&H, config_new(), "");
}

static inline int h_teardown(void **state)
{
	(void)state;
	core_fini(&H);
	return 0;
}

/* Apply config keys as a twin patch would; asserts they were accepted. */
static inline void h_config(const char *json)
{
	cJSON *doc = cJSON_Parse(json);
	assert_non_null(doc);
	cJSON *bad = agent_apply_desired(&H, doc, false);
	char *s = cJSON_PrintUnformatted(bad);
	assert_string_equal(s, "[]");
	free(s);
	cJSON_Delete(bad);
	cJSON_Delete(doc);
}

/* Hand one entry (JSON text; "%s"-style arguments) to every detector. */
static inline void h_feed(const char *event, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void h_feed(const char *event, const char *fmt, ...)
{
	char *buf = NULL;
	va_list ap;
	va_start(ap, fmt);
	assert_true(vasprintf(&buf, fmt, ap) >= 0);
	va_end(ap);
	cJSON *e = cJSON_Parse(buf);
	if (!e)
		fail_msg("bad test JSON: %.300s", buf);
	free(buf);
	agent_observe(&H, event, e);
	cJSON_Delete(e);
}

/* Move the virtual clock and run the detectors' tick. */
static inline void h_advance(int seconds)
{
	H.virtual_now += seconds;
	H.virtual_ms += (long long)seconds * 1000;
	core_detectors_tick(&H);
}

/* The payload of the n-th pending alert event named `name` in `state`
 * ("Active"/"Ended"), or NULL. */
static inline cJSON *h_alert(const char *name, const char *state, int n)
{
	cJSON *ev;
	cJSON_ArrayForEach(ev, H.alerts) {
		cJSON *p = cJSON_GetArrayItem(cJSON_GetObjectItem(ev, "Payload"), 0);
		if (strcmp(cJSON_GetObjectItem(ev, "Name")->valuestring, name) == 0 &&
		    strcmp(cJSON_GetObjectItem(p, "State")->valuestring, state) == 0 && n-- == 0)
			return p;
	}
	return NULL;
}

static inline int h_count(const char *name, const char *state)
{
	int n = 0;
	while (h_alert(name, state, n))
		n++;
	return n;
}

static inline int h_total(void)
{
	return cJSON_GetArraySize(H.alerts);
}

static inline void h_clear(void)
{
	cJSON_Delete(H.alerts);
	H.alerts = cJSON_CreateArray();
}

static inline const char *h_str(const cJSON *o, const char *path)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	const cJSON *v = o;
	for (char *tok = strtok(buf, "."); tok && v; tok = strtok(NULL, "."))
		v = cJSON_GetObjectItem(v, tok);
	assert_non_null(v);
	if (cJSON_IsString(v))
		return v->valuestring;
	static char num[64];
	snprintf(num, sizeof(num), "%g", v->valuedouble);
	return num;
}

static inline double h_num(const cJSON *o, const char *path)
{
	return strtod(h_str(o, path), NULL);
}

/* A SocketSample under construction. */
static char h_sockets[262144];

static inline void h_sock_reset(void)
{
	h_sockets[0] = 0;
}

static inline void h_sock_add(const char *proto, const char *laddr, int lport, const char *raddr, int rport,
			      const char *st, long inode, int pid)
{
	size_t n = strlen(h_sockets);
	snprintf(h_sockets + n, sizeof(h_sockets) - n,
		 "%s{\"Protocol\":\"%s\",\"LocalAddress\":\"%s\",\"LocalPort\":%d,\"RemoteAddress\":\"%s\","
		 "\"RemotePort\":%d,\"State\":\"%s\",\"Inode\":%ld,\"Uid\":0,\"ProcessId\":%d}",
		 n ? "," : "", proto, laddr, lport, raddr, rport, st, inode, pid);
}

static inline void h_sock_send(void)
{
	H.virtual_ms++; /* one table per poll: each has its own SampleTimeMs */
	h_feed("SocketSample", "{\"Sockets\":[%s],\"SampleTimeMs\":%lld}", h_sockets, H.virtual_ms);
}

/* A ProcessSample; std and targets are the inner text of the
 * SocketInodes and FdTargets arrays. */
static inline void h_process(int pid, const char *name, const char *exe, const char *cmdline, long ticks,
			     const char *std, const char *targets)
{
	h_feed("ProcessSample",
	       "{\"ProcessId\":%d,\"ParentProcessId\":1,\"Uid\":0,\"Name\":\"%s\",\"Executable\":\"%s\","
	       "\"ExecutableDeleted\":%s,\"CommandLine\":\"%s\",\"CpuTicks\":%ld,\"ClockTicks\":100,"
	       "\"SampleTimeMs\":%lld,\"SocketInodes\":[%s],\"FdTargets\":[%s],\"AllSocketInodes\":[]}",
	       pid, name, exe, strstr(exe, " (deleted)") ? "true" : "false", cmdline, ticks, H.virtual_ms, std,
	       targets);
}

#endif
