#include "lib/connstr.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static bool base64_ok(const char *s)
{
	size_t n = strlen(s), pad = 0;
	if (n == 0 || n % 4)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '=') {
			pad++;
			if (i < n - 2)
				return false;
		} else if (pad || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
				   c == '+' || c == '/')) {
			return false;
		}
	}
	return true;
}

static int set_field(char *dst, size_t size, const char *name, const char *v, size_t len, char *err,
		     size_t errsize)
{
	if (len == 0) {
		snprintf(err, errsize, "connection string: %s is empty", name);
		return -1;
	}
	if (len >= size) {
		snprintf(err, errsize, "connection string: %s is longer than %zu characters", name, size - 1);
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)v[i];
		/* Ids and names end up in MQTT topics and TLS names; a key is
		 * checked as base64 later. */
		bool topic_char = (c == '#' || c == '+') && strcmp(name, "SharedAccessKey") != 0;
		if (c <= ' ' || c == 0x7f || topic_char) {
			snprintf(err, errsize, "connection string: %s contains a space, control character, '#' or '+'",
				 name);
			return -1;
		}
	}
	memcpy(dst, v, len);
	dst[len] = 0;
	return 0;
}

int connstr_parse(const char *text, struct connstr *out, char *err, size_t errsize)
{
	memset(out, 0, sizeof(*out));
	if (strncmp(text, "\xef\xbb\xbf", 3) == 0)
		text += 3;
	while (*text == ' ' || *text == '\t' || *text == '\r' || *text == '\n')
		text++;
	size_t total = strlen(text);
	while (total && strchr(" \t\r\n", text[total - 1]))
		total--;
	if (total == 0) {
		snprintf(err, errsize, "connection string: empty (expected HostName=...;DeviceId=...;ModuleId=...;SharedAccessKey=...)");
		return -1;
	}
	const char *p = text, *end = text + total;
	while (p < end) {
		const char *semi = memchr(p, ';', (size_t)(end - p));
		const char *stop = semi ? semi : end;
		const char *eq = memchr(p, '=', (size_t)(stop - p));
		if (stop == p) { /* ";;" or a trailing ';' */
			p = stop + 1;
			continue;
		}
		if (!eq) {
			snprintf(err, errsize, "connection string: field '%.*s' has no '=' (expected Name=value;...)",
				 (int)(stop - p > 40 ? 40 : stop - p), p);
			return -1;
		}
		size_t nlen = (size_t)(eq - p);
		const char *v = eq + 1;
		size_t vlen = (size_t)(stop - v);
		int rc = 0;
#define FIELD(n) (nlen == sizeof(n) - 1 && strncasecmp(p, n, nlen) == 0)
		if (FIELD("HostName"))
			rc = set_field(out->host, sizeof(out->host), "HostName", v, vlen, err, errsize);
		else if (FIELD("DeviceId"))
			rc = set_field(out->device, sizeof(out->device), "DeviceId", v, vlen, err, errsize);
		else if (FIELD("ModuleId"))
			rc = set_field(out->module, sizeof(out->module), "ModuleId", v, vlen, err, errsize);
		else if (FIELD("SharedAccessKey"))
			rc = set_field(out->key, sizeof(out->key), "SharedAccessKey", v, vlen, err, errsize);
		else if (FIELD("GatewayHostName"))
			rc = set_field(out->gateway, sizeof(out->gateway), "GatewayHostName", v, vlen, err, errsize);
		else if (FIELD("x509")) {
			if (vlen == 4 && strncasecmp(v, "true", 4) == 0)
				out->x509 = true;
			else if (!(vlen == 5 && strncasecmp(v, "false", 5) == 0)) {
				snprintf(err, errsize, "connection string: x509 must be true or false");
				return -1;
			}
		} else if (FIELD("SharedAccessKeyName")) {
			snprintf(err, errsize, "connection string: SharedAccessKeyName belongs to a hub (service) "
				 "connection string; use the module's own connection string");
			return -1;
		} else if (FIELD("SharedAccessSignature")) {
			snprintf(err, errsize, "connection string: a fixed SharedAccessSignature cannot be renewed; "
				 "use SharedAccessKey or x509=true");
			return -1;
		}
		/* Other fields (e.g. a future one) are ignored, as the SDKs do. */
#undef FIELD
		if (rc)
			return -1;
		p = stop + (semi ? 1 : 0);
	}
	if (!out->host[0]) {
		snprintf(err, errsize, "connection string: HostName is missing");
		return -1;
	}
	if (!out->device[0]) {
		snprintf(err, errsize, "connection string: DeviceId is missing");
		return -1;
	}
	if (out->x509 && out->key[0]) {
		snprintf(err, errsize, "connection string: give either SharedAccessKey or x509=true, not both");
		return -1;
	}
	if (!out->x509 && !out->key[0]) {
		snprintf(err, errsize, "connection string: SharedAccessKey is missing (or add x509=true for a certificate)");
		return -1;
	}
	if (out->key[0] && !base64_ok(out->key)) {
		snprintf(err, errsize, "connection string: SharedAccessKey is not valid base64");
		return -1;
	}
	return 0;
}

char *secret_file_read(const char *path, size_t max, char *err, size_t errsize)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		snprintf(err, errsize, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errsize, "%s: expected a regular file", path);
		close(fd);
		return NULL;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, errsize, "%s: refusing a secret that group or others can access (mode %03o); "
			 "fix with: chmod 600 %s", path, (unsigned)(st.st_mode & 0777), path);
		close(fd);
		return NULL;
	}
	if ((size_t)st.st_size > max) {
		snprintf(err, errsize, "%s: expected at most %zu bytes", path, max);
		close(fd);
		return NULL;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	ssize_t n = buf ? read(fd, buf, (size_t)st.st_size) : -1;
	close(fd);
	if (n < 0) {
		snprintf(err, errsize, "%s: cannot read: %s", path, strerror(errno));
		free(buf);
		return NULL;
	}
	buf[n] = 0;
	if (strlen(buf) != (size_t)n) {
		snprintf(err, errsize, "%s: contains a NUL byte (expected text)", path);
		free(buf);
		return NULL;
	}
	return buf;
}

int connstr_load(const char *path, struct connstr *out, char *err, size_t errsize)
{
	char *text = secret_file_read(path, 4096, err, errsize);
	if (!text)
		return -1;
	char msg[256];
	int rc = connstr_parse(text, out, msg, sizeof(msg));
	/* The text holds the key: wipe it before freeing. */
	explicit_bzero(text, strlen(text));
	free(text);
	if (rc)
		snprintf(err, errsize, "%s: %s", path, msg);
	return rc;
}
