/* /proc/PID readers. The formats are the kernel's own (fs/proc/array.c,
 * fs/proc/base.c); there is no library for them on the devices this agent
 * targets (libprocps is not in BusyBox systems and pulls in more than it
 * saves), so they are parsed here, defensively: a snapshot tree may hold
 * anything. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/agent.h"
#include "lib/proc_pid.h"

static int parse_pid(const char *s)
{
	long v = 0;
	if (!*s)
		return 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > 99999999)
			return 0;
		v = v * 10 + (*s - '0');
	}
	return (int)v;
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

/* The record getdents64(2) fills (its man page). Read directly rather than
 * through opendir(3), which costs an fstat, an fcntl and a 32 KB buffer
 * per directory: the agent lists every /proc/PID/fd on every pass. */
struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[1];
};

/* Calls cb with each entry's name until it returns false; closes fd. */
static void each_entry(int fd, bool (*cb)(const char *name, void *arg), void *arg)
{
	char buf[8192] __attribute__((aligned(8)));
	for (;;) {
		long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (long off = 0; off < n;) {
			const struct linux_dirent64 *d = (const struct linux_dirent64 *)(buf + off);
			if (d->d_reclen == 0 || off + d->d_reclen > n)
				goto done;
			off += d->d_reclen;
			if (!cb(d->d_name, arg))
				goto done;
		}
		/* procfs (and the file systems snapshots live on) fill the buffer
		 * while entries remain: room left for two more of the longest
		 * records means the end, which saves a getdents per directory. */
		if ((size_t)n + 2 * sizeof(struct linux_dirent64) + 2 * 256 <= sizeof(buf))
			break;
	}
done:
	close(fd);
}

struct pid_vec {
	int *v;
	size_t n, cap;
};

static bool add_pid(const char *name, void *arg)
{
	struct pid_vec *p = arg;
	int pid = parse_pid(name);
	if (pid <= 0)
		return true;
	if (p->n == p->cap) {
		size_t ncap = p->cap ? p->cap * 2 : 256;
		int *nv = realloc(p->v, ncap * sizeof(*nv));
		if (!nv)
			return false;
		p->v = nv;
		p->cap = ncap;
	}
	p->v[p->n++] = pid;
	return true;
}

int proc_scan_open(struct agent_ctx *ctx, struct proc_scan *scan)
{
	memset(scan, 0, sizeof(*scan));
	/* O_NONBLOCK spares agent_open two fcntl calls; a directory ignores it. */
	scan->proc_fd = agent_open(ctx, "/proc", O_RDONLY | O_DIRECTORY | O_NONBLOCK);
	if (scan->proc_fd < 0)
		return -1;
	struct pid_vec p = { NULL, 0, 0 };
	int list_fd = dup(scan->proc_fd);
	if (list_fd >= 0)
		each_entry(list_fd, add_pid, &p);
	/* The real /proc lists pids in order; a snapshot tree need not. */
	if (p.n > 1)
		qsort(p.v, p.n, sizeof(*p.v), cmp_int);
	scan->pids = p.v;
	scan->n = p.n;
	return 0;
}

char *proc_pid_name(char *buf, int pid, const char *suffix)
{
	char digits[12], *d = digits + sizeof(digits);
	unsigned v = pid > 0 ? (unsigned)pid : 0;
	do
		*--d = (char)('0' + v % 10);
	while (v /= 10);
	size_t n = (size_t)(digits + sizeof(digits) - d);
	memcpy(buf, d, n);
	strcpy(buf + n, suffix);
	return buf;
}

int proc_scan_pid(const struct proc_scan *scan, int pid)
{
	char name[16];
	proc_pid_name(name, pid, "");
	/* Relative to /proc: one path component to look up, not the root's. */
	return openat(scan->proc_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
}

void proc_scan_close(struct proc_scan *scan)
{
	if (scan->proc_fd >= 0)
		close(scan->proc_fd);
	free(scan->pids);
	memset(scan, 0, sizeof(*scan));
	scan->proc_fd = -1;
}

int proc_pid_open(struct agent_ctx *ctx, int pid)
{
	char path[32];
	snprintf(path, sizeof(path), "/proc/%d", pid);
	return agent_open(ctx, path, O_RDONLY | O_DIRECTORY | O_NONBLOCK);
}

ssize_t proc_read_at(int dfd, const char *name, char *buf, size_t size)
{
	if (size == 0)
		return -1;
	/* O_NONBLOCK stays on: a FIFO planted in a snapshot reads as empty or
	 * fails with EAGAIN instead of blocking; /proc files ignore it. */
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return -1;
	size_t n = 0;
	while (n < size - 1) {
		size_t want = size - 1 - n;
		ssize_t r = read(fd, buf + n, want);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			/* ESRCH: the process exited while we read. */
			close(fd);
			return -1;
		}
		n += (size_t)r;
		/* These /proc files are produced whole on the first read: a
		 * short read is the end (and saves a read per file). */
		if ((size_t)r < want)
			break;
	}
	close(fd);
	buf[n] = 0;
	return (ssize_t)n;
}

ssize_t proc_readlink_at(int dfd, const char *name, char *buf, size_t size)
{
	if (size == 0)
		return -1;
	ssize_t n = readlinkat(dfd, name, buf, size - 1);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return n;
}

int proc_parse_stat(const char *buf, struct proc_stat *st)
{
	memset(st, 0, sizeof(*st));
	char *end;
	errno = 0;
	long pid = strtol(buf, &end, 10);
	if (end == buf || errno || pid <= 0 || pid > 0x3fffffff || *end != ' ')
		return -1;
	/* comm is whatever the process named itself (prctl PR_SET_NAME): it can
	 * hold spaces and ')', so it runs to the last ')' of the line. */
	const char *open = strchr(buf, '(');
	const char *close = strrchr(buf, ')');
	if (!open || !close || close < open)
		return -1;
	size_t clen = (size_t)(close - open - 1);
	if (clen >= sizeof(st->comm))
		clen = sizeof(st->comm) - 1;
	memcpy(st->comm, open + 1, clen);
	st->comm[clen] = 0;
	st->pid = (int)pid;
	const char *p = close + 1;
	if (p[0] != ' ' || !p[1] || p[2] != ' ')
		return -1;
	st->state = p[1];
	p += 3;
	/* Fields 4 (ppid) to 22 (starttime); some are signed (tty_nr, nice). */
	long long f[23];
	for (int i = 4; i <= 22; i++) {
		errno = 0;
		f[i] = strtoll(p, &end, 10);
		if (end == p || errno || (*end != ' ' && *end != '\n' && *end != 0))
			return -1;
		p = end;
		if (i < 22 && *p != ' ')
			return -1;
	}
	if (f[4] < 0 || f[4] > 0x3fffffff)
		return -1;
	st->ppid = (int)f[4];
	st->flags = (unsigned long)f[9];
	st->utime = (unsigned long long)f[14];
	st->stime = (unsigned long long)f[15];
	st->starttime = (unsigned long long)f[22];
	return 0;
}

int proc_parse_status_uid(const char *buf, unsigned *uid)
{
	const char *p = strncmp(buf, "Uid:", 4) == 0 ? buf : strstr(buf, "\nUid:");
	if (!p)
		return -1;
	p += *p == '\n' ? 5 : 4;
	while (*p == ' ' || *p == '\t')
		p++;
	char *end;
	errno = 0;
	unsigned long v = strtoul(p, &end, 10);
	if (end == p || errno || v > 0xffffffffUL || (*end != '\t' && *end != ' ' && *end != '\n' && *end))
		return -1;
	*uid = (unsigned)v;
	return 0;
}

struct fd_walk {
	int dfd;
	bool (*cb)(int fd, const char *target, void *arg);
	void *arg;
	int n;
};

static bool walk_fd(const char *name, void *arg)
{
	struct fd_walk *w = arg;
	char target[4096];
	int num = parse_pid(name);
	if (num <= 0 && strcmp(name, "0") != 0)
		return true;
	if (proc_readlink_at(w->dfd, name, target, sizeof(target)) < 0)
		return true; /* closed meanwhile */
	w->n++;
	return w->cb(num, target, w->arg);
}

int proc_pid_fds(int pid_dfd, bool (*cb)(int fd, const char *target, void *arg), void *arg)
{
	return proc_pid_fds_at(pid_dfd, "fd", cb, arg);
}

int proc_pid_fds_at(int dfd, const char *path, bool (*cb)(int fd, const char *target, void *arg), void *arg)
{
	int fd = openat(dfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return -1;
	struct fd_walk w = { fd, cb, arg, 0 };
	each_entry(fd, walk_fd, &w);
	return w.n;
}

unsigned long proc_socket_inode(const char *target)
{
	/* by hand, not strtoul: every fd of every process on every poll */
	if (target[0] != 's' || strncmp(target, "socket:[", 8) != 0)
		return 0;
	const char *d = target + 8;
	unsigned long v = 0;
	for (; *d >= '0' && *d <= '9'; d++) {
		unsigned long digit = (unsigned long)(*d - '0');
		if (v > (ULONG_MAX - digit) / 10)
			return 0;
		v = v * 10 + digit;
	}
	if (d == target + 8 || *d != ']' || d[1])
		return 0;
	return v;
}
