/*
 * agent/pages.h - page items: the page-backed memory of the process, kept
 * by the agent whether or not halloc-trace records (halloc.h's
 * halloc_saved_page_items reads it). Internal to the agent.
 *
 * Two kinds (enum halloc_page_kind): heap blocks glibc's malloc served by
 * mmap, and anonymous mappings the program made itself (interpose_pages.c).
 * Under halloc-trace each also becomes a PAGES record (include/halloc/log.h).
 *
 * Invariants:
 *  - Ordinary allocations never reach pages.c: the entry points test the
 *    block's IS_MMAPPED bit (one load of the size word glibc keeps just
 *    before every block) and call in only when it is set. A free tests it
 *    before the block goes back: after, the pages may be gone.
 *  - pages.c never allocates: its registry lives in memory it maps with raw
 *    system calls, which never come back through our own mmap.
 *  - The registry's lock is taken only on those rare paths, never with
 *    another agent lock held.
 */
#ifndef HALLOC_AGENT_PAGES_H
#define HALLOC_AGENT_PAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/agent.h"

#pragma GCC visibility push(hidden)

/* glibc's chunk header: bit 1 of the size word says mmap served the block. */
#define HA_PAGES_IS_MMAPPED 0x2u

static inline bool ha_agent_pages_mmapped(const void *p)
{
	return p && (((const size_t *)p)[-1] & HA_PAGES_IS_MMAPPED);
}

/* One page item as the registry keeps it. */
struct ha_agent_page {
	uintptr_t start; /* the block (heap) or the mapping's start */
	size_t len;	 /* bytes mapped: the mapping's (heap) or asked for */
	size_t bytes;	 /* requested (heap); = len for mappings */
	uintptr_t caller; /* return address into the code that asked */
	const char *file; /* from halloc(): the caller's file, else NULL */
	unsigned line;
	unsigned kind; /* enum halloc_page_kind */
	uint64_t stack; /* heap, recording: its stack id (for a restore) */
};

/*
 * t != NULL: recording, and each of these writes its PAGES record (HEAP,
 * HEAP_FREE) with a sequence number of its own, taken when it is called.
 *
 * A heap block came back from the allocator with IS_MMAPPED set: keep it
 * (called after the ALLOC's record).
 */
void ha_agent_pages_heap_alloc(struct ha_agent_thread *t, void *p, size_t size,
			       const void *caller);
/* A heap block with IS_MMAPPED set is about to be freed (called before the
 * FREE's sequence number is taken). */
void ha_agent_pages_heap_free(struct ha_agent_thread *t, void *p);
/* Takes a block's entry out before a realloc (before its sequence
 * numbers); false if it had none. */
bool ha_agent_pages_heap_take(struct ha_agent_thread *t, void *p,
			      struct ha_agent_page *out);
/* Puts back what ha_agent_pages_heap_take took (the realloc failed). */
void ha_agent_pages_heap_restore(struct ha_agent_thread *t,
				 const struct ha_agent_page *e);
/* halloc(): the caller's file and line for a block, if it is an item. */
void ha_agent_pages_note_site(const void *p, const char *file, unsigned line);

/* After an allocation: p is returned as is. */
static inline void *ha_agent_pages_alloc(struct ha_agent_thread *t, void *p,
					 size_t size, const void *caller)
{
	if (__builtin_expect(ha_agent_pages_mmapped(p), 0))
		ha_agent_pages_heap_alloc(t, p, size, caller);
	return p;
}

/* Before a free. */
static inline void ha_agent_pages_free(struct ha_agent_thread *t, void *p)
{
	if (__builtin_expect(ha_agent_pages_mmapped(p), 0))
		ha_agent_pages_heap_free(t, p);
}

/*
 * The allocation functions when not recording (interpose_pages.c): glibc's,
 * and the page item of a block it served by mmap. Apart from interpose.c's
 * entry points, so that those build no stack frame on the recorded path;
 * tail-called, they see the program's return address as their own.
 */
void *ha_agent_untraced_malloc(size_t size);
void *ha_agent_untraced_calloc(size_t nmemb, size_t size);
void *ha_agent_untraced_realloc(void *old, size_t size);
void *ha_agent_untraced_memalign(size_t alignment, size_t size);
void *ha_agent_untraced_valloc(bool page_multiple, size_t size);
void ha_agent_untraced_free(void *ptr);

/* ---- the program's own mappings (interpose_pages.c calls these) ---------- */

/*
 * A successful mmap: an anonymous one is kept (and recorded); any MAP_FIXED
 * one first ends what it replaced.
 */
void ha_agent_pages_mapped(struct ha_agent_thread *t, void *addr, size_t len,
			   int prot, int flags, const void *caller);
/*
 * Before munmap(addr, len) (arguments checked): forgets what it ends.
 * true if it ended part of a kept mapping: the caller records the MUNMAP
 * with `seq` once the call succeeded.
 */
bool ha_agent_pages_unmapping(uintptr_t addr, size_t len);
void ha_agent_pages_put_munmap(struct ha_agent_thread *t, uint64_t seq,
			       uintptr_t addr, size_t len);
/* Whether [addr, addr + len) overlaps a kept mapping. */
bool ha_agent_pages_kept(uintptr_t addr, size_t len);
/* A successful mremap of a kept mapping; seq was taken before the call. */
void ha_agent_pages_remapped(struct ha_agent_thread *t, uint64_t seq,
			     uintptr_t old, size_t old_len, uintptr_t new_addr,
			     size_t new_len);

/* ---- reading the registry (halloc_print_saved_page_items) ---------------- */

/* A consistent copy of the first `max` items and totals over all of them
 * (by kind: count, bytes, pages); returns how many there are. */
size_t ha_agent_pages_copy(struct ha_agent_page *out, size_t max,
			   uint64_t totals[3][3]);
/* Pages that len bytes span. */
size_t ha_agent_pages_count(size_t len);

#pragma GCC visibility pop

#endif /* HALLOC_AGENT_PAGES_H */
