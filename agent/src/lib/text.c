#include <stdlib.h>
#include <string.h>

#include "lib/text.h"

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	unsigned int cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* overlong forms, surrogates and beyond U+10FFFF are invalid */
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

char *text_clean(const char *s, size_t len, size_t max)
{
	const unsigned char *in = (const unsigned char *)s;
	/* The output is at most 3 bytes per input byte: allocate no more, so
	 * that short strings kept in tables do not each hold `max` bytes. */
	if (len < max / 3)
		max = len * 3;
	char *out = malloc(max + 1);
	size_t o = 0;
	if (!out)
		abort();
	for (size_t i = 0; i < len;) {
		size_t l = utf8_len(in + i, len - i);
		if (l == 1 && (in[i] < 0x20 || in[i] == 0x7f)) {
			if (o + 1 > max)
				break;
			out[o++] = ' ';
			i++;
		} else if (l) {
			if (o + l > max)
				break;
			memcpy(out + o, in + i, l);
			o += l;
			i += l;
		} else {
			if (o + 3 > max)
				break;
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = 0;
	/* Room for 3 bytes per input byte was reserved; text kept in tables
	 * (every process's command line) gives back what it did not use. */
	if (max - o >= 16) {
		char *shrunk = realloc(out, o + 1);
		if (shrunk)
			out = shrunk;
	}
	return out;
}
