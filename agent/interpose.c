/*
 * agent/interpose.c - the functions libhalloc.so puts in front of glibc's.
 *
 * Thin on purpose: enter the agent (or not: off, or already inside it on
 * this thread), call glibc's allocator through the names it exports for
 * exactly this (__libc_malloc & co: no dlsym, so they work while the loader
 * is still resolving symbols and before any constructor ran), hand the
 * result to events.c, leave. The order of those steps is the contract's
 * (include/halloc/log.h): a free takes its sequence number before the
 * block goes back to glibc, an allocation after it came out.
 *
 * dlopen is deliberately not wrapped: glibc resolves RUNPATH, $ORIGIN and
 * the namespace from dlopen's return address, which a wrapper would make
 * ours. New objects are found when a stack first points into them
 * (modules.c). dlclose is wrapped: an unload must be seen at once.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "agent/accounting.h"
#include "agent/agent.h"

#define EXPORT __attribute__((visibility("default")))

extern void *__libc_malloc(size_t size);
extern void __libc_free(void *ptr);
extern void *__libc_calloc(size_t nmemb, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

/*
 * Each entry point takes one of three paths:
 *   traced   the agent records the call (ha_agent_enter() gave a thread)
 *   counted  not recorded, but accounting is on (accounting.h): the
 *            program links libhalloc, or has a limit
 *   plain    neither: a tail call to glibc
 * The traced and counted work sits in separate functions, so that the
 * plain path has no stack frame to build. A traced function, tail-called
 * too, notes where it runs (HA_AGENT_HERE): the stack walk starts there,
 * one frame below the program's call, instead of under all of the
 * agent's frames.
 *
 * On the traced and counted paths the order is: ha_agent_admit() (may
 * refuse: NULL, ENOMEM, a REFUSED record when traced), the block leaves
 * the accounting table, glibc, the record, the agent is left, the
 * accounting's totals and hooks (outside the guard: the callback's own
 * allocations are the program's).
 */
#define SLOW __attribute__((noinline))

static inline bool counting(void)
{
	return __atomic_load_n(&ha_agent_acct_on, __ATOMIC_RELAXED);
}

/* A refused allocation: recorded when traced, never counted. */
static void *refused(struct ha_agent_thread *t, unsigned fn, size_t size,
		     unsigned why)
{
	if (t) {
		ha_agent_record_refused(t, fn, size, why);
		ha_agent_leave(t);
	}
	errno = ENOMEM;
	return NULL;
}

/* After a successful allocation, out of the agent. */
static void *counted(void *p, size_t size)
{
	if (p && counting())
		ha_agent_acct_alloc(p, size, 0, NULL);
	return p;
}

static SLOW void *traced_malloc(struct ha_agent_thread *t, size_t size)
{
	unsigned why;
	void *p;

	HA_AGENT_HERE(&t->here);
	why = ha_agent_admit(t, HALLOC_FN_MALLOC, size, 0);
	if (why)
		return refused(t, HALLOC_FN_MALLOC, size, why);
	p = __libc_malloc(size);
	ha_agent_record_alloc(t, HALLOC_FN_MALLOC, p, size);
	ha_agent_leave(t);
	return counted(p, size);
}

static SLOW void *counted_malloc(size_t size)
{
	unsigned why = ha_agent_admit(NULL, HALLOC_FN_MALLOC, size, 0);

	if (why)
		return refused(NULL, HALLOC_FN_MALLOC, size, why);
	return counted(__libc_malloc(size), size);
}

EXPORT void *malloc(size_t size)
{
	struct ha_agent_thread *t = ha_agent_enter();

	if (t)
		return traced_malloc(t, size);
	if (!ha_agent_counting())
		return __libc_malloc(size);
	return counted_malloc(size);
}

static SLOW void traced_free(struct ha_agent_thread *t, void *ptr)
{
	/* Before the block goes back: no one can have it again yet. */
	uint64_t seq = ha_agent_next_seq();
	uint64_t value = counting() ? ha_agent_acct_take(ptr) : HA_ACCT_UNKNOWN;

	__libc_free(ptr);
	ha_agent_record_free(t, HALLOC_FREE_FREE, seq, ptr);
	ha_agent_leave(t);
	ha_agent_acct_freed(value);
}

static SLOW void counted_free(void *ptr)
{
	uint64_t value = ha_agent_acct_take(ptr);

	__libc_free(ptr);
	ha_agent_acct_freed(value);
}

EXPORT void free(void *ptr)
{
	struct ha_agent_thread *t;

	if (!ptr)
		return; /* not a free: nothing to record, nothing to do */
	t = ha_agent_enter();
	if (t)
		return traced_free(t, ptr);
	if (!ha_agent_counting())
		return __libc_free(ptr);
	counted_free(ptr);
}

static SLOW void *traced_calloc(struct ha_agent_thread *t, size_t nmemb,
				size_t size, const void *caller)
{
	size_t total = ha_agent_calloc_size(nmemb, size, caller);
	unsigned why;
	void *p;

	HA_AGENT_HERE(&t->here);
	why = ha_agent_admit(t, HALLOC_FN_CALLOC, total, 0);
	if (why)
		return refused(t, HALLOC_FN_CALLOC, total, why);
	p = __libc_calloc(nmemb, size);

	ha_agent_record_alloc(t, HALLOC_FN_CALLOC, p, total);
	ha_agent_leave(t);
	return counted(p, total);
}

static SLOW void *counted_calloc(size_t nmemb, size_t size)
{
	size_t total;
	unsigned why;

	if (__builtin_mul_overflow(nmemb, size, &total))
		return __libc_calloc(nmemb, size); /* fails: not counted */
	why = ha_agent_admit(NULL, HALLOC_FN_CALLOC, total, 0);
	if (why)
		return refused(NULL, HALLOC_FN_CALLOC, total, why);
	return counted(__libc_calloc(nmemb, size), total);
}

EXPORT void *calloc(size_t nmemb, size_t size)
{
	struct ha_agent_thread *t = ha_agent_enter();

	if (t)
		return traced_calloc(t, nmemb, size,
				     __builtin_return_address(0));
	if (!ha_agent_counting())
		return __libc_calloc(nmemb, size);
	return counted_calloc(nmemb, size);
}

/*
 * realloc and reallocarray, once the size is known to be sane; t is NULL
 * on the counted path. The old block leaves the accounting table before
 * glibc may reuse it, and comes back if the call fails.
 */
static void *realloc_refused(struct ha_agent_thread *t, unsigned fn,
			     void *old, uint64_t value, size_t size,
			     unsigned why)
{
	ha_agent_acct_restore(old, value);
	return refused(t, fn, size, why);
}

static uint64_t old_size(uint64_t value)
{
	return value == HA_ACCT_UNKNOWN ? 0 : HA_ACCT_SIZE(value);
}

static SLOW void *traced_realloc(struct ha_agent_thread *t, unsigned fn,
				 void *old, size_t size)
{
	uint64_t stack, seq, value = HA_ACCT_UNKNOWN;
	unsigned why;
	void *p;

	HA_AGENT_HERE(&t->here);
	if (!old) {
		why = ha_agent_admit(t, fn, size, 0);
		if (why)
			return refused(t, fn, size, why);
		p = __libc_realloc(NULL, size);
		ha_agent_record_alloc(t, fn, p, size);
		ha_agent_leave(t);
		return counted(p, size);
	}
	if (counting())
		value = ha_agent_acct_take(old);
	if (!size) {
		/* glibc frees and returns NULL: a FREE, by realloc. */
		seq = ha_agent_next_seq();
		p = __libc_realloc(old, 0);
		ha_agent_record_free(t, HALLOC_FREE_REALLOC, seq, old);
		if (p)
			ha_agent_record_alloc(t, fn, p, 0);
		ha_agent_leave(t);
		ha_agent_acct_freed(value);
		return counted(p, 0);
	}
	why = ha_agent_admit(t, fn, size, old_size(value));
	if (why)
		return realloc_refused(t, fn, old, value, size, why);
	/* The REALLOC names its stack at seq: publish the stack first. */
	stack = ha_agent_stack_id(t);
	seq = ha_agent_next_seq();
	p = __libc_realloc(old, size);
	ha_agent_record_realloc(t, fn, stack, seq, old, p, size);
	ha_agent_leave(t);
	if (!p)
		ha_agent_acct_restore(old, value);
	else if (counting())
		ha_agent_acct_realloc(value, p, size);
	return p;
}

static SLOW void *counted_realloc(unsigned fn, void *old, size_t size)
{
	uint64_t value;
	unsigned why;
	void *p;

	if (!old) {
		why = ha_agent_admit(NULL, fn, size, 0);
		if (why)
			return refused(NULL, fn, size, why);
		return counted(__libc_realloc(NULL, size), size);
	}
	value = ha_agent_acct_take(old);
	if (!size) {
		p = __libc_realloc(old, 0);
		ha_agent_acct_freed(value);
		return counted(p, 0);
	}
	why = ha_agent_admit(NULL, fn, size, old_size(value));
	if (why)
		return realloc_refused(NULL, fn, old, value, size, why);
	p = __libc_realloc(old, size);
	if (!p)
		ha_agent_acct_restore(old, value);
	else
		ha_agent_acct_realloc(value, p, size);
	return p;
}

EXPORT void *realloc(void *ptr, size_t size)
{
	struct ha_agent_thread *t = ha_agent_enter();

	if (t)
		return traced_realloc(t, HALLOC_FN_REALLOC, ptr, size);
	if (!ha_agent_counting())
		return __libc_realloc(ptr, size);
	return counted_realloc(HALLOC_FN_REALLOC, ptr, size);
}

EXPORT void *reallocarray(void *ptr, size_t nmemb, size_t size)
{
	struct ha_agent_thread *t = ha_agent_enter();
	size_t total;

	if (__builtin_mul_overflow(nmemb, size, &total)) {
		if (t) {
			ha_agent_record_failed(t, HALLOC_FN_REALLOCARRAY,
					       SIZE_MAX, ENOMEM);
			ha_agent_leave(t);
		}
		errno = ENOMEM;
		return NULL;
	}
	if (t)
		return traced_realloc(t, HALLOC_FN_REALLOCARRAY, ptr, total);
	if (!ha_agent_counting())
		return __libc_realloc(ptr, total);
	return counted_realloc(HALLOC_FN_REALLOCARRAY, ptr, total);
}

/* Aligned allocations, valloc and pvalloc: one glibc call each. */
static void *glibc_aligned(unsigned fn, size_t alignment, size_t size)
{
	if (fn == HALLOC_FN_VALLOC)
		return __libc_valloc(size);
	if (fn == HALLOC_FN_PVALLOC)
		return __libc_pvalloc(size);
	return __libc_memalign(alignment, size);
}

static SLOW void *traced_memalign(struct ha_agent_thread *t, unsigned fn,
				  size_t alignment, size_t size)
{
	unsigned why;
	void *p;

	HA_AGENT_HERE(&t->here);
	why = ha_agent_admit(t, fn, size, 0);
	if (why)
		return refused(t, fn, size, why);
	p = glibc_aligned(fn, alignment, size);

	ha_agent_record_alloc(t, fn, p, size);
	ha_agent_leave(t);
	return counted(p, size);
}

static SLOW void *counted_memalign(unsigned fn, size_t alignment, size_t size)
{
	unsigned why = ha_agent_admit(NULL, fn, size, 0);

	if (why)
		return refused(NULL, fn, size, why);
	return counted(glibc_aligned(fn, alignment, size), size);
}

static void *aligned(unsigned fn, size_t alignment, size_t size)
{
	struct ha_agent_thread *t = ha_agent_enter();

	if (t)
		return traced_memalign(t, fn, alignment, size);
	if (!ha_agent_counting())
		return glibc_aligned(fn, alignment, size);
	return counted_memalign(fn, alignment, size);
}

EXPORT int posix_memalign(void **memptr, size_t alignment, size_t size)
{
	void *p;

	/* A power of two multiple of sizeof(void *), as glibc checks it. */
	if (!alignment || alignment % sizeof(void *) ||
	    ((alignment / sizeof(void *)) & (alignment / sizeof(void *) - 1))) {
		struct ha_agent_thread *t = ha_agent_enter();

		if (t) {
			ha_agent_record_failed(t, HALLOC_FN_POSIX_MEMALIGN,
					       size, EINVAL);
			ha_agent_leave(t);
		}
		return EINVAL;
	}
	p = aligned(HALLOC_FN_POSIX_MEMALIGN, alignment, size);
	if (!p)
		return ENOMEM;
	*memptr = p;
	return 0;
}

/*
 * glibc 2.36's aligned_alloc is memalign (any alignment is rounded up to a
 * power of two): a traced program must behave as it does untraced.
 */
EXPORT void *aligned_alloc(size_t alignment, size_t size)
{
	return aligned(HALLOC_FN_ALIGNED_ALLOC, alignment, size);
}

EXPORT void *memalign(size_t alignment, size_t size)
{
	return aligned(HALLOC_FN_MEMALIGN, alignment, size);
}

EXPORT void *valloc(size_t size)
{
	return aligned(HALLOC_FN_VALLOC, 0, size);
}

EXPORT void *pvalloc(size_t size)
{
	return aligned(HALLOC_FN_PVALLOC, 0, size);
}

EXPORT int dlclose(void *handle)
{
	static int (*real_dlclose)(void *);
	int (*real)(void *) = __atomic_load_n(&real_dlclose, __ATOMIC_ACQUIRE);
	struct ha_agent_thread *t;
	int r, saved;

	if (!real) {
		/* dlsym may allocate: keep that out of the record. */
		ha_agent_self.guard++;
		real = (int (*)(void *))dlsym(RTLD_NEXT, "dlclose");
		ha_agent_self.guard--;
		if (!real)
			return -1;
		__atomic_store_n(&real_dlclose, real, __ATOMIC_RELEASE);
	}
	ha_agent_modules_closing();
	r = real(handle);
	t = ha_agent_enter();
	if (t) {
		saved = errno;
		ha_agent_modules_rescan(t);
		errno = saved;
		ha_agent_leave(t);
	}
	return r;
}
