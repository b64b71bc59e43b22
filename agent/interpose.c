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
#include "agent/pages.h"

#define EXPORT __attribute__((visibility("default")))

/*
 * Each entry point takes one of three paths:
 *   plain   neither recorded nor seen by the API: a tail call to glibc
 *   traced  the agent records the call (ha_agent_enter() gave a thread)
 *           and the API is not in use: glibc, the record
 *   api     the API is in use (accounting.h: the program links libhalloc,
 *           has a limit, a monitor...), recorded or not (t NULL)
 * The traced and api work sits in separate functions, so that the plain
 * path has no stack frame to build, and the traced path pays one load and
 * one branch for the API. A traced function, tail-called too, notes where
 * it runs (HA_AGENT_HERE): the stack walk starts there, one frame below
 * the program's call, instead of under all of the agent's frames.
 *
 * On the api path the order is: ha_agent_admit(), which may refuse
 * (NULL, ENOMEM, a REFUSED record when traced); the block leaves the
 * accounting table; glibc; the record; the agent is left; the
 * accounting's totals and hooks, outside the guard, since what the
 * callback allocates is the program's.
 */
#define SLOW __attribute__((noinline))
/*
 * Where the program called, for a page item's site: read in the tail-called
 * functions, never in an entry point (it would give each a stack frame).
 */
#define RA __builtin_return_address(0)

static inline bool api_in_use(void)
{
	return __builtin_expect(ha_agent_api_flags() != 0, 0);
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

/* The end of an allocation on the api path: record, leave, count. */
static void *allocated(struct ha_agent_thread *t, unsigned fn, void *p,
		       size_t size, const void *caller)
{
	if (t) {
		ha_agent_record_alloc(t, fn, p, size);
		ha_agent_pages_alloc(t, p, size, caller);
		ha_agent_leave(t);
	} else {
		ha_agent_pages_alloc(NULL, p, size, caller);
	}
	if (p && ha_agent_acct_on())
		ha_agent_acct_alloc(p, size, 0, NULL);
	return p;
}

static SLOW void *api_malloc(struct ha_agent_thread *t, size_t size)
{
	unsigned why = ha_agent_admit(t, HALLOC_FN_MALLOC, size, 0);

	if (why)
		return refused(t, HALLOC_FN_MALLOC, size, why);
	return allocated(t, HALLOC_FN_MALLOC, __libc_malloc(size), size, RA);
}

static SLOW void *traced_malloc(struct ha_agent_thread *t, size_t size)
{
	void *p;

	HA_AGENT_HERE(&t->here);
	if (api_in_use())
		return api_malloc(t, size);
	p = __libc_malloc(size);
	ha_agent_record_alloc(t, HALLOC_FN_MALLOC, p, size);
	ha_agent_pages_alloc(t, p, size, RA);
	ha_agent_leave(t);
	return p;
}

EXPORT void *malloc(size_t size)
{
	struct ha_agent_thread *t = ha_agent_enter();

	if (t)
		return traced_malloc(t, size);
	if (!ha_agent_api_wanted())
		return ha_agent_untraced_malloc(size);
	return api_malloc(NULL, size);
}

static SLOW void api_free(struct ha_agent_thread *t, void *ptr)
{
	uint64_t seq, value;

	ha_agent_pages_free(t, ptr); /* its page item ends first */
	/* Before the block goes back: no one can have it again yet. */
	seq = t ? ha_agent_free_seq(ptr) : 0;
	value = ha_agent_acct_on() ? ha_agent_acct_take(ptr) : HA_ACCT_UNKNOWN;

	__libc_free(ptr);
	if (t) {
		ha_agent_record_free(t, HALLOC_FREE_FREE, seq, ptr);
		ha_agent_leave(t);
	}
	ha_agent_acct_freed(value);
}

static SLOW void traced_free(struct ha_agent_thread *t, void *ptr)
{
	uint64_t seq;

	if (api_in_use())
		return api_free(t, ptr);
	ha_agent_pages_free(t, ptr); /* its page item ends first */
	seq = ha_agent_free_seq(ptr); /* see api_free */
	__libc_free(ptr);
	ha_agent_record_free(t, HALLOC_FREE_FREE, seq, ptr);
	ha_agent_leave(t);
}

EXPORT void free(void *ptr)
{
	struct ha_agent_thread *t;

	if (!ptr)
		return; /* not a free: nothing to record, nothing to do */
	t = ha_agent_enter();
	if (t)
		return traced_free(t, ptr);
	if (!ha_agent_api_wanted())
		return ha_agent_untraced_free(ptr);
	api_free(NULL, ptr);
}

/* size: what the program asked for (SIZE_MAX on overflow). */
static SLOW void *api_calloc(struct ha_agent_thread *t, size_t nmemb,
			     size_t n, size_t size)
{
	unsigned why = ha_agent_admit(t, HALLOC_FN_CALLOC, size, 0);

	if (why)
		return refused(t, HALLOC_FN_CALLOC, size, why);
	return allocated(t, HALLOC_FN_CALLOC, __libc_calloc(nmemb, n), size,
			 RA);
}

static SLOW void *traced_calloc(struct ha_agent_thread *t, size_t nmemb,
				size_t n, const void *caller)
{
	size_t size = ha_agent_calloc_size(nmemb, n, caller);
	void *p;

	HA_AGENT_HERE(&t->here);
	if (api_in_use())
		return api_calloc(t, nmemb, n, size);
	p = __libc_calloc(nmemb, n);
	ha_agent_record_alloc(t, HALLOC_FN_CALLOC, p, size);
	ha_agent_pages_alloc(t, p, nmemb * n, caller);
	ha_agent_leave(t);
	return p;
}

EXPORT void *calloc(size_t nmemb, size_t size)
{
	struct ha_agent_thread *t = ha_agent_enter();
	size_t total;

	if (t)
		return traced_calloc(t, nmemb, size,
				     __builtin_return_address(0));
	if (!ha_agent_api_wanted())
		return ha_agent_untraced_calloc(nmemb, size);
	if (__builtin_mul_overflow(nmemb, size, &total))
		total = SIZE_MAX; /* glibc fails it: not counted */
	return api_calloc(NULL, nmemb, size, total);
}

/*
 * realloc and reallocarray, once the size is known to be sane. On the api
 * path the old block leaves the accounting table before glibc may reuse
 * it, and comes back if the call fails or is refused.
 */
static SLOW void *api_realloc(struct ha_agent_thread *t, unsigned fn,
			      void *old, size_t size)
{
	uint64_t stack = 0, seq = 0, value;
	struct ha_agent_page taken;
	unsigned why;
	bool had;
	void *p;

	if (!old) {
		why = ha_agent_admit(t, fn, size, 0);
		if (why)
			return refused(t, fn, size, why);
		return allocated(t, fn, __libc_realloc(NULL, size), size, RA);
	}
	value = ha_agent_acct_on() ? ha_agent_acct_take(old) : HA_ACCT_UNKNOWN;
	if (!size) {
		/* glibc frees and returns NULL: a FREE, by realloc. */
		ha_agent_pages_free(t, old);
		seq = t ? ha_agent_free_seq(old) : 0;
		p = __libc_realloc(old, 0);
		if (t) {
			ha_agent_record_free(t, HALLOC_FREE_REALLOC, seq, old);
			if (p)
				ha_agent_record_alloc(t, fn, p, 0);
			ha_agent_leave(t);
		}
		ha_agent_acct_freed(value);
		return allocated(NULL, fn, p, 0, RA);
	}
	why = ha_agent_admit(t, fn, size,
			     value == HA_ACCT_UNKNOWN ? 0 : HA_ACCT_SIZE(value));
	if (why) {
		ha_agent_acct_restore(old, value);
		return refused(t, fn, size, why);
	}
	had = ha_agent_pages_mmapped(old) &&
	      ha_agent_pages_heap_take(t, old, &taken);
	if (t) {
		/* The REALLOC names its stack at seq: publish it first. */
		stack = ha_agent_realloc_stack(t, size);
		seq = ha_agent_free_seq(old);
	}
	p = __libc_realloc(old, size);
	if (t)
		ha_agent_record_realloc(t, fn, stack, seq, old, p, size);
	if (!p && had)
		ha_agent_pages_heap_restore(t, &taken); /* old is intact */
	ha_agent_pages_alloc(t, p, size, RA);
	if (t)
		ha_agent_leave(t);
	if (!p)
		ha_agent_acct_restore(old, value);
	else if (ha_agent_acct_on())
		ha_agent_acct_realloc(value, p, size);
	return p;
}

static SLOW void *traced_realloc(struct ha_agent_thread *t, unsigned fn,
				 void *old, size_t size)
{
	struct ha_agent_page taken;
	uint64_t stack, seq;
	bool had;
	void *p;

	HA_AGENT_HERE(&t->here);
	if (api_in_use())
		return api_realloc(t, fn, old, size);
	if (!old) {
		p = __libc_realloc(NULL, size);
		ha_agent_record_alloc(t, fn, p, size);
		ha_agent_pages_alloc(t, p, size, RA);
		ha_agent_leave(t);
		return p;
	}
	if (!size) {
		/* glibc frees and returns NULL: a FREE, by realloc. */
		ha_agent_pages_free(t, old);
		seq = ha_agent_free_seq(old);
		p = __libc_realloc(old, 0);
		ha_agent_record_free(t, HALLOC_FREE_REALLOC, seq, old);
		if (p)
			ha_agent_record_alloc(t, fn, p, 0);
		ha_agent_leave(t);
		return p;
	}
	had = ha_agent_pages_mmapped(old) &&
	      ha_agent_pages_heap_take(t, old, &taken);
	/* The REALLOC names its stack at seq: publish the stack first. */
	stack = ha_agent_realloc_stack(t, size);
	seq = ha_agent_free_seq(old);
	p = __libc_realloc(old, size);
	ha_agent_record_realloc(t, fn, stack, seq, old, p, size);
	if (!p && had)
		ha_agent_pages_heap_restore(t, &taken); /* old is intact */
	ha_agent_pages_alloc(t, p, size, RA);
	ha_agent_leave(t);
	return p;
}

EXPORT void *realloc(void *ptr, size_t size)
{
	struct ha_agent_thread *t = ha_agent_enter();

	if (t)
		return traced_realloc(t, HALLOC_FN_REALLOC, ptr, size);
	if (!ha_agent_api_wanted())
		return ha_agent_untraced_realloc(ptr, size);
	return api_realloc(NULL, HALLOC_FN_REALLOC, ptr, size);
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
	if (!ha_agent_api_wanted())
		return ha_agent_untraced_realloc(ptr, total);
	return api_realloc(NULL, HALLOC_FN_REALLOCARRAY, ptr, total);
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

/* Not recorded, no API: glibc's, and the block's page item. */
static void *untraced_aligned(unsigned fn, size_t alignment, size_t size)
{
	if (fn == HALLOC_FN_VALLOC)
		return ha_agent_untraced_valloc(false, size);
	if (fn == HALLOC_FN_PVALLOC)
		return ha_agent_untraced_valloc(true, size);
	return ha_agent_untraced_memalign(alignment, size);
}

static SLOW void *api_memalign(struct ha_agent_thread *t, unsigned fn,
			       size_t alignment, size_t size)
{
	unsigned why = ha_agent_admit(t, fn, size, 0);

	if (why)
		return refused(t, fn, size, why);
	return allocated(t, fn, glibc_aligned(fn, alignment, size), size, RA);
}

static SLOW void *traced_memalign(struct ha_agent_thread *t, unsigned fn,
				  size_t alignment, size_t size)
{
	void *p;

	HA_AGENT_HERE(&t->here);
	if (api_in_use())
		return api_memalign(t, fn, alignment, size);
	p = glibc_aligned(fn, alignment, size);
	ha_agent_record_alloc(t, fn, p, size);
	ha_agent_pages_alloc(t, p, size, RA);
	ha_agent_leave(t);
	return p;
}

static void *aligned(unsigned fn, size_t alignment, size_t size)
{
	struct ha_agent_thread *t = ha_agent_enter();

	if (t)
		return traced_memalign(t, fn, alignment, size);
	if (!ha_agent_api_wanted())
		return untraced_aligned(fn, alignment, size);
	return api_memalign(NULL, fn, alignment, size);
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
