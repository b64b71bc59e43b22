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
#include <string.h>

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

/* rsp and rbp apart: stored side by side, gcc pairs them in a vector. */
struct regs {
	uintptr_t rip, rsp;
	bool rbp_known;
	uintptr_t rbp;
};

struct range {
	uintptr_t lo, hi;
};

struct walk {
	struct regs r;
	struct range stack[2];
	/*
	 * The 8-aligned words of stack[0], for the common check (fast_ok):
	 * the first one, and how many (0: none).
	 */
	uintptr_t first;
	uint64_t words;
	uint64_t gen; /* the modules' generation, read once per walk */
};

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
static bool readable(const struct walk *w, uintptr_t addr)
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

static bool load(const struct walk *w, uintptr_t addr, uintptr_t *out)
{
	if (!readable(w, addr))
		return false;
	*out = *(const uintptr_t *)addr;
	return true;
}

static bool reg_value(const struct walk *w, uint64_t reg, uintptr_t *out)
{
	if (reg == HA_REG_RSP)
		*out = w->r.rsp;
	else if (reg == HA_REG_RBP && w->r.rbp_known)
		*out = w->r.rbp;
	else if (reg == HA_REG_RA)
		*out = w->r.rip;
	else
		return false;
	return true;
}

static uint64_t expr_uleb(const uint8_t **p, const uint8_t *end)
{
	uint64_t v = 0;
	unsigned shift = 0;

	while (*p < end) {
		uint8_t b = *(*p)++;

		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80))
			break;
	}
	return v;
}

static int64_t expr_sleb(const uint8_t **p, const uint8_t *end)
{
	uint64_t v = 0;
	unsigned shift = 0;
	uint8_t b = 0;

	while (*p < end) {
		b = *(*p)++;
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80))
			break;
	}
	if (shift < 64 && (b & 0x40))
		v |= ~(uint64_t)0 << shift;
	return (int64_t)v;
}

/*
 * A DWARF expression, the subset CFI uses (PLT entries, realigned frames,
 * glibc's signal trampoline). `initial` is pushed first when set.
 */
static bool eval(const struct walk *w, const uint8_t *p, uint32_t len,
		 const uintptr_t *initial, uintptr_t *out)
{
	const uint8_t *end = p + len;
	uintptr_t st[16], a, b;
	unsigned sp = 0;

	if (initial)
		st[sp++] = *initial;
	while (p < end) {
		uint8_t op = *p++;
		int64_t s;

		if (sp > 14)
			return false;
		if (op >= 0x30 && op <= 0x4f) { /* lit0..31 */
			st[sp++] = op - 0x30u;
			continue;
		}
		if (op >= 0x70 && op <= 0x8f) { /* breg0..31 */
			s = expr_sleb(&p, end);
			if (!reg_value(w, op - 0x70u, &a))
				return false;
			st[sp++] = a + (uintptr_t)s;
			continue;
		}
		switch (op) {
		case 0x08:
			st[sp++] = p < end ? *p++ : 0;
			continue; /* const1u */
		case 0x0a:	  /* const2u */
			if (end - p < 2)
				return false;
			st[sp++] = (uintptr_t)p[0] | (uintptr_t)p[1] << 8;
			p += 2;
			continue;
		case 0x09: /* const1s */
			st[sp++] = p < end ? (uintptr_t)(int8_t)*p++ : 0;
			continue;
		case 0x0c: /* const4u */
		case 0x0d: /* const4s */
		case 0x0e: /* const8u */
		case 0x0f: /* const8s */
			b = op < 0x0e ? 4 : 8;
			if ((size_t)(end - p) < b)
				return false;
			a = 0;
			memcpy(&a, p, b);
			if (op == 0x0d)
				a = (uintptr_t)(int32_t)a;
			st[sp++] = a;
			p += b;
			continue;
		case 0x10:
			st[sp++] = expr_uleb(&p, end);
			continue;
		case 0x11:
			st[sp++] = (uintptr_t)expr_sleb(&p, end);
			continue;
		case 0x12: /* dup */
			if (!sp)
				return false;
			st[sp] = st[sp - 1];
			sp++;
			continue;
		case 0x14: /* over */
			if (sp < 2)
				return false;
			st[sp] = st[sp - 2];
			sp++;
			continue;
		case 0x2f: /* skip */
			s = (int16_t)(p + 2 <= end ? p[0] | p[1] << 8 : 0);
			p += 2 + s;
			if (p < end - len || p > end)
				return false;
			continue;
		case 0x96:
			continue; /* nop */
		default:
			break;
		}
		if (!sp)
			return false;
		a = st[--sp];
		switch (op) {
		case 0x06: /* deref */
			if (!load(w, a, &st[sp++]))
				return false;
			continue;
		case 0x13:
			continue; /* drop */
		case 0x28:	  /* bra */
			s = (int16_t)(p + 2 <= end ? p[0] | p[1] << 8 : 0);
			p += 2 + (a ? s : 0);
			if (p < end - len || p > end)
				return false;
			continue;
		case 0x23:
			st[sp++] = a + expr_uleb(&p, end);
			continue;
		case 0x1f:
			st[sp++] = -a;
			continue;
		case 0x20:
			st[sp++] = ~a;
			continue;
		default:
			break;
		}
		if (!sp)
			return false;
		b = st[--sp];
		switch (op) {
		case 0x1a:
			st[sp++] = b & a;
			break;
		case 0x1c:
			st[sp++] = b - a;
			break;
		case 0x1e:
			st[sp++] = b * a;
			break;
		case 0x21:
			st[sp++] = b | a;
			break;
		case 0x22:
			st[sp++] = b + a;
			break;
		case 0x24:
			st[sp++] = a < 64 ? b << a : 0;
			break;
		case 0x25:
			st[sp++] = a < 64 ? b >> a : 0;
			break;
		case 0x26: /* shra, with unsigned shifts */
			a = a < 64 ? a : 63;
			st[sp++] = (intptr_t)b < 0 ? ~(~b >> a) : b >> a;
			break;
		case 0x27:
			st[sp++] = b ^ a;
			break;
		case 0x29:
			st[sp++] = b == a;
			break;
		case 0x2a:
			st[sp++] = (intptr_t)b >= (intptr_t)a;
			break;
		case 0x2b:
			st[sp++] = (intptr_t)b > (intptr_t)a;
			break;
		case 0x2c:
			st[sp++] = (intptr_t)b <= (intptr_t)a;
			break;
		case 0x2d:
			st[sp++] = (intptr_t)b < (intptr_t)a;
			break;
		case 0x2e:
			st[sp++] = b != a;
			break;
		case 0x16:
			st[sp++] = a;
			st[sp++] = b;
			break; /* swap */
		default:
			return false;
		}
	}
	if (!sp)
		return false;
	*out = st[sp - 1];
	return true;
}

/* The value of a register in the caller, by its rule. */
static bool recover(const struct walk *w, const struct ha_cfi_reg *rule,
		    uintptr_t cfa, uintptr_t self, uintptr_t *out)
{
	uintptr_t addr;

	switch (rule->kind) {
	case HA_RULE_SAME:
		*out = self;
		return true;
	case HA_RULE_CFA:
		*out = cfa;
		return true;
	case HA_RULE_OFFSET:
		return load(w, cfa + (uintptr_t)rule->off, out);
	case HA_RULE_VAL_OFFSET:
		*out = cfa + (uintptr_t)rule->off;
		return true;
	case HA_RULE_REG:
		return reg_value(w, (uint64_t)rule->off, out);
	case HA_RULE_EXPR:
		return eval(w, rule->expr, rule->len, &cfa, &addr) &&
		       load(w, addr, out);
	case HA_RULE_VAL_EXPR:
		return eval(w, rule->expr, rule->len, &cfa, out);
	default:
		return false;
	}
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

/* One frame up from the full rules. 1: done, 0: the end, -1: stuck. */
static int step_full(struct walk *w, const struct ha_cfi *c, bool *signal)
{
	uintptr_t cfa, ra, rsp, rbp = 0;
	bool rbp_known;

	if (c->ra.kind == HA_RULE_UNDEF)
		return 0;
	if (c->cfa_expr) {
		if (!eval(w, c->cfa_expr, c->cfa_len, NULL, &cfa))
			return -1;
	} else if (!reg_value(w, c->cfa_reg, &cfa)) {
		return -1;
	} else {
		cfa += (uintptr_t)c->cfa_off;
	}
	if (!recover(w, &c->ra, cfa, w->r.rip, &ra) ||
	    !recover(w, &c->rsp, cfa, w->r.rsp, &rsp))
		return -1;
	rbp_known = c->rbp.kind != HA_RULE_UNDEF &&
		    (c->rbp.kind != HA_RULE_SAME || w->r.rbp_known) &&
		    recover(w, &c->rbp, cfa, w->r.rbp, &rbp);
	/* Callers live higher on the stack; only a signal may switch stacks. */
	if (!c->signal && rsp <= w->r.rsp)
		return -1;
	w->r.rip = ra;
	w->r.rsp = rsp;
	w->r.rbp = rbp;
	w->r.rbp_known = rbp_known;
	*signal = c->signal;
	return ra ? 1 : 0;
}

/*
 * One frame up from the frame executing at pc, when its cached rule (kind:
 * RULE_MISS if none) is not a plain one: from the CFI, and cache what it
 * says when nothing was cached.
 */
static __attribute__((noinline)) int step_slow(struct walk *w, uintptr_t pc,
					       unsigned kind, bool *signal)
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
	return step_full(w, &c, signal);
}

static void stack_bounds(struct walk *w)
{
	struct ha_agent_thread *t = &ha_agent_self;
	uintptr_t rsp = w->r.rsp;
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
		w->words = (((t->stack_hi - 8) & ~(uintptr_t)7) - w->first) / 8 + 1;
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
	struct walk w;
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
	stack_bounds(&w);
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
