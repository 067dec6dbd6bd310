/* procnet_format_address writes what inet_ntop(3) writes, for the
 * addresses whose formatting has special cases and for random ones. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/procnet.h"

static void check(enum procnet_table t, const unsigned char *addr)
{
	struct procnet_socket s = { .table = (unsigned char)t };
	memcpy(s.laddr, addr, 16);
	char got[46], want[46];
	procnet_format_address(&s, false, got);
	assert_non_null(inet_ntop(t == PROCNET_TCP6 ? AF_INET6 : AF_INET, addr, want, sizeof(want)));
	assert_string_equal(got, want);
}

static void same_text_as_inet_ntop(void **state)
{
	(void)state;
	static const char *const v6[] = {
		"::", "::1", "::2", "1::", "1::1", "::ffff:10.0.2.2", "::ffff:0.0.0.0", "::10.0.2.2", "::0.0.0.2",
		"::ffff:1:2", "1:0:0:2:0:0:0:3", "1:0:0:2:0:0:3:4", "1:0:2:0:3:0:4:0", "0:1:0:0:0:0:0:0",
		"fe80::1:2:3:4", "2001:db8::ff00:42:8329", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		"0:0:0:0:0:1:0:0", "0:0:1::", "::1:0:0:0:0", "1:2:3:4:5:6:7:8", "64:ff9b::192.0.2.33",
		"0:0:0:0:0:fffe:1.2.3.4", "::ffff:ffff:1.2.3.4",
	};
	for (size_t i = 0; i < sizeof(v6) / sizeof(v6[0]); i++) {
		unsigned char a[16];
		assert_int_equal(inet_pton(AF_INET6, v6[i], a), 1);
		check(PROCNET_TCP6, a);
	}
	static const char *const v4[] = { "0.0.0.0", "127.0.0.1", "10.0.2.15", "255.255.255.255", "1.20.100.9" };
	for (size_t i = 0; i < sizeof(v4) / sizeof(v4[0]); i++) {
		unsigned char a[16] = { 0 };
		assert_int_equal(inet_pton(AF_INET, v4[i], a), 1);
		check(PROCNET_TCP, a);
	}
	/* Random addresses with many zero bytes, so that zero runs of every
	 * length and position occur. */
	uint32_t x = 12345;
	for (int n = 0; n < 50000; n++) {
		unsigned char a[16];
		for (int i = 0; i < 16; i += 2) {
			x = x * 1103515245u + 12345u;
			unsigned r = x >> 16;
			a[i] = (r & 3) ? 0 : (unsigned char)(r >> 2);
			a[i + 1] = (r & 12) ? 0 : (unsigned char)(r >> 7);
		}
		check(PROCNET_TCP6, a);
		check(PROCNET_TCP, a);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(same_text_as_inet_ntop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
