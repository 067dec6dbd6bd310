/* glibc's regcomp builds one copy of a repeated subexpression per
 * repetition ("a{1,30000}" is 30,000 copies, and every "+" doubles what it
 * applies to, so "((a+)+)+..." grows as 2^depth), and its closure
 * computation grows faster still: 20-odd characters take gigabytes and
 * minutes (found by agent/fuzz/fuzz_policy; tests/fuzz/regressions/). The
 * estimate below follows that expansion; stacked quantifiers, undefined in
 * POSIX EREs, are refused outright. */
#include "lib/ere.h"

#include <ctype.h>
#include <stdlib.h>

#define OVER (ERE_MAX_COPIES + 1)

static unsigned long cap(unsigned long long v)
{
	return v > OVER ? OVER : (unsigned long)v;
}

static const char *bracket_end(const char *p)
{
	p++;
	if (*p == '^')
		p++;
	if (*p == ']')
		p++;
	for (; *p && *p != ']'; p++) {
		if (p[0] == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
			char close = p[1];
			for (p += 2; *p && !(p[0] == close && p[1] == ']'); p++)
				;
			if (!*p)
				return p;
			p++;
		}
	}
	return p;
}

/* One alternative list up to ')' or the end; *err set on a stacked
 * quantifier. Returns the estimated copies (capped). */
static unsigned long sequence(const char **pp, int depth, const char **err)
{
	unsigned long total = 0, last = 0;
	bool quantified = false;
	const char *p = *pp;
	while (*p && *p != ')' && !*err) {
		unsigned long mult = 0;
		if (*p == '*' || *p == '?') {
			mult = 1;
			p++;
		} else if (*p == '+') {
			mult = 2;
			p++;
		} else if (*p == '{' && isdigit((unsigned char)p[1])) {
			char *end;
			unsigned long lo = strtoul(p + 1, &end, 10), hi = lo;
			if (*end == ',')
				hi = isdigit((unsigned char)end[1]) ? strtoul(end + 1, &end, 10) : lo + 1;
			p = end;
			while (*p && *p != '}')
				p++;
			if (*p)
				p++;
			mult = hi > lo ? hi : lo;
			if (mult == 0)
				mult = 1;
		}
		if (mult) {
			if (quantified)
				*err = "a quantifier applied to a quantifier (e.g. a++ or a+*)";
			quantified = true;
			total = cap((unsigned long long)total - last + (unsigned long long)last * mult);
			last = cap((unsigned long long)last * mult);
			continue;
		}
		quantified = false;
		if (*p == '(') {
			p++;
			last = depth < 64 ? sequence(&p, depth + 1, err) : OVER;
			if (*p == ')')
				p++;
		} else if (*p == '[') {
			p = bracket_end(p);
			if (*p)
				p++;
			last = 1;
		} else if (*p == '|') {
			p++;
			last = 0;
			continue;
		} else {
			if (*p == '\\' && p[1])
				p++;
			p++;
			last = 1;
		}
		total = cap((unsigned long long)total + last);
	}
	*pp = p;
	return total;
}

const char *ere_too_costly(const char *pattern)
{
	const char *err = NULL;
	const char *p = pattern;
	unsigned long copies = 0;
	while (*p && !err) {
		copies = cap((unsigned long long)copies + sequence(&p, 0, &err));
		if (*p == ')')
			p++; /* unbalanced: regcomp reports it */
	}
	if (err)
		return err;
	if (copies > ERE_MAX_COPIES)
		return "repetitions that expand to more than 2048 copies (e.g. a{1,30000} or ((a+)+)+...)";
	return NULL;
}
