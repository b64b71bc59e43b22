/*
 * agent/pages.c - page items: the registry of page-backed memory mapped now,
 * the PAGES records (include/halloc/log.h) and halloc_saved_page_items
 * (include/halloc/halloc.h; pages_print.c prints the same items).
 *
 * The registry is one array sorted by start address, in memory mapped with
 * raw system calls (never malloc: it is updated from inside malloc and free,
 * and never our own mmap: that would come back here). Page items are few
 * and each one already costs the process a system call, so one lock and an
 * O(n) insert are fine; ordinary allocations never get here (pages.h).
 *
 * The lock word holds the holder's pid: a child forked while another thread
 * held it sees a pid that is not its own and takes the lock over (that
 * thread does not exist in the child), with no fork handler to register.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent/pages.h"
#include "agent/varint.h"
#include "halloc/halloc.h"

#define EXPORT __attribute__((visibility("default")))

static struct ha_agent_page *items;
static size_t nitems, cap;
static int lock_word;

static void lock(void)
{
	int me = (int)syscall(SYS_getpid);

	for (;;) {
		int cur = 0;

		if (__atomic_compare_exchange_n(&lock_word, &cur, me, false,
						__ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			return;
		/* Held in the parent when it forked us: nobody holds it here. */
		if (cur != me &&
		    __atomic_compare_exchange_n(&lock_word, &cur, me, false,
						__ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
			return;
		sched_yield();
	}
}

static void unlock(void)
{
	__atomic_store_n(&lock_word, 0, __ATOMIC_RELEASE);
}

static size_t page_size(void)
{
	static size_t size;

	if (!size) {
		size = getauxval(AT_PAGESZ);
		if (!size)
			size = 4096;
	}
	return size;
}

static size_t pages_of(size_t len)
{
	return (len + page_size() - 1) / page_size();
}

/* ---- the registry (callers hold the lock) ------------------------------ */

static bool reserve(size_t need)
{
	size_t ncap = cap ? cap : 256;
	struct ha_agent_page *n;

	if (need <= cap)
		return true;
	while (ncap < need)
		ncap *= 2;
	n = (void *)syscall(SYS_mmap, NULL, ncap * sizeof(*n),
			    PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0);
	if (n == MAP_FAILED)
		return false;
	if (items) {
		memcpy(n, items, nitems * sizeof(*n));
		syscall(SYS_munmap, items, cap * sizeof(*items));
	}
	items = n;
	cap = ncap;
	return true;
}

/* The first entry that starts at or after addr. */
static size_t lower(uintptr_t addr)
{
	size_t lo = 0, hi = nitems;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (items[mid].start < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void remove_at(size_t i)
{
	memmove(&items[i], &items[i + 1], (nitems - i - 1) * sizeof(*items));
	nitems--;
}

/* Keeps e, replacing an entry that starts at the same address. */
static void insert(const struct ha_agent_page *e)
{
	size_t i = lower(e->start);

	if (i < nitems && items[i].start == e->start) {
		items[i] = *e;
		return;
	}
	if (!reserve(nitems + 1))
		return; /* out of memory: this item goes unlisted */
	memmove(&items[i + 1], &items[i], (nitems - i) * sizeof(*items));
	items[i] = *e;
	nitems++;
}

static void set_len(struct ha_agent_page *e, uintptr_t start, uintptr_t end)
{
	e->start = start;
	e->len = e->bytes = end - start;
}

/*
 * Ends [a, b) of the program's mappings (not heap blocks: their pages are
 * the allocator's). A mapping can lose its head, its tail, all of it, or
 * its middle (it becomes two). True if anything was ended; *site gets the
 * first mapping's entry.
 */
static bool cut(uintptr_t a, uintptr_t b, struct ha_agent_page *site)
{
	size_t i = lower(a);
	bool any = false;

	if (i)
		i--; /* the one before may reach into [a, b) */
	while (i < nitems && items[i].start < b) {
		struct ha_agent_page *e = &items[i], tail;
		uintptr_t s = e->start, end = s + e->len;

		if (e->kind != HALLOC_PAGE_ITEM_MMAP || end <= a) {
			i++;
			continue;
		}
		if (!any && site)
			*site = *e;
		any = true;
		if (s >= a && end <= b) {
			remove_at(i);
		} else if (s < a && end > b) {
			tail = *e;
			set_len(&tail, b, end);
			set_len(e, s, a);
			if (reserve(nitems + 1)) {
				memmove(&items[i + 2], &items[i + 1],
					(nitems - i - 1) * sizeof(*items));
				items[i + 1] = tail;
				nitems++;
			}
			break;
		} else if (s < a) {
			set_len(e, s, a);
			i++;
		} else {
			set_len(e, b, end); /* still before the next start */
			i++;
		}
	}
	return any;
}

/* ---- PAGES records ------------------------------------------------------ */

/* Tag + seq + up to six varints: the largest PAGES record (MREMAP, MMAP). */
#define PAGES_MAX (1 + 7 * HALLOC_VARINT_MAX)

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Opens a record: tag, seq delta, time delta. NULL: recording stopped. */
static unsigned char *open_record(struct ha_agent_thread *t, unsigned op,
				  uint64_t seq, bool seq2_follows,
				  uint64_t seq2)
{
	unsigned char *p = ha_agent_buf_begin(t, PAGES_MAX);

	if (!p)
		return NULL;
	*p++ = HALLOC_RECORD_TAG(HALLOC_REC_PAGES, op);
	p = halloc_put_uv(p, seq - t->last_seq);
	t->last_seq = seq;
	if (seq2_follows)
		p = halloc_put_uv(p, seq2 - seq);
	return halloc_put_time_delta(p, &t->last_time,
				     now_us() - ha_agent.base_us);
}

static void put_heap(struct ha_agent_thread *t, const struct ha_agent_page *e)
{
	unsigned char *p = open_record(t, HALLOC_PAGE_HEAP,
				       ha_agent_next_seq(), false, 0);

	if (!p)
		return;
	p = halloc_put_addr_delta(p, &t->last_addr, e->start);
	p = halloc_put_uv(p, e->bytes);
	p = halloc_put_uv(p, e->len);
	p = halloc_put_uv(p, e->stack);
	ha_agent_buf_commit(t, p);
}

static void put_heap_free(struct ha_agent_thread *t, uintptr_t block)
{
	unsigned char *p = open_record(t, HALLOC_PAGE_HEAP_FREE,
				       ha_agent_next_seq(), false, 0);

	if (!p)
		return;
	p = halloc_put_addr_delta(p, &t->last_addr, block);
	ha_agent_buf_commit(t, p);
}

static void put_mmap(struct ha_agent_thread *t, uintptr_t addr, size_t len,
		     int prot, int flags)
{
	uint64_t stack = ha_agent_stack_id(t);
	unsigned char *p = open_record(t, HALLOC_PAGE_MMAP,
				       ha_agent_next_seq(), false, 0);

	if (!p)
		return;
	p = halloc_put_addr_delta(p, &t->last_addr, addr);
	p = halloc_put_uv(p, len);
	p = halloc_put_uv(p, stack);
	p = halloc_put_uv(p, (unsigned)prot);
	p = halloc_put_uv(p, (unsigned)flags);
	ha_agent_buf_commit(t, p);
}

void ha_agent_pages_put_munmap(struct ha_agent_thread *t, uint64_t seq,
			       uintptr_t addr, size_t len)
{
	unsigned char *p = open_record(t, HALLOC_PAGE_MUNMAP, seq, false, 0);

	if (!p)
		return;
	p = halloc_put_addr_delta(p, &t->last_addr, addr);
	p = halloc_put_uv(p, len);
	ha_agent_buf_commit(t, p);
}

static void put_mremap(struct ha_agent_thread *t, uint64_t seq, uintptr_t old,
		       size_t old_len, uintptr_t new_addr, size_t new_len)
{
	unsigned char *p = open_record(t, HALLOC_PAGE_MREMAP, seq, true,
				       ha_agent_next_seq());

	if (!p)
		return;
	p = halloc_put_addr_delta(p, &t->last_addr, old);
	p = halloc_put_addr_delta(p, &t->last_addr, new_addr);
	p = halloc_put_uv(p, old_len);
	p = halloc_put_uv(p, new_len);
	ha_agent_buf_commit(t, p);
}

/* ---- heap blocks served by mmap ----------------------------------------- */

/* glibc: the mapping starts prev_size bytes before the chunk (alignment
 * padding of memalign) and spans prev_size + the chunk's size. */
static size_t heap_mapping(const void *p)
{
	const size_t *h = (const size_t *)p - 2;

	return h[0] + (h[1] & ~(size_t)7);
}

void ha_agent_pages_heap_alloc(struct ha_agent_thread *t, void *p, size_t size,
			       const void *caller)
{
	struct ha_agent_page e = {
	    .start = (uintptr_t)p,
	    .len = heap_mapping(p),
	    .bytes = size,
	    .caller = (uintptr_t)caller,
	    .kind = HALLOC_PAGE_ITEM_HEAP,
	};
	int saved = errno;

	/* The ALLOC's stack: a second walk, for blocks that cost an mmap. */
	if (t)
		e.stack = ha_agent_stack_id(t);
	lock();
	insert(&e);
	unlock();
	if (t)
		put_heap(t, &e);
	errno = saved;
}

static bool take(uintptr_t start, struct ha_agent_page *out)
{
	size_t i = lower(start);

	if (i >= nitems || items[i].start != start ||
	    items[i].kind != HALLOC_PAGE_ITEM_HEAP)
		return false;
	if (out)
		*out = items[i];
	remove_at(i);
	return true;
}

bool ha_agent_pages_heap_take(struct ha_agent_thread *t, void *p,
			      struct ha_agent_page *out)
{
	int saved = errno;
	bool found;

	lock();
	found = take((uintptr_t)p, out);
	unlock();
	if (found && t)
		put_heap_free(t, (uintptr_t)p);
	errno = saved;
	return found;
}

void ha_agent_pages_heap_free(struct ha_agent_thread *t, void *p)
{
	ha_agent_pages_heap_take(t, p, NULL);
}

void ha_agent_pages_heap_restore(struct ha_agent_thread *t,
				 const struct ha_agent_page *e)
{
	int saved = errno;

	lock();
	insert(e);
	unlock();
	if (t)
		put_heap(t, e);
	errno = saved;
}

void ha_agent_pages_note_site(const void *p, const char *file, unsigned line)
{
	size_t i;

	if (!ha_agent_pages_mmapped(p))
		return;
	lock();
	i = lower((uintptr_t)p);
	if (i < nitems && items[i].start == (uintptr_t)p) {
		items[i].file = file;
		items[i].line = line;
	}
	unlock();
}

/* ---- the program's mappings -------------------------------------------- */

void ha_agent_pages_mapped(struct ha_agent_thread *t, void *addr, size_t len,
			   int prot, int flags, const void *caller)
{
	struct ha_agent_page e = {
	    .start = (uintptr_t)addr,
	    .len = len,
	    .bytes = len,
	    .caller = (uintptr_t)caller,
	    .kind = HALLOC_PAGE_ITEM_MMAP,
	};
	bool replaced = false, anon = flags & MAP_ANONYMOUS;
	uint64_t seq = 0;

	if (!len)
		return;
	lock();
	if (flags & MAP_FIXED)
		replaced = cut(e.start, e.start + len, NULL);
	if (anon)
		insert(&e);
	unlock();
	if (!t)
		return;
	if (replaced && !anon) {
		/* A file now sits where anonymous pages were. */
		seq = ha_agent_next_seq();
		ha_agent_pages_put_munmap(t, seq, e.start, len);
	}
	if (anon)
		put_mmap(t, e.start, len, prot, flags);
}

bool ha_agent_pages_unmapping(uintptr_t addr, size_t len)
{
	bool any;

	lock();
	any = cut(addr, addr + len, NULL);
	unlock();
	return any;
}

bool ha_agent_pages_kept(uintptr_t addr, size_t len)
{
	size_t i;
	bool any = false;

	lock();
	i = lower(addr);
	if (i)
		i--;
	for (; i < nitems && items[i].start < addr + len && !any; i++)
		any = items[i].kind == HALLOC_PAGE_ITEM_MMAP &&
		      items[i].start + items[i].len > addr;
	unlock();
	return any;
}

void ha_agent_pages_remapped(struct ha_agent_thread *t, uint64_t seq,
			     uintptr_t old, size_t old_len, uintptr_t new_addr,
			     size_t new_len)
{
	struct ha_agent_page e = {0};
	bool found;
	size_t i;

	lock();
	if (old_len) {
		found = cut(old, old + old_len, &e);
	} else {
		/* old_len 0 duplicates a shared mapping: the old one stays */
		i = lower(old + 1);
		found = i && items[i - 1].kind == HALLOC_PAGE_ITEM_MMAP &&
			items[i - 1].start + items[i - 1].len > old;
		if (found)
			e = items[i - 1];
	}
	if (found) {
		set_len(&e, new_addr, new_addr + new_len);
		e.kind = HALLOC_PAGE_ITEM_MMAP;
		cut(new_addr, new_addr + new_len, NULL);
		insert(&e);
	}
	unlock();
	if (t)
		put_mremap(t, seq, old, old_len, new_addr, new_len);
}

/* ---- the in-process API (include/halloc/halloc.h) ------------------------ */

static void to_item(const struct ha_agent_page *e, struct halloc_page_item *o)
{
	o->address = (void *)e->start;
	o->bytes = e->bytes;
	o->pages = pages_of(e->len);
	o->kind = (int)e->kind;
	o->file = e->file;
	o->line = e->file ? e->line : 0;
}

EXPORT size_t halloc_saved_page_items(struct halloc_page_item *out, size_t max)
{
	size_t n;

	lock();
	n = nitems;
	for (size_t i = 0; out && i < n && i < max; i++)
		to_item(&items[i], &out[i]);
	unlock();
	return n;
}

/* A consistent copy of the first `max` items and totals over all of them
 * (by kind: count, bytes, pages); returns how many there are. */
size_t ha_agent_pages_copy(struct ha_agent_page *out, size_t max,
			   uint64_t totals[3][3])
{
	size_t n;

	memset(totals, 0, 3 * sizeof(*totals));
	lock();
	n = nitems;
	for (size_t i = 0; i < n; i++) {
		unsigned kind = items[i].kind < 3 ? items[i].kind : 0;

		totals[kind][0]++;
		totals[kind][1] += items[i].bytes;
		totals[kind][2] += pages_of(items[i].len);
		if (i < max)
			out[i] = items[i];
	}
	unlock();
	return n;
}

size_t ha_agent_pages_count(size_t len)
{
	return pages_of(len);
}
