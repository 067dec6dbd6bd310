/* One system file shaped by an attacker: the input is written to FUZZ_PATH
 * under a scratch root (with a plausible /proc/4242 beside it), then every
 * enabled collector and detector runs once over that root. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"

static char root[256];

static void mkdirs(const char *path)
{
	char tmp[512];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			mkdir(tmp, 0755);
			*p = '/';
		}
	}
	mkdir(tmp, 0755);
}

static void put(const char *rel, const void *data, size_t len)
{
	char path[512], dir[512];
	snprintf(path, sizeof(path), "%s%s", root, rel);
	snprintf(dir, sizeof(dir), "%s", path);
	*strrchr(dir, '/') = 0;
	mkdirs(dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		abort();
	if (len && write(fd, data, len) != (ssize_t)len)
		abort();
	close(fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(root, sizeof(root), "/tmp/defender-iot-fuzz-XXXXXX");
	if (!mkdtemp(root))
		abort();
	/* a process for the /proc/PID files to belong to */
	put("/proc/4242/stat", "4242 (sh) S 1 4242 4242 0 -1 0 0 0 0 0 5 3 0 0 20 0 1 0 100 0 0\n", 62);
	put("/proc/4242/cmdline", "sh\0-c\0true\0", 11);
	put("/proc/4242/status", "Name:\tsh\nUid:\t0\t0\t0\t0\n", 22);
	put("/proc/4242/comm", "sh\n", 3);
	put("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 30);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	put(FUZZ_PATH, data, size);
	struct agent_ctx ctx;
	memset(&ctx, 0, sizeof(ctx));
	struct agent_config *cfg = config_new();
	char err[256];
	cJSON *quiet = cJSON_Parse("{\"Agent_LogLevel\":\"error\",\"Agent_StateDirectory\":\"/tmp\"}");
	if (config_merge(cfg, quiet, err, sizeof(err), NULL) != 0)
		abort();
	cJSON_Delete(quiet);
	core_init(&ctx, cfg, root);
	ctx.stdout_sink = fopen("/dev/null", "w");
	core_collect_all(&ctx, true);
	fclose(ctx.stdout_sink);
	core_fini(&ctx);
	return 0;
}
