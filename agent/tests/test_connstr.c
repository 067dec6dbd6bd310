/* Connection strings and the secret files holding them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/connstr.h"

static void parses_module_string(void **state)
{
	(void)state;
	struct connstr c;
	char err[256];
	assert_int_equal(connstr_parse("\xef\xbb\xbfHostName=hub.example.net;DeviceId=dev-1;ModuleId=DefenderIotMicroAgent;"
				       "SharedAccessKey=QUJDRA==\r\n", &c, err, sizeof(err)), 0);
	assert_string_equal(c.host, "hub.example.net");
	assert_string_equal(c.device, "dev-1");
	assert_string_equal(c.module, "DefenderIotMicroAgent");
	assert_string_equal(c.key, "QUJDRA==");
	assert_false(c.x509);

	assert_int_equal(connstr_parse("hostname=h;deviceid=d;x509=true;", &c, err, sizeof(err)), 0);
	assert_true(c.x509);
	assert_string_equal(c.module, "");
}

static void expect_error(const char *text, const char *needle)
{
	struct connstr c;
	char err[256] = "";
	assert_int_equal(connstr_parse(text, &c, err, sizeof(err)), -1);
	if (!strstr(err, needle))
		fail_msg("'%s': error '%s' does not mention '%s'", text, err, needle);
	assert_null(strchr(err, '\n'));
}

static void names_the_bad_field(void **state)
{
	(void)state;
	expect_error("", "empty");
	expect_error("DeviceId=d;SharedAccessKey=QUJDRA==", "HostName is missing");
	expect_error("HostName=h;SharedAccessKey=QUJDRA==", "DeviceId is missing");
	expect_error("HostName=h;DeviceId=d;ModuleId=m", "SharedAccessKey is missing");
	expect_error("HostName=h;DeviceId=d;SharedAccessKey=not*base64", "SharedAccessKey is not valid base64");
	expect_error("HostName=h;DeviceId=d;SharedAccessKey=QUJDRA==;x509=true", "not both");
	struct connstr ok;
	char err[256];
	assert_int_equal(connstr_parse("HostName=h;DeviceId=d;SharedAccessKey=ab+/cd==", &ok, err, sizeof(err)), 0);
	expect_error("HostName=h;DeviceId=d;x509=maybe", "x509 must be true or false");
	expect_error("HostName=h;DeviceId=;SharedAccessKey=QUJDRA==", "DeviceId is empty");
	expect_error("HostName=h;DeviceId=a/#;SharedAccessKey=QUJDRA==", "DeviceId contains");
	expect_error("HostName=h;garbage;DeviceId=d", "'garbage' has no '='");
	expect_error("HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=QUJDRA==", "hub (service)");
}

static void refuses_readable_secret(void **state)
{
	(void)state;
	char path[] = "/tmp/connstr-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *s = "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=QUJDRA==\n";
	assert_int_equal(write(fd, s, strlen(s)), (int)strlen(s));
	close(fd);
	struct connstr c;
	char err[512];
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(connstr_load(path, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "chmod 600"));
	assert_non_null(strstr(err, path));
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(connstr_load(path, &c, err, sizeof(err)), 0);
	assert_string_equal(c.module, "m");
	unlink(path);
	assert_int_equal(connstr_load(path, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot open"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parses_module_string),
		cmocka_unit_test(names_the_bad_field),
		cmocka_unit_test(refuses_readable_secret),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
