/*
 * agent/accounting.c - exact live bytes for the in-process API: the size of
 * every live block, the process totals, the allocation callback.
 *
 * A free does not say how big the block was, so the table maps each live
 * block's address to its requested size (and its typed site). It is split
 * in NSHARDS shards by a hash of the address, each an open-addressing
 * table (linear probing, deletion by backward shift, no tombstones) behind
 * its own spinlock: threads meet on a lock only when they touch blocks of
 * the same shard at once, and hold it for a few loads and stores. A shard
 * grows by mapping a table twice as big (mmap: nothing here may call
 * malloc). fork: the prepare handler takes every shard's lock, so the
 * child never inherits a table in the middle of a change.
 *
 * The totals are process-wide atomics, so the values handed to the
 * callback are the totals right after the event, as seen by the thread
 * that made it.
 */
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>

#include "agent/accounting.h"
#include "halloc/halloc.h"

unsigned ha_agent_api;

/* ---- is accounting wanted --------------------------------------------------
 */

#define SONAME "libhalloc.so"

/*
 * Whether the main executable names libhalloc in its DT_NEEDED: read from
 * its program headers in memory (the auxiliary vector points at them), so
 * nothing is opened and nothing allocated.
 */
static bool exe_links_libhalloc(void)
{
	const ElfW(Phdr) *ph = (const ElfW(Phdr) *)getauxval(AT_PHDR);
	unsigned long n = getauxval(AT_PHNUM), i;
	const ElfW(Dyn) *dyn = NULL, *d;
	uintptr_t bias = 0, strtab = 0;

	if (!ph || !n)
		return false;
	for (i = 0; i < n; i++)
		if (ph[i].p_type == PT_PHDR)
			bias = (uintptr_t)ph - ph[i].p_vaddr;
	for (i = 0; i < n; i++)
		if (ph[i].p_type == PT_DYNAMIC)
			dyn = (const ElfW(Dyn) *)(bias + ph[i].p_vaddr);
	if (!dyn)
		return false;
	for (d = dyn; d->d_tag != DT_NULL; d++)
		if (d->d_tag == DT_STRTAB)
			strtab = d->d_un.d_ptr;
	/* The loader relocates the entry in place; an unrelocated one is an
	 * offset from the load address. */
	if (!strtab)
		return false;
	if (strtab < bias)
		strtab += bias;
	for (d = dyn; d->d_tag != DT_NULL; d++)
		if (d->d_tag == DT_NEEDED &&
		    !strncmp((const char *)strtab + d->d_un.d_val, SONAME,
			     sizeof(SONAME) - 1))
			return true;
	return false;
}

/* ---- the table
 * --------------------------------------------------------------- */

#define SHARD_BITS  6
#define NSHARDS	    (1u << SHARD_BITS)
#define SHARD_FIRST 1024u /* entries in a shard's first table */

struct entry {
	uintptr_t addr; /* 0: empty */
	uint64_t value; /* size and site, see HA_ACCT_SIZE */
};

struct shard {
	int lock;
	size_t mask; /* entries - 1; 0 before the first table */
	size_t count;
	struct entry *e;
} __attribute__((aligned(64)));

static struct shard shards[NSHARDS];

static uint64_t hash(uintptr_t addr)
{
	return (uint64_t)(addr >> 4) * 0x9e3779b97f4a7c15ull;
}

static struct shard *shard_of(uint64_t h)
{
	return &shards[h >> (64 - SHARD_BITS)];
}

static size_t home(const struct shard *s, uint64_t h)
{
	return (size_t)(h >> 16) & s->mask;
}

static void lock(struct shard *s)
{
	unsigned spins = 0;

	while (__atomic_exchange_n(&s->lock, 1, __ATOMIC_ACQUIRE)) {
		while (__atomic_load_n(&s->lock, __ATOMIC_RELAXED)) {
			if (++spins < 256)
				__builtin_ia32_pause();
			else
				sched_yield(); /* the holder was preempted */
		}
	}
}

static void unlock(struct shard *s)
{
	__atomic_store_n(&s->lock, 0, __ATOMIC_RELEASE);
}

static struct entry *map_entries(size_t n)
{
	void *p = mmap(NULL, n * sizeof(struct entry), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void put(struct shard *s, uintptr_t addr, uint64_t value)
{
	size_t i = home(s, hash(addr));

	while (s->e[i].addr)
		i = (i + 1) & s->mask;
	s->e[i].addr = addr;
	s->e[i].value = value;
	s->count++;
}

/* Room for one more at most 3/4 full; false when no memory is left. */
static bool make_room(struct shard *s)
{
	size_t old_n = s->mask + 1, n, i;
	struct entry *old = s->e, *e;

	if (s->e && (s->count + 1) * 4 <= old_n * 3)
		return true;
	n = s->e ? old_n * 2 : SHARD_FIRST;
	e = map_entries(n);
	if (!e)
		return false;
	s->e = e;
	s->mask = n - 1;
	s->count = 0;
	for (i = 0; old && i < old_n; i++)
		if (old[i].addr)
			put(s, old[i].addr, old[i].value);
	if (old)
		munmap(old, old_n * sizeof(*old));
	return true;
}

static bool insert(uintptr_t addr, uint64_t value)
{
	struct shard *s = shard_of(hash(addr));
	bool ok;

	lock(s);
	ok = make_room(s);
	if (ok)
		put(s, addr, value);
	unlock(s);
	return ok;
}

/* Removes addr; its value, or HA_ACCT_UNKNOWN. */
static uint64_t take(uintptr_t addr)
{
	uint64_t h = hash(addr), value = HA_ACCT_UNKNOWN;
	struct shard *s = shard_of(h);
	size_t i, j, k;

	lock(s);
	if (!s->e)
		goto out;
	for (i = home(s, h); s->e[i].addr != addr; i = (i + 1) & s->mask)
		if (!s->e[i].addr)
			goto out;
	value = s->e[i].value;
	/* Backward shift: pull later entries of the run into the hole when
	 * their home is not between the hole and where they sit. */
	for (j = i;;) {
		j = (j + 1) & s->mask;
		if (!s->e[j].addr)
			break;
		k = home(s, hash(s->e[j].addr));
		if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
			s->e[i] = s->e[j];
			i = j;
		}
	}
	s->e[i].addr = 0;
	s->count--;
out:
	unlock(s);
	return value;
}

/* ---- fork
 * -------------------------------------------------------------------- */

static void fork_prepare(void)
{
	for (unsigned i = 0; i < NSHARDS; i++)
		lock(&shards[i]);
}

static void fork_release(void)
{
	for (unsigned i = 0; i < NSHARDS; i++)
		unlock(&shards[i]);
}

void ha_agent_acct_enable(void)
{
	static int enabling;

	if (__atomic_load_n(&ha_agent_api, __ATOMIC_ACQUIRE) & HA_API_ACCT)
		return;
	/* Handlers registered twice would take every lock twice at fork. */
	if (__atomic_exchange_n(&enabling, 1, __ATOMIC_ACQ_REL)) {
		while (!(__atomic_load_n(&ha_agent_api, __ATOMIC_ACQUIRE) &
			 HA_API_ACCT))
			sched_yield();
		return;
	}
	/* At the agent's start this runs under its guard: glibc 2.36
	 * registers the first handlers without allocating, and what it
	 * would allocate is not recorded. */
	pthread_atfork(fork_prepare, fork_release, fork_release);
	__atomic_fetch_or(&ha_agent_api, HA_API_ACCT, __ATOMIC_RELEASE);
}

void ha_agent_acct_start(void)
{
	if (exe_links_libhalloc())
		ha_agent_acct_enable();
}

/* ---- totals and hooks
 * ----------------------------------------------------------- */

static struct {
	int64_t live_bytes, live_blocks, peak_bytes;
	int64_t allocations, bytes_allocated, frees;
} tot __attribute__((aligned(64)));

static halloc_alloc_callback_fn callback;
static __thread unsigned in_hook;

bool ha_agent_acct_in_hook(void)
{
	return in_hook != 0;
}

void ha_agent_acct_hook_enter(void)
{
	in_hook++;
}

void ha_agent_acct_hook_leave(void)
{
	in_hook--;
}

void ha_agent_acct_set_callback(halloc_alloc_callback_fn fn)
{
	__atomic_store_n(&callback, fn, __ATOMIC_RELEASE);
	if (fn)
		__atomic_fetch_or(&ha_agent_api, HA_API_CALLBACK,
				  __ATOMIC_RELEASE);
	else
		__atomic_fetch_and(&ha_agent_api, ~HA_API_CALLBACK,
				   __ATOMIC_RELEASE);
}

static void raise_peak(int64_t bytes)
{
	int64_t peak = __atomic_load_n(&tot.peak_bytes, __ATOMIC_RELAXED);

	while (bytes > peak &&
	       !__atomic_compare_exchange_n(&tot.peak_bytes, &peak, bytes, true,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

/* The callback, then (freed > 0) the monitor's after-the-fact call. */
static void __attribute__((noinline))
call_hooks(const struct ha_agent_caller *c, const char *action, int64_t change,
	   int64_t blocks, int64_t bytes, int64_t freed)
{
	halloc_alloc_callback_fn fn;
	int saved;

	if (in_hook)
		return;
	fn = __atomic_load_n(&callback, __ATOMIC_ACQUIRE);
	saved = errno;
	in_hook++;
	if (fn)
		fn(c ? c->file : NULL, c ? c->line : 0, action, change, blocks,
		   bytes);
	if (freed)
		ha_agent_monitor_freed(-freed);
	in_hook--;
	errno = saved;
}

/* Most events have no hook to call: one load says so. */
static inline void notify(const struct ha_agent_caller *c, const char *action,
			  int64_t change, int64_t blocks, int64_t bytes,
			  int64_t freed)
{
	unsigned f = ha_agent_api_flags();

	if ((f & HA_API_CALLBACK) || (freed && (f & HA_GATE_MONITOR)))
		call_hooks(c, action, change, blocks, bytes, freed);
}

static uint64_t pack(size_t size, unsigned site)
{
	return (uint64_t)size | (uint64_t)site << HA_ACCT_SIZE_BITS;
}

void ha_agent_acct_alloc(void *p, size_t size, unsigned site,
			 const struct ha_agent_caller *caller)
{
	int64_t bytes, blocks;

	if (!insert((uintptr_t)p, pack(size, site)))
		return; /* no memory for the table: the block stays unknown */
	__atomic_fetch_add(&tot.allocations, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&tot.bytes_allocated, (int64_t)size,
			   __ATOMIC_RELAXED);
	blocks = __atomic_add_fetch(&tot.live_blocks, 1, __ATOMIC_RELAXED);
	bytes = __atomic_add_fetch(&tot.live_bytes, (int64_t)size,
				   __ATOMIC_RELAXED);
	raise_peak(bytes);
	if (site)
		ha_agent_type_change(site, size, 1);
	notify(caller, "malloc", (int64_t)size, blocks, bytes, 0);
}

uint64_t ha_agent_acct_take(void *p)
{
	return take((uintptr_t)p);
}

void ha_agent_acct_restore(void *p, uint64_t value)
{
	if (value != HA_ACCT_UNKNOWN)
		insert((uintptr_t)p, value);
}

void ha_agent_acct_freed(uint64_t value)
{
	int64_t size = (int64_t)HA_ACCT_SIZE(value), bytes, blocks;

	if (value == HA_ACCT_UNKNOWN)
		return;
	__atomic_fetch_add(&tot.frees, 1, __ATOMIC_RELAXED);
	blocks = __atomic_sub_fetch(&tot.live_blocks, 1, __ATOMIC_RELAXED);
	bytes = __atomic_sub_fetch(&tot.live_bytes, size, __ATOMIC_RELAXED);
	if (HA_ACCT_SITE(value))
		ha_agent_type_change(HA_ACCT_SITE(value), (uint64_t)size, -1);
	notify(NULL, "free", -size, blocks, bytes, size);
}

void ha_agent_acct_realloc(uint64_t old_value, void *p, size_t size)
{
	int64_t old = (int64_t)HA_ACCT_SIZE(old_value), bytes, blocks;

	if (old_value == HA_ACCT_UNKNOWN) {
		/* The old block was never counted: only the new one is. */
		old = 0;
		if (!insert((uintptr_t)p, pack(size, 0)))
			return;
		blocks =
		    __atomic_add_fetch(&tot.live_blocks, 1, __ATOMIC_RELAXED);
	} else {
		if (!insert((uintptr_t)p, pack(size, 0))) {
			ha_agent_acct_freed(old_value);
			return;
		}
		__atomic_fetch_add(&tot.frees, 1, __ATOMIC_RELAXED);
		blocks = __atomic_load_n(&tot.live_blocks, __ATOMIC_RELAXED);
		if (HA_ACCT_SITE(old_value))
			ha_agent_type_change(HA_ACCT_SITE(old_value),
					     (uint64_t)old, -1);
	}
	__atomic_fetch_add(&tot.allocations, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&tot.bytes_allocated, (int64_t)size,
			   __ATOMIC_RELAXED);
	bytes = __atomic_add_fetch(&tot.live_bytes, (int64_t)size - old,
				   __ATOMIC_RELAXED);
	raise_peak(bytes);
	notify(NULL, "realloc", (int64_t)size - old, blocks, bytes, old);
}

int64_t ha_agent_acct_live_bytes(void)
{
	return __atomic_load_n(&tot.live_bytes, __ATOMIC_RELAXED);
}

void ha_agent_acct_totals(struct halloc_usage *out)
{
	out->current_bytes = __atomic_load_n(&tot.live_bytes, __ATOMIC_RELAXED);
	out->current_blocks =
	    __atomic_load_n(&tot.live_blocks, __ATOMIC_RELAXED);
	out->peak_bytes = __atomic_load_n(&tot.peak_bytes, __ATOMIC_RELAXED);
	out->total_blocks = __atomic_load_n(&tot.allocations, __ATOMIC_RELAXED);
	out->total_bytes =
	    __atomic_load_n(&tot.bytes_allocated, __ATOMIC_RELAXED);
	out->frees = __atomic_load_n(&tot.frees, __ATOMIC_RELAXED);
}
