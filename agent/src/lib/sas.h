/* IoT Hub shared access signatures (SAS tokens). */
#ifndef AGENT_LIB_SAS_H
#define AGENT_LIB_SAS_H

#include <stddef.h>
#include <time.h>

/* "SharedAccessSignature sr={enc(resource)}&sig={enc(b64(HMAC-SHA256(
 * b64dec(key), enc(resource) "\n" expiry)))}&se={expiry}" as the IoT Hub
 * SDKs build it; enc() is percent-encoding of everything but unreserved
 * characters. `resource` is "{host}/devices/{device}[/modules/{module}]".
 * Returns 0, or -1 if the key is not base64 or out is too small. */
int sas_token(const char *key_b64, const char *resource, time_t expiry, char *out, size_t size);

/* Percent-encode s (RFC 3986 unreserved characters stay). Returns 0, or -1
 * if out is too small. */
int url_encode(const char *s, char *out, size_t size);

#endif
