/* Needs libmosquitto and OpenSSL, linked by the transports that use it; the
 * guard keeps the shared archive buildable without their headers when no
 * such transport is enabled. */
#if __has_include(<mosquitto.h>) && __has_include(<openssl/ssl.h>)
#include "lib/mqtt_link.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <mosquitto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lib/connstr.h"
#include "lib/outbox.h"

enum {
	MAX_INFLIGHT = 16,
	CONNECT_TIMEOUT_MS = 30000,
	BACKOFF_MAX_S = 60,
	/* A message not acknowledged within this many seconds goes to disk.
	 * While the broker answers, acknowledgements come in milliseconds and
	 * nothing is written; during an outage the queue is written in batches
	 * (one file per SPOOL_DELAY_S at most), which spares flash. */
	SPOOL_DELAY_S = 10,
	SPOOL_RETRY_MS = 60000,
};

enum link_state { LINK_IDLE, LINK_CONNECTING, LINK_UP };

struct mqtt_link {
	struct agent_ctx *ctx;
	const struct mqtt_link_ops *ops;
	void *arg;
	char name[32], prefix[32];
	struct mqtt_link_params p;
	bool configured;
	SSL_CTX *ssl;
	struct mosquitto *m;
	enum link_state state;
	bool lost;                 /* set by a callback, acted on after the library call */
	bool renew;                /* the loss is ours: reconnect at once */
	char reason[256];
	char last_logged[256];
	/* why the server certificate failed verification on this attempt
	 * (kept here: libmosquitto frees the SSL object when it closes the
	 * socket, often before the failure reaches note_failure) */
	long verify_error;
	long long next_attempt_ms, deadline_ms, connected_ms, next_misc_ms, next_spool_ms;
	int attempts, keepalive_s;
	unsigned rng;
	struct outbox box;
	long long sent, acked;
	long dropped_timeout, dropped_full, torn;
};

static long long now_ms(const struct mqtt_link *l)
{
	return agent_monotonic_ms(l->ctx);
}

/* Log a connection problem once, not on every retry. */
static void log_problem(struct mqtt_link *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_problem(struct mqtt_link *l, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(l->reason, sizeof(l->reason), fmt, ap);
	va_end(ap);
	if (strcmp(l->reason, l->last_logged) == 0) {
		agent_debug(l->ctx, "%s: %s", l->name, l->reason);
		return;
	}
	snprintf(l->last_logged, sizeof(l->last_logged), "%s", l->reason);
	agent_warn(l->ctx, "%s: %s; messages are queued (%zu waiting)", l->name, l->reason, l->box.count);
}

static void schedule_retry(struct mqtt_link *l)
{
	int shift = l->attempts < 6 ? l->attempts : 6;
	long long max = (1LL << shift) * 1000;
	if (max > BACKOFF_MAX_S * 1000)
		max = BACKOFF_MAX_S * 1000;
	/* Full jitter over the upper half: devices that lost the hub together
	 * do not come back together. */
	l->next_attempt_ms = now_ms(l) + max / 2 + (long long)(rand_r(&l->rng) % (unsigned)(max / 2 + 1));
	l->attempts++;
}

static void drop_connection(struct mqtt_link *l, bool retry)
{
	if (l->m) {
		mosquitto_destroy(l->m);
		l->m = NULL;
	}
	outbox_unsend_all(&l->box);
	l->state = LINK_IDLE;
	l->lost = false;
	if (retry)
		schedule_retry(l);
	else
		l->next_attempt_ms = now_ms(l);
}

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
	struct mqtt_link *l = obj;
	if (rc != 0) {
		log_problem(l, "%s:%d refused the connection: %s%s", l->p.host, l->p.port, mosquitto_connack_string(rc),
			    rc == 4 || rc == 5 ? " (check the credentials; a SAS token also needs the right clock)" : "");
		l->lost = true;
		return;
	}
	l->state = LINK_UP;
	l->attempts = 0;
	l->connected_ms = now_ms(l);
	l->last_logged[0] = 0;
	agent_info(l->ctx, "%s: connected to %s:%d as %s", l->name, l->p.host, l->p.port, l->p.client_id);
	if (l->ops->connected)
		l->ops->connected(l->ctx, l->arg, m);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc)
{
	struct mqtt_link *l = obj;
	(void)m;
	if (rc != 0 && !l->lost)
		log_problem(l, "connection to %s:%d lost", l->p.host, l->p.port);
	l->lost = true;
}

static void on_publish(struct mosquitto *m, void *obj, int mid)
{
	struct mqtt_link *l = obj;
	(void)m;
	if (outbox_ack(&l->box, mid))
		l->acked++;
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
	struct mqtt_link *l = obj;
	if (l->ops->message)
		l->ops->message(l->ctx, l->arg, m, msg);
}

static void on_log(struct mosquitto *m, void *obj, int level, const char *str)
{
	struct mqtt_link *l = obj;
	(void)m;
	if (level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING))
		agent_debug(l->ctx, "%s: libmosquitto: %s", l->name, str);
}

/* Why a library call failed, in words a user can act on. */
static void note_failure(struct mqtt_link *l, int rc)
{
	if (l->lost && l->reason[0] && rc == MOSQ_ERR_CONN_LOST)
		return;
	SSL *ssl = l->m ? mosquitto_ssl_get(l->m) : NULL;
	long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	if (vr == X509_V_OK)
		vr = l->verify_error;
	if (vr != X509_V_OK)
		log_problem(l, "the server certificate of %s:%d is not trusted for '%s': %s (check %sCaFile)",
			    l->p.host, l->p.port, l->p.tls_name, X509_verify_cert_error_string(vr), l->prefix);
	else if (rc == MOSQ_ERR_ERRNO)
		log_problem(l, "cannot reach %s:%d: %s", l->p.host, l->p.port, strerror(errno));
	else
		log_problem(l, "connection to %s:%d failed: %s", l->p.host, l->p.port, mosquitto_strerror(rc));
	l->lost = true;
}

static void connect_now(struct mqtt_link *l)
{
	if (!l->configured)
		return;
	l->verify_error = X509_V_OK;
	l->m = mosquitto_new(l->p.client_id, l->p.clean_session, l);
	if (!l->m) {
		log_problem(l, "cannot create an MQTT client: %s", strerror(errno));
		schedule_retry(l);
		return;
	}
	mosquitto_int_option(l->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
	mosquitto_connect_callback_set(l->m, on_connect);
	mosquitto_disconnect_callback_set(l->m, on_disconnect);
	mosquitto_publish_callback_set(l->m, on_publish);
	mosquitto_message_callback_set(l->m, on_message);
	mosquitto_log_callback_set(l->m, on_log);
	if (l->p.tls) {
		/* Our context as it is: libmosquitto's defaults would replace
		 * the CA and name checks set up in tls_context(). */
		mosquitto_int_option(l->m, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0);
		mosquitto_void_option(l->m, MOSQ_OPT_SSL_CTX, l->ssl);
	}
	if (l->ops->prepare && l->ops->prepare(l->ctx, l->arg, l->m) != 0) {
		drop_connection(l, true);
		return;
	}
	errno = 0;
	int rc = mosquitto_connect_async(l->m, l->p.host, l->p.port, l->keepalive_s);
	if (rc != MOSQ_ERR_SUCCESS) {
		note_failure(l, rc);
		drop_connection(l, true);
		return;
	}
	l->state = LINK_CONNECTING;
	l->deadline_ms = now_ms(l) + CONNECT_TIMEOUT_MS;
	l->next_misc_ms = now_ms(l) + l->keepalive_s * 250LL;
}

static void send_pending(struct mqtt_link *l)
{
	if (l->state != LINK_UP || !l->m)
		return;
	size_t inflight = outbox_inflight(&l->box);
	struct outbox_msg *m = l->box.head, *next;
	for (; m && inflight < MAX_INFLIGHT && !l->lost; m = next) {
		next = m->next;
		if (m->mid > 0)
			continue;
		const char *body = outbox_body(&l->box, m);
		if (!body) {
			agent_count(l->ctx, "messages", "dropped: damaged in the spool", 1);
			outbox_remove(&l->box, m);
			continue;
		}
		char topic[1024];
		l->ops->topic(l->arg, m->id, topic, sizeof(topic));
		int mid = 0;
		int rc = mosquitto_publish(l->m, &mid, topic, (int)m->len, body, 1, false);
		if (rc == MOSQ_ERR_PAYLOAD_SIZE || rc == MOSQ_ERR_OVERSIZE_PACKET) {
			agent_count(l->ctx, "messages", "dropped: too large for the broker", 1);
			outbox_remove(&l->box, m);
			continue;
		}
		if (rc != MOSQ_ERR_SUCCESS) {
			note_failure(l, rc);
			break;
		}
		m->mid = mid;
		l->sent++;
		inflight++;
	}
}

static void report_drops(struct mqtt_link *l)
{
	struct outbox *o = &l->box;
	if (o->dropped_timeout) {
		agent_count(l->ctx, "messages", "dropped: older than MessageTimeout", o->dropped_timeout);
		agent_warn(l->ctx, "%s: dropped %ld queued messages older than %sMessageTimeout", l->name,
			   o->dropped_timeout, l->prefix);
		l->dropped_timeout += o->dropped_timeout;
	}
	if (o->dropped_full) {
		agent_count(l->ctx, "messages", "dropped: queue full", o->dropped_full);
		agent_warn(l->ctx, "%s: dropped the %ld oldest queued messages: queue full (raise %sSpoolMaxBytes "
			   "or %sQueueMaxBytes)", l->name, o->dropped_full, l->prefix, l->prefix);
		l->dropped_full += o->dropped_full;
	}
	if (o->torn) {
		agent_count(l->ctx, "messages", "dropped: damaged in the spool", o->torn);
		agent_warn(l->ctx, "%s: %ld spool files ended in a damaged record (an interrupted write); the "
			   "intact messages before it were kept", l->name, o->torn);
		l->torn += o->torn;
	}
	if (o->spool_errors)
		agent_warn(l->ctx, "%s: cannot write the spool under %s: %s; messages stay in memory", l->name,
			   o->dir, strerror(errno));
	o->dropped_timeout = o->dropped_full = o->torn = o->spool_errors = 0;
}

static void spool_if_due(struct mqtt_link *l, bool force)
{
	long long oldest = outbox_oldest_unspooled(&l->box);
	if (oldest < 0 || l->box.spool_max <= 0)
		return;
	if (!force && (agent_now(l->ctx) - oldest < SPOOL_DELAY_S || now_ms(l) < l->next_spool_ms))
		return;
	if (outbox_spool(&l->box) != 0)
		l->next_spool_ms = now_ms(l) + SPOOL_RETRY_MS;
}

static void service(struct mqtt_link *l)
{
	long long now = now_ms(l);
	if (l->lost) {
		drop_connection(l, !l->renew);
		l->renew = false;
	}
	if (l->state == LINK_UP && now >= l->next_misc_ms) {
		/* libmosquitto pings once `keepalive` has passed without
		 * traffic; checking every quarter of it sends the ping well
		 * before the server's 1.5x limit. */
		l->next_misc_ms = now + l->keepalive_s * 250LL;
		int rc = mosquitto_loop_misc(l->m);
		if (rc != MOSQ_ERR_SUCCESS && !l->lost)
			note_failure(l, rc);
		if (l->lost)
			drop_connection(l, true);
	}
	if (l->state == LINK_CONNECTING && now >= l->deadline_ms) {
		log_problem(l, "%s:%d did not complete the connection within %d s", l->p.host, l->p.port,
			    CONNECT_TIMEOUT_MS / 1000);
		drop_connection(l, true);
	}
	if (l->state == LINK_UP && l->p.session_max_ms > 0 && now - l->connected_ms >= l->p.session_max_ms) {
		agent_info(l->ctx, "%s: reconnecting to renew the credentials", l->name);
		mosquitto_disconnect(l->m);
		mosquitto_loop_write(l->m, 1);
		drop_connection(l, false);
	}
	if (l->state == LINK_IDLE && now >= l->next_attempt_ms)
		connect_now(l);
	outbox_expire(&l->box, agent_now(l->ctx));
	send_pending(l);
	spool_if_due(l, false);
	report_drops(l);
}

struct mqtt_link *mqtt_link_new(struct agent_ctx *ctx, const char *name, const char *prefix,
				const struct mqtt_link_ops *ops, void *arg)
{
	struct mqtt_link *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->ctx = ctx;
	l->ops = ops;
	l->arg = arg;
	snprintf(l->name, sizeof(l->name), "%s", name);
	snprintf(l->prefix, sizeof(l->prefix), "%s", prefix);
	if (getrandom(&l->rng, sizeof(l->rng), 0) != (ssize_t)sizeof(l->rng))
		l->rng = (unsigned)now_ms(l);
	/* Before libmosquitto initialises OpenSSL: no openssl.cnf (its
	 * providers and engines) and no error-string tables, which would cost
	 * hundreds of KB of heap on a device for messages nobody reads; the
	 * protocol floor the config file would set is set in tls_context(). */
	OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_LOAD_SSL_STRINGS |
			 OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS, NULL);
	mosquitto_lib_init();
	char dir[1100], key[64];
	const char *state = agent_state_dir(ctx);
	snprintf(dir, sizeof(dir), "%s/spool-%s", state, name);
	mkdir(state, 0700); /* the spool's parent; failures show when spooling */
	const struct agent_config *cfg = agent_config(ctx);
	snprintf(key, sizeof(key), "%sSpoolMaxBytes", prefix);
	long long spool_max = config_int(cfg, key);
	snprintf(key, sizeof(key), "%sQueueMaxBytes", prefix);
	size_t mem_max = (size_t)config_int(cfg, key);
	snprintf(key, sizeof(key), "%sMessageTimeout", prefix);
	long timeout = config_int(cfg, key) * 60;
	outbox_init(&l->box, dir, mem_max, spool_max, timeout);
	if (l->box.count)
		agent_info(ctx, "%s: %zu messages from the spool of an earlier run are queued", name, l->box.count);
	report_drops(l);
	return l;
}

static void ssl_error(struct mqtt_link *l, const char *what, const char *file)
{
	char buf[256];
	ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
	agent_log(l->ctx, "error", "%s: %s %s: %s", l->name, what, file, buf);
	ERR_clear_error();
}

static int verify_cb(int ok, X509_STORE_CTX *x)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct mqtt_link *l = ssl ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
	if (!ok && l)
		l->verify_error = X509_STORE_CTX_get_error(x);
	return ok;
}

static SSL_CTX *tls_context(struct mqtt_link *l, const struct mqtt_link_params *p)
{
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());
	if (!c)
		return NULL;
	SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
	SSL_CTX_set_security_level(c, 2);
	/* Idle connections give their read and write buffers back. */
	SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
	/* A hashed directory (c_rehash, e.g. /etc/ssl/certs) is read a
	 * certificate at a time when a chain needs it; a bundle file is parsed
	 * whole into memory (Debian's: about 900 KB of heap). */
	struct stat st;
	bool dir = stat(p->ca_file, &st) == 0 && S_ISDIR(st.st_mode);
	if (SSL_CTX_load_verify_locations(c, dir ? NULL : p->ca_file, dir ? p->ca_file : NULL) != 1) {
		ssl_error(l, "cannot load the CA certificates of", p->ca_file);
		SSL_CTX_free(c);
		return NULL;
	}
	/* Server verification is always on: there is no option to skip it. */
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, verify_cb);
	SSL_CTX_set_app_data(c, l);
	X509_VERIFY_PARAM *vp = SSL_CTX_get0_param(c);
	unsigned char addr[16];
	if (inet_pton(AF_INET, p->tls_name, addr) == 1 || inet_pton(AF_INET6, p->tls_name, addr) == 1)
		X509_VERIFY_PARAM_set1_ip_asc(vp, p->tls_name);
	else
		X509_VERIFY_PARAM_set1_host(vp, p->tls_name, 0);
	if (p->cert_file[0]) {
		char err[512];
		if (SSL_CTX_use_certificate_chain_file(c, p->cert_file) != 1) {
			ssl_error(l, "cannot load the client certificate", p->cert_file);
			SSL_CTX_free(c);
			return NULL;
		}
		char *pem = secret_file_read(p->key_file, 64 * 1024, err, sizeof(err));
		if (!pem) {
			agent_log(l->ctx, "error", "%s: %s", l->name, err);
			SSL_CTX_free(c);
			return NULL;
		}
		BIO *bio = BIO_new_mem_buf(pem, -1);
		EVP_PKEY *pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
		BIO_free(bio);
		explicit_bzero(pem, strlen(pem));
		free(pem);
		int ok = pk && SSL_CTX_use_PrivateKey(c, pk) == 1 && SSL_CTX_check_private_key(c) == 1;
		EVP_PKEY_free(pk);
		if (!ok) {
			ssl_error(l, "the private key does not load or does not match the certificate:", p->key_file);
			SSL_CTX_free(c);
			return NULL;
		}
	}
	return c;
}

int mqtt_link_configure(struct mqtt_link *l, const struct mqtt_link_params *p)
{
	char key[64];
	const struct agent_config *cfg = agent_config(l->ctx);
	snprintf(key, sizeof(key), "%sSpoolMaxBytes", l->prefix);
	long long spool_max = config_int(cfg, key);
	snprintf(key, sizeof(key), "%sQueueMaxBytes", l->prefix);
	size_t mem_max = (size_t)config_int(cfg, key);
	snprintf(key, sizeof(key), "%sMessageTimeout", l->prefix);
	outbox_set_limits(&l->box, mem_max, spool_max, config_int(cfg, key) * 60);
	snprintf(key, sizeof(key), "%sKeepAlive", l->prefix);
	int keepalive = (int)config_int(cfg, key);

	if (l->configured && keepalive == l->keepalive_s && memcmp(p, &l->p, sizeof(*p)) == 0)
		return 0;
	SSL_CTX *ssl = NULL;
	if (p->tls && !(ssl = tls_context(l, p)))
		return -1;
	if (l->ssl)
		SSL_CTX_free(l->ssl);
	l->ssl = ssl;
	l->p = *p;
	l->keepalive_s = keepalive;
	if (l->m) {
		/* This may run inside a libmosquitto callback (a twin patch):
		 * the client is replaced later, in service(). */
		agent_info(l->ctx, "%s: connection settings changed; reconnecting", l->name);
		if (l->state == LINK_UP)
			mosquitto_disconnect(l->m);
		l->lost = l->renew = true;
	}
	l->configured = true;
	l->attempts = 0;
	l->next_attempt_ms = now_ms(l);
	return 0;
}

int mqtt_link_publish(struct mqtt_link *l, const char *json, const char *id)
{
	size_t len = strlen(json);
	if (l->p.max_payload && len > l->p.max_payload) {
		/* A broker that disconnects on it would get it again after every
		 * reconnect and nothing behind it would ever go. */
		agent_count(l->ctx, "messages", "dropped: larger than the broker accepts", 1);
		agent_warn(l->ctx, "%s: dropping a message of %zu bytes: the limit is %zu (lower Agent_MaxMessageBytes)",
			   l->name, len, l->p.max_payload);
		return 0;
	}
	outbox_push(&l->box, id, json, agent_now(l->ctx));
	send_pending(l);
	report_drops(l);
	return 0;
}

bool mqtt_link_send_raw(struct mqtt_link *l, const char *topic, const char *payload)
{
	if (l->state != LINK_UP || !l->m)
		return false;
	int rc = mosquitto_publish(l->m, NULL, topic, (int)strlen(payload), payload, 0, false);
	return rc == MOSQ_ERR_SUCCESS;
}

bool mqtt_link_connected(const struct mqtt_link *l)
{
	return l->state == LINK_UP;
}

cJSON *mqtt_link_status(const struct mqtt_link *l)
{
	cJSON *s = cJSON_CreateObject();
	cJSON_AddNumberToObject(s, "queued", (double)l->box.count);
	cJSON_AddNumberToObject(s, "spooled_bytes", (double)l->box.spool_bytes);
	cJSON_AddNumberToObject(s, "sent", (double)l->sent);
	cJSON_AddNumberToObject(s, "acknowledged", (double)l->acked);
	cJSON_AddNumberToObject(s, "dropped_timeout", (double)l->dropped_timeout);
	cJSON_AddNumberToObject(s, "dropped_queue_full", (double)l->dropped_full);
	cJSON_AddNumberToObject(s, "dropped_damaged", (double)l->torn);
	return s;
}

int mqtt_link_pollfds(struct mqtt_link *l, struct pollfd *fds, int max)
{
	if (!l->m || max < 1)
		return 0;
	int sock = mosquitto_socket(l->m);
	if (sock < 0)
		return 0;
	fds[0].fd = sock;
	fds[0].events = POLLIN | (mosquitto_want_write(l->m) ? POLLOUT : 0);
	return 1;
}

void mqtt_link_on_poll(struct mqtt_link *l, struct pollfd *fds, int n)
{
	if (l->m && n > 0 && fds[0].fd == mosquitto_socket(l->m)) {
		short re = fds[0].revents;
		if (re & (POLLIN | POLLERR | POLLHUP)) {
			int rc = mosquitto_loop_read(l->m, 1);
			if (rc != MOSQ_ERR_SUCCESS && !l->lost)
				note_failure(l, rc);
		}
		if ((re & (POLLERR | POLLHUP)) && !l->lost) {
			/* e.g. a refused non-blocking connect, which libmosquitto
			 * does not always report as an error */
			int err = 0;
			socklen_t len = sizeof(err);
			getsockopt(fds[0].fd, SOL_SOCKET, SO_ERROR, &err, &len);
			errno = err ? err : ECONNRESET;
			note_failure(l, MOSQ_ERR_ERRNO);
		}
		if (!l->lost && l->m && (re & POLLOUT)) {
			int rc = mosquitto_loop_write(l->m, 1);
			if (rc != MOSQ_ERR_SUCCESS && !l->lost)
				note_failure(l, rc);
		}
	}
	service(l);
}

static long long min_ll(long long a, long long b)
{
	return a < b ? a : b;
}

int mqtt_link_timeout_ms(struct mqtt_link *l)
{
	long long now = now_ms(l), t = LLONG_MAX;
	if (l->lost)
		return 0;
	if (l->state == LINK_IDLE && l->configured)
		t = l->next_attempt_ms - now;
	if (l->state == LINK_CONNECTING)
		t = l->deadline_ms - now;
	if (l->state == LINK_UP) {
		t = l->next_misc_ms - now;
		if (l->p.session_max_ms > 0)
			t = min_ll(t, l->connected_ms + l->p.session_max_ms - now);
	}
	long long wall = agent_now(l->ctx);
	long long oldest = outbox_oldest_unspooled(&l->box);
	if (oldest >= 0 && l->box.spool_max > 0)
	{
		long long due = (oldest + SPOOL_DELAY_S - wall) * 1000 + 1;
		if (l->next_spool_ms - now > due)
			due = l->next_spool_ms - now;
		t = min_ll(t, due);
	}
	if (l->box.head && l->box.timeout_s > 0)
		t = min_ll(t, (l->box.head->created + l->box.timeout_s - wall) * 1000 + 1);
	if (t == LLONG_MAX)
		return -1;
	return t < 0 ? 0 : t > INT_MAX ? INT_MAX : (int)t;
}

void mqtt_link_flush(struct mqtt_link *l, int timeout_ms)
{
	long long deadline = now_ms(l) + timeout_ms;
	while (l->state == LINK_UP && l->box.count > 0 && now_ms(l) < deadline && !l->lost) {
		send_pending(l);
		struct pollfd fd;
		if (mqtt_link_pollfds(l, &fd, 1) != 1)
			break;
		long long left = deadline - now_ms(l);
		if (poll(&fd, 1, (int)(left < 100 ? left : 100)) < 0 && errno != EINTR)
			break;
		if (fd.revents & (POLLIN | POLLERR | POLLHUP))
			mosquitto_loop_read(l->m, 1);
		if (!l->lost && (fd.revents & POLLOUT))
			mosquitto_loop_write(l->m, 1);
	}
	spool_if_due(l, true);
	report_drops(l);
	if (l->m && l->state == LINK_UP && !l->lost) {
		mosquitto_disconnect(l->m);
		mosquitto_loop_write(l->m, 1);
	}
	if (l->box.count == 0)
		return;
	if (l->box.spool_max > 0 && l->box.unspooled == 0)
		agent_info(l->ctx, "%s: %zu undelivered messages are kept in %s for the next start", l->name,
			   l->box.count, l->box.dir);
	else
		agent_warn(l->ctx, "%s: %zu undelivered messages are lost (%sSpoolMaxBytes is 0 or the spool cannot "
			   "be written)", l->name, l->box.unspooled, l->prefix);
}

void mqtt_link_free(struct mqtt_link *l)
{
	if (!l)
		return;
	if (l->m)
		mosquitto_destroy(l->m);
	if (l->ssl)
		SSL_CTX_free(l->ssl);
	outbox_free(&l->box);
	mosquitto_lib_cleanup();
	free(l);
}

static struct mqtt_link *link_of(void *state)
{
	return *(struct mqtt_link **)state;
}

int mqtt_link_tp_publish(struct agent_ctx *ctx, void *state, const char *json, const char *id)
{
	(void)ctx;
	return mqtt_link_publish(link_of(state), json, id);
}

int mqtt_link_tp_pollfds(void *state, struct pollfd *fds, int max)
{
	return mqtt_link_pollfds(link_of(state), fds, max);
}

void mqtt_link_tp_on_poll(struct agent_ctx *ctx, void *state, struct pollfd *fds, int n)
{
	(void)ctx;
	mqtt_link_on_poll(link_of(state), fds, n);
}

int mqtt_link_tp_timeout_ms(void *state)
{
	return mqtt_link_timeout_ms(link_of(state));
}

void mqtt_link_tp_flush(struct agent_ctx *ctx, void *state, int ms)
{
	(void)ctx;
	mqtt_link_flush(link_of(state), ms);
}
#endif
