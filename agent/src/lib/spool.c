#include "lib/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Record layout (little-endian):
 *   "DSP1" | u32 body length | u64 created | id[36] | body | u32 CRC-32 of
 *   everything from `created` through the body.
 * A hand-written format: the spool is private to the agent and must stay
 * readable with nothing but libc; a length and a CRC are all it needs. */
#define MAGIC "DSP1"
#define HDR 52u
#define MAX_BODY (16u << 20)

unsigned long spool_crc32(unsigned long crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	crc = ~crc & 0xffffffffUL;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320UL & (0UL - (crc & 1)));
	}
	return ~crc & 0xffffffffUL;
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void segment_path(const char *dir, unsigned long long seq, const char *suffix, char *out, size_t size)
{
	snprintf(out, size, "%s/seg-%016llx.spool%s", dir, seq, suffix);
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

long long spool_write(const char *dir, unsigned long long seq, struct spool_rec *recs, size_t n)
{
	char tmp[1200], final[1200];
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return -1;
	segment_path(dir, seq, ".tmp", tmp, sizeof(tmp));
	segment_path(dir, seq, "", final, sizeof(final));
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -1;
	long long off = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char h[HDR], c[4];
		memcpy(h, MAGIC, 4);
		put32(h + 4, (uint32_t)recs[i].len);
		uint64_t created = (uint64_t)recs[i].created;
		put32(h + 8, (uint32_t)created);
		put32(h + 12, (uint32_t)(created >> 32));
		memset(h + 16, 0, 36);
		memcpy(h + 16, recs[i].id, strnlen(recs[i].id, 36));
		unsigned long crc = spool_crc32(0, h + 8, HDR - 8);
		crc = spool_crc32(crc, recs[i].body, recs[i].len);
		put32(c, (uint32_t)crc);
		recs[i].offset = (size_t)off;
		if (write_all(fd, h, HDR) || write_all(fd, recs[i].body, recs[i].len) || write_all(fd, c, 4))
			goto fail;
		off += HDR + (long long)recs[i].len + 4;
	}
	if (fdatasync(fd) != 0)
		goto fail;
	close(fd);
	if (rename(tmp, final) != 0) {
		int e = errno;
		unlink(tmp);
		errno = e;
		return -1;
	}
	/* The rename itself must reach the disk before the memory copy goes. */
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return off;
fail: {
	int e = errno;
	close(fd);
	unlink(tmp);
	errno = e;
	return -1;
}
}

static unsigned char *read_whole(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)(MAX_BODY * 4)) {
		close(fd);
		return NULL;
	}
	unsigned char *buf = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (buf && got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (buf)
		*len = got;
	return buf;
}

/* Decodes the record at p (avail bytes); returns its total size or 0. */
static size_t decode(const unsigned char *p, size_t avail, struct spool_rec *r)
{
	if (avail < HDR + 4 || memcmp(p, MAGIC, 4) != 0)
		return 0;
	uint32_t len = get32(p + 4);
	if (len > MAX_BODY || avail - HDR - 4 < len)
		return 0;
	unsigned long crc = spool_crc32(0, p + 8, HDR - 8);
	crc = spool_crc32(crc, p + HDR, len);
	if (crc != get32(p + HDR + len))
		return 0;
	r->created = (long long)((uint64_t)get32(p + 8) | (uint64_t)get32(p + 12) << 32);
	memcpy(r->id, p + 16, 36);
	r->id[36] = 0;
	r->body = (const char *)p + HDR;
	r->len = len;
	return HDR + len + 4;
}

long spool_scan(const char *dir, unsigned long long seq, void (*cb)(void *arg, const struct spool_rec *rec),
		void *arg, bool *torn, long long *size)
{
	char path[1200];
	size_t len = 0;
	segment_path(dir, seq, "", path, sizeof(path));
	unsigned char *buf = read_whole(path, &len);
	*torn = false;
	if (size)
		*size = (long long)len;
	if (!buf)
		return -1;
	long n = 0;
	size_t off = 0;
	while (off < len) {
		struct spool_rec r;
		size_t used = decode(buf + off, len - off, &r);
		if (!used) {
			*torn = true;
			break;
		}
		r.offset = off;
		/* The body is not NUL-terminated in the file: give cb a copy. */
		char save = (char)buf[off + HDR + r.len];
		buf[off + HDR + r.len] = 0;
		cb(arg, &r);
		buf[off + HDR + r.len] = (unsigned char)save;
		off += used;
		n++;
	}
	free(buf);
	return n;
}

char *spool_read(const char *dir, unsigned long long seq, size_t offset, size_t *len)
{
	char path[1200];
	segment_path(dir, seq, "", path, sizeof(path));
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return NULL;
	unsigned char h[HDR];
	char *out = NULL;
	if (pread(fd, h, HDR, (off_t)offset) == (ssize_t)HDR && memcmp(h, MAGIC, 4) == 0 && get32(h + 4) <= MAX_BODY) {
		size_t blen = get32(h + 4);
		unsigned char *rec = malloc(HDR + blen + 4);
		if (rec && pread(fd, rec, HDR + blen + 4, (off_t)offset) == (ssize_t)(HDR + blen + 4)) {
			struct spool_rec r;
			if (decode(rec, HDR + blen + 4, &r)) {
				out = malloc(blen + 1);
				if (out) {
					memcpy(out, rec + HDR, blen);
					out[blen] = 0;
					*len = blen;
				}
			}
		}
		free(rec);
	}
	close(fd);
	return out;
}

static int cmp_seq(const void *a, const void *b)
{
	unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;
	return x < y ? -1 : x > y;
}

unsigned long long *spool_list(const char *dir, size_t *n)
{
	*n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return NULL;
	size_t cap = 16;
	unsigned long long *seqs = malloc(cap * sizeof(*seqs));
	struct dirent *de;
	while (seqs && (de = readdir(d)) != NULL) {
		unsigned long long seq;
		char rest[16] = "";
		if (sscanf(de->d_name, "seg-%16llx.spool%15s", &seq, rest) < 1)
			continue;
		if (strcmp(rest, ".tmp") == 0) {
			char p[1200];
			snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
			unlink(p); /* a write that never completed */
			continue;
		}
		if (rest[0])
			continue;
		if (*n == cap)
			seqs = realloc(seqs, (cap *= 2) * sizeof(*seqs));
		if (seqs)
			seqs[(*n)++] = seq;
	}
	closedir(d);
	if (seqs)
		qsort(seqs, *n, sizeof(*seqs), cmp_seq);
	return seqs;
}

void spool_remove(const char *dir, unsigned long long seq)
{
	char path[1200];
	segment_path(dir, seq, "", path, sizeof(path));
	unlink(path);
}
