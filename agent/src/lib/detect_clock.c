#include "lib/detect_clock.h"

#include "core/agent.h"

long dclock_jump(struct dclock *c, const struct agent_ctx *ctx)
{
	time_t wall = agent_now(ctx);
	long long mono = agent_monotonic_ms(ctx);
	long jump = 0;
	if (c->known) {
		long long skew_ms = ((long long)(wall - c->wall)) * 1000 - (mono - c->mono_ms);
		/* wall has one-second resolution: within two seconds is no jump */
		if (skew_ms >= 2000 || skew_ms <= -2000)
			jump = (long)(skew_ms / 1000);
	}
	/* After a jump the reference moves with it, so one step is reported once. */
	c->wall = wall;
	c->mono_ms = mono;
	c->known = 1;
	return jump;
}
