/* defender-iot-agent: command line. */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"

#define DEFAULT_CONFIG "/etc/defender-iot/config.json"
#ifdef AGENT_NO_REPLAY
#define REPLAY_OPTS ""
#else
#define REPLAY_OPTS "p:s:"
#endif
#ifdef AGENT_NO_CONFIG_REFERENCE
#define REFERENCE_OPT ""
#else
#define REFERENCE_OPT "R"
#endif

/* What this build left out besides features (agent/CMakeLists.txt), as
 * --version says it: the options themselves, not the names of what they
 * remove (a build without --replay holds no "--replay"). */
static const char left_out[] = ""
#ifdef AGENT_NO_CONFIG_REFERENCE
	" -DAGENT_CONFIG_REFERENCE=OFF"
#endif
#ifdef AGENT_NO_REPLAY
	" -DAGENT_REPLAY=OFF"
#endif
#ifdef AGENT_NO_RUN_AS_USER
	" -DAGENT_RUN_AS_USER=OFF"
#endif
#ifdef AGENT_NO_MASK_ADDRESSES
	" -DAGENT_MASK_ADDRESSES=OFF"
#endif
#ifdef AGENT_NO_LOCAL_SOCKET
	" -DAGENT_LOCAL_SOCKET=OFF"
#endif
	;

static void usage(FILE *out)
{
	/* fwrite: fprintf of a constant text becomes fputs, one import more */
	static const char text[] =
		"usage: defender-iot-agent [options]\n"
		"  --config FILE        runtime configuration (JSON; default " DEFAULT_CONFIG " if present)\n"
		"  --root DIR           read /proc, /sys, /etc and /var under DIR (recorded snapshots)\n"
		"  --once               run every enabled collector once, print the message, exit\n"
#ifndef AGENT_NO_REPLAY
		"  --replay DIR         replay the snapshot trees DIR/000, DIR/001, ... one cycle each\n"
		"  --step SECONDS       virtual time between replay steps (default 30)\n"
#endif
		"  --list-features      print the compiled-in collectors, detectors and transports\n"
		"  --check-config       validate the configuration and exit\n"
#ifndef AGENT_NO_CONFIG_REFERENCE
		"  --config-reference   print every configuration key as a Markdown table\n"
#endif
		"  --version            print the version (and the capabilities left out of the build)\n";
	fwrite(text, 1, sizeof(text) - 1, out);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "root", required_argument, NULL, 'r' },
		{ "once", no_argument, NULL, 'o' },
#ifndef AGENT_NO_REPLAY
		{ "replay", required_argument, NULL, 'p' },
		{ "step", required_argument, NULL, 's' },
#endif
		{ "list-features", no_argument, NULL, 'l' },
		{ "check-config", no_argument, NULL, 'k' },
#ifndef AGENT_NO_CONFIG_REFERENCE
		{ "config-reference", no_argument, NULL, 'R' },
#endif
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = NULL, *root = "", *replay = NULL;
	bool once = false, check = false;
	int c;
#ifndef AGENT_NO_REPLAY
	int step = 30;
#endif
	while ((c = getopt_long(argc, argv, "c:r:o" REPLAY_OPTS "lk" REFERENCE_OPT "Vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 'r':
			root = optarg;
			break;
		case 'o':
			once = true;
			break;
#ifndef AGENT_NO_REPLAY
		case 'p':
			replay = optarg;
			break;
		case 's': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 86400) {
				fprintf(stderr, "defender-iot-agent: --step: expected seconds from 1 to 86400, got '%s'\n",
					optarg);
				return 2;
			}
			step = (int)v;
			break;
		}
#endif
		case 'l':
			for (const struct collector *const *x = agent_collectors; *x; x++)
				fprintf(stdout, "collector %s\n", (*x)->name);
			for (const struct detector *const *x = agent_detectors; *x; x++)
				fprintf(stdout, "detector %s\n", (*x)->name);
			for (const struct transport *const *x = agent_transports; *x; x++)
				fprintf(stdout, "transport %s\n", (*x)->name);
			return 0;
#ifndef AGENT_NO_CONFIG_REFERENCE
		case 'R':
			config_print_reference(stdout);
			return 0;
#endif
		case 'k':
			check = true;
			break;
		case 'V':
			fprintf(stdout, "defender-iot-agent %s\n", AGENT_VERSION);
			if (*left_out)
				fprintf(stdout, "left out:%s\n", left_out);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "defender-iot-agent: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	char err[1024];
	struct agent_config *cfg;
	if (!config_path) {
		/* whether it exists, as access(F_OK) would say: O_PATH needs no
		 * read permission (and is one imported function less) */
		int fd = open(DEFAULT_CONFIG, O_PATH | O_CLOEXEC);
		if (fd >= 0) {
			close(fd);
			config_path = DEFAULT_CONFIG;
		}
	}
	if (config_path) {
		cfg = config_load_file(config_path, err, sizeof(err));
		if (!cfg) {
			fprintf(stderr, "defender-iot-agent: %s\n", err);
			return 2;
		}
	} else {
		cfg = config_new();
	}
	if (check) {
		fprintf(stdout, "%s: OK\n", config_path ? config_path : "built-in defaults");
		config_free(cfg);
		return 0;
	}

	struct agent_ctx ctx;
	memset(&ctx, 0, sizeof(ctx));
	if (replay) {
		ctx.virtual_clock = true;
		ctx.virtual_now = 1767225600; /* 2026-01-01T00:00:00Z: replays are reproducible */
		ctx.virtual_ms = 1000000;
	}
	if (core_init(&ctx, cfg, root) != 0)
		return 1;
	if (config_path)
		ctx.config_path = strdup(config_path);
	int rc;
#ifndef AGENT_NO_REPLAY
	if (replay)
		rc = core_run_replay(&ctx, replay, step);
	else
#endif
	if (once) {
		ctx.stdout_sink = stdout;
		core_once(&ctx);
		rc = 0;
	} else {
		rc = core_run(&ctx);
	}
	core_fini(&ctx);
	return rc;
}
