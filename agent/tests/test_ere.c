/* Regular expressions whose compilation would exhaust memory are refused
 * before regcomp; ordinary ones (the policy fixtures', the docs') are not.
 * Each refused pattern here took gigabytes in glibc's regcomp. */
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "lib/ere.h"

static void ordinary_patterns_pass(void **state)
{
	(void)state;
	static const char *const ok[] = {
		"^(root|admin)$", "^PermitRootLogin[[:space:]]+no", "^MaxAuthTries[[:space:]]+([0-9]+)",
		"[0-9]{1,3}(\\.[0-9]{1,3}){3}", "a{1,255}", "(a{1,15}){1,15}", "a*b+c?", "[]a+]+", "[[:alpha:]+]+",
		"x\\++", "(ab|cd)+", "a{2}b{3,}", "",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		const char *why = ere_too_costly(ok[i]);
		if (why)
			fail_msg("'%s' refused: %s", ok[i], why);
	}
}

static void explosive_patterns_are_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"a++++++++++++++++++++",                                   /* 1.3 GB */
		"a+*+*+*+*+*+*+*+*+*+*",                                   /* 570 MB */
		"a{1,30000}",                                              /* 3.2 GB */
		"((((((((((((((((((((a+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+", /* 1.9 GB */
		"(((a{20}){20}){20})",
		"x(y|z{1,9000})",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (!ere_too_costly(bad[i]))
			fail_msg("'%s' was not refused", bad[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ordinary_patterns_pass),
		cmocka_unit_test(explosive_patterns_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
