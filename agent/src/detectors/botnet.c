//feature: detector botnet ON
//summary: Mirai-style botnets: self-deleted or temporary binaries, random names, raw TCP sockets, telnet fan-out, the 48101 lock, watchdog, killed services
//requires: process network_activity
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/agent.h"
#include "lib/detect_lru.h"
#include "lib/detect_net.h"
#include "lib/detect_proc.h"
#include "lib/detect_util.h"

static const struct config_key keys[] = {
	{ "Botnet_TelnetPorts", CFG_LIST, "23,2323", 0, 0, NULL,
	  "remote ports whose fan-out to many addresses is a worm spreading", dnet_check_ports },
	{ "Botnet_FanOutThreshold", CFG_INT, "10", 2, 64, NULL,
	  "distinct remote addresses on Botnet_TelnetPorts within a minute that count as fan-out", NULL },
	{ "Botnet_LockPorts", CFG_LIST, "48101", 0, 0, NULL,
	  "loopback listening ports botnets use as a single-instance lock", dnet_check_ports },
	{ "Botnet_GuardedPorts", CFG_LIST, "22,23,80", 0, 0, NULL,
	  "services whose listener vanishing after start counts as a botnet killing rivals", dnet_check_ports },
	{ "Botnet_RawSocketAllowlist", CFG_LIST, "tcpdump", 0, 0, NULL,
	  "programs allowed to hold raw TCP sockets (globs over the path when they contain '/', else the name)", NULL },
	{ "Botnet_WatchdogAllowlist", CFG_LIST, "watchdog,watchdogd,procd,systemd,init,wdctl", 0, 0, NULL,
	  "programs allowed to hold /dev/watchdog besides pid 1", NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};

enum { FANOUT_MAX = 64, NSAMPLE = 5 };

enum indicator {
	IND_DELETED, IND_TEMP, IND_RANDOM_NAME, IND_RAW_TCP, IND_FANOUT, IND_LOCK, IND_WATCHDOG, IND_COUNT
};
static const char *const ind_names[IND_COUNT] = {
	"deleted-executable", "temporary-executable", "random-name", "raw-tcp-socket",
	"telnet-fan-out",     "lock-port",            "watchdog-held",
};
/* Strong indicators alert alone (they weigh 2); the others need company. */
static const int ind_weight[IND_COUNT] = { 1, 1, 1, 2, 1, 2, 1 };

struct proc {
	struct dproc_entry e;      /* e.socket_ms: the latest socket table that showed a sign */
	bool ind[IND_COUNT];
	long long fan_start_ms;
	uint32_t fan[FANOUT_MAX];
	int nfan;
	char sample[NSAMPLE][46];
	int nsample;
	long lock_port;
};

struct bn {
	struct dproc_table t;
	struct dnet_ports telnet, lock, guarded;
	struct dlist raw_allow, watchdog_allow;
	long fanout;
	long guarded_list[16];
	int nguarded;
	bool have_baseline;
	struct dnet_ports baseline;  /* guarded ports listening at start */
	long gone[8];
	int ngone;
};

static void configure(struct agent_ctx *ctx, void *state)
{
	struct bn *b = state;
	const struct agent_config *c = agent_config(ctx);
	dnet_ports_parse(&b->telnet, config_json(c, "Botnet_TelnetPorts"));
	dnet_ports_parse(&b->lock, config_json(c, "Botnet_LockPorts"));
	dnet_ports_parse(&b->guarded, config_json(c, "Botnet_GuardedPorts"));
	dlist_get(&b->raw_allow, c, "Botnet_RawSocketAllowlist");
	dlist_get(&b->watchdog_allow, c, "Botnet_WatchdogAllowlist");
	b->fanout = config_int(c, "Botnet_FanOutThreshold");
	b->nguarded = 0;
	/* a byte of the bitmap at a time: the list is a few ports of 65536 */
	for (long port = 0; port < 65536 && b->nguarded < 16; port++)
		if (!b->guarded.bits[port >> 3])
			port |= 7;
		else if (dnet_ports_has(&b->guarded, port))
			b->guarded_list[b->nguarded++] = port;
}

/* Mirai renames itself to a random alphanumeric string unlike its file:
 * at least 8 characters, letters and digits mixed, and not a part of the
 * executable's name. */
static bool random_name(const char *name, const char *exe)
{
	size_t n = strlen(name);
	int digits = 0, letters = 0;
	if (n < 8 || !*exe)
		return false;
	for (const char *c = name; *c; c++) {
		if (*c >= '0' && *c <= '9')
			digits++;
		else if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z'))
			letters++;
		else
			return false;
	}
	if (digits < 2 || letters < 2)
		return false;
	char base[256];
	dbasename(exe, base, sizeof(base));
	return strstr(base, name) == NULL && strncmp(name, base, strlen(base)) != 0;
}

static void on_sample(struct agent_ctx *ctx, void *state, const struct process_sample *s)
{
	struct bn *b = state;
	long pid = s->pid;
	if (pid <= 0 || !*s->exe)
		return; /* kernel threads have no executable */
	/* Most processes show no sign: they get no entry (one made from a
	 * socket sign is found and completed here). */
	bool watchdog = false;
	for (size_t i = 0; i < s->ntargets; i++)
		if (strncmp(s->targets[i], "/dev/watchdog", 13) == 0 && pid != 1)
			watchdog = true;
	struct proc *p = dproc_lookup(&b->t.procs, pid, false);
	if (!p && !s->deleted && !watchdog && !dproc_exe_in_temp(s->exe) && !random_name(s->name, s->exe))
		return;
	if (!p)
		p = dproc_lookup(&b->t.procs, pid, true);
	if (!p)
		return;
	bool changed = dproc_table_fill(ctx, &b->t, &p->e, s);
	p->ind[IND_DELETED] = p->e.p.deleted;
	p->ind[IND_TEMP] = dproc_exe_in_temp(p->e.p.exe);
	if (changed)
		p->ind[IND_RANDOM_NAME] = random_name(p->e.p.name, p->e.p.exe);
	p->ind[IND_WATCHDOG] = watchdog && !dname_in(&b->watchdog_allow, p->e.p.exe, p->e.p.name);
}

static void on_sockets(struct agent_ctx *ctx, void *state, const struct dsock *tab, size_t nsock)
{
	(void)ctx;
	struct bn *b = state;
	long long socket_ms = b->t.socket_ms;
	struct dnet_ports *now = calloc(1, sizeof(*now));
	for (size_t k = 0; k < nsock; k++) {
		struct dsock s = tab[k];
		if (s.tcp && s.listening && now)
			now->bits[s.lport >> 3] |= (uint8_t)(1u << (s.lport & 7));
		if (s.pid <= 0)
			continue;
		struct proc *p = NULL;
		if (s.raw && s.rport == 6) {
			p = dproc_lookup(&b->t.procs, s.pid, true);
			if (p)
				p->ind[IND_RAW_TCP] = true;
		} else if (s.tcp && s.listening && dnet_ports_has(&b->lock, s.lport) &&
			   dnet_text_is_local(s.laddr) && strcmp(s.laddr, "0.0.0.0") != 0 && strcmp(s.laddr, "::") != 0) {
			p = dproc_lookup(&b->t.procs, s.pid, true);
			if (p) {
				p->ind[IND_LOCK] = true;
				p->lock_port = s.lport;
			}
		} else if (s.tcp && dnet_ports_has(&b->telnet, s.rport) && s.remote &&
			   (strcmp(s.state, "SYN_SENT") == 0 || strcmp(s.state, "ESTABLISHED") == 0)) {
			p = dproc_lookup(&b->t.procs, s.pid, true);
			if (!p)
				continue;
			if (socket_ms - p->fan_start_ms > 60000) {
				p->fan_start_ms = socket_ms;
				p->nfan = 0;
			}
			uint32_t h = 2166136261u;
			for (const char *c = s.raddr; *c; c++)
				h = (h ^ (unsigned char)*c) * 16777619u;
			bool seen = false;
			for (int i = 0; i < p->nfan; i++)
				seen |= p->fan[i] == h;
			if (!seen && p->nfan < FANOUT_MAX) {
				p->fan[p->nfan++] = h;
				if (p->nsample < NSAMPLE)
					snprintf(p->sample[p->nsample++], sizeof(p->sample[0]), "%s", s.raddr);
			}
			if (p->nfan >= b->fanout)
				p->ind[IND_FANOUT] = true;
		}
		if (p)
			p->e.socket_ms = socket_ms;
	}
	if (!now)
		return;
	if (!b->have_baseline) {
		for (size_t i = 0; i < sizeof(now->bits); i++)
			b->baseline.bits[i] = now->bits[i] & b->guarded.bits[i];
		b->have_baseline = true;
	} else {
		b->ngone = 0;
		for (int i = 0; i < b->nguarded && b->ngone < 8; i++)
			if (dnet_ports_has(&b->baseline, b->guarded_list[i]) && !dnet_ports_has(now, b->guarded_list[i]))
				b->gone[b->ngone++] = b->guarded_list[i];
	}
	free(now);
}

static void evaluate(struct agent_ctx *ctx, void *state, void *entry)
{
	struct bn *b = state;
	struct proc *p = entry;
	/* raw-socket holders on the allowlist are not indicators */
	if (p->ind[IND_RAW_TCP] && dname_in(&b->raw_allow, p->e.p.exe, p->e.p.name))
		p->ind[IND_RAW_TCP] = false;
	int score = 0;
	for (int i = 0; i < IND_COUNT; i++)
		score += p->ind[i] ? ind_weight[i] : 0;
	/* Rival services killed is a device-wide sign: it adds to any process
	 * that already has one of its own. */
	bool killer = score > 0 && b->ngone > 0;
	score += killer;
	if (score < 2)
		return;
	cJSON *e = cJSON_CreateObject();
	dproc_evidence(e, &p->e.p);
	cJSON *ind = cJSON_AddArrayToObject(e, "Indicators");
	for (int i = 0; i < IND_COUNT; i++)
		if (p->ind[i])
			cJSON_AddItemToArray(ind, cJSON_CreateString(ind_names[i]));
	if (killer)
		cJSON_AddItemToArray(ind, cJSON_CreateString("services-killed"));
	cJSON_AddNumberToObject(e, "Score", score);
	if (p->nfan) {
		cJSON_AddNumberToObject(e, "FanOutCount", p->nfan);
		cJSON *ra = cJSON_AddArrayToObject(e, "RemoteAddresses");
		for (int i = 0; i < p->nsample; i++)
			cJSON_AddItemToArray(ra, cJSON_CreateString(p->sample[i]));
	}
	if (p->ind[IND_LOCK])
		cJSON_AddNumberToObject(e, "LockPort", (double)p->lock_port);
	if (killer) {
		cJSON *g = cJSON_AddArrayToObject(e, "ServicesGone");
		for (int i = 0; i < b->ngone; i++)
			cJSON_AddItemToArray(g, cJSON_CreateNumber((double)b->gone[i]));
	}
	char desc[200];
	snprintf(desc, sizeof(desc), "process '%.31s' behaves like a Mirai-style bot (score %d)", p->e.p.name, score);
	dproc_table_alert(ctx, &b->t, &p->e, score >= 4 ? "Critical" : "High", desc, e);
}

static const struct dproc_ops ops = {
	.kind = {
		.name = "Botnet",
		.remediation = "Isolate the device, kill the process and reboot (Mirai-style bots live in memory); "
			       "change every default or weak password, disable telnet and close the ports it came "
			       "through before reconnecting the device.",
		.mitre = "T1583.005",
	},
	.state_size = sizeof(struct bn),
	.entry_size = sizeof(struct proc),
	.sample = on_sample,
	.sockets = on_sockets,
	.evaluate = evaluate,
};

static void *init(struct agent_ctx *ctx)
{
	return dproc_table_new(ctx, &ops);
}

const struct detector detector_botnet = {
	.name = "botnet",
	.keys = keys,
	.init = init,
	.on_entry = dproc_table_on_entry,
	.on_sample = dproc_table_on_sample,
	.tick = dproc_table_tick,
	.configure = configure,
	.fini = dproc_table_free,
};
