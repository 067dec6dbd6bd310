/* /proc/PID readers. The formats are the kernel's own (fs/proc/array.c,
 * fs/proc/base.c); there is no library for them on the devices this agent
 * targets (libprocps is not in BusyBox systems and pulls in more than it
 * saves), so they are parsed here, defensively: a snapshot tree may hold
 * anything. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

size_t proc_pid_list(struct agent_ctx *ctx, int **pids)
{
	*pids = NULL;
	int fd = agent_open(ctx, "/proc", O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return 0;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return 0;
	}
	size_t n = 0, cap = 0;
	int *v = NULL;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		int pid = parse_pid(de->d_name);
		if (pid <= 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			int *nv = realloc(v, cap * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		v[n++] = pid;
	}
	closedir(d);
	/* The real /proc lists pids in order; a snapshot tree need not. */
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_int);
	*pids = v;
	return n;
}

int proc_pid_open(struct agent_ctx *ctx, int pid)
{
	char path[32];
	snprintf(path, sizeof(path), "/proc/%d", pid);
	return agent_open(ctx, path, O_RDONLY | O_DIRECTORY);
}

ssize_t proc_read_at(int dfd, const char *name, char *buf, size_t size)
{
	if (size == 0)
		return -1;
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -1;
	}
	size_t n = 0;
	while (n < size - 1) {
		ssize_t r = read(fd, buf + n, size - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			/* ESRCH: the process exited while we read. */
			close(fd);
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
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

int proc_pid_fds(int pid_dfd, bool (*cb)(int fd, const char *target, void *arg), void *arg)
{
	int fd = openat(pid_dfd, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	int n = 0;
	struct dirent *de;
	char target[4096];
	while ((de = readdir(d)) != NULL) {
		int num = parse_pid(de->d_name);
		if (num <= 0 && strcmp(de->d_name, "0") != 0)
			continue;
		if (proc_readlink_at(dirfd(d), de->d_name, target, sizeof(target)) < 0)
			continue; /* closed meanwhile */
		n++;
		if (!cb(num, target, arg))
			break;
	}
	closedir(d);
	return n;
}

unsigned long proc_socket_inode(const char *target)
{
	if (strncmp(target, "socket:[", 8) != 0)
		return 0;
	char *end;
	errno = 0;
	unsigned long v = strtoul(target + 8, &end, 10);
	if (end == target + 8 || errno || *end != ']' || end[1])
		return 0;
	return v;
}
