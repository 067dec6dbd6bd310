/* What the iothub and mqtt transports share: one MQTT 3.1.1 connection
 * driven by libmosquitto from the agent's single-threaded poll loop (no
 * library thread), TLS through our own OpenSSL context with server
 * verification always on, reconnection with exponential backoff and jitter,
 * and QoS 1 delivery of security messages through the outbox and spool. */
#ifndef AGENT_LIB_MQTT_LINK_H
#define AGENT_LIB_MQTT_LINK_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/agent.h"

struct mosquitto;
struct mosquitto_message;
struct mqtt_link;

/* The delivery keys both transports declare, under their own prefix
 * ("IothubModule_", "Mqtt_"). */
#define MQTT_LINK_KEYS(prefix)                                                                              \
	{ prefix "MessageTimeout", CFG_INT, "2880", 1, 525600, NULL,                                          \
	  "minutes a queued message is kept while the broker cannot be reached; older ones are dropped "      \
	  "and counted", NULL },                                                                             \
	{ prefix "SpoolMaxBytes", CFG_INT, "1048576", 0, 1073741824, NULL,                                    \
	  "bytes of queued messages kept on disk under Agent_StateDirectory so they survive a restart; "     \
	  "0: memory only", NULL },                                                                          \
	{ prefix "QueueMaxBytes", CFG_INT, "262144", 4096, 67108864, NULL,                                    \
	  "bytes of queued messages held in memory (beyond it they wait on disk, or the oldest is dropped)", \
	  NULL },                                                                                            \
	{ prefix "KeepAlive", CFG_INT, "240", 30, 1177, NULL,                                                 \
	  "MQTT keep-alive in seconds (while idle the agent wakes every quarter of it)", NULL }

struct mqtt_link_params {
	char host[256];          /* where to connect */
	int port;
	bool tls;
	char tls_name[256];      /* the name the server certificate must carry */
	char ca_file[1024];
	char cert_file[1024];    /* client certificate (PEM), "" for none */
	char key_file[1024];
	char client_id[300];
	bool clean_session;
	long long session_max_ms; /* reconnect after this (token renewal); 0: never */
	size_t max_payload;       /* larger messages are dropped (counted); 0: no limit */
};

struct mqtt_link_ops {
	/* Before each attempt: set the username and password on m. 0 to go
	 * on, -1 to try again later (the callee logged why). */
	int (*prepare)(struct agent_ctx *ctx, void *arg, struct mosquitto *m);
	/* The broker accepted the connection: subscribe, ask for the twin. */
	void (*connected)(struct agent_ctx *ctx, void *arg, struct mosquitto *m);
	void (*message)(struct agent_ctx *ctx, void *arg, struct mosquitto *m, const struct mosquitto_message *msg);
	/* The topic of one security message. */
	void (*topic)(void *arg, const char *message_id, char *out, size_t size);
};

/* `name` names the spool directory (Agent_StateDirectory/spool-<name>) and
 * `prefix` the delivery keys. */
struct mqtt_link *mqtt_link_new(struct agent_ctx *ctx, const char *name, const char *prefix,
				const struct mqtt_link_ops *ops, void *arg);
/* (Re)read the delivery keys; a change of connection parameters makes the
 * link reconnect. Returns -1 if the TLS files cannot be loaded (logged). */
int mqtt_link_configure(struct mqtt_link *l, const struct mqtt_link_params *p);
int mqtt_link_publish(struct mqtt_link *l, const char *json, const char *id);
/* QoS 0 side messages (twin, method replies); false if not connected. */
bool mqtt_link_send_raw(struct mqtt_link *l, const char *topic, const char *payload);
bool mqtt_link_connected(const struct mqtt_link *l);
/* A summary for the twin's reported properties (caller frees). */
cJSON *mqtt_link_status(const struct mqtt_link *l);
int mqtt_link_pollfds(struct mqtt_link *l, struct pollfd *fds, int max);
void mqtt_link_on_poll(struct mqtt_link *l, struct pollfd *fds, int n);
int mqtt_link_timeout_ms(struct mqtt_link *l);
void mqtt_link_flush(struct mqtt_link *l, int timeout_ms);
void mqtt_link_free(struct mqtt_link *l);

/* struct transport callbacks for a transport whose state starts with its
 * `struct mqtt_link *` (the first member). */
int mqtt_link_tp_publish(struct agent_ctx *ctx, void *state, const char *json, const char *id);
int mqtt_link_tp_pollfds(void *state, struct pollfd *fds, int max);
void mqtt_link_tp_on_poll(struct agent_ctx *ctx, void *state, struct pollfd *fds, int n);
int mqtt_link_tp_timeout_ms(void *state);
void mqtt_link_tp_flush(struct agent_ctx *ctx, void *state, int ms);

#endif
