/* Reads of the system, always under --root. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/agent.h"
#include "core/core.h"

const char *agent_root(const struct agent_ctx *ctx)
{
	return ctx->root;
}

char *agent_path(const struct agent_ctx *ctx, const char *path, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s%s", ctx->root, path);
	return n < 0 || (size_t)n >= size ? NULL : buf;
}

int agent_open(const struct agent_ctx *ctx, const char *path, int flags)
{
	char buf[4096];
	if (!agent_path(ctx, path, buf, sizeof(buf))) {
		errno = ENAMETOOLONG;
		return -1;
	}
	/* O_NOFOLLOW guards the last component against a planted link; /proc's
	 * own links (exe, cwd) are read with readlink, never opened. O_NONBLOCK
	 * keeps a FIFO planted in place of a log from blocking the agent. */
	int fd = open(buf, flags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd >= 0 && !(flags & O_NONBLOCK)) {
		int fl = fcntl(fd, F_GETFL);
		if (fl >= 0)
			fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	}
	return fd;
}

FILE *agent_fopen(const struct agent_ctx *ctx, const char *path)
{
	int fd = agent_open(ctx, path, O_RDONLY);
	if (fd < 0)
		return NULL;
	FILE *f = fdopen(fd, "r");
	if (!f)
		close(fd);
	return f;
}

char *agent_read_file(const struct agent_ctx *ctx, const char *path, size_t max, size_t *len)
{
	int fd = agent_open(ctx, path, O_RDONLY);
	if (fd < 0)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) != 0 || S_ISFIFO(st.st_mode) || S_ISDIR(st.st_mode)) {
		close(fd);
		return NULL;
	}
	/* /proc files report size 0: read until EOF, growing the buffer. */
	size_t cap = st.st_size > 0 && (size_t)st.st_size < max ? (size_t)st.st_size + 1 : 4096;
	if (cap > max + 1)
		cap = max + 1;
	size_t n = 0;
	char *buf = malloc(cap);
	if (!buf) {
		close(fd);
		return NULL;
	}
	for (;;) {
		if (n + 1 >= cap) {
			if (cap >= max + 1)
				break;
			size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
			char *nb = realloc(buf, ncap);
			if (!nb)
				break;
			buf = nb;
			cap = ncap;
		}
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = 0;
	if (len)
		*len = n;
	return buf;
}
