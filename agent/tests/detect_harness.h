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
#include "lib/detect_net.h"
#include "lib/samples.h"

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

/* The samples collectors pass typed (lib/samples.h), made from their
 * JSON form (docs/events.md) as tests write it. */
static const cJSON *h_json; /* the sample being fed */

static inline cJSON *h_to_json(const void *sample)
{
	(void)sample;
	return cJSON_Duplicate(h_json, true);
}

static inline const char *h_field_str(const cJSON *o, const char *k)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(f) ? f->valuestring : "";
}

static inline double h_field_num(const cJSON *o, const char *k, double def)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(f) ? f->valuedouble : def;
}

static inline void h_observe_process(const cJSON *e)
{
	struct process_sample s = { 0 };
	const char *targets[64];
	unsigned long inodes[256];
	s.pid = (long)h_field_num(e, "ProcessId", 0);
	s.ppid = (long)h_field_num(e, "ParentProcessId", 0);
	s.uid = (long)h_field_num(e, "Uid", -1);
	s.name = h_field_str(e, "Name");
	s.exe = h_field_str(e, "Executable");
	s.cmdline = h_field_str(e, "CommandLine");
	s.deleted = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "ExecutableDeleted")) ||
		    strstr(s.exe, " (deleted)");
	s.cpu_ticks = h_field_num(e, "CpuTicks", 0);
	s.clock_ticks = h_field_num(e, "ClockTicks", 100);
	s.sample_ms = (long long)h_field_num(e, "SampleTimeMs", -1);
	const cJSON *it;
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(e, "SocketInodes")) {
		assert_true(s.nstd < 3);
		s.std[s.nstd].fd = cJSON_GetArrayItem(it, 0)->valueint;
		s.std[s.nstd++].inode = (unsigned long)cJSON_GetArrayItem(it, 1)->valuedouble;
	}
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(e, "FdTargets")) {
		assert_true(s.ntargets < 64);
		targets[s.ntargets++] = it->valuestring;
	}
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(e, "AllSocketInodes")) {
		assert_true(s.ninodes < 256);
		inodes[s.ninodes++] = (unsigned long)it->valuedouble;
	}
	s.targets = targets;
	s.inodes = inodes;
	agent_observe_sample(&H, "ProcessSample", &s, h_to_json);
}

static inline bool h_text_any(const char *text)
{
	struct dnet_addr a;
	return !dnet_parse(text, &a) || dnet_is_any(&a);
}

static inline void h_observe_sockets(const cJSON *e)
{
	const cJSON *socks = cJSON_GetObjectItemCaseSensitive(e, "Sockets");
	size_t n = (size_t)cJSON_GetArraySize(socks), i = 0;
	struct dsock *v = calloc(n ? n : 1, sizeof(*v));
	assert_non_null(v);
	const cJSON *o;
	cJSON_ArrayForEach(o, socks) {
		struct dsock *d = &v[i++];
		d->proto = h_field_str(o, "Protocol");
		d->laddr = h_field_str(o, "LocalAddress");
		d->raddr = h_field_str(o, "RemoteAddress");
		d->state = h_field_str(o, "State");
		d->lport = (long)h_field_num(o, "LocalPort", 0);
		d->rport = (long)h_field_num(o, "RemotePort", 0);
		d->pid = (long)h_field_num(o, "ProcessId", 0);
		d->uid = (long)h_field_num(o, "Uid", -1);
		d->inode = h_field_num(o, "Inode", 0);
		d->tcp = strncmp(d->proto, "tcp", 3) == 0;
		d->udp = strncmp(d->proto, "udp", 3) == 0;
		d->raw = strncmp(d->proto, "raw", 3) == 0;
		d->listening = d->tcp ? strcmp(d->state, "LISTEN") == 0 : d->udp && d->rport == 0 && h_text_any(d->raddr);
		struct dnet_addr a;
		bool local = !dnet_parse(d->raddr, &a) || dnet_is_loopback(&a) || dnet_is_any(&a);
		d->remote = !d->raw && !d->listening && !local &&
			    (!d->tcp || strcmp(d->state, "ESTABLISHED") == 0 || strcmp(d->state, "SYN_SENT") == 0 ||
			     strcmp(d->state, "SYN_RECV") == 0 || strcmp(d->state, "CLOSE_WAIT") == 0);
	}
	struct socket_sample s = { v, n, (long long)h_field_num(e, "SampleTimeMs", -1) };
	if (s.sample_ms < 0)
		s.sample_ms = agent_monotonic_ms(&H);
	agent_observe_sample(&H, "SocketSample", &s, h_to_json);
	free(v);
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
	h_json = e;
	if (strcmp(event, "ProcessSample") == 0)
		h_observe_process(e);
	else if (strcmp(event, "SocketSample") == 0)
		h_observe_sockets(e);
	else
		agent_observe(&H, event, e);
	h_json = NULL;
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
