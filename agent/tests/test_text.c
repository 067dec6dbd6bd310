#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/text.h"

static void replaces_invalid_utf8_and_controls(void **state)
{
	(void)state;
	const char in[] = "a\xff" "b\0c\xc3\xa9\xed\xa0\x80\t";
	char *out = text_clean(in, sizeof(in) - 1, 64);
	assert_string_equal(out, "a\xef\xbf\xbd" "b c\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	free(out);
}

static void cuts_at_max_without_splitting_a_character(void **state)
{
	(void)state;
	char *out = text_clean("ab\xc3\xa9", 4, 3);
	assert_string_equal(out, "ab");
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(replaces_invalid_utf8_and_controls),
		cmocka_unit_test(cuts_at_max_without_splitting_a_character),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
