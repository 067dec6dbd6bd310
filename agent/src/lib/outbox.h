/* The outbound queue of a transport that delivers with acknowledgements
 * (MQTT QoS 1): bounded in memory, optionally backed by the on-disk spool so
 * that nothing queued is lost across an outage or a restart. Messages stay
 * queued until acknowledged, dropped for age (`timeout_s`), or dropped
 * because the spool is full; the drops are counted. */
#ifndef AGENT_LIB_OUTBOX_H
#define AGENT_LIB_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>

struct outbox_msg {
	char id[37];
	long long created;        /* unix seconds */
	char *body;               /* NULL while it is only on disk */
	size_t len;
	unsigned long long seg;   /* spool segment, 0: not spooled */
	size_t offset;
	int mid;                  /* > 0: sent, waiting for its acknowledgement */
	struct outbox_msg *next;
};

struct outbox_seg {
	unsigned long long seq;
	long long bytes;
	size_t live;              /* queued messages still in it */
};

struct outbox {
	struct outbox_msg *head, *tail;
	size_t count;
	size_t mem_bytes;         /* bodies held in memory */
	size_t unspooled;         /* messages not yet on disk */
	size_t mem_max;
	long long spool_max;      /* 0: no spool */
	long timeout_s;           /* 0: never expire */
	char dir[1024];
	struct outbox_seg *segs;  /* ascending */
	size_t nsegs;
	long long spool_bytes;
	unsigned long long next_seq;
	/* Counters since the owner last read them (then reset them). */
	long dropped_timeout, dropped_full, torn, spool_errors;
};

/* dir: the spool directory (created when needed), or NULL/"" for none.
 * Loads what an earlier run left in the spool. */
void outbox_init(struct outbox *o, const char *dir, size_t mem_max, long long spool_max, long timeout_s);
void outbox_set_limits(struct outbox *o, size_t mem_max, long long spool_max, long timeout_s);
/* Queue a copy of body. Enforces the memory bound (spooling, else dropping
 * the oldest). */
void outbox_push(struct outbox *o, const char *id, const char *body, long long now);
/* Write every message not yet on disk as one segment. Returns 0 (also when
 * there is nothing to write or no spool), -1 on a write error. */
int outbox_spool(struct outbox *o);
/* Drop messages older than the timeout. */
void outbox_expire(struct outbox *o, long long now);
/* The created time of the oldest message that is not yet spooled, or -1. */
long long outbox_oldest_unspooled(const struct outbox *o);
/* The body of m, read back from the spool if needed (NULL: it was damaged
 * on disk; the message is then dropped by the caller with outbox_remove). */
const char *outbox_body(struct outbox *o, struct outbox_msg *m);
/* Remove the message with this packet id (acknowledged). Returns true if
 * one was found. */
bool outbox_ack(struct outbox *o, int mid);
void outbox_remove(struct outbox *o, struct outbox_msg *m);
/* Forget every packet id (the connection is gone: all will be resent). */
void outbox_unsend_all(struct outbox *o);
size_t outbox_inflight(const struct outbox *o);
/* Frees memory only: what is spooled stays on disk for the next run. */
void outbox_free(struct outbox *o);

#endif
