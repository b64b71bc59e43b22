/*
 * agent/bpf/unwind.h - DWARF mode: call stacks from a copy of the top of
 * the user stack and the registers at the allocation function's return,
 * as `perf --call-graph dwarf` does. Internal to agent/bpf/.
 *
 * The unwind rules come from each module's .eh_frame through elfutils
 * (dwarf_cfi_addrframe); they are evaluated here, against the copied
 * stack, and cached by address, because the same few hundred return
 * addresses come back millions of times and must cost a table lookup,
 * not a CFI parse. Code without CFI is walked by its frame pointer.
 *
 * A stack is "truncated" when unwinding needed memory beyond the copy
 * (the stack was deeper than the bytes copied): the frames found so far
 * are kept.
 */
#ifndef HALLOC_AGENT_BPF_UNWIND_H
#define HALLOC_AGENT_BPF_UNWIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/bpf/halloc.h"
#include "agent/bpf/modules.h"
#include "agent/bpf/table.h"

struct hb_rule;

struct hb_unwinder {
	struct hb_table rules; /* address -> index in list + 1 */
	struct hb_rule *list;
	size_t nrules, cap;
};

void hb_unwinder_init(struct hb_unwinder *u);
/* Forgets every rule (the process image changed). */
void hb_unwinder_reset(struct hb_unwinder *u);
void hb_unwinder_free(struct hb_unwinder *u);

enum hb_unwind_end {
	HB_UNWIND_DONE,	     /* reached the outermost frame or the depth */
	HB_UNWIND_TRUNCATED, /* needed stack beyond the copy */
	HB_UNWIND_UNKNOWN,   /* an address in no module, or no rule */
};

/*
 * Fills frames[0..*n) (at most max), innermost first, all return
 * addresses; frames[0] is regs->ip. `find` resolves an address to its
 * module (it may rescan the target's maps).
 */
enum hb_unwind_end
hb_unwind(struct hb_unwinder *u, const struct hb_regs *regs,
	  const unsigned char *stack, size_t stack_size,
	  struct hb_module *(*find)(void *ctx, uint64_t addr), void *ctx,
	  uint64_t *frames, unsigned max, unsigned *n);

#endif /* HALLOC_AGENT_BPF_UNWIND_H */
