//feature: collector file_integrity ON
//summary: File integrity: created, modified, deleted and permission-changed files under watched paths (metadata and SHA-256)
//libs: libcrypto
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/capability.h>
#include <openssl/evp.h>

#include "core/agent.h"
#include "lib/text.h"

/* Paths must be absolute: they are looked up under --root and never
 * relative to the agent's working directory. */
static const char *check_paths(const cJSON *value)
{
	static const char *const expected = "a comma-separated list of absolute paths, e.g. \"/etc/passwd,/usr/bin\"";
	if (cJSON_IsString(value)) {
		const char *s = value->valuestring;
		while (*s == ' ')
			s++;
		for (const char *p = s; *p;) {
			if (*p != '/')
				return expected;
			const char *comma = strchr(p, ',');
			if (!comma)
				break;
			p = comma + 1;
			while (*p == ' ')
				p++;
		}
		return NULL;
	}
	if (!cJSON_IsArray(value))
		return expected;
	const cJSON *item;
	cJSON_ArrayForEach(item, value) {
		if (!cJSON_IsString(item) || item->valuestring[0] != '/')
			return expected;
	}
	return NULL;
}

static const struct config_key keys[] = {
	{ "FileIntegrity_Paths", CFG_LIST,
	  "/etc/passwd,/etc/shadow,/etc/group,/etc/sudoers,/etc/sudoers.d,/etc/ssh/sshd_config,/etc/dropbear,"
	  "/etc/init.d,/etc/inittab,/etc/crontab,/etc/cron.d,/etc/profile,/etc/ld.so.preload,/etc/hosts,"
	  "/root/.ssh,/bin,/sbin,/usr/bin,/usr/sbin",
	  0, 0, NULL, "absolute files and directories to watch (directories recursively, symlinks never followed)",
	  check_paths },
	{ "FileIntegrity_PollingInterval", CFG_INT, "300000", 1000, 86400000, NULL,
	  "milliseconds between two scans of the watched paths", NULL },
	{ "FileIntegrity_MaxFiles", CFG_INT, "4096", 1, 262144, NULL,
	  "at most this many files and directories are watched; the rest are skipped with a warning", NULL },
	{ "FileIntegrity_HashMaxBytes", CFG_INT, "1048576", 0, 67108864, NULL,
	  "regular files up to this size get a SHA-256 of their content (0: metadata only)", NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};

enum { MAX_DEPTH = 8, MAX_PATH = 1024, MAX_LINK = 256 };

struct file_meta {
	char *path;
	char *link;            /* symlink target, else NULL */
	mode_t mode;
	uid_t uid;
	gid_t gid;
	off_t size;
	ino_t ino;
	dev_t dev;
	struct timespec mtime, ctime;
	bool hashed;
	unsigned char sha256[32];
};

struct table {
	struct file_meta *f;
	size_t n, cap;
};

struct fim_state {
	struct table baseline;
	bool have_baseline;
	bool warned_full;
	/* limits for the pass being built */
	size_t max_files;
	long hash_max;
	bool full;
	/* FileIntegrity_* as the baseline was taken, to see whether a config
	 * change concerns this collector. */
	char *settings;
};

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->f[i].path);
		free(t->f[i].link);
	}
	free(t->f);
	memset(t, 0, sizeof(*t));
}

static int cmp_meta(const void *a, const void *b)
{
	return strcmp(((const struct file_meta *)a)->path, ((const struct file_meta *)b)->path);
}

static const struct file_meta *table_find(const struct table *t, const char *path)
{
	struct file_meta key = { .path = (char *)path };
	return t->n ? bsearch(&key, t->f, t->n, sizeof(*t->f), cmp_meta) : NULL;
}

static bool same_time(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* SHA-256 of a regular file opened without following a symlink; false if it
 * cannot be read or is no longer the file lstat saw. */
static bool hash_file(struct agent_ctx *ctx, const char *path, const struct stat *seen, unsigned char out[32])
{
	int fd = agent_open(ctx, path, O_RDONLY);
	if (fd < 0)
		return false;
	struct stat st;
	bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_ino == seen->st_ino && st.st_dev == seen->st_dev;
	EVP_MD_CTX *md = ok ? EVP_MD_CTX_new() : NULL;
	ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
	char buf[16384];
	while (ok) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			ok = r == 0;
			break;
		}
		ok = EVP_DigestUpdate(md, buf, (size_t)r) == 1;
	}
	unsigned len = 0;
	ok = ok && EVP_DigestFinal_ex(md, out, &len) == 1 && len == 32;
	EVP_MD_CTX_free(md);
	close(fd);
	return ok;
}

static void add_entry(struct agent_ctx *ctx, struct fim_state *s, struct table *t, const char *path,
		      const struct stat *st)
{
	if (t->n >= s->max_files) {
		s->full = true;
		return;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 256;
		struct file_meta *f = realloc(t->f, cap * sizeof(*f));
		if (!f)
			abort();
		t->f = f;
		t->cap = cap;
	}
	struct file_meta *m = &t->f[t->n];
	memset(m, 0, sizeof(*m));
	m->path = strdup(path);
	if (!m->path)
		abort();
	m->mode = st->st_mode;
	m->uid = st->st_uid;
	m->gid = st->st_gid;
	m->size = st->st_size;
	m->ino = st->st_ino;
	m->dev = st->st_dev;
	m->mtime = st->st_mtim;
	m->ctime = st->st_ctim;
	if (S_ISLNK(st->st_mode)) {
		char full[MAX_PATH + 512], target[MAX_LINK];
		ssize_t n = agent_path(ctx, path, full, sizeof(full)) ? readlink(full, target, sizeof(target)) : -1;
		m->link = text_clean(n > 0 ? target : "", n > 0 ? (size_t)n : 0, MAX_LINK);
	} else if (S_ISREG(st->st_mode) && s->hash_max > 0 && st->st_size <= s->hash_max) {
		/* Unchanged size, mtime, ctime and inode: the content is the one
		 * hashed last time (changing it without touching ctime takes a
		 * raw write to the block device). Hashing every binary on each
		 * pass would cost far more. */
		const struct file_meta *old = table_find(&s->baseline, path);
		if (old && old->hashed && old->size == m->size && old->ino == m->ino && old->dev == m->dev &&
		    same_time(old->mtime, m->mtime) && same_time(old->ctime, m->ctime)) {
			memcpy(m->sha256, old->sha256, 32);
			m->hashed = true;
		} else {
			m->hashed = hash_file(ctx, path, st, m->sha256);
		}
	}
	t->n++;
}

static void walk(struct agent_ctx *ctx, struct fim_state *s, struct table *t, const char *path, int depth)
{
	char full[MAX_PATH + 512];
	struct stat st;
	if (s->full || strlen(path) >= MAX_PATH || !agent_path(ctx, path, full, sizeof(full)) || lstat(full, &st) != 0)
		return;
	add_entry(ctx, s, t, path, &st);
	if (!S_ISDIR(st.st_mode) || depth >= MAX_DEPTH)
		return;
	int fd = agent_open(ctx, path, O_RDONLY | O_DIRECTORY);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	struct dirent *de;
	size_t plen = strlen(path);
	while (!s->full && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char child[MAX_PATH];
		if (snprintf(child, sizeof(child), "%s%s%s", path, plen && path[plen - 1] == '/' ? "" : "/",
			     de->d_name) >= (int)sizeof(child))
			continue;
		walk(ctx, s, t, child, depth + 1);
	}
	closedir(d);
}

static const char *type_name(mode_t mode)
{
	if (S_ISREG(mode))
		return "File";
	if (S_ISDIR(mode))
		return "Directory";
	if (S_ISLNK(mode))
		return "Symlink";
	return "Other";
}

static cJSON *meta_json(const struct file_meta *m)
{
	if (!m)
		return cJSON_CreateNull();
	cJSON *o = cJSON_CreateObject();
	char text[72];
	cJSON_AddStringToObject(o, "Type", type_name(m->mode));
	snprintf(text, sizeof(text), "%04o", (unsigned)(m->mode & 07777));
	cJSON_AddStringToObject(o, "Mode", text);
	cJSON_AddNumberToObject(o, "Uid", (double)m->uid);
	cJSON_AddNumberToObject(o, "Gid", (double)m->gid);
	cJSON_AddNumberToObject(o, "Size", (double)m->size);
	cJSON_AddNumberToObject(o, "Inode", (double)m->ino);
	char ts[21];
	agent_format_utc(m->mtime.tv_sec, ts);
	cJSON_AddStringToObject(o, "ModifiedUTC", ts);
	if (m->hashed) {
		for (int i = 0; i < 32; i++)
			snprintf(text + 2 * i, 3, "%02x", m->sha256[i]);
		cJSON_AddStringToObject(o, "Sha256", text);
	}
	if (m->link)
		cJSON_AddStringToObject(o, "LinkTarget", m->link);
	return o;
}

static void report(struct agent_ctx *ctx, const char *change, const struct file_meta *before,
		   const struct file_meta *after)
{
	const char *raw = after ? after->path : before->path;
	char *path = text_clean(raw, strlen(raw), MAX_PATH);
	char ts[21], key[MAX_PATH + 32];
	agent_format_utc(agent_now(ctx), ts);
	cJSON *e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "Path", path);
	cJSON_AddStringToObject(e, "Change", change);
	cJSON_AddItemToObject(e, "Before", meta_json(before));
	cJSON_AddItemToObject(e, "After", meta_json(after));
	cJSON_AddStringToObject(e, "TimestampUTC", ts);
	snprintf(key, sizeof(key), "%s|%s", change, path);
	agent_report(ctx, e, key);
	free(path);
}

/* What changed between two looks at one path, or NULL. A change of type,
 * size, mtime, hash or link target is a modification; so is a new inode (the
 * file was replaced) when no hash or link target proves the content the same. A directory's
 * own changes are those of its entries, reported one by one: only its owner
 * and mode count. Owner and mode alone are a permissions change. */
static const char *classify(const struct file_meta *a, const struct file_meta *b)
{
	bool content = (a->mode & S_IFMT) != (b->mode & S_IFMT);
	if (!content && !S_ISDIR(a->mode))
		content = a->size != b->size || !same_time(a->mtime, b->mtime) || a->hashed != b->hashed ||
			  (a->hashed && memcmp(a->sha256, b->sha256, 32) != 0) ||
			  (!a->hashed && !a->link && (a->ino != b->ino || a->dev != b->dev)) ||
			  (a->link && b->link && strcmp(a->link, b->link) != 0);
	if (content)
		return "Modified";
	if ((a->mode & 07777) != (b->mode & 07777) || a->uid != b->uid || a->gid != b->gid)
		return "PermissionsChanged";
	return NULL;
}

/* ---- the baseline on disk ----
 * Kept in the state directory so that a file changed while the agent was
 * down (or across a reboot) is still reported. A line-oriented format of our
 * own: one line per path, every field a number or hex, so that no file name
 * can break it; the header holds the settings it was taken with. Only on the
 * real root: --root and --replay trees are snapshots, not this system. */
static const char *const baseline_magic = "defender-iot file-integrity 1";

static void baseline_path(struct agent_ctx *ctx, char *buf, size_t size)
{
	snprintf(buf, size, "%s/file-integrity.baseline", agent_state_dir(ctx));
}

static void put_hex(FILE *f, const unsigned char *p, size_t n)
{
	if (!n)
		fputc('-', f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", p[i]);
}

/* Decodes hex into a malloc'd NUL-terminated string ("-" is empty). */
static char *get_hex(const char *hex, size_t max)
{
	size_t n = strcmp(hex, "-") == 0 ? 0 : strlen(hex);
	if (n % 2 || n / 2 > max)
		return NULL;
	char *out = malloc(n / 2 + 1);
	if (!out)
		abort();
	for (size_t i = 0; i < n / 2; i++) {
		unsigned b;
		if (sscanf(hex + 2 * i, "%2x", &b) != 1) {
			free(out);
			return NULL;
		}
		out[i] = (char)b;
	}
	out[n / 2] = '\0';
	if (strlen(out) != n / 2) { /* an embedded NUL */
		free(out);
		return NULL;
	}
	return out;
}

static void save_baseline(struct agent_ctx *ctx, const struct fim_state *s)
{
	if (*agent_root(ctx) || strchr(s->settings, '\n'))
		return;
	char path[1200], tmp[1210];
	baseline_path(ctx, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	mkdir(agent_state_dir(ctx), 0700);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		agent_warn(ctx, "%s: %s; the file integrity baseline will not survive a restart", tmp, strerror(errno));
		return;
	}
	fprintf(f, "%s\n%s\n", baseline_magic, s->settings);
	for (size_t i = 0; i < s->baseline.n; i++) {
		const struct file_meta *m = &s->baseline.f[i];
		fprintf(f, "%o %lu %lu %lld %llu %llu %lld %ld %lld %ld ", (unsigned)m->mode, (unsigned long)m->uid,
			(unsigned long)m->gid, (long long)m->size, (unsigned long long)m->ino,
			(unsigned long long)m->dev, (long long)m->mtime.tv_sec, m->mtime.tv_nsec,
			(long long)m->ctime.tv_sec, m->ctime.tv_nsec);
		put_hex(f, m->sha256, m->hashed ? 32 : 0);
		fputc(' ', f);
		put_hex(f, (const unsigned char *)m->link, m->link ? strlen(m->link) : 0);
		fputc(' ', f);
		fputc(m->link ? 'L' : '-', f);
		fputc(' ', f);
		put_hex(f, (const unsigned char *)m->path, strlen(m->path));
		fputc('\n', f);
	}
	bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok = fclose(f) == 0 && ok;
	if (!ok || rename(tmp, path) != 0) {
		agent_warn(ctx, "%s: %s; the file integrity baseline will not survive a restart", path, strerror(errno));
		unlink(tmp);
	}
}

/* Parses one saved line into m; false if it is damaged. */
static bool parse_saved(char *line, struct file_meta *m)
{
	unsigned mode;
	unsigned long uid, gid;
	long long size, msec, csec;
	unsigned long long ino, dev;
	long mns, cns;
	char sha[72], link[2 * MAX_LINK + 2], kind[2], path[2 * MAX_PATH + 2];
	if (sscanf(line, "%o %lu %lu %lld %llu %llu %lld %ld %lld %ld %71s %513s %1s %2049s", &mode, &uid, &gid,
		   &size, &ino, &dev, &msec, &mns, &csec, &cns, sha, link, kind, path) != 14)
		return false;
	memset(m, 0, sizeof(*m));
	m->mode = (mode_t)mode;
	m->uid = (uid_t)uid;
	m->gid = (gid_t)gid;
	m->size = (off_t)size;
	m->ino = (ino_t)ino;
	m->dev = (dev_t)dev;
	m->mtime.tv_sec = (time_t)msec;
	m->mtime.tv_nsec = mns;
	m->ctime.tv_sec = (time_t)csec;
	m->ctime.tv_nsec = cns;
	if (strcmp(sha, "-") != 0) {
		char *raw = strlen(sha) == 64 ? get_hex(sha, 32) : NULL;
		if (!raw)
			return false;
		memcpy(m->sha256, raw, 32); /* no NUL inside: get_hex checked */
		free(raw);
		m->hashed = true;
	}
	m->path = get_hex(path, MAX_PATH);
	if (!m->path || m->path[0] != '/')
		goto bad;
	if (kind[0] == 'L' && !(m->link = get_hex(link, MAX_LINK)))
		goto bad;
	return true;
bad:
	free(m->path);
	m->path = NULL;
	return false;
}

static void load_baseline(struct agent_ctx *ctx, struct fim_state *s)
{
	if (*agent_root(ctx))
		return;
	char path[1200];
	baseline_path(ctx, path, sizeof(path));
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		return;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int lineno = 0;
	bool ok = true, matched = false;
	struct table t = { 0 };
	while (ok && (n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] == '\n')
			line[n - 1] = '\0';
		lineno++;
		if (lineno == 1) {
			ok = strcmp(line, baseline_magic) == 0;
			continue;
		}
		if (lineno == 2) {
			matched = strcmp(line, s->settings) == 0;
			if (!matched)
				break; /* taken with other settings: start afresh, quietly */
			continue;
		}
		if (t.n >= (size_t)config_int(agent_config(ctx), "FileIntegrity_MaxFiles")) {
			ok = false;
			break;
		}
		if (t.n == t.cap) {
			t.cap = t.cap ? t.cap * 2 : 256;
			t.f = realloc(t.f, t.cap * sizeof(*t.f));
			if (!t.f)
				abort();
		}
		ok = parse_saved(line, &t.f[t.n]);
		if (ok)
			t.n++;
	}
	free(line);
	fclose(f);
	if (!ok) {
		agent_warn(ctx, "%s:%d: damaged file integrity baseline; taking a new one", path, lineno);
		table_free(&t);
		return;
	}
	if (!matched) {
		table_free(&t);
		return;
	}
	qsort(t.f, t.n, sizeof(*t.f), cmp_meta);
	s->baseline = t;
	s->have_baseline = true;
}

static int collect(struct agent_ctx *ctx, void *state)
{
	struct fim_state *s = state;
	const struct agent_config *cfg = agent_config(ctx);
	const char *const *paths;
	size_t npaths = config_list(cfg, "FileIntegrity_Paths", &paths);
	s->max_files = (size_t)config_int(cfg, "FileIntegrity_MaxFiles");
	s->hash_max = config_int(cfg, "FileIntegrity_HashMaxBytes");
	s->full = false;

	struct table now = { 0 };
	for (size_t i = 0; i < npaths; i++)
		walk(ctx, s, &now, paths[i], 0);
	if (now.n)
		qsort(now.f, now.n, sizeof(*now.f), cmp_meta);
	/* Two configured paths may overlap (/etc and /etc/passwd): keep one. */
	size_t w = 0;
	for (size_t r = 0; r < now.n; r++) {
		if (w && strcmp(now.f[w - 1].path, now.f[r].path) == 0) {
			free(now.f[r].path);
			free(now.f[r].link);
			continue;
		}
		now.f[w++] = now.f[r];
	}
	now.n = w;
	if (s->full && !s->warned_full) {
		agent_warn(ctx, "FileIntegrity_MaxFiles (%zu) reached: files past it are not watched", s->max_files);
		s->warned_full = true;
	}

	bool changed = !s->have_baseline;
	if (s->have_baseline) {
		/* Both tables are sorted by path: one merge finds every change. */
		size_t i = 0, j = 0;
		while (i < s->baseline.n || j < now.n) {
			int c = i == s->baseline.n ? 1 : j == now.n ? -1 : strcmp(s->baseline.f[i].path, now.f[j].path);
			if (c < 0) {
				/* Seen before but not now: deleted, unless the scan
				 * stopped at FileIntegrity_MaxFiles before reaching it. */
				if (!s->full)
					report(ctx, "Deleted", &s->baseline.f[i], NULL);
				changed = true;
				i++;
			} else if (c > 0) {
				report(ctx, "Created", NULL, &now.f[j]);
				changed = true;
				j++;
			} else {
				const char *change = classify(&s->baseline.f[i], &now.f[j]);
				if (change)
					report(ctx, change, &s->baseline.f[i], &now.f[j]);
				/* a new ctime alone (touch, link count) is saved too,
				 * or every restart would hash the file again */
				changed = changed || change || !same_time(s->baseline.f[i].ctime, now.f[j].ctime);
				i++;
				j++;
			}
		}
	}
	table_free(&s->baseline);
	s->baseline = now;
	s->have_baseline = true;
	/* Written only when something changed: flash wears with every write. */
	if (changed)
		save_baseline(ctx, s);
	return 0;
}

/* The settings that shape a baseline, as one string. */
static char *settings_of(struct agent_ctx *ctx)
{
	const struct agent_config *cfg = agent_config(ctx);
	const char *const *paths;
	size_t n = config_list(cfg, "FileIntegrity_Paths", &paths);
	size_t len = 64;
	for (size_t i = 0; i < n; i++)
		len += strlen(paths[i]) + 1;
	char *out = malloc(len);
	if (!out)
		abort();
	size_t w = (size_t)snprintf(out, len, "%ld %ld", config_int(cfg, "FileIntegrity_MaxFiles"),
				    config_int(cfg, "FileIntegrity_HashMaxBytes"));
	for (size_t i = 0; i < n; i++)
		w += (size_t)snprintf(out + w, len - w, ",%s", paths[i]);
	return out;
}

static void configure(struct agent_ctx *ctx, void *state)
{
	struct fim_state *s = state;
	char *now = settings_of(ctx);
	if (s->settings && strcmp(s->settings, now) == 0) {
		free(now); /* another feature's setting changed: keep watching */
		return;
	}
	/* New paths or limits: the next pass is a new baseline, not a flood of
	 * Created/Deleted/Modified entries. */
	free(s->settings);
	s->settings = now;
	table_free(&s->baseline);
	s->have_baseline = false;
	s->warned_full = false;
}

static void *init(struct agent_ctx *ctx)
{
	struct fim_state *s = calloc(1, sizeof(*s));
	if (!s)
		abort();
	s->settings = settings_of(ctx);
	load_baseline(ctx, s);
	return s;
}

static void fini(void *state)
{
	struct fim_state *s = state;
	table_free(&s->baseline);
	free(s->settings);
	free(s);
}

const struct collector collector_file_integrity = {
	.name = "file_integrity",
	.event_name = "FileIntegrity",
	.priority = PRIORITY_LOW,
	.category = CATEGORY_AGGREGATED,
	.sample_ms = 300000,
	.sample_ms_key = "FileIntegrity_PollingInterval",
	.keys = keys,
	/* Read /etc/shadow and root-only directories after dropping root. */
	.caps = AGENT_CAP(CAP_DAC_READ_SEARCH),
	.init = init,
	.collect = collect,
	.configure = configure,
	.fini = fini,
};
