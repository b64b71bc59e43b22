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
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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
 * The thread's last complete walk, remembered (the memo), so that the next
 * walk can stop at the first state it shares with it.
 *
 * A plain rsp-based step from state (pc, rsp) reads the rule at pc (fixed
 * for a modules generation), the return address at CFA - 8 and maybe rbp,
 * and checks them against the thread's stack bounds. A run of such steps
 * to the end of the stack ignores rbp altogether: the frames it yields are
 * a function of (pc, rsp), the bounds, and the return-address words it
 * loads. So when a walk reaches a remembered state (same pc, same rsp,
 * same generation and bounds) from which the remembered walk went on by
 * plain rsp-based steps alone, every load inside the thread's stack, to
 * its end (the CFI's undefined return address), and every remembered
 * return-address word still holds what it held, the rest of this walk is
 * the remembered rest, frame for frame: whatever ran in between (returns,
 * longjmp, signals, other threads). A (pc, rsp) match alone is not enough:
 * one function reached from two call sites at the same depth meets the
 * same pair with different callers above it; the words tell them apart.
 *
 * Why it pays: a walk is a chain of dependent loads (a return address, its
 * rule, the next return address), one cache miss after another; the check
 * is independent loads the processor overlaps, and one compare each.
 *
 * States sit at the end of the arrays, the outermost last, so that a walk
 * that meets the memo writes only its own inner states, just before the
 * state it met. Entry q: the state (rsp, pc) and the return address its
 * step found (the frame it stored) at the next state's rsp - 8; reuse[q]:
 * the steps from state q to the end are all as above.
 */
#define MEMO_MAX 80

struct memo {
	uint64_t gen;
	uintptr_t first;
	uint64_t words;
	uint32_t lo; /* states lo..MEMO_MAX-1; MEMO_MAX: none */
	uint32_t walked; /* frames the last walk with this memo stored */
	/* Its last state is where that walk stopped at the depth limit, not
	 * the stack's end: it stands for a walk with no more room than it. */
	bool open;
	/* The stack id stack.c found for the frames of the last walk (0:
	 * none): the next walk that stores the very same frames has it
	 * (struct ha_agent_stack_memo). */
	uint64_t stack_id;
	/* rsp[MEMO_MAX]: a sentinel above any stack, so scans need no bound */
	uintptr_t rsp[MEMO_MAX + 1], pc[MEMO_MAX], ra[MEMO_MAX];
	uint8_t reuse[MEMO_MAX];
};

/*
 * A thread keeps MEMOS of them, one per calling context: a walk picks its
 * memo by its first frame and the rsp it reached there (the call site of
 * the allocation function, and how deep the stack was). A program that
 * allocates from a few places in turn (sqlite: the same allocator wrapper
 * called from different depths) then finds the walk it repeats one step
 * in, where a single memo met it only where the paths joined, several
 * frames up.
 */
#define MEMOS 16

/*
 * Mapped on a thread's first walk, unmapped when it ends: in static TLS it
 * would not leave room for libhalloc.so to be loaded by dlopen. A fork's
 * child keeps its thread's copy, which is right: the same stack.
 */
static __thread struct memo *thread_memo
    __attribute__((tls_model("initial-exec")));
#define MEMO_NONE ((struct memo *)1) /* mmap failed: walk without one */
/* HALLOC_UNWIND_CHECK set: every walk the memo shortened is redone in full
 * and compared, and stack.c looks up the ids it kept (tests). */
bool ha_agent_unwind_check;

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

/* The ranges a walk from rsp may read: the usual case, on the thread's
 * stack, inline; the others (the thread's first walk, a signal stack, a
 * stack of the program's own) in stack_bounds_slow(). */
static void stack_bounds_slow(struct ha_agent_walk *w, uintptr_t rsp);

static inline void stack_bounds(struct ha_agent_walk *w, uintptr_t rsp)
{
	const struct ha_agent_thread *t = &ha_agent_self;

	if (__builtin_expect(!t->stack_words || rsp < t->stack_lo ||
				 rsp >= t->stack_hi,
			     0)) {
		stack_bounds_slow(w, rsp);
		return;
	}
	w->stack[0].lo = t->stack_lo;
	w->stack[0].hi = t->stack_hi;
	w->stack[1].lo = w->stack[1].hi = 0;
	w->first = t->stack_first;
	w->words = t->stack_words;
}

static __attribute__((noinline)) void
stack_bounds_slow(struct ha_agent_walk *w, uintptr_t rsp)
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
	t->stack_first = w->first;
	t->stack_words = w->words;
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
static struct memo *memo_get(void)
{
	struct memo *m = thread_memo;

	if (__builtin_expect(m != NULL, 1))
		return m == MEMO_NONE ? NULL : m;
	/* An ending thread would never give it back. */
	if (ha_agent_self.exiting)
		return NULL;
	m = mmap(NULL, MEMOS * sizeof(*m), PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		thread_memo = MEMO_NONE;
		return NULL;
	}
	for (unsigned i = 0; i < MEMOS; i++) {
		m[i].lo = MEMO_MAX;
		m[i].rsp[MEMO_MAX] = UINTPTR_MAX;
	}
	thread_memo = m;
	return m;
}

/* The memo of the context a walk reached after its first step: frame
 * `ra` stored, rsp at `rsp`. */
static struct memo *memo_of(struct memo *memos, uintptr_t ra, uintptr_t rsp)
{
	uint64_t h = ((uint64_t)ra ^ (uint64_t)rsp << 17) * 0x9e3779b97f4a7c15ull;

	return &memos[h >> (64 - __builtin_ctz(MEMOS))];
}

void ha_agent_unwind_thread_end(void)
{
	struct memo *m = thread_memo;

	if (m && m != MEMO_NONE)
		munmap(m, MEMOS * sizeof(*m));
	thread_memo = NULL;
}

/* This walk's states so far: (rsp, pc) before each step, and whether the
 * memo may stand for the step. */
struct states {
	uintptr_t rsp[MEMO_MAX], pc[MEMO_MAX];
	uint8_t ok[MEMO_MAX];
};

/* States [0, n) of this walk go to memo entries [lo, lo + n), each before
 * the one after it; their frames are frames[0, n). */
static void memo_put(struct memo *m, uint32_t lo, uint32_t n,
		     const struct states *st, const uintptr_t *frames)
{
	for (uint32_t q = n; q--;) {
		m->rsp[lo + q] = st->rsp[q];
		m->pc[lo + q] = st->pc[q];
		m->ra[lo + q] = frames[q];
		m->reuse[lo + q] = st->ok[q] & m->reuse[lo + q + 1];
	}
	m->lo = lo;
}

/*
 * The rest of the walk from memo state p, if the memo holds for it: the
 * frames into out (at most `room`), the hash carried on (unless `quick`:
 * the caller has the stack's id and needs neither); the new memo is this
 * walk's nst states before p. -1: it does not hold.
 */
static int memo_hit(struct memo *m, uint32_t p, uintptr_t *out, unsigned room,
		    uint64_t *hash, uint32_t nst, const struct states *st,
		    const uintptr_t *frames, bool quick)
{
	/* A plain step's CFA is the next state's rsp: the return address
	 * was the word below it. */
	const uintptr_t *next_rsp = &m->rsp[p + 1], *ra = &m->ra[p];
	uint32_t n = MEMO_MAX - 1 - p, copy, i;
	uintptr_t differ = 0;
	uint64_t h = *hash;

	if (m->open && room > n)
		return -1; /* this walk would go on past where that one stopped */
	/* Independent loads, no early exit: they overlap. */
	for (i = 0; i < n; i++)
		differ |= *(const uintptr_t *)(next_rsp[i] - 8) ^ ra[i];
	if (differ || nst > p)
		return -1;
	copy = n < room ? n : room;
	for (i = 0; i < copy && !quick; i++) {
		out[i] = ra[i];
		h = ha_agent_hash_step(h, ra[i]);
	}
	*hash = h;
	memo_put(m, p - nst, nst, st, frames);
	return (int)copy;
}

/* A walk that reached the end of the stack, or the depth limit (open), is
 * the new memo: nst states, the last one where it stopped. */
static void memo_keep(struct memo *m, uint32_t nst, const struct states *st,
		      const uintptr_t *frames, bool open)
{
	m->open = open;
	m->rsp[MEMO_MAX - 1] = st->rsp[nst - 1];
	m->pc[MEMO_MAX - 1] = st->pc[nst - 1];
	m->ra[MEMO_MAX - 1] = 0;
	m->reuse[MEMO_MAX - 1] = 1;
	memo_put(m, MEMO_MAX - nst, nst - 1, st, frames);
}

static inline __attribute__((always_inline)) unsigned
walk(const struct ha_agent_regs *from, uintptr_t *frames, unsigned max,
     uint64_t *hash, bool use_memo, bool *hit, struct ha_agent_stack_memo *sm)
{
	struct cache_entry rule;
	struct ha_agent_walk w;
	struct memo *memos = NULL, *m = NULL;
	uintptr_t pc, rsp, rbp, cfa, ra, first;
	uintptr_t *out = frames, *end = frames + max, *slow_end;
	uint64_t gen, words, h = HA_AGENT_HASH_SEED;
	bool rbp_known = true, signal, ended = false, cut;
	struct states st;
	uint32_t nst = 0, mp = MEMO_MAX;
	int got;

	w.r.rip = from->rip;
	w.r.rsp = rsp = from->rsp;
	rbp = from->rbp;
	w.gen = ha_agent_modules_generation();
	stack_bounds(&w, rsp);
	gen = w.gen << 48;
	first = w.first;
	words = w.words;
	/* A walk of max steps has max + 1 states. */
	if (use_memo && max < MEMO_MAX - 1)
		memos = memo_get();
	use_memo = memos != NULL;
	/* Mid-function, not a return address: look up rip itself. */
	pc = w.r.rip;
	slow_end = out;
	while (out < end) {
		/* One step in: the context is known, and so is the memo. */
		if (use_memo && !m && out > frames) {
			m = memo_of(memos, out[-1], rsp);
			if (m->gen == w.gen && m->first == first &&
			    m->words == words) {
				mp = m->lo;
			} else {
				m->lo = MEMO_MAX;
				m->stack_id = 0;
				m->gen = w.gen;
				m->first = first;
				m->words = words;
			}
		}
		if (mp < MEMO_MAX) {
			while (m->rsp[mp] < rsp)
				mp++;
			if (m->rsp[mp] == rsp && m->pc[mp] == pc &&
			    m->reuse[mp]) {
				/* One step to the memo's second state, from
				 * its first: the memo's frames, all of them
				 * (as many: the same room). Their id known,
				 * stack.c needs them not (the check does). */
				uint32_t rest = MEMO_MAX - 1 - mp,
					 room = (uint32_t)(end - out);
				bool same = nst == 1 && mp == m->lo + 1 &&
					    st.rsp[0] == m->rsp[m->lo] &&
					    st.pc[0] == m->pc[m->lo] &&
					    frames[0] == m->ra[m->lo] &&
					    m->walked ==
						1 + (rest < room ? rest : room);
				bool quick = same && sm && m->stack_id &&
					     !ha_agent_unwind_check;

				got = memo_hit(m, mp, out, room, &h, nst, &st,
					       frames, quick);
				if (got >= 0) {
					*hit = true;
					out += got;
					if (!same)
						m->stack_id = 0;
					break;
				}
			}
		}
		/* nst stays 0 without the memo: the arrays are its size. */
		st.rsp[nst] = rsp;
		st.pc[nst] = pc;
		st.ok[nst] = 0;
		if (!cache_get(cache, pc | gen, &rule))
			rule.kind = RULE_MISS;
		if (rule.kind == RULE_PLAIN_RSP) {
			cfa = rsp + (uintptr_t)(intptr_t)rule.cfa_off;
		} else if (rule.kind == RULE_PLAIN_RBP) {
			if (!rbp_known)
				break;
			cfa = rbp + (uintptr_t)(intptr_t)rule.cfa_off;
		} else if (rule.kind == RULE_END) {
			ended = true;
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
			nst += use_memo;
			continue;
		}
		/* The memo stands for plain rsp-based steps whose loads are in
		 * the thread's stack (fast_ok), not in another range. */
		st.ok[nst] = rule.kind == RULE_PLAIN_RSP;
		if (!fast_ok(first, words, cfa - 8)) {
			if (!readable(&w, cfa - 8))
				break;
			st.ok[nst] = 0;
		}
		ra = *(const uintptr_t *)(cfa - 8);
		if (rule.rbp_off) {
			uintptr_t at = cfa + (uintptr_t)(intptr_t)rule.rbp_off;

			if (!fast_ok(first, words, at)) {
				if (!readable(&w, at))
					break;
				st.ok[nst] = 0;
			}
			rbp = *(const uintptr_t *)at;
			rbp_known = true;
		}
		if (cfa <= rsp || !ra)
			break;
		rsp = cfa;
		*out++ = ra;
		h = ha_agent_hash_step(h, ra);
		pc = ra - 1;
		nst += use_memo;
	}
	/*
	 * A walk to the stack's end (as the CFI says) is remembered, and so
	 * is one the depth limit stopped (python's deepest stacks), its last
	 * state the one it stopped at; not one that failed.
	 */
	cut = out == end && !*hit;
	if (m && (ended || cut)) {
		if (cut) {
			st.rsp[nst] = rsp;
			st.pc[nst] = pc;
		}
		memo_keep(m, nst + 1, &st, frames, cut);
		m->stack_id = 0;
	}
	/* The memo holds this walk now (a hit or a walk kept), and its id if
	 * this walk's frames are those of the walk before. A walk that left
	 * the memo as it was (it failed) has no say in it. */
	if (m && (*hit || ended || cut)) {
		m->walked = (uint32_t)(out - frames);
		if (sm) {
			sm->slot = &m->stack_id;
			sm->same = *hit && m->stack_id;
		}
	} else if (sm) {
		sm->slot = NULL;
		sm->same = false;
	}
	if (hash)
		*hash = h;
	return (unsigned)(out - frames);
}

void ha_agent_unwind_check_failed(void)
{
	static const char msg[] =
	    "halloc: unwind memo disagrees with a full walk\n";
	ssize_t n = write(2, msg, sizeof(msg) - 1);

	(void)n; /* aborting either way */
	abort();
}

__attribute__((noinline)) unsigned
ha_agent_unwind(const struct ha_agent_regs *from, uintptr_t *frames,
		unsigned max, uint64_t *hash, struct ha_agent_stack_memo *sm)
{
	struct ha_agent_regs here;
	bool hit = false;
	unsigned n;

	if (!from) {
		HA_AGENT_HERE(&here);
		from = &here;
	}
	n = walk(from, frames, max, hash, true, &hit, sm);
	if (hit && ha_agent_unwind_check) {
		uintptr_t full[MEMO_MAX];
		uint64_t full_hash = 0;
		bool unused = false;

		if (walk(from, full, max, &full_hash, false, &unused, NULL) !=
			n ||
		    memcmp(full, frames, n * sizeof(*frames)) ||
		    (hash && full_hash != *hash))
			ha_agent_unwind_check_failed();
	}
	return n;
}

void ha_agent_unwind_init(bool check)
{
	ha_agent_unwind_check = check;
}

void ha_agent_unwind_fork_child(void)
{
	struct memo *m = thread_memo;

	if (!m || m == MEMO_NONE)
		return;
	for (unsigned i = 0; i < MEMOS; i++)
		m[i].stack_id = 0;
}
