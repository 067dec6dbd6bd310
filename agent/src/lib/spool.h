/* The on-disk spool: batches of outbound messages in segment files under a
 * directory, so that queued messages survive a restart. A segment is written
 * once (temporary file, fsync, rename, fsync of the directory) and deleted
 * once every message in it has been delivered or dropped: no file is ever
 * rewritten in place, which keeps flash wear to one write per batch. Each
 * record carries its length and a CRC-32, so a torn or corrupt record is
 * detected and skipped on restart. */
#ifndef AGENT_LIB_SPOOL_H
#define AGENT_LIB_SPOOL_H

#include <stdbool.h>
#include <stddef.h>

struct spool_rec {
	long long created;   /* unix seconds */
	char id[37];
	const char *body;
	size_t len;
	size_t offset;       /* where the record starts in its segment */
};

/* Write the records as segment `seq` of dir (creating dir, mode 0700);
 * fills each record's offset. Returns the file size, or -1 with errno. */
long long spool_write(const char *dir, unsigned long long seq, struct spool_rec *recs, size_t n);

/* Call cb for every intact record of segment `seq` (body points into a
 * buffer valid during the call). Returns the number of records, or -1 if the
 * segment cannot be read; *torn is set when a damaged record ended the scan. */
long spool_scan(const char *dir, unsigned long long seq,
		void (*cb)(void *arg, const struct spool_rec *rec), void *arg, bool *torn, long long *size);

/* One record's body (malloc'd, NUL-terminated), checked against its CRC;
 * NULL if it cannot be read or is damaged. */
char *spool_read(const char *dir, unsigned long long seq, size_t offset, size_t *len);

/* The segment numbers present in dir, ascending (malloc'd; *n set). Stray
 * temporary files of an interrupted write are removed. */
unsigned long long *spool_list(const char *dir, size_t *n);

void spool_remove(const char *dir, unsigned long long seq);

/* CRC-32 (IEEE 802.3), as zlib computes it. */
unsigned long spool_crc32(unsigned long crc, const void *buf, size_t len);

#endif
