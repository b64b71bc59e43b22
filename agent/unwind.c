/*
 * agent/unwind.c - the stack walk: apply cfi.c's rules frame by frame.
 *
 * Start: the registers of ha_agent_unwind() itself, read by inline
 * assembly. Step: the CFA from rsp or rbp, the return address and rbp
 * from where the rules say they were saved, rsp becomes the CFA. The walk
 * ends where the CFI says the return address is undefined (_start, a
 * thread's clone), or at code without CFI.
 *
 * Speed: the rules of each address are cached in a process-wide lock-free
 * table (a seqlock per entry, keyed by address and the modules'
 * generation, so an unloaded library's rules are never reused). Most
 * frames cost one table probe and two loads.
 *
 * Safety: every load from the stack is checked against the thread's stack
 * bounds (and the signal stack, when running on it), so a corrupt stack or
 * a wrong rule ends the walk instead of faulting.
 */
#include <pthread.h>
#include <signal.h>

#include "agent/agent.h"
#include "agent/unwind.h"

#define CACHE_BITS 15
#define CACHE_SIZE (1u << CACHE_BITS)
/* A stack outside the thread's and the signal stack (coroutines): how far. */
#define UNKNOWN_STACK (256u << 10)

/*
 * A cached rule, unpacked so that a hit is a probe and a few loads. The
 * plain rule (the common frame): CFA = rsp or rbp + cfa_off, the return
 * address at CFA - 8 (where a call puts it on x86_64), rbp saved at CFA +
 * rbp_off, or unchanged when rbp_off is 0 (no frame saves rbp at the CFA
 * itself: that is the caller's). Anything else looks the CFI up each time.
 */
struct cache_entry {
	uint64_t key; /* pc | generation << 48; 0: empty */
	int32_t cfa_off;
	int16_t rbp_off;
	uint8_t kind; /* enum rule_kind */
	uint8_t unused;
};

enum rule_kind {
	RULE_MISS,	/* not cached (what an empty entry holds) */
	RULE_PLAIN_RSP, /* plain, the CFA based on rsp */
	RULE_PLAIN_RBP, /* plain, the CFA based on rbp */
	RULE_END,	/* the return address is undefined: the walk's end */
	RULE_SLOW,	/* look the CFI up every time */
	RULE_NONE,	/* no CFI: the walk ends */
};

/*
 * Zero pages until used (bss), like an anonymous mapping, and never
 * missing: the walk tests no pointer. A fork inherits it, which is right:
 * the child has the same code mapped.
 */
static struct cache_entry cache[CACHE_SIZE] __attribute__((aligned(64)));

/*
 * addr is an aligned word of the thread's stack: one subtraction, one
 * rotation, one compare. Rotated, a misaligned distance has its low bits
 * on top and an address below `first` wraps around: both exceed `words`.
 * It accepts a subset of what readable() does.
 */
static inline bool fast_ok(uintptr_t first, uint64_t words, uintptr_t addr)
{
	uint64_t d = addr - first;

	return (d >> 3 | d << 61) < words;
}

/* Any of the walk's ranges: the signal stack, or one left after a switch. */
static bool readable(const struct ha_agent_walk *w, uintptr_t addr)
{
	unsigned i;

	if (fast_ok(w->first, w->words, addr))
		return true;
	if (addr & 7)
		return false;
	for (i = 0; i < 2; i++)
		if (addr >= w->stack[i].lo && addr + 8 <= w->stack[i].hi)
			return true;
	return false;
}

bool ha_agent_walk_load(const struct ha_agent_walk *w, uintptr_t addr,
			uintptr_t *out)
{
	if (!readable(w, addr))
		return false;
	*out = *(const uintptr_t *)addr;
	return true;
}

/* The cache's form of the rules at an address. */
static void pack(const struct ha_cfi *c, struct cache_entry *e)
{
	e->cfa_off = 0;
	e->rbp_off = 0;
	if (c->ra.kind == HA_RULE_UNDEF) {
		e->kind = RULE_END;
		return;
	}
	e->kind = RULE_SLOW;
	if (c->signal || c->cfa_expr || c->rsp.kind != HA_RULE_CFA ||
	    (c->cfa_reg != HA_REG_RSP && c->cfa_reg != HA_REG_RBP) ||
	    c->cfa_off != (int32_t)c->cfa_off)
		return;
	if (c->ra.kind != HA_RULE_OFFSET || c->ra.off != -8)
		return;
	/* rbp undefined (rare): in the full rules only */
	if (c->rbp.kind == HA_RULE_OFFSET) {
		if (!c->rbp.off || c->rbp.off != (int16_t)c->rbp.off)
			return;
		e->rbp_off = (int16_t)c->rbp.off;
	} else if (c->rbp.kind != HA_RULE_SAME) {
		return;
	}
	e->kind = c->cfa_reg == HA_REG_RBP ? RULE_PLAIN_RBP : RULE_PLAIN_RSP;
	e->cfa_off = (int32_t)c->cfa_off;
}

/*
 * Two ways: a key may sit in either entry of its pair (one cache line), so
 * that two hot addresses whose hashes collide do not evict each other on
 * every walk (each miss is a CFI lookup, thousands of instructions).
 */
static struct cache_entry *pair_of(const struct cache_entry *table,
				   uint64_t key)
{
	return (struct cache_entry *)&table[(key * 0x9e3779b97f4a7c15ull) >>
						(64 - CACHE_BITS) &
					    ~(uint64_t)1];
}

/*
 * A seqlock on the key. A writer first claims the entry (key BUSY, which
 * no address can be), so writers never interleave; a reader that sees the
 * key change around its reads of the fields takes it for a miss.
 */
#define BUSY 1u

/* The rule cached for key in *out; false: a miss. */
static inline bool cache_get(const struct cache_entry *table, uint64_t key,
			     struct cache_entry *out)
{
	struct cache_entry *e = pair_of(table, key);

	if (__atomic_load_n(&e->key, __ATOMIC_ACQUIRE) != key &&
	    __atomic_load_n(&(++e)->key, __ATOMIC_ACQUIRE) != key)
		return false;
	out->kind = __atomic_load_n(&e->kind, __ATOMIC_RELAXED);
	out->cfa_off = __atomic_load_n(&e->cfa_off, __ATOMIC_RELAXED);
	out->rbp_off = __atomic_load_n(&e->rbp_off, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return __atomic_load_n(&e->key, __ATOMIC_RELAXED) == key;
}

static void cache_put(uint64_t key, const struct cache_entry *rule)
{
	struct cache_entry *e = pair_of(cache, key);
	uint64_t old = __atomic_load_n(&e->key, __ATOMIC_RELAXED);

	/* The first entry while it is free, else the second one. */
	if (old && old != key) {
		e++;
		old = __atomic_load_n(&e->key, __ATOMIC_RELAXED);
	}

	/* Another writer has it: this rule just goes uncached. */
	if (old == BUSY ||
	    !__atomic_compare_exchange_n(&e->key, &old, BUSY, false,
					 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		return;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&e->kind, rule->kind, __ATOMIC_RELAXED);
	__atomic_store_n(&e->cfa_off, rule->cfa_off, __ATOMIC_RELAXED);
	__atomic_store_n(&e->rbp_off, rule->rbp_off, __ATOMIC_RELAXED);
	__atomic_store_n(&e->key, key, __ATOMIC_RELEASE);
}

/*
 * One frame up from the frame executing at pc, when its cached rule (kind:
 * RULE_MISS if none) is not a plain one: from the CFI, and cache what it
 * says when nothing was cached.
 */
static __attribute__((noinline)) int
step_slow(struct ha_agent_walk *w, uintptr_t pc, unsigned kind, bool *signal)
{
	uint64_t key = pc | w->gen << 48;
	struct cache_entry rule;
	struct ha_cfi c;

	*signal = false;
	if (kind == RULE_END)
		return 0;
	if (kind == RULE_NONE)
		return -1;
	if (!ha_agent_cfi_find(pc, &c)) {
		rule.kind = RULE_NONE;
		rule.cfa_off = 0;
		rule.rbp_off = 0;
		cache_put(key, &rule);
		return -1;
	}
	if (kind == RULE_MISS) {
		pack(&c, &rule);
		cache_put(key, &rule);
	}
	return ha_agent_step_full(w, &c, signal);
}

/* The ranges a walk from rsp may read. */
static void stack_bounds(struct ha_agent_walk *w, uintptr_t rsp)
{
	struct ha_agent_thread *t = &ha_agent_self;
	stack_t ss;

	if (!t->stack_hi) {
		/* Once per thread; may allocate (the guard is held). */
		pthread_attr_t attr;
		void *lo;
		size_t size;

		t->stack_hi = 1;
		if (!pthread_getattr_np(pthread_self(), &attr)) {
			if (!pthread_attr_getstack(&attr, &lo, &size)) {
				t->stack_lo = (uintptr_t)lo;
				t->stack_hi = (uintptr_t)lo + size;
			}
			pthread_attr_destroy(&attr);
		}
	}
	w->stack[0].lo = t->stack_lo;
	w->stack[0].hi = t->stack_hi;
	w->stack[1].lo = w->stack[1].hi = 0;
	/* [first, last]: the aligned words x with x >= lo and x + 8 <= hi */
	w->first = (t->stack_lo + 7) & ~(uintptr_t)7;
	w->words = 0;
	if (t->stack_hi >= 8 && t->stack_hi - 8 >= w->first)
		w->words =
		    (((t->stack_hi - 8) & ~(uintptr_t)7) - w->first) / 8 + 1;
	if (rsp >= t->stack_lo && rsp < t->stack_hi)
		return;
	/* A signal stack, or a stack of the program's own (coroutines). */
	if (!sigaltstack(NULL, &ss) && !(ss.ss_flags & SS_DISABLE) &&
	    rsp >= (uintptr_t)ss.ss_sp &&
	    rsp < (uintptr_t)ss.ss_sp + ss.ss_size) {
		w->stack[1].lo = (uintptr_t)ss.ss_sp;
		w->stack[1].hi = (uintptr_t)ss.ss_sp + ss.ss_size;
	} else {
		w->stack[1].lo = rsp;
		w->stack[1].hi = rsp + UNKNOWN_STACK;
	}
}

/*
 * The walk. A frame whose cached rule is plain (most) is stepped here, its
 * registers kept in locals; any other goes through step_slow() with the
 * same outcome it had through the full rules. w.r.rip is brought up to
 * date only for step_slow(): after a plain step it is the frame stored.
 */
__attribute__((noinline)) unsigned
ha_agent_unwind(const struct ha_agent_regs *from, uintptr_t *frames,
		unsigned max, uint64_t *hash)
{
	struct ha_agent_regs here;
	struct cache_entry rule;
	struct ha_agent_walk w;
	uintptr_t pc, rsp, rbp, cfa, ra, first;
	uintptr_t *out = frames, *end = frames + max, *slow_end;
	uint64_t gen, words, h = HA_AGENT_HASH_SEED;
	bool rbp_known = true, signal;

	if (!from) {
		HA_AGENT_HERE(&here);
		from = &here;
	}
	w.r.rip = from->rip;
	w.r.rsp = rsp = from->rsp;
	rbp = from->rbp;
	w.gen = ha_agent_modules_generation();
	stack_bounds(&w, rsp);
	gen = w.gen << 48;
	first = w.first;
	words = w.words;
	/* Mid-function, not a return address: look up rip itself. */
	pc = w.r.rip;
	slow_end = out;
	while (out < end) {
		if (!cache_get(cache, pc | gen, &rule))
			rule.kind = RULE_MISS;
		if (rule.kind == RULE_PLAIN_RSP) {
			cfa = rsp + (uintptr_t)(intptr_t)rule.cfa_off;
		} else if (rule.kind == RULE_PLAIN_RBP) {
			if (!rbp_known)
				break;
			cfa = rbp + (uintptr_t)(intptr_t)rule.cfa_off;
		} else if (rule.kind == RULE_END) {
			break; /* as step_slow() would: every walk ends so */
		} else {
			if (out != slow_end)
				w.r.rip = out[-1];
			w.r.rsp = rsp;
			w.r.rbp = rbp;
			w.r.rbp_known = rbp_known;
			if (step_slow(&w, pc, rule.kind, &signal) <= 0)
				break;
			rsp = w.r.rsp;
			rbp = w.r.rbp;
			rbp_known = w.r.rbp_known;
			/*
			 * A return address: the call is the instruction before
			 * it. Past a signal frame the address is the
			 * interrupted instruction itself; it is stored + 1 so
			 * that "address - 1" finds it too.
			 */
			ra = signal ? w.r.rip + 1 : w.r.rip;
			*out++ = ra;
			h = ha_agent_hash_step(h, ra);
			pc = signal ? w.r.rip : w.r.rip - 1;
			slow_end = out;
			continue;
		}
		if (!fast_ok(first, words, cfa - 8) && !readable(&w, cfa - 8))
			break;
		ra = *(const uintptr_t *)(cfa - 8);
		if (rule.rbp_off) {
			uintptr_t at = cfa + (uintptr_t)(intptr_t)rule.rbp_off;

			if (!fast_ok(first, words, at) && !readable(&w, at))
				break;
			rbp = *(const uintptr_t *)at;
			rbp_known = true;
		}
		if (cfa <= rsp || !ra)
			break;
		rsp = cfa;
		*out++ = ra;
		h = ha_agent_hash_step(h, ra);
		pc = ra - 1;
	}
	if (hash)
		*hash = h;
	return (unsigned)(out - frames);
}
