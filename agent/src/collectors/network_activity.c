//feature: collector network_activity ON
//summary: TCP, UDP and raw connections from /proc/net with the owning process, aggregated by 5-tuple
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <linux/capability.h>

#include "core/agent.h"
#include "lib/proc_pid.h"
#include "lib/procnet.h"

static const struct config_key keys[] = {
	{ "NetworkActivity_PollingInterval", CFG_INT, "10000", 1000, 3600000, NULL,
	  "milliseconds between two reads of the /proc/net socket tables", NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};

/* The connections of the previous pass, as sorted hashes of their 5-tuple:
 * a connection is reported once, when it first shows up. */
struct state {
	uint64_t *seen;
	size_t nseen;
};

static uint64_t tuple_hash(const struct procnet_socket *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	const unsigned char *parts[] = { s->laddr, s->raddr };
	for (int p = 0; p < 2; p++)
		for (int i = 0; i < 16; i++)
			h = (h ^ parts[p][i]) * 1099511628211ULL;
	unsigned rest[] = { s->table, s->lport, s->rport };
	for (int i = 0; i < 3; i++)
		h = (h ^ rest[i]) * 1099511628211ULL;
	return h;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static void observe_counters(struct agent_ctx *ctx, long long now)
{
	cJSON *c = procnet_snmp(ctx);
	if (!c)
		return;
	pj_num(c, "SampleTimeMs", (double)now);
	agent_observe(ctx, "NetworkCounters", c);
	cJSON_Delete(c);
}

/* "|PORT|" at p; returns the end. */
static char *put_port(char *p, unsigned port)
{
	char d[6], *e = d + sizeof(d), *q = e;
	do
		*--q = (char)('0' + port % 10);
	while (port /= 10);
	*p++ = '|';
	memcpy(p, q, (size_t)(e - q));
	p += e - q;
	*p++ = '|';
	*p = 0;
	return p;
}

static void report(struct agent_ctx *ctx, const struct procnet_socket *s, int pid, const char *exe)
{
	cJSON *o = cJSON_CreateObject();
	procnet_add_fields(o, s, true);
	pj_num(o, "ProcessId", pid);
	pj_str(o, "Executable", exe);
	pj_num(o, "Uid", s->uid);
	pj_num(o, "Inode", (double)s->inode);
	pj_num(o, "HitCount", 1);
	/* "tcp|10.0.2.15|22|10.0.2.2|51234", put together without snprintf:
	 * one per connection, on every pass. */
	char key[160], *k = key;
	k = stpcpy(k, procnet_protocol((enum procnet_table)s->table));
	*k++ = '|';
	procnet_format_address(s, false, k);
	k = put_port(k + strlen(k), s->lport);
	procnet_format_address(s, true, k);
	k = put_port(k + strlen(k), s->rport);
	k[-1] = 0;
	agent_report(ctx, o, key);
}

static void observe(struct agent_ctx *ctx, const struct procnet_list *all, const struct procnet_owners *owners,
		    long long now)
{
	cJSON *sample = cJSON_CreateObject();
	cJSON *socks = cJSON_CreateArray();
	pj_item(sample, "Sockets", socks);
	for (size_t i = 0; i < all->len; i++) {
		const struct procnet_socket *s = &all->v[i];
		cJSON *o = cJSON_CreateObject();
		procnet_add_fields(o, s, true);
		pj_num(o, "Inode", (double)s->inode);
		pj_num(o, "Uid", s->uid);
		pj_num(o, "ProcessId", procnet_owner(owners, s->inode));
		cJSON_AddItemToArray(socks, o);
	}
	pj_num(sample, "SampleTimeMs", (double)now);
	agent_observe(ctx, "SocketSample", sample);
	cJSON_Delete(sample);
	observe_counters(ctx, now);
}

static int collect(struct agent_ctx *ctx, void *state)
{
	struct state *st = state;
	long long now = agent_monotonic_ms(ctx);
	struct procnet_list all = { 0 };
	for (int t = 0; t < PROCNET_TABLES; t++)
		procnet_read(ctx, (enum procnet_table)t, &all);
	struct procnet_owners owners;
	procnet_owners_find(ctx, &all, &owners);

	/* The whole table for detectors (if any) first, freed before the
	 * reports pile up: the two together would be the agent's peak of
	 * memory. */
	if (agent_observed(ctx))
		observe(ctx, &all, &owners, now);

	uint64_t *seen = malloc((all.len ? all.len : 1) * sizeof(*seen));
	size_t nseen = 0;
	for (size_t i = 0; seen && i < all.len; i++) {
		const struct procnet_socket *s = &all.v[i];
		if (procnet_is_listening(s))
			continue;
		uint64_t h = tuple_hash(s);
		seen[nseen++] = h;
		if (!st->nseen || !bsearch(&h, st->seen, st->nseen, sizeof(h), cmp_u64)) {
			int pid = procnet_owner(&owners, s->inode);
			report(ctx, s, pid, procnet_owner_exe(ctx, &owners, pid));
		}
	}
	if (seen) {
		qsort(seen, nseen, sizeof(*seen), cmp_u64);
		free(st->seen);
		st->seen = seen;
		st->nseen = nseen;
	}
	procnet_owners_free(&owners);
	procnet_list_free(&all);
	return 0;
}

static void *init(struct agent_ctx *ctx)
{
	(void)ctx;
	return calloc(1, sizeof(struct state));
}

static void fini(void *state)
{
	struct state *st = state;
	if (st)
		free(st->seen);
	free(st);
}

const struct collector collector_network_activity = {
	.name = "network_activity",
	.event_name = "NetworkActivity",
	.priority = PRIORITY_MEDIUM,
	.category = CATEGORY_AGGREGATED,
	/* fd links of other users' processes name a socket's owner */
	.caps = AGENT_CAP(CAP_SYS_PTRACE) | AGENT_CAP(CAP_DAC_READ_SEARCH),
	.sample_ms = 10000,
	.sample_ms_key = "NetworkActivity_PollingInterval",
	.keys = keys,
	.init = init,
	.collect = collect,
	.fini = fini,
};
