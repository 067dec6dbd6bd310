//feature: detector crypto_miner ON
//summary: Crypto miners: miner names and command lines, mining-pool ports, sustained CPU, binaries in temporary places
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
	{ "CryptoMiner_ProcessNames", CFG_LIST,
	  "xmrig*,xmr-stak*,minerd,cpuminer*,ccminer,cgminer,bfgminer,sgminer,ethminer,nbminer,t-rex,lolminer,"
	  "srbminer*,nanominer,phoenixminer,teamredminer,gminer,nheqminer,xmr-node-proxy,wildrig*,kawpowminer,"
	  "cryptonight,kdevtmpfsi,kinsing",
	  0, 0, NULL, "process or executable names of known miners (globs)", NULL },
	{ "CryptoMiner_CommandLinePatterns", CFG_LIST,
	  "stratum+tcp://,stratum+ssl://,stratum+tls://,stratum2+tcp://,--donate-level,randomx,--cpu-priority,"
	  "nicehash",
	  0, 0, NULL, "command-line fragments of miners (case-insensitive)", NULL },
	{ "CryptoMiner_PoolPorts", CFG_LIST, "3333-3336,4444,5555,5556,6666,7777,7778,8333,8888,9999,14433,14444,45560,45700",
	  0, 0, NULL, "remote ports of mining pools", dnet_check_ports },
	{ "CryptoMiner_CpuPercent", CFG_INT, "80", 1, 10000, NULL,
	  "share of one core (percent) a process must hold to count as sustained CPU use", NULL },
	{ "CryptoMiner_CpuSeconds", CFG_INT, "300", 10, 86400, NULL,
	  "how long (seconds) a process must hold CryptoMiner_CpuPercent", NULL },
	{ "CryptoMiner_Allowlist", CFG_LIST, "", 0, 0, NULL,
	  "programs never reported (globs over the executable path when they contain '/', else over the name), "
	  "e.g. \"/usr/bin/cc1*,make\"",
	  NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};

struct proc {
	struct dproc_entry e;      /* e.socket_ms: the latest socket table that showed a pool connection */
	double last_ticks;
	long long last_ms;
	long long high_since_ms;   /* 0: below the CPU threshold */
	double cpu_pct;
	char pool_addr[46];
	long pool_port;
	/* name checks, done once per configuration and command line */
	unsigned gen;
	bool allowed, named, temp;
	char pattern[64];
};

struct cm {
	struct dproc_table t;
	struct dnet_ports pool_ports;
	struct dlist names, patterns, allow;
	long cpu_pct, cpu_s;
	unsigned gen;
};

static void configure(struct agent_ctx *ctx, void *state)
{
	struct cm *m = state;
	const struct agent_config *c = agent_config(ctx);
	dnet_ports_parse(&m->pool_ports, config_json(c, "CryptoMiner_PoolPorts"));
	dlist_get(&m->names, c, "CryptoMiner_ProcessNames");
	dlist_get(&m->patterns, c, "CryptoMiner_CommandLinePatterns");
	dlist_get(&m->allow, c, "CryptoMiner_Allowlist");
	m->cpu_pct = config_int(c, "CryptoMiner_CpuPercent");
	m->cpu_s = config_int(c, "CryptoMiner_CpuSeconds");
	m->gen = m->gen + 1 ? m->gen + 1 : 1;
}

static void on_sample(struct agent_ctx *ctx, void *state, const struct process_sample *s)
{
	struct cm *m = state;
	if (s->pid <= 0)
		return;
	struct proc *p = dproc_lookup(&m->t.procs, s->pid, true);
	if (!p)
		return;
	double ticks = s->cpu_ticks, hz = s->clock_ticks;
	if (p->e.p.seen_ms && !s->unchanged && strcmp(s->exe, p->e.p.exe) != 0 && !p->e.alerted) {
		/* the pid was reused or the process exec'd: start over */
		memset(p, 0, sizeof(*p));
	}
	if (dproc_table_fill(ctx, &m->t, &p->e, s))
		p->gen = 0; /* check the names again */
	long long ms = p->e.p.seen_ms;
	if (p->last_ms && ms > p->last_ms && ticks >= p->last_ticks && hz > 0) {
		p->cpu_pct = (ticks - p->last_ticks) / hz * 100000.0 / (double)(ms - p->last_ms);
		if (p->cpu_pct >= (double)m->cpu_pct) {
			if (!p->high_since_ms)
				p->high_since_ms = p->last_ms;
		} else {
			p->high_since_ms = 0;
		}
	}
	p->last_ticks = ticks;
	p->last_ms = ms;
}

static void on_sockets(struct agent_ctx *ctx, void *state, const struct dsock *tab, size_t nsock)
{
	(void)ctx;
	struct cm *m = state;
	for (size_t i = 0; i < nsock; i++) {
		struct dsock s = tab[i];
		if (!s.tcp || s.pid <= 0 || !dnet_ports_has(&m->pool_ports, s.rport) || !s.remote)
			continue;
		struct proc *p = dproc_lookup(&m->t.procs, s.pid, true);
		if (!p)
			continue;
		p->e.socket_ms = m->t.socket_ms;
		p->pool_port = s.rport;
		snprintf(p->pool_addr, sizeof(p->pool_addr), "%s", s.raddr);
	}
}

static const char *matching_pattern(const struct dlist *patterns, const char *cmdline)
{
	for (size_t i = 0; i < patterns->n; i++)
		if (dcontains_nocase(cmdline, patterns->items[i]))
			return patterns->items[i];
	return NULL;
}

static void evaluate(struct agent_ctx *ctx, void *state, void *entry)
{
	struct cm *m = state;
	struct proc *p = entry;
	if (p->gen != m->gen) {
		p->gen = m->gen;
		p->allowed = dname_in(&m->allow, p->e.p.exe, p->e.p.name);
		p->named = dname_in(&m->names, p->e.p.exe, p->e.p.name);
		p->temp = p->e.p.deleted || dproc_exe_in_temp(p->e.p.exe);
		const char *pat = matching_pattern(&m->patterns, p->e.p.cmdline);
		snprintf(p->pattern, sizeof(p->pattern), "%s", pat ? pat : "");
	}
	if (p->allowed)
		return;
	const char *pattern = *p->pattern ? p->pattern : NULL;
	long long high_ms = p->high_since_ms ? p->last_ms - p->high_since_ms : 0;
	bool cpu = p->high_since_ms && high_ms >= m->cpu_s * 1000;
	bool pool = p->e.socket_ms && p->e.socket_ms + 60000 >= m->t.socket_ms;
	bool temp = p->temp;
	int strong = p->named + (pattern != NULL), medium = cpu, weak = pool + temp;
	/* Scoring (docs/alerts.md): a miner's name or command line alone;
	 * sustained CPU alone; or two weak signs together. */
	if (!strong && !medium && weak < 2)
		return;
	cJSON *ind = cJSON_CreateArray();
	const char *names[] = { "miner-name", "miner-command-line", "sustained-cpu", "pool-port", "temporary-executable" };
	bool has[] = { p->named, pattern != NULL, cpu, pool, temp };
	for (int i = 0; i < 5; i++)
		if (has[i])
			cJSON_AddItemToArray(ind, cJSON_CreateString(names[i]));
	cJSON *e = cJSON_CreateObject();
	dproc_evidence(e, &p->e.p);
	cJSON_AddItemToObject(e, "Indicators", ind);
	cJSON_AddNumberToObject(e, "CpuPercent", (double)(long)(p->cpu_pct + 0.5));
	cJSON_AddNumberToObject(e, "HighCpuSeconds", (double)(high_ms / 1000));
	if (pattern)
		cJSON_AddStringToObject(e, "MatchedPattern", pattern);
	if (pool) {
		cJSON_AddStringToObject(e, "RemoteAddress", p->pool_addr);
		cJSON_AddNumberToObject(e, "RemotePort", (double)p->pool_port);
	}
	char desc[200];
	snprintf(desc, sizeof(desc), "process '%.31s' looks like a crypto miner (%d strong, %d CPU, %d weak signs)",
		 p->e.p.name, strong, medium, weak);
	dproc_table_alert(ctx, &m->t, &p->e, strong || weak >= 2 || (medium && weak) ? "High" : "Medium", desc, e);
}

static const struct dproc_ops ops = {
	.kind = {
		.name = "CryptoMiner",
		.remediation = "Kill the process, delete its executable and look for how it persists (cron, init "
			       "scripts, a changed service); if it is a legitimate heavy job, add it to "
			       "CryptoMiner_Allowlist.",
		.mitre = "T1496",
	},
	.state_size = sizeof(struct cm),
	.entry_size = sizeof(struct proc),
	.sample = on_sample,
	.sockets = on_sockets,
	.evaluate = evaluate,
};

static void *init(struct agent_ctx *ctx)
{
	return dproc_table_new(ctx, &ops);
}

const struct detector detector_crypto_miner = {
	.name = "crypto_miner",
	.keys = keys,
	.init = init,
	.on_entry = dproc_table_on_entry,
	.on_sample = dproc_table_on_sample,
	.tick = dproc_table_tick,
	.configure = configure,
	.fini = dproc_table_free,
};
