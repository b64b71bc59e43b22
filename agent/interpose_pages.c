/*
 * agent/interpose_pages.c - mmap, munmap and mremap put in front of glibc's,
 * so that the program's own anonymous mappings are page items (pages.c).
 *
 * Only the program's calls (and its libraries') come here: glibc's malloc
 * maps its large blocks through internal calls that never reach these
 * symbols (those blocks are found by their IS_MMAPPED bit instead), and so
 * does the loader. The agent's own mappings do reach them (its buffers,
 * its tables): those pass straight through, told apart by the thread's
 * guard or by a caller inside libhalloc.so. The real calls are system
 * calls made directly: there is no exported glibc name behind mmap to call
 * (and dlsym may allocate).
 *
 * Ordering as for the heap (include/halloc/log.h): an unmap takes its
 * sequence number before the pages go, a mapping after it came.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/pages.h"

#define EXPORT __attribute__((visibility("default")))
#define SLOW __attribute__((noinline))

static void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd,
		      off_t off)
{
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

/* The code of libhalloc.so itself, from the linker (hidden: ours). */
extern const char __ehdr_start[] __attribute__((visibility("hidden")));
extern const char __etext[] __attribute__((visibility("hidden")));

/*
 * Nothing to do with page items: the agent's own (inside it, or called from
 * its code, recording or not: its tables, its buffers).
 */
static bool passes(const void *caller)
{
	return ha_agent_self.guard ||
	       ((const char *)caller >= __ehdr_start &&
		(const char *)caller < __etext);
}

static SLOW void *traced_mmap(struct ha_agent_thread *t, void *addr,
			      size_t len, int prot, int flags, int fd,
			      off_t off, const void *caller)
{
	void *p;
	int saved;

	if (t)
		HA_AGENT_HERE(&t->here);
	p = sys_mmap(addr, len, prot, flags, fd, off);
	if (p != MAP_FAILED) {
		saved = errno;
		ha_agent_pages_mapped(t, p, len, prot, flags, caller);
		errno = saved;
	}
	if (t)
		ha_agent_leave(t);
	return p;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd,
		  off_t off)
{
	const void *caller = __builtin_return_address(0);

	/* A file mapped anywhere free: no page item begins or ends. */
	if (!(flags & (MAP_ANONYMOUS | MAP_FIXED)) || passes(caller))
		return sys_mmap(addr, len, prot, flags, fd, off);
	return traced_mmap(ha_agent_enter(), addr, len, prot, flags, fd, off,
			   caller);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd,
		    off_t off) __attribute__((alias("mmap")));

static SLOW int traced_munmap(struct ha_agent_thread *t, void *addr,
			      size_t len)
{
	uintptr_t a = (uintptr_t)addr;
	uint64_t seq = 0;
	bool kept = false;
	int r, saved = errno;

	/* Arguments the kernel refuses end nothing. */
	if (len && !(a & ((uintptr_t)getpagesize() - 1)) && a + len > a)
		kept = ha_agent_pages_unmapping(a, len);
	if (kept && t)
		seq = ha_agent_next_seq(); /* before the pages can be reused */
	errno = saved;
	r = (int)syscall(SYS_munmap, addr, len);
	if (r == 0 && kept && t) {
		saved = errno;
		ha_agent_pages_put_munmap(t, seq, a, len);
		errno = saved;
	}
	if (t)
		ha_agent_leave(t);
	return r;
}

EXPORT int munmap(void *addr, size_t len)
{
	if (passes(__builtin_return_address(0)))
		return (int)syscall(SYS_munmap, addr, len);
	return traced_munmap(ha_agent_enter(), addr, len);
}

static SLOW void *traced_mremap(struct ha_agent_thread *t, void *old,
				size_t old_len, size_t new_len, int flags,
				void *new_addr)
{
	uint64_t seq = 0;
	bool kept;
	void *p;
	int saved = errno;

	kept = ha_agent_pages_kept((uintptr_t)old, old_len ? old_len : 1);
	if (kept && t)
		seq = ha_agent_next_seq();
	errno = saved;
	p = (void *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
	if (p != MAP_FAILED && kept) {
		saved = errno;
		ha_agent_pages_remapped(t, seq, (uintptr_t)old, old_len,
					(uintptr_t)p, new_len);
		errno = saved;
	}
	if (t)
		ha_agent_leave(t);
	return p;
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = NULL;
	va_list ap;

	if (flags & MREMAP_FIXED) {
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	if (passes(__builtin_return_address(0)))
		return (void *)syscall(SYS_mremap, old, old_len, new_len, flags,
				       new_addr);
	return traced_mremap(ha_agent_enter(), old, old_len, new_len, flags,
			     new_addr);
}

/* ---- the allocation functions when not recording ------------------------ */

#define RA __builtin_return_address(0)

void *ha_agent_untraced_malloc(size_t size)
{
	return ha_agent_pages_alloc(NULL, __libc_malloc(size), size, RA);
}

void *ha_agent_untraced_calloc(size_t nmemb, size_t size)
{
	return ha_agent_pages_alloc(NULL, __libc_calloc(nmemb, size),
				    nmemb * size, RA);
}

void *ha_agent_untraced_memalign(size_t alignment, size_t size)
{
	return ha_agent_pages_alloc(NULL, __libc_memalign(alignment, size),
				    size, RA);
}

void *ha_agent_untraced_valloc(bool page_multiple, size_t size)
{
	return ha_agent_pages_alloc(
	    NULL, page_multiple ? __libc_pvalloc(size) : __libc_valloc(size),
	    size, RA);
}

void ha_agent_untraced_free(void *ptr)
{
	ha_agent_pages_free(NULL, ptr); /* before: after, the pages may be gone */
	__libc_free(ptr);
}

/* realloc: a block's page item follows it. */
void *ha_agent_untraced_realloc(void *old, size_t size)
{
	struct ha_agent_page taken;
	bool had = ha_agent_pages_mmapped(old) &&
		   ha_agent_pages_heap_take(NULL, old, &taken);
	void *p = __libc_realloc(old, size);

	if (!p && size && had)
		ha_agent_pages_heap_restore(NULL, &taken); /* old is intact */
	return ha_agent_pages_alloc(NULL, p, size, RA);
}
