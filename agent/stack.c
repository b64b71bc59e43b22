/*
 * agent/stack.c - call stacks: capture, and one id per distinct stack.
 *
 * Capture walks the DWARF CFI (unwind.c), so code built without frame
 * pointers, glibc included, unwinds fine. The leading frames inside this
 * library are dropped: the first frame kept is the return address into
 * whoever called malloc & co.
 *
 * Ids come from a process-wide lock-free hash table (open addressing, a
 * slot is a pointer to an immutable entry bump-allocated from a big
 * MAP_NORESERVE arena, published with compare-and-swap). Entries compare
 * by their full frame arrays. The thread whose insert wins writes the STACK
 * record, numbered before the entry is published, so every record naming
 * the id (numbered after the lookup found it) comes later in seq order.
 * The modules' generation is part of the key: after a dlclose, the same
 * addresses may mean another library, and must get another id.
 *
 * When the table or the arena is full, a stack gets a fresh id and its own
 * STACK record each time: bigger logs, still exact.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "agent/agent.h"
#include "agent/unwind.h"

struct entry {
	uint64_t hash;
	uint64_t id;
	uint32_t nframes;
	uint32_t generation;
	uintptr_t frames[];
};

#define TABLE_BITS 19
#define TABLE_SIZE (1u << TABLE_BITS)
/* Stop inserting beyond this many entries (70% load). */
#define TABLE_LIMIT (TABLE_SIZE / 10 * 7)
#define MAX_PROBES  64
#define ARENA_SIZE  ((size_t)512 << 20)
/* Frames of the agent at the top of a capture. */
#define SKIP_MAX 8

static struct entry **table;
static unsigned char *arena;
static size_t arena_size;
static size_t arena_used;    /* atomic */
static uint32_t table_count; /* atomic */
static uint64_t next_id = 1; /* atomic */

static bool map_table(void)
{
	size_t size;

	table = mmap(NULL, TABLE_SIZE * sizeof(*table), PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (table == MAP_FAILED) {
		table = NULL;
		return false;
	}
	/*
	 * On 2 MiB pages: ids are hashed all over the table, so a program's
	 * first few thousand stacks would each fault in a 4 KiB page of
	 * their own, and a fault costs tens of microseconds on some virtual
	 * machines (python -c pass, traced: 3,220 faults -> 2,505, 0.133 ->
	 * 0.119 s). The arena fills in order, but its first entries too.
	 */
	madvise(table, TABLE_SIZE * sizeof(*table), MADV_HUGEPAGE);
	/* Under strict overcommit a smaller arena may still be granted. */
	for (size = ARENA_SIZE; size >= ((size_t)4 << 20); size /= 4) {
		arena =
		    mmap(NULL, size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (arena != MAP_FAILED) {
			arena_size = size;
			madvise(arena, size, MADV_HUGEPAGE);
			break;
		}
		arena = NULL;
	}
	arena_used = 0;
	table_count = 0;
	next_id = 1;
	return true;
}

int ha_agent_stack_init(void)
{
	return map_table() ? 0 : -1;
}

/* The child's stream starts with no stacks: new table, new ids. */
void ha_agent_stack_fork_child(void)
{
	struct entry **old_table = table;
	unsigned char *old_arena = arena;
	size_t old_size = arena_size;

	ha_agent_unwind_fork_child();
	if (!map_table())
		return;
	munmap(old_table, TABLE_SIZE * sizeof(*table));
	if (old_arena)
		munmap(old_arena, old_size);
}

/* The table's hash: the walk's running hash (unwind.h), finished. */
static uint64_t hash_of(uint64_t running, unsigned n, uint32_t gen)
{
	return ha_agent_mix64(running ^ (uint64_t)n << 32 ^ gen);
}

static bool same(const struct entry *e, uint64_t h, const uintptr_t *f,
		 unsigned n, uint32_t gen)
{
	return e->hash == h && e->nframes == n && e->generation == gen &&
	       !memcmp(e->frames, f, n * sizeof(*f));
}

static struct entry *new_entry(uint64_t h, const uintptr_t *f, unsigned n,
			       uint32_t gen)
{
	size_t size = sizeof(struct entry) + n * sizeof(*f), at;
	struct entry *e;

	if (!arena)
		return NULL;
	at = __atomic_fetch_add(&arena_used, size, __ATOMIC_RELAXED);
	if (at + size > arena_size)
		return NULL;
	e = (struct entry *)(arena + at);
	e->hash = h;
	e->nframes = n;
	e->generation = gen;
	memcpy(e->frames, f, n * sizeof(*f));
	e->id = __atomic_fetch_add(&next_id, 1, __ATOMIC_RELAXED);
	return e;
}

/* No room to remember it: an id and a STACK record of its own. */
static uint64_t unremembered(struct ha_agent_thread *t, const uintptr_t *f,
			     unsigned n)
{
	uint64_t id = __atomic_fetch_add(&next_id, 1, __ATOMIC_RELAXED);

	ha_agent_put_stack(t, ha_agent_next_seq(), id, f, n);
	return id;
}

/* running: ha_agent_hash_step() over f[0..n) */
static uint64_t lookup(struct ha_agent_thread *t, const uintptr_t *f,
		       unsigned n, uint64_t running)
{
	uint32_t gen = ha_agent_modules_generation();
	uint64_t h = hash_of(running, n, gen), seq = 0;
	struct entry *mine = NULL, *e;
	uint32_t i, k;

	for (i = 0, k = (uint32_t)h & (TABLE_SIZE - 1); i < MAX_PROBES;
	     i++, k = (k + 1) & (TABLE_SIZE - 1)) {
		e = __atomic_load_n(&table[k], __ATOMIC_ACQUIRE);
		if (e) {
			if (same(e, h, f, n, gen))
				return e->id;
			continue;
		}
		if (!mine) {
			if (__atomic_load_n(&table_count, __ATOMIC_RELAXED) >=
			    TABLE_LIMIT)
				break;
			/* Its modules must be announced before it is. */
			ha_agent_modules_cover(t, f, n);
			mine = new_entry(h, f, n, gen);
			if (!mine)
				break;
			seq = ha_agent_next_seq();
		}
		if (__atomic_compare_exchange_n(&table[k], &e, mine, false,
						__ATOMIC_RELEASE,
						__ATOMIC_ACQUIRE)) {
			__atomic_fetch_add(&table_count, 1, __ATOMIC_RELAXED);
			ha_agent_put_stack(t, seq, mine->id, f, n);
			return mine->id;
		}
		/* Lost the slot: maybe to the very same stack. */
		if (same(e, h, f, n, gen))
			return e->id;
	}
	if (mine) {
		/* Never published: its id is used once, as for a full table. */
		ha_agent_put_stack(t, seq, mine->id, f, n);
		return mine->id;
	}
	ha_agent_modules_cover(t, f, n);
	return unremembered(t, f, n);
}

uint64_t ha_agent_stack_id(struct ha_agent_thread *t)
{
	uintptr_t frames[HALLOC_DEPTH_MAX + SKIP_MAX];
	unsigned depth = ha_agent.cfg.depth, walked, n, first = 0, i;
	int saved = errno;
	uint64_t id, h, kept;
	struct ha_agent_stack_memo sm;

	walked = ha_agent_unwind(t->here.rip ? &t->here : NULL, frames,
				 depth + SKIP_MAX, &h, &sm);
	/* The frames of the thread's last walk from here: their id. */
	kept = sm.same && sm.slot ? *sm.slot : 0;
	if (kept && !ha_agent_unwind_check) {
		errno = saved;
		return kept;
	}
	while (first < walked && first < SKIP_MAX &&
	       ha_agent_self_frame(frames[first]))
		first++;
	n = walked - first;
	if (n > depth)
		n = depth;
	/* The walk hashed what it stored: other frames, another hash. */
	if (n != walked) {
		h = HA_AGENT_HASH_SEED;
		for (i = 0; i < n; i++)
			h = ha_agent_hash_step(h, frames[first + i]);
	}
	id = lookup(t, frames + first, n, h);
	if (kept && id != kept)
		ha_agent_unwind_check_failed();
	if (sm.slot)
		*sm.slot = id;
	errno = saved;
	return id;
}
