/* Text from the system (process names, command lines, log lines) is
 * attacker-controlled: make it safe to put in JSON. */
#ifndef AGENT_LIB_TEXT_H
#define AGENT_LIB_TEXT_H

#include <stddef.h>

/* A malloc'd copy of the `len` bytes at s, at most `max` bytes of output,
 * with invalid UTF-8 replaced by U+FFFD, NUL and other control characters
 * but tab replaced by a space, and trailing spaces removed. Never NULL
 * (aborts on out of memory). */
char *text_clean(const char *s, size_t len, size_t max);

#endif
