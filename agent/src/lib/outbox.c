#include "lib/outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/spool.h"

#define CLOCK_SET 1577836800LL /* 2020-01-01T00:00:00Z */

static struct outbox_seg *seg_find(struct outbox *o, unsigned long long seq)
{
	for (size_t i = 0; i < o->nsegs; i++)
		if (o->segs[i].seq == seq)
			return &o->segs[i];
	return NULL;
}

static void seg_add(struct outbox *o, unsigned long long seq, long long bytes, size_t live)
{
	struct outbox_seg *s = realloc(o->segs, (o->nsegs + 1) * sizeof(*s));
	if (!s)
		abort();
	o->segs = s;
	o->segs[o->nsegs++] = (struct outbox_seg){ seq, bytes, live };
	o->spool_bytes += bytes;
	if (seq >= o->next_seq)
		o->next_seq = seq + 1;
}

/* One message of segment seq is gone: delete the file once it is empty. */
static void seg_release(struct outbox *o, unsigned long long seq)
{
	struct outbox_seg *s = seg_find(o, seq);
	if (!s || --s->live > 0)
		return;
	spool_remove(o->dir, seq);
	o->spool_bytes -= s->bytes;
	size_t i = (size_t)(s - o->segs);
	memmove(&o->segs[i], &o->segs[i + 1], (o->nsegs - i - 1) * sizeof(*s));
	o->nsegs--;
}

static void msg_free(struct outbox *o, struct outbox_msg *m)
{
	if (m->body) {
		o->mem_bytes -= m->len;
		free(m->body);
	}
	if (m->seg)
		seg_release(o, m->seg);
	else
		o->unspooled--;
	o->count--;
	free(m);
}

void outbox_remove(struct outbox *o, struct outbox_msg *m)
{
	struct outbox_msg **pp = &o->head, *prev = NULL;
	while (*pp && *pp != m) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (!*pp)
		return;
	*pp = m->next;
	if (o->tail == m)
		o->tail = prev;
	msg_free(o, m);
}

static void append(struct outbox *o, struct outbox_msg *m)
{
	if (o->tail)
		o->tail->next = m;
	else
		o->head = m;
	o->tail = m;
	o->count++;
}

static void load_record(void *arg, const struct spool_rec *r)
{
	void **a = arg;
	struct outbox *o = a[0];
	unsigned long long seq = *(unsigned long long *)a[1];
	struct outbox_msg *m = calloc(1, sizeof(*m));
	if (!m)
		abort();
	memcpy(m->id, r->id, sizeof(m->id));
	m->created = r->created;
	m->len = r->len;
	m->seg = seq;
	m->offset = r->offset;
	append(o, m);
}

void outbox_init(struct outbox *o, const char *dir, size_t mem_max, long long spool_max, long timeout_s)
{
	memset(o, 0, sizeof(*o));
	o->next_seq = 1;
	outbox_set_limits(o, mem_max, spool_max, timeout_s);
	if (!dir || !*dir)
		return;
	snprintf(o->dir, sizeof(o->dir), "%s", dir);
	size_t n;
	unsigned long long *seqs = spool_list(dir, &n);
	for (size_t i = 0; i < n; i++) {
		bool torn;
		long long size;
		size_t before = o->count;
		void *arg[2] = { o, &seqs[i] };
		long got = spool_scan(dir, seqs[i], load_record, arg, &torn, &size);
		if (torn)
			o->torn++;
		if (got <= 0) {
			spool_remove(dir, seqs[i]);
			if (seqs[i] >= o->next_seq)
				o->next_seq = seqs[i] + 1;
			continue;
		}
		seg_add(o, seqs[i], size, o->count - before);
	}
	free(seqs);
}

void outbox_set_limits(struct outbox *o, size_t mem_max, long long spool_max, long timeout_s)
{
	o->mem_max = mem_max;
	o->spool_max = spool_max;
	o->timeout_s = timeout_s;
}

static bool spooling(const struct outbox *o)
{
	return o->dir[0] && o->spool_max > 0;
}

/* Drop the oldest segment and every queued message in it. */
static void drop_oldest_segment(struct outbox *o)
{
	unsigned long long seq = o->segs[0].seq;
	struct outbox_msg *m = o->head, *next;
	for (; m; m = next) {
		next = m->next;
		if (m->seg == seq) {
			o->dropped_full++;
			outbox_remove(o, m); /* the last one deletes the segment */
		}
	}
}

int outbox_spool(struct outbox *o)
{
	if (!spooling(o) || o->unspooled == 0)
		return 0;
	struct spool_rec *recs = calloc(o->unspooled, sizeof(*recs));
	struct outbox_msg **which = calloc(o->unspooled, sizeof(*which));
	if (!recs || !which)
		abort();
	size_t n = 0;
	for (struct outbox_msg *m = o->head; m; m = m->next) {
		if (m->seg)
			continue;
		memcpy(recs[n].id, m->id, sizeof(recs[n].id));
		recs[n].created = m->created;
		recs[n].body = m->body;
		recs[n].len = m->len;
		which[n++] = m;
	}
	unsigned long long seq = o->next_seq;
	long long size = spool_write(o->dir, seq, recs, n);
	if (size < 0) {
		o->spool_errors++;
		free(recs);
		free(which);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		which[i]->seg = seq;
		which[i]->offset = recs[i].offset;
	}
	o->unspooled = 0;
	seg_add(o, seq, size, n);
	free(recs);
	free(which);
	while (o->spool_bytes > o->spool_max && o->nsegs > 1)
		drop_oldest_segment(o);
	return 0;
}

static void enforce_memory(struct outbox *o)
{
	if (o->mem_bytes <= o->mem_max)
		return;
	if (spooling(o) && outbox_spool(o) == 0) {
		/* Everything is on disk now: keep bodies in memory for the
		 * newest messages only. */
		for (struct outbox_msg *m = o->head; m && o->mem_bytes > o->mem_max; m = m->next) {
			if (m->body && m->seg && m->mid <= 0) {
				o->mem_bytes -= m->len;
				free(m->body);
				m->body = NULL;
			}
		}
	}
	while (o->mem_bytes > o->mem_max && o->head && o->head != o->tail) {
		o->dropped_full++;
		outbox_remove(o, o->head);
	}
}

void outbox_push(struct outbox *o, const char *id, const char *body, long long now)
{
	struct outbox_msg *m = calloc(1, sizeof(*m));
	if (!m)
		abort();
	snprintf(m->id, sizeof(m->id), "%s", id ? id : "");
	m->created = now;
	m->len = strlen(body);
	m->body = malloc(m->len + 1);
	if (!m->body)
		abort();
	memcpy(m->body, body, m->len + 1);
	o->mem_bytes += m->len;
	o->unspooled++;
	append(o, m);
	enforce_memory(o);
}

void outbox_expire(struct outbox *o, long long now)
{
	if (o->timeout_s <= 0)
		return;
	struct outbox_msg *m = o->head, *next;
	for (; m; m = next) {
		next = m->next;
		/* A device without a real-time clock starts in 1970 until NTP
		 * sets the time: its messages would all look decades old. Their
		 * age counts from the moment the clock was seen to be set. */
		if (m->created < CLOCK_SET && now >= CLOCK_SET)
			m->created = now;
		if (m->created + o->timeout_s <= now) {
			o->dropped_timeout++;
			outbox_remove(o, m);
		}
	}
}

long long outbox_oldest_unspooled(const struct outbox *o)
{
	for (const struct outbox_msg *m = o->head; m; m = m->next)
		if (!m->seg)
			return m->created;
	return -1;
}

const char *outbox_body(struct outbox *o, struct outbox_msg *m)
{
	if (m->body || !m->seg)
		return m->body;
	size_t len;
	m->body = spool_read(o->dir, m->seg, m->offset, &len);
	if (m->body) {
		m->len = len;
		o->mem_bytes += len;
	}
	return m->body;
}

bool outbox_ack(struct outbox *o, int mid)
{
	for (struct outbox_msg *m = o->head; m; m = m->next) {
		if (m->mid == mid) {
			outbox_remove(o, m);
			return true;
		}
	}
	return false;
}

void outbox_unsend_all(struct outbox *o)
{
	for (struct outbox_msg *m = o->head; m; m = m->next)
		m->mid = 0;
}

size_t outbox_inflight(const struct outbox *o)
{
	size_t n = 0;
	for (const struct outbox_msg *m = o->head; m; m = m->next)
		n += m->mid > 0;
	return n;
}

void outbox_free(struct outbox *o)
{
	struct outbox_msg *m = o->head, *next;
	for (; m; m = next) {
		next = m->next;
		free(m->body);
		free(m);
	}
	free(o->segs);
	memset(o, 0, sizeof(*o));
}
