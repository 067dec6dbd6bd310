/* Runtime policy files: product teams' own checks, evaluated beside the
 * built-in ones. The format is documented in docs/baseline.md.
 *
 * Why a hand-written, line-oriented parser rather than YAML (Wazuh SCA's
 * format) or JSON: devices carry no YAML library, and an error must name the
 * file, the line and the field, which cJSON cannot do for a well-formed
 * document with a bad value. One "key: value" per line keeps both the parser
 * and its error messages small. The rule syntax follows SCA's: f:/d:/p:
 * targets, "->" content, r: regex, n: numeric compare, ! and &&; s: (sysctl)
 * is ours. Command rules (c:) are refused: a policy file never makes the
 * agent run a program. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/baseline_eval.h"

#define MAX_LINE 4096

enum { S_ID, S_CIS, S_GROUP, S_SEVERITY, S_DESCRIPTION, S_REMEDIATION };

static void free_rule(struct bl_rule *r)
{
	for (size_t i = 0; i < r->nops; i++) {
		if (r->ops[i].kind != BOP_LITERAL)
			regfree(&r->ops[i].re);
		free(r->ops[i].text);
	}
	free(r->ops);
	if (r->name_regex)
		regfree(&r->name_re);
	free(r->target);
}

void bl_policy_free(struct bl_policy *p)
{
	for (size_t i = 0; i < p->nchecks; i++) {
		struct bl_policy_check *c = &p->checks[i];
		for (size_t j = 0; j < c->nrules; j++)
			free_rule(&c->rules[j]);
		free(c->rules);
		for (int j = 0; j < 6; j++)
			free(c->strings[j]);
	}
	free(p->checks);
	p->checks = NULL;
	p->nchecks = 0;
}

struct parser {
	const char *file;
	int line;
	char *err;
	size_t errsize;
};

static int fail(struct parser *ps, const char *field, const char *expected)
{
	snprintf(ps->err, ps->errsize, "%s:%d: field '%s': expected %s", ps->file, ps->line, field, expected);
	return -1;
}

static char *strip(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = 0;
	return s;
}

/* One content operator: "r:RE", "!r:RE", "n:RE compare OP N" or a literal. */
static int parse_operator(struct parser *ps, char *text, struct bl_operator *op)
{
	memset(op, 0, sizeof(*op));
	text = strip(text);
	if (*text == '!') {
		op->negate = true;
		text = strip(text + 1);
	}
	if (!strncmp(text, "r:", 2)) {
		op->kind = BOP_REGEX;
		op->text = strdup(text + 2);
		if (!*op->text || bl_regcomp(&op->re, op->text, REG_NOSUB) != 0) {
			free(op->text);
			op->text = NULL;
			return fail(ps, "rule", "a valid POSIX extended regular expression after r:");
		}
		return 0;
	}
	if (!strncmp(text, "n:", 2)) {
		char *cmp = strstr(text, " compare ");
		if (!cmp)
			return fail(ps, "rule", "n:REGEX compare OP NUMBER (e.g. n:^MaxAuthTries\\s+(\\d+) compare <= 4)");
		*cmp = 0;
		char opname[4];
		char *end;
		if (sscanf(cmp + 9, " %3s", opname) != 1)
			return fail(ps, "rule", "an operator after compare: <, <=, ==, !=, >=, >");
		const char *num = strstr(cmp + 9, opname) + strlen(opname);
		op->number = strtod(num, &end);
		if (end == num || *strip(end))
			return fail(ps, "rule", "a number after the compare operator");
		if (!strcmp(opname, "<=") || !strcmp(opname, "<")) {
			op->cmp = OP_LE;
			op->strict = opname[1] == 0;
		} else if (!strcmp(opname, ">=") || !strcmp(opname, ">")) {
			op->cmp = OP_GE;
			op->strict = opname[1] == 0;
		} else if (!strcmp(opname, "==")) {
			op->cmp = OP_EQ;
		} else if (!strcmp(opname, "!=")) {
			op->cmp = OP_NE;
		} else {
			return fail(ps, "rule", "an operator after compare: <, <=, ==, !=, >=, >");
		}
		op->kind = BOP_NUMERIC;
		op->text = strdup(text + 2);
		bool compiled = bl_regcomp(&op->re, op->text, 0) == 0;
		if (!compiled || op->re.re_nsub < 1) {
			if (compiled)
				regfree(&op->re);
			free(op->text);
			op->text = NULL;
			return fail(ps, "rule", "a valid regular expression with one (group) after n:");
		}
		return 0;
	}
	op->kind = BOP_LITERAL;
	op->text = strdup(text);
	return 0;
}

/* "[not ]TYPE:TARGET[ -> r:NAME][ -> OPERATORS]" */
static int parse_rule(struct parser *ps, char *text, struct bl_rule *r)
{
	memset(r, 0, sizeof(*r));
	r->line = ps->line;
	text = strip(text);
	if (!strncmp(text, "not ", 4)) {
		r->negate = true;
		text = strip(text + 4);
	}
	if (strlen(text) < 3 || text[1] != ':' || !strchr("fdps", text[0])) {
		if (text[0] == 'c' && text[1] == ':')
			return fail(ps, "rule", "f:, d:, p: or s: (command rules c: are not supported: a policy never runs programs)");
		return fail(ps, "rule", "TYPE:TARGET with TYPE one of f (file), d (directory), p (process), s (sysctl)");
	}
	r->type = (enum bl_rule_type)text[0];
	char *rest = strstr(text, " -> ");
	if (rest) {
		*rest = 0;
		rest += 4;
	}
	r->target = strdup(strip(text + 2));
	if ((r->type == RULE_FILE || r->type == RULE_DIR) && r->target[0] != '/')
		return fail(ps, "rule", "an absolute path after f: or d:");
	if (r->type == RULE_PROCESS && rest)
		return fail(ps, "rule", "p:NAME with nothing after it");
	if (r->type == RULE_DIR && rest) {
		char *next = strstr(rest, " -> ");
		if (next) {
			*next = 0;
			next += 4;
		}
		char *name = strip(rest);
		if (strncmp(name, "r:", 2) != 0 || bl_regcomp(&r->name_re, name + 2, REG_NOSUB) != 0)
			return fail(ps, "rule", "d:DIR -> r:FILE_NAME_REGEX [-> CONTENT]");
		r->name_regex = true;
		rest = next;
	}
	if (r->type == RULE_SYSCTL && !rest)
		return fail(ps, "rule", "s:NAME -> VALUE (e.g. s:kernel.randomize_va_space -> 2)");
	if (!rest)
		return 0;
	/* operators chained with && all hold on the same line */
	size_t cap = 0;
	for (char *op = rest; op;) {
		char *amp = strstr(op, " && ");
		if (amp)
			*amp = 0;
		if (r->nops == cap) {
			cap = cap ? cap * 2 : 2;
			struct bl_operator *no = realloc(r->ops, cap * sizeof(*no));
			if (!no)
				abort();
			r->ops = no;
		}
		if (!*strip(op))
			return fail(ps, "rule", "a content operator after -> or &&");
		if (parse_operator(ps, op, &r->ops[r->nops]) != 0)
			return -1;
		r->nops++;
		op = amp ? amp + 4 : NULL;
	}
	return 0;
}

static bool valid_severity(const char *s)
{
	static const char *const sev[] = { "Informational", "Low", "Medium", "High", "Critical" };
	for (int i = 0; i < 5; i++)
		if (!strcmp(s, sev[i]))
			return true;
	return false;
}

static int finish_check(struct parser *ps, struct bl_policy_check *c, int start_line)
{
	int saved = ps->line;
	ps->line = start_line;
	int rc = 0;
	if (!c->strings[S_DESCRIPTION])
		rc = fail(ps, "description", "a description line in every check");
	else if (!c->strings[S_SEVERITY])
		rc = fail(ps, "severity", "a severity line in every check: Informational, Low, Medium, High or Critical");
	else if (!c->nrules)
		rc = fail(ps, "rule", "at least one rule line in every check");
	ps->line = saved;
	if (rc)
		return rc;
	if (!c->strings[S_GROUP])
		c->strings[S_GROUP] = strdup("Custom");
	if (!c->strings[S_REMEDIATION])
		c->strings[S_REMEDIATION] = strdup("");
	struct bl_check *k = &c->check;
	k->id = c->strings[S_ID];
	k->cis = c->strings[S_CIS];
	k->group = c->strings[S_GROUP];
	k->severity = c->strings[S_SEVERITY];
	k->description = c->strings[S_DESCRIPTION];
	k->remediation = c->strings[S_REMEDIATION];
	k->eval = BL_POLICY;
	return 0;
}

static bool valid_id(const char *s)
{
	if (!*s || strlen(s) > 64)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("-_.", *s))
			return false;
	return true;
}

int bl_policy_parse(const char *file, const char *text, struct bl_policy *out, char *err, size_t errsize)
{
	struct parser ps = { .file = file, .line = 0, .err = err, .errsize = errsize };
	struct bl_policy p = { 0 };
	size_t cap = 0;
	int check_line = 0, rc = 0;
	struct bl_policy_check *cur = NULL;
	char buf[MAX_LINE];
	for (const char *s = text; s && *s && rc == 0;) {
		const char *nl = strchr(s, '\n');
		size_t len = nl ? (size_t)(nl - s) : strlen(s);
		ps.line++;
		if (len >= sizeof(buf)) {
			rc = fail(&ps, "line", "at most 4095 bytes per line");
			break;
		}
		memcpy(buf, s, len);
		buf[len] = 0;
		s = nl ? nl + 1 : NULL;
		char *line = strip(buf);
		if (!*line || *line == '#')
			continue;
		char *colon = strchr(line, ':');
		if (!colon) {
			rc = fail(&ps, line, "'key: value' (keys: check, description, severity, group, cis, remediation, condition, rule)");
			break;
		}
		*colon = 0;
		char *key = strip(line), *val = strip(colon + 1);
		if (!strcmp(key, "check")) {
			if (cur && (rc = finish_check(&ps, cur, check_line)) != 0)
				break;
			if (!valid_id(val)) {
				rc = fail(&ps, "check", "an id of letters, digits, '-', '_' or '.' (at most 64)");
				break;
			}
			for (size_t i = 0; i < p.nchecks; i++)
				if (!strcmp(p.checks[i].strings[S_ID], val)) {
					rc = fail(&ps, "check", "an id not used before in this file");
					break;
				}
			if (rc)
				break;
			if (p.nchecks == cap) {
				cap = cap ? cap * 2 : 4;
				struct bl_policy_check *nc = realloc(p.checks, cap * sizeof(*nc));
				if (!nc)
					abort();
				p.checks = nc;
			}
			cur = &p.checks[p.nchecks++];
			memset(cur, 0, sizeof(*cur));
			cur->strings[S_ID] = strdup(val);
			check_line = ps.line;
			cur->line = ps.line;
			continue;
		}
		if (!cur) {
			rc = fail(&ps, key, "a 'check: ID' line before the check's fields");
			break;
		}
		static const char *const fields[] = { NULL, "cis", "group", "severity", "description", "remediation" };
		int f = -1;
		for (int i = 1; i < 6; i++)
			if (!strcmp(key, fields[i]))
				f = i;
		if (f > 0) {
			if (f == S_SEVERITY && !valid_severity(val)) {
				rc = fail(&ps, key, "one of Informational, Low, Medium, High, Critical");
				break;
			}
			if ((f == S_DESCRIPTION || f == S_GROUP) && !*val) {
				rc = fail(&ps, key, "a non-empty value");
				break;
			}
			free(cur->strings[f]);
			cur->strings[f] = strdup(val);
		} else if (!strcmp(key, "condition")) {
			if (!strcmp(val, "all"))
				cur->condition = COND_ALL;
			else if (!strcmp(val, "any"))
				cur->condition = COND_ANY;
			else if (!strcmp(val, "none"))
				cur->condition = COND_NONE;
			else {
				rc = fail(&ps, key, "all, any or none");
				break;
			}
		} else if (!strcmp(key, "rule")) {
			/* the line was cut at its first colon: the rule keeps its own */
			char *rule = val;
			struct bl_rule *nr = realloc(cur->rules, (cur->nrules + 1) * sizeof(*nr));
			if (!nr)
				abort();
			cur->rules = nr;
			if ((rc = parse_rule(&ps, rule, &cur->rules[cur->nrules])) != 0) {
				free_rule(&cur->rules[cur->nrules]);
				break;
			}
			cur->nrules++;
		} else {
			rc = fail(&ps, key, "one of check, description, severity, group, cis, remediation, condition, rule");
			break;
		}
	}
	if (rc == 0 && cur)
		rc = finish_check(&ps, cur, check_line);
	if (rc == 0 && !p.nchecks) {
		ps.line = ps.line ? ps.line : 1;
		rc = fail(&ps, "check", "at least one 'check: ID' in the file");
	}
	if (rc != 0) {
		bl_policy_free(&p);
		return -1;
	}
	/* the checks array does not move any more: point each check at itself */
	for (size_t i = 0; i < p.nchecks; i++)
		p.checks[i].check.policy = &p.checks[i];
	*out = p;
	return 0;
}
