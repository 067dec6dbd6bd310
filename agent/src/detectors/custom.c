//feature: detector custom ON
//summary: Custom alerts: user rules from the config or twin (thresholds over any event field, allowlists, connection ranges)
#include <fnmatch.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/agent.h"
#include "lib/detect_lru.h"
#include "lib/detect_net.h"
#include "lib/detect_clock.h"
#include "lib/detect_util.h"
#include "lib/ere.h"

/* Rules are JSON objects; docs/alerts.md describes each type:
 *   threshold          {event, match, group_by, threshold, window_seconds, weight_field}
 *   failed_logins      {threshold, window_seconds}            (threshold on LoginFailed per source)
 *   active_connections {min, max}                             (established TCP connections)
 *   outbound_allowlist {cidrs}                                (remote peers of outbound connections)
 *   user_allowlist     {users, window_seconds}                (successful logins)
 *   process_allowlist  {executables}                          (globs over executable paths)
 * and all take id, severity, description, remediation, mitre. */

static const char *check_rules(const cJSON *v);

static const struct config_key keys[] = {
	{ "Custom_Rules", CFG_JSON, "[]", 0, 0, NULL,
	  "user alert rules: a JSON array of rule objects (or a string holding one); see docs/alerts.md", check_rules },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};

enum rule_type { R_THRESHOLD, R_ACTIVE_CONNECTIONS, R_OUTBOUND, R_USERS, R_PROCESSES };
enum { MAX_MATCH = 8, MAX_STATE = 1024, NAME = 48 };

struct match {
	char field[NAME];
	cJSON *value;       /* exact value, or NULL with a regex */
	regex_t re;
	bool has_re;
};

struct rule {
	enum rule_type type;
	char id[NAME];
	char alert_name[NAME + 8];
	char event[NAME];
	char severity[16];
	char description[256];
	char remediation[256];
	char mitre[24];
	struct match match[MAX_MATCH];
	int nmatch;
	char group_by[NAME];
	char weight_field[NAME];
	double threshold;
	long window;
	long min, max;
	bool conn_alerted;
	struct dnet_set cidrs;
	cJSON *names;       /* users or executable globs */
};

/* One bucket, allowlist hit or process per rule and group. */
struct slot {
	struct dbucket bucket;
	double count;
	time_t first, last;
	long long seen_ms;
	bool alerted;
	char incident[96];
};

struct custom {
	struct rule *rules;
	int nrules;
	struct dlru slots;
	long long socket_ms, process_ms;
	char *applied;      /* the Custom_Rules text the rules were built from */
	struct dclock clock;
};

/* The wall clock jumped: the windows move with it (they measure elapsed
 * time). */
static void follow_clock(struct agent_ctx *ctx, struct custom *c)
{
	long jump = dclock_jump(&c->clock, ctx);
	if (!jump)
		return;
	for (struct slot *s = dlru_next(&c->slots, NULL); s; s = dlru_next(&c->slots, s)) {
		s->first = dclock_shift(s->first, jump);
		s->last = dclock_shift(s->last, jump);
		dbucket_shift(&s->bucket, jump);
	}
}

static const char *const severities[] = { "Informational", "Low", "Medium", "High", "Critical", NULL };

/* ---- parsing and validation ---- */

static const cJSON *rules_array(const cJSON *v, cJSON **owned)
{
	*owned = NULL;
	if (cJSON_IsString(v)) {
		/* a twin may carry the array as a string */
		*owned = cJSON_Parse(v->valuestring);
		v = *owned;
	}
	return cJSON_IsArray(v) ? v : NULL;
}

static const char *check_rules(const cJSON *v)
{
	cJSON *owned;
	const cJSON *arr = rules_array(v, &owned);
	const char *why = NULL;
	if (!arr) {
		why = "a JSON array of rule objects (see docs/alerts.md)";
	} else {
		const cJSON *r;
		cJSON_ArrayForEach(r, arr) {
			if (!cJSON_IsObject(r) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r, "id")) ||
			    !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r, "type"))) {
				why = "a JSON array of rule objects, each with a string \"id\" and \"type\"";
				break;
			}
		}
	}
	cJSON_Delete(owned);
	return why;
}

static void rule_free(struct rule *r)
{
	for (int i = 0; i < r->nmatch; i++) {
		cJSON_Delete(r->match[i].value);
		if (r->match[i].has_re)
			regfree(&r->match[i].re);
	}
	dnet_set_clear(&r->cidrs);
	cJSON_Delete(r->names);
	memset(r, 0, sizeof(*r));
}

static void free_rules(struct custom *c)
{
	for (int i = 0; i < c->nrules; i++)
		rule_free(&c->rules[i]);
	free(c->rules);
	c->rules = NULL;
	c->nrules = 0;
}

/* Copies the string field `key` into out; "" when absent. Returns an error
 * for a present value that is not a fitting string. */
static const char *get_text(const cJSON *o, const char *key, char *out, size_t size, bool required)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	out[0] = 0;
	if (!v)
		return required ? "is required" : NULL;
	if (!cJSON_IsString(v) || strlen(v->valuestring) >= size || (required && !*v->valuestring))
		return "must be a non-empty string of reasonable length";
	snprintf(out, size, "%s", v->valuestring);
	return NULL;
}

static const char *get_number(const cJSON *o, const char *key, double *out, double min, double max, bool required)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!v)
		return required ? "is required" : NULL;
	if (!cJSON_IsNumber(v) || v->valuedouble < min || v->valuedouble > max)
		return "must be a number in the allowed range";
	*out = v->valuedouble;
	return NULL;
}

static const char *parse_match(struct rule *r, const cJSON *m, const char **field)
{
	if (!m)
		return NULL;
	*field = "match";
	if (!cJSON_IsObject(m))
		return "must be an object of field: value or field: {\"regex\": \"...\"}";
	const cJSON *it;
	cJSON_ArrayForEach(it, m) {
		*field = it->string;
		if (r->nmatch == MAX_MATCH)
			return "too many fields (at most 8)";
		if (strlen(it->string) >= NAME)
			return "field name too long";
		struct match *x = &r->match[r->nmatch];
		snprintf(x->field, sizeof(x->field), "%s", it->string);
		if (cJSON_IsObject(it)) {
			const cJSON *re = cJSON_GetObjectItemCaseSensitive(it, "regex");
			if (!cJSON_IsString(re) || cJSON_GetArraySize(it) != 1)
				return "an object value must be {\"regex\": \"<extended regular expression>\"}";
			const char *costly = ere_too_costly(re->valuestring);
			if (costly)
				return costly;
			if (regcomp(&x->re, re->valuestring, REG_EXTENDED | REG_NOSUB) != 0)
				return "is not a valid extended regular expression";
			x->has_re = true;
		} else if (cJSON_IsString(it) || cJSON_IsNumber(it) || cJSON_IsBool(it)) {
			x->value = cJSON_Duplicate(it, 1);
		} else {
			return "must be a string, number, boolean or {\"regex\": ...}";
		}
		r->nmatch++;
	}
	return NULL;
}

static const char *parse_names(struct rule *r, const cJSON *o, const char *key, const char **field)
{
	*field = key;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!cJSON_IsArray(v))
		return "is required: a list of strings";
	const cJSON *it;
	cJSON_ArrayForEach(it, v) {
		if (!cJSON_IsString(it) || !*it->valuestring)
			return "must hold non-empty strings only";
	}
	r->names = cJSON_Duplicate(v, 1);
	return NULL;
}

/* Parses one rule; on error returns the message and sets *field. */
static const char *parse_rule(struct rule *r, const cJSON *o, const char **field)
{
	const char *why;
	double num = 0;
	*field = "id";
	if ((why = get_text(o, "id", r->id, sizeof(r->id), true)) != NULL)
		return why;
	for (const char *p = r->id; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_' || *p == '.'))
			return "may hold only letters, digits, '-', '_' and '.'";
	snprintf(r->alert_name, sizeof(r->alert_name), "Custom:%s", r->id);
	char type[32];
	*field = "type";
	if ((why = get_text(o, "type", type, sizeof(type), true)) != NULL)
		return why;
	*field = "severity";
	if ((why = get_text(o, "severity", r->severity, sizeof(r->severity), false)) != NULL)
		return why;
	if (!*r->severity)
		strcpy(r->severity, "Medium");
	bool known = false;
	for (const char *const *s = severities; *s; s++)
		known |= strcmp(*s, r->severity) == 0;
	if (!known)
		return "must be one of Informational|Low|Medium|High|Critical";
	*field = "description";
	if ((why = get_text(o, "description", r->description, sizeof(r->description), false)) != NULL)
		return why;
	*field = "remediation";
	if ((why = get_text(o, "remediation", r->remediation, sizeof(r->remediation), false)) != NULL)
		return why;
	*field = "mitre";
	if ((why = get_text(o, "mitre", r->mitre, sizeof(r->mitre), false)) != NULL)
		return why;
	r->window = 3600;
	*field = "window_seconds";
	if ((why = get_number(o, "window_seconds", &num, 1, 7 * 86400, false)) != NULL)
		return why;
	if (num > 0)
		r->window = (long)num;

	if (strcmp(type, "threshold") == 0 || strcmp(type, "failed_logins") == 0) {
		r->type = R_THRESHOLD;
		*field = "threshold";
		if ((why = get_number(o, "threshold", &r->threshold, 1, 1e9, true)) != NULL)
			return why;
		if (strcmp(type, "failed_logins") == 0) {
			strcpy(r->event, "Login");
			strcpy(r->group_by, "RemoteAddress");
			strcpy(r->weight_field, "Weight");
			cJSON *m = cJSON_Parse("{\"Operation\":\"LoginFailed\"}");
			why = parse_match(r, m, field);
			cJSON_Delete(m);
			return why;
		}
		*field = "event";
		if ((why = get_text(o, "event", r->event, sizeof(r->event), true)) != NULL)
			return why;
		*field = "group_by";
		if ((why = get_text(o, "group_by", r->group_by, sizeof(r->group_by), false)) != NULL)
			return why;
		*field = "weight_field";
		if ((why = get_text(o, "weight_field", r->weight_field, sizeof(r->weight_field), false)) != NULL)
			return why;
		return parse_match(r, cJSON_GetObjectItemCaseSensitive(o, "match"), field);
	}
	if (strcmp(type, "active_connections") == 0) {
		r->type = R_ACTIVE_CONNECTIONS;
		double min = 0, max = 1e9;
		*field = "min";
		if ((why = get_number(o, "min", &min, 0, 1e9, false)) != NULL)
			return why;
		*field = "max";
		if ((why = get_number(o, "max", &max, 0, 1e9, false)) != NULL)
			return why;
		if (!cJSON_GetObjectItemCaseSensitive(o, "min") && !cJSON_GetObjectItemCaseSensitive(o, "max"))
			return "is required: give min, max or both";
		if (min > max)
			return "must not be below min";
		r->min = (long)min;
		r->max = (long)max;
		return NULL;
	}
	if (strcmp(type, "outbound_allowlist") == 0) {
		r->type = R_OUTBOUND;
		*field = "cidrs";
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "cidrs");
		if (!cJSON_IsArray(v) || dnet_set_add_json(&r->cidrs, v) >= 0)
			return "is required: a list of IP addresses or CIDR networks";
		return NULL;
	}
	if (strcmp(type, "user_allowlist") == 0) {
		r->type = R_USERS;
		return parse_names(r, o, "users", field);
	}
	if (strcmp(type, "process_allowlist") == 0) {
		r->type = R_PROCESSES;
		return parse_names(r, o, "executables", field);
	}
	*field = "type";
	return "must be one of threshold|failed_logins|active_connections|outbound_allowlist|user_allowlist|"
	       "process_allowlist";
}

static void configure(struct agent_ctx *ctx, void *state)
{
	struct custom *c = state;
	char *text = cJSON_PrintUnformatted(config_json(agent_config(ctx), "Custom_Rules"));
	if (text && c->applied && strcmp(text, c->applied) == 0) {
		free(text); /* another key changed: keep the rules and their state */
		return;
	}
	free(c->applied);
	c->applied = text;
	/* The rules change: their open incidents end, as a rule's index may
	 * now name another rule. */
	for (struct slot *s = dlru_next(&c->slots, NULL); s; s = dlru_next(&c->slots, s)) {
		int idx = atoi(dlru_key(&c->slots, s));
		if (s->alerted && idx >= 0 && idx < c->nrules)
			agent_alert_end(ctx, c->rules[idx].alert_name, s->incident, NULL);
	}
	free_rules(c);
	dlru_clear(&c->slots);
	cJSON *owned;
	const cJSON *arr = rules_array(config_json(agent_config(ctx), "Custom_Rules"), &owned);
	int n = cJSON_GetArraySize(arr);
	c->rules = calloc(n ? (size_t)n : 1, sizeof(*c->rules));
	int i = 0;
	const cJSON *o;
	cJSON_ArrayForEach(o, arr) {
		struct rule *r = &c->rules[c->nrules];
		const char *field = "";
		const char *why = parse_rule(r, o, &field);
		for (int k = 0; !why && k < c->nrules; k++)
			if (strcmp(c->rules[k].id, r->id) == 0) {
				why = "repeats the id of an earlier rule";
				field = "id";
			}
		if (why) {
			agent_warn(ctx, "Custom_Rules[%d] (id '%s'): '%s' %s; this rule is skipped, the others apply", i,
				   r->id, field, why);
			rule_free(r);
		} else {
			c->nrules++;
		}
		i++;
	}
	cJSON_Delete(owned);
}

static void *init(struct agent_ctx *ctx)
{
	struct custom *c = calloc(1, sizeof(*c));
	if (c && dlru_init(&c->slots, MAX_STATE, sizeof(struct slot)) != 0)
		agent_warn(ctx, "out of memory");
	return c;
}

static void fini(void *state)
{
	struct custom *c = state;
	if (!c)
		return;
	free_rules(c);
	dlru_free(&c->slots);
	free(c->applied);
	free(c);
}

/* ---- matching ---- */

static const cJSON *field_of(const cJSON *entry, const char *path)
{
	char buf[NAME];
	snprintf(buf, sizeof(buf), "%s", path);
	const cJSON *v = entry;
	char *save = NULL;
	for (char *tok = strtok_r(buf, ".", &save); tok && v; tok = strtok_r(NULL, ".", &save))
		v = cJSON_GetObjectItemCaseSensitive(v, tok);
	return v;
}

static void value_text(const cJSON *v, char *out, size_t size)
{
	if (cJSON_IsString(v))
		snprintf(out, size, "%s", v->valuestring);
	else if (cJSON_IsNumber(v))
		snprintf(out, size, "%.15g", v->valuedouble);
	else if (cJSON_IsBool(v))
		snprintf(out, size, "%s", cJSON_IsTrue(v) ? "true" : "false");
	else
		out[0] = 0;
}

static bool matches(const struct rule *r, const cJSON *entry)
{
	for (int i = 0; i < r->nmatch; i++) {
		const struct match *m = &r->match[i];
		const cJSON *v = field_of(entry, m->field);
		if (!v)
			return false;
		if (m->has_re) {
			char text[1024];
			value_text(v, text, sizeof(text));
			if (regexec(&m->re, text, 0, NULL, 0) != 0)
				return false;
		} else if (cJSON_IsNumber(m->value)) {
			if (!cJSON_IsNumber(v) || v->valuedouble != m->value->valuedouble)
				return false;
		} else if (!cJSON_Compare(v, m->value, true)) {
			return false;
		}
	}
	return true;
}

static struct slot *slot_for(struct custom *c, const struct rule *r, const char *group)
{
	char key[DLRU_KEY_MAX];
	/* A group value longer than the key's room is cut (rules group by
	 * addresses and user names, which fit); the precision says so to the
	 * compiler too. */
	snprintf(key, sizeof(key), "%d\x1f%.*s", (int)(r - c->rules), (int)sizeof(key) - 13, group);
	return dlru_get(&c->slots, key, true, NULL);
}

static void raise(struct agent_ctx *ctx, const struct rule *r, struct slot *s, const char *desc, cJSON *e)
{
	s->alerted = true;
	cJSON_AddStringToObject(e, "Rule", r->id);
	const struct alert kind = {
		.name = r->alert_name,
		.remediation = *r->remediation ? r->remediation : "Review the activity against the rule's intent.",
		.mitre = r->mitre,
	};
	dalert(ctx, &kind, r->severity, *r->description ? r->description : desc, s->incident, e);
}

static void on_threshold(struct agent_ctx *ctx, struct custom *c, const struct rule *r, const cJSON *entry)
{
	if (!matches(r, entry))
		return;
	char group[256] = "";
	const cJSON *g = NULL;
	if (*r->group_by) {
		g = field_of(entry, r->group_by);
		value_text(g, group, sizeof(group));
	}
	struct slot *s = slot_for(c, r, group);
	if (!s)
		return;
	time_t now = agent_now(ctx);
	double w = *r->weight_field ? dfield_num(entry, r->weight_field, 1) : 1;
	if (w < 0)
		w = 0;
	double leak = (double)r->window / r->threshold;
	if (!s->first || dbucket_level(&s->bucket, (double)now, leak) == 0) {
		s->first = now;
		s->count = 0;
	}
	double level = dbucket_add(&s->bucket, (double)now, w, leak);
	s->count += w;
	s->last = now;
	if (level < r->threshold || s->alerted)
		return;
	char inc[96];
	if (*r->group_by && strcmp(r->group_by, "RemoteAddress") == 0)
		dincident_addr(ctx, "", group, inc, sizeof(inc));
	else
		snprintf(inc, sizeof(inc), "%.80s", group);
	snprintf(s->incident, sizeof(s->incident), "%s", *inc ? inc : r->id);
	cJSON *e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "Event", r->event);
	cJSON_AddNumberToObject(e, "Count", s->count);
	cJSON_AddNumberToObject(e, "Threshold", r->threshold);
	cJSON_AddNumberToObject(e, "WindowSeconds", (double)r->window);
	if (g) {
		cJSON *grp = cJSON_AddObjectToObject(e, "Group");
		cJSON_AddItemToObject(grp, r->group_by, cJSON_Duplicate(g, 1));
	}
	dadd_utc(e, "FirstSeenUTC", s->first);
	dadd_utc(e, "LastSeenUTC", s->last);
	cJSON_AddItemToObject(e, "LastEntry", cJSON_Duplicate(entry, 1));
	char desc[200];
	snprintf(desc, sizeof(desc), "%.0f %s events within %ld s (threshold %.0f)", s->count, r->event, r->window,
		 r->threshold);
	raise(ctx, r, s, desc, e);
}

static void on_login(struct agent_ctx *ctx, struct custom *c, const struct rule *r, const cJSON *entry)
{
	if (strcmp(dfield_str(entry, "Operation"), "Login") != 0)
		return;
	const char *user = dfield_str(entry, "UserName");
	const cJSON *it;
	cJSON_ArrayForEach(it, r->names) {
		if (strcmp(it->valuestring, user) == 0)
			return;
	}
	struct slot *s = slot_for(c, r, user);
	if (!s)
		return;
	s->last = agent_now(ctx);
	if (s->alerted)
		return;
	snprintf(s->incident, sizeof(s->incident), "user:%s", user);
	cJSON *e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "UserName", user);
	cJSON_AddStringToObject(e, "RemoteAddress", dfield_str(entry, "RemoteAddress"));
	cJSON_AddStringToObject(e, "Executable", dfield_str(entry, "Executable"));
	cJSON_AddStringToObject(e, "Terminal", dfield_str(entry, "Terminal"));
	raise(ctx, r, s, "a login by a user who is not on the rule's list", e);
}

static void on_process(struct agent_ctx *ctx, struct custom *c, const struct rule *r, const struct process_sample *p)
{
	const char *exe = p->exe;
	long pid = p->pid;
	if (!*exe || pid <= 0)
		return; /* kernel threads */
	char path[512], base[256];
	snprintf(path, sizeof(path), "%s", exe);
	char *del = strstr(path, " (deleted)");
	if (del)
		*del = 0;
	dbasename(path, base, sizeof(base));
	const cJSON *it;
	cJSON_ArrayForEach(it, r->names) {
		const char *pat = it->valuestring;
		if (fnmatch(pat, strchr(pat, '/') ? path : base, 0) == 0)
			return;
	}
	char key[32];
	snprintf(key, sizeof(key), "pid:%ld", pid);
	struct slot *s = slot_for(c, r, key);
	if (!s)
		return;
	s->seen_ms = c->process_ms;
	if (s->alerted)
		return;
	snprintf(s->incident, sizeof(s->incident), "%s", key);
	cJSON *e = cJSON_CreateObject();
	cJSON_AddNumberToObject(e, "ProcessId", (double)pid);
	cJSON_AddStringToObject(e, "Executable", exe);
	cJSON_AddStringToObject(e, "CommandLine", p->cmdline);
	cJSON_AddNumberToObject(e, "Uid", (double)p->uid);
	raise(ctx, r, s, "a process whose executable is not on the rule's list", e);
}

static void on_sockets(struct agent_ctx *ctx, struct custom *c, const struct socket_sample *sample)
{
	/* Outbound: the local port is not one this host listens on. */
	struct dnet_ports *listening = calloc(1, sizeof(*listening));
	long established = 0;
	size_t nsock = sample->n;
	const struct dsock *tab = sample->v;
	for (size_t k = 0; k < nsock; k++) {
		struct dsock s = tab[k];
		if (s.tcp && listening && s.listening)
			listening->bits[s.lport >> 3] |= (uint8_t)(1u << (s.lport & 7));
		established += s.tcp && strcmp(s.state, "ESTABLISHED") == 0;
	}
	for (int i = 0; i < c->nrules; i++) {
		struct rule *r = &c->rules[i];
		if (r->type == R_ACTIVE_CONNECTIONS) {
			bool out = established < r->min || established > r->max;
			struct slot *s = slot_for(c, r, "");
			if (!s)
				continue;
			snprintf(s->incident, sizeof(s->incident), "connections");
			if (out && !s->alerted) {
				cJSON *e = cJSON_CreateObject();
				cJSON_AddNumberToObject(e, "ActiveConnections", (double)established);
				cJSON_AddNumberToObject(e, "Min", (double)r->min);
				cJSON_AddNumberToObject(e, "Max", (double)r->max);
				raise(ctx, r, s, "the number of established TCP connections is outside the allowed range", e);
			} else if (!out && s->alerted) {
				cJSON *e = cJSON_CreateObject();
				cJSON_AddNumberToObject(e, "ActiveConnections", (double)established);
				agent_alert_end(ctx, r->alert_name, s->incident, e);
				s->alerted = false;
			}
			continue;
		}
		if (r->type != R_OUTBOUND)
			continue;
		for (size_t k = 0; k < nsock; k++) {
			struct dsock s = tab[k];
			if (!s.remote || (listening && dnet_ports_has(listening, s.lport)) ||
			    dnet_set_match_text(&r->cidrs, s.raddr))
				continue;
			char inc[96];
			dincident_addr(ctx, "", s.raddr, inc, sizeof(inc));
			struct slot *sl = slot_for(c, r, inc);
			if (!sl)
				continue;
			sl->seen_ms = c->socket_ms;
			if (sl->alerted)
				continue;
			snprintf(sl->incident, sizeof(sl->incident), "%s", inc);
			cJSON *e = cJSON_CreateObject();
			cJSON_AddStringToObject(e, "RemoteAddress", s.raddr);
			cJSON_AddNumberToObject(e, "RemotePort", (double)s.rport);
			cJSON_AddNumberToObject(e, "LocalPort", (double)s.lport);
			cJSON_AddStringToObject(e, "Protocol", s.proto);
			cJSON_AddNumberToObject(e, "ProcessId", (double)s.pid);
			raise(ctx, r, sl, "an outbound connection to an address outside the rule's allowed networks", e);
		}
	}
	free(listening);
}

static void on_entry(struct agent_ctx *ctx, void *state, const char *event, const cJSON *entry)
{
	struct custom *c = state;
	if (!c->nrules)
		return;
	follow_clock(ctx, c);
	for (int i = 0; i < c->nrules; i++) {
		struct rule *r = &c->rules[i];
		if (r->type == R_THRESHOLD && strcmp(r->event, event) == 0)
			on_threshold(ctx, c, r, entry);
		else if (r->type == R_USERS && strcmp(event, "Login") == 0)
			on_login(ctx, c, r, entry);
	}
}

static void on_sample(struct agent_ctx *ctx, void *state, const char *kind, const void *sample)
{
	struct custom *c = state;
	if (!c->nrules)
		return;
	follow_clock(ctx, c);
	bool sockets = SAMPLE_IS_SOCKETS(kind);
	bool process = SAMPLE_IS_PROCESS(kind);
	const struct socket_sample *ss = sockets ? sample : NULL;
	const struct process_sample *ps = process ? sample : NULL;
	long long ms = ss ? ss->sample_ms : ps ? ps->sample_ms : 0;
	if ((ss || ps) && ms < 0)
		ms = agent_monotonic_ms(ctx);
	if (sockets)
		c->socket_ms = ms;
	if (process && ms > c->process_ms)
		c->process_ms = ms;
	for (int i = 0; i < c->nrules; i++) {
		struct rule *r = &c->rules[i];
		const cJSON *entry;
		/* the JSON form only for a rule over its fields */
		if (r->type == R_THRESHOLD && strcmp(r->event, kind) == 0 && (entry = agent_sample_json(ctx)))
			on_threshold(ctx, c, r, entry);
		else if (r->type == R_PROCESSES && process)
			on_process(ctx, c, r, ps);
	}
	if (sockets)
		on_sockets(ctx, c, ss);
}

static void tick(struct agent_ctx *ctx, void *state)
{
	struct custom *c = state;
	follow_clock(ctx, c);
	time_t now = agent_now(ctx);
	struct slot *next;
	for (struct slot *s = dlru_next(&c->slots, NULL); s; s = next) {
		next = dlru_next(&c->slots, s);
		int idx = atoi(dlru_key(&c->slots, s));
		if (idx < 0 || idx >= c->nrules) {
			dlru_remove(&c->slots, s);
			continue;
		}
		const struct rule *r = &c->rules[idx];
		bool over;
		switch (r->type) {
		case R_THRESHOLD:
			over = dbucket_level(&s->bucket, (double)now, (double)r->window / r->threshold) == 0;
			break;
		case R_USERS:
			over = now - s->last >= r->window;
			break;
		case R_PROCESSES:
			over = s->seen_ms + 5000 < c->process_ms;
			break;
		case R_OUTBOUND:
			over = s->seen_ms < c->socket_ms;
			break;
		default:
			over = false;
		}
		if (!over)
			continue;
		if (s->alerted)
			agent_alert_end(ctx, r->alert_name, s->incident, NULL);
		dlru_remove(&c->slots, s);
	}
}

const struct detector detector_custom = {
	.name = "custom",
	.keys = keys,
	.init = init,
	.on_entry = on_entry,
	.on_sample = on_sample,
	.tick = tick,
	.configure = configure,
	.fini = fini,
};
