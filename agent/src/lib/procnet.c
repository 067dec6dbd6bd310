/* /proc/net socket tables and counters. The kernel prints them with its own
 * seq_file formats (net/ipv4/tcp_ipv4.c, udp.c, raw.c and their IPv6
 * twins, net/ipv4/proc.c); no library on a small device parses them
 * (BusyBox netstat is a program, not a library), so this file does, and
 * treats every line as untrusted: a snapshot tree may hold anything. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/agent.h"
#include "lib/proc_pid.h"
#include "lib/procnet.h"
#include "lib/text.h"

static const char *const table_paths[PROCNET_TABLES] = {
	"/proc/net/tcp", "/proc/net/tcp6", "/proc/net/udp", "/proc/net/udp6", "/proc/net/raw", "/proc/net/raw6",
};
static const char *const table_protocols[PROCNET_TABLES] = { "tcp", "tcp6", "udp", "udp6", "raw", "raw6" };

const char *procnet_protocol(enum procnet_table t)
{
	return t < PROCNET_TABLES ? table_protocols[t] : "unknown";
}

const char *procnet_state_name(unsigned state)
{
	static const char *const names[] = {
		NULL, "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
		"CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV",
	};
	return state < sizeof(names) / sizeof(names[0]) && names[state] ? names[state] : "UNKNOWN";
}

static bool is_v6(enum procnet_table t)
{
	return t == PROCNET_TCP6 || t == PROCNET_UDP6 || t == PROCNET_RAW6;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* n hex digits at s as a number; -1 if one is not a hex digit. */
static long long hexnum(const char *s, size_t n)
{
	long long v = 0;
	for (size_t i = 0; i < n; i++) {
		int h = hexval(s[i]);
		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/* The next space-separated token: sets *tok and returns its length (0 at
 * the end of the line). */
static size_t next_token(const char **p, const char **tok)
{
	const char *s = *p;
	while (*s == ' ' || *s == '\t')
		s++;
	const char *e = s;
	while (*e && *e != ' ' && *e != '\t' && *e != '\n')
		e++;
	*tok = s;
	*p = e;
	return (size_t)(e - s);
}

/* "0100007F:0277": the kernel prints each 32-bit word of the address as a
 * host-order number (%08X of the __be32), so on the little-endian devices
 * this runs on 127.0.0.1 reads "0100007F". Copying each parsed word back in
 * host order restores the network byte order on any host. */
static int parse_endpoint(const char *tok, size_t len, bool v6, unsigned char addr[16], unsigned short *port)
{
	size_t alen = v6 ? 32 : 8;
	if (len != alen + 5 || tok[alen] != ':')
		return -1;
	memset(addr, 0, 16);
	for (size_t w = 0; w < alen / 8; w++) {
		long long v = hexnum(tok + w * 8, 8);
		if (v < 0)
			return -1;
		uint32_t word = (uint32_t)v;
		memcpy(addr + w * 4, &word, 4);
	}
	long long p = hexnum(tok + alen + 1, 4);
	if (p < 0)
		return -1;
	*port = (unsigned short)p;
	return 0;
}

static int parse_decimal(const char *tok, size_t len, unsigned long long max, unsigned long long *out)
{
	if (len == 0 || len > 20)
		return -1;
	unsigned long long v = 0;
	for (size_t i = 0; i < len; i++) {
		if (tok[i] < '0' || tok[i] > '9')
			return -1;
		unsigned d = (unsigned)(tok[i] - '0');
		if (v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int procnet_parse_line(const char *line, enum procnet_table t, struct procnet_socket *out)
{
	if (t >= PROCNET_TABLES)
		return -1;
	memset(out, 0, sizeof(*out));
	out->table = (unsigned char)t;
	bool v6 = is_v6(t);
	const char *p = line, *tok;
	size_t n;
	unsigned long long v;

	/* "  12:" slot number */
	n = next_token(&p, &tok);
	if (n < 2 || tok[n - 1] != ':' || parse_decimal(tok, n - 1, UINT32_MAX, &v) != 0)
		return -1;
	n = next_token(&p, &tok);
	if (parse_endpoint(tok, n, v6, out->laddr, &out->lport) != 0)
		return -1;
	n = next_token(&p, &tok);
	if (parse_endpoint(tok, n, v6, out->raddr, &out->rport) != 0)
		return -1;
	n = next_token(&p, &tok);
	long long st = n == 2 ? hexnum(tok, 2) : -1;
	if (st < 0)
		return -1;
	out->state = (unsigned char)st;
	/* tx_queue:rx_queue, tr:tm->when, retrnsmt: not used */
	for (int i = 0; i < 3; i++)
		if (next_token(&p, &tok) == 0)
			return -1;
	n = next_token(&p, &tok);
	if (parse_decimal(tok, n, UINT32_MAX, &v) != 0)
		return -1;
	out->uid = (unsigned)v;
	if (next_token(&p, &tok) == 0) /* timeout */
		return -1;
	n = next_token(&p, &tok);
	if (parse_decimal(tok, n, ULONG_MAX, &v) != 0)
		return -1;
	out->inode = (unsigned long)v;
	return 0;
}

/* The text inet_ntop(3) writes, without it: glibc formats every IPv4
 * address through sprintf, which was the largest user-space cost of a
 * network pass (bench/agent_cycle.py). */
static char *format_v4(const unsigned char *a, char *p)
{
	for (int i = 0; i < 4; i++) {
		unsigned v = a[i];
		if (v >= 100)
			*p++ = (char)('0' + v / 100);
		if (v >= 10)
			*p++ = (char)('0' + v / 10 % 10);
		*p++ = (char)('0' + v % 10);
		if (i < 3)
			*p++ = '.';
	}
	*p = 0;
	return p;
}

/* RFC 5952 as glibc's inet_ntop writes it: lower-case groups without
 * leading zeros; the longest run of two or more zero groups (the first of
 * equal runs) as "::"; IPv4-mapped and IPv4-compatible addresses end in
 * dotted IPv4 ("::ffff:10.0.2.2"). */
static void format_v6(const unsigned char *a, char *p)
{
	static const char hex[] = "0123456789abcdef";
	unsigned w[8];
	for (int i = 0; i < 8; i++)
		w[i] = (unsigned)a[2 * i] << 8 | a[2 * i + 1];
	int best = -1, best_len = 0;
	for (int i = 0; i < 8;) {
		int j = i;
		while (j < 8 && w[j] == 0)
			j++;
		if (j - i > best_len) {
			best = i;
			best_len = j - i;
		}
		i = j > i ? j : i + 1;
	}
	if (best_len < 2)
		best = -1;
	for (int i = 0; i < 8; i++) {
		if (best >= 0 && i >= best && i < best + best_len) {
			if (i == best)
				*p++ = ':';
			continue;
		}
		if (i)
			*p++ = ':';
		if (i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff))) {
			format_v4(a + 12, p);
			return;
		}
		bool lead = true;
		for (int shift = 12; shift >= 0; shift -= 4) {
			unsigned d = (w[i] >> shift) & 15;
			if (d || !lead || shift == 0) {
				*p++ = hex[d];
				lead = false;
			}
		}
	}
	if (best >= 0 && best + best_len == 8)
		*p++ = ':';
	*p = 0;
}

void procnet_format_address(const struct procnet_socket *s, bool remote, char out[46])
{
	const unsigned char *a = remote ? s->raddr : s->laddr;
	if (is_v6((enum procnet_table)s->table))
		format_v6(a, out);
	else
		format_v4(a, out);
}

bool procnet_is_listening(const struct procnet_socket *s)
{
	switch (s->table) {
	case PROCNET_TCP:
	case PROCNET_TCP6:
		return s->state == PROCNET_LISTEN;
	case PROCNET_UDP:
	case PROCNET_UDP6: {
		static const unsigned char zero[16];
		return s->rport == 0 && memcmp(s->raddr, zero, 16) == 0;
	}
	default:
		return false;
	}
}

void procnet_add_fields(cJSON *o, const struct procnet_socket *s, bool remote)
{
	char a[46];
	bool raw = s->table == PROCNET_RAW || s->table == PROCNET_RAW6;
	pj_const(o, "Protocol", procnet_protocol((enum procnet_table)s->table));
	procnet_format_address(s, false, a);
	pj_str(o, "LocalAddress", a);
	pj_num(o, "LocalPort", raw ? 0 : s->lport);
	if (!remote)
		return;
	procnet_format_address(s, true, a);
	pj_str(o, "RemoteAddress", a);
	pj_num(o, "RemotePort", raw ? s->lport : s->rport);
	pj_const(o, "State", procnet_state_name(s->state));
}

/* A stream over a regular file only: a FIFO planted as /proc/net/tcp must
 * not block the agent. */
static FILE *open_regular(struct agent_ctx *ctx, const char *path)
{
	int fd = agent_open(ctx, path, O_RDONLY);
	if (fd < 0)
		return NULL;
	struct stat st;
	FILE *f = NULL;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		f = fdopen(fd, "r");
	if (!f)
		close(fd);
	return f;
}

int procnet_read(struct agent_ctx *ctx, enum procnet_table t, struct procnet_list *list)
{
	if (t >= PROCNET_TABLES)
		return -1;
	FILE *f = open_regular(ctx, table_paths[t]);
	if (!f)
		return -1;
	/* Real lines are under 200 bytes; a longer one is not the kernel's. */
	char line[256];
	int added = 0;
	bool skipping = false;
	while (fgets(line, sizeof(line), f)) {
		bool whole = strchr(line, '\n') != NULL || feof(f);
		if (skipping || !whole) {
			skipping = !whole;
			continue;
		}
		if (list->len >= PROCNET_MAX_SOCKETS)
			break;
		struct procnet_socket s;
		if (procnet_parse_line(line, t, &s) != 0)
			continue;
		if (list->len == list->cap) {
			size_t ncap = list->cap ? list->cap * 2 : 64;
			struct procnet_socket *nv = realloc(list->v, ncap * sizeof(*nv));
			if (!nv)
				break;
			list->v = nv;
			list->cap = ncap;
		}
		list->v[list->len++] = s;
		added++;
	}
	fclose(f);
	return added;
}

void procnet_list_free(struct procnet_list *list)
{
	free(list->v);
	memset(list, 0, sizeof(*list));
}

/* ---- /proc/net/snmp ----
 * Pairs of lines: "Tcp: Name1 Name2 ..." then "Tcp: v1 v2 ...". */

static void snmp_group(cJSON *out, const char *text, const char *name, const char *const *names)
{
	char prefix[16];
	int plen = snprintf(prefix, sizeof(prefix), "%s:", name);
	const char *hdr = text;
	while (hdr) {
		if (strncmp(hdr, prefix, (size_t)plen) == 0)
			break;
		hdr = strchr(hdr, '\n');
		if (hdr)
			hdr++;
	}
	if (!hdr)
		return;
	const char *val = strchr(hdr, '\n');
	if (!val || strncmp(val + 1, prefix, (size_t)plen) != 0)
		return;
	val++;
	cJSON *group = cJSON_AddObjectToObject(out, name);
	const char *hp = hdr + plen, *vp = val + plen, *htok, *vtok;
	for (;;) {
		size_t hn = next_token(&hp, &htok);
		size_t vn = next_token(&vp, &vtok);
		if (hn == 0 || vn == 0)
			break;
		for (const char *const *n = names; *n; n++) {
			if (strlen(*n) == hn && memcmp(*n, htok, hn) == 0) {
				unsigned long long v;
				/* Some counters (Tcp MaxConn) are -1; the wanted ones are not. */
				if (parse_decimal(vtok, vn, UINT64_MAX, &v) == 0)
					pj_num(group, *n, (double)v);
				break;
			}
		}
	}
}

cJSON *procnet_snmp(struct agent_ctx *ctx)
{
	static const char *const tcp[] = { "ActiveOpens", "PassiveOpens", "AttemptFails", "EstabResets", "InSegs",
					   "OutSegs", "RetransSegs", "InErrs", "OutRsts", NULL };
	static const char *const udp[] = { "InDatagrams", "NoPorts", "InErrors", "OutDatagrams", NULL };
	static const char *const icmp[] = { "OutDestUnreachs", "InDestUnreachs", NULL };
	size_t len;
	char *text = agent_read_file(ctx, "/proc/net/snmp", 16384, &len);
	if (!text)
		return NULL;
	cJSON *out = cJSON_CreateObject();
	snmp_group(out, text, "Tcp", tcp);
	snmp_group(out, text, "Udp", udp);
	snmp_group(out, text, "Icmp", icmp);
	free(text);
	return out;
}

/* ---- socket inode -> pid ---- */

static int cmp_owner(const void *a, const void *b)
{
	unsigned long x = ((const struct procnet_owner *)a)->inode, y = ((const struct procnet_owner *)b)->inode;
	return (x > y) - (x < y);
}

struct owner_search {
	struct procnet_owners *o;
	size_t remaining;
	int pid;
};

static bool owner_fd(int fd, const char *target, void *arg)
{
	(void)fd;
	struct owner_search *s = arg;
	unsigned long ino = proc_socket_inode(target);
	if (!ino)
		return true;
	struct procnet_owner key = { ino, 0 };
	struct procnet_owner *hit = bsearch(&key, s->o->v, s->o->len, sizeof(key), cmp_owner);
	if (hit && !hit->pid) {
		hit->pid = s->pid;
		s->remaining--;
	}
	return s->remaining > 0;
}

void procnet_owners_find(struct agent_ctx *ctx, const struct procnet_list *wanted, struct procnet_owners *out)
{
	memset(out, 0, sizeof(*out));
	out->proc_fd = -1;
	if (wanted->len == 0)
		return;
	out->v = malloc(wanted->len * sizeof(*out->v));
	if (!out->v)
		return;
	for (size_t i = 0; i < wanted->len; i++)
		if (wanted->v[i].inode)
			out->v[out->len++] = (struct procnet_owner){ wanted->v[i].inode, 0 };
	qsort(out->v, out->len, sizeof(*out->v), cmp_owner);
	size_t u = 0;
	for (size_t i = 0; i < out->len; i++)
		if (u == 0 || out->v[u - 1].inode != out->v[i].inode)
			out->v[u++] = out->v[i];
	out->len = u;

	struct owner_search s = { out, u, 0 };
	struct proc_scan scan;
	proc_scan_open(ctx, &scan);
	/* Ascending pids: the first holder found is the lowest pid. */
	for (size_t i = 0; i < scan.n && s.remaining > 0; i++) {
		char fd_dir[32];
		proc_pid_name(fd_dir, scan.pids[i], "/fd");
		s.pid = scan.pids[i];
		proc_pid_fds_at(scan.proc_fd, fd_dir, owner_fd, &s);
	}
	/* Kept for the owners' exe links. */
	out->proc_fd = scan.proc_fd;
	scan.proc_fd = -1;
	proc_scan_close(&scan);
}

int procnet_owner(const struct procnet_owners *o, unsigned long inode)
{
	/* not bsearch: asked for every socket of every SocketSample, and the
	 * comparison through a function pointer cost more than the search */
	size_t lo = 0, hi = inode ? o->len : 0;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (o->v[mid].inode == inode)
			return o->v[mid].pid;
		if (o->v[mid].inode < inode)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

const char *procnet_owner_exe(struct agent_ctx *ctx, struct procnet_owners *o, int pid)
{
	if (pid <= 0)
		return "";
	for (size_t i = 0; i < o->nexes; i++)
		if (o->exes[i].pid == pid)
			return o->exes[i].exe;
	if ((o->nexes & (o->nexes - 1)) == 0) { /* 0, 1, 2, 4, ...: grow */
		struct procnet_exe *nv = realloc(o->exes, (o->nexes ? o->nexes * 2 : 1) * sizeof(*nv));
		if (!nv)
			return "";
		o->exes = nv;
	}
	char buf[4096];
	ssize_t n = -1;
	if (o->proc_fd >= 0) {
		char link[32];
		proc_pid_name(link, pid, "/exe");
		n = proc_readlink_at(o->proc_fd, link, buf, sizeof(buf));
	} else {
		int dfd = proc_pid_open(ctx, pid);
		if (dfd >= 0) {
			n = proc_readlink_at(dfd, "exe", buf, sizeof(buf));
			close(dfd);
		}
	}
	o->exes[o->nexes].pid = pid;
	o->exes[o->nexes].exe = text_clean(buf, n > 0 ? (size_t)n : 0, sizeof(buf));
	return o->exes[o->nexes++].exe;
}

void procnet_owners_free(struct procnet_owners *o)
{
	for (size_t i = 0; i < o->nexes; i++)
		free(o->exes[i].exe);
	free(o->exes);
	free(o->v);
	if (o->proc_fd >= 0)
		close(o->proc_fd);
	memset(o, 0, sizeof(*o));
	o->proc_fd = -1;
}
