//feature: collector baseline ON
//summary: Baseline: CIS-based posture checks for embedded Linux (Pass/Fail/Skip/Error per check)
//libs: libxcrypt
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/agent.h"
#include "lib/baseline_eval.h"

#include "collectors/baseline_checks.h"

#define NBUILTIN (sizeof(builtin_checks) / sizeof(builtin_checks[0]))
#define TRIGGER_FILE "/tmp/DefenderForIoTOSBaselineTrigger.txt"
#define POLICY_MAX (1024 * 1024)

static const char *const severities = "Informational|Low|Medium|High|Critical";

static bool is_severity(const char *s, size_t len)
{
	for (const char *w = severities; *w;) {
		const char *bar = strchr(w, '|');
		size_t wl = bar ? (size_t)(bar - w) : strlen(w);
		if (wl == len && strncmp(w, s, len) == 0)
			return true;
		if (!bar)
			break;
		w = bar + 1;
	}
	return false;
}

/* "ID=High,ID2=Low" (as the retired agent's list keys are written) or
 * {"ID": "High"}. */
static const char *check_overrides(const cJSON *v)
{
	static const char *const why =
		"\"ID=Severity,...\" or an object {\"ID\": \"Severity\"} with Informational, Low, Medium, High or Critical";
	if (cJSON_IsObject(v)) {
		const cJSON *it;
		cJSON_ArrayForEach(it, v) {
			if (!cJSON_IsString(it) || !is_severity(it->valuestring, strlen(it->valuestring)))
				return why;
		}
		return NULL;
	}
	if (!cJSON_IsString(v))
		return why;
	for (const char *s = v->valuestring; *s;) {
		const char *comma = strchr(s, ',');
		size_t len = comma ? (size_t)(comma - s) : strlen(s);
		const char *eq = memchr(s, '=', len);
		if (!eq || eq == s || !is_severity(eq + 1, len - (size_t)(eq + 1 - s)))
			return why;
		s = comma ? comma + 1 : s + len;
	}
	return NULL;
}

static const char *check_policy_files(const cJSON *v)
{
	const cJSON *it;
	if (cJSON_IsArray(v)) {
		cJSON_ArrayForEach(it, v) {
			if (!cJSON_IsString(it) || it->valuestring[0] != '/')
				return "a list of absolute paths of policy files";
		}
		return NULL;
	}
	for (const char *s = cJSON_GetStringValue(v); s && *s;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s && *s != '/' && *s != ',')
			return "a list of absolute paths of policy files";
		const char *comma = strchr(s, ',');
		s = comma ? comma + 1 : NULL;
	}
	return NULL;
}

static const struct config_key keys[] = {
	{ "Baseline_GroupsDisabled", CFG_LIST, "", 0, 0, NULL,
	  "check groups not to run, e.g. \"Firewall,SSH\" (see docs/baseline.md)", NULL },
	{ "Baseline_ChecksDisabled", CFG_LIST, "", 0, 0, NULL,
	  "checks not to run, by id or CIS id, e.g. \"DIOT-NET-001,3.3.5\"", NULL },
	{ "Baseline_SeverityOverrides", CFG_JSON, "{}", 0, 0, NULL,
	  "per-check severity: \"DIOT-SVC-011=Low,...\" or {\"DIOT-SVC-011\": \"Low\"}", check_overrides },
	{ "Baseline_PolicyFiles", CFG_LIST, "", 0, 0, NULL,
	  "product policy files with checks of their own (format: docs/baseline.md)", check_policy_files },
	{ "Baseline_SuidAllowlist", CFG_LIST,
	  "su,passwd,chsh,chfn,newgrp,gpasswd,chage,expiry,mount,umount,ping,ping6,sudo,pkexec,unix_chkpwd,"
	  "ssh-keysign,dbus-daemon-launch-helper,fusermount,fusermount3,crontab,wall,write,bsd-write,at,"
	  "newuidmap,newgidmap,ssh-agent,polkit-agent-helper-1,dotlockfile,utempter,Xorg.wrap,busybox,mount.nfs,pppd",
	  0, 0, NULL, "set-user-id/set-group-id programs expected on the device (names or absolute paths)", NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};

struct loaded_policy {
	struct bl_policy policy;
};

struct state {
	struct bl_run *run;
	char creds_path[1100];
	struct loaded_policy *policies;
	size_t npolicies;
};

static char *read_policy(const char *path, char *err, size_t errsize)
{
	/* A policy file is the agent's own configuration (like --config), not
	 * part of the observed system, so it is read from the real path even
	 * under --root. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > POLICY_MAX) {
		snprintf(err, errsize, "%s: expected a readable regular file of at most 1 MB (%s)", path,
			 fd < 0 ? strerror(errno) : "not a regular file or too large");
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	ssize_t n = buf ? read(fd, buf, (size_t)st.st_size) : -1;
	close(fd);
	if (n < 0) {
		free(buf);
		snprintf(err, errsize, "%s: expected a readable file (%s)", path, strerror(errno));
		return NULL;
	}
	buf[n] = 0;
	return buf;
}

static bool builtin_id(const char *id)
{
	for (size_t i = 0; i < NBUILTIN; i++)
		if (strcmp(builtin_checks[i].id, id) == 0)
			return true;
	return false;
}

static void unload_policies(struct state *st)
{
	for (size_t i = 0; i < st->npolicies; i++)
		bl_policy_free(&st->policies[i].policy);
	free(st->policies);
	st->policies = NULL;
	st->npolicies = 0;
}

/* Each file is parsed when the configuration names it; a bad file is
 * reported once, in one line, and its checks left out. */
static void load_policies(struct agent_ctx *ctx, struct state *st)
{
	unload_policies(st);
	const struct agent_config *cfg = agent_config(ctx);
	const char *const *files;
	size_t n = config_list(cfg, "Baseline_PolicyFiles", &files);
	st->policies = calloc(n + 1, sizeof(*st->policies));
	if (!st->policies)
		abort();
	for (size_t i = 0; i < n; i++) {
		char err[512];
		char *text = read_policy(files[i], err, sizeof(err));
		struct bl_policy p = { 0 };
		if (!text || bl_policy_parse(files[i], text, &p, err, sizeof(err)) != 0) {
			agent_warn(ctx, "%s (its checks are skipped)", err);
			free(text);
			continue;
		}
		free(text);
		for (size_t j = 0; j < p.nchecks; j++) {
			bool dup = builtin_id(p.checks[j].check.id);
			for (size_t k = 0; !dup && k < st->npolicies; k++)
				for (size_t m = 0; m < st->policies[k].policy.nchecks; m++)
					dup = dup || !strcmp(st->policies[k].policy.checks[m].check.id, p.checks[j].check.id);
			if (dup) {
				agent_warn(ctx, "%s:%d: field 'check': expected an id no other check uses, got '%s' "
					   "(its checks are skipped)", files[i], p.checks[j].line, p.checks[j].check.id);
				bl_policy_free(&p);
				break;
			}
		}
		if (p.nchecks)
			st->policies[st->npolicies++].policy = p;
	}
}

static void set_allowlist(struct agent_ctx *ctx, struct state *st)
{
	const char *const *items;
	config_list(agent_config(ctx), "Baseline_SuidAllowlist", &items);
	bl_run_set_suid_allowlist(st->run, items);
}

static void *init(struct agent_ctx *ctx)
{
	struct state *st = calloc(1, sizeof(*st));
	if (!st)
		abort();
	st->run = bl_run_new();
	snprintf(st->creds_path, sizeof(st->creds_path), "%s/baseline-credentials", agent_state_dir(ctx));
	bl_run_load_credentials(st->run, st->creds_path);
	set_allowlist(ctx, st);
	load_policies(ctx, st);
	return st;
}

static void configure(struct agent_ctx *ctx, void *state)
{
	set_allowlist(ctx, state);
	load_policies(ctx, state);
}

static void fini(void *state)
{
	struct state *st = state;
	unload_policies(st);
	bl_run_free(st->run);
	free(st);
}

/* The severity to report: Baseline_SeverityOverrides, else the check's own. */
static const char *severity_of(const struct agent_config *cfg, const struct bl_check *c)
{
	const cJSON *ov = config_json(cfg, "Baseline_SeverityOverrides");
	if (cJSON_IsObject(ov)) {
		const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ov, c->id));
		return s ? s : c->severity;
	}
	size_t idlen = strlen(c->id);
	for (const char *s = cJSON_GetStringValue(ov); s && *s;) {
		const char *comma = strchr(s, ',');
		size_t len = comma ? (size_t)(comma - s) : strlen(s);
		const char *eq = memchr(s, '=', len);
		if (eq && (size_t)(eq - s) == idlen && !strncmp(s, c->id, idlen)) {
			/* the validator accepted only the five names: find the static one */
			static const char *const names[] = { "Informational", "Low", "Medium", "High", "Critical" };
			for (int i = 0; i < 5; i++)
				if (!strncmp(eq + 1, names[i], strlen(names[i])) && len - (size_t)(eq + 1 - s) == strlen(names[i]))
					return names[i];
		}
		s = comma ? comma + 1 : s + len;
	}
	return c->severity;
}

static bool disabled(const struct agent_config *cfg, const struct bl_check *c)
{
	return config_list_has(cfg, "Baseline_GroupsDisabled", c->group) ||
	       config_list_has(cfg, "Baseline_ChecksDisabled", c->id) ||
	       (c->cis && config_list_has(cfg, "Baseline_ChecksDisabled", c->cis));
}

static void report(struct agent_ctx *ctx, const struct bl_check *c, struct bl_outcome *o)
{
	cJSON *e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "Id", c->id);
	cJSON_AddStringToObject(e, "Result", bl_result_name(o->result));
	cJSON_AddStringToObject(e, "Description", c->description);
	cJSON_AddStringToObject(e, "Severity", severity_of(agent_config(ctx), c));
	cJSON_AddStringToObject(e, "Remediation", c->remediation);
	cJSON_AddStringToObject(e, "Group", c->group);
	if (c->cis && *c->cis)
		cJSON_AddStringToObject(e, "CisId", c->cis);
	if (o->reason[0])
		cJSON_AddStringToObject(e, "Reason", o->reason);
	if (o->evidence)
		cJSON_AddItemToObject(e, "Evidence", o->evidence);
	o->evidence = NULL;
	agent_report(ctx, e, NULL);
}

static void run_check(struct agent_ctx *ctx, struct state *st, const struct bl_check *c)
{
	if (disabled(agent_config(ctx), c))
		return;
	struct bl_outcome o;
	bl_evaluate(ctx, st->run, c, &o);
	report(ctx, c, &o);
}

static int collect(struct agent_ctx *ctx, void *state)
{
	struct state *st = state;
	bl_run_reset(st->run);
	for (size_t i = 0; i < NBUILTIN; i++)
		run_check(ctx, st, &builtin_checks[i]);
	for (size_t i = 0; i < st->npolicies; i++)
		for (size_t j = 0; j < st->policies[i].policy.nchecks; j++)
			run_check(ctx, st, &st->policies[i].policy.checks[j].check);

	/* The retired agent's end-to-end test: touching this file makes a
	 * failing check appear at the hub. */
	int fd = agent_open(ctx, TRIGGER_FILE, O_RDONLY | O_PATH);
	if (fd >= 0) {
		close(fd);
		static const struct bl_check test = {
			"IoT_CISBenchmarks_DIoTTest", NULL, "Test", "Low",
			"Test recommendation: " TRIGGER_FILE " exists",
			"Delete " TRIGGER_FILE " when the test is over", .eval = BL_POLICY,
		};
		struct bl_outcome o = { .result = BL_FAIL };
		report(ctx, &test, &o);
	}
	/* no state directory (read-only image, tests): the cache lives in memory */
	bl_run_save_credentials(st->run, st->creds_path);
	bl_run_reset(st->run);
	return 0;
}

const struct collector collector_baseline = {
	.name = "baseline",
	.event_name = "Baseline",
	.priority = PRIORITY_LOW,
	.category = CATEGORY_PERIODIC,
	.keys = keys,
	/* under Agent_RunAsUser: read /etc/shadow, and walk and stat every
	 * directory whatever its mode. The firewall tools it runs get no
	 * capability (none is inheritable), so without root the firewall
	 * checks report Skip. */
	.caps = AGENT_CAP(CAP_DAC_READ_SEARCH),
	.init = init,
	.collect = collect,
	.configure = configure,
	.fini = fini,
};
