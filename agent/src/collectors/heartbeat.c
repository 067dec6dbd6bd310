//feature: collector heartbeat ON
//summary: Heartbeat: an empty periodic event that says the agent is alive
#include "core/agent.h"

static int collect(struct agent_ctx *ctx, void *state)
{
	(void)state;
	char ts[21];
	agent_format_utc(agent_now(ctx), ts);
	cJSON *e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "TimestampUTC", ts);
	agent_report(ctx, e, NULL);
	return 0;
}

const struct collector collector_heartbeat = {
	.name = "heartbeat",
	.event_name = "Heartbeat",
	.priority = PRIORITY_LOW,
	.category = CATEGORY_PERIODIC,
	.collect = collect,
};
