/* The evaluators behind the baseline checks (see baseline_eval.h). Every read goes
 * through agent_open/agent_read_file, so the checks run the same on a device
 * and on a snapshot tree given with --root. */
/* Needs libxcrypt's crypt(3), linked by the baseline collector. The guard
 * keeps the shared archive buildable with a C library that has no crypt.h
 * (glibc 2.39 and later, musl without libxcrypt) when baseline is off. */
#if __has_include(<crypt.h>)
#include <crypt.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/agent.h"
#include "lib/baseline_eval.h"
#include "lib/ere.h"

#define MAX_TEXT (1024 * 1024)
#define SCAN_MAX_ENTRIES 250000
#define SCAN_MAX_DEPTH 24
#define EVIDENCE_MAX 10
#define CRYPT_CACHE 64

struct user {
	char *name, *pw, *home, *shell;
	long uid, gid;
};
struct group {
	char *name;
	long gid;
};
struct shadow {
	char *name, *hash;
};
struct proc {
	int pid;
	char name[64];  /* comm, or the applet when comm is "busybox" */
	char argv0[64]; /* basename of argv[0] */
	char *cmdline;  /* NUL separators turned to spaces */
};
struct listener {
	char proto[5];
	unsigned port;
	bool loopback;
};
struct cred_cache {
	unsigned long long key; /* FNV-1a of user ":" hash: no copy of a hash is kept */
	int match;              /* index in mirai[] or -1 */
};

struct scan {
	cJSON *list;
	long count;
};

struct bl_run {
	/* accounts */
	bool accounts_loaded, have_passwd, have_shadow, have_group;
	int shadow_errno;     /* why /etc/shadow could not be read */
	char *passwd_text, *shadow_text, *group_text;
	struct user *users;
	size_t nusers;
	struct group *groups;
	size_t ngroups;
	struct shadow *shadows;
	size_t nshadows;
	/* processes and sockets */
	bool procs_loaded;
	struct proc *procs;
	size_t nprocs;
	bool listeners_loaded, have_sockets;
	struct listener *listeners;
	size_t nlisteners;
	/* sshd_config as { lowercased keyword: value } (first wins) */
	bool sshd_loaded;
	cJSON *sshd;
	/* dropbear options */
	bool dropbear_loaded, have_dropbear;
	char dropbear_opts[128];
	/* firewall dumps */
	bool fw_loaded;
	char *fw[3];          /* iptables-save, ip6tables-save, nft list ruleset */
	char fw_source[128];
	/* kernel modules */
	bool mods_loaded, have_proc_modules;
	char *proc_modules, *modules_dep, *modprobe;
	char *filesystems;
	/* mounts */
	char *mounts;
	bool mounts_loaded;
	/* file system walk */
	bool scanned;
	int scanned_tops;
	long scanned_entries;
	bool scan_truncated;
	struct scan scans[SCAN_LOGS + 1];
	char **suid_allow;
	/* survives resets */
	struct cred_cache creds[CRYPT_CACHE];
	size_t ncreds, next_cred;
	bool creds_dirty;
	struct crypt_data *cd;
};

/* Mirai's built-in telnet credentials (public since the 2016 source release;
 * jgamblin/Mirai-Source-Code, scanner.c). Matched user by user, as Mirai
 * tries them. */
static const char *const mirai[][2] = {
	{ "root", "xc3511" }, { "root", "vizxv" }, { "root", "admin" }, { "admin", "admin" },
	{ "root", "888888" }, { "root", "xmhdipc" }, { "root", "default" }, { "root", "juantech" },
	{ "root", "123456" }, { "root", "54321" }, { "support", "support" }, { "root", "" },
	{ "admin", "password" }, { "root", "root" }, { "root", "12345" }, { "user", "user" },
	{ "admin", "" }, { "root", "pass" }, { "admin", "admin1234" }, { "root", "1111" },
	{ "admin", "smcadmin" }, { "admin", "1111" }, { "root", "666666" }, { "root", "password" },
	{ "root", "1234" }, { "root", "klv123" }, { "Administrator", "admin" }, { "service", "service" },
	{ "supervisor", "supervisor" }, { "guest", "guest" }, { "guest", "12345" }, { "admin1", "password" },
	{ "administrator", "1234" }, { "666666", "666666" }, { "888888", "888888" }, { "ubnt", "ubnt" },
	{ "root", "klv1234" }, { "root", "Zte521" }, { "root", "hi3518" }, { "root", "jvbzd" },
	{ "root", "anko" }, { "root", "zlxx." }, { "root", "7ujMko0vizxv" }, { "root", "7ujMko0admin" },
	{ "root", "system" }, { "root", "ikwb" }, { "root", "dreambox" }, { "root", "user" },
	{ "root", "realtek" }, { "root", "00000000" }, { "admin", "1111111" }, { "admin", "1234" },
	{ "admin", "12345" }, { "admin", "54321" }, { "admin", "123456" }, { "admin", "7ujMko0admin" },
	{ "admin", "pass" }, { "admin", "meinsm" }, { "tech", "tech" }, { "mother", "fucker" },
};
#define NMIRAI (sizeof(mirai) / sizeof(mirai[0]))

const char *bl_result_name(enum bl_result r)
{
	static const char *const names[] = { "Pass", "Fail", "Skip", "Error" };
	return names[r];
}

static void outcome(struct bl_outcome *o, enum bl_result r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void outcome(struct bl_outcome *o, enum bl_result r, const char *fmt, ...)
{
	o->result = r;
	o->reason[0] = 0;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(o->reason, sizeof(o->reason), fmt, ap);
		va_end(ap);
	}
}

static cJSON *evidence(struct bl_outcome *o)
{
	if (!o->evidence)
		o->evidence = cJSON_CreateObject();
	return o->evidence;
}

/* ---- comparisons ---- */

/* A number, with the time suffixes sshd accepts ("1m" is 60). */
static bool number(const char *s, double *out)
{
	char *end;
	errno = 0;
	double d = strtod(s, &end);
	if (end == s || errno)
		return false;
	switch (*end) {
	case 's': case 'S': end++; break;
	case 'm': case 'M': d *= 60; end++; break;
	case 'h': case 'H': d *= 3600; end++; break;
	case 'd': case 'D': d *= 86400; end++; break;
	case 'w': case 'W': d *= 604800; end++; break;
	default: break;
	}
	*out = d;
	return *end == 0;
}

static bool word_in(const char *have, const char *words)
{
	size_t len = strlen(have);
	for (const char *w = words; w && *w;) {
		const char *bar = strchr(w, '|');
		size_t wl = bar ? (size_t)(bar - w) : strlen(w);
		if (wl == len && strncasecmp(w, have, len) == 0)
			return true;
		w = bar ? bar + 1 : NULL;
	}
	return false;
}

bool bl_compare(const char *have, enum bl_op op, const char *want)
{
	double h, w, lo, hi;
	switch (op) {
	case OP_EQ:
	case OP_NE: {
		bool eq = number(have, &h) && number(want, &w) ? h == w : strcasecmp(have, want) == 0;
		return op == OP_EQ ? eq : !eq;
	}
	case OP_LE:
		return number(have, &h) && number(want, &w) && h <= w;
	case OP_GE:
		return number(have, &h) && number(want, &w) && h >= w;
	case OP_IN:
		return word_in(have, want);
	case OP_RANGE: {
		char a[32], b[32];
		if (sscanf(want, "%31[^:]:%31s", a, b) != 2 || !number(a, &lo) || !number(b, &hi))
			return false;
		return number(have, &h) && h >= lo && h <= hi;
	}
	case OP_SET:
		return *have && strcasecmp(have, "none") != 0;
	case OP_MASK: {
		char *end;
		long m = strtol(have, &end, 8), need = strtol(want, NULL, 8);
		return end != have && !*end && (m & need) == need;
	}
	case OP_TRIPLE: {
		double x[3], y[3];
		if (sscanf(want, "%lf:%lf:%lf", &y[0], &y[1], &y[2]) != 3)
			return false;
		int n = sscanf(have, "%lf:%lf:%lf", &x[0], &x[1], &x[2]);
		if (n == 1) /* "MaxStartups 10" means 10:100:10 */
			return x[0] <= y[0];
		return n == 3 && x[0] <= y[0] && x[1] <= y[1] && x[2] <= y[2];
	}
	}
	return false;
}

static const char *op_text(enum bl_op op)
{
	static const char *const t[] = { "=", "<=", ">=", "one of", "in", "set", "includes mask", "at most", "!=" };
	return t[op];
}

/* ---- regular expressions ---- */

int bl_regcomp(regex_t *re, const char *src, int flags)
{
	size_t len = strlen(src);
	char *buf = malloc(len * 12 + 1), *o = buf;
	if (!buf)
		return REG_ESPACE;
	for (const char *s = src; *s; s++) {
		if (s[0] == '\\' && s[1]) {
			const char *rep = NULL;
			switch (s[1]) {
			case 'd': rep = "[0-9]"; break;
			case 's': rep = "[[:space:]]"; break;
			case 'S': rep = "[^[:space:]]"; break;
			case 'w': rep = "[[:alnum:]_]"; break;
			default: break;
			}
			if (rep) {
				o = stpcpy(o, rep);
				s++;
				continue;
			}
			*o++ = *s++;
		}
		*o++ = *s;
	}
	*o = 0;
	if (ere_too_costly(buf)) {
		free(buf);
		return REG_ESPACE;
	}
	int rc = regcomp(re, buf, REG_EXTENDED | flags);
	free(buf);
	return rc;
}

/* Whether some line of text matches the ERE; -1 if it does not compile. */
static int any_line_matches(const char *text, const char *ere)
{
	regex_t re;
	if (bl_regcomp(&re, ere, REG_NOSUB | REG_NEWLINE) != 0)
		return -1;
	int m = regexec(&re, text, 0, NULL, 0) == 0;
	regfree(&re);
	return m;
}

/* The first line matching ere, copied into out (for evidence). */
static bool first_matching_line(const char *text, const char *ere, char *out, size_t size)
{
	regex_t re;
	regmatch_t m[1];
	if (bl_regcomp(&re, ere, REG_NEWLINE) != 0)
		return false;
	bool found = regexec(&re, text, 1, m, 0) == 0;
	if (found) {
		const char *b = text + m[0].rm_so;
		while (b > text && b[-1] != '\n')
			b--;
		const char *e = strchr(b, '\n');
		size_t n = e ? (size_t)(e - b) : strlen(b);
		if (n >= size)
			n = size - 1;
		memcpy(out, b, n);
		out[n] = 0;
	}
	regfree(&re);
	return found;
}

/* ---- accounts ---- */

static size_t split(char *line, char sep, char **f, size_t max)
{
	size_t n = 0;
	f[n++] = line;
	for (char *p = line; *p && n < max; p++)
		if (*p == sep) {
			*p = 0;
			f[n++] = p + 1;
		}
	return n;
}

static long num_field(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	return end == s || *end ? -1 : v;
}

/* Arrays grow to 8, 16, 32...: n is the count before the append. */
static void *grow(void *v, size_t n, size_t size)
{
	if (n != 0 && (n < 8 || (n & (n - 1)) != 0))
		return v;
	void *nv = realloc(v, (n ? n * 2 : 8) * size);
	if (!nv)
		abort();
	return nv;
}

static void load_accounts(struct agent_ctx *ctx, struct bl_run *run)
{
	if (run->accounts_loaded)
		return;
	run->accounts_loaded = true;
	run->passwd_text = agent_read_file(ctx, "/etc/passwd", MAX_TEXT, NULL);
	run->shadow_text = agent_read_file(ctx, "/etc/shadow", MAX_TEXT, NULL);
	run->shadow_errno = run->shadow_text ? 0 : errno;
	run->group_text = agent_read_file(ctx, "/etc/group", MAX_TEXT, NULL);
	run->have_passwd = run->passwd_text != NULL;
	run->have_shadow = run->shadow_text != NULL;
	run->have_group = run->group_text != NULL;
	char *copy, *save, *line, *f[8];
	if (run->passwd_text && (copy = strdup(run->passwd_text))) {
		for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			/* "+" and "-" lines are NIS includes, not accounts (DIOT-ACC-009) */
			if (split(line, ':', f, 7) != 7 || f[0][0] == '+' || f[0][0] == '-')
				continue;
			run->users = grow(run->users, run->nusers, sizeof(*run->users));
			struct user *u = &run->users[run->nusers++];
			u->name = strdup(f[0]);
			u->pw = strdup(f[1]);
			u->uid = num_field(f[2]);
			u->gid = num_field(f[3]);
			u->home = strdup(f[5]);
			u->shell = strdup(f[6]);
		}
		free(copy);
	}
	if (run->group_text && (copy = strdup(run->group_text))) {
		for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			if (split(line, ':', f, 4) < 3)
				continue;
			run->groups = grow(run->groups, run->ngroups, sizeof(*run->groups));
			struct group *g = &run->groups[run->ngroups++];
			g->name = strdup(f[0]);
			g->gid = num_field(f[2]);
		}
		free(copy);
	}
	if (run->shadow_text && (copy = strdup(run->shadow_text))) {
		for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			if (split(line, ':', f, 3) < 2)
				continue;
			run->shadows = grow(run->shadows, run->nshadows, sizeof(*run->shadows));
			struct shadow *s = &run->shadows[run->nshadows++];
			s->name = strdup(f[0]);
			s->hash = strdup(f[1]);
		}
		free(copy);
	}
}

static const struct user *user_by_name(const struct bl_run *run, const char *name)
{
	for (size_t i = 0; i < run->nusers; i++)
		if (strcmp(run->users[i].name, name) == 0)
			return &run->users[i];
	return NULL;
}

static const char *password_of(const struct bl_run *run, const struct user *u)
{
	if (strcmp(u->pw, "x") != 0)
		return u->pw;
	for (size_t i = 0; i < run->nshadows; i++)
		if (strcmp(run->shadows[i].name, u->name) == 0)
			return run->shadows[i].hash;
	return NULL;
}

static bool no_login_shell(const char *shell)
{
	const char *base = strrchr(shell, '/');
	base = base ? base + 1 : shell;
	return strcmp(base, "nologin") == 0 || strcmp(base, "false") == 0 || !*shell;
}

static void add_name(cJSON *list, const char *name, long *count)
{
	if (*count < EVIDENCE_MAX)
		cJSON_AddItemToArray(list, cJSON_CreateString(name));
	(*count)++;
}

static long uid_min(struct agent_ctx *ctx)
{
	long v = 1000;
	char *t = agent_read_file(ctx, "/etc/login.defs", 65536, NULL);
	char line[256];
	if (t && first_matching_line(t, "^[[:space:]]*UID_MIN[[:space:]]", line, sizeof(line)))
		sscanf(line, " UID_MIN %ld", &v);
	free(t);
	return v;
}

/* A crypt(3) hash of one of the Mirai passwords for this user: index, or -1.
 * Results are cached per user and hash across runs, so a device pays the
 * crypt cost once per password change. */
static unsigned long long fnv1a(const char *a, const char *b)
{
	unsigned long long h = 1469598103934665603ULL;
	for (const char *p = a; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	h = (h ^ ':') * 1099511628211ULL;
	for (const char *p = b; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return h;
}

static void remember(struct bl_run *run, unsigned long long key, int match)
{
	struct cred_cache *c = &run->creds[run->next_cred];
	c->key = key;
	c->match = match;
	if (run->ncreds < CRYPT_CACHE)
		run->ncreds++;
	run->next_cred = (run->next_cred + 1) % CRYPT_CACHE;
	run->creds_dirty = true;
}

/* A crypt(3) hash of one of the Mirai passwords for this user: index, or -1.
 * Results are cached per user and hash (in memory, and across restarts
 * through bl_run_save_credentials), so a device pays the crypt cost once per
 * password change. */
static int default_credential(struct bl_run *run, const char *user, const char *hash, bool *unsupported)
{
	unsigned long long key = fnv1a(user, hash);
	for (size_t i = 0; i < run->ncreds; i++)
		if (run->creds[i].key == key)
			return run->creds[i].match;
	if (!run->cd && !(run->cd = calloc(1, sizeof(*run->cd))))
		return -1;
	int match = -1;
	for (size_t i = 0; i < NMIRAI && match < 0; i++) {
		if (strcmp(mirai[i][0], user) != 0)
			continue;
		const char *h = crypt_r(mirai[i][1], hash, run->cd);
		if (!h || h[0] == '*') {
			*unsupported = true;
			return -1; /* not cached: a later libcrypt may know the format */
		}
		if (strcmp(h, hash) == 0)
			match = (int)i;
	}
	remember(run, key, match);
	return match;
}

void bl_run_load_credentials(struct bl_run *run, const char *path)
{
	FILE *f = fopen(path, "re");
	char line[64];
	if (!f)
		return;
	if (fgets(line, sizeof(line), f) && !strcmp(line, "defender-iot baseline credentials 1\n")) {
		unsigned long long key;
		int match;
		while (fgets(line, sizeof(line), f) && sscanf(line, "%llx %d", &key, &match) == 2)
			if (match >= -1 && match < (int)NMIRAI)
				remember(run, key, match);
	}
	fclose(f);
	run->creds_dirty = false;
}

int bl_run_save_credentials(struct bl_run *run, const char *path)
{
	if (!run->creds_dirty)
		return 0;
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	fprintf(f, "defender-iot baseline credentials 1\n");
	for (size_t i = 0; i < run->ncreds; i++)
		fprintf(f, "%016llx %d\n", run->creds[i].key, run->creds[i].match);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		unlink(tmp);
		return -1;
	}
	run->creds_dirty = false;
	return 0;
}

/* No usable password: empty (DIOT-ACC-001's business), locked, or the
 * "x" that points to /etc/shadow. A DES hash may start with 'x' too. */
static bool hash_locked(const char *h)
{
	return !*h || h[0] == '!' || h[0] == '*' || strcmp(h, "x") == 0;
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return x < y ? -1 : x > y;
}

static void duplicates(long *v, size_t n, cJSON *list, long *count)
{
	qsort(v, n, sizeof(long), cmp_long);
	for (size_t i = 1; i < n; i++)
		if (v[i] == v[i - 1] && (i < 2 || v[i - 1] != v[i - 2])) {
			char b[24];
			snprintf(b, sizeof(b), "%ld", v[i]);
			add_name(list, b, count);
		}
}

static bool dup_names(char **names, size_t n, cJSON *list, long *count)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < i; j++)
			if (strcmp(names[i], names[j]) == 0) {
				add_name(list, names[i], count);
				break;
			}
	return *count > 0;
}

static void eval_home(struct agent_ctx *ctx, struct bl_run *run, int sub, long min_uid, cJSON *list, long *count)
{
	for (size_t i = 0; i < run->nusers; i++) {
		const struct user *u = &run->users[i];
		bool interactive = (u->uid >= min_uid && u->uid != 65534) || u->uid == 0;
		if (!interactive || no_login_shell(u->shell) || !*u->home || strcmp(u->home, "/") == 0)
			continue;
		int dfd = agent_open(ctx, u->home, O_RDONLY | O_DIRECTORY);
		if (dfd < 0)
			continue;
		struct stat st;
		if (sub == ACC_HOME_PERMS) {
			if (fstat(dfd, &st) == 0 && (st.st_mode & 027) && u->uid != 0)
				add_name(list, u->home, count);
		} else {
			DIR *d = fdopendir(dfd);
			struct dirent *de;
			while (d && (de = readdir(d))) {
				if (de->d_name[0] != '.' || !strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
					continue;
				bool bad;
				if (sub == ACC_RHOSTS)
					bad = !strcmp(de->d_name, ".rhosts") || !strcmp(de->d_name, ".netrc") ||
					      !strcmp(de->d_name, ".forward");
				else
					bad = fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
					      !S_ISLNK(st.st_mode) && (st.st_mode & 022);
				if (bad) {
					char p[1024];
					snprintf(p, sizeof(p), "%s/%s", u->home, de->d_name);
					add_name(list, p, count);
				}
			}
			if (d)
				closedir(d);
			else
				close(dfd);
			continue;
		}
		close(dfd);
	}
}

static void eval_account(struct agent_ctx *ctx, struct bl_run *run, const struct bl_check *c, struct bl_outcome *o)
{
	load_accounts(ctx, run);
	int sub = c->sub;
	bool needs_group = sub == ACC_DUP_GID || sub == ACC_DUP_GROUP;
	if (needs_group ? !run->have_group : !run->have_passwd) {
		outcome(o, BL_SKIP, "%s does not exist", needs_group ? "/etc/group" : "/etc/passwd");
		return;
	}
	/* an agent without the right to read /etc/shadow cannot tell */
	if ((sub == ACC_EMPTY_PASSWORD || sub == ACC_DEFAULT_CREDS) && run->shadow_errno &&
	    run->shadow_errno != ENOENT) {
		outcome(o, BL_ERROR, "cannot read /etc/shadow: %s", strerror(run->shadow_errno));
		return;
	}
	cJSON *list = cJSON_CreateArray();
	long count = 0;
	const char *what = "Accounts";
	switch (sub) {
	case ACC_EMPTY_PASSWORD:
		for (size_t i = 0; i < run->nusers; i++) {
			const char *pw = password_of(run, &run->users[i]);
			if (pw && !*pw)
				add_name(list, run->users[i].name, &count);
		}
		break;
	case ACC_SHADOWED:
		for (size_t i = 0; i < run->nusers; i++)
			if (strcmp(run->users[i].pw, "x") != 0 && !hash_locked(run->users[i].pw))
				add_name(list, run->users[i].name, &count);
		break;
	case ACC_UID0:
		for (size_t i = 0; i < run->nusers; i++)
			if (run->users[i].uid == 0 && strcmp(run->users[i].name, "root") != 0)
				add_name(list, run->users[i].name, &count);
		break;
	case ACC_ROOT_GID: {
		const struct user *r = user_by_name(run, "root");
		if (!r) {
			cJSON_Delete(list);
			outcome(o, BL_SKIP, "no root account in /etc/passwd");
			return;
		}
		if (r->gid != 0)
			add_name(list, "root", &count);
		break;
	}
	case ACC_SYSTEM_SHELL: {
		long min = uid_min(ctx);
		for (size_t i = 0; i < run->nusers; i++) {
			const struct user *u = &run->users[i];
			if (u->uid == 0 || (u->uid >= min && u->uid != 65534))
				continue;
			if (!strcmp(u->name, "sync") || !strcmp(u->name, "shutdown") || !strcmp(u->name, "halt"))
				continue;
			const char *pw = password_of(run, u);
			if (!no_login_shell(u->shell) && !(pw && hash_locked(pw) && *pw))
				add_name(list, u->name, &count);
		}
		break;
	}
	case ACC_PLUS: {
		const char *texts[] = { run->passwd_text, run->shadow_text, run->group_text };
		const char *names[] = { "/etc/passwd", "/etc/shadow", "/etc/group" };
		what = "Files";
		for (int i = 0; i < 3; i++)
			if (texts[i] && any_line_matches(texts[i], "^\\+") == 1)
				add_name(list, names[i], &count);
		break;
	}
	case ACC_DUP_UID:
	case ACC_DUP_GID: {
		size_t n = sub == ACC_DUP_UID ? run->nusers : run->ngroups;
		long *v = calloc(n + 1, sizeof(long));
		for (size_t i = 0; v && i < n; i++)
			v[i] = sub == ACC_DUP_UID ? run->users[i].uid : run->groups[i].gid;
		if (v)
			duplicates(v, n, list, &count);
		free(v);
		what = "Ids";
		break;
	}
	case ACC_DUP_USER:
	case ACC_DUP_GROUP: {
		size_t n = sub == ACC_DUP_USER ? run->nusers : run->ngroups;
		char **v = calloc(n + 1, sizeof(char *));
		for (size_t i = 0; v && i < n; i++)
			v[i] = sub == ACC_DUP_USER ? run->users[i].name : run->groups[i].name;
		if (v)
			dup_names(v, n, list, &count);
		free(v);
		what = "Names";
		break;
	}
	case ACC_DEFAULT_CREDS: {
		bool unsupported = false, any = false;
		for (size_t i = 0; i < run->nusers; i++) {
			const struct user *u = &run->users[i];
			const char *pw = password_of(run, u);
			if (!pw || hash_locked(pw))
				continue;
			any = true;
			int m = default_credential(run, u->name, pw, &unsupported);
			if (m >= 0)
				add_name(list, u->name, &count);
		}
		if (!any && !count) {
			cJSON_Delete(list);
			if (!run->have_shadow && !run->nusers)
				outcome(o, BL_SKIP, "no password hashes to check");
			else
				outcome(o, BL_PASS, NULL);
			return;
		}
		if (unsupported)
			cJSON_AddBoolToObject(evidence(o), "UnsupportedHashFormat", true);
		break;
	}
	case ACC_HOME_PERMS:
	case ACC_DOTFILES:
	case ACC_RHOSTS:
		what = "Paths";
		eval_home(ctx, run, sub, uid_min(ctx), list, &count);
		break;
	default:
		break;
	}
	if (count) {
		cJSON_AddItemToObject(evidence(o), what, list);
		cJSON_AddNumberToObject(evidence(o), "Count", (double)count);
		outcome(o, BL_FAIL, NULL);
	} else {
		cJSON_Delete(list);
		outcome(o, BL_PASS, NULL);
	}
}

static long uid_of(const struct bl_run *run, const char *name)
{
	const struct user *u = user_by_name(run, name);
	return u ? u->uid : strcmp(name, "root") == 0 ? 0 : -1;
}

static long gid_of(const struct bl_run *run, const char *name)
{
	for (size_t i = 0; i < run->ngroups; i++)
		if (strcmp(run->groups[i].name, name) == 0)
			return run->groups[i].gid;
	return strcmp(name, "root") == 0 ? 0 : -1;
}

/* glob(3) under the root, the root escaped so that a snapshot directory
 * named like "run[1]" is not taken for a pattern. Returns the number of
 * matches; g's paths start with the root; globfree(g) in every case. */
static size_t glob_under_root(struct agent_ctx *ctx, const char *pattern, int flags, glob_t *g)
{
	char buf[4096];
	size_t n = 0;
	memset(g, 0, sizeof(*g));
	for (const char *r = agent_root(ctx); *r; r++) {
		if (n + 3 >= sizeof(buf))
			return 0;
		if (strchr("*?[]\\", *r))
			buf[n++] = '\\';
		buf[n++] = *r;
	}
	if (n + strlen(pattern) + 1 > sizeof(buf))
		return 0;
	strcpy(buf + n, pattern);
	if (glob(buf, flags, NULL, g) != 0) {
		globfree(g);
		memset(g, 0, sizeof(*g));
	}
	return g->gl_pathc;
}

/* ---- file modes ---- */

static void eval_mode(struct agent_ctx *ctx, struct bl_run *run, const struct bl_check *c, struct bl_outcome *o)
{
	load_accounts(ctx, run);
	size_t rootlen = strlen(agent_root(ctx));
	glob_t g;
	memset(&g, 0, sizeof(g));
	if (strpbrk(c->target, "*?[") && !glob_under_root(ctx, c->target, GLOB_NOSORT, &g)) {
		globfree(&g);
		outcome(o, BL_SKIP, "nothing matches %s", c->target);
		return;
	}
	size_t n = g.gl_pathc ? g.gl_pathc : 1;
	cJSON *bad = cJSON_CreateArray();
	long count = 0, seen = 0;
	for (size_t i = 0; i < n; i++) {
		const char *path = g.gl_pathc ? g.gl_pathv[i] + rootlen : c->target;
		int fd = agent_open(ctx, path, O_RDONLY | O_PATH);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) != 0) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		close(fd);
		seen++;
		const char *why = NULL;
		if (st.st_mode & c->mode)
			why = "mode";
		else if (c->value && (long)st.st_uid != uid_of(run, c->value))
			why = "owner";
		else if (c->key) {
			bool ok = false;
			char groups[128];
			snprintf(groups, sizeof(groups), "%s", c->key);
			char *save, *gname;
			for (gname = strtok_r(groups, "|", &save); gname; gname = strtok_r(NULL, "|", &save))
				if ((long)st.st_gid == gid_of(run, gname))
					ok = true;
			if (!ok)
				why = "group";
		}
		if (why) {
			if (count++ < EVIDENCE_MAX) {
				cJSON *e = cJSON_CreateObject();
				char m[8];
				snprintf(m, sizeof(m), "%04o", (unsigned)(st.st_mode & 07777));
				cJSON_AddStringToObject(e, "Path", path);
				cJSON_AddStringToObject(e, "Mode", m);
				cJSON_AddNumberToObject(e, "Uid", st.st_uid);
				cJSON_AddNumberToObject(e, "Gid", st.st_gid);
				cJSON_AddStringToObject(e, "Wrong", why);
				cJSON_AddItemToArray(bad, e);
			}
		}
	}
	globfree(&g);
	if (!seen) {
		cJSON_Delete(bad);
		outcome(o, BL_SKIP, "%s does not exist", c->target);
		return;
	}
	if (count) {
		cJSON_AddItemToObject(evidence(o), "Files", bad);
		outcome(o, BL_FAIL, NULL);
	} else {
		cJSON_Delete(bad);
		outcome(o, BL_PASS, NULL);
	}
}

/* ---- sysctl, key-value, content ---- */

static void trim(char *s)
{
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = 0;
	size_t i = 0;
	while (isspace((unsigned char)s[i]))
		i++;
	memmove(s, s + i, n - i + 1);
}

static void expect_reason(struct bl_outcome *o, const struct bl_check *c, const char *name, const char *have)
{
	cJSON_AddStringToObject(evidence(o), "Value", have);
	outcome(o, BL_FAIL, "%s is %s, expected %s %s", name, have, op_text(c->op), c->value ? c->value : "");
}

static void compare_value(struct bl_outcome *o, const struct bl_check *c, const char *name, const char *have)
{
	if (bl_compare(have, c->op, c->value ? c->value : "")) {
		cJSON_AddStringToObject(evidence(o), "Value", have);
		outcome(o, BL_PASS, NULL);
	} else {
		expect_reason(o, c, name, have);
	}
}

static void eval_sysctl(struct agent_ctx *ctx, const struct bl_check *c, struct bl_outcome *o)
{
	char path[256] = "/proc/sys/";
	size_t n = strlen(path);
	for (const char *s = c->target; *s && n + 1 < sizeof(path); s++)
		path[n++] = *s == '.' ? '/' : *s;
	path[n] = 0;
	char *v = agent_read_file(ctx, path, 256, NULL);
	if (!v) {
		outcome(o, BL_SKIP, "%s does not exist on this kernel", c->target);
		return;
	}
	/* multi-value sysctls: tabs between fields */
	for (char *p = v; *p; p++)
		if (*p == '\t')
			*p = ' ';
	trim(v);
	compare_value(o, c, c->target, v);
	free(v);
}

/* The value of KEY in "KEY value", "KEY=value", "export KEY=value" lines;
 * the last assignment wins, as when a shell or login(1) reads the file. */
static bool key_value(const char *text, const char *key, char *out, size_t size)
{
	bool found = false;
	size_t klen = strlen(key);
	for (const char *line = text; line && *line;) {
		const char *nl = strchr(line, '\n');
		const char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		if (!strncmp(p, "export ", 7))
			p += 7;
		else if (!strncmp(p, "readonly ", 9))
			p += 9;
		while (*p == ' ' || *p == '\t')
			p++;
		if (!strncmp(p, key, klen) && (p[klen] == ' ' || p[klen] == '\t' || p[klen] == '=')) {
			p += klen;
			while (*p == ' ' || *p == '\t' || *p == '=')
				p++;
			size_t n = 0;
			while (*p && *p != '\n' && *p != ' ' && *p != '\t' && *p != ';' && *p != '#' && n + 1 < size) {
				if (*p != '"' && *p != '\'')
					out[n++] = *p;
				p++;
			}
			out[n] = 0;
			found = true;
		}
		line = nl ? nl + 1 : NULL;
	}
	return found;
}

/* A setting's value against the check; dflt stands in when it is unset. */
static void compare_setting(struct bl_outcome *o, const struct bl_check *c, const char *file, const char *v)
{
	if (!v && !c->dflt) {
		outcome(o, BL_FAIL, "%s is not set in %s", c->key, file);
		return;
	}
	if (!v) {
		v = c->dflt;
		cJSON_AddBoolToObject(evidence(o), "Default", true);
	}
	compare_value(o, c, c->key, v);
}

/* ---- sshd_config ---- */

static void sshd_parse(struct agent_ctx *ctx, cJSON *kv, const char *path, int depth);

static void sshd_include(struct agent_ctx *ctx, cJSON *kv, const char *pattern, int depth)
{
	char abs[1024];
	if (strstr(pattern, ".."))
		return; /* would leave the --root tree */
	if (pattern[0] == '/')
		snprintf(abs, sizeof(abs), "%s", pattern);
	else
		snprintf(abs, sizeof(abs), "/etc/ssh/%s", pattern);
	glob_t g;
	size_t rootlen = strlen(agent_root(ctx));
	size_t n = glob_under_root(ctx, abs, 0, &g);
	for (size_t i = 0; i < n; i++)
		sshd_parse(ctx, kv, g.gl_pathv[i] + rootlen, depth + 1);
	globfree(&g);
}

/* sshd takes the first value of each keyword and a Match block applies only
 * to some connections, so parsing stops there: what is left is the setting
 * every client gets. */
static void sshd_parse(struct agent_ctx *ctx, cJSON *kv, const char *path, int depth)
{
	if (depth > 4)
		return;
	char *text = agent_read_file(ctx, path, MAX_TEXT, NULL);
	if (!text)
		return;
	char *save, *line;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char key[64], val[512];
		while (*line == ' ' || *line == '\t')
			line++;
		if (*line == '#' || !*line)
			continue;
		/* "Keyword value" or "Keyword=value" */
		size_t klen = strcspn(line, " \t=");
		if (klen == 0 || klen >= sizeof(key) || !line[klen])
			continue;
		memcpy(key, line, klen);
		key[klen] = 0;
		const char *v = line + klen + strspn(line + klen, " \t");
		if (*v == '=')
			v += 1 + strspn(v + 1, " \t");
		snprintf(val, sizeof(val), "%s", v);
		trim(val);
		if (!*val)
			continue;
		for (char *p = key; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		if (!strcmp(key, "match")) {
			cJSON_AddBoolToObject(kv, "\x01match", true);
			break;
		}
		if (!strcmp(key, "include")) {
			char *s2, *pat;
			for (pat = strtok_r(val, " \t", &s2); pat; pat = strtok_r(NULL, " \t", &s2))
				sshd_include(ctx, kv, pat, depth);
			if (cJSON_GetObjectItemCaseSensitive(kv, "\x01match"))
				break;
			continue;
		}
		/* first token only, except for values that are lists */
		if (!cJSON_GetObjectItemCaseSensitive(kv, key)) {
			char *sp = strpbrk(val, " \t");
			if (sp && strcmp(key, "banner") != 0)
				*sp = 0;
			cJSON_AddStringToObject(kv, key, val);
		}
	}
	free(text);
}

static const cJSON *sshd_config(struct agent_ctx *ctx, struct bl_run *run)
{
	if (!run->sshd_loaded) {
		run->sshd_loaded = true;
		int fd = agent_open(ctx, "/etc/ssh/sshd_config", O_RDONLY);
		if (fd >= 0) {
			close(fd);
			run->sshd = cJSON_CreateObject();
			sshd_parse(ctx, run->sshd, "/etc/ssh/sshd_config", 0);
		}
	}
	return run->sshd;
}

/* ---- processes ---- */

static void load_procs(struct agent_ctx *ctx, struct bl_run *run)
{
	if (run->procs_loaded)
		return;
	run->procs_loaded = true;
	int dfd = agent_open(ctx, "/proc", O_RDONLY | O_DIRECTORY);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		char path[64];
		snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
		char *comm = agent_read_file(ctx, path, 64, NULL);
		snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
		size_t clen = 0;
		char *cmd = agent_read_file(ctx, path, 4096, &clen);
		if (!comm && !cmd) {
			continue;
		}
		run->procs = grow(run->procs, run->nprocs, sizeof(*run->procs));
		struct proc *p = &run->procs[run->nprocs++];
		memset(p, 0, sizeof(*p));
		p->pid = (int)pid;
		snprintf(p->name, sizeof(p->name), "%s", comm ? comm : "");
		trim(p->name);
		if (cmd && clen) {
			const char *a0 = strrchr(cmd, '/');
			snprintf(p->argv0, sizeof(p->argv0), "%s", a0 ? a0 + 1 : cmd);
			/* "busybox telnetd": the applet is the program */
			size_t l0 = strlen(cmd);
			if (!strcmp(p->argv0, "busybox") && l0 + 1 < clen)
				snprintf(p->name, sizeof(p->name), "%s", cmd + l0 + 1);
			for (size_t i = 0; i < clen; i++)
				if (!cmd[i])
					cmd[i] = ' ';
			p->cmdline = cmd;
			cmd = NULL;
		}
		free(comm);
		free(cmd);
	}
	closedir(d);
}

static const struct proc *find_proc(struct bl_run *run, const char *names, size_t start, size_t *at)
{
	for (size_t i = start; i < run->nprocs; i++) {
		const struct proc *p = &run->procs[i];
		if (word_in(p->name, names) || (*p->argv0 && word_in(p->argv0, names))) {
			if (at)
				*at = i;
			return p;
		}
	}
	return NULL;
}

static void eval_process(struct agent_ctx *ctx, struct bl_run *run, const struct bl_check *c, struct bl_outcome *o)
{
	load_procs(ctx, run);
	if (!run->nprocs) {
		outcome(o, BL_SKIP, "no process is visible under /proc");
		return;
	}
	cJSON *list = cJSON_CreateArray();
	long count = 0;
	size_t at = 0;
	for (const struct proc *p; (p = find_proc(run, c->target, at, &at)); at++) {
		if (count++ < EVIDENCE_MAX) {
			cJSON *e = cJSON_CreateObject();
			cJSON_AddNumberToObject(e, "ProcessId", p->pid);
			cJSON_AddStringToObject(e, "Name", p->name);
			cJSON_AddItemToArray(list, e);
		}
	}
	bool ok = c->op == OP_EQ ? count > 0 : count == 0;
	if (count)
		cJSON_AddItemToObject(evidence(o), "Processes", list);
	else
		cJSON_Delete(list);
	if (ok)
		outcome(o, BL_PASS, NULL);
	else if (c->op == OP_EQ)
		outcome(o, BL_FAIL, "none of %s is running", c->target);
	else
		outcome(o, BL_FAIL, NULL);
}

/* ---- listening sockets ---- */

/* The kernel's /proc/net/{tcp,udp}{,6} tables: "sl local rem st ...", the
 * local address in hex (IPv4 as one little-endian word), the port in hex. */
static void load_listeners(struct agent_ctx *ctx, struct bl_run *run)
{
	if (run->listeners_loaded)
		return;
	run->listeners_loaded = true;
	static const char *const tables[][2] = {
		{ "/proc/net/tcp", "tcp" }, { "/proc/net/tcp6", "tcp" },
		{ "/proc/net/udp", "udp" }, { "/proc/net/udp6", "udp" },
	};
	for (size_t t = 0; t < 4; t++) {
		char *text = agent_read_file(ctx, tables[t][0], 4 * MAX_TEXT, NULL);
		if (!text)
			continue;
		run->have_sockets = true;
		char *save, *line;
		bool tcp = tables[t][1][0] == 't';
		for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			char addr[40];
			unsigned port, state;
			if (sscanf(line, " %*u: %39[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x", addr, &port, &state) != 3)
				continue;
			if (tcp ? state != 0x0A : state != 0x07)
				continue;
			run->listeners = grow(run->listeners, run->nlisteners, sizeof(*run->listeners));
			struct listener *l = &run->listeners[run->nlisteners++];
			snprintf(l->proto, sizeof(l->proto), "%s", tables[t][1]);
			l->port = port;
			l->loopback = strlen(addr) == 8 ? !strcasecmp(addr + 6, "7F")
						       : !strcasecmp(addr, "00000000000000000000000001000000");
		}
		free(text);
	}
}

static bool port_in(unsigned port, const char *list)
{
	for (const char *s = list; s && *s;) {
		char *end;
		unsigned long p = strtoul(s, &end, 10);
		if (p == port)
			return true;
		s = *end ? end + 1 : NULL;
	}
	return false;
}

static void eval_listener(struct agent_ctx *ctx, struct bl_run *run, const struct bl_check *c, struct bl_outcome *o)
{
	load_listeners(ctx, run);
	if (!run->have_sockets) {
		outcome(o, BL_SKIP, "/proc/net/tcp and /proc/net/udp do not exist");
		return;
	}
	cJSON *list = cJSON_CreateArray();
	long count = 0;
	for (size_t i = 0; i < run->nlisteners; i++) {
		const struct listener *l = &run->listeners[i];
		if (strcmp(l->proto, c->value) == 0 && port_in(l->port, c->target)) {
			count++;
			cJSON_AddItemToArray(list, cJSON_CreateNumber(l->port));
		}
	}
	if (count) {
		cJSON_AddItemToObject(evidence(o), "Ports", list);
		outcome(o, BL_FAIL, NULL);
	} else {
		cJSON_Delete(list);
		outcome(o, BL_PASS, NULL);
	}
}

/* ---- dropbear ---- */

static void dropbear_args(const char *text, char *opts, size_t size)
{
	/* DROPBEAR_ARGS / DROPBEAR_EXTRA_ARGS ("-w -s -p 2222") and a
	 * command line: collect the single-letter flags. */
	size_t n = strlen(opts);
	for (const char *p = text; *p; p++) {
		if (*p != '-' || (p != text && !strchr(" \t\"'=", p[-1])))
			continue;
		for (p++; *p && isalpha((unsigned char)*p); p++) {
			if (n + 1 < size && !strchr(opts, *p))
				opts[n++] = *p;
			if (strchr("prbPWKIcTG", *p))
				break; /* options that take an argument end the cluster */
		}
		if (!*p)
			break;
	}
	opts[n] = 0;
}

static void load_dropbear(struct agent_ctx *ctx, struct bl_run *run)
{
	if (run->dropbear_loaded)
		return;
	run->dropbear_loaded = true;
	static const char *const files[] = { "/etc/default/dropbear", "/etc/sysconfig/dropbear" };
	for (size_t i = 0; i < 2; i++) {
		char *t = agent_read_file(ctx, files[i], 65536, NULL);
		if (!t)
			continue;
		run->have_dropbear = true;
		char *save, *line;
		for (line = strtok_r(t, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			while (*line == ' ' || *line == '\t')
				line++;
			if (!strncmp(line, "DROPBEAR_", 9) && strstr(line, "ARGS"))
				dropbear_args(strchr(line, '=') ? strchr(line, '=') : line, run->dropbear_opts,
					      sizeof(run->dropbear_opts));
		}
		free(t);
	}
	load_procs(ctx, run);
	size_t at = 0;
	for (const struct proc *p; (p = find_proc(run, "dropbear", at, &at)); at++) {
		run->have_dropbear = true;
		if (p->cmdline)
			dropbear_args(p->cmdline, run->dropbear_opts, sizeof(run->dropbear_opts));
	}
}

static void eval_dropbear(struct agent_ctx *ctx, struct bl_run *run, const struct bl_check *c, struct bl_outcome *o)
{
	load_dropbear(ctx, run);
	if (!run->have_dropbear) {
		outcome(o, BL_SKIP, "Dropbear neither runs nor has /etc/default/dropbear");
		return;
	}
	cJSON_AddStringToObject(evidence(o), "Options", run->dropbear_opts);
	for (const char *l = c->value; *l; l++)
		if (strchr(run->dropbear_opts, *l)) {
			outcome(o, BL_PASS, NULL);
			return;
		}
	outcome(o, BL_FAIL, "Dropbear runs without -%c", c->value[0]);
}

/* ---- mounts and modules ---- */

static void eval_mount(struct agent_ctx *ctx, struct bl_run *run, const struct bl_check *c, struct bl_outcome *o)
{
	if (!run->mounts_loaded) {
		run->mounts_loaded = true;
		/* /proc/mounts is a link to self/mounts, which agent_open will
		 * not follow: snapshots hold a file, devices the real table */
		run->mounts = agent_read_file(ctx, "/proc/mounts", MAX_TEXT, NULL);
		if (!run->mounts)
			run->mounts = agent_read_file(ctx, "/proc/self/mounts", MAX_TEXT, NULL);
	}
	if (!run->mounts) {
		outcome(o, BL_SKIP, "/proc/mounts does not exist");
		return;
	}
	char opts[512] = "";
	bool found = false;
	size_t tlen = strlen(c->target);
	for (const char *line = run->mounts; line && *line;) {
		char dev[256], mp[512], type[64], o2[512];
		if (sscanf(line, "%255s %511s %63s %511s", dev, mp, type, o2) == 4 && strlen(mp) == tlen &&
		    !strcmp(mp, c->target)) {
			found = true; /* the last mount on a point is the visible one */
			snprintf(opts, sizeof(opts), "%s", o2);
		}
		line = strchr(line, '\n');
		line = line ? line + 1 : NULL;
	}
	if (!found) {
		outcome(o, BL_SKIP, "%s is not a separate mount", c->target);
		return;
	}
	cJSON_AddStringToObject(evidence(o), "Options", opts);
	char want[128], *save, *w;
	snprintf(want, sizeof(want), "%s", c->value);
	for (w = strtok_r(want, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		char padded[520], needle[136];
		snprintf(padded, sizeof(padded), ",%s,", opts);
		snprintf(needle, sizeof(needle), ",%s,", w);
		if (!strstr(padded, needle)) {
			outcome(o, BL_FAIL, "%s is mounted without %s", c->target, w);
			return;
		}
	}
	outcome(o, BL_PASS, NULL);
}

static char *read_dir_texts(struct agent_ctx *ctx, const char *dir, const char *suffix, char *acc)
{
	int dfd = agent_open(ctx, dir, O_RDONLY | O_DIRECTORY);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return acc;
	}
	struct dirent *de;
	size_t slen = strlen(suffix);
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		if (n <= slen || strcmp(de->d_name + n - slen, suffix) != 0)
			continue;
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		char *t = agent_read_file(ctx, path, 65536, NULL);
		if (!t)
			continue;
		size_t al = acc ? strlen(acc) : 0;
		char *na = realloc(acc, al + strlen(t) + 2);
		if (na) {
			acc = na;
			strcpy(acc + al, t);
			strcat(acc, "\n");
		}
		free(t);
	}
	closedir(d);
	return acc;
}

static void load_modules(struct agent_ctx *ctx, struct bl_run *run)
{
	if (run->mods_loaded)
		return;
	run->mods_loaded = true;
	run->proc_modules = agent_read_file(ctx, "/proc/modules", MAX_TEXT, NULL);
	run->have_proc_modules = run->proc_modules != NULL;
	run->filesystems = agent_read_file(ctx, "/proc/filesystems", 65536, NULL);
	char *rel = agent_read_file(ctx, "/proc/sys/kernel/osrelease", 256, NULL);
	if (rel) {
		trim(rel);
		char path[512];
		snprintf(path, sizeof(path), "/lib/modules/%s/modules.dep", rel);
		run->modules_dep = agent_read_file(ctx, path, 4 * MAX_TEXT, NULL);
		free(rel);
	}
	run->modprobe = agent_read_file(ctx, "/etc/modprobe.conf", 65536, NULL);
	run->modprobe = read_dir_texts(ctx, "/etc/modprobe.d", ".conf", run->modprobe);
	run->modprobe = read_dir_texts(ctx, "/lib/modprobe.d", ".conf", run->modprobe);
}

static void eval_module(struct agent_ctx *ctx, struct bl_run *run, const struct bl_check *c, struct bl_outcome *o)
{
	load_modules(ctx, run);
	char re[256];
	/* loaded now: /proc/modules ("name size ...") or a registered file system */
	snprintf(re, sizeof(re), "^%s ", c->target);
	if (run->proc_modules && any_line_matches(run->proc_modules, re) == 1) {
		outcome(o, BL_FAIL, "module %s is loaded", c->target);
		return;
	}
	snprintf(re, sizeof(re), "[[:space:]]%s$", c->target);
	if (run->filesystems && any_line_matches(run->filesystems, re) == 1) {
		outcome(o, BL_FAIL, "file system %s is available (built in or loaded)", c->target);
		return;
	}
	if (!run->have_proc_modules && !run->filesystems) {
		outcome(o, BL_SKIP, "/proc/modules and /proc/filesystems do not exist");
		return;
	}
	if (!run->have_proc_modules) {
		cJSON_AddStringToObject(evidence(o), "Why", "kernel without loadable modules");
		outcome(o, BL_PASS, NULL);
		return;
	}
	snprintf(re, sizeof(re), "^[[:space:]]*(install[[:space:]]+%s[[:space:]]+(/usr)?/bin/(true|false)|blacklist[[:space:]]+%s[[:space:]]*$)",
		 c->target, c->target);
	if (run->modprobe && any_line_matches(run->modprobe, re) == 1) {
		cJSON_AddStringToObject(evidence(o), "Why", "disabled in modprobe.d");
		outcome(o, BL_PASS, NULL);
		return;
	}
	/* modules.dep names it "kernel/fs/cramfs/cramfs.ko[.xz]:" */
	char name[128];
	snprintf(name, sizeof(name), "%s", c->target);
	for (char *p = name; *p; p++)
		if (*p == '-')
			*p = '_';
	snprintf(re, sizeof(re), "/%s\\.ko(\\.[a-z]+)?:", c->target);
	bool available = run->modules_dep && any_line_matches(run->modules_dep, re) == 1;
	if (!available && strcmp(name, c->target) != 0) {
		snprintf(re, sizeof(re), "/%s\\.ko(\\.[a-z]+)?:", name);
		available = run->modules_dep && any_line_matches(run->modules_dep, re) == 1;
	}
	if (available) {
		outcome(o, BL_FAIL, "module %s can be loaded: add 'install %s /bin/true' to /etc/modprobe.d", c->target,
			c->target);
		return;
	}
	cJSON_AddStringToObject(evidence(o), "Why", run->modules_dep ? "not built" : "no modules.dep");
	outcome(o, BL_PASS, NULL);
}

/* ---- firewall ---- */

/* Runs a firewall tool with a fixed argument vector (never a shell, no
 * input from outside) and returns what it printed, at most 1 MB and 3 s. */
static char *run_tool(const char *path, char *const argv[])
{
	if (access(path, X_OK) != 0)
		return NULL;
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0)
		return NULL;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	/* the core blocks the signals it takes through signalfd: give the
	 * tool the default mask and dispositions */
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	char *envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL };
	pid_t pid;
	int rc = posix_spawn(&pid, path, &fa, &attr, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(fds[1]);
	if (rc != 0) {
		close(fds[0]);
		return NULL;
	}
	size_t cap = 65536, n = 0;
	char *out = malloc(cap);
	int waited = 0;
	while (out && waited < 3000) {
		struct pollfd p = { .fd = fds[0], .events = POLLIN };
		int r = poll(&p, 1, 100);
		if (r == 0) {
			waited += 100;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (n + 1 >= cap) {
			if (cap >= MAX_TEXT)
				break;
			char *no = realloc(out, cap * 2);
			if (!no)
				break;
			out = no;
			cap *= 2;
		}
		ssize_t got = read(fds[0], out + n, cap - 1 - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		n += (size_t)got;
	}
	close(fds[0]);
	/* End of output comes a moment before the exit: wait out the rest of
	 * the time limit, then kill. */
	int status = 0;
	pid_t w;
	while ((w = waitpid(pid, &status, WNOHANG)) == 0 && waited < 3000) {
		poll(NULL, 0, 10);
		waited += 10;
	}
	if (w == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		free(out);
		return NULL;
	}
	if (!out || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		free(out);
		return NULL;
	}
	out[n] = 0;
	return out;
}

static char *first_tool(const char *const paths[], char *const argv[])
{
	for (size_t i = 0; paths[i]; i++) {
		char *t = run_tool(paths[i], argv);
		if (t)
			return t;
	}
	return NULL;
}

static void load_firewall(struct agent_ctx *ctx, struct bl_run *run)
{
	if (run->fw_loaded)
		return;
	run->fw_loaded = true;
	if (*agent_root(ctx)) {
		/* A snapshot tree: the tools' output as recorded on the device. */
		static const char *const recorded[] = {
			"/var/lib/defender-iot/firewall/iptables-save.txt",
			"/var/lib/defender-iot/firewall/ip6tables-save.txt",
			"/var/lib/defender-iot/firewall/nft-ruleset.txt",
		};
		for (int i = 0; i < 3; i++)
			run->fw[i] = agent_read_file(ctx, recorded[i], MAX_TEXT, NULL);
		snprintf(run->fw_source, sizeof(run->fw_source), "/var/lib/defender-iot/firewall");
	} else {
		static const char *const ipt[] = { "/usr/sbin/iptables-save", "/sbin/iptables-save", NULL };
		static const char *const ip6t[] = { "/usr/sbin/ip6tables-save", "/sbin/ip6tables-save", NULL };
		static const char *const nft[] = { "/usr/sbin/nft", "/sbin/nft", NULL };
		static char *const ipt_argv[] = { "iptables-save", NULL };
		static char *const ip6t_argv[] = { "ip6tables-save", NULL };
		static char *const nft_argv[] = { "nft", "list", "ruleset", NULL };
		run->fw[0] = first_tool(ipt, ipt_argv);
		run->fw[1] = first_tool(ip6t, ip6t_argv);
		run->fw[2] = first_tool(nft, nft_argv);
		snprintf(run->fw_source, sizeof(run->fw_source), "iptables-save, ip6tables-save, nft");
	}
}

static bool fw_has(const char *text, const char *ere)
{
	return text && ere && any_line_matches(text, ere) == 1;
}

/* nft: a line counts only inside a table of the check's family (ip or inet
 * for IPv4, ip6 or inet for IPv6): the matching line alone does not say
 * which table it is in, and a drop policy in an ip6, bridge or netdev table
 * does not filter IPv4 input. `nft list ruleset` starts each table at
 * column 0 with "table <family> <name> {". */
static bool nft_has(const char *text, const char *ere, bool v6)
{
	regex_t re;
	if (!text || !ere || bl_regcomp(&re, ere, REG_NOSUB) != 0)
		return false;
	const char *own = v6 ? "ip6" : "ip";
	bool in_family = false, found = false;
	char line[1024];
	for (const char *p = text; *p && !found;) {
		size_t n = strcspn(p, "\n");
		if (strncmp(p, "table ", 6) == 0) {
			size_t f = strcspn(p + 6, " \n");
			in_family = (f == 4 && strncmp(p + 6, "inet", 4) == 0) ||
				    (f == strlen(own) && strncmp(p + 6, own, f) == 0);
		} else if (in_family) {
			size_t m = n < sizeof(line) - 1 ? n : sizeof(line) - 1;
			memcpy(line, p, m);
			line[m] = 0;
			found = regexec(&re, line, 0, NULL, 0) == 0;
		}
		p += n + (p[n] == '\n');
	}
	regfree(&re);
	return found;
}

static bool port_has_rule(const struct bl_run *run, unsigned port)
{
	char re[256];
	/* iptables: --dport 22, --dports 22,80 or 1000:2000 ranges are rare
	 * enough on devices to be left out; nft: dport 22, dport { 22, 80 } */
	snprintf(re, sizeof(re), "--dports? ([0-9]+,)*%u([, ]|$)", port);
	if (fw_has(run->fw[0], re) || fw_has(run->fw[1], re))
		return true;
	snprintf(re, sizeof(re), "dport (\\{ ([0-9]+, )*)?%u([ ,]|$)", port);
	return fw_has(run->fw[2], re);
}

static void eval_firewall(struct agent_ctx *ctx, struct bl_run *run, const struct bl_check *c, struct bl_outcome *o)
{
	load_firewall(ctx, run);
	bool v6 = c->key && c->key[0] == '6';
	const char *ipt = run->fw[v6 ? 1 : 0];
	if (!run->fw[0] && !run->fw[1] && !run->fw[2]) {
		outcome(o, BL_SKIP, "no firewall rules readable (%s)", run->fw_source);
		return;
	}
	bool any_rules = (run->fw[0] && strstr(run->fw[0], "\n-A ")) || (run->fw[1] && strstr(run->fw[1], "\n-A ")) ||
			 fw_has(run->fw[2], "^[[:space:]]*chain ");
	switch (c->sub) {
	case FW_ANY_RULES:
		if (any_rules)
			outcome(o, BL_PASS, NULL);
		else
			outcome(o, BL_FAIL, "no firewall rules are loaded");
		return;
	case FW_MATCH:
		if (fw_has(ipt, c->target) || nft_has(run->fw[2], c->value, v6))
			outcome(o, BL_PASS, NULL);
		else
			outcome(o, BL_FAIL, NULL);
		return;
	case FW_PORTS: {
		load_listeners(ctx, run);
		cJSON *list = cJSON_CreateArray();
		long count = 0;
		for (size_t i = 0; i < run->nlisteners; i++) {
			const struct listener *l = &run->listeners[i];
			if (strcmp(l->proto, "tcp") != 0 || l->loopback || port_has_rule(run, l->port))
				continue;
			count++;
			cJSON_AddItemToArray(list, cJSON_CreateNumber(l->port));
		}
		if (count) {
			cJSON_AddItemToObject(evidence(o), "PortsWithoutRule", list);
			outcome(o, BL_FAIL, NULL);
		} else {
			cJSON_Delete(list);
			outcome(o, BL_PASS, NULL);
		}
		return;
	}
	default:
		outcome(o, BL_ERROR, "unknown firewall check");
	}
}

/* ---- the file system walk ---- */

static bool uid_known(const struct bl_run *run, uid_t uid)
{
	for (size_t i = 0; i < run->nusers; i++)
		if (run->users[i].uid == (long)uid)
			return true;
	return false;
}

static bool gid_known(const struct bl_run *run, gid_t gid)
{
	for (size_t i = 0; i < run->ngroups; i++)
		if (run->groups[i].gid == (long)gid)
			return true;
	return false;
}

static bool suid_allowed(const struct bl_run *run, const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	for (char **a = run->suid_allow; a && *a; a++)
		if (strcmp(*a, path) == 0 || strcmp(*a, base) == 0)
			return true;
	return false;
}

static void hit(struct bl_run *run, int which, const char *path)
{
	struct scan *s = &run->scans[which];
	if (s->count++ < EVIDENCE_MAX)
		cJSON_AddItemToArray(s->list, cJSON_CreateString(path));
}

static void walk(struct bl_run *run, int dfd, char *path, size_t plen, int depth)
{
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return;
	}
	struct dirent *de;
	bool in_log = !strncmp(path, "/var/log", 8) && (path[8] == 0 || path[8] == '/');
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (++run->scanned_entries > SCAN_MAX_ENTRIES) {
			run->scan_truncated = true;
			break;
		}
		size_t nlen = strlen(de->d_name);
		if (plen + nlen + 2 >= 4096)
			continue;
		path[plen] = '/';
		memcpy(path + plen + 1, de->d_name, nlen + 1);
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			path[plen] = 0;
			continue;
		}
		mode_t m = st.st_mode;
		if (!S_ISLNK(m)) {
			if (S_ISREG(m) && (m & S_IWOTH))
				hit(run, SCAN_WW_FILES, path);
			if (S_ISDIR(m) && (m & S_IWOTH) && !(m & S_ISVTX))
				hit(run, SCAN_STICKY, path);
			if (!uid_known(run, st.st_uid))
				hit(run, SCAN_UNOWNED, path);
			if (!gid_known(run, st.st_gid))
				hit(run, SCAN_UNGROUPED, path);
			if (S_ISREG(m) && (m & (S_ISUID | S_ISGID)) && !suid_allowed(run, path))
				hit(run, SCAN_SUID, path);
			if (in_log && S_ISREG(m) && (m & 0137))
				hit(run, SCAN_LOGS, path);
		}
		if (S_ISDIR(m) && depth < SCAN_MAX_DEPTH) {
			int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				walk(run, sub, path, plen + 1 + nlen, depth + 1);
		}
		path[plen] = 0;
	}
	closedir(d);
}

static void scan(struct agent_ctx *ctx, struct bl_run *run)
{
	if (run->scanned)
		return;
	run->scanned = true;
	load_accounts(ctx, run);
	for (int i = 1; i <= SCAN_LOGS; i++)
		run->scans[i].list = cJSON_CreateArray();
	/* The system's own directories: not /proc, /sys, /dev, /run (the
	 * kernel's), nor removable media and network mounts under /mnt, /media,
	 * nor users' homes (DIOT-ACC-011..013 look at those), whose caches can
	 * hold more files than the whole system. */
	static const char *const tops[] = { "/bin", "/sbin", "/lib", "/lib64", "/usr", "/etc", "/var",
					    "/tmp", "/opt", "/srv", "/boot", "/data", NULL };
	char path[4096];
	for (size_t i = 0; tops[i]; i++) {
		int dfd = agent_open(ctx, tops[i], O_RDONLY | O_DIRECTORY);
		if (dfd < 0)
			continue;
		run->scanned_tops++;
		struct stat st;
		if (fstat(dfd, &st) == 0) {
			snprintf(path, sizeof(path), "%s", tops[i]);
			if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX))
				hit(run, SCAN_STICKY, path);
			if (!uid_known(run, st.st_uid))
				hit(run, SCAN_UNOWNED, path);
		}
		walk(run, dfd, path, strlen(path), 0);
	}
}

static void eval_scan(struct agent_ctx *ctx, struct bl_run *run, const struct bl_check *c, struct bl_outcome *o)
{
	load_accounts(ctx, run);
	if ((c->sub == SCAN_UNOWNED && !run->have_passwd) || (c->sub == SCAN_UNGROUPED && !run->have_group)) {
		outcome(o, BL_SKIP, "%s does not exist", c->sub == SCAN_UNOWNED ? "/etc/passwd" : "/etc/group");
		return;
	}
	if (c->sub == SCAN_LOGS) {
		int fd = agent_open(ctx, "/var/log", O_RDONLY | O_DIRECTORY);
		if (fd < 0) {
			outcome(o, BL_SKIP, "/var/log does not exist");
			return;
		}
		close(fd);
	}
	scan(ctx, run);
	if (!run->scanned_tops) {
		outcome(o, BL_SKIP, "none of /bin, /sbin, /usr, /etc, /var, /tmp, /opt exists");
		return;
	}
	struct scan *s = &run->scans[c->sub];
	cJSON_AddNumberToObject(evidence(o), "Scanned", (double)run->scanned_entries);
	if (run->scan_truncated)
		cJSON_AddBoolToObject(evidence(o), "Truncated", true);
	if (s->count) {
		cJSON_AddItemToObject(evidence(o), "Paths", cJSON_Duplicate(s->list, 1));
		cJSON_AddNumberToObject(evidence(o), "Count", (double)s->count);
		outcome(o, BL_FAIL, NULL);
	} else {
		outcome(o, BL_PASS, NULL);
	}
}

/* ---- runtime policy rules ---- */

static bool line_matches(const struct bl_rule *r, const char *line)
{
	for (size_t i = 0; i < r->nops; i++) {
		const struct bl_operator *op = &r->ops[i];
		bool m = false;
		switch (op->kind) {
		case BOP_LITERAL: {
			char buf[4096];
			snprintf(buf, sizeof(buf), "%s", line);
			trim(buf);
			m = strcmp(buf, op->text) == 0;
			break;
		}
		case BOP_REGEX:
			m = regexec(&op->re, line, 0, NULL, 0) == 0;
			break;
		case BOP_NUMERIC: {
			regmatch_t g[2];
			if (regexec(&op->re, line, 2, g, 0) == 0 && g[1].rm_so >= 0) {
				double v = strtod(line + g[1].rm_so, NULL);
				switch (op->cmp) {
				case OP_EQ: m = v == op->number; break;
				case OP_NE: m = v != op->number; break;
				case OP_LE: m = op->strict ? v < op->number : v <= op->number; break;
				case OP_GE: m = op->strict ? v > op->number : v >= op->number; break;
				default: break;
				}
			}
			break;
		}
		}
		if (m == op->negate)
			return false;
	}
	return true;
}

static bool text_matches(const struct bl_rule *r, char *text)
{
	char *save, *line;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (line_matches(r, line))
			return true;
	return false;
}

/* 1 true, 0 false, -1 input missing (reason set) */
static int eval_rule(struct agent_ctx *ctx, struct bl_run *run, const struct bl_rule *r, char *reason, size_t rsize)
{
	switch (r->type) {
	case RULE_PROCESS:
		load_procs(ctx, run);
		if (!run->nprocs) {
			snprintf(reason, rsize, "no process is visible under /proc");
			return -1;
		}
		for (size_t i = 0; i < run->nprocs; i++)
			if (!strcmp(run->procs[i].name, r->target) || !strcmp(run->procs[i].argv0, r->target))
				return 1;
		return 0;
	case RULE_SYSCTL: {
		char path[256] = "/proc/sys/";
		size_t n = strlen(path);
		for (const char *s = r->target; *s && n + 1 < sizeof(path); s++)
			path[n++] = *s == '.' ? '/' : *s;
		path[n] = 0;
		char *v = agent_read_file(ctx, path, 256, NULL);
		if (!v) {
			snprintf(reason, rsize, "%s does not exist on this kernel", r->target);
			return -1;
		}
		trim(v);
		int m = r->nops ? line_matches(r, v) : 1;
		free(v);
		return m;
	}
	case RULE_FILE: {
		if (!r->nops) {
			int fd = agent_open(ctx, r->target, O_RDONLY | O_PATH);
			if (fd >= 0)
				close(fd);
			return fd >= 0;
		}
		char *t = agent_read_file(ctx, r->target, MAX_TEXT, NULL);
		if (!t) {
			snprintf(reason, rsize, "%s does not exist", r->target);
			return -1;
		}
		int m = text_matches(r, t);
		free(t);
		return m;
	}
	case RULE_DIR: {
		int dfd = agent_open(ctx, r->target, O_RDONLY | O_DIRECTORY);
		if (!r->name_regex) {
			if (dfd >= 0)
				close(dfd);
			return dfd >= 0;
		}
		DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
		if (!d) {
			if (dfd >= 0)
				close(dfd);
			snprintf(reason, rsize, "%s does not exist", r->target);
			return -1;
		}
		int m = 0;
		struct dirent *de;
		while (!m && (de = readdir(d))) {
			if (regexec(&r->name_re, de->d_name, 0, NULL, 0) != 0)
				continue;
			if (!r->nops) {
				m = 1;
				break;
			}
			char path[1024];
			snprintf(path, sizeof(path), "%s/%s", r->target, de->d_name);
			char *t = agent_read_file(ctx, path, MAX_TEXT, NULL);
			if (t)
				m = text_matches(r, t);
			free(t);
		}
		closedir(d);
		return m;
	}
	}
	return 0;
}

static void eval_policy(struct agent_ctx *ctx, struct bl_run *run, const struct bl_check *c, struct bl_outcome *o)
{
	const struct bl_policy_check *p = c->policy;
	size_t trues = 0;
	for (size_t i = 0; i < p->nrules; i++) {
		char reason[200] = "";
		int m = eval_rule(ctx, run, &p->rules[i], reason, sizeof(reason));
		if (m < 0) {
			outcome(o, BL_SKIP, "%s", reason);
			return;
		}
		if (p->rules[i].negate)
			m = !m;
		trues += (size_t)m;
	}
	bool pass = p->condition == COND_ALL ? trues == p->nrules : p->condition == COND_ANY ? trues > 0 : trues == 0;
	outcome(o, pass ? BL_PASS : BL_FAIL, NULL);
}

/* ---- entry points ---- */

static const char *text_of(struct agent_ctx *ctx, const char *path, char **owned)
{
	*owned = agent_read_file(ctx, path, MAX_TEXT, NULL);
	return *owned;
}

void bl_evaluate(struct agent_ctx *ctx, struct bl_run *run, const struct bl_check *c, struct bl_outcome *o)
{
	memset(o, 0, sizeof(*o));
	char *owned = NULL;
	switch (c->eval) {
	case BL_SYSCTL:
		eval_sysctl(ctx, c, o);
		break;
	case BL_MODE:
		eval_mode(ctx, run, c, o);
		break;
	case BL_CONTENT:
	case BL_NO_CONTENT: {
		const char *t = text_of(ctx, c->target, &owned);
		if (!t) {
			outcome(o, BL_SKIP, "%s does not exist", c->target);
			break;
		}
		char line[256];
		bool m = first_matching_line(t, c->value, line, sizeof(line));
		if (m)
			cJSON_AddStringToObject(evidence(o), "Line", line);
		outcome(o, m == (c->eval == BL_CONTENT) ? BL_PASS : BL_FAIL, NULL);
		break;
	}
	case BL_KEYVALUE: {
		const char *t = text_of(ctx, c->target, &owned);
		char v[256];
		if (!t)
			outcome(o, BL_SKIP, "%s does not exist", c->target);
		else
			compare_setting(o, c, c->target, key_value(t, c->key, v, sizeof(v)) ? v : NULL);
		break;
	}
	case BL_SSHD: {
		const cJSON *kv = sshd_config(ctx, run);
		if (!kv)
			outcome(o, BL_SKIP, "OpenSSH is not installed (no /etc/ssh/sshd_config)");
		else
			compare_setting(o, c, "sshd_config",
					cJSON_GetStringValue(cJSON_GetObjectItem(kv, c->key)));
		break;
	}
	case BL_DROPBEAR:
		eval_dropbear(ctx, run, c, o);
		break;
	case BL_MOUNT:
		eval_mount(ctx, run, c, o);
		break;
	case BL_MODULE:
		eval_module(ctx, run, c, o);
		break;
	case BL_PROCESS:
		eval_process(ctx, run, c, o);
		break;
	case BL_LISTENER:
		eval_listener(ctx, run, c, o);
		break;
	case BL_FIREWALL:
		eval_firewall(ctx, run, c, o);
		break;
	case BL_ACCOUNT:
		eval_account(ctx, run, c, o);
		break;
	case BL_SCAN:
		eval_scan(ctx, run, c, o);
		break;
	case BL_POLICY:
		eval_policy(ctx, run, c, o);
		break;
	}
	free(owned);
}

struct bl_run *bl_run_new(void)
{
	struct bl_run *run = calloc(1, sizeof(*run));
	if (!run)
		abort();
	return run;
}

void bl_run_reset(struct bl_run *run)
{
	for (size_t i = 0; i < run->nusers; i++) {
		free(run->users[i].name);
		free(run->users[i].pw);
		free(run->users[i].home);
		free(run->users[i].shell);
	}
	for (size_t i = 0; i < run->ngroups; i++)
		free(run->groups[i].name);
	for (size_t i = 0; i < run->nshadows; i++) {
		free(run->shadows[i].name);
		free(run->shadows[i].hash);
	}
	for (size_t i = 0; i < run->nprocs; i++)
		free(run->procs[i].cmdline);
	free(run->users);
	free(run->groups);
	free(run->shadows);
	free(run->procs);
	free(run->listeners);
	free(run->passwd_text);
	free(run->shadow_text);
	free(run->group_text);
	cJSON_Delete(run->sshd);
	for (int i = 0; i < 3; i++)
		free(run->fw[i]);
	free(run->proc_modules);
	free(run->modules_dep);
	free(run->modprobe);
	free(run->filesystems);
	free(run->mounts);
	for (int i = 0; i <= SCAN_LOGS; i++)
		cJSON_Delete(run->scans[i].list);
	/* keep what outlives a pass */
	struct cred_cache creds[CRYPT_CACHE];
	size_t ncreds = run->ncreds, next = run->next_cred;
	bool dirty = run->creds_dirty;
	struct crypt_data *cd = run->cd;
	char **allow = run->suid_allow;
	memcpy(creds, run->creds, sizeof(creds));
	memset(run, 0, sizeof(*run));
	memcpy(run->creds, creds, sizeof(creds));
	run->ncreds = ncreds;
	run->next_cred = next;
	run->creds_dirty = dirty;
	run->cd = cd;
	run->suid_allow = allow;
}

static void free_allow(struct bl_run *run)
{
	for (char **a = run->suid_allow; a && *a; a++)
		free(*a);
	free(run->suid_allow);
	run->suid_allow = NULL;
}

void bl_run_set_suid_allowlist(struct bl_run *run, const char *const *items)
{
	free_allow(run);
	size_t n = 0;
	while (items && items[n])
		n++;
	run->suid_allow = calloc(n + 1, sizeof(char *));
	if (!run->suid_allow)
		abort();
	for (size_t i = 0; i < n; i++)
		if (!(run->suid_allow[i] = strdup(items[i])))
			abort();
}

void bl_run_free(struct bl_run *run)
{
	if (!run)
		return;
	bl_run_reset(run);
	free(run->cd);
	free_allow(run);
	free(run);
}
#endif
