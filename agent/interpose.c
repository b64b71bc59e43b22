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

#include "agent/agent.h"
#include "agent/faults.h"
#include "agent/pages.h"

#define EXPORT __attribute__((visibility("default")))

extern void *__libc_malloc(size_t size);
extern void __libc_free(void *ptr);
extern void *__libc_calloc(size_t nmemb, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

/*
 * Each entry point tests ha_agent_enter() and otherwise tail-calls glibc:
 * the recording work sits in a separate function, so that the untraced
 * path has no stack frame to build. That function, tail-called too, notes
 * where it runs (HA_AGENT_HERE): the stack walk starts there, one frame
 * below the program's call, instead of under all of the agent's frames.
 */
#define SLOW __attribute__((noinline))
/*
 * Where the program called, for a page item's site: read in the tail-called
 * functions, never in an entry point (it would give each a stack frame).
 */
#define RA __builtin_return_address(0)

/*
 * Fault injection (faults.h) says no before glibc is asked: the call
 * fails as an allocator out of memory would, recorded as REFUSED, and the
 * agent is left. True when the caller must return NULL.
 */
static bool refused(struct ha_agent_thread *t, unsigned fn, size_t size)
{
	unsigned why = ha_agent_fault_check(t, fn, size);

	if (__builtin_expect(!why, 1))
		return false;
	ha_agent_record_refused(t, fn, size, why);
	ha_agent_leave(t);
	errno = ENOMEM;
	return true;
}

static SLOW void *traced_malloc(struct ha_agent_thread *t, size_t size)
{
	void *p;

	HA_AGENT_HERE(&t->here);
	if (refused(t, HALLOC_FN_MALLOC, size))
		return NULL;
	p = __libc_malloc(size);
	ha_agent_record_alloc(t, HALLOC_FN_MALLOC, p, size);
	ha_agent_pages_alloc(t, p, size, RA);
	ha_agent_leave(t);
	return p;
}

EXPORT void *malloc(size_t size)
{
	struct ha_agent_thread *t = ha_agent_enter();

	if (!t)
		return ha_agent_untraced_malloc(size);
	return traced_malloc(t, size);
}

static SLOW void traced_free(struct ha_agent_thread *t, void *ptr)
{
	/* Before the block goes back: no one can have it again yet. */
	uint64_t seq;

	ha_agent_pages_free(t, ptr); /* its page item ends first */
	seq = ha_agent_free_seq(ptr);
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
	if (!t)
		return ha_agent_untraced_free(ptr);
	traced_free(t, ptr);
}

static SLOW void *traced_calloc(struct ha_agent_thread *t, size_t nmemb,
				size_t size, const void *caller)
{
	size_t total = ha_agent_calloc_size(nmemb, size, caller);
	void *p;

	HA_AGENT_HERE(&t->here);
	if (refused(t, HALLOC_FN_CALLOC, total))
		return NULL;
	p = __libc_calloc(nmemb, size);
	ha_agent_record_alloc(t, HALLOC_FN_CALLOC, p, total);
	ha_agent_pages_alloc(t, p, nmemb * size, caller);
	ha_agent_leave(t);
	return p;
}

EXPORT void *calloc(size_t nmemb, size_t size)
{
	struct ha_agent_thread *t = ha_agent_enter();

	if (!t)
		return ha_agent_untraced_calloc(nmemb, size);
	return traced_calloc(t, nmemb, size, __builtin_return_address(0));
}

/* realloc and reallocarray, once the size is known to be sane. */
static SLOW void *traced_realloc(struct ha_agent_thread *t, unsigned fn,
				 void *old, size_t size)
{
	struct ha_agent_page taken;
	uint64_t stack, seq;
	bool had;
	void *p;

	HA_AGENT_HERE(&t->here);
	/* realloc(p, 0) frees: only a call for new memory can be refused. */
	if ((!old || size) && refused(t, fn, size))
		return NULL; /* as glibc's failure: the old block stays */
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
	/* The REALLOC names its stack at seq: publish the stack first. */
	had = ha_agent_pages_mmapped(old) &&
	      ha_agent_pages_heap_take(t, old, &taken);
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

	if (!t)
		return ha_agent_untraced_realloc(ptr, size);
	return traced_realloc(t, HALLOC_FN_REALLOC, ptr, size);
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
	if (!t)
		return ha_agent_untraced_realloc(ptr, total);
	return traced_realloc(t, HALLOC_FN_REALLOCARRAY, ptr, total);
}

/* Aligned allocations: all on glibc's memalign. */
static SLOW void *traced_memalign(struct ha_agent_thread *t, unsigned fn,
				  size_t alignment, size_t size)
{
	void *p;

	HA_AGENT_HERE(&t->here);
	if (refused(t, fn, size))
		return NULL;
	p = __libc_memalign(alignment, size);
	ha_agent_record_alloc(t, fn, p, size);
	ha_agent_pages_alloc(t, p, size, RA);
	ha_agent_leave(t);
	return p;
}

static void *aligned(unsigned fn, size_t alignment, size_t size)
{
	struct ha_agent_thread *t = ha_agent_enter();

	if (!t)
		return ha_agent_untraced_memalign(alignment, size);
	return traced_memalign(t, fn, alignment, size);
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

static SLOW void *traced_valloc(struct ha_agent_thread *t, unsigned fn,
				size_t size)
{
	void *p;

	HA_AGENT_HERE(&t->here);
	if (refused(t, fn, size))
		return NULL;
	p = fn == HALLOC_FN_VALLOC ? __libc_valloc(size) : __libc_pvalloc(size);
	ha_agent_record_alloc(t, fn, p, size);
	ha_agent_pages_alloc(t, p, size, RA);
	ha_agent_leave(t);
	return p;
}

EXPORT void *valloc(size_t size)
{
	struct ha_agent_thread *t = ha_agent_enter();

	if (!t)
		return ha_agent_untraced_valloc(false, size);
	return traced_valloc(t, HALLOC_FN_VALLOC, size);
}

EXPORT void *pvalloc(size_t size)
{
	struct ha_agent_thread *t = ha_agent_enter();

	if (!t)
		return ha_agent_untraced_valloc(true, size);
	return traced_valloc(t, HALLOC_FN_PVALLOC, size);
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
