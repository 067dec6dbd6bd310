//feature: transport local ON
//summary: Local output: security messages as JSON lines to a file or standard output, or to a UNIX socket
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/agent.h"

#ifdef AGENT_NO_LOCAL_SOCKET
/* The key stays, so that setting it says why it cannot be. */
static const char *no_socket(const cJSON *v)
{
	return *v->valuestring ? "\"\": this build left the socket output out (-DAGENT_LOCAL_SOCKET=OFF)" : NULL;
}
#else
#define no_socket NULL
#endif

static const struct config_key keys[] = {
	{ "Local_Path", CFG_STRING, "-", 0, 1024, NULL,
	  CONFIG_HELP("file that receives one JSON security message per line; \"-\" is standard output"), NULL },
	{ "Local_Socket", CFG_STRING, "", 0, 107, NULL,
	  CONFIG_HELP("UNIX socket (datagram: one message per datagram; stream: one JSON line per message) that "
		      "receives the messages instead of Local_Path; empty: none"), no_socket },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};

struct local {
	int fd;
	char path[1024];
	int sock;
	int sock_type;
	char sock_path[108];
};

static void reopen(struct agent_ctx *ctx, struct local *l)
{
	const char *path = config_string(agent_config(ctx), "Local_Path");
	const char *sp = config_string(agent_config(ctx), "Local_Socket");
	if (strcmp(sp, l->sock_path) != 0) {
		if (l->sock >= 0)
			close(l->sock);
		l->sock = -1;
		snprintf(l->sock_path, sizeof(l->sock_path), "%s", sp);
	}
	if (*sp)
		return;
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

#ifndef AGENT_NO_LOCAL_SOCKET
/* Connect to the socket, datagram first, then stream. Called for each
 * message while the reader is away, so a restarted reader is found again. */
static int sock_connect(struct agent_ctx *ctx, struct local *l)
{
	struct sockaddr_un a;
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", l->sock_path);
	static const int types[] = { SOCK_DGRAM, SOCK_STREAM };
	int err = 0;
	for (size_t i = 0; i < 2; i++) {
		int s = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);
		if (s < 0)
			return -1;
		if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0) {
			l->sock = s;
			l->sock_type = types[i];
			return 0;
		}
		err = errno;
		close(s);
		if (err != EPROTOTYPE)
			break;
	}
	agent_warn(ctx, "Local_Socket %s: %s", l->sock_path, strerror(err));
	return -1;
}

static int sock_send(struct agent_ctx *ctx, struct local *l, const char *json, size_t len)
{
	if (l->sock < 0 && sock_connect(ctx, l) != 0)
		return -1;
	/* a datagram is the message, a stream gets JSON lines */
	struct iovec iov[2] = { { (void *)json, len }, { (void *)"\n", 1 } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = l->sock_type == SOCK_DGRAM ? 1 : 2 };
	ssize_t n = sendmsg(l->sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (l->sock_type != SOCK_DGRAM)
		len++;
	if (n == (ssize_t)len)
		return 0;
	agent_warn(ctx, "Local_Socket %s: %s", l->sock_path, n < 0 ? strerror(errno) : "short write");
	close(l->sock);
	l->sock = -1;
	return -1;
}
#endif

static void *init(struct agent_ctx *ctx)
{
	struct local *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->fd = -1;
	l->sock = -1;
	reopen(ctx, l);
	return l;
}

static int publish(struct agent_ctx *ctx, void *state, const char *json, const char *id)
{
	struct local *l = state;
	(void)id;
	size_t len = strlen(json);
#ifndef AGENT_NO_LOCAL_SOCKET
	if (l->sock_path[0])
		return sock_send(ctx, l, json, len);
#endif
	if (l->fd < 0)
		return -1;
	/* One write per message (O_APPEND) so concurrent readers see whole lines. */
	struct iovec iov[2] = { { (void *)json, len }, { (void *)"\n", 1 } };
	ssize_t n = writev(l->fd, iov, 2);
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
	if (l && l->sock >= 0)
		close(l->sock);
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
