//feature: collector login ON
//summary: Logins, failed logins and logouts from utmp/wtmp/btmp and syslog (sshd, dropbear, BusyBox login, su)
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utmp.h>
#include <arpa/inet.h>

#include <linux/capability.h>

#include "core/agent.h"
#include "lib/text.h"

static const struct config_key keys[] = {
	{ "Login_PollingInterval", CFG_INT, "5000", 100, 3600000, NULL,
	  "milliseconds between two looks at the login records and logs", NULL },
	{ "Login_LogFiles", CFG_LIST, "/var/log/auth.log,/var/log/secure,/var/log/messages", 0, 0, NULL,
	  "syslog files to follow for sshd, dropbear, login and su lines", NULL },
	{ "Login_UseUtmp", CFG_BOOL, "true", 0, 0, NULL,
	  "also read /var/log/wtmp and /var/log/btmp (and /var/run/utmp when there is no wtmp)", NULL },
	{ "Login_InitialReadBytes", CFG_INT, "65536", 0, 16777216, NULL,
	  "at start, how much of the end of each file to read (older lines are skipped)", NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};

enum { MAX_FILES = 8, MAX_LINE = 4096, READ_PER_PASS = 1 << 20 };

struct followed {
	char path[256];
	dev_t dev;
	ino_t ino;
	off_t offset;
	bool seen;          /* opened at least once */
	char *partial;      /* MAX_LINE bytes, allocated when a log is first read */
	size_t plen;
	bool skipping;      /* inside an overlong line: drop until its end */
};

struct login_state {
	struct followed logs[MAX_FILES];
	size_t nlogs;
	struct followed wtmp, btmp, utmp;
	bool first_pass;
	/* wtmp DEAD_PROCESS records carry no user: remember who logged in on
	 * each line (terminal) to report the logout. */
	struct {
		char line[UT_LINESIZE + 1];
		char user[UT_NAMESIZE + 1];
		char host[UT_HOSTSIZE + 1];
	} sessions[32];
};

static void report(struct agent_ctx *ctx, const char *op, const char *user, const char *addr, int port,
		   const char *tty, long pid, const char *exe, const char *source, time_t when, bool invalid,
		   int weight)
{
	char ts[21], key[512];
	char *u = text_clean(user ? user : "", user ? strlen(user) : 0, 128);
	char *a = text_clean(addr ? addr : "", addr ? strlen(addr) : 0, 64);
	char *t = text_clean(tty ? tty : "", tty ? strlen(tty) : 0, 64);
	agent_format_utc(when, ts);
	cJSON *e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "Operation", op);
	cJSON_AddStringToObject(e, "UserName", u);
	cJSON_AddStringToObject(e, "RemoteAddress", a);
	cJSON_AddNumberToObject(e, "RemotePort", port);
	cJSON_AddStringToObject(e, "Terminal", t);
	cJSON_AddNumberToObject(e, "ProcessId", (double)pid);
	cJSON_AddStringToObject(e, "Executable", exe);
	cJSON_AddStringToObject(e, "Source", source);
	cJSON_AddStringToObject(e, "TimestampUTC", ts);
	cJSON_AddBoolToObject(e, "InvalidUser", invalid);
	cJSON_AddNumberToObject(e, "Weight", weight);
	snprintf(key, sizeof(key), "%s|%s|%s|%s|%s", op, u, a, exe, source);
	agent_report(ctx, e, key);
	free(u);
	free(a);
	free(t);
}

/* ---- syslog lines ----
 * Hand-written: there is no library for parsing sshd's, dropbear's and
 * BusyBox's free-text messages; each pattern below is one documented message
 * of those programs, matched literally. */

static const char *months = "JanFebMarAprMayJunJulAugSepOctNovDec";

/* Parses "Nov 22 01:02:03 " or "2026-11-22T01:02:03[.frac][Z|+hh:mm] ";
 * returns the rest of the line or NULL. */
static const char *parse_time(struct agent_ctx *ctx, const char *s, time_t *when)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	int consumed = 0;
	if (isdigit((unsigned char)s[0])) {
		if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
			   &tm.tm_min, &tm.tm_sec, &consumed) != 6)
			return NULL;
		tm.tm_year -= 1900;
		tm.tm_mon -= 1;
		s += consumed;
		while (*s && *s != ' ')
			s++; /* fraction and zone: device logs are taken as UTC */
		*when = timegm(&tm);
		return *s ? s + 1 : NULL;
	}
	char mon[4] = "";
	if (sscanf(s, "%3s %2d %2d:%2d:%2d%n", mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 5)
		return NULL;
	const char *m = strstr(months, mon);
	if (!m || strlen(mon) != 3 || (m - months) % 3)
		return NULL;
	tm.tm_mon = (int)(m - months) / 3;
	/* RFC 3164 has no year: take the agent's, or last year's for a date
	 * that would be more than a day ahead. */
	time_t now = agent_now(ctx);
	struct tm nowtm;
	gmtime_r(&now, &nowtm);
	tm.tm_year = nowtm.tm_year;
	*when = timegm(&tm);
	if (*when > now + 86400) {
		tm.tm_year--;
		*when = timegm(&tm);
	}
	s += consumed;
	return *s == ' ' ? s + 1 : NULL;
}

/* "host [facility.prio] prog[pid]: message" -> prog, pid, message */
static const char *parse_tag(const char *s, char *prog, size_t progsize, long *pid)
{
	for (int field = 0; field < 3 && *s; field++) {
		const char *sp = strchr(s, ' ');
		const char *colon = strchr(s, ':');
		if (colon && (!sp || colon < sp) && colon[1] == ' ') {
			size_t len = (size_t)(colon - s);
			const char *br = memchr(s, '[', len);
			*pid = br ? strtol(br + 1, NULL, 10) : 0;
			if (br)
				len = (size_t)(br - s);
			const char *slash = memrchr(s, '/', len);
			if (slash) {
				len -= (size_t)(slash + 1 - s);
				s = slash + 1;
			}
			if (len >= progsize)
				len = progsize - 1;
			memcpy(prog, s, len);
			prog[len] = 0;
			return colon + 2;
		}
		if (!sp)
			return NULL;
		s = sp + 1;
	}
	return NULL;
}

/* Copies the word at s up to any of `stops` (or space) into out. */
static const char *word(const char *s, const char *stops, char *out, size_t size)
{
	size_t n = 0;
	while (*s && *s != ' ' && !strchr(stops, *s)) {
		if (n + 1 < size)
			out[n++] = *s;
		s++;
	}
	out[n] = 0;
	return s;
}

/* "A.B.C.D:port", "[v6]:port", "v6:port" (dropbear) -> addr, port */
static void split_addr_port(const char *in, char *addr, size_t size, int *port)
{
	char tmp[128];
	snprintf(tmp, sizeof(tmp), "%s", in);
	char *a = tmp;
	size_t len = strlen(a);
	if (len && (a[len - 1] == '>' || a[len - 1] == ':'))
		a[--len] = 0;
	if (*a == '<')
		a++;
	*port = 0;
	char *colon = strrchr(a, ':');
	if (*a == '[') {
		char *close = strchr(a, ']');
		if (close) {
			*close = 0;
			if (close[1] == ':')
				*port = atoi(close + 2);
			a++;
		}
	} else if (colon && strchr(a, ':') == colon) {
		*colon = 0;
		*port = atoi(colon + 1);
	} else if (colon && strchr(a, '.') == NULL) {
		/* dropbear writes bare IPv6 with ":port" appended */
		*colon = 0;
		*port = atoi(colon + 1);
	}
	size_t l = strnlen(a, size - 1);
	memcpy(addr, a, l);
	addr[l] = 0;
}

static bool starts(const char *s, const char *prefix, const char **rest)
{
	size_t n = strlen(prefix);
	if (strncmp(s, prefix, n) != 0)
		return false;
	*rest = s + n;
	return true;
}

static void parse_sshd(struct agent_ctx *ctx, const char *msg, long pid, time_t when)
{
	const char *r;
	char user[128], addr[64];
	bool invalid = false;
	const char *op = NULL;
	if (starts(msg, "Accepted ", &r)) {
		op = "Login";
	} else if (starts(msg, "Failed ", &r)) {
		op = "LoginFailed";
	} else if (starts(msg, "pam_unix(sshd:session): session closed for user ", &r)) {
		word(r, "", user, sizeof(user));
		report(ctx, "Logout", user, "", 0, "ssh", pid, "sshd", "syslog", when, false, 1);
		return;
	} else {
		return;
	}
	/* "<method> for [invalid user ]USER from ADDR port N ..." */
	r = strstr(r, " for ");
	if (!r)
		return;
	r += 5;
	if (starts(r, "invalid user ", &r))
		invalid = true;
	const char *from = strstr(r, " from ");
	if (!from)
		return;
	size_t ulen = (size_t)(from - r) < sizeof(user) - 1 ? (size_t)(from - r) : sizeof(user) - 1;
	memcpy(user, r, ulen); /* user names may contain spaces in forged attempts */
	user[ulen] = 0;
	r = word(from + 6, "", addr, sizeof(addr));
	int port = 0;
	const char *p = strstr(r, " port ");
	if (p)
		port = atoi(p + 6);
	report(ctx, op, user, addr, port, "ssh", pid, "sshd", "syslog", when, invalid, 1);
}

static void parse_dropbear(struct agent_ctx *ctx, const char *msg, long pid, time_t when)
{
	const char *r;
	char user[128] = "", addr[64], hostport[128];
	const char *op;
	bool invalid = false;
	int port = 0;
	if (starts(msg, "Bad password attempt for '", &r) || starts(msg, "Bad PAM password attempt for '", &r)) {
		op = "LoginFailed";
	} else if (starts(msg, "Login attempt for nonexistent user '", &r)) {
		op = "LoginFailed";
		invalid = true;
	} else if (starts(msg, "Login attempt for nonexistent user from ", &r)) {
		word(r, "", hostport, sizeof(hostport));
		split_addr_port(hostport, addr, sizeof(addr), &port);
		report(ctx, "LoginFailed", "", addr, port, "ssh", pid, "dropbear", "syslog", when, true, 1);
		return;
	} else if (starts(msg, "Password auth succeeded for '", &r) || starts(msg, "Pubkey auth succeeded for '", &r) ||
		   starts(msg, "PAM password auth succeeded for '", &r)) {
		op = "Login";
	} else if (starts(msg, "Exit (", &r)) {
		/* "Exit (root) from <10.0.2.2:40000>: Disconnect received" */
		r = word(r, ")", user, sizeof(user));
		const char *from = strstr(r, " from <");
		if (!from)
			return;
		word(from + 6, ">", hostport, sizeof(hostport));
		split_addr_port(hostport, addr, sizeof(addr), &port);
		report(ctx, "Logout", user, addr, port, "ssh", pid, "dropbear", "syslog", when, false, 1);
		return;
	} else {
		return;
	}
	const char *q = strchr(r, '\'');
	if (!q)
		return;
	size_t ulen = (size_t)(q - r) < sizeof(user) - 1 ? (size_t)(q - r) : sizeof(user) - 1;
	memcpy(user, r, ulen);
	user[ulen] = 0;
	const char *from = strstr(q, " from ");
	if (!from)
		return;
	word(from + 6, "", hostport, sizeof(hostport));
	split_addr_port(hostport, addr, sizeof(addr), &port);
	report(ctx, op, user, addr, port, "ssh", pid, "dropbear", "syslog", when, invalid, 1);
}

/* "'USER'" at r -> user; " on 'TTY'" and " from 'HOST'" anywhere after */
static void quoted(const char *r, const char *marker, char *out, size_t size)
{
	out[0] = 0;
	const char *m = strstr(r, marker);
	if (!m)
		return;
	m += strlen(marker);
	const char *q = strchr(m, '\'');
	if (!q)
		return;
	size_t len = (size_t)(q - m) < size - 1 ? (size_t)(q - m) : size - 1;
	memcpy(out, m, len);
	out[len] = 0;
}

static void parse_login(struct agent_ctx *ctx, const char *msg, long pid, time_t when)
{
	const char *r;
	char user[128], tty[64], host[128];
	quoted(msg, " on '", tty, sizeof(tty));
	quoted(msg, " from '", host, sizeof(host));
	if (starts(msg, "invalid password for '", &r)) {
		quoted(msg, "for '", user, sizeof(user));
		/* BusyBox login logs one line per three failed attempts. */
		report(ctx, "LoginFailed", user, host, 0, tty, pid, "login", "syslog", when, false, 3);
	} else if (starts(msg, "root login", &r)) {
		report(ctx, "Login", "root", host, 0, tty, pid, "login", "syslog", when, false, 1);
	}
}

static void parse_su(struct agent_ctx *ctx, const char *msg, long pid, time_t when)
{
	const char *r;
	char tty[64], from[128], to[128];
	/* BusyBox su: "+ ttyS0 user:root" / "- ttyS0 user:root" */
	if ((msg[0] == '+' || msg[0] == '-') && msg[1] == ' ') {
		r = word(msg + 2, "", tty, sizeof(tty));
		if (*r != ' ')
			return;
		r = word(r + 1, ":", from, sizeof(from));
		if (*r != ':')
			return;
		word(r + 1, "", to, sizeof(to));
		report(ctx, msg[0] == '+' ? "Login" : "LoginFailed", to, "", 0, tty, pid, "su", "syslog", when, false,
		       1);
		return;
	}
	/* shadow's su: "Successful su for root by user", "FAILED su for root by user" */
	bool ok = starts(msg, "Successful su for ", &r);
	if (ok || starts(msg, "FAILED su for ", &r)) {
		word(r, "", to, sizeof(to));
		report(ctx, ok ? "Login" : "LoginFailed", to, "", 0, "", pid, "su", "syslog", when, false, 1);
	}
}

static void parse_line(struct agent_ctx *ctx, const char *line)
{
	time_t when;
	char prog[64];
	long pid = 0;
	const char *rest = parse_time(ctx, line, &when);
	if (!rest)
		return;
	const char *msg = parse_tag(rest, prog, sizeof(prog), &pid);
	if (!msg)
		return;
	if (strcmp(prog, "sshd") == 0 || strncmp(prog, "sshd-session", 12) == 0)
		parse_sshd(ctx, msg, pid, when);
	else if (strcmp(prog, "dropbear") == 0)
		parse_dropbear(ctx, msg, pid, when);
	else if (strcmp(prog, "login") == 0)
		parse_login(ctx, msg, pid, when);
	else if (strcmp(prog, "su") == 0)
		parse_su(ctx, msg, pid, when);
}

/* ---- following files ---- */

/* Opens f's file, detects rotation (new inode or shorter file) and
 * positions the read offset. Returns the descriptor or -1. */
static int follow_open(struct agent_ctx *ctx, struct followed *f, bool first_pass, off_t initial, size_t align)
{
	int fd = agent_open(ctx, f->path, O_RDONLY);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -1;
	}
	if (!f->seen || st.st_ino != f->ino || st.st_dev != f->dev || st.st_size < f->offset) {
		/* A file seen for the first time at start is read from near its
		 * end; one that appears or is rotated later, from its start. */
		off_t start = 0;
		if (first_pass && !f->seen && st.st_size > initial) {
			start = st.st_size - initial;
			start -= start % (off_t)align;
		}
		f->offset = start;
		f->plen = 0;
		f->skipping = start > 0 && align == 1; /* drop the partial first line */
		f->dev = st.st_dev;
		f->ino = st.st_ino;
		f->seen = true;
	}
	return fd;
}

static void follow_log(struct agent_ctx *ctx, struct login_state *s, struct followed *f)
{
	int fd = follow_open(ctx, f, s->first_pass, config_int(agent_config(ctx), "Login_InitialReadBytes"), 1);
	if (fd < 0)
		return;
	if (!f->partial && !(f->partial = malloc(MAX_LINE))) {
		close(fd);
		return;
	}
	char buf[8192];
	size_t total = 0;
	while (total < READ_PER_PASS) {
		ssize_t n = pread(fd, buf, sizeof(buf), f->offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		f->offset += n;
		total += (size_t)n;
		for (ssize_t i = 0; i < n; i++) {
			char c = buf[i];
			if (c == '\n') {
				if (!f->skipping) {
					f->partial[f->plen] = 0;
					parse_line(ctx, f->partial);
				}
				f->plen = 0;
				f->skipping = false;
			} else if (!f->skipping) {
				if (f->plen + 1 >= MAX_LINE) {
					/* An overlong line is not one of the messages we
					 * parse: drop it whole. */
					f->skipping = true;
					f->plen = 0;
				} else {
					f->partial[f->plen++] = c ? c : ' ';
				}
			}
		}
	}
	close(fd);
}

static void copy_field(char *out, const char *in, size_t size)
{
	size_t n = strnlen(in, size);
	memcpy(out, in, n);
	out[n] = 0;
}

static void utmp_addr(const struct utmp *u, char *out, size_t size)
{
	out[0] = 0;
	int32_t a[4];
	memcpy(a, u->ut_addr_v6, sizeof(a));
	if (a[1] || a[2] || a[3])
		inet_ntop(AF_INET6, a, out, (socklen_t)size);
	else if (a[0])
		inet_ntop(AF_INET, a, out, (socklen_t)size);
}

static void follow_utmp(struct agent_ctx *ctx, struct login_state *s, struct followed *f, const char *source)
{
	off_t initial = config_int(agent_config(ctx), "Login_InitialReadBytes");
	int fd = follow_open(ctx, f, s->first_pass, initial, sizeof(struct utmp));
	if (fd < 0)
		return;
	struct utmp u;
	size_t total = 0;
	while (total < READ_PER_PASS && pread(fd, &u, sizeof(u), f->offset) == (ssize_t)sizeof(u)) {
		f->offset += (off_t)sizeof(u);
		total += sizeof(u);
		char user[UT_NAMESIZE + 1], line[UT_LINESIZE + 1], host[UT_HOSTSIZE + 1], addr[INET6_ADDRSTRLEN];
		copy_field(user, u.ut_user, UT_NAMESIZE);
		copy_field(line, u.ut_line, UT_LINESIZE);
		copy_field(host, u.ut_host, UT_HOSTSIZE);
		utmp_addr(&u, addr, sizeof(addr));
		const char *remote = *addr ? addr : host;
		time_t when = (time_t)u.ut_tv.tv_sec;
		size_t nsess = sizeof(s->sessions) / sizeof(s->sessions[0]);
		if (strcmp(source, "btmp") == 0) {
			/* btmp holds failed attempts whatever ut_type says */
			report(ctx, "LoginFailed", user, remote, 0, line, u.ut_pid, "login", source, when, false, 1);
		} else if (u.ut_type == USER_PROCESS) {
			report(ctx, "Login", user, remote, 0, line, u.ut_pid, "login", source, when, false, 1);
			size_t slot = 0;
			for (size_t i = 0; i < nsess; i++)
				if (!s->sessions[i].line[0] || strcmp(s->sessions[i].line, line) == 0) {
					slot = i;
					break;
				}
			snprintf(s->sessions[slot].line, sizeof(s->sessions[slot].line), "%s", line);
			snprintf(s->sessions[slot].user, sizeof(s->sessions[slot].user), "%s", user);
			snprintf(s->sessions[slot].host, sizeof(s->sessions[slot].host), "%s", remote);
		} else if (u.ut_type == DEAD_PROCESS && line[0]) {
			for (size_t i = 0; i < nsess; i++)
				if (strcmp(s->sessions[i].line, line) == 0) {
					report(ctx, "Logout", s->sessions[i].user, s->sessions[i].host, 0, line, u.ut_pid,
					       "login", source, when, false, 1);
					s->sessions[i].line[0] = 0;
					break;
				}
		}
		/* Other record types (boot, run level, garbage) carry no login. */
	}
	close(fd);
}

static void configure(struct agent_ctx *ctx, void *state)
{
	struct login_state *s = state;
	const char *const *files;
	size_t n = config_list(agent_config(ctx), "Login_LogFiles", &files);
	struct followed old[MAX_FILES];
	size_t nold = s->nlogs;
	memcpy(old, s->logs, sizeof(old));
	s->nlogs = 0;
	for (size_t i = 0; i < n && s->nlogs < MAX_FILES; i++) {
		struct followed *f = &s->logs[s->nlogs++];
		memset(f, 0, sizeof(*f));
		snprintf(f->path, sizeof(f->path), "%s", files[i]);
		for (size_t j = 0; j < nold; j++) {
			if (strcmp(old[j].path, f->path) == 0) {
				*f = old[j]; /* keep the position of a file still followed */
				old[j].partial = NULL; /* now f's (a duplicate path gets none) */
				old[j].plen = 0;
				break;
			}
		}
	}
	for (size_t j = 0; j < nold; j++)
		free(old[j].partial);
	if (n > MAX_FILES)
		agent_warn(ctx, "Login_LogFiles: only the first %d files are followed", MAX_FILES);
}

static void *init(struct agent_ctx *ctx)
{
	struct login_state *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	snprintf(s->wtmp.path, sizeof(s->wtmp.path), "/var/log/wtmp");
	snprintf(s->btmp.path, sizeof(s->btmp.path), "/var/log/btmp");
	snprintf(s->utmp.path, sizeof(s->utmp.path), "/var/run/utmp");
	s->first_pass = true;
	configure(ctx, s);
	return s;
}

static int collect(struct agent_ctx *ctx, void *state)
{
	struct login_state *s = state;
	if (config_bool(agent_config(ctx), "Login_UseUtmp")) {
		struct stat st;
		char path[1200];
		bool have_wtmp = agent_path(ctx, s->wtmp.path, path, sizeof(path)) && stat(path, &st) == 0;
		follow_utmp(ctx, s, have_wtmp ? &s->wtmp : &s->utmp, have_wtmp ? "wtmp" : "utmp");
		follow_utmp(ctx, s, &s->btmp, "btmp");
	}
	for (size_t i = 0; i < s->nlogs; i++)
		follow_log(ctx, s, &s->logs[i]);
	s->first_pass = false;
	return 0;
}

static void fini(void *state)
{
	struct login_state *s = state;
	for (size_t i = 0; s && i < s->nlogs; i++)
		free(s->logs[i].partial);
	free(state);
}

const struct collector collector_login = {
	.name = "login",
	.event_name = "Login",
	.priority = PRIORITY_MEDIUM,
	.category = CATEGORY_AGGREGATED,
	/* btmp and auth logs are readable by root or adm only */
	.caps = AGENT_CAP(CAP_DAC_READ_SEARCH),
	.sample_ms_key = "Login_PollingInterval",
	.keys = keys,
	.init = init,
	.collect = collect,
	.configure = configure,
	.fini = fini,
};
