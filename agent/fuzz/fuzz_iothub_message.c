//needs: transport iothub
/* One MQTT message from the hub as the iothub transport receives it: the
 * input is "TOPIC\nPAYLOAD" (a twin GET response, a desired-properties
 * patch, a direct method request, or any other topic). The transport's
 * file is compiled into this target so that its static message handler is
 * called exactly as libmosquitto calls it, on a transport initialised from
 * a real connection string and config file (it never connects: replies
 * are dropped as "not connected"). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The copy below is this target's own; the linked-in feature keeps its
 * name. */
#define transport_iothub fuzz_transport_iothub
#include "../src/transports/iothub.c"
#undef transport_iothub

#include "core/core.h"

static struct agent_ctx ctx;
static struct iothub *hub;
static cJSON *reset;

static void put(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0 || chmod(path, mode) != 0)
		abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	static char dir[] = "/tmp/defender-iot-fuzz-XXXXXX";
	char path[512], conf[2048];
	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof(path), "%s/connection_string.txt", dir);
	put(path, "HostName=localhost;DeviceId=dev1;ModuleId=DefenderIotMicroAgent;SharedAccessKey=QUJDREVGR0g=\n",
	    0600);
	snprintf(conf, sizeof(conf),
		 "{\"Agent_LogLevel\":\"error\",\"Agent_Transport\":\"iothub\",\"Agent_StateDirectory\":\"%s\","
		 "\"IothubModule_ConnectionStringFile\":\"%s\",\"IothubModule_SpoolMaxBytes\":0}",
		 dir, path);
	static char cfg_path[512];
	snprintf(cfg_path, sizeof(cfg_path), "%s/agent.json", dir);
	put(cfg_path, conf, 0600);
	char err[512];
	struct agent_config *cfg = config_load_file(cfg_path, err, sizeof(err));
	if (!cfg) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	core_init(&ctx, cfg, "/nonexistent");
	ctx.config_path = cfg_path;
	hub = init(&ctx);
	if (!hub)
		abort();
	ctx.transport = &fuzz_transport_iothub;
	ctx.transport_state = hub;
	reset = cJSON_CreateObject();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	if (!nl)
		return 0;
	size_t tlen = (size_t)(nl - data);
	char *topic = malloc(tlen + 1);
	memcpy(topic, data, tlen);
	topic[tlen] = 0;
	/* libmosquitto NUL-terminates payloads too (one byte past payloadlen) */
	size_t plen = size - tlen - 1;
	char *payload = malloc(plen + 1);
	memcpy(payload, nl + 1, plen);
	payload[plen] = 0;
	struct mosquitto_message msg = { .mid = 1, .topic = topic, .payload = payload, .payloadlen = (int)plen };
	/* every input starts from the same state: a GET in flight (rid 1),
	 * no desired version seen, the file's configuration */
	hub->get_rid = 1;
	hub->desired_version = -1;
	const struct agent_config *before = ctx.config;
	message(&ctx, hub, NULL, &msg);
	/* an applied document replaced the config: back to the file's (a
	 * reconfiguration costs milliseconds under the sanitizers) */
	if (ctx.config != before)
		cJSON_Delete(agent_apply_desired(&ctx, reset, true));
	free(topic);
	free(payload);
	return 0;
}
