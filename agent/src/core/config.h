/* Runtime configuration: one flat JSON object whose keys are the retired
 * Defender micro agent's (`Process_Disabled`, `CollectorsCore_PriorityIntervals`,
 * ...), so the local file and the module twin's desired properties share one
 * format and one validator. Each feature declares the keys it owns in a table;
 * the core validates every key against the tables of the compiled-in features
 * and rejects a whole document when one value is bad (the last good config is
 * kept). */
#ifndef AGENT_CONFIG_H
#define AGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <cjson/cJSON.h>

enum config_type {
	CFG_BOOL,     /* JSON true/false, or the strings "True"/"False" as the twin sends them */
	CFG_INT,      /* integer in [min, max] */
	CFG_STRING,   /* any string up to max bytes (max 0: 4096) */
	CFG_ENUM,     /* one of the '|'-separated words in `choices` */
	CFG_LIST,     /* comma-separated string or JSON array of strings, e.g. "3.3.5,2.2.1.1" */
	CFG_JSON,     /* any JSON value; the owner's `check` validates it */
};

/* A key's help line, printed by --config-reference. Builds without that
 * option (-DAGENT_CONFIG_REFERENCE=OFF) keep none of the text. */
#ifdef AGENT_NO_CONFIG_REFERENCE
#define CONFIG_HELP(text) NULL
#else
#define CONFIG_HELP(text) text
#endif

struct config_key {
	const char *name;       /* "Process_PollingInterval" */
	enum config_type type;
	const char *def;        /* default as text: "true", "100", "Medium", "a,b"; NULL: unset */
	long min, max;          /* CFG_INT range; CFG_STRING max length */
	const char *choices;    /* CFG_ENUM: "Low|Medium|High" */
	const char *help;       /* one line for the config reference */
	/* Optional extra validation: returns NULL if fine, else a static string
	 * saying what was expected. */
	const char *(*check)(const cJSON *value);
};

struct agent_config;

/* Whether v is one of the cJSON types in `types` (cJSON_String | ...), from
 * the type bits cJSON.h documents. Size (docs/footprint.md): each cJSON_IsX
 * the agent calls is one more imported function, ~85 bytes of linker tables. */
static inline bool agent_json_is(const cJSON *v, int types)
{
	return v && (v->type & 0xFF & types);
}

/* Typed getters. A key that was not declared by a compiled-in feature is a
 * programming error and aborts in debug builds; in release it returns the zero
 * value. */
bool config_bool(const struct agent_config *cfg, const char *key);
long config_int(const struct agent_config *cfg, const char *key);
const char *config_string(const struct agent_config *cfg, const char *key);
/* Whether `item` appears in the CFG_LIST `key` (exact match). */
bool config_list_has(const struct agent_config *cfg, const char *key, const char *item);
/* The list's items; returns the count and sets *items to a NULL-terminated
 * array owned by the config (valid until the next config change). */
size_t config_list(const struct agent_config *cfg, const char *key, const char *const **items);
/* CFG_JSON values (and every value, as parsed) */
const cJSON *config_json(const struct agent_config *cfg, const char *key);

#endif
