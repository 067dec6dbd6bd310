//feature: collector sbom ON
//summary: SBoM: installed packages from the dpkg or opkg status file, or a Buildroot legal-info manifest
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/agent.h"
#include "lib/text.h"

static const struct config_key keys[] = {
	{ "Sbom_StatusFiles", CFG_LIST,
	  "/var/lib/dpkg/status,/var/lib/opkg/status,/usr/lib/opkg/status,/usr/share/defender-iot/buildroot-manifest.csv",
	  0, 0, NULL,
	  "package databases to read: dpkg/opkg status files, or a Buildroot legal-info manifest.csv (first line \"PACKAGE\",\"VERSION\",...)",
	  NULL },
	/* The core keeps at most 1024 entries of a periodic event. */
	{ "Sbom_MaxPackages", CFG_INT, "1024", 1, 1024, NULL,
	  "at most this many packages are reported; the rest are counted and warned about", NULL },
	{ NULL, 0, NULL, 0, 0, NULL, NULL, NULL },
};

/* Longer lines (a package's Description, a huge hostile field) are cut
 * here; the rest of the line is skipped. */
enum { MAX_LINE = 4096, MAX_VALUE = 256 };

struct package {
	char name[MAX_VALUE], version[MAX_VALUE], arch[MAX_VALUE], vendor[MAX_VALUE], license[MAX_VALUE];
	bool not_installed;
};

struct pass {
	long reported, max;
	bool warned;
};

static void report(struct agent_ctx *ctx, struct pass *p, const struct package *pkg, const char *source)
{
	if (!pkg->name[0] || pkg->not_installed)
		return;
	if (p->reported >= p->max) {
		if (!p->warned)
			agent_warn(ctx, "more than Sbom_MaxPackages (%ld) packages: the rest are not reported", p->max);
		p->warned = true;
		agent_count(ctx, "Sbom", "packages over Sbom_MaxPackages", 1);
		return;
	}
	static const char *const keys_[] = { "Name", "Version", "Architecture", "Vendor", "License" };
	const char *values[] = { pkg->name, pkg->version, pkg->arch, pkg->vendor, pkg->license };
	cJSON *e = cJSON_CreateObject();
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		char *v = text_clean(values[i], strlen(values[i]), MAX_VALUE);
		cJSON_AddStringToObject(e, keys_[i], v);
		free(v);
	}
	cJSON_AddStringToObject(e, "Source", source);
	agent_report(ctx, e, NULL);
	p->reported++;
}

/* Reads one line into buf (without its newline), cutting it at the buffer
 * and skipping the rest. Returns false at end of file. */
static bool read_line(FILE *f, char *buf, size_t size)
{
	if (!fgets(buf, (int)size, f))
		return false;
	size_t n = strlen(buf);
	if (n && buf[n - 1] == '\n') {
		buf[--n] = '\0';
	} else if (n == size - 1) {
		int c;
		while ((c = getc(f)) != EOF && c != '\n')
			;
	}
	if (n && buf[n - 1] == '\r')
		buf[n - 1] = '\0';
	return true;
}

static void set_value(char *dst, const char *v)
{
	while (*v == ' ' || *v == '\t')
		v++;
	snprintf(dst, MAX_VALUE, "%s", v);
}

/* The Debian control format (deb-control(5)) that dpkg and opkg both use for
 * their status database: stanzas of "Field: value" lines separated by blank
 * lines, continuation lines starting with a space. Hand-written because a
 * BusyBox device has neither libdpkg nor libopkg, and the agent needs five
 * fields of it. */
static void parse_control(struct agent_ctx *ctx, struct pass *p, FILE *f, const char *source)
{
	char line[MAX_LINE];
	struct package pkg;
	memset(&pkg, 0, sizeof(pkg));
	bool any = false;
	for (;;) {
		bool more = read_line(f, line, sizeof(line));
		if (!more || !line[0]) {
			if (any)
				report(ctx, p, &pkg, source);
			memset(&pkg, 0, sizeof(pkg));
			any = false;
			if (!more)
				break;
			continue;
		}
		if (line[0] == ' ' || line[0] == '\t')
			continue; /* continuation of a multi-line field (Description, Conffiles) */
		char *colon = strchr(line, ':');
		if (!colon)
			continue;
		*colon = '\0';
		const char *v = colon + 1;
		any = true;
		if (strcmp(line, "Package") == 0)
			set_value(pkg.name, v);
		else if (strcmp(line, "Version") == 0)
			set_value(pkg.version, v);
		else if (strcmp(line, "Architecture") == 0)
			set_value(pkg.arch, v);
		else if (strcmp(line, "Maintainer") == 0)
			set_value(pkg.vendor, v);
		else if (strcmp(line, "License") == 0)
			set_value(pkg.license, v);
		else if (strcmp(line, "Status") == 0) {
			/* "want flag status": only "installed" counts; removed
			 * packages keep "deinstall ok config-files". */
			const char *last = strrchr(v, ' ');
			pkg.not_installed = strcmp(last ? last + 1 : v, "installed") != 0;
		}
	}
}

/* One CSV field, "quoted" ("" is a quote) or bare; returns the rest of the
 * line after the comma, or NULL at its end. */
static const char *csv_field(const char *s, char out[MAX_VALUE])
{
	size_t n = 0;
	bool quoted = *s == '"';
	if (quoted)
		s++;
	for (; *s; s++) {
		if (quoted && *s == '"') {
			if (s[1] == '"') {
				s++;
			} else {
				quoted = false;
				continue;
			}
		} else if (!quoted && *s == ',') {
			break;
		}
		if (n + 1 < MAX_VALUE)
			out[n++] = *s;
	}
	out[n] = '\0';
	return *s == ',' ? s + 1 : NULL;
}

/* Buildroot keeps no package database on the target; its legal-info
 * manifest.csv ("PACKAGE","VERSION","LICENSE",...), copied into the image by
 * a post-build script, is the list of what was built. */
static void parse_manifest(struct agent_ctx *ctx, struct pass *p, FILE *f)
{
	char line[MAX_LINE];
	while (read_line(f, line, sizeof(line))) {
		struct package pkg;
		memset(&pkg, 0, sizeof(pkg));
		const char *rest = csv_field(line, pkg.name);
		rest = rest ? csv_field(rest, pkg.version) : NULL;
		if (rest)
			csv_field(rest, pkg.license);
		report(ctx, p, &pkg, "buildroot");
	}
}

static int collect(struct agent_ctx *ctx, void *state)
{
	(void)state;
	const struct agent_config *cfg = agent_config(ctx);
	struct pass p = { .max = config_int(cfg, "Sbom_MaxPackages") };
	const char *const *files;
	size_t n = config_list(cfg, "Sbom_StatusFiles", &files);
	/* /var/lib/opkg and /usr/lib/opkg may be one directory: read each file once. */
	struct {
		dev_t dev;
		ino_t ino;
	} seen[8];
	size_t nseen = 0;
	for (size_t i = 0; i < n; i++) {
		FILE *f = agent_fopen(ctx, files[i]);
		if (!f)
			continue;
		struct stat st;
		bool dup = fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode);
		for (size_t k = 0; !dup && k < nseen; k++)
			dup = seen[k].dev == st.st_dev && seen[k].ino == st.st_ino;
		if (dup) {
			fclose(f);
			continue;
		}
		if (nseen < sizeof(seen) / sizeof(seen[0])) {
			seen[nseen].dev = st.st_dev;
			seen[nseen++].ino = st.st_ino;
		}
		char first[16] = "";
		size_t got = fread(first, 1, 10, f);
		first[got] = '\0';
		rewind(f);
		if (strncmp(first, "\"PACKAGE\",", 10) == 0) {
			char header[MAX_LINE];
			read_line(f, header, sizeof(header));
			parse_manifest(ctx, &p, f);
		} else {
			parse_control(ctx, &p, f, strstr(files[i], "opkg") ? "opkg" : "dpkg");
		}
		fclose(f);
	}
	return 0;
}

const struct collector collector_sbom = {
	.name = "sbom",
	.event_name = "Sbom",
	.priority = PRIORITY_LOW,
	.category = CATEGORY_PERIODIC,
	.keys = keys,
	.collect = collect,
};
