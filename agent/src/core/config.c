#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config_internal.h"
#include "core/registry.h"

/* Keys of the core itself. */
static const char *check_intervals(const cJSON *v);
static const struct config_key core_keys[] = {
	{ "CollectorsCore_PriorityIntervals", CFG_STRING, "30,120,1440", 0, 64, NULL,
	  CONFIG_HELP("High,Medium,Low message intervals in minutes (decimals allowed: \"0.1\" is 6 s)"),
	  check_intervals },
#ifndef AGENT_NO_MASK_ADDRESSES
	{ "Agent_MaskRemoteAddresses", CFG_BOOL, "false", 0, 0, NULL,
	  CONFIG_HELP("privacy: replace remote IP addresses in events by a keyed hash"), NULL },
#endif
	{ "Agent_Transport", CFG_STRING, "", 0, 32, NULL,
	  CONFIG_HELP("transport to use; empty: the first compiled in (iothub, local, mqtt)"), NULL },
	{ "Agent_StateDirectory", CFG_STRING, "/var/lib/defender-iot", 0, 1024, NULL,
	  CONFIG_HELP("directory for state that survives a restart (spool, agent id, baselines)"), NULL },
	{ "Agent_Id", CFG_STRING, "", 0, 64, NULL,
	  CONFIG_HELP("agent id sent in every message; empty: derived from /etc/machine-id"), NULL },
	{ "Agent_MaxMessageBytes", CFG_INT, "200000", 4096, 262144, NULL,
	  CONFIG_HELP("split security messages larger than this (IoT Hub refuses over 256 KB)"), NULL },
#ifndef AGENT_NO_RUN_AS_USER
	{ "Agent_RunAsUser", CFG_STRING, "", 0, 32, NULL,
	  CONFIG_HELP("when started as root, switch to this user keeping only the capabilities the collectors need"), NULL },
#endif
	{ "Agent_LogLevel", CFG_ENUM, "info", 0, 0, "debug|info|warning|error",
	  CONFIG_HELP("least severe log level written to stderr"), NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};

static const char *check_intervals(const cJSON *v)
{
	const char *s = agent_json_is(v, cJSON_String) ? v->valuestring : NULL;
	int n = 0;
	while (s && *s) {
		char *end;
		errno = 0;
		double d = strtod(s, &end);
		if (end == s || errno || !(d > 0) || d > 525600)
			return "three positive numbers of minutes, e.g. \"30,120,1440\"";
		n++;
		s = end;
		if (*s == ',')
			s++;
		else if (*s)
			return "three positive numbers of minutes, e.g. \"30,120,1440\"";
	}
	return n == 3 ? NULL : "three positive numbers of minutes, e.g. \"30,120,1440\"";
}

/* Keys of core capabilities that this build left out (agent/CMakeLists.txt),
 * as "Key\0OPTION\0" pairs: setting one is an error saying so. Empty, as in
 * the default build, it costs nothing. */
static const char left_out[] = ""
#ifdef AGENT_NO_MASK_ADDRESSES
	"Agent_MaskRemoteAddresses\0AGENT_MASK_ADDRESSES\0"
#endif
#ifdef AGENT_NO_RUN_AS_USER
	"Agent_RunAsUser\0AGENT_RUN_AS_USER\0"
#endif
	;

/* The build option that left key out, or NULL. */
static const char *left_out_by(const char *key)
{
	for (const char *p = left_out; *p;) {
		const char *option = p + strlen(p) + 1;
		if (strcmp(p, key) == 0)
			return option;
		p = option + strlen(option) + 1;
	}
	return NULL;
}

static const struct config_key generated_templates[] = {
	{ "%s_Disabled", CFG_BOOL, "false", 0, 0, NULL, CONFIG_HELP("turn the %s collector off"), NULL },
	{ "%s_MessageFrequency", CFG_ENUM, NULL, 0, 0, "Low|Medium|High",
	  CONFIG_HELP("which priority interval sends the %s events"), NULL },
	{ "%s_CacheSize", CFG_INT, "1024", 1, 65536, NULL,
	  CONFIG_HELP("most %s entries kept between two messages (the oldest is dropped)"), NULL },
};

static const char priority_names[][7] = { "High", "Medium", "Low" };

/* Size (docs/footprint.md): each libc function the agent imports costs ~85
 * bytes of linker tables, so strncasecmp (the agent never sets a locale:
 * ASCII) is done here. */
static int lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static bool same_word(const char *s, const char *word, size_t n)
{
	for (; n; n--, s++, word++) {
		if (lower((unsigned char)*s) != lower((unsigned char)*word))
			return false;
		if (!*s)
			break;
	}
	return true;
}

static bool is_word(const char *s, const char *word)
{
	return same_word(s, word, strlen(word) + 1);
}

static void add_entry(struct agent_config *cfg, size_t *cap, const struct config_key *k,
		      char *owned_name, char *owned_help)
{
	if (cfg->count == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		cfg->entries = realloc(cfg->entries, *cap * sizeof(*cfg->entries));
		if (!cfg->entries)
			abort();
	}
	struct config_entry *e = &cfg->entries[cfg->count++];
	memset(e, 0, sizeof(*e));
	e->key = *k;
	e->owned_name = owned_name;
	e->owned_help = owned_help;
	if (owned_name)
		e->key.name = owned_name;
	if (owned_help)
		e->key.help = owned_help;
}

static void add_table(struct agent_config *cfg, size_t *cap, const struct config_key *keys)
{
	for (; keys && keys->name; keys++)
		add_entry(cfg, cap, keys, NULL, NULL);
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
/* fmt is one of generated_templates' fixed strings, each with one %s. */
static char *xasprintf(const char *fmt, const char *arg)
{
	size_t n = strlen(fmt) + strlen(arg); /* one %s replaced by arg: n - 1 bytes */
	char *s = malloc(n);
	if (!s)
		abort();
	snprintf(s, n, fmt, arg);
	return s;
}
#pragma GCC diagnostic pop

static int set_value(struct config_entry *e, const cJSON *v, char *err, size_t errsize);

struct agent_config *config_new(void)
{
	struct agent_config *cfg = calloc(1, sizeof(*cfg));
	size_t cap = 0;
	if (!cfg)
		abort();
	add_table(cfg, &cap, core_keys);
	for (const struct collector *const *c = agent_collectors; *c; c++) {
		for (size_t i = 0; i < sizeof(generated_templates) / sizeof(generated_templates[0]); i++) {
			struct config_key k = generated_templates[i];
			if (i == 2 && (*c)->category != CATEGORY_AGGREGATED)
				continue;
			if (i == 1)
				k.def = priority_names[(*c)->priority];
			add_entry(cfg, &cap, &k, xasprintf(k.name, (*c)->event_name),
				  k.help ? xasprintf(k.help, (*c)->event_name) : NULL);
		}
		add_table(cfg, &cap, (*c)->keys);
	}
	for (const struct detector *const *d = agent_detectors; *d; d++)
		add_table(cfg, &cap, (*d)->keys);
	for (const struct transport *const *t = agent_transports; *t; t++)
		add_table(cfg, &cap, (*t)->keys);

	for (size_t i = 0; i < cfg->count; i++) {
		struct config_entry *e = &cfg->entries[i];
		char err[256];
		cJSON *v = NULL;
		if (!e->key.def)
			continue;
		switch (e->key.type) {
		case CFG_BOOL:
			v = cJSON_CreateBool(strcmp(e->key.def, "true") == 0);
			break;
		case CFG_INT:
			v = cJSON_CreateNumber(strtol(e->key.def, NULL, 10));
			break;
		case CFG_JSON:
			v = cJSON_ParseWithOpts(e->key.def, NULL, 1);
			break;
		default:
			v = cJSON_CreateString(e->key.def);
		}
		if (!v || set_value(e, v, err, sizeof(err)) != 0) {
			fprintf(stderr, "defender-iot-agent: bad built-in default for %s: %s\n", e->key.name, err);
			abort();
		}
		cJSON_Delete(v);
	}
	return cfg;
}

static void entry_clear(struct config_entry *e)
{
	cJSON_Delete(e->value);
	e->value = NULL;
	if (e->list) {
		for (size_t i = 0; i < e->list_len; i++)
			free(e->list[i]);
		free(e->list);
	}
	e->list = NULL;
	e->list_len = 0;
}

void config_free(struct agent_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->count; i++) {
		entry_clear(&cfg->entries[i]);
		free(cfg->entries[i].owned_name);
		free(cfg->entries[i].owned_help);
	}
	free(cfg->entries);
	free(cfg->path);
	free(cfg);
}

struct agent_config *config_clone(const struct agent_config *src)
{
	struct agent_config *cfg = config_new();
	for (size_t i = 0; i < cfg->count; i++) {
		char err[256];
		const struct config_entry *s = &src->entries[i];
		entry_clear(&cfg->entries[i]);
		if (s->value && set_value(&cfg->entries[i], s->value, err, sizeof(err)) != 0)
			abort();
	}
	if (src->path)
		cfg->path = strdup(src->path);
	return cfg;
}

static struct config_entry *find(const struct agent_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->count; i++)
		if (strcmp(cfg->entries[i].key.name, name) == 0)
			return &cfg->entries[i];
	return NULL;
}

static int split_list(struct config_entry *e, const cJSON *v, char *err, size_t errsize)
{
	size_t n = 0, cap = 8;
	char **items = calloc(cap, sizeof(char *));
	if (!items)
		abort();
	if (agent_json_is(v, cJSON_Array)) {
		const cJSON *it;
		cJSON_ArrayForEach(it, v) {
			if (!agent_json_is(it, cJSON_String)) {
				snprintf(err, errsize, "key '%s': expected a list of strings", e->key.name);
				for (size_t i = 0; i < n; i++)
					free(items[i]);
				free(items);
				return -1;
			}
			if (n + 2 > cap)
				items = realloc(items, (cap *= 2) * sizeof(char *));
			items[n++] = strdup(it->valuestring);
		}
	} else {
		const char *s = v->valuestring;
		while (*s) {
			const char *comma = strchr(s, ',');
			size_t len = comma ? (size_t)(comma - s) : strlen(s);
			while (len && (*s == ' ' || *s == '\t')) {
				s++;
				len--;
			}
			while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
				len--;
			if (len) {
				if (n + 2 > cap)
					items = realloc(items, (cap *= 2) * sizeof(char *));
				char *item = malloc(len + 1); /* strndup: one import less */
				if (!item)
					abort();
				memcpy(item, s, len);
				item[len] = 0;
				items[n++] = item;
			}
			if (!comma)
				break;
			s = comma + 1;
		}
	}
	items[n] = NULL;
	e->list = items;
	e->list_len = n;
	return 0;
}

/* Checks v against e's declaration and stores a normalised copy. */
static int set_value(struct config_entry *e, const cJSON *v, char *err, size_t errsize)
{
	const struct config_key *k = &e->key;
	cJSON *norm = NULL;
	const char *why = NULL;

	switch (k->type) {
	case CFG_BOOL:
		if (agent_json_is(v, cJSON_True | cJSON_False))
			norm = cJSON_CreateBool(agent_json_is(v, cJSON_True));
		else if (agent_json_is(v, cJSON_String) && (is_word(v->valuestring, "true") || is_word(v->valuestring, "false")))
			norm = cJSON_CreateBool(is_word(v->valuestring, "true"));
		else
			why = "true or false";
		break;
	case CFG_INT: {
		double d = 0;
		bool ok = false;
		if (agent_json_is(v, cJSON_Number)) {
			d = v->valuedouble;
			ok = true;
		} else if (agent_json_is(v, cJSON_String) && *v->valuestring) {
			char *end;
			errno = 0;
			d = (double)strtol(v->valuestring, &end, 10);
			ok = !*end && !errno;
		}
		if (!ok || d != (double)(long)d || d < (double)k->min || d > (double)k->max) {
			snprintf(err, errsize, "key '%s': expected an integer from %ld to %ld", k->name, k->min, k->max);
			return -1;
		}
		norm = cJSON_CreateNumber(d);
		break;
	}
	case CFG_STRING: {
		long max = k->max ? k->max : 4096;
		if (!agent_json_is(v, cJSON_String) || (long)strlen(v->valuestring) > max) {
			snprintf(err, errsize, "key '%s': expected a string of at most %ld bytes", k->name, max);
			return -1;
		}
		norm = cJSON_CreateString(v->valuestring);
		break;
	}
	case CFG_ENUM: {
		if (agent_json_is(v, cJSON_String)) {
			const char *c = k->choices;
			size_t len = strlen(v->valuestring);
			while (c && *c) {
				const char *bar = strchr(c, '|');
				size_t clen = bar ? (size_t)(bar - c) : strlen(c);
				if (clen == len && clen < 64 && same_word(c, v->valuestring, len)) {
					char canon[64];
					memcpy(canon, c, clen);
					canon[clen] = 0;
					norm = cJSON_CreateString(canon);
					break;
				}
				c = bar ? bar + 1 : NULL;
			}
		}
		if (!norm) {
			snprintf(err, errsize, "key '%s': expected one of %s", k->name, k->choices);
			return -1;
		}
		break;
	}
	case CFG_LIST:
		if (!agent_json_is(v, cJSON_String) && !agent_json_is(v, cJSON_Array))
			why = "a comma-separated string or a list of strings";
		else
			norm = cJSON_Duplicate(v, 1);
		break;
	case CFG_JSON:
		norm = cJSON_Duplicate(v, 1);
		break;
	}
	if (why) {
		snprintf(err, errsize, "key '%s': expected %s", k->name, why);
		return -1;
	}
	if (!norm)
		abort();
	if (k->check && (why = k->check(norm)) != NULL) {
		snprintf(err, errsize, "key '%s': expected %s", k->name, why);
		cJSON_Delete(norm);
		return -1;
	}
	struct config_entry tmp = *e;
	tmp.value = norm;
	tmp.list = NULL;
	tmp.list_len = 0;
	if (k->type == CFG_LIST && split_list(&tmp, norm, err, errsize) != 0) {
		cJSON_Delete(norm);
		return -1;
	}
	entry_clear(e);
	e->value = tmp.value;
	e->list = tmp.list;
	e->list_len = tmp.list_len;
	return 0;
}

/* Levenshtein distance, for "did you mean" on unknown keys. */
static size_t distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 64 || lb > 64)
		return 99;
	size_t row[65];
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t prev = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cur = row[j];
			size_t cost = (a[i - 1] | 32) == (b[j - 1] | 32) ? 0 : 1;
			size_t best = prev + cost;
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = cur;
		}
	}
	return row[lb];
}

int config_merge(struct agent_config *cfg, const cJSON *doc, char *err, size_t errsize, cJSON *invalid)
{
	if (!agent_json_is(doc, cJSON_Object)) {
		snprintf(err, errsize, "expected a JSON object of settings");
		return -1;
	}
	struct agent_config *next = config_clone(cfg);
	int bad = 0;
	const cJSON *it;
	err[0] = 0;
	cJSON_ArrayForEach(it, doc) {
		char spare[512];
		/* the first bad key's message goes straight into err */
		char *msg = bad ? spare : err;
		size_t msgsize = bad ? sizeof(spare) : errsize;
		if (it->string[0] == '$')
			continue; /* twin metadata: $version, $metadata */
		struct config_entry *e = find(next, it->string);
		const char *option = e ? NULL : left_out_by(it->string);
		if (option) {
			snprintf(msg, msgsize, "key '%s': left out of this build (-D%s=OFF)", it->string, option);
		} else if (!e) {
			const char *best = NULL;
			size_t bestd = 4;
			for (size_t i = 0; i < next->count; i++) {
				size_t d = distance(it->string, next->entries[i].key.name);
				if (d < bestd) {
					bestd = d;
					best = next->entries[i].key.name;
				}
			}
			if (best)
				snprintf(msg, msgsize, "unknown key '%s' (did you mean '%s'?)", it->string, best);
			else
				snprintf(msg, msgsize, "unknown key '%s' (not a setting of this build%s)", it->string,
#ifdef AGENT_NO_CONFIG_REFERENCE
					 "");
#else
					 "; see --config-reference");
#endif
		} else if (agent_json_is(it, cJSON_NULL)) {
			/* A twin patch removes a desired property with null: back to the default. */
			struct agent_config *fresh = config_new();
			struct config_entry *d = find(fresh, it->string);
			entry_clear(e);
			if (d->value && set_value(e, d->value, msg, msgsize) != 0)
				abort();
			config_free(fresh);
			continue;
		} else if (set_value(e, it, msg, msgsize) == 0) {
			continue;
		}
		bad++;
		if (!invalid)
			break;
		cJSON_AddItemToArray(invalid, cJSON_CreateString(it->string));
	}
	if (bad) {
		config_free(next);
		return -1;
	}
	/* Swap the contents so callers' pointer stays valid. */
	struct agent_config tmp = *cfg;
	*cfg = *next;
	*next = tmp;
	config_free(next);
	return 0;
}

struct agent_config *config_load_file(const char *path, char *err, size_t errsize)
{
	char msg[512];
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		snprintf(err, errsize, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errsize, "%s: expected a regular file", path);
		close(fd);
		return NULL;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errsize, "%s: refusing a config file that group or others can write (chmod go-w)", path);
		close(fd);
		return NULL;
	}
	if (st.st_size > 1024 * 1024) {
		snprintf(err, errsize, "%s: expected at most 1 MiB of JSON", path);
		close(fd);
		return NULL;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	ssize_t n = buf ? read(fd, buf, (size_t)st.st_size) : -1;
	close(fd);
	if (n < 0) {
		snprintf(err, errsize, "%s: cannot read", path);
		free(buf);
		return NULL;
	}
	buf[n] = 0;
	const char *where = NULL;
	cJSON *doc = cJSON_ParseWithOpts(buf, &where, 1);
	if (!doc) {
		int line = 1;
		for (const char *p = buf; where && p < where; p++)
			line += *p == '\n';
		snprintf(err, errsize, "%s:%d: not valid JSON (expected an object of \"Key\": value settings)", path, line);
		free(buf);
		return NULL;
	}
	free(buf);
	struct agent_config *cfg = config_new();
	if (config_merge(cfg, doc, msg, sizeof(msg), NULL) != 0) {
		snprintf(err, errsize, "%s: %s", path, msg);
		config_free(cfg);
		cJSON_Delete(doc);
		return NULL;
	}
	cJSON_Delete(doc);
	cfg->path = strdup(path);
	return cfg;
}

cJSON *config_to_json(const struct agent_config *cfg)
{
	cJSON *o = cJSON_CreateObject();
	for (size_t i = 0; i < cfg->count; i++)
		if (cfg->entries[i].value)
			cJSON_AddItemToObject(o, cfg->entries[i].key.name, cJSON_Duplicate(cfg->entries[i].value, 1));
	return o;
}

#ifndef AGENT_NO_CONFIG_REFERENCE
void config_print_reference(FILE *out)
{
	static const char types[][8] = { "bool", "integer", "string", "enum", "list", "JSON" };
	struct agent_config *cfg = config_new();
	fprintf(out, "| key | type | default | meaning |\n|---|---|---|---|\n");
	for (size_t i = 0; i < cfg->count; i++) {
		const struct config_key *k = &cfg->entries[i].key;
		fprintf(out, "| `%s` | %s", k->name, types[k->type]);
		if (k->type == CFG_INT)
			fprintf(out, " %ld..%ld", k->min, k->max);
		if (k->type == CFG_ENUM)
			fprintf(out, " %s", k->choices);
		fprintf(out, " | %s | %s |\n", k->def ? k->def : "", k->help ? k->help : "");
	}
	config_free(cfg);
}
#endif

/* ---- getters ---- */

static const struct config_entry *get(const struct agent_config *cfg, const char *key)
{
	const struct config_entry *e = find(cfg, key);
#ifndef NDEBUG
	/* a key the build left out reads as unset: false, 0, "" */
	if (!e && !left_out_by(key)) {
		fprintf(stderr, "defender-iot-agent: internal error: undeclared config key %s\n", key);
		abort();
	}
#endif
	return e;
}

bool config_bool(const struct agent_config *cfg, const char *key)
{
	const struct config_entry *e = get(cfg, key);
	return e && agent_json_is(e->value, cJSON_True);
}

long config_int(const struct agent_config *cfg, const char *key)
{
	const struct config_entry *e = get(cfg, key);
	return e && agent_json_is(e->value, cJSON_Number) ? (long)e->value->valuedouble : 0;
}

const char *config_string(const struct agent_config *cfg, const char *key)
{
	const struct config_entry *e = get(cfg, key);
	return e && agent_json_is(e->value, cJSON_String) ? e->value->valuestring : "";
}

size_t config_list(const struct agent_config *cfg, const char *key, const char *const **items)
{
	static const char *const empty[] = { NULL };
	const struct config_entry *e = get(cfg, key);
	if (!e || !e->list) {
		*items = empty;
		return 0;
	}
	*items = (const char *const *)e->list;
	return e->list_len;
}

bool config_list_has(const struct agent_config *cfg, const char *key, const char *item)
{
	const char *const *items;
	size_t n = config_list(cfg, key, &items);
	for (size_t i = 0; i < n; i++)
		if (strcmp(items[i], item) == 0)
			return true;
	return false;
}

const cJSON *config_json(const struct agent_config *cfg, const char *key)
{
	const struct config_entry *e = get(cfg, key);
	return e ? e->value : NULL;
}
