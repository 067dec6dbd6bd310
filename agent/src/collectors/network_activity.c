//feature: collector network_activity ON
//summary: TCP, UDP and raw connections from /proc/net with the owning process, aggregated by 5-tuple
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <linux/capability.h>

#include "core/agent.h"
#include "lib/proc_pid.h"
#include "lib/procnet.h"
#include "lib/samples.h"

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

/* The SocketSample entry of docs/events.md, for detectors that read JSON. */
static cJSON *sample_json(const void *sample)
{
	const struct socket_sample *ss = sample;
	cJSON *o = cJSON_CreateObject();
	cJSON *socks = cJSON_CreateArray();
	pj_item(o, "Sockets", socks);
	for (size_t i = 0; i < ss->n; i++) {
		const struct dsock *d = &ss->v[i];
		cJSON *e = cJSON_CreateObject();
		pj_const(e, "Protocol", d->proto);
		pj_str(e, "LocalAddress", d->laddr);
		pj_num(e, "LocalPort", (double)d->lport);
		pj_str(e, "RemoteAddress", d->raddr);
		pj_num(e, "RemotePort", (double)d->rport);
		pj_const(e, "State", d->state);
		pj_num(e, "Inode", d->inode);
		pj_num(e, "Uid", (double)d->uid);
		pj_num(e, "ProcessId", (double)d->pid);
		cJSON_AddItemToArray(socks, e);
	}
	pj_num(o, "SampleTimeMs", (double)ss->sample_ms);
	return o;
}

/* Loopback or unspecified, IPv4-mapped IPv6 as IPv4. */
static bool local_address(const unsigned char *a, bool v6)
{
	static const unsigned char mapped[12] = { [10] = 0xff, [11] = 0xff };
	static const unsigned char zero[16], one[16] = { [15] = 1 };
	if (v6 && memcmp(a, mapped, 12) == 0) {
		a += 12;
		v6 = false;
	}
	if (!v6)
		return a[0] == 127 || memcmp(a, zero, 4) == 0;
	return memcmp(a, one, 16) == 0 || memcmp(a, zero, 16) == 0;
}

static void observe(struct agent_ctx *ctx, const struct procnet_list *all, const struct procnet_owners *owners,
		    long long now)
{
	struct dsock *v = malloc((all->len ? all->len : 1) * sizeof(*v)); /* every field is set */
	char (*text)[2][46] = malloc((all->len ? all->len : 1) * sizeof(*text));
	if (v && text) {
		for (size_t i = 0; i < all->len; i++) {
			const struct procnet_socket *s = &all->v[i];
			struct dsock *d = &v[i];
			enum procnet_table t = (enum procnet_table)s->table;
			d->proto = procnet_protocol(t);
			d->tcp = t == PROCNET_TCP || t == PROCNET_TCP6;
			d->udp = t == PROCNET_UDP || t == PROCNET_UDP6;
			d->raw = t == PROCNET_RAW || t == PROCNET_RAW6;
			procnet_format_address(s, false, text[i][0]);
			procnet_format_address(s, true, text[i][1]);
			d->laddr = text[i][0];
			d->raddr = text[i][1];
			/* a raw socket's IP protocol is its RemotePort (docs/events.md) */
			d->lport = d->raw ? 0 : s->lport;
			d->rport = d->raw ? s->lport : s->rport;
			d->state = procnet_state_name(s->state);
			d->inode = (double)s->inode;
			d->uid = s->uid;
			d->pid = procnet_owner(owners, s->inode);
			d->listening = procnet_is_listening(s);
			d->remote = !d->raw && !d->listening &&
				    (!d->tcp || s->state == PROCNET_ESTABLISHED || s->state == 2 /* SYN_SENT */ ||
				     s->state == 3 /* SYN_RECV */ || s->state == 8 /* CLOSE_WAIT */) &&
				    !local_address(s->raddr, t == PROCNET_TCP6 || t == PROCNET_UDP6 || t == PROCNET_RAW6);
		}
		struct socket_sample sample = { v, all->len, now };
		agent_observe_sample(ctx, "SocketSample", &sample, sample_json);
	}
	free(text);
	free(v);
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
