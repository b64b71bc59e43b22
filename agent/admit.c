/*
 * agent/admit.c - whether an allocation may happen: the one decision every
 * interposed allocation takes before it reaches the real allocator.
 *
 * Sources of a refusal, in the order they are asked (enum halloc_refusal):
 *   --limit      halloc-trace's budget for the live heap (HALLOC_AGENT
 *                limit=); needs accounting, which the limit switches on
 *   faults       halloc-trace --fail-after, --fail-rate, --fail-at
 *                (faults.c), on the recorded path
 *   the monitor  halloc_set_memory_monitor(): asked last, because it may
 *                keep its own budget: once it said yes, nothing else may
 *                refuse the allocation
 * Each source sets a bit of ha_agent_api while it can refuse, so that an
 * allocation with no source pays one load and one branch
 * (ha_agent_admit in accounting.h).
 *
 * The monitor (a function and its argument) is replaced while other
 * threads call it: the pair sits behind a sequence lock, so a caller
 * always gets a pair that was set together. A call that started before a
 * replacement may still run the old monitor.
 */
#include <errno.h>
#include <limits.h>

#include "agent/accounting.h"
#include "agent/faults.h"

static uint64_t limit;

static struct {
	unsigned seq; /* odd while a setter writes */
	int setter;   /* one setter at a time */
	halloc_memory_monitor_fn fn;
	void *user;
} monitor;

void ha_agent_set_limit(uint64_t bytes)
{
	limit = bytes;
	if (bytes) {
		ha_agent_acct_enable();
		__atomic_fetch_or(&ha_agent_api, HA_GATE_LIMIT,
				  __ATOMIC_RELEASE);
	}
}

void ha_agent_admit_faults(void)
{
	if (ha_agent_faults_on)
		__atomic_fetch_or(&ha_agent_api, HA_GATE_FAULTS,
				  __ATOMIC_RELEASE);
}

void ha_agent_set_monitor(halloc_memory_monitor_fn fn, void *user_ptr)
{
	unsigned s;

	while (__atomic_exchange_n(&monitor.setter, 1, __ATOMIC_ACQUIRE))
		__builtin_ia32_pause();
	s = monitor.seq;
	__atomic_store_n(&monitor.seq, s + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&monitor.fn, fn, __ATOMIC_RELAXED);
	__atomic_store_n(&monitor.user, user_ptr, __ATOMIC_RELAXED);
	__atomic_store_n(&monitor.seq, s + 2, __ATOMIC_RELEASE);
	if (fn)
		__atomic_fetch_or(&ha_agent_api, HA_GATE_MONITOR,
				  __ATOMIC_RELEASE);
	else
		__atomic_fetch_and(&ha_agent_api, ~HA_GATE_MONITOR,
				   __ATOMIC_RELEASE);
	__atomic_store_n(&monitor.setter, 0, __ATOMIC_RELEASE);
}

static halloc_memory_monitor_fn get_monitor(void **user)
{
	halloc_memory_monitor_fn fn;
	unsigned s;

	for (;;) {
		s = __atomic_load_n(&monitor.seq, __ATOMIC_ACQUIRE);
		if (s & 1) {
			__builtin_ia32_pause();
			continue;
		}
		fn = __atomic_load_n(&monitor.fn, __ATOMIC_RELAXED);
		*user = __atomic_load_n(&monitor.user, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&monitor.seq, __ATOMIC_RELAXED) == s)
			return fn;
	}
}

/* Calls the monitor, marking the thread as in a hook. */
static bool ask_monitor(ssize_t bytes, bool post)
{
	halloc_memory_monitor_fn fn;
	void *user;
	bool yes;
	int saved;

	fn = get_monitor(&user);
	if (!fn)
		return true;
	saved = errno;
	ha_agent_acct_hook_enter();
	yes = fn(user, bytes, post);
	ha_agent_acct_hook_leave();
	errno = saved;
	return yes;
}

/* From the accounting's hooks, which checked the thread is in none. */
void ha_agent_monitor_freed(int64_t bytes)
{
	ask_monitor((ssize_t)bytes, true);
}

/* The live heap after the call would be over the limit. */
static bool over_limit(size_t size, uint64_t freed)
{
	int64_t live = ha_agent_acct_live_bytes();
	__int128 after = (__int128)live - (__int128)freed + (__int128)size;

	return after > (__int128)limit;
}

unsigned ha_agent_admit_slow(struct ha_agent_thread *t, unsigned fn,
			     size_t size, uint64_t freed)
{
	unsigned gates = __atomic_load_n(&ha_agent_api, __ATOMIC_ACQUIRE);

	if ((gates & HA_GATE_LIMIT) && over_limit(size, freed))
		return HALLOC_REFUSED_LIMIT;
	/* Fault injection, on the recorded path only (faults.h). */
	if ((gates & HA_GATE_FAULTS) && t) {
		unsigned why = ha_agent_fault_check(t, fn, size);

		if (why)
			return why;
	}
	/* A new source: its bit in accounting.h, its test here. The
	 * monitor stays last: see the top of the file. */
	if ((gates & HA_GATE_MONITOR) && !ha_agent_acct_in_hook() &&
	    !ask_monitor(size > SSIZE_MAX ? SSIZE_MAX : (ssize_t)size, false))
		return HALLOC_REFUSED_MONITOR;
	return 0;
}
