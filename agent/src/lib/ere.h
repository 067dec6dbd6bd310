/* Regular expressions from twins and policy files are compiled with
 * glibc's regcomp, whose cost explodes on some short patterns: refuse
 * those before compiling. */
#ifndef AGENT_LIB_ERE_H
#define AGENT_LIB_ERE_H

#include <stdbool.h>

/* What is wrong with a POSIX extended regular expression whose compilation
 * would take unbounded memory and time, or NULL if it is fine to compile:
 * a quantifier applied to a quantifier ("a++", "a+*"), or repetitions
 * that expand to more than ERE_MAX_COPIES copies of an atom. */
#define ERE_MAX_COPIES 2048
const char *ere_too_costly(const char *pattern);

#endif
