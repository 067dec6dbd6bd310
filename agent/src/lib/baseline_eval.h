/* Posture checks as data: a check names what to read, how to compare and its
 * metadata; a small set of evaluators does the work. Used only by the
 * baseline collector (agent/src/collectors/baseline.c), whose built-in table
 * is baseline_checks.h and whose runtime policy files are parsed by
 * baseline_policy.c. */
#ifndef AGENT_LIB_BASELINE_EVAL_H
#define AGENT_LIB_BASELINE_EVAL_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

struct agent_ctx;

enum bl_result { BL_PASS, BL_FAIL, BL_SKIP, BL_ERROR };

enum bl_eval {
	BL_SYSCTL,     /* target: sysctl name (/proc/sys), op/value */
	BL_MODE,       /* target: path or glob; mode: bits that must be clear;
			  value: owner name; key: '|'-separated group names */
	BL_CONTENT,    /* target: file; value: ERE; Pass if some line matches */
	BL_NO_CONTENT, /* target: file; value: ERE; Pass if no line matches */
	BL_KEYVALUE,   /* target: file; key ("KEY value" or KEY=value, last wins); op/value; dflt when unset */
	BL_SSHD,       /* key: sshd_config keyword (first wins, Include followed, Match ends); op/value/dflt */
	BL_DROPBEAR,   /* value: option letters, any of which must be given */
	BL_MOUNT,      /* target: mount point; value: options that must all be set */
	BL_MODULE,     /* target: kernel module that must not be loadable */
	BL_PROCESS,    /* target: '|'-separated process names; op EQ: one must run, NE: none may */
	BL_LISTENER,   /* target: comma-separated ports; value: "tcp" or "udp"; none may listen */
	BL_FIREWALL,   /* target: ERE for iptables-save text, value: ERE for `nft list ruleset`;
			  key "6": the IPv6 dump; sub: FW_* */
	BL_ACCOUNT,    /* sub: ACC_* */
	BL_SCAN,       /* sub: SCAN_* (one walk of the file system serves all) */
	BL_POLICY,     /* a check from a runtime policy file */
};

enum bl_op {
	OP_EQ,      /* numbers compare as numbers, words case-insensitively */
	OP_LE,
	OP_GE,
	OP_IN,      /* value: '|'-separated words */
	OP_RANGE,   /* value: "MIN:MAX" */
	OP_SET,     /* present and not "none" */
	OP_MASK,    /* octal umask that includes every bit of value */
	OP_TRIPLE,  /* "a:b:c" each at most value's */
	OP_NE,
};

enum { FW_ANY_RULES = 1, FW_MATCH, FW_PORTS };
enum {
	ACC_EMPTY_PASSWORD = 1, ACC_UID0, ACC_DUP_UID, ACC_DUP_GID, ACC_DUP_USER, ACC_DUP_GROUP,
	ACC_SYSTEM_SHELL, ACC_ROOT_GID, ACC_PLUS, ACC_DEFAULT_CREDS, ACC_HOME_PERMS, ACC_DOTFILES,
	ACC_RHOSTS, ACC_SHADOWED,
};
enum { SCAN_WW_FILES = 1, SCAN_STICKY, SCAN_UNOWNED, SCAN_UNGROUPED, SCAN_SUID, SCAN_LOGS };

struct bl_policy_check;

struct bl_check {
	const char *id;          /* "DIOT-KRN-001": stable, documented in docs/baseline.md */
	const char *cis;         /* CIS Distribution Independent Linux 2.0.0 id, or NULL */
	const char *group;
	const char *severity;    /* Informational|Low|Medium|High|Critical */
	const char *description;
	const char *remediation;
	enum bl_eval eval;
	const char *target;
	const char *key;
	enum bl_op op;
	const char *value;
	const char *dflt;
	unsigned mode;
	int sub;
	const struct bl_policy_check *policy;
};

struct bl_outcome {
	enum bl_result result;
	char reason[256];
	cJSON *evidence;         /* object or NULL; owned by the caller */
};

/* What one run of the checks read, so that forty checks of /etc/passwd read
 * it once; plus what survives between runs (the default-credential cache). */
struct bl_run;
struct bl_run *bl_run_new(void);
/* Forget what was read (call before each pass); keeps the crypt cache. */
void bl_run_reset(struct bl_run *run);
void bl_run_free(struct bl_run *run);
/* The default-credential results survive restarts in a file of the state
 * directory (hashes of user:hash, never the hashes themselves). */
void bl_run_load_credentials(struct bl_run *run, const char *path);
int bl_run_save_credentials(struct bl_run *run, const char *path);
/* SUID/SGID programs that are expected (basenames or absolute paths). */
void bl_run_set_suid_allowlist(struct bl_run *run, const char *const *items);

void bl_evaluate(struct agent_ctx *ctx, struct bl_run *run, const struct bl_check *c, struct bl_outcome *out);

const char *bl_result_name(enum bl_result r);
/* Compares text `have` against `want` with op; returns true if it holds. */
bool bl_compare(const char *have, enum bl_op op, const char *want);

/* ---- runtime policy files (baseline_policy.c) ---- */

enum bl_rule_type { RULE_FILE = 'f', RULE_DIR = 'd', RULE_PROCESS = 'p', RULE_SYSCTL = 's' };

struct bl_operator {
	enum { BOP_LITERAL, BOP_REGEX, BOP_NUMERIC } kind;
	bool negate;            /* '!' */
	char *text;             /* literal, or the regex source */
	regex_t re;
	enum bl_op cmp;         /* numeric: OP_EQ, OP_LE, OP_GE, OP_NE; plus lt/gt below */
	int strict;             /* numeric '<' or '>' */
	double number;
};

struct bl_rule {
	bool negate;            /* leading "not" */
	enum bl_rule_type type;
	char *target;           /* path, process name or sysctl */
	bool name_regex;        /* d: DIR -> r:NAME */
	regex_t name_re;
	struct bl_operator *ops; /* '&&'-chained content operators (all on one line) */
	size_t nops;
	int line;
};

struct bl_policy_check {
	struct bl_check check;   /* metadata; eval is BL_POLICY and policy points back here */
	char *strings[6];        /* owned copies of id, cis, group, severity, description, remediation */
	enum { COND_ALL, COND_ANY, COND_NONE } condition;
	int line;                /* of its "check:" line */
	struct bl_rule *rules;
	size_t nrules;
};

struct bl_policy {
	struct bl_policy_check *checks;
	size_t nchecks;
};

/* Parses one policy file's text. On error returns -1 with
 * "FILE:LINE: field 'x': expected ..." in err and leaves *out empty. */
int bl_policy_parse(const char *file, const char *text, struct bl_policy *out, char *err, size_t errsize);
void bl_policy_free(struct bl_policy *p);

/* Compiles an ERE after turning the Perl-style classes SCA policies use
 * (\d \s \S \w) into POSIX ones; returns regcomp's result. */
int bl_regcomp(regex_t *re, const char *src, int flags);

#endif
