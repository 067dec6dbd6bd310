/* Wall-clock steps seen by a detector. NTP stepping the clock at boot, an
 * RTC set by hand or a wrong time zone fixed: the wall clock moves while
 * elapsed time does not. Detectors whose windows are in wall-clock time
 * (log timestamps) ask after each jump and shift what they keep by it, so
 * their windows keep measuring elapsed time. */
#ifndef AGENT_LIB_DETECT_CLOCK_H
#define AGENT_LIB_DETECT_CLOCK_H

#include <time.h>

struct agent_ctx;

struct dclock {
	time_t wall;
	long long mono_ms;
	int known;
};

/* How far the wall clock jumped (seconds, either sign) since the last
 * call, beyond what the monotonic clock elapsed; 0 for the first call and
 * for drift under two seconds (slewing, rounding). */
long dclock_jump(struct dclock *c, const struct agent_ctx *ctx);

/* t shifted by the jump; 0 ("never") stays 0. */
static inline time_t dclock_shift(time_t t, long jump)
{
	return t ? t + jump : 0;
}

#endif
