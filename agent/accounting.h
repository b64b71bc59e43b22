/*
 * agent/accounting.h - what the in-process API (include/halloc/halloc.h)
 * needs from the allocation path. Internal to libhalloc.so.
 *
 *   accounting.c  the address -> size table, the process totals, the
 *                 allocation callback
 *   admit.c       whether an allocation may happen: the memory monitor,
 *                 --limit (and, beside them, fault injection)
 *   api.c         the public functions and the registry of typed sites
 *
 * When accounting is on: it costs a table operation per call, so it is
 * switched on at the agent's start only for a process that asks for it:
 * the program links libhalloc itself (libhalloc is in the main
 * executable's DT_NEEDED), or halloc-trace gave it a limit ("limit=" in
 * HALLOC_AGENT); later, only by setting a callback or a monitor.
 * Otherwise every call pays one load and one branch for the API, and the
 * statistics functions fail with ENOSYS.
 *
 * Invariants:
 *  - A block enters the table after the allocator returned it and leaves
 *    it before it goes back to the allocator, so an address is in the
 *    table at most once even when threads reuse it at once.
 *  - Calls made while the thread is inside the agent (its guard set) are
 *    neither recorded nor counted: the statistics count what the log
 *    holds. Calls made inside the callback or the monitor are counted but
 *    call neither again (a per-thread flag, not the guard).
 *  - The callback and the monitor run outside the agent's guard, after
 *    the event's record is written: an allocation they make is the
 *    program's and is recorded.
 *  - Nothing here allocates: tables are mmap'd.
 */
#ifndef HALLOC_AGENT_ACCOUNTING_H
#define HALLOC_AGENT_ACCOUNTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/agent.h"
#include "halloc/halloc.h"

#pragma GCC visibility push(hidden)

/* ---- accounting.c ------------------------------------------------------- */

/*
 * What the API asks of the allocation path, in one word so that a call
 * that needs none of it pays one load and one branch: HA_API_ACCT,
 * accounting is on (never turned off); the gates (admit.c), some reason
 * to refuse an allocation may apply, one bit per source.
 */
extern unsigned ha_agent_api;
#define HA_API_ACCT	(1u << 0)
#define HA_API_CALLBACK (1u << 1) /* a callback is set */
#define HA_GATE_MONITOR (1u << 2)
#define HA_GATE_LIMIT	(1u << 3)
#define HA_GATE_FAULTS	(1u << 4) /* halloc-trace --fail-* (faults.c) */
#define HA_GATES	(~(HA_API_ACCT | HA_API_CALLBACK))

static inline unsigned ha_agent_api_flags(void)
{
	return __atomic_load_n(&ha_agent_api, __ATOMIC_RELAXED);
}

static inline bool ha_agent_acct_on(void)
{
	return ha_agent_api_flags() & HA_API_ACCT;
}

/* At the agent's start, under the guard: switch on if the program links
 * libhalloc. ha_agent_acct_enable() switches on unconditionally. */
void ha_agent_acct_start(void);
void ha_agent_acct_enable(void);

/* A call the agent does not record takes the API's path: the API is in
 * use and the thread is not inside the agent. */
static inline bool ha_agent_api_wanted(void)
{
	return ha_agent_api_flags() && !ha_agent_self.guard;
}

/*
 * A table entry's value: the requested size in the low 48 bits, the typed
 * site (api.c, 1-based; 0: untyped) above. HA_ACCT_UNKNOWN: the address
 * was not in the table (allocated before accounting or inside the agent).
 */
#define HA_ACCT_SIZE_BITS 48
#define HA_ACCT_SIZE(v)	  ((v) & (((uint64_t)1 << HA_ACCT_SIZE_BITS) - 1))
#define HA_ACCT_SITE(v)	  ((unsigned)((v) >> HA_ACCT_SIZE_BITS))
#define HA_ACCT_UNKNOWN	  UINT64_MAX

/* Where a call came from, for the callback: known for halloc() only. */
struct ha_agent_caller {
	const char *file;
	unsigned line;
};

/*
 * The events, in the order the allocation path makes them. Each updates
 * the totals, then calls the callback (and after a free the monitor),
 * unless this thread is already in one of them.
 */
/* p (non-NULL) came out of the allocator for size bytes; site 0: untyped. */
void ha_agent_acct_alloc(void *p, size_t size, unsigned site,
			 const struct ha_agent_caller *caller);
/* Before the block goes back: its table value (HA_ACCT_UNKNOWN if none). */
uint64_t ha_agent_acct_take(void *p);
/* A realloc failed: the old block is back in the table. */
void ha_agent_acct_restore(void *p, uint64_t value);
/* After the block (value from ha_agent_acct_take) went back. */
void ha_agent_acct_freed(uint64_t value);
/* A realloc moved the block of old_value to p, now size bytes. */
void ha_agent_acct_realloc(uint64_t old_value, void *p, size_t size);

void ha_agent_acct_set_callback(halloc_alloc_callback_fn fn);
void ha_agent_acct_totals(struct halloc_usage *out);
/* Live bytes now (for --limit). */
int64_t ha_agent_acct_live_bytes(void);
/* The monitor or the callback runs on this thread: no nested calls. */
bool ha_agent_acct_in_hook(void);
void ha_agent_acct_hook_enter(void);
void ha_agent_acct_hook_leave(void);

/* ---- admit.c --------------------------------------------------------------
 */

/* After faults.c read HALLOC_AGENT: its gate, if it asked for faults. */
void ha_agent_admit_faults(void);
/* Set from HALLOC_AGENT's limit= (agent.c); 0: no limit. */
void ha_agent_set_limit(uint64_t bytes);

unsigned ha_agent_admit_slow(struct ha_agent_thread *t, unsigned fn,
			     size_t size, uint64_t freed);

/*
 * THE decision, taken before the real allocator: 0 to go on, or why the
 * allocation is refused (enum halloc_refusal). size: bytes requested;
 * freed: bytes the call gives back if it succeeds (realloc's old block).
 * t: the thread inside the agent when traced, else NULL. On a refusal the
 * caller records it (traced), sets errno to ENOMEM and returns NULL.
 */
static inline unsigned ha_agent_admit(struct ha_agent_thread *t, unsigned fn,
				      size_t size, uint64_t freed)
{
	if (__builtin_expect(!(ha_agent_api_flags() & HA_GATES), 1))
		return 0;
	return ha_agent_admit_slow(t, fn, size, freed);
}

void ha_agent_set_monitor(halloc_memory_monitor_fn fn, void *user_ptr);
/* The monitor's after-the-fact call (bytes < 0: a block was freed). */
void ha_agent_monitor_freed(int64_t bytes);

/* ---- events.c: the API's records ------------------------------------------
 */

/* A typed site, once per stream before its first typed ALLOC. */
void ha_agent_put_type(struct ha_agent_thread *t, unsigned id,
		       size_t object_size, const char *name, const char *file,
		       unsigned line);
/* A halloc(type, n) that returned p (non-NULL): ALLOC, fn HALLOC_FN_HALLOC. */
void ha_agent_record_typed_alloc(struct ha_agent_thread *t, void *p,
				 size_t size, unsigned id, size_t n);

/* ---- api.c ----------------------------------------------------------------
 */

/* A typed block of `size` bytes of site appears (+1) or goes (-1). */
void ha_agent_type_change(unsigned site, uint64_t size, int dir);

#pragma GCC visibility pop

#endif /* HALLOC_AGENT_ACCOUNTING_H */
