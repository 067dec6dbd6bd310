/* SAS tokens, against a vector computed independently with Python's
 * standard library:
 *   sr = urllib.parse.quote(res, safe="")
 *   sig = base64.b64encode(hmac.new(base64.b64decode(key),
 *             (sr + "\n" + str(se)).encode(), hashlib.sha256).digest())
 *   "SharedAccessSignature sr=%s&sig=%s&se=%d" % (sr, quote(sig, safe=""), se)
 */
//needs: transport iothub
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/sas.h"

static void token_matches_python_vector(void **state)
{
	(void)state;
	char tok[512];
	assert_int_equal(sas_token("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkwMTI=",
				   "myhub.azure-devices.net/devices/dev1/modules/DefenderIotMicroAgent", 1767225600,
				   tok, sizeof(tok)),
			 0);
	assert_string_equal(tok, "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev1%2Fmodules%2F"
				 "DefenderIotMicroAgent&sig=TMu7IrS7UBBykbBrAdnh61HMUMNTsCxSdh0Q9%2BakVqk%3D&se=1767225600");
}

static void bad_key_and_small_buffer_fail(void **state)
{
	(void)state;
	char tok[512];
	assert_int_equal(sas_token("not base64!", "h/devices/d", 1, tok, sizeof(tok)), -1);
	assert_int_equal(sas_token("", "h/devices/d", 1, tok, sizeof(tok)), -1);
	assert_int_equal(sas_token("QUJD", "h/devices/d", 1, tok, 40), -1);
}

static void url_encoding(void **state)
{
	(void)state;
	char out[64];
	assert_int_equal(url_encode("urn:azureiot:Security:SecurityAgent:1", out, sizeof(out)), 0);
	assert_string_equal(out, "urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1");
	assert_int_equal(url_encode("a b/c~d", out, sizeof(out)), 0);
	assert_string_equal(out, "a%20b%2Fc~d");
	assert_int_equal(url_encode("///", out, 9), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(token_matches_python_vector),
		cmocka_unit_test(bad_key_and_small_buffer_fail),
		cmocka_unit_test(url_encoding),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
