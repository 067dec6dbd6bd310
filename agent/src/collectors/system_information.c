//feature: collector system_information ON
//summary: System information: OS release, kernel, architecture, hostname, NICs, hardware and firmware
#include <dirent.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "core/agent.h"
#include "lib/text.h"

/* Add key: the first line of a file, cleaned; "" when absent. */
static void add_file_line(struct agent_ctx *ctx, cJSON *o, const char *key, const char *path)
{
	size_t len = 0;
	char *raw = agent_read_file(ctx, path, 512, &len);
	size_t n = 0;
	while (raw && n < len && raw[n] != '\n')
		n++;
	char *v = text_clean(raw ? raw : "", n, 256);
	cJSON_AddStringToObject(o, key, v);
	free(v);
	free(raw);
}

/* os-release values may be quoted: NAME="Debian GNU/Linux". */
static void add_os_release(struct agent_ctx *ctx, cJSON *o)
{
	static const struct {
		const char *field, *key;
	} map[] = { { "NAME", "OsName" }, { "VERSION_ID", "OsVersion" }, { "PRETTY_NAME", "OsPrettyName" } };
	char *text = agent_read_file(ctx, "/etc/os-release", 8192, NULL);
	if (!text)
		text = agent_read_file(ctx, "/usr/lib/os-release", 8192, NULL);
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		char *value = NULL;
		size_t flen = strlen(map[i].field);
		for (char *line = text; line && *line;) {
			char *nl = strchr(line, '\n');
			size_t len = nl ? (size_t)(nl - line) : strlen(line);
			if (len > flen && strncmp(line, map[i].field, flen) == 0 && line[flen] == '=') {
				const char *v = line + flen + 1;
				size_t vlen = len - flen - 1;
				if (vlen >= 2 && (v[0] == '"' || v[0] == '\'') && v[vlen - 1] == v[0]) {
					v++;
					vlen -= 2;
				}
				value = text_clean(v, vlen, 256);
				break;
			}
			line = nl ? nl + 1 : NULL;
		}
		cJSON_AddStringToObject(o, map[i].key, value ? value : "");
		free(value);
	}
	free(text);
}

/* Hardware identity: DMI on x86, the device tree model on boards, or the
 * retired agent's sysinfo.json that products write at manufacturing. */
static void add_hardware(struct agent_ctx *ctx, cJSON *o)
{
	static const struct {
		const char *key, *dmi, *json;
	} map[] = {
		{ "HardwareVendor", "/sys/class/dmi/id/sys_vendor", "HardwareVendor" },
		{ "HardwareModel", "/sys/class/dmi/id/product_name", "HardwareModel" },
		{ "HardwareSerialNumber", "/sys/class/dmi/id/product_serial", "HardwareSerialNumber" },
		{ "FirmwareVendor", "/sys/class/dmi/id/bios_vendor", "FirmwareVendor" },
		{ "FirmwareVersion", "/sys/class/dmi/id/bios_version", "FirmwareVersion" },
	};
	cJSON *sysinfo = NULL;
	char *text = agent_read_file(ctx, "/etc/defender-iot/sysinfo.json", 16384, NULL);
	if (!text)
		text = agent_read_file(ctx, "/etc/defender_iot_micro_agent/sysinfo.json", 16384, NULL);
	if (text) {
		sysinfo = cJSON_Parse(text);
		if (!cJSON_IsObject(sysinfo))
			agent_warn(ctx, "sysinfo.json: expected a JSON object of Hardware*/Firmware* strings; ignored");
		free(text);
	}
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(sysinfo, map[i].json));
		if (s && *s) {
			char *v = text_clean(s, strlen(s), 256);
			cJSON_AddStringToObject(o, map[i].key, v);
			free(v);
			continue;
		}
		add_file_line(ctx, o, map[i].key, map[i].dmi);
	}
	cJSON *model = cJSON_GetObjectItemCaseSensitive(o, "HardwareModel");
	if (!*cJSON_GetStringValue(model)) {
		size_t len = 0;
		char *dt = agent_read_file(ctx, "/proc/device-tree/model", 256, &len);
		if (dt) {
			/* the device tree model ends in NUL, not a newline */
			char *v = text_clean(dt, strnlen(dt, len), 256);
			cJSON_SetValuestring(model, v);
			free(v);
			free(dt);
		}
	}
	cJSON_Delete(sysinfo);
}

static const char *nic_type(struct agent_ctx *ctx, const char *name)
{
	char path[320];
	snprintf(path, sizeof(path), "/sys/class/net/%s/wireless", name);
	int fd = agent_open(ctx, path, O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		close(fd);
		return "WIFI";
	}
	snprintf(path, sizeof(path), "/sys/class/net/%s/type", name);
	char *t = agent_read_file(ctx, path, 16, NULL);
	int type = t ? atoi(t) : -1;
	free(t);
	if (type == 772)
		return "LOOPBACK";
	if (type == 1)
		return strncmp(name, "wl", 2) == 0 ? "WIFI" : (strncmp(name, "ww", 2) == 0 ? "MOBILE" : "ETH");
	return "UNKNOWN";
}

static cJSON *find_nic(cJSON *nics, const char *name)
{
	cJSON *n;
	cJSON_ArrayForEach(n, nics) {
		if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(n, "Name")), name) == 0)
			return n;
	}
	return NULL;
}

static cJSON *add_nic(struct agent_ctx *ctx, cJSON *nics, const char *name)
{
	cJSON *n = find_nic(nics, name);
	if (n)
		return n;
	n = cJSON_CreateObject();
	char *clean = text_clean(name, strlen(name), IFNAMSIZ * 4);
	cJSON_AddStringToObject(n, "Name", clean);
	cJSON_AddStringToObject(n, "Type", nic_type(ctx, name));
	char path[320];
	snprintf(path, sizeof(path), "/sys/class/net/%s/address", name);
	add_file_line(ctx, n, "Mac", path);
	cJSON_AddArrayToObject(n, "Ipv4");
	cJSON_AddArrayToObject(n, "Ipv6");
	cJSON_AddItemToArray(nics, n);
	free(clean);
	return n;
}

/* /proc/net/if_inet6: "fe800000000000000000000000000001 02 40 20 80 eth0" */
static void add_ipv6_from_proc(struct agent_ctx *ctx, cJSON *nics)
{
	FILE *f = agent_fopen(ctx, "/proc/net/if_inet6");
	char line[256];
	while (f && fgets(line, sizeof(line), f)) {
		char hex[33], name[IFNAMSIZ + 1];
		unsigned idx, plen, scope, flags;
		if (sscanf(line, "%32s %x %x %x %x %16s", hex, &idx, &plen, &scope, &flags, name) != 6 ||
		    strlen(hex) != 32)
			continue;
		struct in6_addr a;
		for (int i = 0; i < 16; i++) {
			unsigned b;
			if (sscanf(hex + 2 * i, "%2x", &b) != 1)
				b = 0;
			a.s6_addr[i] = (unsigned char)b;
		}
		char text[INET6_ADDRSTRLEN];
		inet_ntop(AF_INET6, &a, text, sizeof(text));
		cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(add_nic(ctx, nics, name), "Ipv6"),
				     cJSON_CreateString(text));
	}
	if (f)
		fclose(f);
}

static void add_nics(struct agent_ctx *ctx, cJSON *o)
{
	cJSON *nics = cJSON_AddArrayToObject(o, "Nics");
	int fd = agent_open(ctx, "/sys/class/net", O_RDONLY | O_DIRECTORY);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			add_nic(ctx, nics, de->d_name);
	if (d)
		closedir(d);
	else if (fd >= 0)
		close(fd);

	if (*agent_root(ctx)) {
		/* A snapshot tree has no live interfaces: IPv4 addresses are not
		 * in /proc, so only the recorded IPv6 ones are reported. */
		add_ipv6_from_proc(ctx, nics);
		return;
	}
	struct ifaddrs *ifa = NULL;
	if (getifaddrs(&ifa) != 0)
		return;
	for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
		if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
			continue;
		char text[INET6_ADDRSTRLEN];
		const void *a = i->ifa_addr->sa_family == AF_INET
					? (const void *)&((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr
					: (const void *)&((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr;
		if (!inet_ntop(i->ifa_addr->sa_family, a, text, sizeof(text)))
			continue;
		cJSON *nic = add_nic(ctx, nics, i->ifa_name);
		cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(nic, i->ifa_addr->sa_family == AF_INET ? "Ipv4"
													     : "Ipv6"),
				     cJSON_CreateString(text));
	}
	freeifaddrs(ifa);
}

static int collect(struct agent_ctx *ctx, void *state)
{
	(void)state;
	cJSON *o = cJSON_CreateObject();
	add_os_release(ctx, o);
	add_file_line(ctx, o, "KernelName", "/proc/sys/kernel/ostype");
	add_file_line(ctx, o, "KernelRelease", "/proc/sys/kernel/osrelease");
	add_file_line(ctx, o, "KernelVersion", "/proc/sys/kernel/version");
	add_file_line(ctx, o, "Hostname", "/proc/sys/kernel/hostname");
	if (!*agent_root(ctx)) {
		struct utsname u;
		if (uname(&u) == 0)
			cJSON_AddStringToObject(o, "Architecture", u.machine);
	} else {
		/* A snapshot records the machine it came from. */
		add_file_line(ctx, o, "Architecture", "/etc/defender-iot/architecture");
	}
	add_hardware(ctx, o);
	add_nics(ctx, o);
	cJSON_AddStringToObject(o, "AgentVersion", AGENT_VERSION);
	char *uptime = agent_read_file(ctx, "/proc/uptime", 64, NULL);
	cJSON_AddNumberToObject(o, "UptimeSeconds", uptime ? (double)atol(uptime) : 0);
	free(uptime);
	agent_report(ctx, o, NULL);
	return 0;
}

const struct collector collector_system_information = {
	.name = "system_information",
	.event_name = "SystemInformation",
	.priority = PRIORITY_LOW,
	.category = CATEGORY_PERIODIC,
	.collect = collect,
};
