/* Needs OpenSSL's libcrypto, linked by the transports that call it. The
 * guard keeps the shared archive buildable on a system without OpenSSL
 * headers when no such transport is enabled. */
#if __has_include(<openssl/hmac.h>)
#include "lib/sas.h"

#include <stdbool.h>

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

int url_encode(const char *s, char *out, size_t size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			     *p == '-' || *p == '_' || *p == '.' || *p == '~';
		if (o + (plain ? 1 : 3) >= size)
			return -1;
		if (plain) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	if (o >= size)
		return -1;
	out[o] = 0;
	return 0;
}

int sas_token(const char *key_b64, const char *resource, time_t expiry, char *out, size_t size)
{
	unsigned char key[96], mac[EVP_MAX_MD_SIZE];
	size_t klen = strlen(key_b64);
	if (klen == 0 || klen % 4 || klen / 4 * 3 > sizeof(key))
		return -1;
	int n = EVP_DecodeBlock(key, (const unsigned char *)key_b64, (int)klen);
	if (n < 0)
		return -1;
	for (size_t i = klen; i > 0 && key_b64[i - 1] == '='; i--)
		n--; /* EVP_DecodeBlock counts the padding as zero bytes */
	char res[600], to_sign[700];
	if (url_encode(resource, res, sizeof(res)) != 0)
		return -1;
	int tl = snprintf(to_sign, sizeof(to_sign), "%s\n%lld", res, (long long)expiry);
	if (tl < 0 || (size_t)tl >= sizeof(to_sign))
		return -1;
	unsigned int mlen = 0;
	if (!HMAC(EVP_sha256(), key, n, (const unsigned char *)to_sign, (size_t)tl, mac, &mlen))
		return -1;
	explicit_bzero(key, sizeof(key));
	char b64[EVP_MAX_MD_SIZE * 2], sig[EVP_MAX_MD_SIZE * 4];
	EVP_EncodeBlock((unsigned char *)b64, mac, (int)mlen);
	if (url_encode(b64, sig, sizeof(sig)) != 0)
		return -1;
	int w = snprintf(out, size, "SharedAccessSignature sr=%s&sig=%s&se=%lld", res, sig, (long long)expiry);
	return w < 0 || (size_t)w >= size ? -1 : 0;
}
#endif
