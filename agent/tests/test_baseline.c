//needs: collector baseline
/* The baseline collector's policy-file parser and comparisons. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/baseline_eval.h"

static void policy_parses_checks_and_rules(void **state)
{
	(void)state;
	const char *text =
		"# comment\n"
		"check: ACME-001\n"
		"  description: Factory daemon gone\n"
		"  severity: High\n"
		"  condition: none\n"
		"  rule: p:acme-factoryd\n"
		"\n"
		"check: ACME-002\n"
		"description: Debug off: really\n"
		"severity: Low\n"
		"group: Product\n"
		"cis: 1.2.3\n"
		"rule: f:/etc/acme.conf -> r:^debug\\s*=\\s*0 && !r:verbose\n"
		"rule: not d:/etc/acme.d -> r:\\.conf$ -> n:^port\\s+(\\d+) compare > 1023\n"
		"rule: s:kernel.randomize_va_space -> 2\n";
	struct bl_policy p;
	char err[256] = "";
	assert_int_equal(bl_policy_parse("acme.policy", text, &p, err, sizeof(err)), 0);
	assert_int_equal(p.nchecks, 2);
	struct bl_policy_check *a = &p.checks[0], *b = &p.checks[1];
	assert_string_equal(a->check.id, "ACME-001");
	assert_string_equal(a->check.group, "Custom");
	assert_int_equal(a->condition, COND_NONE);
	assert_int_equal(a->nrules, 1);
	assert_int_equal(a->rules[0].type, RULE_PROCESS);
	assert_ptr_equal(a->check.policy, a);
	assert_string_equal(b->check.description, "Debug off: really");
	assert_string_equal(b->check.cis, "1.2.3");
	assert_int_equal(b->nrules, 3);
	assert_int_equal(b->rules[0].nops, 2);
	assert_true(b->rules[0].ops[1].negate);
	assert_true(b->rules[1].negate);
	assert_true(b->rules[1].name_regex);
	assert_int_equal(b->rules[1].ops[0].kind, BOP_NUMERIC);
	assert_int_equal(b->rules[1].ops[0].cmp, OP_GE);
	assert_true(b->rules[1].ops[0].strict);
	assert_true(b->rules[1].ops[0].number == 1023);
	assert_int_equal(b->rules[2].type, RULE_SYSCTL);
	assert_int_equal(b->rules[2].ops[0].kind, BOP_LITERAL);
	assert_int_equal(b->line, 8);
	bl_policy_free(&p);
}

static void expect_error(const char *text, const char *want)
{
	struct bl_policy p = { 0 };
	char err[256] = "";
	assert_int_equal(bl_policy_parse("/etc/x.policy", text, &p, err, sizeof(err)), -1);
	if (!strstr(err, want))
		fail_msg("got '%s', want '%s'", err, want);
	assert_null(strchr(err, '\n'));
	assert_int_equal(p.nchecks, 0);
}

static void policy_errors_name_file_line_and_field(void **state)
{
	(void)state;
	expect_error("check: A\ndescription: d\nseverity: High\nrule: c:/usr/bin/id\n",
		     "/etc/x.policy:4: field 'rule': expected f:, d:, p: or s: (command rules c:");
	expect_error("check: A\ndescription: d\nseverity: Severe\n", "/etc/x.policy:3: field 'severity': expected one of");
	expect_error("check: A\nseverity: Low\nrule: f:/x\n", "/etc/x.policy:1: field 'description': expected");
	expect_error("check: A\ndescription: d\nseverity: Low\n", "/etc/x.policy:1: field 'rule': expected at least one");
	expect_error("check: A\ndescription: d\nseverity: Low\nrule: f:relative\n",
		     "/etc/x.policy:4: field 'rule': expected an absolute path");
	expect_error("check: A\ndescription: d\nseverity: Low\nrule: f:/x -> r:(\n",
		     "/etc/x.policy:4: field 'rule': expected a valid POSIX extended regular expression");
	expect_error("check: A\ndescription: d\nseverity: Low\nrule: f:/x -> n:^a (\\d+) compare ~ 3\n",
		     "/etc/x.policy:4: field 'rule': expected an operator after compare");
	expect_error("check: A\ndescription: d\nseverity: Low\nrule: f:/x -> n:^a \\d+ compare < 3\n",
		     "/etc/x.policy:4: field 'rule': expected a valid regular expression with one (group)");
	expect_error("check: A\ndescription: d\nseverity: Low\nrule: f:/x\ncheck: A\n",
		     "/etc/x.policy:5: field 'check': expected an id not used before");
	expect_error("check: A B\n", "/etc/x.policy:1: field 'check': expected an id of letters");
	expect_error("check: A\ncolour: red\n", "/etc/x.policy:2: field 'colour': expected one of check");
	expect_error("just words\n", "/etc/x.policy:1: field 'just words': expected 'key: value'");
	expect_error("# only a comment\n", "field 'check': expected at least one");
	expect_error("check: A\ndescription: d\nseverity: Low\ncondition: most\n",
		     "/etc/x.policy:4: field 'condition': expected all, any or none");
}

static void comparisons(void **state)
{
	(void)state;
	assert_true(bl_compare("2", OP_EQ, "2"));
	assert_true(bl_compare("02", OP_EQ, "2"));
	assert_true(bl_compare("No", OP_EQ, "no"));
	assert_false(bl_compare("yes", OP_EQ, "no"));
	assert_true(bl_compare("yes", OP_NE, "no"));
	assert_true(bl_compare("3", OP_LE, "4"));
	assert_false(bl_compare("five", OP_LE, "4"));
	assert_true(bl_compare("VERBOSE", OP_IN, "INFO|VERBOSE"));
	assert_false(bl_compare("DEBUG", OP_IN, "INFO|VERBOSE"));
	assert_true(bl_compare("1m", OP_RANGE, "1:60"));
	assert_false(bl_compare("2m", OP_RANGE, "1:60"));
	assert_false(bl_compare("-1", OP_RANGE, "0:30"));
	assert_true(bl_compare("/etc/issue.net", OP_SET, ""));
	assert_false(bl_compare("none", OP_SET, ""));
	assert_true(bl_compare("077", OP_MASK, "027"));
	assert_true(bl_compare("027", OP_MASK, "027"));
	assert_false(bl_compare("022", OP_MASK, "027"));
	assert_true(bl_compare("10:30:60", OP_TRIPLE, "10:30:60"));
	assert_false(bl_compare("10:30:100", OP_TRIPLE, "10:30:60"));
	assert_true(bl_compare("4", OP_TRIPLE, "10:30:60"));
}

static void perl_classes_become_posix(void **state)
{
	(void)state;
	regex_t re;
	assert_int_equal(bl_regcomp(&re, "^MaxAuthTries\\s+(\\d+)$", REG_NOSUB), 0);
	assert_int_equal(regexec(&re, "MaxAuthTries \t4", 0, NULL, 0), 0);
	assert_int_not_equal(regexec(&re, "MaxAuthTries x", 0, NULL, 0), 0);
	regfree(&re);
	assert_int_equal(bl_regcomp(&re, "\\.conf$", REG_NOSUB), 0);
	assert_int_equal(regexec(&re, "a.conf", 0, NULL, 0), 0);
	assert_int_not_equal(regexec(&re, "aconf", 0, NULL, 0), 0);
	regfree(&re);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(policy_parses_checks_and_rules),
		cmocka_unit_test(policy_errors_name_file_line_and_field),
		cmocka_unit_test(comparisons),
		cmocka_unit_test(perl_classes_become_posix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
