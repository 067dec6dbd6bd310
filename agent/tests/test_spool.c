/* The outbound queue and its on-disk spool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/outbox.h"
#include "lib/spool.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/spool-test-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	size_t n;
	unsigned long long *seqs = spool_list(dir, &n);
	for (size_t i = 0; i < n; i++)
		spool_remove(dir, seqs[i]);
	free(seqs);
	rmdir(dir);
	return 0;
}

static void push_n(struct outbox *o, int from, int to, long long now)
{
	for (int i = from; i < to; i++) {
		char id[37], body[64];
		snprintf(id, sizeof(id), "id-%d", i);
		snprintf(body, sizeof(body), "{\"n\":%d}", i);
		outbox_push(o, id, body, now);
	}
}

static void ids_in_order(struct outbox *o, int from, int to)
{
	int i = from;
	for (struct outbox_msg *m = o->head; m; m = m->next, i++) {
		char id[37], body[64];
		snprintf(id, sizeof(id), "id-%d", i);
		snprintf(body, sizeof(body), "{\"n\":%d}", i);
		assert_string_equal(m->id, id);
		assert_string_equal(outbox_body(o, m), body);
	}
	assert_int_equal(i, to);
}

static void crc_matches_zlib(void **state)
{
	(void)state;
	/* zlib.crc32(b"123456789") == 0xcbf43926, the standard check value */
	assert_int_equal(spool_crc32(0, "123456789", 9), 0xcbf43926UL);
}

static void survives_restart(void **state)
{
	(void)state;
	struct outbox o;
	outbox_init(&o, dir, 1 << 20, 1 << 20, 3600);
	push_n(&o, 0, 5, 1000);
	assert_int_equal(outbox_spool(&o), 0);
	push_n(&o, 5, 8, 1000);
	assert_int_equal(outbox_spool(&o), 0);
	assert_int_equal(o.nsegs, 2);
	outbox_free(&o);

	outbox_init(&o, dir, 1 << 20, 1 << 20, 3600);
	assert_int_equal(o.count, 8);
	assert_int_equal(o.torn, 0);
	ids_in_order(&o, 0, 8);
	/* acknowledging every message of a segment deletes its file */
	int mid = 1;
	for (struct outbox_msg *m = o.head; m; m = m->next)
		m->mid = mid++;
	for (int i = 1; i <= 5; i++)
		assert_true(outbox_ack(&o, i));
	assert_int_equal(o.nsegs, 1);
	size_t n;
	unsigned long long *seqs = spool_list(dir, &n);
	assert_int_equal(n, 1);
	free(seqs);
	assert_false(outbox_ack(&o, 99));
	outbox_free(&o);
}

static void torn_write_is_skipped(void **state)
{
	(void)state;
	struct outbox o;
	outbox_init(&o, dir, 1 << 20, 1 << 20, 3600);
	push_n(&o, 0, 4, 1000);
	assert_int_equal(outbox_spool(&o), 0);
	unsigned long long seq = o.segs[0].seq;
	outbox_free(&o);

	/* Cut the last record in half, as a power loss during a write on a
	 * file system without atomic rename would. */
	char path[256];
	snprintf(path, sizeof(path), "%s/seg-%016llx.spool", dir, seq);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(truncate(path, st.st_size - 10), 0);
	/* and leave the temporary file of an interrupted write */
	char tmp[300];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	fputs("garbage", f);
	fclose(f);

	outbox_init(&o, dir, 1 << 20, 1 << 20, 3600);
	assert_int_equal(o.torn, 1);
	assert_int_equal(o.count, 3);
	ids_in_order(&o, 0, 3);
	assert_int_not_equal(access(tmp, F_OK), 0);
	outbox_free(&o);

	/* a flipped byte inside a body fails its CRC */
	f = fopen(path, "r+");
	fseek(f, 60, SEEK_SET);
	fputc('X', f);
	fclose(f);
	outbox_init(&o, dir, 1 << 20, 1 << 20, 3600);
	assert_int_equal(o.torn, 1);
	assert_int_equal(o.count, 0);
	outbox_free(&o);
}

static void memory_bound_without_spool_drops_oldest(void **state)
{
	(void)state;
	struct outbox o;
	outbox_init(&o, NULL, 40, 0, 3600); /* room for 5 bodies of 8 bytes */
	push_n(&o, 0, 9, 1000);
	assert_int_equal(o.count, 5);
	assert_int_equal(o.dropped_full, 4);
	ids_in_order(&o, 4, 9);
	assert_true(o.mem_bytes <= 40);
	outbox_free(&o);
}

static void memory_bound_with_spool_keeps_all(void **state)
{
	(void)state;
	struct outbox o;
	outbox_init(&o, dir, 40, 1 << 20, 3600);
	push_n(&o, 0, 20, 1000);
	assert_int_equal(o.count, 20);
	assert_int_equal(o.dropped_full, 0);
	assert_true(o.mem_bytes <= 48);
	ids_in_order(&o, 0, 20); /* bodies come back from disk */
	outbox_free(&o);
}

static void spool_bound_drops_oldest_segment(void **state)
{
	(void)state;
	struct outbox o;
	outbox_init(&o, dir, 1 << 20, 200, 3600);
	push_n(&o, 0, 2, 1000); /* 2 records of 64 bytes: 128 bytes */
	assert_int_equal(outbox_spool(&o), 0);
	push_n(&o, 2, 4, 1000);
	assert_int_equal(outbox_spool(&o), 0);
	assert_int_equal(o.nsegs, 1);
	assert_int_equal(o.dropped_full, 2);
	ids_in_order(&o, 2, 4);
	outbox_free(&o);
}

static void old_messages_expire(void **state)
{
	(void)state;
	struct outbox o;
	const long long t = 1767225600; /* 2026 */
	outbox_init(&o, dir, 1 << 20, 1 << 20, 60);
	push_n(&o, 0, 3, t);
	assert_int_equal(outbox_spool(&o), 0);
	push_n(&o, 3, 5, t + 30);
	outbox_expire(&o, t + 59);
	assert_int_equal(o.count, 5);
	outbox_expire(&o, t + 60);
	assert_int_equal(o.count, 2);
	assert_int_equal(o.dropped_timeout, 3);
	assert_int_equal(o.nsegs, 0); /* the expired segment's file is gone */
	ids_in_order(&o, 3, 5);
	outbox_free(&o);
}

static void messages_from_before_the_clock_was_set_are_kept(void **state)
{
	(void)state;
	struct outbox o;
	outbox_init(&o, NULL, 1 << 20, 0, 60);
	push_n(&o, 0, 2, 100); /* 1970: no RTC, no NTP yet */
	outbox_expire(&o, 1767225600);
	assert_int_equal(o.count, 2);
	outbox_expire(&o, 1767225600 + 60);
	assert_int_equal(o.count, 0);
	outbox_free(&o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(crc_matches_zlib),
		cmocka_unit_test_setup_teardown(survives_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(torn_write_is_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(memory_bound_without_spool_drops_oldest, setup, teardown),
		cmocka_unit_test_setup_teardown(memory_bound_with_spool_keeps_all, setup, teardown),
		cmocka_unit_test_setup_teardown(spool_bound_drops_oldest_segment, setup, teardown),
		cmocka_unit_test_setup_teardown(old_messages_expire, setup, teardown),
		cmocka_unit_test(messages_from_before_the_clock_was_set_are_kept),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
