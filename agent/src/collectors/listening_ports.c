//feature: collector listening_ports ON
//summary: Listening TCP and bound UDP sockets (IPv4 and IPv6) with the owning process
#include <stdlib.h>

#include <linux/capability.h>

#include "core/agent.h"
#include "lib/proc_pid.h"
#include "lib/procnet.h"

static int collect(struct agent_ctx *ctx, void *state)
{
	(void)state;
	static const enum procnet_table tables[] = { PROCNET_TCP, PROCNET_TCP6, PROCNET_UDP, PROCNET_UDP6 };
	struct procnet_list all = { 0 }, listening = { 0 };
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		procnet_read(ctx, tables[t], &all);
	/* Keep only the listeners so the owner search stops as soon as each
	 * of them is found. */
	for (size_t i = 0; i < all.len; i++)
		if (procnet_is_listening(&all.v[i]))
			all.v[listening.len++] = all.v[i];
	listening.v = all.v;
	struct procnet_owners owners;
	procnet_owners_find(ctx, &listening, &owners);
	for (size_t i = 0; i < listening.len; i++) {
		const struct procnet_socket *s = &listening.v[i];
		int pid = procnet_owner(&owners, s->inode);
		cJSON *o = cJSON_CreateObject();
		procnet_add_fields(o, s, false);
		pj_num(o, "ProcessId", pid);
		pj_str(o, "Executable", procnet_owner_exe(ctx, &owners, pid));
		pj_num(o, "Uid", s->uid);
		agent_report(ctx, o, NULL);
	}
	procnet_owners_free(&owners);
	procnet_list_free(&all);
	return 0;
}

const struct collector collector_listening_ports = {
	.name = "listening_ports",
	.event_name = "ListeningPorts",
	.priority = PRIORITY_MEDIUM,
	.category = CATEGORY_PERIODIC,
	/* fd links of other users' processes name a socket's owner */
	.caps = AGENT_CAP(CAP_SYS_PTRACE) | AGENT_CAP(CAP_DAC_READ_SEARCH),
	.collect = collect,
};
