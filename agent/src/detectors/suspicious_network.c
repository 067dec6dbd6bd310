//feature: detector suspicious_network ON
//summary: Suspicious network activity: unexpected listening ports, inbound port scans, reverse shells, threat-intel addresses
//requires: process network_activity
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/agent.h"
#include "lib/detect_lru.h"
#include "lib/detect_net.h"
#include "lib/detect_proc.h"
#include "lib/detect_util.h"

static const struct config_key keys[] = {
	{ "SuspiciousNetwork_AllowedPorts", CFG_LIST, "", 0, 0, NULL,
	  "listening ports that never raise UnexpectedListeningPort (\"22,80,8000-8100\")", dnet_check_ports },
	{ "SuspiciousNetwork_AlwaysAlertPorts", CFG_LIST, "23,2323,5555,48101", 0, 0, NULL,
	  "listening ports that alert even when they were open at start (telnet, adb, the Mirai lock)",
	  dnet_check_ports },
	{ "SuspiciousNetwork_ScanThreshold", CFG_INT, "100", 1, 10000000, NULL,
	  "refused connection attempts per minute (TCP resets + UDP no-port + ICMP unreachable sent) that make a port scan",
	  NULL },
	{ "SuspiciousNetwork_ScanPorts", CFG_INT, "15", 2, 65535, NULL,
	  "distinct local ports one address holds half-open (SYN_RECV) at once that make a port scan", NULL },
	{ "SuspiciousNetwork_ShellNames", CFG_LIST,
	  "sh,bash,ash,dash,zsh,ksh,busybox,python*,perl*,php*,ruby*,lua*,nc,ncat,netcat,socat,telnet,awk,gawk", 0, 0,
	  NULL, "programs that are a reverse shell when standard input or output is a TCP connection (globs)", NULL },
	{ "SuspiciousNetwork_ThreatIntel", CFG_LIST, "", 0, 0, NULL,
	  "addresses and CIDR networks whose connections raise ThreatIntelConnection", dnet_check_list },
	{ "SuspiciousNetwork_ThreatIntelFile", CFG_STRING, "", 0, 1024, NULL,
	  "file of addresses and CIDR networks, one per line, '#' comments (read at start and on each config change)",
	  NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};

static const struct alert listener_alert = {
	.name = "UnexpectedListeningPort",
	.remediation = "Identify the process that opened the port; stop and disable the service if it is not "
		       "needed, or add the port to SuspiciousNetwork_AllowedPorts if it is expected.",
	.mitre = "T1571",
};
static const struct alert syn_scan_alert = {
	.name = "PortScan",
	.severity = "Medium",
	.description = "one address holds many local ports half-open at once (SYN scan)",
	.remediation = "Block the scanning address at the firewall and make sure only the "
		       "services the device needs listen on external interfaces.",
	.mitre = "T1046",
};
static const struct alert refused_scan_alert = {
	.name = "PortScan",
	.severity = "Medium",
	.description = "the device refuses connection attempts to closed ports at a scan's rate",
	.remediation = "Find the source in firewall logs and block it; a scan usually precedes "
		       "an attack on whatever service answers.",
	.mitre = "T1046",
};
static const struct alert intel_alert = {
	.name = "ThreatIntelConnection",
	.severity = "High",
	.description = "a connection with an address on the threat-intelligence list",
	.remediation = "Find what the process talks to and why; block the address and look for the way the "
		       "process was started (persistence, a dropped binary).",
	.mitre = "T1071",
};
static const struct alert shell_alert = {
	.name = "ReverseShell",
	.severity = "Critical",
	.description = "a shell or interpreter whose standard input or output is a TCP connection to "
		       "another host",
	.remediation = "Kill the process and block the remote address; someone has interactive control "
		       "of the device: find how the shell was started (a vulnerable service, a "
		       "dropped script) and rebuild trust in the device.",
	.mitre = "T1059",
};

enum { MAX_PIDS = 1024, MAX_LISTENERS = 512, MAX_CONNS = 4096, MAX_SHELLS = 64, MAX_SCANNERS = 256, MAX_INTEL = 256 };

/* A socket seen now whose alert is raised in tick, once the same cycle's
 * process samples have told which program owns it. */
struct pending {
	char proto[8], state[16];
	char laddr[46], raddr[46];
	long lport, rport, pid;
	char matched[64];
};

struct listener {
	long long seen_ms;
	bool alerted;
	bool in_baseline;
	struct pending s;
};

/* An established TCP connection to another host, by socket inode. */
struct conn {
	double inode;
	long lport, rport, pid;
	char raddr[46];
};

struct shell {
	long pid;
	double inodes[3];         /* socket inode of fds 0, 1, 2 (0: not a socket) */
	long long seen_ms;
	bool alerted;
};

struct scanner {
	long long seen_ms;
	bool alerted;
};

struct intel_hit {
	long long seen_ms;
	bool alerted;
	struct pending s;
};

struct sn {
	struct dlru pids, listeners, shells, scanners, intel;
	struct dnet_ports allowed, always;
	struct dnet_set threat;
	struct dlist shell_names;
	long scan_threshold, scan_ports;
	bool have_baseline;
	struct dnet_ports base_tcp, base_udp;
	struct conn *conns;
	size_t nconns;
	long long socket_ms, process_ms;
	/* counters of the previous NetworkCounters sample */
	bool have_counters;
	double prev_refused;
	long long prev_ms;
	bool scanning;
	int quiet_samples;
	char intel_file[1024];
};

static void load_intel_file(struct agent_ctx *ctx, struct sn *n, const char *path)
{
	/* The list is the user's configuration, like the config file itself:
	 * it is read from the real path, not under --root. */
	FILE *f = fopen(path, "re");
	if (!f) {
		agent_warn(ctx, "SuspiciousNetwork_ThreatIntelFile %s: %s; using the inline list only", path,
			   strerror(errno));
		return;
	}
	char line[512];
	long lineno = 0, bad = 0, first_bad = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		char *p = line + strspn(line, " \t");
		p[strcspn(p, " \t\r\n#,;")] = 0;
		if (!*p)
			continue;
		if (!dnet_set_add(&n->threat, p) && bad++ == 0)
			first_bad = lineno;
	}
	fclose(f);
	if (bad)
		agent_warn(ctx, "%s:%ld: expected an IP address or CIDR network; %ld such line(s) skipped", path,
			   first_bad, bad);
}

static void configure(struct agent_ctx *ctx, void *state)
{
	struct sn *n = state;
	const struct agent_config *c = agent_config(ctx);
	dnet_ports_parse(&n->allowed, config_json(c, "SuspiciousNetwork_AllowedPorts"));
	dnet_ports_parse(&n->always, config_json(c, "SuspiciousNetwork_AlwaysAlertPorts"));
	dlist_get(&n->shell_names, c, "SuspiciousNetwork_ShellNames");
	n->scan_threshold = config_int(c, "SuspiciousNetwork_ScanThreshold");
	n->scan_ports = config_int(c, "SuspiciousNetwork_ScanPorts");
	dnet_set_clear(&n->threat);
	dnet_set_add_json(&n->threat, config_json(c, "SuspiciousNetwork_ThreatIntel"));
	const char *file = config_string(c, "SuspiciousNetwork_ThreatIntelFile");
	if (*file)
		load_intel_file(ctx, n, file);
}

static void *init(struct agent_ctx *ctx)
{
	(void)ctx;
	struct sn *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->conns = calloc(MAX_CONNS, sizeof(*n->conns));
	if (!n->conns || dlru_init(&n->pids, MAX_PIDS, sizeof(struct dproc_info)) ||
	    dlru_init(&n->listeners, MAX_LISTENERS, sizeof(struct listener)) ||
	    dlru_init(&n->shells, MAX_SHELLS, sizeof(struct shell)) ||
	    dlru_init(&n->scanners, MAX_SCANNERS, sizeof(struct scanner)) ||
	    dlru_init(&n->intel, MAX_INTEL, sizeof(struct intel_hit)))
		agent_warn(ctx, "out of memory");
	return n;
}

static void fini(void *state)
{
	struct sn *n = state;
	if (!n)
		return;
	dlru_free(&n->pids);
	dlru_free(&n->listeners);
	dlru_free(&n->shells);
	dlru_free(&n->scanners);
	dlru_free(&n->intel);
	dnet_set_clear(&n->threat);
	free(n->conns);
	free(n);
}

/* ProcessId, Executable, Name and CommandLine of pid into e, as far as known. */
static void add_process(cJSON *e, struct sn *n, long pid)
{
	const struct dproc_info *p = pid > 0 ? dproc_lookup(&n->pids, pid, false) : NULL;
	struct dproc_info unknown = { .pid = pid, .uid = -1 };
	dproc_evidence(e, p ? p : &unknown);
}

/* ---- listening ports ---- */

static void pending_from(struct pending *p, const struct dsock *s)
{
	snprintf(p->proto, sizeof(p->proto), "%s", s->proto);
	snprintf(p->state, sizeof(p->state), "%s", s->state);
	snprintf(p->laddr, sizeof(p->laddr), "%s", s->laddr);
	snprintf(p->raddr, sizeof(p->raddr), "%s", s->raddr);
	p->lport = s->lport;
	p->rport = s->rport;
	p->pid = s->pid;
}

static void check_listener(struct sn *n, const struct dsock *s)
{
	struct dnet_ports *base = s->tcp ? &n->base_tcp : &n->base_udp;
	if (!n->have_baseline) {
		base->bits[s->lport >> 3] |= (uint8_t)(1u << (s->lport & 7));
		if (!dnet_ports_has(&n->always, s->lport))
			return;
	}
	if (dnet_ports_has(&n->allowed, s->lport))
		return;
	if (dnet_ports_has(base, s->lport) && !dnet_ports_has(&n->always, s->lport))
		return;
	char key[40];
	snprintf(key, sizeof(key), "%s:%ld", s->tcp ? "tcp" : "udp", s->lport);
	struct listener *l = dlru_get(&n->listeners, key, true, NULL);
	if (!l)
		return;
	l->seen_ms = n->socket_ms;
	if (l->alerted)
		return;
	pending_from(&l->s, s);
	l->in_baseline = dnet_ports_has(base, s->lport);
}

static void raise_listener(struct agent_ctx *ctx, struct sn *n, struct listener *l, const char *key)
{
	const struct pending *s = &l->s;
	bool tcp = strncmp(s->proto, "tcp", 3) == 0, always = dnet_ports_has(&n->always, s->lport);
	l->alerted = true;
	cJSON *e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "Protocol", s->proto);
	cJSON_AddStringToObject(e, "LocalAddress", s->laddr);
	cJSON_AddNumberToObject(e, "LocalPort", (double)s->lport);
	add_process(e, n, s->pid);
	cJSON_AddBoolToObject(e, "InBaseline", l->in_baseline);
	char desc[160];
	if (always)
		snprintf(desc, sizeof(desc), "a service listens on %s port %ld (telnet, adb or a botnet's lock port)",
			 tcp ? "TCP" : "UDP", s->lport);
	else
		snprintf(desc, sizeof(desc), "a service listens on %s port %ld, which was not open at start nor allowed",
			 tcp ? "TCP" : "UDP", s->lport);
	dalert(ctx, &listener_alert, always ? "High" : "Medium", desc, key, e);
}

/* ---- port scans ---- */

/* Half-open connections of one socket table grouped by remote address; a
 * scan holds many local ports half-open at once. Few addresses do this:
 * a small linear table is enough. */
enum { MAX_REMOTES = 16 };
struct synrecv {
	char raddr[46];
	struct dnet_ports *ports;
	int nports;
};
struct synrecv_table {
	struct synrecv r[MAX_REMOTES];
	int n;
};

static void synrecv_add(struct synrecv_table *t, const struct dsock *s)
{
	int i = 0;
	while (i < t->n && strcmp(t->r[i].raddr, s->raddr) != 0)
		i++;
	if (i == t->n) {
		if (t->n == MAX_REMOTES)
			return;
		snprintf(t->r[i].raddr, sizeof(t->r[i].raddr), "%s", s->raddr);
		t->r[i].ports = calloc(1, sizeof(struct dnet_ports));
		t->r[i].nports = 0;
		if (!t->r[i].ports)
			return;
		t->n++;
	}
	if (!dnet_ports_has(t->r[i].ports, s->lport)) {
		t->r[i].ports->bits[s->lport >> 3] |= (uint8_t)(1u << (s->lport & 7));
		t->r[i].nports++;
	}
}

static void synrecv_finish(struct agent_ctx *ctx, struct sn *n, struct synrecv_table *t)
{
	for (int i = 0; i < t->n; i++) {
		struct synrecv *r = &t->r[i];
		if (r->nports >= n->scan_ports) {
			char inc[96];
			dincident_addr(ctx, "syn:", r->raddr, inc, sizeof(inc));
			struct scanner *sc = dlru_get(&n->scanners, inc, true, NULL);
			if (sc && !sc->alerted) {
				sc->alerted = true;
				cJSON *e = cJSON_CreateObject();
				cJSON_AddStringToObject(e, "RemoteAddress", r->raddr);
				cJSON_AddNumberToObject(e, "HalfOpenPorts", r->nports);
				cJSON *ports = cJSON_AddArrayToObject(e, "LocalPorts");
				for (long p = 0, k = 0; p < 65536 && k < 20; p++)
					if (dnet_ports_has(r->ports, p) && ++k)
						cJSON_AddItemToArray(ports, cJSON_CreateNumber((double)p));
				dalert(ctx, &syn_scan_alert, NULL, NULL, inc, e);
			}
			if (sc)
				sc->seen_ms = n->socket_ms;
		}
		free(r->ports);
	}
}

static void on_counters(struct agent_ctx *ctx, struct sn *n, const cJSON *c)
{
	const cJSON *tcp = cJSON_GetObjectItemCaseSensitive(c, "Tcp");
	const cJSON *udp = cJSON_GetObjectItemCaseSensitive(c, "Udp");
	const cJSON *icmp = cJSON_GetObjectItemCaseSensitive(c, "Icmp");
	double rsts = dfield_num(tcp, "OutRsts", 0), noports = dfield_num(udp, "NoPorts", 0);
	double unreach = dfield_num(icmp, "OutDestUnreachs", 0);
	double refused = rsts + noports + unreach;
	long long ms = dsample_ms(ctx, c);
	if (!n->have_counters || refused < n->prev_refused || ms <= n->prev_ms) {
		/* first sample, or counters reset (reboot, namespace change) */
		n->have_counters = true;
		n->prev_refused = refused;
		n->prev_ms = ms;
		return;
	}
	if (ms - n->prev_ms < 1000)
		return;
	double per_min = (refused - n->prev_refused) * 60000.0 / (double)(ms - n->prev_ms);
	long threshold = n->scan_threshold;
	if (per_min > (double)threshold) {
		n->quiet_samples = 0;
		if (!n->scanning) {
			n->scanning = true;
			cJSON *e = cJSON_CreateObject();
			cJSON_AddNumberToObject(e, "RefusedPerMinute", (double)(long long)per_min);
			cJSON_AddNumberToObject(e, "Threshold", (double)threshold);
			cJSON_AddNumberToObject(e, "WindowSeconds", (double)((ms - n->prev_ms) / 1000));
			cJSON_AddNumberToObject(e, "OutRsts", rsts);
			cJSON_AddNumberToObject(e, "UdpNoPorts", noports);
			cJSON_AddNumberToObject(e, "OutDestUnreachs", unreach);
			dalert(ctx, &refused_scan_alert, NULL, NULL, "refused-connections", e);
		}
	} else if (n->scanning && ++n->quiet_samples >= 2) {
		n->scanning = false;
		cJSON *e = cJSON_CreateObject();
		cJSON_AddNumberToObject(e, "RefusedPerMinute", (double)(long long)per_min);
		agent_alert_end(ctx, refused_scan_alert.name, "refused-connections", e);
	}
	n->prev_refused = refused;
	n->prev_ms = ms;
}

/* ---- threat intelligence ---- */

static void check_intel(struct agent_ctx *ctx, struct sn *n, const struct dsock *s)
{
	const struct dnet_cidr *hit = dnet_set_match_text(&n->threat, s->raddr);
	if (!hit)
		return;
	char inc[96];
	dincident_addr(ctx, "", s->raddr, inc, sizeof(inc));
	struct intel_hit *h = dlru_get(&n->intel, inc, true, NULL);
	if (!h)
		return;
	h->seen_ms = n->socket_ms;
	if (h->alerted)
		return;
	pending_from(&h->s, s);
	dnet_cidr_format(hit, h->s.matched, sizeof(h->s.matched));
}

static void raise_intel(struct agent_ctx *ctx, struct sn *n, struct intel_hit *h, const char *inc)
{
	const struct pending *s = &h->s;
	h->alerted = true;
	cJSON *e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "RemoteAddress", s->raddr);
	cJSON_AddNumberToObject(e, "RemotePort", (double)s->rport);
	cJSON_AddNumberToObject(e, "LocalPort", (double)s->lport);
	cJSON_AddStringToObject(e, "Protocol", s->proto);
	cJSON_AddStringToObject(e, "State", s->state);
	add_process(e, n, s->pid);
	if (!config_bool(agent_config(ctx), "Agent_MaskRemoteAddresses"))
		cJSON_AddStringToObject(e, "MatchedEntry", s->matched);
	dalert(ctx, &intel_alert, NULL, NULL, inc, e);
}

/* ---- reverse shells ---- */

/* Only shells with a socket on fd 0-2 are looked up, and there are
 * seldom any: a linear search beats sorting every table. */
static const struct conn *find_conn(const struct sn *n, double inode)
{
	for (size_t i = 0; i < n->nconns; i++)
		if (n->conns[i].inode == inode)
			return &n->conns[i];
	return NULL;
}

static void on_process(struct agent_ctx *ctx, struct sn *n, const struct process_sample *s)
{
	long pid = s->pid;
	long long ms = s->sample_ms >= 0 ? s->sample_ms : agent_monotonic_ms(ctx);
	if (pid <= 0)
		return;
	n->process_ms = ms;
	struct dproc_info *info = dproc_lookup(&n->pids, pid, true);
	if (info) {
		dproc_fill(info, s);
		info->seen_ms = ms;
	}
	if (!s->nstd)
		return;
	if (!dname_in(&n->shell_names, s->exe, s->name))
		return;
	struct shell *sh = dproc_lookup(&n->shells, pid, true);
	if (!sh)
		return;
	sh->pid = pid;
	sh->seen_ms = ms;
	memset(sh->inodes, 0, sizeof(sh->inodes));
	for (int i = 0; i < s->nstd; i++)
		if (s->std[i].fd >= 0 && s->std[i].fd <= 2)
			sh->inodes[s->std[i].fd] = (double)s->std[i].inode;
}

static void check_shells(struct agent_ctx *ctx, struct sn *n)
{
	struct shell *next;
	for (struct shell *sh = dlru_next(&n->shells, NULL); sh; sh = next) {
		next = dlru_next(&n->shells, sh);
		char inc[32];
		snprintf(inc, sizeof(inc), "pid:%ld", sh->pid);
		const struct conn *c = NULL;
		int fdmask = 0;
		for (int fd = 0; fd < 3; fd++) {
			const struct conn *x = sh->inodes[fd] > 0 ? find_conn(n, sh->inodes[fd]) : NULL;
			if (x) {
				c = x;
				fdmask |= 1 << fd;
			}
		}
		bool gone = sh->seen_ms + 5000 < n->process_ms;
		if (gone || (!c && n->socket_ms > sh->seen_ms)) {
			if (sh->alerted)
				dproc_end(ctx, shell_alert.name, sh->pid);
			dlru_remove(&n->shells, sh);
			continue;
		}
		if (!c || sh->alerted)
			continue;
		sh->alerted = true;
		cJSON *e = cJSON_CreateObject();
		add_process(e, n, sh->pid);
		cJSON_AddStringToObject(e, "RemoteAddress", c->raddr);
		cJSON_AddNumberToObject(e, "RemotePort", (double)c->rport);
		cJSON_AddNumberToObject(e, "LocalPort", (double)c->lport);
		cJSON_AddNumberToObject(e, "SocketInode", c->inode);
		cJSON *fds = cJSON_AddArrayToObject(e, "Fds");
		for (int fd = 0; fd < 3; fd++)
			if (fdmask & (1 << fd))
				cJSON_AddItemToArray(fds, cJSON_CreateNumber(fd));
		dalert(ctx, &shell_alert, NULL, NULL, inc, e);
	}
}

/* ---- the socket table ---- */

static void on_sockets(struct agent_ctx *ctx, struct sn *n, const struct socket_sample *sample)
{
	n->socket_ms = sample->sample_ms;
	n->nconns = 0;
	bool intel = n->threat.len > 0;
	struct synrecv_table half = { .n = 0 };
	size_t nsock = sample->n;
	const struct dsock *tab = sample->v;
	for (size_t i = 0; i < nsock; i++) {
		struct dsock s = tab[i];
		if (s.tcp && s.state[0] == 'S' && strstr(s.state, "SYN_RECV"))
			synrecv_add(&half, &s);
		if (s.listening) {
			/* Ephemeral UDP ports are clients (resolvers), not services. */
			if (s.tcp || s.lport < 32768)
				check_listener(n, &s);
			continue;
		}
		if (!s.remote)
			continue;
		if (intel)
			check_intel(ctx, n, &s);
		if (s.tcp && strcmp(s.state, "ESTABLISHED") == 0 && n->nconns < MAX_CONNS) {
			struct conn *c = &n->conns[n->nconns++];
			c->inode = s.inode;
			c->lport = s.lport;
			c->rport = s.rport;
			c->pid = s.pid;
			/* not snprintf: once per connection per poll */
			size_t len = strnlen(s.raddr, sizeof(c->raddr) - 1);
			memcpy(c->raddr, s.raddr, len);
			c->raddr[len] = 0;
		}
	}
	n->have_baseline = true;
	synrecv_finish(ctx, n, &half);
}

static void on_entry(struct agent_ctx *ctx, void *state, const char *event, const cJSON *entry)
{
	if (event[0] == 'N' && strcmp(event, "NetworkCounters") == 0) /* every entry comes here */
		on_counters(ctx, state, entry);
}

static void on_sample(struct agent_ctx *ctx, void *state, const char *kind, const void *sample)
{
	if (SAMPLE_IS_PROCESS(kind))
		on_process(ctx, state, sample);
	else if (SAMPLE_IS_SOCKETS(kind))
		on_sockets(ctx, state, sample);
}

/* End incidents whose listener, scanner or connection was not in the
 * latest socket table. */
static void expire(struct agent_ctx *ctx, struct sn *n, struct dlru *m, const char *name, size_t seen_off,
		   size_t alerted_off)
{
	void *next;
	for (void *v = dlru_next(m, NULL); v; v = next) {
		next = dlru_next(m, v);
		long long seen = *(const long long *)((const char *)v + seen_off);
		if (seen >= n->socket_ms)
			continue;
		if (*(const bool *)((const char *)v + alerted_off))
			agent_alert_end(ctx, name, dlru_key(m, v), NULL);
		dlru_remove(m, v);
	}
}

static void tick(struct agent_ctx *ctx, void *state)
{
	struct sn *n = state;
	for (struct listener *l = dlru_next(&n->listeners, NULL); l; l = dlru_next(&n->listeners, l))
		if (!l->alerted)
			raise_listener(ctx, n, l, dlru_key(&n->listeners, l));
	for (struct intel_hit *h = dlru_next(&n->intel, NULL); h; h = dlru_next(&n->intel, h))
		if (!h->alerted)
			raise_intel(ctx, n, h, dlru_key(&n->intel, h));
	check_shells(ctx, n);
	expire(ctx, n, &n->listeners, listener_alert.name, offsetof(struct listener, seen_ms),
	       offsetof(struct listener, alerted));
	expire(ctx, n, &n->scanners, syn_scan_alert.name, offsetof(struct scanner, seen_ms),
	       offsetof(struct scanner, alerted));
	expire(ctx, n, &n->intel, intel_alert.name, offsetof(struct intel_hit, seen_ms),
	       offsetof(struct intel_hit, alerted));
}

const struct detector detector_suspicious_network = {
	.name = "suspicious_network",
	.keys = keys,
	.init = init,
	.on_entry = on_entry,
	.on_sample = on_sample,
	.tick = tick,
	.configure = configure,
	.fini = fini,
};
