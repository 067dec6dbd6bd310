/* Reading /proc/PID: the process list, stat, status, exe, cmdline and fd
 * links. Everything is read relative to a directory descriptor of
 * /proc/PID so that a path is resolved once per process. Processes vanish
 * at any moment: every function fails quietly (-1) when they do. */
#ifndef AGENT_LIB_PROC_PID_H
#define AGENT_LIB_PROC_PID_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

struct agent_ctx;

/* One look at /proc under the root: its numeric entries, ascending, and a
 * descriptor to open each relative to it. */
struct proc_scan {
	int proc_fd;
	int *pids;
	size_t n;
};
/* Returns 0, or -1 (and no pids) if /proc cannot be read. Always pair
 * with proc_scan_close. */
int proc_scan_open(struct agent_ctx *ctx, struct proc_scan *scan);
/* An O_DIRECTORY descriptor of /proc/PID, or -1 (it exited meanwhile). */
int proc_scan_pid(const struct proc_scan *scan, int pid);
void proc_scan_close(struct proc_scan *scan);
/* "PID" and then suffix ("/fd") in buf, which holds 12 bytes more than
 * suffix; returns buf. (No snprintf: it runs for every process, on
 * every pass.) */
char *proc_pid_name(char *buf, int pid, const char *suffix);
/* The same for one pid, outside a scan. */
int proc_pid_open(struct agent_ctx *ctx, int pid);

/* Read at most size-1 bytes of the file `name` under dfd into buf,
 * NUL-terminated. Returns the length, or -1. Never blocks: a FIFO planted in
 * a snapshot reads as empty. */
ssize_t proc_read_at(int dfd, const char *name, char *buf, size_t size);
/* readlinkat into buf, NUL-terminated (cut at size-1). Returns the length or -1. */
ssize_t proc_readlink_at(int dfd, const char *name, char *buf, size_t size);

/* The fields of /proc/PID/stat the agent uses. */
struct proc_stat {
	int pid;
	char comm[64];           /* cut at 63 bytes; not cleaned */
	char state;
	int ppid;
	unsigned long flags;
	unsigned long long utime, stime, starttime;
};
#define PROC_PF_KTHREAD 0x00200000UL
/* Parse a stat line. comm may hold spaces and ')': it ends at the LAST ')'.
 * Returns 0, or -1 for a truncated or malformed line. */
int proc_parse_stat(const char *buf, struct proc_stat *st);
/* The real uid from the "Uid:" line of /proc/PID/status; -1 if absent. */
int proc_parse_status_uid(const char *buf, unsigned *uid);

/* Call cb for each entry of /proc/PID/fd with the fd number and its link
 * target (NUL-terminated). Returns the number of entries, or -1 if the
 * directory cannot be read (vanished, not permitted). cb returns false to
 * stop early. */
int proc_pid_fds(int pid_dfd, bool (*cb)(int fd, const char *target, void *arg), void *arg);
/* The same for the fd directory at `path` under dfd ("1234/fd" under a
 * proc_scan's proc_fd: one open instead of two). */
int proc_pid_fds_at(int dfd, const char *path, bool (*cb)(int fd, const char *target, void *arg), void *arg);
/* N for a link target "socket:[N]", else 0. */
unsigned long proc_socket_inode(const char *target);

/* Fields of the entries the process and network collectors make by the
 * hundred: the key is a string literal, kept by reference instead of copied
 * (one allocation less per field, in CPU and in peak memory). */
static inline void pj_item(cJSON *o, const char *key, cJSON *item)
{
	cJSON_AddItemToObjectCS(o, key, item);
}
static inline void pj_num(cJSON *o, const char *key, double v)
{
	cJSON_AddItemToObjectCS(o, key, cJSON_CreateNumber(v));
}
static inline void pj_str(cJSON *o, const char *key, const char *s)
{
	cJSON_AddItemToObjectCS(o, key, cJSON_CreateString(s));
}
/* A value that is a string literal too (protocol and state names). */
static inline void pj_const(cJSON *o, const char *key, const char *s)
{
	cJSON_AddItemToObjectCS(o, key, cJSON_CreateStringReference(s));
}

#endif
