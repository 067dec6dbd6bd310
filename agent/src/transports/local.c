//feature: transport local ON
//summary: Local output: security messages as JSON lines to a file or standard output
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/agent.h"

static const struct config_key keys[] = {
	{ "Local_Path", CFG_STRING, "-", 0, 1024, NULL,
	  "file that receives one JSON security message per line; \"-\" is standard output", NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};

struct local {
	int fd;
	char path[1024];
};

static void reopen(struct agent_ctx *ctx, struct local *l)
{
	const char *path = config_string(agent_config(ctx), "Local_Path");
	if (l->fd >= 0 && strcmp(path, l->path) == 0)
		return;
	if (l->fd > STDOUT_FILENO)
		close(l->fd);
	snprintf(l->path, sizeof(l->path), "%s", path);
	if (strcmp(path, "-") == 0) {
		l->fd = STDOUT_FILENO;
		return;
	}
	l->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (l->fd < 0)
		agent_warn(ctx, "%s: %s; messages go nowhere until Local_Path is fixed", path, strerror(errno));
}

static void *init(struct agent_ctx *ctx)
{
	struct local *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->fd = -1;
	reopen(ctx, l);
	return l;
}

static int publish(struct agent_ctx *ctx, void *state, const char *json, const char *id)
{
	struct local *l = state;
	(void)id;
	if (l->fd < 0)
		return -1;
	size_t len = strlen(json);
	char *line = malloc(len + 1);
	if (!line)
		return -1;
	memcpy(line, json, len);
	line[len] = '\n';
	/* One write per message so concurrent readers see whole lines. */
	ssize_t n = write(l->fd, line, len + 1);
	free(line);
	if (n != (ssize_t)(len + 1)) {
		agent_warn(ctx, "%s: short write: %s", l->path, n < 0 ? strerror(errno) : "disk full?");
		return -1;
	}
	return 0;
}

static void configure(struct agent_ctx *ctx, void *state)
{
	reopen(ctx, state);
}

static void fini(void *state)
{
	struct local *l = state;
	if (l && l->fd > STDOUT_FILENO)
		close(l->fd);
	free(l);
}

const struct transport transport_local = {
	.name = "local",
	.keys = keys,
	.init = init,
	.publish = publish,
	.configure = configure,
	.fini = fini,
};
