/*
 * agent/unwind.h - walking the call stack from DWARF CFI (x86_64).
 * Internal to the agent: cfi.c finds the rules at an address, unwind.c
 * applies them frame by frame (unwind_full.c the uncommon ones).
 *
 * Only what a stack walk needs is tracked: the CFA, rbp, rsp and the
 * return address (DWARF registers 6, 7 and 16). A rule that needs another
 * register ends the walk there.
 */
#ifndef HALLOC_AGENT_UNWIND_H
#define HALLOC_AGENT_UNWIND_H

#include <stdbool.h>
#include <stdint.h>

#pragma GCC visibility push(hidden)

#define HA_REG_RBP 6
#define HA_REG_RSP 7
#define HA_REG_RA  16

enum ha_cfi_rule {
	HA_RULE_UNDEF,	    /* not recoverable (the return address: the end) */
	HA_RULE_SAME,	    /* unchanged from the callee */
	HA_RULE_CFA,	    /* the CFA itself (rsp's default) */
	HA_RULE_OFFSET,	    /* saved at CFA + off */
	HA_RULE_VAL_OFFSET, /* is CFA + off */
	HA_RULE_REG,	    /* in register off */
	HA_RULE_EXPR,	    /* saved at the address expr computes */
	HA_RULE_VAL_EXPR,   /* is the value expr computes */
};

struct ha_cfi_reg {
	uint8_t kind; /* enum ha_cfi_rule */
	uint32_t len; /* expression length */
	int64_t off;
	const uint8_t *expr;
};

struct ha_cfi {
	uint8_t cfa_reg; /* CFA = cfa_reg + cfa_off, unless cfa_expr */
	int64_t cfa_off;
	const uint8_t *cfa_expr;
	uint32_t cfa_len;
	struct ha_cfi_reg rbp, rsp, ra;
	bool signal; /* a signal trampoline: the caller was interrupted */
};

/* The rules that hold at pc; false if pc has no (usable) CFI. */
bool ha_agent_cfi_find(uintptr_t pc, struct ha_cfi *out);

/* Where a walk starts: an instruction and the registers at it. */
struct ha_agent_regs {
	uintptr_t rip, rsp, rbp;
};

/*
 * The current function's instruction pointer, rsp and rbp, read at once:
 * the CFI at that instruction describes this very state. A walk from here
 * is valid as long as the function has not returned.
 */
#define HA_AGENT_HERE(r)                                                       \
	__asm__ volatile("lea 0(%%rip), %0\n\t"                                \
			 "mov %%rsp, %1\n\t"                                   \
			 "mov %%rbp, %2"                                       \
			 : "=&r"((r)->rip), "=&r"((r)->rsp), "=&r"((r)->rbp)   \
			 :                                                     \
			 : "memory")

/*
 * The state of one walk: unwind.c steps the common frames, unwind_full.c
 * the others, both through these.
 */
/* rsp and rbp apart: stored side by side, gcc pairs them in a vector. */
struct ha_agent_walk_regs {
	uintptr_t rip, rsp;
	bool rbp_known;
	uintptr_t rbp;
};

struct ha_agent_walk_range {
	uintptr_t lo, hi;
};

struct ha_agent_walk {
	struct ha_agent_walk_regs r;
	struct ha_agent_walk_range stack[2];
	/*
	 * The 8-aligned words of stack[0], for the common check (fast_ok):
	 * the first one, and how many (0: none).
	 */
	uintptr_t first;
	uint64_t words;
	uint64_t gen; /* the modules' generation, read once per walk */
};

/* A word of the walk's stacks; false (nothing read) outside them. */
bool ha_agent_walk_load(const struct ha_agent_walk *w, uintptr_t addr,
			uintptr_t *out);
/*
 * One frame up by the full rules c. 1: done, 0: the end, -1: stuck;
 * *signal: the frame left was a signal trampoline.
 */
int ha_agent_step_full(struct ha_agent_walk *w, const struct ha_cfi *c,
		       bool *signal);

/*
 * A running hash of return addresses, for stack.c's table: the walk
 * computes it as it stores the frames, so that a stack costs no second
 * pass to hash. Start from HA_AGENT_HASH_SEED, step once per frame.
 */
#define HA_AGENT_HASH_SEED 0x9e3779b97f4a7c15ull

static inline uint64_t ha_agent_hash_step(uint64_t h, uintptr_t frame)
{
	return (h ^ frame) * 0xff51afd7ed558ccdull;
}

/* Once, before the first walk. check (HALLOC_UNWIND_CHECK, for tests):
 * redo every walk the memo shortened in full, abort on a difference. */
void ha_agent_unwind_init(bool check);
/* The calling thread is ending: let go of what its walks remembered. */
void ha_agent_unwind_thread_end(void);

/* HALLOC_UNWIND_CHECK (ha_agent_unwind_init): the walks the memo shortened
 * are redone in full, and stack.c looks up the ids it kept. */
extern bool ha_agent_unwind_check;
/* Writes the check's message and aborts. */
void ha_agent_unwind_check_failed(void) __attribute__((noreturn));
/* A fork's child: its stream numbers stacks anew, forget the ids kept. */
void ha_agent_unwind_fork_child(void);

/*
 * Where stack.c keeps the id of a walk's stack for the next walk of the
 * thread that stores the same frames (the memo the walk used): `slot`
 * (NULL: none), and `same`: these frames are those the id in *slot was
 * found for, frame for frame, so it is theirs.
 */
struct ha_agent_stack_memo {
	uint64_t *slot;
	bool same;
};

/*
 * The return addresses of the calling code, innermost first: of the
 * function that took `from`, or (from == NULL) of ha_agent_unwind()'s
 * caller. Returns how many were stored (<= max); *hash (unless NULL) is
 * the hash of all of them; *sm (unless NULL) where their id may be kept.
 */
unsigned ha_agent_unwind(const struct ha_agent_regs *from, uintptr_t *frames,
			 unsigned max, uint64_t *hash,
			 struct ha_agent_stack_memo *sm);

#pragma GCC visibility pop

#endif /* HALLOC_AGENT_UNWIND_H */
