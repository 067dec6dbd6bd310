/* The core's side of the configuration: building the key table from the
 * compiled-in features, loading files and applying patches. */
#ifndef AGENT_CONFIG_INTERNAL_H
#define AGENT_CONFIG_INTERNAL_H

#include "core/config.h"

struct config_entry {
	struct config_key key;   /* copied; name owned when generated */
	char *owned_name;        /* for keys generated per collector */
	char *owned_help;
	cJSON *value;            /* effective value, normalised */
	char **list;             /* CFG_LIST items, NULL-terminated */
	size_t list_len;
};

struct agent_config {
	struct config_entry *entries;
	size_t count;
	char *path;              /* the file it came from, for messages */
};

/* A config holding every key of the compiled-in features with its default. */
struct agent_config *config_new(void);
void config_free(struct agent_config *cfg);
struct agent_config *config_clone(const struct agent_config *cfg);

/* Validate and merge a flat JSON object into cfg. On the first bad key,
 * writes a one-line message ("key 'X': expected ...") into err and returns -1
 * with cfg unchanged; also appends every bad key name to `invalid` when it is
 * not NULL (then all keys are checked). */
int config_merge(struct agent_config *cfg, const cJSON *doc, char *err, size_t errsize, cJSON *invalid);

/* Load a JSON file and merge it over the defaults. Returns NULL and a
 * one-line message naming the file (and key) on failure. Refuses a file that
 * group or others may write. */
struct agent_config *config_load_file(const char *path, char *err, size_t errsize);

/* The effective config as one JSON object (caller frees). */
cJSON *config_to_json(const struct agent_config *cfg);

#ifndef AGENT_NO_CONFIG_REFERENCE
/* Print the reference of every key (name, type, default, help) as Markdown. */
void config_print_reference(FILE *out);
#endif

#endif
