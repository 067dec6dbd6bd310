//feature: collector statistics ON
//summary: Statistics: the agent's own counters (messages built and dropped, cache drops, alerts, collection errors)
#include "core/agent.h"

/* One entry per counter group, as the retired agent's Statistics event:
 * {Name, Events: [{Description, HitCount}]}. The counts are totals since the
 * agent started, so a lost message does not lose a count. */
static int collect(struct agent_ctx *ctx, void *state)
{
	(void)state;
	const cJSON *counters = agent_counters(ctx);
	const cJSON *group;
	cJSON_ArrayForEach(group, counters) {
		if (!cJSON_IsObject(group) || !group->string)
			continue;
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "Name", group->string);
		cJSON *list = cJSON_AddArrayToObject(e, "Events");
		const cJSON *c;
		cJSON_ArrayForEach(c, group) {
			if (!cJSON_IsNumber(c) || !c->string)
				continue;
			cJSON *ev = cJSON_CreateObject();
			cJSON_AddStringToObject(ev, "Description", c->string);
			cJSON_AddNumberToObject(ev, "HitCount", c->valuedouble);
			cJSON_AddItemToArray(list, ev);
		}
		agent_report(ctx, e, NULL);
	}
	return 0;
}

const struct collector collector_statistics = {
	.name = "statistics",
	.event_name = "Statistics",
	.priority = PRIORITY_LOW,
	.category = CATEGORY_PERIODIC,
	.collect = collect,
};
