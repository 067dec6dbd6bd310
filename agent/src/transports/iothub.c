//feature: transport iothub ON
//summary: Azure IoT Hub: MQTT over TLS as the module identity (SAS token or X.509), module twin configuration, QoS 1 with an on-disk spool
//libs: libmosquitto libssl libcrypto
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mosquitto.h>

#include "core/agent.h"
#include "lib/connstr.h"
#include "lib/mqtt_link.h"
#include "lib/sas.h"

#define DEFAULT_CONNSTR "/etc/defender-iot/connection_string.txt"
/* Where the retired Defender micro agent kept it: devices migrate as is. */
#define RETIRED_CONNSTR "/etc/defender_iot_micro_agent/connection_string.txt"
#define API_VERSION "2021-04-12"
#define REPORT_CONFIG_MAX 16384

static const char *check_address(const cJSON *v);

static const struct config_key keys[] = {
	{ "IothubModule_ConnectionStringFile", CFG_STRING, DEFAULT_CONNSTR, 0, 1024, NULL,
	  "file holding the module's connection string (mode 600); when the default is absent the retired "
	  "agent's " RETIRED_CONNSTR " is read", NULL },
	{ "IothubModule_CaFile", CFG_STRING, "/etc/ssl/certs/ca-certificates.crt", 0, 1024, NULL,
	  "CA bundle that must have signed the hub's server certificate (verification is always on); a "
	  "hashed directory such as /etc/ssl/certs costs less memory", NULL },
	{ "IothubModule_CertificateFile", CFG_STRING, "", 0, 1024, NULL,
	  "X.509 client certificate (PEM) for x509=true; empty: certificate_public.pem beside the connection "
	  "string", NULL },
	{ "IothubModule_PrivateKeyFile", CFG_STRING, "", 0, 1024, NULL,
	  "its private key (PEM, mode 600); empty: certificate_private.pem beside the connection string", NULL },
	{ "IothubModule_ConnectAddress", CFG_STRING, "", 0, 300, NULL,
	  "\"host:port\" to connect to instead of HostName:8883; the TLS server name stays HostName", check_address },
	{ "IothubModule_SasTokenLifetime", CFG_INT, "3600", 60, 31536000, NULL,
	  "seconds a SAS token is valid; the agent reconnects with a new one at 80% of it", NULL },
	MQTT_LINK_KEYS("IothubModule_"),
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};

static const char *check_address(const cJSON *v)
{
	const char *s = cJSON_GetStringValue(v);
	if (!s || !*s)
		return NULL;
	const char *colon = strrchr(s, ':');
	char *end;
	long port = colon ? strtol(colon + 1, &end, 10) : 0;
	if (!colon || colon == s || !colon[1] || *end || port < 1 || port > 65535)
		return "\"host:port\", e.g. \"10.0.2.100:8883\"";
	return NULL;
}

struct iothub {
	struct mqtt_link *link; /* first: the mqtt_link_tp_* callbacks find it here */
	struct agent_ctx *ctx;
	struct connstr cs;
	char cs_path[1024];
	unsigned rid;
	unsigned get_rid;
	long long desired_version;   /* of the last full desired document */
};

static void resolve_connstr_path(struct agent_ctx *ctx, char *out, size_t size, bool at_start)
{
	const char *path = config_string(agent_config(ctx), "IothubModule_ConnectionStringFile");
	if (strcmp(path, DEFAULT_CONNSTR) == 0 && access(path, F_OK) != 0 && access(RETIRED_CONNSTR, F_OK) == 0) {
		if (at_start)
			agent_info(ctx, "%s is absent: using the retired agent's %s", DEFAULT_CONNSTR, RETIRED_CONNSTR);
		path = RETIRED_CONNSTR;
	}
	snprintf(out, size, "%s", path);
}

static void beside(const char *file, const char *name, char *out, size_t size)
{
	const char *slash = strrchr(file, '/');
	if (slash)
		snprintf(out, size, "%.*s/%s", (int)(slash - file), file, name);
	else
		snprintf(out, size, "%s", name);
}

static void params(struct iothub *h, struct mqtt_link_params *p)
{
	const struct agent_config *cfg = agent_config(h->ctx);
	memset(p, 0, sizeof(*p));
	const char *server = h->cs.gateway[0] ? h->cs.gateway : h->cs.host;
	const char *addr = config_string(cfg, "IothubModule_ConnectAddress");
	if (*addr) {
		const char *colon = strrchr(addr, ':');
		snprintf(p->host, sizeof(p->host), "%.*s", (int)(colon - addr), addr);
		p->port = atoi(colon + 1);
	} else {
		snprintf(p->host, sizeof(p->host), "%s", server);
		p->port = 8883;
	}
	p->tls = true;
	snprintf(p->tls_name, sizeof(p->tls_name), "%s", server);
	snprintf(p->ca_file, sizeof(p->ca_file), "%s", config_string(cfg, "IothubModule_CaFile"));
	if (h->cs.x509) {
		const char *cert = config_string(cfg, "IothubModule_CertificateFile");
		const char *key = config_string(cfg, "IothubModule_PrivateKeyFile");
		if (*cert)
			snprintf(p->cert_file, sizeof(p->cert_file), "%s", cert);
		else
			beside(h->cs_path, "certificate_public.pem", p->cert_file, sizeof(p->cert_file));
		if (*key)
			snprintf(p->key_file, sizeof(p->key_file), "%s", key);
		else
			beside(h->cs_path, "certificate_private.pem", p->key_file, sizeof(p->key_file));
	}
	if (h->cs.module[0])
		snprintf(p->client_id, sizeof(p->client_id), "%s/%s", h->cs.device, h->cs.module);
	else
		snprintf(p->client_id, sizeof(p->client_id), "%s", h->cs.device);
	p->clean_session = false;
	/* IoT Hub's limit for a device-to-cloud message, property bag included. */
	p->max_payload = 256 * 1024 - 1024;
	if (!h->cs.x509)
		p->session_max_ms = config_int(cfg, "IothubModule_SasTokenLifetime") * 800LL;
}

static int prepare(struct agent_ctx *ctx, void *arg, struct mosquitto *m)
{
	struct iothub *h = arg;
	char user[800], resource[600], token[1200];
	if (h->cs.module[0]) {
		snprintf(user, sizeof(user), "%s/%s/%s/?api-version=" API_VERSION, h->cs.host, h->cs.device, h->cs.module);
		snprintf(resource, sizeof(resource), "%s/devices/%s/modules/%s", h->cs.host, h->cs.device, h->cs.module);
	} else {
		snprintf(user, sizeof(user), "%s/%s/?api-version=" API_VERSION, h->cs.host, h->cs.device);
		snprintf(resource, sizeof(resource), "%s/devices/%s", h->cs.host, h->cs.device);
	}
	if (h->cs.x509)
		return mosquitto_username_pw_set(m, user, NULL) == MOSQ_ERR_SUCCESS ? 0 : -1;
	time_t expiry = agent_now(ctx) + config_int(agent_config(ctx), "IothubModule_SasTokenLifetime");
	if (sas_token(h->cs.key, resource, expiry, token, sizeof(token)) != 0) {
		agent_log(ctx, "error", "%s: cannot compute a SAS token from SharedAccessKey", h->cs_path);
		return -1;
	}
	int rc = mosquitto_username_pw_set(m, user, token);
	explicit_bzero(token, sizeof(token));
	return rc == MOSQ_ERR_SUCCESS ? 0 : -1;
}

static void topic(void *arg, const char *id, char *out, size_t size)
{
	struct iothub *h = arg;
	/* The property bag marks a security message, as the retired agent's
	 * SDK did: interface id, content type and encoding, message id. */
	if (h->cs.module[0])
		snprintf(out, size, "devices/%s/modules/%s/messages/events/", h->cs.device, h->cs.module);
	else
		snprintf(out, size, "devices/%s/messages/events/", h->cs.device);
	size_t n = strlen(out);
	snprintf(out + n, size - n, "$.ifid=urn%%3Aazureiot%%3ASecurity%%3ASecurityAgent%%3A1"
		 "&$.ct=application%%2Fjson&$.ce=utf-8&$.mid=%s", id);
}

static void send_twin(struct iothub *h, const char *what, const char *payload, unsigned *rid_out)
{
	char t[128];
	unsigned rid = ++h->rid;
	snprintf(t, sizeof(t), "$iothub/twin/%s/?$rid=%u", what, rid);
	if (rid_out)
		*rid_out = rid;
	if (!mqtt_link_send_raw(h->link, t, payload))
		agent_debug(h->ctx, "twin %s not sent: not connected", what);
}

static void connected(struct agent_ctx *ctx, void *arg, struct mosquitto *m)
{
	struct iothub *h = arg;
	(void)ctx;
	static const char *const subs[] = { "$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#",
					    "$iothub/methods/POST/#" };
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		mosquitto_subscribe(m, NULL, subs[i], 0);
	send_twin(h, "GET", "", &h->get_rid);
}

/* Apply desired properties and report the outcome in the twin. */
static void apply(struct iothub *h, const cJSON *desired, bool replace)
{
	cJSON *invalid = agent_apply_desired(h->ctx, desired, replace);
	bool ok = cJSON_GetArraySize(invalid) == 0;
	agent_info(h->ctx, "twin: %s desired properties %s", replace ? "full" : "patch of",
		   ok ? "applied" : "refused; keeping the last good configuration");
	agent_count(h->ctx, "twin", ok ? "applied" : "refused", 1);
	cJSON *r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "latest_state", ok ? "success" : "failed");
	if (ok) {
		cJSON_AddNullToObject(r, "latest_invalid_fields");
		cJSON_Delete(invalid);
	} else {
		cJSON_AddItemToObject(r, "latest_invalid_fields", invalid);
	}
	cJSON_AddStringToObject(r, "agent_version", AGENT_VERSION);
	cJSON *cfg = agent_config_snapshot(h->ctx);
	/* IoT Hub refuses a whole reported patch whose nested keys hold '.',
	 * '$' or spaces, which rule and allowlist objects may: objects go as
	 * JSON text. */
	for (cJSON *it = cfg->child, *next; it; it = next) {
		next = it->next;
		if (cJSON_IsObject(it)) {
			char *json = cJSON_PrintUnformatted(it);
			cJSON_ReplaceItemViaPointer(cfg, it, cJSON_CreateString(json ? json : ""));
			free(json);
		}
	}
	char *text = cJSON_PrintUnformatted(cfg);
	if (text && strlen(text) <= REPORT_CONFIG_MAX) {
		cJSON_AddItemToObject(r, "configuration", cfg);
	} else {
		cJSON_Delete(cfg);
		cJSON_AddStringToObject(r, "configuration", "larger than 16 KB: call the GetConfig method");
	}
	free(text);
	cJSON_AddItemToObject(r, "delivery", mqtt_link_status(h->link));
	char *body = cJSON_PrintUnformatted(r);
	cJSON_Delete(r);
	if (body)
		send_twin(h, "PATCH/properties/reported", body, NULL);
	free(body);
}

static long long version_of(const cJSON *o)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "$version");
	return cJSON_IsNumber(v) ? (long long)v->valuedouble : -1;
}

static void on_twin_response(struct iothub *h, const char *t, const struct mosquitto_message *msg)
{
	int status = atoi(t + strlen("$iothub/twin/res/"));
	const char *r = strstr(t, "$rid=");
	unsigned rid = r ? (unsigned)strtoul(r + 5, NULL, 10) : 0;
	if (rid != h->get_rid || rid == 0) {
		if (status >= 300)
			agent_warn(h->ctx, "twin: the hub refused the reported properties (status %d)", status);
		return;
	}
	h->get_rid = 0;
	if (status != 200) {
		agent_warn(h->ctx, "twin: GET answered status %d; keeping the current configuration", status);
		return;
	}
	cJSON *doc = cJSON_ParseWithLength(msg->payload, (size_t)msg->payloadlen);
	const cJSON *desired = cJSON_GetObjectItemCaseSensitive(doc, "desired");
	if (!cJSON_IsObject(desired)) {
		agent_warn(h->ctx, "twin: the GET response has no \"desired\" object; keeping the current configuration");
	} else {
		h->desired_version = version_of(desired);
		apply(h, desired, true);
	}
	cJSON_Delete(doc);
}

static void on_desired_patch(struct iothub *h, const struct mosquitto_message *msg)
{
	cJSON *patch = cJSON_ParseWithLength(msg->payload, (size_t)msg->payloadlen);
	if (!cJSON_IsObject(patch)) {
		agent_warn(h->ctx, "twin: a desired-properties patch is not a JSON object; ignored");
	} else {
		long long v = version_of(patch);
		if (v >= 0 && v <= h->desired_version)
			agent_debug(h->ctx, "twin: patch version %lld already applied", v);
		else
			apply(h, patch, false);
		if (v > h->desired_version)
			h->desired_version = v;
	}
	cJSON_Delete(patch);
}

static void on_method(struct iothub *h, const char *t)
{
	const char *name = t + strlen("$iothub/methods/POST/");
	const char *slash = strchr(name, '/');
	const char *r = strstr(t, "$rid=");
	if (!slash || !r)
		return;
	char rid[64], reply[128], mname[128];
	snprintf(rid, sizeof(rid), "%.*s", (int)strcspn(r + 5, "&"), r + 5);
	snprintf(mname, sizeof(mname), "%.*s", (int)(slash - name), name);
	cJSON *body = cJSON_CreateObject();
	int status = 200;
	if (strcmp(mname, "GetConfig") == 0) {
		cJSON_AddItemToObject(body, "configuration", agent_config_snapshot(h->ctx));
		cJSON_AddItemToObject(body, "delivery", mqtt_link_status(h->link));
	} else {
		status = 501;
		cJSON_AddStringToObject(body, "message", "method not implemented (this agent answers GetConfig)");
	}
	char *text = cJSON_PrintUnformatted(body);
	cJSON_Delete(body);
	snprintf(reply, sizeof(reply), "$iothub/methods/res/%d/?$rid=%s", status, rid);
	if (text)
		mqtt_link_send_raw(h->link, reply, text);
	free(text);
}

static void message(struct agent_ctx *ctx, void *arg, struct mosquitto *m, const struct mosquitto_message *msg)
{
	struct iothub *h = arg;
	(void)ctx;
	(void)m;
	const char *t = msg->topic;
	if (strncmp(t, "$iothub/twin/res/", 17) == 0)
		on_twin_response(h, t, msg);
	else if (strncmp(t, "$iothub/twin/PATCH/properties/desired/", 38) == 0)
		on_desired_patch(h, msg);
	else if (strncmp(t, "$iothub/methods/POST/", 21) == 0)
		on_method(h, t);
}

static const struct mqtt_link_ops ops = {
	.prepare = prepare,
	.connected = connected,
	.message = message,
	.topic = topic,
};

static void fini(void *state);

static void *init(struct agent_ctx *ctx)
{
	struct iothub *h = calloc(1, sizeof(*h));
	char err[1400];
	if (!h)
		return NULL;
	h->ctx = ctx;
	h->desired_version = -1;
	resolve_connstr_path(ctx, h->cs_path, sizeof(h->cs_path), true);
	if (connstr_load(h->cs_path, &h->cs, err, sizeof(err)) != 0) {
		agent_log(ctx, "error", "%s (set IothubModule_ConnectionStringFile, or Agent_Transport to another "
			  "transport)", err);
		free(h);
		return NULL;
	}
	h->link = mqtt_link_new(ctx, "iothub", "IothubModule_", &ops, h);
	struct mqtt_link_params p;
	params(h, &p);
	if (!h->link || mqtt_link_configure(h->link, &p) != 0) {
		fini(h);
		return NULL;
	}
	return h;
}

static void configure(struct agent_ctx *ctx, void *state)
{
	struct iothub *h = state;
	char path[1024], err[1400];
	resolve_connstr_path(ctx, path, sizeof(path), false);
	if (strcmp(path, h->cs_path) != 0) {
		struct connstr cs;
		if (connstr_load(path, &cs, err, sizeof(err)) != 0) {
			agent_warn(ctx, "%s; keeping the connection string of %s", err, h->cs_path);
		} else {
			h->cs = cs;
			snprintf(h->cs_path, sizeof(h->cs_path), "%s", path);
		}
	}
	struct mqtt_link_params p;
	params(h, &p);
	if (mqtt_link_configure(h->link, &p) != 0)
		agent_warn(ctx, "keeping the previous connection settings");
}

static void fini(void *state)
{
	struct iothub *h = state;
	if (!h)
		return;
	mqtt_link_free(h->link);
	explicit_bzero(&h->cs, sizeof(h->cs));
	free(h);
}

const struct transport transport_iothub = {
	.name = "iothub",
	.keys = keys,
	.init = init,
	.publish = mqtt_link_tp_publish,
	.pollfds = mqtt_link_tp_pollfds,
	.on_poll = mqtt_link_tp_on_poll,
	.timeout_ms = mqtt_link_tp_timeout_ms,
	.flush = mqtt_link_tp_flush,
	.configure = configure,
	.fini = fini,
};
