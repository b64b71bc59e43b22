/*
 * agent/faults.h - fault injection (halloc-trace --fail-after, --fail-rate,
 * --fail-at): which allocation calls the agent refuses on purpose, so that
 * a program's out-of-memory paths run. Internal to the agent.
 *
 * The tracer asks for faults with keys of HALLOC_AGENT (agent/transport.h);
 * faults.c reads them once, at start. A refused call never reaches glibc:
 * interpose.c writes a REFUSED record, sets errno to ENOMEM and returns
 * NULL (posix_memalign returns ENOMEM). It is never counted.
 *
 * What one "allocation call" is, for the counts below: a call, on the
 * traced path, that would ask glibc for new memory - malloc, calloc,
 * realloc and reallocarray of NULL or to a non-zero size, posix_memalign
 * (with a valid alignment), aligned_alloc, memalign, valloc, pvalloc -
 * made by the program or by a library for it (stdio's buffers too), not by
 * the agent itself. free and realloc(p, 0) are not; neither is a call that
 * fails its argument checks before the allocator (reallocarray's n * size
 * overflowing, calloc's too). Refused calls count.
 */
#ifndef HALLOC_AGENT_FAULTS_H
#define HALLOC_AGENT_FAULTS_H

#include <stddef.h>

#include "agent/agent.h"

#pragma GCC visibility push(hidden)

/* Nonzero when some fault was asked for: the fast path tests only this. */
extern unsigned ha_agent_faults_on;

/*
 * Reads the fault keys from HALLOC_AGENT's value (before the variable is
 * removed from the environment). Keys it does not know are skipped.
 */
void ha_agent_faults_init(const char *value);

/*
 * Whether this allocation call is refused: 0, or the enum halloc_refusal
 * saying why. t->here must say where the program's call is (interpose.c's
 * HA_AGENT_HERE), for --fail-at's stack walk. Counts the call.
 */
unsigned ha_agent_fault_decide(struct ha_agent_thread *t, unsigned fn,
			       size_t size);

static inline unsigned ha_agent_fault_check(struct ha_agent_thread *t,
					    unsigned fn, size_t size)
{
	if (__builtin_expect(!ha_agent_faults_on, 1))
		return 0;
	return ha_agent_fault_decide(t, fn, size);
}

#pragma GCC visibility pop

#endif /* HALLOC_AGENT_FAULTS_H */
