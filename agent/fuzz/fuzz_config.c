/* A config file or a twin desired patch: both are one JSON object of keys
 * validated by the same code (config_merge), applied through
 * agent_apply_desired as the transports do. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = 0;
	cJSON *doc = cJSON_Parse(text);
	free(text);
	if (!doc)
		return 0;
	struct agent_ctx ctx;
	memset(&ctx, 0, sizeof(ctx));
	struct agent_config *cfg = config_new();
	char err[256];
	cJSON *quiet = cJSON_Parse("{\"Agent_LogLevel\":\"error\"}");
	config_merge(cfg, quiet, err, sizeof(err), NULL);
	cJSON_Delete(quiet);
	core_init(&ctx, cfg, "/nonexistent");
	cJSON *invalid = agent_apply_desired(&ctx, doc, false);
	cJSON_Delete(invalid);
	invalid = agent_apply_desired(&ctx, doc, true);
	cJSON_Delete(invalid);
	cJSON *snap = agent_config_snapshot(&ctx);
	cJSON_Delete(snap);
	cJSON_Delete(doc);
	core_fini(&ctx);
	return 0;
}
