//feature: collector process ON
//summary: Process start and exit (netlink proc connector, else /proc polling): pid, user, executable, command line
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>

#include <linux/capability.h>

#include "core/agent.h"
#include "lib/proc_pid.h"
#include "lib/samples.h"
#include "lib/text.h"

#define CMDLINE_MAX 4096
#define FD_TARGETS_MAX 32

static const struct config_key keys[] = {
	{ "Process_PollingInterval", CFG_INT, "5000", 100, 3600000, NULL,
	  "milliseconds between two scans of /proc (process list and per-process samples)", NULL },
	{ "Process_Mode", CFG_ENUM, "Auto", 0, 0, "Auto|Netlink|Polling",
	  "Auto: starts and exits from the netlink proc connector when the kernel and privileges allow, "
	  "else /proc polling; Netlink: the same, but warn when the connector is unavailable; Polling: /proc only",
	  NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};

struct proc_entry {
	int pid, ppid;
	long long uid; /* -1: unknown */
	unsigned long long starttime;
	char *exe;     /* cleaned text; owned */
	char *cmdline; /* cleaned text; owned */
	char comm[64]; /* as in stat, to notice an exec between passes */
	uid_t dir_uid; /* owner of /proc/PID (its euid): a change means setuid */
	bool sampled;  /* a ProcessSample was made of it */
	bool unchanged; /* uid, comm, exe, cmdline as in the previous pass's sample */
};

struct state {
	struct proc_entry *known; /* ascending pid */
	size_t nknown;
	bool primed;              /* the first pass (Running) is done */
	int nl;                   /* proc connector socket, or -1 */
	uint32_t nl_seq;
	bool nl_acked;            /* the kernel answered the subscription */
	uint32_t nl_ack_err;
	long clk_tck;
	char *passwd;             /* /etc/passwd, re-read each pass */
	unsigned long *inodes;    /* a sample's socket inodes, reused */
	size_t ninodes_cap;
};

/* ---- reading one process ---- */

static void entry_free(struct proc_entry *e)
{
	free(e->exe);
	free(e->cmdline);
	e->exe = e->cmdline = NULL;
}

static bool exe_deleted(const char *exe)
{
	size_t n = strlen(exe);
	return n >= 10 && strcmp(exe + n - 10, " (deleted)") == 0;
}

/* Reads stat into *ps. Returns 0, 1 for a kernel thread (not reported), or
 * -1 if the process vanished or its stat is unreadable. */
static int read_stat(int dfd, struct proc_stat *ps)
{
	char buf[1024];
	if (proc_read_at(dfd, "stat", buf, sizeof(buf)) <= 0 || proc_parse_stat(buf, ps) != 0)
		return -1;
	return ps->flags & PROC_PF_KTHREAD ? 1 : 0;
}

static void read_uid(int dfd, struct proc_entry *e)
{
	char buf[1024];
	unsigned uid;
	/* The Uid: line is within the first few hundred bytes of status. */
	e->uid = proc_read_at(dfd, "status", buf, sizeof(buf)) > 0 && proc_parse_status_uid(buf, &uid) == 0
			 ? (long long)uid
			 : -1;
	struct stat ds;
	e->dir_uid = fstat(dfd, &ds) == 0 ? ds.st_uid : (uid_t)-1;
}

static char *read_exe(int dfd)
{
	char buf[4096];
	ssize_t n = proc_readlink_at(dfd, "exe", buf, sizeof(buf));
	return text_clean(buf, n > 0 ? (size_t)n : 0, CMDLINE_MAX);
}

static void read_cmdline(int dfd, const struct proc_stat *ps, struct proc_entry *e)
{
	char buf[CMDLINE_MAX + 1];
	ssize_t n = proc_read_at(dfd, "cmdline", buf, sizeof(buf));
	e->cmdline = text_clean(buf, n > 0 ? (size_t)n : 0, CMDLINE_MAX);
	if (!*e->cmdline) {
		/* A zombie or a process that cleared its arguments: show the
		 * name as ps does. */
		char name[80];
		int len = snprintf(name, sizeof(name), "[%s]", ps->comm);
		free(e->cmdline);
		e->cmdline = text_clean(name, (size_t)len, CMDLINE_MAX);
	}
}

/* Everything about a process seen for the first time (or exec'd). */
static void read_details(int dfd, const struct proc_stat *ps, struct proc_entry *e)
{
	snprintf(e->comm, sizeof(e->comm), "%s", ps->comm);
	read_uid(dfd, e);
	e->exe = read_exe(dfd);
	read_cmdline(dfd, ps, e);
}

/* A process seen on the previous pass (k, same pid and start time): take
 * over what cannot have changed. The exe link is read every pass (a deleted
 * binary shows there); status only when the owner of /proc/PID changed (a
 * setuid); the command line only when comm or exe changed (an exec).
 * Reading every process's status and cmdline on every pass would cost more
 * than all the rest. */
static void refresh_details(int dfd, const struct proc_stat *ps, struct proc_entry *k, struct proc_entry *e)
{
	struct stat ds;
	e->unchanged = k->sampled;
	if (fstat(dfd, &ds) != 0 || ds.st_uid != k->dir_uid) {
		read_uid(dfd, e);
		e->unchanged = false;
	} else {
		e->uid = k->uid;
		e->dir_uid = k->dir_uid;
	}
	e->exe = read_exe(dfd);
	if (strcmp(ps->comm, k->comm) != 0 || strcmp(e->exe, k->exe) != 0) {
		read_cmdline(dfd, ps, e);
		e->unchanged = false;
	} else {
		e->cmdline = k->cmdline;
		k->cmdline = NULL;
	}
	snprintf(e->comm, sizeof(e->comm), "%s", ps->comm);
}

/* ---- users ---- */

static void user_name(const char *passwd, long long uid, char *out, size_t size)
{
	*out = 0;
	for (const char *line = passwd; line && *line && uid >= 0;) {
		const char *nl = strchr(line, '\n');
		const char *end = nl ? nl : line + strlen(line);
		const char *c1 = memchr(line, ':', (size_t)(end - line));
		const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(end - c1 - 1)) : NULL;
		if (c2) {
			char *uend;
			errno = 0;
			unsigned long long v = strtoull(c2 + 1, &uend, 10);
			if (uend != c2 + 1 && *uend == ':' && !errno && v == (unsigned long long)uid) {
				size_t len = (size_t)(c1 - line);
				char *name = text_clean(line, len, size - 1);
				snprintf(out, size, "%s", name);
				free(name);
				return;
			}
		}
		line = nl ? nl + 1 : NULL;
	}
}

static void load_passwd(struct agent_ctx *ctx, struct state *st)
{
	free(st->passwd);
	st->passwd = agent_read_file(ctx, "/etc/passwd", 1 << 20, NULL);
}

/* ---- reporting ---- */

static void report(struct agent_ctx *ctx, struct state *st, const char *type, const struct proc_entry *e)
{
	char ts[21], user[64];
	agent_format_utc(agent_now(ctx), ts);
	user_name(st->passwd, e->uid, user, sizeof(user));
	cJSON *o = cJSON_CreateObject();
	pj_const(o, "EventType", type);
	pj_num(o, "ProcessId", e->pid);
	pj_num(o, "ParentProcessId", e->ppid);
	pj_num(o, "Uid", (double)e->uid);
	pj_str(o, "UserName", user);
	pj_str(o, "Executable", e->exe ? e->exe : "");
	pj_str(o, "CommandLine", e->cmdline ? e->cmdline : "");
	pj_str(o, "TimestampUTC", ts);
	size_t klen = strlen(type) + strlen(e->cmdline ? e->cmdline : "") + 32;
	char *key = malloc(klen);
	if (key)
		snprintf(key, klen, "%s\x1f%s\x1f%lld", type, e->cmdline ? e->cmdline : "", e->uid);
	agent_report(ctx, o, key);
	free(key);
}

/* ---- samples for detectors ---- */

struct fd_scan {
	struct process_sample *ps;
	unsigned long *inodes;   /* AllSocketInodes, kept from one process to the next */
	size_t cap;
	char *targets[FD_TARGETS_MAX];
	/* plain targets (/dev/null in nearly every process) are copied here
	 * rather than each cleaned into a heap copy */
	char pool[1024];
	size_t used;
	uint32_t heap;          /* targets[i] is malloc'd: bit i */
};

/* Printable ASCII without blanks: text that text_clean would return as it is. */
static bool plain_text(const char *t)
{
	if (!*t)
		return false;
	for (; *t; t++)
		if (*t <= ' ' || *t >= 0x7f)
			return false;
	return true;
}

static bool is_device_of_interest(const char *t)
{
	/* Character devices live under /dev; shared memory and message queues
	 * are files there, not devices. */
	return t[0] == '/' && strncmp(t, "/dev/", 5) == 0 && (t[5] != 's' || strncmp(t + 5, "shm/", 4) != 0) &&
	       (t[5] != 'm' || strncmp(t + 5, "mqueue/", 7) != 0);
}

static bool scan_fd(int fd, const char *target, void *arg)
{
	struct fd_scan *s = arg;
	struct process_sample *ps = s->ps;
	unsigned long ino = proc_socket_inode(target);
	if (ino) {
		if (ps->ninodes == s->cap) {
			size_t cap = s->cap ? 2 * s->cap : 64;
			unsigned long *v = realloc(s->inodes, cap * sizeof(*v));
			if (!v)
				return true;
			s->inodes = v;
			s->cap = cap;
		}
		s->inodes[ps->ninodes++] = ino;
		if (fd <= 2) {
			ps->std[ps->nstd].fd = fd;
			ps->std[ps->nstd++].inode = ino;
		}
		return true;
	}
	if (ps->ntargets >= FD_TARGETS_MAX || !is_device_of_interest(target))
		return true;
	size_t len = strlen(target);
	bool plain = len < 1024 && plain_text(target);
	char *clean = plain ? (char *)target : text_clean(target, len, 1024);
	bool seen = false;
	for (size_t i = 0; i < ps->ntargets && !seen; i++)
		seen = strcmp(s->targets[i], clean) == 0;
	if (seen) {
		if (!plain)
			free(clean);
		return true;
	}
	if (!plain || len >= sizeof(s->pool) - s->used) {
		if (plain && !(clean = strdup(target)))
			return true;
		s->heap |= 1u << ps->ntargets;
	} else {
		clean = memcpy(s->pool + s->used, target, len + 1);
		s->used += len + 1;
	}
	s->targets[ps->ntargets++] = clean;
	return true;
}

/* The ProcessSample entry of docs/events.md, for detectors that read JSON. */
static cJSON *sample_json(const void *sample)
{
	const struct process_sample *ps = sample;
	cJSON *o = cJSON_CreateObject();
	pj_num(o, "ProcessId", (double)ps->pid);
	pj_num(o, "ParentProcessId", (double)ps->ppid);
	pj_num(o, "Uid", (double)ps->uid);
	pj_str(o, "Name", ps->name);
	pj_str(o, "Executable", ps->exe);
	pj_item(o, "ExecutableDeleted", cJSON_CreateBool(ps->deleted));
	pj_str(o, "CommandLine", ps->cmdline);
	pj_num(o, "CpuTicks", ps->cpu_ticks);
	pj_num(o, "ClockTicks", ps->clock_ticks);
	pj_num(o, "SampleTimeMs", (double)ps->sample_ms);
	cJSON *std = cJSON_CreateArray();
	for (int i = 0; i < ps->nstd; i++) {
		cJSON *pair = cJSON_CreateArray();
		cJSON_AddItemToArray(pair, cJSON_CreateNumber(ps->std[i].fd));
		cJSON_AddItemToArray(pair, cJSON_CreateNumber((double)ps->std[i].inode));
		cJSON_AddItemToArray(std, pair);
	}
	pj_item(o, "SocketInodes", std);
	cJSON *targets = cJSON_CreateArray();
	for (size_t i = 0; i < ps->ntargets; i++)
		cJSON_AddItemToArray(targets, cJSON_CreateString(ps->targets[i]));
	pj_item(o, "FdTargets", targets);
	cJSON *all = cJSON_CreateArray();
	for (size_t i = 0; i < ps->ninodes; i++)
		cJSON_AddItemToArray(all, cJSON_CreateNumber((double)ps->inodes[i]));
	pj_item(o, "AllSocketInodes", all);
	return o;
}

static void observe(struct agent_ctx *ctx, struct state *st, int dfd, const struct proc_stat *ps,
		    const struct proc_entry *e)
{
	struct process_sample smp = { 0 };
	struct fd_scan s; /* not zeroed whole: its buffer is 1 KiB, per process */
	s.ps = &smp;
	s.inodes = st->inodes;
	s.cap = st->ninodes_cap;
	s.used = 0;
	s.heap = 0;
	proc_pid_fds(dfd, scan_fd, &s);
	st->inodes = s.inodes;
	st->ninodes_cap = s.cap;
	/* comm is printable ASCII almost always: then it is its own clean
	 * text, and needs no copy for each process of each poll */
	bool plain = ps->comm[0] != 0;
	for (const char *c = ps->comm; *c && plain; c++)
		plain = *c > ' ' && *c < 0x7f;
	char *name = plain ? NULL : text_clean(ps->comm, strlen(ps->comm), 64);
	smp.pid = e->pid;
	smp.ppid = e->ppid;
	smp.uid = (long)e->uid;
	smp.name = name ? name : ps->comm;
	smp.exe = e->exe;
	smp.deleted = exe_deleted(e->exe);
	smp.cmdline = e->cmdline;
	smp.unchanged = e->unchanged;
	smp.cpu_ticks = (double)(ps->utime + ps->stime);
	smp.clock_ticks = (double)st->clk_tck;
	smp.sample_ms = agent_monotonic_ms(ctx);
	smp.targets = (const char *const *)s.targets;
	smp.inodes = s.inodes;
	agent_observe_sample(ctx, "ProcessSample", &smp, sample_json);
	for (size_t i = 0; i < smp.ntargets; i++)
		if (s.heap & (1u << i))
			free(s.targets[i]);
	free(name);
}

/* ---- the known-process table ---- */

static struct proc_entry *find_known(struct state *st, int pid)
{
	size_t lo = 0, hi = st->nknown;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (st->known[mid].pid == pid)
			return &st->known[mid];
		if (st->known[mid].pid < pid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static void free_table(struct proc_entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		entry_free(&v[i]);
	free(v);
}

/* One pass over /proc: samples for detectors, and Start/Exit (Running on
 * the first pass) from the difference with the previous pass. A pid is the
 * same process only with the same start time: pids are reused. */
static int collect(struct agent_ctx *ctx, void *state)
{
	struct state *st = state;
	load_passwd(ctx, st);
	struct proc_scan scan;
	proc_scan_open(ctx, &scan);
	const int *pids = scan.pids;
	struct proc_entry *cur = calloc(scan.n ? scan.n : 1, sizeof(*cur));
	if (!cur) {
		proc_scan_close(&scan);
		return -1;
	}
	size_t ncur = 0;
	bool observed = agent_observed(ctx);
	for (size_t i = 0; i < scan.n; i++) {
		int dfd = proc_scan_pid(&scan, pids[i]);
		if (dfd < 0)
			continue; /* exited since the listing */
		struct proc_stat ps;
		if (read_stat(dfd, &ps) != 0) {
			close(dfd);
			continue;
		}
		struct proc_entry *e = &cur[ncur++];
		e->pid = pids[i]; /* the directory name, not what the file claims */
		e->ppid = ps.ppid;
		e->starttime = ps.starttime;
		struct proc_entry *k = find_known(st, pids[i]);
		if (k && k->starttime == ps.starttime && k->cmdline)
			refresh_details(dfd, &ps, k, e);
		else
			read_details(dfd, &ps, e);
		/* The samples (and the walk of every fd they need) are for
		 * detectors only. */
		if (observed) {
			observe(ctx, st, dfd, &ps, e);
			e->sampled = true;
		}
		close(dfd);
	}
	proc_scan_close(&scan);

	size_t i = 0, j = 0;
	while (i < st->nknown || j < ncur) {
		struct proc_entry *k = i < st->nknown ? &st->known[i] : NULL;
		struct proc_entry *c = j < ncur ? &cur[j] : NULL;
		if (k && (!c || k->pid < c->pid)) {
			report(ctx, st, "Exit", k);
			i++;
		} else if (c && (!k || c->pid < k->pid)) {
			report(ctx, st, st->primed ? "Start" : "Running", c);
			j++;
		} else {
			if (k->starttime != c->starttime) {
				report(ctx, st, "Exit", k);
				report(ctx, st, "Start", c);
			}
			i++;
			j++;
		}
	}
	free_table(st->known, st->nknown);
	st->known = cur;
	st->nknown = ncur;
	st->primed = true;
	return 0;
}

/* ---- the netlink proc connector ----
 * Starts and exits as they happen, so short-lived processes are seen too.
 * The /proc pass still runs every Process_PollingInterval: it samples
 * every process for the detectors and catches what netlink missed (its
 * socket drops events when its buffer overflows). */

static int nl_send_op(int fd, uint32_t seq, enum proc_cn_mcast_op op)
{
	union {
		struct nlmsghdr h;
		char buf[NLMSG_SPACE(sizeof(struct cn_msg) + sizeof(enum proc_cn_mcast_op))];
	} m;
	memset(&m, 0, sizeof(m));
	m.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct cn_msg) + sizeof(op));
	m.h.nlmsg_type = NLMSG_DONE;
	m.h.nlmsg_pid = (uint32_t)getpid();
	m.h.nlmsg_seq = seq;
	struct cn_msg *cn = NLMSG_DATA(&m.h);
	cn->id.idx = CN_IDX_PROC;
	cn->id.val = CN_VAL_PROC;
	cn->seq = seq;
	cn->len = sizeof(op);
	memcpy(cn->data, &op, sizeof(op));
	return send(fd, &m, m.h.nlmsg_len, 0) == (ssize_t)m.h.nlmsg_len ? 0 : -1;
}

typedef void (*nl_event_fn)(struct agent_ctx *ctx, struct state *st, const struct proc_event *ev);

/* Reads what is queued; calls fn for each proc event from the kernel.
 * Returns -1 on a socket error other than "nothing more". */
static int nl_drain(struct agent_ctx *ctx, struct state *st, int fd, nl_event_fn fn)
{
	for (;;) {
		union {
			struct nlmsghdr h;
			char buf[8192];
		} m;
		struct sockaddr_nl from;
		socklen_t flen = sizeof(from);
		ssize_t n = recvfrom(fd, &m, sizeof(m), 0, (struct sockaddr *)&from, &flen);
		if (n < 0 && errno == ENOBUFS) {
			/* Events were lost (a burst of forks filled the socket):
			 * the next /proc pass makes up for them. */
			agent_count(ctx, "Process", "netlink events lost", 1);
			agent_debug(ctx, "proc connector: events lost; the next /proc pass makes up for them");
			continue;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		}
		if (from.nl_pid != 0)
			continue; /* only the kernel speaks on this socket */
		size_t len = (size_t)n;
		for (struct nlmsghdr *h = &m.h; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
			if (h->nlmsg_type == NLMSG_ERROR || h->nlmsg_type == NLMSG_NOOP)
				continue;
			if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct cn_msg)))
				continue;
			const struct cn_msg *cn = NLMSG_DATA(h);
			if (cn->id.idx != CN_IDX_PROC || cn->id.val != CN_VAL_PROC ||
			    h->nlmsg_len < NLMSG_LENGTH(sizeof(struct cn_msg) + sizeof(struct proc_event)) ||
			    cn->len < sizeof(struct proc_event))
				continue;
			struct proc_event ev;
			memcpy(&ev, cn->data, sizeof(ev));
			/* Our subscription's ack carries ack 1 (ours + 1); the kernel
			 * does not echo our sequence number on every version. */
			if (ev.what == PROC_EVENT_NONE && cn->ack != 1)
				continue;
			fn(ctx, st, &ev);
		}
	}
}

static void on_ack(struct agent_ctx *ctx, struct state *st, const struct proc_event *ev)
{
	(void)ctx;
	if (ev->what == PROC_EVENT_NONE) {
		st->nl_acked = true;
		st->nl_ack_err = ev->event_data.ack.err;
	}
}

static void nl_close(struct state *st)
{
	if (st->nl < 0)
		return;
	nl_send_op(st->nl, ++st->nl_seq, PROC_CN_MCAST_IGNORE);
	close(st->nl);
	st->nl = -1;
}

static void nl_open(struct agent_ctx *ctx, struct state *st)
{
	const char *mode = config_string(agent_config(ctx), "Process_Mode");
	bool want = strcmp(mode, "Polling") != 0 && !*agent_root(ctx);
	if (!want) {
		nl_close(st);
		return;
	}
	if (st->nl >= 0)
		return;
	const char *why = NULL;
	int fd = socket(PF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_CONNECTOR);
	struct sockaddr_nl sa;
	memset(&sa, 0, sizeof(sa));
	sa.nl_family = AF_NETLINK;
	sa.nl_groups = CN_IDX_PROC;
	st->nl_seq = (uint32_t)getpid() << 8;
	/* Every fork and thread of the system comes through this socket:
	 * a deeper queue (kernel memory, not ours) rides out build storms.
	 * SO_RCVBUFFORCE passes rmem_max with CAP_NET_ADMIN, which netlink
	 * needs anyway. */
	int rcvbuf = 1 << 20;
	if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) != 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    nl_send_op(fd, st->nl_seq, PROC_CN_MCAST_LISTEN) != 0) {
		why = strerror(errno);
	} else {
		/* The kernel answers a subscription with an ack event, but only
		 * once someone listens: no ack within a moment means refused
		 * (no CAP_NET_ADMIN, not the initial pid namespace). */
		st->nl_acked = false;
		long long deadline = agent_monotonic_ms(NULL) + 200;
		while (!st->nl_acked) {
			long long left = deadline - agent_monotonic_ms(NULL);
			struct pollfd p = { fd, POLLIN, 0 };
			if (left <= 0 || poll(&p, 1, (int)left) <= 0 || nl_drain(ctx, st, fd, on_ack) != 0)
				break;
		}
		if (!st->nl_acked)
			why = "no answer from the kernel (CONFIG_PROC_EVENTS off, or not permitted)";
		else if (st->nl_ack_err)
			why = strerror((int)st->nl_ack_err);
	}
	if (why) {
		if (fd >= 0)
			close(fd);
		if (strcmp(mode, "Netlink") == 0)
			agent_warn(ctx, "Process_Mode Netlink: the proc connector is not available (%s); polling /proc",
				   why);
		else
			agent_debug(ctx, "proc connector not available (%s); polling /proc", why);
		return;
	}
	st->nl = fd;
	agent_debug(ctx, "process starts and exits from the netlink proc connector");
}

static void on_proc_event(struct agent_ctx *ctx, struct state *st, const struct proc_event *ev)
{
	if (!st->primed)
		return;
	if (ev->what == PROC_EVENT_EXEC) {
		int pid = ev->event_data.exec.process_tgid;
		int dfd = proc_pid_open(ctx, pid);
		if (dfd < 0)
			return; /* gone already: the pass cannot know it either */
		struct proc_stat ps;
		struct proc_entry e = { 0 };
		if (read_stat(dfd, &ps) != 0) {
			close(dfd);
			return;
		}
		e.pid = pid;
		e.ppid = ps.ppid;
		e.starttime = ps.starttime;
		read_details(dfd, &ps, &e);
		close(dfd);
		struct proc_entry *k = find_known(st, pid);
		if (k) {
			/* The same pid with another start time: the old one exited
			 * unseen. The same start time: it exec'd another program. */
			if (k->starttime != e.starttime)
				report(ctx, st, "Exit", k);
			entry_free(k);
			*k = e;
		} else {
			struct proc_entry *nv = realloc(st->known, (st->nknown + 1) * sizeof(*nv));
			if (!nv) {
				entry_free(&e);
				return;
			}
			st->known = nv;
			size_t at = 0;
			while (at < st->nknown && st->known[at].pid < pid)
				at++;
			memmove(&st->known[at + 1], &st->known[at], (st->nknown - at) * sizeof(*nv));
			st->known[at] = e;
			st->nknown++;
			k = &st->known[at];
		}
		report(ctx, st, "Start", k);
	} else if (ev->what == PROC_EVENT_EXIT &&
		   ev->event_data.exit.process_pid == ev->event_data.exit.process_tgid) {
		/* Forks without exec are left to the next pass (they share
		 * their parent's command line until then). Thread exits are not
		 * process exits. */
		struct proc_entry *k = find_known(st, ev->event_data.exit.process_tgid);
		if (!k)
			return;
		report(ctx, st, "Exit", k);
		entry_free(k);
		size_t at = (size_t)(k - st->known);
		memmove(k, k + 1, (st->nknown - at - 1) * sizeof(*k));
		st->nknown--;
	}
}

static void on_readable(struct agent_ctx *ctx, void *state)
{
	struct state *st = state;
	if (st->nl >= 0 && nl_drain(ctx, st, st->nl, on_proc_event) != 0) {
		agent_warn(ctx, "proc connector: %s; polling /proc from now on", strerror(errno));
		close(st->nl);
		st->nl = -1;
	}
}

static int pollfd(void *state)
{
	return ((struct state *)state)->nl;
}

/* ---- lifecycle ---- */

static void *init(struct agent_ctx *ctx)
{
	struct state *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->nl = -1;
	st->clk_tck = sysconf(_SC_CLK_TCK);
	if (st->clk_tck <= 0)
		st->clk_tck = 100;
	nl_open(ctx, st);
	return st;
}

static void configure(struct agent_ctx *ctx, void *state)
{
	nl_open(ctx, state);
}

static void fini(void *state)
{
	struct state *st = state;
	if (!st)
		return;
	nl_close(st);
	free_table(st->known, st->nknown);
	free(st->passwd);
	free(st->inodes);
	free(st);
}

const struct collector collector_process = {
	.name = "process",
	.event_name = "Process",
	.priority = PRIORITY_MEDIUM,
	.category = CATEGORY_AGGREGATED,
	/* the netlink proc connector; exe and fd links of other users' processes */
	.caps = AGENT_CAP(CAP_NET_ADMIN) | AGENT_CAP(CAP_SYS_PTRACE) | AGENT_CAP(CAP_DAC_READ_SEARCH),
	.sample_ms = 5000,
	.sample_ms_key = "Process_PollingInterval",
	.keys = keys,
	.init = init,
	.collect = collect,
	.pollfd = pollfd,
	.on_readable = on_readable,
	.configure = configure,
	.fini = fini,
};
