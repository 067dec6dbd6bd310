/* Dropping root: the agent keeps only the capabilities its enabled
 * collectors declare. Raw capset(2) rather than libcap, so the agent has no
 * extra dependency on the smallest images. */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/core.h"

static int capset_mask(unsigned long long mask)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	data[0].effective = data[0].permitted = (__u32)(mask & 0xffffffffULL);
	data[1].effective = data[1].permitted = (__u32)(mask >> 32);
	return (int)syscall(SYS_capset, &hdr, data);
}

int core_drop_privileges(struct agent_ctx *ctx)
{
	const char *user = config_string(ctx->config, "Agent_RunAsUser");
	if (!*user)
		return 0;
	if (geteuid() != 0) {
		agent_info(ctx, "Agent_RunAsUser=%s: not started as root, nothing to drop", user);
		return 0;
	}
	/* The account comes from the real /etc/passwd, never from --root. */
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		agent_log(ctx, "error", "Agent_RunAsUser: no user '%s' on this system", user);
		return -1;
	}
	unsigned long long caps = 0;
	for (size_t i = 0; i < ctx->ncollectors; i++)
		caps |= ctx->collectors[i].c->caps;
	/* The state directory (spool, agent id) must stay writable. */
	mkdir(ctx->state_dir, 0700);
	if (chown(ctx->state_dir, pw->pw_uid, pw->pw_gid) != 0 && errno != ENOENT)
		agent_warn(ctx, "chown %s: %s", ctx->state_dir, strerror(errno));
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 || setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 ||
	    setuid(pw->pw_uid) != 0) {
		agent_log(ctx, "error", "cannot switch to user '%s': %s", user, strerror(errno));
		return -1;
	}
	if (capset_mask(caps) != 0) {
		agent_log(ctx, "error", "capset: %s", strerror(errno));
		return -1;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		agent_warn(ctx, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	if (setuid(0) == 0) {
		agent_log(ctx, "error", "still able to become root after dropping privileges");
		return -1;
	}
	agent_info(ctx, "running as %s (uid %u) with capability mask 0x%llx", user, (unsigned)pw->pw_uid, caps);
	return 0;
}
