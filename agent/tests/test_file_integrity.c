//needs: collector file_integrity
/* The file_integrity collector's baseline across configuration changes: a
 * change to another feature's setting keeps it (a file changed meanwhile is
 * still reported), a change to FileIntegrity_* takes a new one. */
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

#include "core/core.h"

static int changes; /* FileIntegrity entries seen */
static char last_change[32];

static void capture(struct agent_ctx *ctx, void *state, const char *event, const cJSON *entry)
{
	(void)ctx;
	(void)state;
	if (strcmp(event, "FileIntegrity") != 0)
		return;
	changes++;
	snprintf(last_change, sizeof(last_change), "%s",
		 cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(entry, "Change")));
}

static const struct detector capture_detector = { .name = "capture", .on_entry = capture };

struct world {
	char root[64];
	char file[128];
	struct agent_ctx ctx;
	struct detector_slot slot;
	struct detector_slot *saved; /* the real detectors, restored for core_fini */
	size_t nsaved;
};

static void apply(struct agent_ctx *ctx, const char *json)
{
	cJSON *desired = cJSON_Parse(json);
	cJSON *bad = agent_apply_desired(ctx, desired, false);
	assert_int_equal(cJSON_GetArraySize(bad), 0);
	cJSON_Delete(bad);
	cJSON_Delete(desired);
}

static void pass(struct world *w)
{
	changes = 0;
	last_change[0] = '\0';
	core_collect_all(&w->ctx, true);
}

static void setup_world(struct world *w)
{
	memset(w, 0, sizeof(*w));
	snprintf(w->root, sizeof(w->root), "/tmp/fim-test-XXXXXX");
	assert_non_null(mkdtemp(w->root));
	char etc[96];
	snprintf(etc, sizeof(etc), "%s/etc", w->root);
	assert_int_equal(mkdir(etc, 0755), 0);
	snprintf(w->file, sizeof(w->file), "%s/etc/passwd", w->root);
	FILE *f = fopen(w->file, "w");
	assert_non_null(f);
	fputs("root:x:0:0::/root:/bin/sh\n", f);
	fclose(f);
	assert_int_equal(core_init(&w->ctx, config_new(), w->root), 0);
	w->slot.d = &capture_detector;
	w->saved = w->ctx.detectors;
	w->nsaved = w->ctx.ndetectors;
	w->ctx.detectors = &w->slot;
	w->ctx.ndetectors = 1;
	apply(&w->ctx, "{\"FileIntegrity_Paths\": \"/etc\"}");
}

static void teardown_world(struct world *w)
{
	w->ctx.detectors = w->saved;
	w->ctx.ndetectors = w->nsaved;
	core_fini(&w->ctx);
	char etc[96];
	snprintf(etc, sizeof(etc), "%s/etc", w->root);
	unlink(w->file);
	rmdir(etc);
	rmdir(w->root);
}

static void other_settings_keep_the_baseline(void **unused)
{
	(void)unused;
	struct world w;
	setup_world(&w);
	pass(&w);
	assert_int_equal(changes, 0); /* the baseline */
	assert_int_equal(chmod(w.file, 0600), 0);
	apply(&w.ctx, "{\"Heartbeat_Disabled\": true}");
	pass(&w);
	assert_int_equal(changes, 1);
	assert_string_equal(last_change, "PermissionsChanged");
	teardown_world(&w);
}

static void own_settings_take_a_new_baseline(void **unused)
{
	(void)unused;
	struct world w;
	setup_world(&w);
	pass(&w);
	assert_int_equal(chmod(w.file, 0600), 0);
	apply(&w.ctx, "{\"FileIntegrity_HashMaxBytes\": 0}");
	pass(&w);
	assert_int_equal(changes, 0);
	assert_int_equal(chmod(w.file, 0640), 0);
	pass(&w);
	assert_int_equal(changes, 1);
	teardown_world(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(other_settings_keep_the_baseline),
		cmocka_unit_test(own_settings_take_a_new_baseline),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
