/* IoT Hub device/module connection strings
 * ("HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=k" or ";x509=true")
 * and the secret files that hold them. */
#ifndef AGENT_LIB_CONNSTR_H
#define AGENT_LIB_CONNSTR_H

#include <stdbool.h>
#include <stddef.h>

struct connstr {
	char host[256];
	char device[129];
	char module[129];   /* "" for a device identity */
	char key[128];      /* base64; "" with x509 */
	char gateway[256];  /* GatewayHostName, "" if absent */
	bool x509;
};

/* Parse one connection string (surrounding white space, a UTF-8 BOM and a
 * trailing newline are allowed). Returns 0, or -1 with a one-line message
 * naming the missing or bad field. */
int connstr_parse(const char *text, struct connstr *out, char *err, size_t errsize);

/* Read a small secret file: refuses a file that is not regular, or that
 * group or others may read (the message says why and gives the chmod fix).
 * Returns a malloc'd NUL-terminated buffer or NULL with err set. */
char *secret_file_read(const char *path, size_t max, char *err, size_t errsize);

/* Load and parse a connection string file. */
int connstr_load(const char *path, struct connstr *out, char *err, size_t errsize);

#endif
