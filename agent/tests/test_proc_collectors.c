//needs: collector process
//needs: collector network_activity
/* What the process and network_activity collectors hand to detectors
 * (ProcessSample, SocketSample, NetworkCounters: observed entries never
 * appear in messages) on the fixture trees, seen through a capturing
 * detector put in the core's detector table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/core.h"

static cJSON *captured; /* [{"Kind": ..., "Entry": {...}}] */

static void capture(struct agent_ctx *ctx, void *state, const char *event, const cJSON *entry)
{
	(void)ctx;
	(void)state;
	cJSON *c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "Kind", event);
	cJSON_AddItemToObject(c, "Entry", cJSON_Duplicate(entry, 1));
	cJSON_AddItemToArray(captured, c);
}

static const struct detector capture_detector = { .name = "capture", .on_entry = capture };

/* Run every collector once on a tree, capturing what detectors see. */
static void collect_root(const char *root)
{
	struct agent_ctx ctx;
	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(core_init(&ctx, config_new(), root), 0);
	struct detector_slot slot = { &capture_detector, NULL };
	struct detector_slot *saved = ctx.detectors;
	size_t nsaved = ctx.ndetectors;
	ctx.detectors = &slot;
	ctx.ndetectors = 1;
	cJSON_Delete(captured);
	captured = cJSON_CreateArray();
	core_collect_all(&ctx, true);
	ctx.detectors = saved;
	ctx.ndetectors = nsaved;
	core_fini(&ctx);
}

static void collect_tree(const char *tree)
{
	char root[1024];
	snprintf(root, sizeof(root), "%s/%s", AGENT_TEST_FIXTURES, tree);
	collect_root(root);
}

static const cJSON *find(const char *kind, const char *field, double value)
{
	const cJSON *c;
	cJSON_ArrayForEach(c, captured) {
		if (strcmp(cJSON_GetObjectItem(c, "Kind")->valuestring, kind) != 0)
			continue;
		const cJSON *e = cJSON_GetObjectItem(c, "Entry");
		const cJSON *f = field ? cJSON_GetObjectItem(e, field) : NULL;
		if (!field || (cJSON_IsNumber(f) && f->valuedouble == value))
			return e;
	}
	return NULL;
}

static int count(const char *kind)
{
	int n = 0;
	const cJSON *c;
	cJSON_ArrayForEach(c, captured)
		n += strcmp(cJSON_GetObjectItem(c, "Kind")->valuestring, kind) == 0;
	return n;
}

static bool has_string(const cJSON *array, const char *s)
{
	const cJSON *it;
	cJSON_ArrayForEach(it, array)
		if (cJSON_IsString(it) && strcmp(it->valuestring, s) == 0)
			return true;
	return false;
}

static bool has_number(const cJSON *array, double v)
{
	const cJSON *it;
	cJSON_ArrayForEach(it, array)
		if (cJSON_IsNumber(it) && it->valuedouble == v)
			return true;
	return false;
}

static double num(const cJSON *o, const char *a, const char *b)
{
	const cJSON *v = cJSON_GetObjectItem(o, a);
	if (b)
		v = cJSON_GetObjectItem(v, b);
	assert_true(cJSON_IsNumber(v));
	return v->valuedouble;
}

static void process_samples_on_the_busybox_device(void **state)
{
	(void)state;
	collect_tree("busybox-device");
	/* Eleven processes and one kernel thread, which is left out. */
	assert_int_equal(count("ProcessSample"), 11);
	assert_null(find("ProcessSample", "ProcessId", 2));

	const cJSON *agent = find("ProcessSample", "ProcessId", 300);
	assert_non_null(agent);
	assert_string_equal(cJSON_GetObjectItem(agent, "Name")->valuestring, "defender-iot-ag");
	assert_string_equal(cJSON_GetObjectItem(agent, "Executable")->valuestring, "/usr/sbin/defender-iot-agent");
	assert_false(cJSON_IsTrue(cJSON_GetObjectItem(agent, "ExecutableDeleted")));
	assert_int_equal(num(agent, "CpuTicks", NULL), 240);
	assert_true(num(agent, "ClockTicks", NULL) > 0);
	assert_int_equal(num(agent, "Uid", NULL), 990);
	assert_int_equal(num(agent, "ParentProcessId", NULL), 1);
	assert_string_equal(cJSON_GetObjectItem(agent, "CommandLine")->valuestring,
			    "/usr/sbin/defender-iot-agent --config /etc/defender-iot/config.json");
	assert_true(has_number(cJSON_GetObjectItem(agent, "AllSocketInodes"), 5300));
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(agent, "SocketInodes")), 0);

	const cJSON *wd = find("ProcessSample", "ProcessId", 240);
	assert_non_null(wd);
	const cJSON *targets = cJSON_GetObjectItem(wd, "FdTargets");
	assert_true(has_string(targets, "/dev/watchdog"));
	assert_true(has_string(targets, "/dev/null"));
	assert_int_equal(cJSON_GetArraySize(targets), 2); /* /dev/null once for fds 0-2 */

	const cJSON *dropbear = find("ProcessSample", "ProcessId", 201);
	const cJSON *socks = cJSON_GetObjectItem(dropbear, "AllSocketInodes");
	assert_int_equal(cJSON_GetArraySize(socks), 2);
	assert_true(has_number(socks, 5201) && has_number(socks, 5202));
}

static void socket_and_counter_samples_on_the_busybox_device(void **state)
{
	(void)state;
	collect_tree("busybox-device");
	assert_int_equal(count("SocketSample"), 1);
	const cJSON *sample = find("SocketSample", NULL, 0);
	assert_true(num(sample, "SampleTimeMs", NULL) > 0);
	const cJSON *socks = cJSON_GetObjectItem(sample, "Sockets");
	/* Every socket of every table, listeners included. */
	assert_int_equal(cJSON_GetArraySize(socks), 6);
	int listeners = 0;
	const cJSON *s;
	cJSON_ArrayForEach(s, socks) {
		const char *state_name = cJSON_GetObjectItem(s, "State")->valuestring;
		double inode = num(s, "Inode", NULL);
		listeners += strcmp(state_name, "LISTEN") == 0;
		if (inode == 5201 || inode == 5202)
			assert_int_equal(num(s, "ProcessId", NULL), 201);
		if (inode == 5250) {
			assert_string_equal(cJSON_GetObjectItem(s, "Protocol")->valuestring, "udp");
			assert_string_equal(cJSON_GetObjectItem(s, "RemoteAddress")->valuestring, "198.51.100.123");
			assert_int_equal(num(s, "ProcessId", NULL), 250);
		}
		if (inode == 5512) {
			assert_string_equal(cJSON_GetObjectItem(s, "LocalAddress")->valuestring, "fe80::42:acff:fe11:2");
			assert_int_equal(num(s, "ProcessId", NULL), 512);
		}
	}
	assert_int_equal(listeners, 3);

	const cJSON *c = find("NetworkCounters", NULL, 0);
	assert_non_null(c);
	assert_int_equal(num(c, "Tcp", "ActiveOpens"), 41);
	assert_int_equal(num(c, "Tcp", "OutRsts"), 25);
	assert_int_equal(num(c, "Tcp", "RetransSegs"), 12);
	assert_int_equal(num(c, "Udp", "NoPorts"), 7);
	assert_int_equal(num(c, "Udp", "OutDatagrams"), 530);
	assert_int_equal(num(c, "Icmp", "OutDestUnreachs"), 7);
	assert_int_equal(num(c, "Icmp", "InDestUnreachs"), 4);
	assert_true(num(c, "SampleTimeMs", NULL) > 0);
}

static void std_fds_that_are_sockets_on_the_debian_system(void **state)
{
	(void)state;
	collect_tree("debian-system");
	/* dhclient's stdout and stderr go to journald's stream socket. */
	const cJSON *dh = find("ProcessSample", "ProcessId", 650);
	assert_non_null(dh);
	const cJSON *pairs = cJSON_GetObjectItem(dh, "SocketInodes");
	assert_int_equal(cJSON_GetArraySize(pairs), 2);
	const cJSON *p;
	cJSON_ArrayForEach(p, pairs) {
		double fd = cJSON_GetArrayItem(p, 0)->valuedouble;
		assert_true(fd == 1 || fd == 2);
		assert_int_equal(cJSON_GetArrayItem(p, 1)->valuedouble, 6100);
	}
	const cJSON *bash = find("ProcessSample", "ProcessId", 993);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(bash, "SocketInodes")), 0);
	assert_true(has_string(cJSON_GetObjectItem(bash, "FdTargets"), "/dev/pts/0"));
	assert_int_equal(num(bash, "Uid", NULL), 1001);

	/* The raw socket: its IP protocol (1, ICMP) in RemotePort. */
	const cJSON *sample = find("SocketSample", NULL, 0);
	const cJSON *s;
	bool raw = false;
	cJSON_ArrayForEach(s, cJSON_GetObjectItem(sample, "Sockets")) {
		if (strcmp(cJSON_GetObjectItem(s, "Protocol")->valuestring, "raw") == 0) {
			raw = true;
			assert_int_equal(num(s, "RemotePort", NULL), 1);
			assert_int_equal(num(s, "LocalPort", NULL), 0);
			assert_int_equal(num(s, "ProcessId", NULL), 1100);
		}
	}
	assert_true(raw);
}

static void put(const char *dir, const char *name, const char *text, size_t len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	fclose(f);
}

static void link_to(const char *dir, const char *name, const char *target)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(symlink(target, path), 0);
}

/* A dropper that deleted its binary and talks through a socket on stdin,
 * holding the watchdog: what the process detectors look for. */
static void a_deleted_binary_with_a_socket_on_stdin(void **state)
{
	(void)state;
	char root[] = "/tmp/test_proc_collectors.XXXXXX";
	assert_non_null(mkdtemp(root));
	char dir[256];
	snprintf(dir, sizeof(dir), "%s/proc", root);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(dir, sizeof(dir), "%s/proc/77", root);
	assert_int_equal(mkdir(dir, 0755), 0);
	const char stat_line[] = "77 (.x) S 1 77 77 0 -1 4194560 0 0 0 0 500 20 0 0 20 0 1 0 9000 0 0\n";
	put(dir, "stat", stat_line, sizeof(stat_line) - 1);
	const char status[] = "Name:\t.x\nUid:\t1000\t1000\t1000\t1000\n";
	put(dir, "status", status, sizeof(status) - 1);
	const char cmdline[] = "/tmp/.x\0-c\0";
	put(dir, "cmdline", cmdline, sizeof(cmdline) - 1);
	link_to(dir, "exe", "/tmp/.x (deleted)");
	char fd[300];
	snprintf(fd, sizeof(fd), "%s/fd", dir);
	assert_int_equal(mkdir(fd, 0755), 0);
	link_to(fd, "0", "socket:[4242]");
	link_to(fd, "1", "pipe:[99]");
	link_to(fd, "2", "/dev/null");
	link_to(fd, "3", "/dev/watchdog");
	link_to(fd, "4", "socket:[4243]");
	link_to(fd, "5", "/dev/shm/x");

	collect_root(root);
	const cJSON *p = find("ProcessSample", "ProcessId", 77);
	assert_non_null(p);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(p, "ExecutableDeleted")));
	assert_string_equal(cJSON_GetObjectItem(p, "Executable")->valuestring, "/tmp/.x (deleted)");
	assert_string_equal(cJSON_GetObjectItem(p, "CommandLine")->valuestring, "/tmp/.x -c");
	assert_int_equal(num(p, "CpuTicks", NULL), 520);
	assert_int_equal(num(p, "Uid", NULL), 1000);
	const cJSON *std = cJSON_GetObjectItem(p, "SocketInodes");
	assert_int_equal(cJSON_GetArraySize(std), 1);
	assert_int_equal(cJSON_GetArrayItem(cJSON_GetArrayItem(std, 0), 0)->valuedouble, 0);
	assert_int_equal(cJSON_GetArrayItem(cJSON_GetArrayItem(std, 0), 1)->valuedouble, 4242);
	const cJSON *all = cJSON_GetObjectItem(p, "AllSocketInodes");
	assert_int_equal(cJSON_GetArraySize(all), 2);
	assert_true(has_number(all, 4242) && has_number(all, 4243));
	const cJSON *targets = cJSON_GetObjectItem(p, "FdTargets");
	assert_int_equal(cJSON_GetArraySize(targets), 2); /* no pipe, no /dev/shm file */
	assert_true(has_string(targets, "/dev/watchdog") && has_string(targets, "/dev/null"));

	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	assert_int_equal(system(cmd), 0);
}

static int teardown(void **state)
{
	(void)state;
	cJSON_Delete(captured);
	captured = NULL;
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(process_samples_on_the_busybox_device),
		cmocka_unit_test(socket_and_counter_samples_on_the_busybox_device),
		cmocka_unit_test(std_fds_that_are_sockets_on_the_debian_system),
		cmocka_unit_test(a_deleted_binary_with_a_socket_on_stdin),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
