//feature: detector brute_force ON
//summary: Brute force: failed logins per source and per user in leaky buckets and a sliding window; a success after it is Critical
//requires: login
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/agent.h"
#include "lib/detect_lru.h"
#include "lib/detect_net.h"
#include "lib/detect_clock.h"
#include "lib/detect_util.h"

#define RING 10       /* slots of the sliding window */
#define DISTINCT 16   /* distinct users (per source) or sources (per user) remembered */
#define NAMES 4       /* of which the names kept for evidence, */
#define NAMES_BYTES 80 /* packed (4 IPv4 addresses or typical user names fit) */
#define SLOW_TIMES 8  /* failure times kept for the low-and-slow variant */
/* Past this many per-source alerts within BruteForce_WindowSeconds, further
 * sources join one "many-sources" incident: a flood from thousands of
 * addresses gives a bounded number of alerts, not thousands. */
#define MAX_SOURCE_ALERTS 64

static const struct config_key keys[] = {
	{ "BruteForce_FastThreshold", CFG_INT, "5", 1, 100000, NULL,
	  "failed logins from one source that trip the fast bucket", NULL },
	{ "BruteForce_FastLeakSeconds", CFG_INT, "10", 1, 86400, NULL,
	  "the fast bucket forgets one failure every this many seconds", NULL },
	{ "BruteForce_SlowThreshold", CFG_INT, "10", 1, 100000, NULL,
	  "failed logins from one source that trip the slow bucket", NULL },
	{ "BruteForce_SlowLeakSeconds", CFG_INT, "60", 1, 86400, NULL,
	  "the slow bucket forgets one failure every this many seconds", NULL },
	{ "BruteForce_WindowThreshold", CFG_INT, "5", 1, 100000, NULL,
	  "failed logins from one source within BruteForce_WindowSeconds that trip the window", NULL },
	{ "BruteForce_WindowSeconds", CFG_INT, "600", 10, 86400, NULL,
	  "sliding window; also how long a source must stay quiet for its incident to end", NULL },
	{ "BruteForce_UserEnumThreshold", CFG_INT, "5", 2, DISTINCT, NULL,
	  "distinct user names tried by one source within the window (user enumeration)", NULL },
	{ "BruteForce_LowSlowCount", CFG_INT, "4", 2, SLOW_TIMES, NULL,
	  "failures from one source, spread out, that make a low-and-slow attack", NULL },
	{ "BruteForce_LowSlowGapSeconds", CFG_INT, "600", 1, 86400, NULL,
	  "a low-and-slow attack's median gap between failures is at least this", NULL },
	{ "BruteForce_LowSlowSeconds", CFG_INT, "7200", 60, 604800, NULL,
	  "the period over which low-and-slow failures are counted", NULL },
	{ "BruteForce_PrivilegedUsers", CFG_LIST, "root,admin", 0, 0, NULL,
	  "targets that raise a brute-force alert from High to Critical", NULL },
	{ "BruteForce_AllowedSources", CFG_LIST, "", 0, 0, NULL,
	  "addresses or CIDR networks whose failed logins are never counted", dnet_check_list },
	{ "BruteForce_SuccessSeconds", CFG_INT, "3600", 0, 604800, NULL,
	  "a successful login from a source this long after its brute-force incident ended is still BruteForceSuccess",
	  NULL },
	{ "BruteForce_MaxTracked", CFG_INT, "1024", 16, 65536, NULL,
	  "sources and users tracked at once (least recently seen dropped first)", NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};

static const struct alert source_alert = {
	.name = "BruteForce",
	.remediation = "Block the source address, require key-based authentication, disable password "
		       "logins for root and rate-limit the login service (sshd MaxAuthTries, dropbear -j -k).",
	.mitre = "T1110",
};
static const struct alert user_alert = {
	.name = "BruteForce",
	.remediation = "A distributed password-guessing attack targets this account: disable password "
		       "logins for it, use keys, and block the sources.",
	.mitre = "T1110",
};
static const struct alert storm_alert = {
	.name = "BruteForce",
	.description = "failed logins from more sources at once than are alerted one by one",
	.remediation = "A large distributed password-guessing attack: keep the login service off the "
		       "internet or behind a VPN, use keys only, and rate-limit new connections.",
	.mitre = "T1110",
};
static const struct alert success_alert = {
	.name = "BruteForceSuccess",
	.severity = "Critical",
	.remediation = "Treat the account as compromised: end its sessions, change its password or keys, "
		       "block the source and inspect the device for changes made since the login.",
	.mitre = "T1110",
};

/* Failures seen from one source (or against one user). */
struct counts {
	struct dbucket fast, slow;
	uint32_t ring[RING];
	long long ring_slot;          /* slot number of ring's newest slot */
	float failed, invalid;        /* weighted, since the first failure of this run */
	time_t first, last;
	time_t alerted;               /* an open BruteForce incident started then */
	time_t ended;                 /* when the last incident ended */
	time_t slow_times[SLOW_TIMES]; /* latest failures, oldest first (kept across restarts) */
	time_t lowslow_alerted;        /* last low-and-slow alert (kept across restarts) */
	time_t success;               /* an open BruteForceSuccess incident started then */
	bool privileged;
	bool in_storm;
	const char *variant;          /* the variant that tripped (a literal) */
	uint32_t distinct[DISTINCT];
	uint8_t ndistinct;
	uint8_t nnames, names_len;
	char names[NAMES_BYTES];      /* user names, or addresses, each NUL-terminated */
};

struct bf {
	struct dlru sources, users;
	struct dnet_set allowed;
	struct dlist privileged;
	struct dbucket source_alerts;
	struct counts storm;          /* the many-sources incident */
	long fast_n, fast_leak, slow_n, slow_leak, win_n, win_s, enum_n, success_s, max;
	long ls_n, ls_gap, ls_s;
	struct dclock clock;
};

static void configure(struct agent_ctx *ctx, void *state)
{
	struct bf *b = state;
	const struct agent_config *c = agent_config(ctx);
	b->fast_n = config_int(c, "BruteForce_FastThreshold");
	b->fast_leak = config_int(c, "BruteForce_FastLeakSeconds");
	b->slow_n = config_int(c, "BruteForce_SlowThreshold");
	b->slow_leak = config_int(c, "BruteForce_SlowLeakSeconds");
	b->win_n = config_int(c, "BruteForce_WindowThreshold");
	b->win_s = config_int(c, "BruteForce_WindowSeconds");
	b->enum_n = config_int(c, "BruteForce_UserEnumThreshold");
	b->success_s = config_int(c, "BruteForce_SuccessSeconds");
	b->ls_n = config_int(c, "BruteForce_LowSlowCount");
	b->ls_gap = config_int(c, "BruteForce_LowSlowGapSeconds");
	b->ls_s = config_int(c, "BruteForce_LowSlowSeconds");
	long max = config_int(c, "BruteForce_MaxTracked");
	if (max != b->max) {
		dlru_free(&b->sources);
		dlru_free(&b->users);
		if (dlru_init(&b->sources, (size_t)max, sizeof(struct counts)) != 0 ||
		    dlru_init(&b->users, (size_t)max / 2, sizeof(struct counts)) != 0)
			agent_warn(ctx, "out of memory for %ld tracked sources", max);
		b->max = max;
	}
	dnet_set_clear(&b->allowed);
	dnet_set_add_json(&b->allowed, config_json(c, "BruteForce_AllowedSources"));
	dlist_get(&b->privileged, c, "BruteForce_PrivilegedUsers");
}

static void *init(struct agent_ctx *ctx)
{
	(void)ctx;
	struct bf *b = calloc(1, sizeof(*b));
	return b;
}

static void fini(void *state)
{
	struct bf *b = state;
	dlru_free(&b->sources);
	dlru_free(&b->users);
	dnet_set_clear(&b->allowed);
	free(b);
}

static uint32_t hash32(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h ? h : 1;
}

/* The wall clock jumped: move every kept time with it, so that windows
 * and quiet periods go on measuring elapsed time (log lines written after
 * the jump carry the new clock). */
static void shift_counts(const struct bf *b, struct counts *k, long jump)
{
	dbucket_shift(&k->fast, jump);
	dbucket_shift(&k->slow, jump);
	k->first = dclock_shift(k->first, jump);
	k->last = dclock_shift(k->last, jump);
	k->alerted = dclock_shift(k->alerted, jump);
	k->ended = dclock_shift(k->ended, jump);
	k->success = dclock_shift(k->success, jump);
	k->lowslow_alerted = dclock_shift(k->lowslow_alerted, jump);
	for (int i = 0; i < SLOW_TIMES; i++)
		k->slow_times[i] = dclock_shift(k->slow_times[i], jump);
	if (!k->ring_slot)
		return;
	long long slot_len = b->win_s / RING > 0 ? b->win_s / RING : 1;
	long long d = jump / slot_len, r = ((d % RING) + RING) % RING;
	uint32_t ring[RING];
	for (int i = 0; i < RING; i++)
		ring[(i + r) % RING] = k->ring[i];
	memcpy(k->ring, ring, sizeof(ring));
	k->ring_slot += d;
}

static void follow_clock(struct agent_ctx *ctx, struct bf *b)
{
	long jump = dclock_jump(&b->clock, ctx);
	if (!jump)
		return;
	for (struct counts *k = dlru_next(&b->sources, NULL); k; k = dlru_next(&b->sources, k))
		shift_counts(b, k, jump);
	for (struct counts *k = dlru_next(&b->users, NULL); k; k = dlru_next(&b->users, k))
		shift_counts(b, k, jump);
	shift_counts(b, &b->storm, jump);
	dbucket_shift(&b->source_alerts, jump);
}

static uint32_t window_sum(struct counts *k, long long slot)
{
	uint32_t sum = 0;
	for (long long s = slot - RING + 1; s <= slot; s++)
		if (s <= k->ring_slot && s > k->ring_slot - RING && s >= 0)
			sum += k->ring[s % RING];
	return sum;
}

/* CrowdSec's time-based variant: at least ls_n failures within ls_s
 * seconds whose median gap is at least ls_gap: too slow for every bucket
 * and window, too regular for typos. Records t. */
static bool low_and_slow(const struct bf *b, struct counts *k, time_t t)
{
	memmove(k->slow_times, k->slow_times + 1, sizeof(k->slow_times) - sizeof(k->slow_times[0]));
	k->slow_times[SLOW_TIMES - 1] = t;
	if (k->lowslow_alerted && t - k->lowslow_alerted < b->ls_s)
		return false;
	long gaps[SLOW_TIMES];
	int n = 0;
	for (int i = 1; i < SLOW_TIMES; i++)
		if (k->slow_times[i - 1] && t - k->slow_times[i - 1] <= b->ls_s)
			gaps[n++] = (long)(k->slow_times[i] - k->slow_times[i - 1]);
	if (n + 1 < b->ls_n)
		return false;
	for (int i = 1; i < n; i++) /* insertion sort: at most 7 gaps */
		for (int j = i; j > 0 && gaps[j - 1] > gaps[j]; j--) {
			long x = gaps[j];
			gaps[j] = gaps[j - 1];
			gaps[j - 1] = x;
		}
	return gaps[n / 2] >= b->ls_gap;
}

/* Keep a name for the evidence: the first NAMES that fit (each cut at 63
 * bytes, as the old fixed slots did). */
static void keep_name(struct counts *k, const char *name)
{
	size_t n = strnlen(name, 63);
	if (k->nnames == NAMES || k->names_len + n + 1 > sizeof(k->names))
		return;
	memcpy(k->names + k->names_len, name, n);
	k->names[k->names_len + n] = 0;
	k->names_len += (uint8_t)(n + 1);
	k->nnames++;
}

/* Count one failure; returns the variant that tripped, or NULL. */
static const char *count_failure(const struct bf *b, struct counts *k, time_t t, double weight, const char *other,
				 bool privileged, bool enumeration)
{
	if (k->last && t - k->last > b->win_s && !k->alerted && !k->success) {
		/* quiet for a whole window: start over (the low-and-slow
		 * record spans windows) */
		struct counts keep = *k;
		memset(k, 0, sizeof(*k));
		k->ended = keep.ended;
		memcpy(k->slow_times, keep.slow_times, sizeof(k->slow_times));
		k->lowslow_alerted = keep.lowslow_alerted;
	}
	if (!k->first)
		k->first = t;
	if (t > k->last)
		k->last = t;
	k->failed += weight;
	k->privileged |= privileged;
	double fast = dbucket_add(&k->fast, (double)t, weight, (double)b->fast_leak);
	double slow = dbucket_add(&k->slow, (double)t, weight, (double)b->slow_leak);

	long long slot_len = b->win_s / RING > 0 ? b->win_s / RING : 1;
	long long slot = (long long)t / slot_len;
	if (slot > k->ring_slot) {
		for (long long s = k->ring_slot + 1; s <= slot && s <= k->ring_slot + RING; s++)
			k->ring[s % RING] = 0;
		k->ring_slot = slot;
	}
	if (slot > k->ring_slot - RING)
		k->ring[slot % RING] += (uint32_t)weight;

	if (other && *other) {
		uint32_t h = hash32(other);
		bool seen = false;
		for (int i = 0; i < k->ndistinct; i++)
			seen |= k->distinct[i] == h;
		if (!seen && k->ndistinct < DISTINCT)
			k->distinct[k->ndistinct++] = h;
		if (!seen)
			keep_name(k, other);
	}
	bool tripped = fast >= (double)b->fast_n || slow >= (double)b->slow_n ||
		       window_sum(k, slot) >= (uint32_t)b->win_n;
	bool spread = enumeration && low_and_slow(b, k, t); /* sources only; records t */
	if (spread && !tripped) {
		k->lowslow_alerted = t;
		return "low-and-slow";
	}
	if (enumeration && k->ndistinct >= b->enum_n)
		return "user-enumeration";
	if (!tripped)
		return NULL;
	return fast >= (double)b->fast_n ? "fast" : slow >= (double)b->slow_n ? "slow" : "window";
}

static long variant_seconds(const struct bf *b, const char *variant)
{
	if (strcmp(variant, "fast") == 0)
		return b->fast_n * b->fast_leak;
	if (strcmp(variant, "slow") == 0)
		return b->slow_n * b->slow_leak;
	if (strcmp(variant, "low-and-slow") == 0)
		return b->ls_s;
	return b->win_s;
}

static cJSON *names_array(const struct counts *k)
{
	cJSON *a = cJSON_CreateArray();
	const char *name = k->names;
	for (int i = 0; i < k->nnames; i++, name += strlen(name) + 1)
		cJSON_AddItemToArray(a, cJSON_CreateString(name));
	return a;
}

static cJSON *evidence(const struct bf *b, const struct counts *k)
{
	cJSON *e = cJSON_CreateObject();
	cJSON_AddNumberToObject(e, "FailedCount", k->failed);
	cJSON_AddNumberToObject(e, "InvalidUserCount", k->invalid);
	cJSON_AddNumberToObject(e, "WindowSeconds", (double)variant_seconds(b, k->variant));
	cJSON_AddStringToObject(e, "Variant", k->variant);
	dadd_utc(e, "FirstSeenUTC", k->first);
	dadd_utc(e, "LastSeenUTC", k->last);
	return e;
}

static const char *severity(const struct counts *k)
{
	return k->privileged ? "Critical" : "High";
}

static void raise_source(struct agent_ctx *ctx, struct bf *b, struct counts *k, const char *addr, const char *exe)
{
	cJSON *e = evidence(b, k);
	cJSON_AddStringToObject(e, "RemoteAddress", addr);
	cJSON_AddItemToObject(e, "Users", names_array(k));
	cJSON_AddNumberToObject(e, "DistinctUsers", k->ndistinct);
	if (*exe)
		cJSON_AddStringToObject(e, "Executable", exe);
	char desc[256], inc[96];
	snprintf(desc, sizeof(desc), "%.0f failed logins from one source (%s threshold)", k->failed, k->variant);
	dincident_addr(ctx, "", addr, inc, sizeof(inc));
	dalert(ctx, &source_alert, severity(k), desc, inc, e);
}

static void raise_user(struct agent_ctx *ctx, struct bf *b, struct counts *k, const char *user)
{
	cJSON *e = evidence(b, k);
	cJSON_AddStringToObject(e, "UserName", user);
	cJSON_AddItemToObject(e, "RemoteAddresses", names_array(k));
	cJSON_AddNumberToObject(e, "DistinctSources", k->ndistinct);
	char inc[80], desc[256];
	snprintf(inc, sizeof(inc), "user:%s", user);
	snprintf(desc, sizeof(desc), "%.0f failed logins for one user from %d or more sources (%s threshold)",
		 k->failed, k->ndistinct, k->variant);
	dalert(ctx, &user_alert, severity(k), desc, inc, e);
}

static void incident_of(const struct agent_ctx *ctx, const char *key, bool user, char *out, size_t size)
{
	if (user)
		snprintf(out, size, "user:%s", key);
	else
		dincident_addr(ctx, "", key, out, size);
}

static cJSON *end_evidence(const struct counts *k)
{
	cJSON *e = cJSON_CreateObject();
	cJSON_AddNumberToObject(e, "FailedCount", k->failed);
	dadd_utc(e, "LastSeenUTC", k->last);
	return e;
}

/* The entry for key; when the map is full the least recent entry goes, and
 * its open incidents end with it rather than stay open for ever. */
/* End k's open incidents: its source or user was quiet for a window, or
 * leaves the table. */
static void end_incidents(struct agent_ctx *ctx, const struct dlru *m, struct counts *k, bool user, time_t now)
{
	if (!k->alerted && !k->success)
		return;
	char inc[96];
	incident_of(ctx, dlru_key(m, k), user, inc, sizeof(inc));
	if (k->alerted) {
		agent_alert_end(ctx, source_alert.name, inc, end_evidence(k));
		k->ended = now;
	}
	if (k->success)
		agent_alert_end(ctx, success_alert.name, inc, end_evidence(k));
	k->alerted = k->success = 0;
	k->in_storm = false;
}

static struct counts *tracked(struct agent_ctx *ctx, struct dlru *m, const char *key, bool user)
{
	struct counts *old = m->len == m->capacity && !dlru_peek(m, key) ? dlru_oldest(m) : NULL;
	if (old)
		end_incidents(ctx, m, old, user, agent_now(ctx));
	return dlru_get(m, key, true, NULL);
}

static void raise_storm(struct agent_ctx *ctx, struct bf *b, struct counts *s, const char *addr, time_t t)
{
	struct counts *k = &b->storm;
	s->in_storm = true;
	if (!k->first)
		k->first = s->first;
	if (t > k->last)
		k->last = t;
	k->failed += s->failed;
	k->privileged |= s->privileged;
	k->ndistinct = k->ndistinct < 255 ? k->ndistinct + 1 : 255;
	keep_name(k, addr);
	if (k->alerted)
		return;
	k->alerted = agent_now(ctx);
	k->variant = s->variant;
	cJSON *e = evidence(b, k);
	cJSON_AddItemToObject(e, "RemoteAddresses", names_array(k));
	cJSON_AddNumberToObject(e, "SourcesAlertedSeparately", MAX_SOURCE_ALERTS);
	dalert(ctx, &storm_alert, severity(k), NULL, "many-sources", e);
}

static void on_failure(struct agent_ctx *ctx, struct bf *b, const cJSON *entry, time_t t)
{
	const char *addr = dfield_str(entry, "RemoteAddress");
	const char *user = dfield_str(entry, "UserName");
	const char *exe = dfield_str(entry, "Executable");
	double weight = dfield_num(entry, "Weight", 1);
	double hits = dfield_num(entry, "HitCount", 1);
	if (weight < 1 || weight > 100)
		weight = 1;
	if (hits > 1 && hits < 100000)
		weight *= hits;
	if (*addr && dnet_set_match_text(&b->allowed, addr))
		return;
	bool privileged = *user && dlist_has(&b->privileged, user);
	/* Local failures (console, su) have no address: one source per program. */
	char local[64];
	if (!*addr) {
		snprintf(local, sizeof(local), "local:%s", *exe ? exe : "login");
		addr = local;
	}

	struct counts *s = tracked(ctx, &b->sources, addr, false);
	if (s) {
		const char *v = count_failure(b, s, t, weight, user, privileged, true);
		if (dfield_bool(entry, "InvalidUser"))
			s->invalid += weight;
		if (v && !s->alerted) {
			s->variant = v;
			s->alerted = agent_now(ctx);
			double leak = (double)b->win_s / MAX_SOURCE_ALERTS;
			if (b->storm.alerted || dbucket_level(&b->source_alerts, (double)t, leak) >= MAX_SOURCE_ALERTS) {
				raise_storm(ctx, b, s, addr, t);
			} else {
				dbucket_add(&b->source_alerts, (double)t, 1, leak);
				raise_source(ctx, b, s, addr, exe);
			}
		} else if (s->in_storm && t > b->storm.last) {
			b->storm.last = t;
			b->storm.failed += weight;
		}
	}
	if (!*user)
		return;
	struct counts *u = tracked(ctx, &b->users, user, true);
	if (u) {
		const char *v = count_failure(b, u, t, weight, addr, privileged, false);
		/* One source is the per-source alert's business; this one is for
		 * attacks spread over many addresses. */
		if (v && !u->alerted && u->ndistinct >= 2) {
			u->variant = v;
			u->alerted = agent_now(ctx);
			raise_user(ctx, b, u, user);
		}
	}
}

static void on_success(struct agent_ctx *ctx, struct bf *b, const cJSON *entry, time_t t)
{
	const char *addr = dfield_str(entry, "RemoteAddress");
	const char *user = dfield_str(entry, "UserName");
	if (!*addr)
		return;
	struct counts *s = dlru_peek(&b->sources, addr);
	struct counts *u = *user ? dlru_peek(&b->users, user) : NULL;
	bool from_source = s && (s->alerted || (s->ended && t - s->ended <= b->success_s));
	bool from_spread = false;
	if (u && u->alerted) {
		uint32_t h = hash32(addr);
		for (int i = 0; i < u->ndistinct; i++)
			from_spread |= u->distinct[i] == h;
	}
	if (!from_source && !from_spread)
		return;
	if (!s)
		s = dlru_get(&b->sources, addr, true, NULL);
	if (!s || s->success)
		return;
	s->success = agent_now(ctx);
	const struct counts *k = from_source ? s : u;
	cJSON *e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "RemoteAddress", addr);
	cJSON_AddStringToObject(e, "UserName", user);
	cJSON_AddNumberToObject(e, "FailedCount", k->failed);
	cJSON_AddItemToObject(e, "Users", from_source ? names_array(s) : cJSON_CreateArray());
	dadd_utc(e, "FirstSeenUTC", k->first);
	dadd_utc(e, "LastSeenUTC", k->last);
	dadd_utc(e, "LoginTimeUTC", t);
	cJSON_AddStringToObject(e, "Executable", dfield_str(entry, "Executable"));
	char desc[256], inc[96];
	snprintf(desc, sizeof(desc), "successful login as '%.64s' from a source that was brute-forcing", user);
	dincident_addr(ctx, "", addr, inc, sizeof(inc));
	dalert(ctx, &success_alert, NULL, desc, inc, e);
}

static void on_entry(struct agent_ctx *ctx, void *state, const char *event, const cJSON *entry)
{
	struct bf *b = state;
	if (event[0] != 'L' || strcmp(event, "Login") != 0) /* every entry comes here */
		return;
	follow_clock(ctx, b);
	time_t now = agent_now(ctx);
	time_t t = dparse_utc(dfield_str(entry, "TimestampUTC"));
	if (t == (time_t)-1 || t > now + 300)
		t = now;
	long horizon = b->win_s;
	if (b->slow_n * b->slow_leak > horizon)
		horizon = b->slow_n * b->slow_leak;
	if (b->fast_n * b->fast_leak > horizon)
		horizon = b->fast_n * b->fast_leak;
	const char *op = dfield_str(entry, "Operation");
	if (strcmp(op, "LoginFailed") == 0) {
		/* Lines from before the agent started (the first read of a log)
		 * count only if they are still inside a window. */
		if (t < now - horizon)
			return;
		on_failure(ctx, b, entry, t);
	} else if (strcmp(op, "Login") == 0) {
		if (t < now - b->success_s - horizon)
			return;
		on_success(ctx, b, entry, t);
	}
}

/* Logins only: taking samples here keeps the core from building their
 * JSON form for on_entry. */
static void on_sample(struct agent_ctx *ctx, void *state, const char *kind, const void *sample)
{
	(void)ctx;
	(void)state;
	(void)kind;
	(void)sample;
}

/* End the incidents of the sources or users quiet for a window. */
static void quiet(struct agent_ctx *ctx, const struct bf *b, struct dlru *m, bool user, time_t now)
{
	for (struct counts *k = dlru_next(m, NULL); k; k = dlru_next(m, k))
		if (now - (k->last > k->success ? k->last : k->success) >= b->win_s)
			end_incidents(ctx, m, k, user, now);
}

static void tick(struct agent_ctx *ctx, void *state)
{
	struct bf *b = state;
	follow_clock(ctx, b);
	time_t now = agent_now(ctx);
	quiet(ctx, b, &b->sources, false, now);
	if (b->storm.alerted && now - b->storm.last >= b->win_s) {
		agent_alert_end(ctx, source_alert.name, "many-sources", end_evidence(&b->storm));
		memset(&b->storm, 0, sizeof(b->storm));
	}
	quiet(ctx, b, &b->users, true, now);
}

const struct detector detector_brute_force = {
	.name = "brute_force",
	.keys = keys,
	.init = init,
	.on_entry = on_entry,
	.on_sample = on_sample,
	.tick = tick,
	.configure = configure,
	.fini = fini,
};
