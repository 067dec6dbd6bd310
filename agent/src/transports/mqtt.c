//feature: transport mqtt ON
//summary: Plain MQTT broker: security messages to one topic, QoS 1, TLS optional (CA, client certificate), username/password from a file, on-disk spool
//libs: libmosquitto libssl libcrypto
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mosquitto.h>

#include "core/agent.h"
#include "lib/connstr.h"
#include "lib/mqtt_link.h"

static const struct config_key keys[] = {
	{ "Mqtt_Host", CFG_STRING, "", 0, 255, NULL, "broker host name or address (required)", NULL },
	{ "Mqtt_Port", CFG_INT, "8883", 1, 65535, NULL, "broker port", NULL },
	{ "Mqtt_Topic", CFG_STRING, "defender-iot/security", 1, 512, NULL,
	  "topic of the security messages; \"{client}\" is replaced by the client id", NULL },
	{ "Mqtt_ClientId", CFG_STRING, "", 0, 128, NULL, "MQTT client id; empty: defender-iot-<host name>", NULL },
	{ "Mqtt_Tls", CFG_BOOL, "true", 0, 0, NULL, "connect over TLS (the server certificate is always verified)",
	  NULL },
	{ "Mqtt_CaFile", CFG_STRING, "/etc/ssl/certs/ca-certificates.crt", 0, 1024, NULL,
	  "CA bundle that must have signed the broker's certificate; a hashed directory such as /etc/ssl/certs "
	  "costs less memory", NULL },
	{ "Mqtt_CertificateFile", CFG_STRING, "", 0, 1024, NULL, "client certificate (PEM); empty: none", NULL },
	{ "Mqtt_PrivateKeyFile", CFG_STRING, "", 0, 1024, NULL, "its private key (PEM, mode 600)", NULL },
	{ "Mqtt_CredentialsFile", CFG_STRING, "", 0, 1024, NULL,
	  "file (mode 600) whose first line is the user name and second line the password; empty: none", NULL },
	MQTT_LINK_KEYS("Mqtt_"),
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};

struct mqtt {
	struct mqtt_link *link; /* first: the mqtt_link_tp_* callbacks find it here */
	struct agent_ctx *ctx;
	char topic[600];
	char user[256], pass[512];
	bool have_pass;
};

static int params(struct mqtt *q, struct mqtt_link_params *p)
{
	const struct agent_config *cfg = agent_config(q->ctx);
	memset(p, 0, sizeof(*p));
	const char *host = config_string(cfg, "Mqtt_Host");
	if (!*host) {
		agent_log(q->ctx, "error", "Mqtt_Host is not set: the mqtt transport needs a broker address");
		return -1;
	}
	snprintf(p->host, sizeof(p->host), "%s", host);
	snprintf(p->tls_name, sizeof(p->tls_name), "%s", host);
	p->port = (int)config_int(cfg, "Mqtt_Port");
	p->tls = config_bool(cfg, "Mqtt_Tls");
	snprintf(p->ca_file, sizeof(p->ca_file), "%s", config_string(cfg, "Mqtt_CaFile"));
	snprintf(p->cert_file, sizeof(p->cert_file), "%s", config_string(cfg, "Mqtt_CertificateFile"));
	snprintf(p->key_file, sizeof(p->key_file), "%s", config_string(cfg, "Mqtt_PrivateKeyFile"));
	const char *id = config_string(cfg, "Mqtt_ClientId");
	if (*id) {
		snprintf(p->client_id, sizeof(p->client_id), "%s", id);
	} else {
		char hn[64] = "";
		gethostname(hn, sizeof(hn) - 1);
		snprintf(p->client_id, sizeof(p->client_id), "defender-iot-%s", hn);
	}
	p->clean_session = true;
	/* The topic with {client} expanded. */
	const char *t = config_string(cfg, "Mqtt_Topic"), *mark = strstr(t, "{client}");
	if (mark)
		snprintf(q->topic, sizeof(q->topic), "%.*s%s%s", (int)(mark - t), t, p->client_id, mark + 8);
	else
		snprintf(q->topic, sizeof(q->topic), "%s", t);
	return 0;
}

/* Read once, at start and on a configuration change: after the agent
 * drops root (Agent_RunAsUser) a mode-600 root file is out of reach. */
static int load_credentials(struct mqtt *q)
{
	const char *file = config_string(agent_config(q->ctx), "Mqtt_CredentialsFile");
	explicit_bzero(q->user, sizeof(q->user));
	explicit_bzero(q->pass, sizeof(q->pass));
	q->have_pass = false;
	if (!*file)
		return 0;
	char err[1200];
	char *text = secret_file_read(file, 4096, err, sizeof(err));
	if (!text) {
		agent_log(q->ctx, "error", "Mqtt_CredentialsFile: %s", err);
		return -1;
	}
	char *pw = strchr(text, '\n');
	if (pw) {
		*pw++ = 0;
		pw[strcspn(pw, "\r\n")] = 0;
	}
	text[strcspn(text, "\r")] = 0;
	int rc = 0;
	if (!*text || strlen(text) >= sizeof(q->user) || (pw && strlen(pw) >= sizeof(q->pass))) {
		agent_log(q->ctx, "error", "Mqtt_CredentialsFile %s: expected a user name line and a password line", file);
		rc = -1;
	} else {
		snprintf(q->user, sizeof(q->user), "%s", text);
		if (pw) {
			snprintf(q->pass, sizeof(q->pass), "%s", pw);
			q->have_pass = true;
		}
	}
	explicit_bzero(text, strlen(text) + (pw ? strlen(pw) + 1 : 0));
	free(text);
	return rc;
}

static int prepare(struct agent_ctx *ctx, void *arg, struct mosquitto *m)
{
	struct mqtt *q = arg;
	(void)ctx;
	if (!q->user[0])
		return 0;
	return mosquitto_username_pw_set(m, q->user, q->have_pass ? q->pass : NULL) == MOSQ_ERR_SUCCESS ? 0 : -1;
}

static void topic(void *arg, const char *id, char *out, size_t size)
{
	(void)id;
	snprintf(out, size, "%s", ((struct mqtt *)arg)->topic);
}

static const struct mqtt_link_ops ops = {
	.prepare = prepare,
	.topic = topic,
};

static void fini(void *state)
{
	struct mqtt *q = state;
	if (!q)
		return;
	mqtt_link_free(q->link);
	explicit_bzero(q, sizeof(*q));
	free(q);
}

static void *init(struct agent_ctx *ctx)
{
	struct mqtt *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->ctx = ctx;
	struct mqtt_link_params p;
	if (params(q, &p) != 0 || load_credentials(q) != 0) {
		free(q);
		return NULL;
	}
	q->link = mqtt_link_new(ctx, "mqtt", "Mqtt_", &ops, q);
	if (!q->link || mqtt_link_configure(q->link, &p) != 0) {
		fini(q);
		return NULL;
	}
	return q;
}

static void configure(struct agent_ctx *ctx, void *state)
{
	struct mqtt *q = state;
	struct mqtt_link_params p;
	char user[256], pass[512];
	bool have_pass = q->have_pass;
	memcpy(user, q->user, sizeof(user));
	memcpy(pass, q->pass, sizeof(pass));
	if (load_credentials(q) != 0) {
		memcpy(q->user, user, sizeof(user));
		memcpy(q->pass, pass, sizeof(pass));
		q->have_pass = have_pass;
		agent_warn(ctx, "keeping the previous credentials");
	}
	explicit_bzero(pass, sizeof(pass));
	if (params(q, &p) != 0 || mqtt_link_configure(q->link, &p) != 0)
		agent_warn(ctx, "keeping the previous connection settings");
}

const struct transport transport_mqtt = {
	.name = "mqtt",
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
