/*
 * agent/bpf/unwind.c - DWARF CFI unwinding of a copied user stack. See
 * unwind.h.
 *
 * A rule says, for one code address, how to compute the CFA (the caller's
 * stack pointer) and where the caller's return address and callee-saved
 * registers are. libdw gives each as a DWARF expression (one DW_OP_bregN
 * for the usual "rsp + 8" CFA, DW_OP_call_frame_cfa + offset for a saved
 * register); the small evaluator below runs them.
 */
#include <dwarf.h>
#include <stdlib.h>
#include <string.h>

#include "agent/bpf/unwind.h"

/* DWARF register numbers on x86_64. */
enum {
	R_BX = 3,
	R_BP = 6,
	R_SP = 7,
	R_R12 = 12,
	R_R15 = 15,
	R_RA = 16,
	NREGS = 17
};

/* Registers a rule restores: the callee-saved ones and the return
 * address; the others do not survive a call anyway. */
static const int tracked[] = {R_BX, R_BP, 12, 13, 14, R_R15, R_RA};
#define NTRACKED (sizeof(tracked) / sizeof(tracked[0]))
#define MAX_OPS	 16

struct hb_op {
	uint8_t atom;
	uint64_t n1, n2;
};

enum expr_kind { EXPR_UNDEFINED, EXPR_SAME, EXPR_EXPR };

struct expr {
	uint8_t kind;
	uint8_t nops;
	struct hb_op ops[MAX_OPS];
};

enum rule_status { RULE_CFI, RULE_NO_CFI };

struct hb_rule {
	uint8_t status;
	bool signal_frame; /* the caller's pc is not a return address */
	struct expr cfa;
	struct expr reg[NTRACKED];
};

struct regs {
	uint64_t val[NREGS];
	uint32_t valid; /* bit per register */
};

struct memory {
	uint64_t base;
	const unsigned char *bytes;
	size_t size;
};

void hb_unwinder_init(struct hb_unwinder *u)
{
	memset(u, 0, sizeof(*u));
}

void hb_unwinder_reset(struct hb_unwinder *u)
{
	hb_table_free(&u->rules);
	u->nrules = 0;
}

void hb_unwinder_free(struct hb_unwinder *u)
{
	hb_table_free(&u->rules);
	free(u->list);
	memset(u, 0, sizeof(*u));
}

/* ---- reading the copied stack ------------------------------------------- */

static enum hb_unwind_end mem_read(const struct memory *m, uint64_t addr,
				   uint64_t *out)
{
	if (addr >= m->base && addr - m->base <= m->size &&
	    m->size - (addr - m->base) >= 8) {
		memcpy(out, m->bytes + (addr - m->base), 8);
		return HB_UNWIND_DONE;
	}
	/* Above the copy: the stack was deeper than the bytes copied. */
	return addr >= m->base ? HB_UNWIND_TRUNCATED : HB_UNWIND_UNKNOWN;
}

/* ---- expressions --------------------------------------------------------- */

static bool copy_expr(struct expr *e, const Dwarf_Op *ops, size_t nops)
{
	if (nops > MAX_OPS)
		return false;
	e->kind = EXPR_EXPR;
	e->nops = (uint8_t)nops;
	for (size_t i = 0; i < nops; i++)
		e->ops[i] =
		    (struct hb_op){ops[i].atom, ops[i].number, ops[i].number2};
	return true;
}

/*
 * Runs an expression; *is_value: the result is the value (DW_OP_stack_value,
 * a register, or the CFA itself), else the address where the value is.
 */
static enum hb_unwind_end eval(const struct expr *e, const struct regs *r,
			       uint64_t cfa, const struct memory *m,
			       uint64_t *out, bool *is_value)
{
	uint64_t st[16];
	unsigned n = 0;
	enum hb_unwind_end res;

	*is_value = false;
	for (unsigned i = 0; i < e->nops; i++) {
		const struct hb_op *op = &e->ops[i];
		uint8_t a = op->atom;
		uint64_t x, y;
		int reg = -1;

		if (n >= 15)
			return HB_UNWIND_UNKNOWN;
		if (a >= DW_OP_breg0 && a <= DW_OP_breg31)
			reg = a - DW_OP_breg0;
		else if (a == DW_OP_bregx)
			reg = (int)op->n1;
		if (reg >= 0) {
			if (reg >= NREGS || !(r->valid & (1u << reg)))
				return HB_UNWIND_UNKNOWN;
			st[n++] =
			    r->val[reg] + (a == DW_OP_bregx ? op->n2 : op->n1);
			continue;
		}
		if ((a >= DW_OP_reg0 && a <= DW_OP_reg31) || a == DW_OP_regx) {
			reg = a == DW_OP_regx ? (int)op->n1 : a - DW_OP_reg0;
			if (reg >= NREGS || !(r->valid & (1u << reg)))
				return HB_UNWIND_UNKNOWN;
			st[n++] = r->val[reg];
			*is_value = true;
			continue;
		}
		if (a >= DW_OP_lit0 && a <= DW_OP_lit31) {
			st[n++] = a - DW_OP_lit0;
			continue;
		}
		switch (a) {
		case DW_OP_call_frame_cfa:
			st[n++] = cfa;
			continue;
		case DW_OP_const1u:
		case DW_OP_const2u:
		case DW_OP_const4u:
		case DW_OP_const8u:
		case DW_OP_constu:
		case DW_OP_const1s:
		case DW_OP_const2s:
		case DW_OP_const4s:
		case DW_OP_const8s:
		case DW_OP_consts:
			st[n++] = op->n1;
			continue;
		case DW_OP_nop:
			continue;
		case DW_OP_stack_value:
			*is_value = true;
			continue;
		}
		if (n < 1)
			return HB_UNWIND_UNKNOWN;
		switch (a) {
		case DW_OP_plus_uconst:
			st[n - 1] += op->n1;
			continue;
		case DW_OP_deref:
			if ((res = mem_read(m, st[n - 1], &st[n - 1])))
				return res;
			continue;
		case DW_OP_dup:
			st[n] = st[n - 1];
			n++;
			continue;
		case DW_OP_drop:
			n--;
			continue;
		}
		if (n < 2)
			return HB_UNWIND_UNKNOWN;
		y = st[--n];
		x = st[n - 1];
		switch (a) {
		case DW_OP_plus:
			x += y;
			break;
		case DW_OP_minus:
			x -= y;
			break;
		case DW_OP_mul:
			x *= y;
			break;
		case DW_OP_and:
			x &= y;
			break;
		case DW_OP_or:
			x |= y;
			break;
		case DW_OP_xor:
			x ^= y;
			break;
		case DW_OP_shl:
			x = y < 64 ? x << y : 0;
			break;
		case DW_OP_shr:
			x = y < 64 ? x >> y : 0;
			break;
		case DW_OP_ge:
			x = (int64_t)x >= (int64_t)y;
			break;
		case DW_OP_gt:
			x = (int64_t)x > (int64_t)y;
			break;
		case DW_OP_le:
			x = (int64_t)x <= (int64_t)y;
			break;
		case DW_OP_lt:
			x = (int64_t)x < (int64_t)y;
			break;
		case DW_OP_eq:
			x = x == y;
			break;
		case DW_OP_ne:
			x = x != y;
			break;
		case DW_OP_swap:
			st[n - 1] = y;
			st[n++] = x;
			continue;
		default:
			return HB_UNWIND_UNKNOWN;
		}
		st[n - 1] = x;
	}
	if (n < 1)
		return HB_UNWIND_UNKNOWN;
	*out = st[n - 1];
	return HB_UNWIND_DONE;
}

/* ---- rules --------------------------------------------------------------- */

static Dwarf_CFI *module_cfi(struct hb_module *mod)
{
	if (!mod->cfi_tried) {
		Elf *elf = hb_module_elf(mod);

		mod->cfi_tried = true;
		mod->cfi = elf ? dwarf_getcfi_elf(elf) : NULL;
	}
	return mod->cfi;
}

static void make_rule(struct hb_rule *rule, struct hb_module *mod, uint64_t pc)
{
	Dwarf_CFI *cfi = module_cfi(mod);
	Dwarf_Frame *frame = NULL;
	Dwarf_Op *ops, ops_mem[3];
	Dwarf_Addr start, end;
	size_t nops;
	bool signalp;
	int ra;

	memset(rule, 0, sizeof(*rule));
	rule->status = RULE_NO_CFI;
	if (!cfi || dwarf_cfi_addrframe(cfi, pc - mod->bias, &frame) || !frame)
		return;
	ra = dwarf_frame_info(frame, &start, &end, &signalp);
	if (ra != R_RA || dwarf_frame_cfa(frame, &ops, &nops) || nops == 0 ||
	    !copy_expr(&rule->cfa, ops, nops)) {
		free(frame);
		return;
	}
	rule->signal_frame = signalp;
	for (unsigned i = 0; i < NTRACKED; i++) {
		struct expr *e = &rule->reg[i];

		if (dwarf_frame_register(frame, tracked[i], ops_mem, &ops,
					 &nops)) {
			e->kind = EXPR_UNDEFINED;
		} else if (nops == 0) {
			e->kind = ops ? EXPR_SAME : EXPR_UNDEFINED;
		} else if (!copy_expr(e, ops, nops)) {
			e->kind = EXPR_UNDEFINED;
		}
	}
	free(frame);
	rule->status = RULE_CFI;
}

static const struct hb_rule *rule_for(struct hb_unwinder *u,
				      struct hb_module *mod, uint64_t pc)
{
	uint64_t *v = hb_table_find(&u->rules, pc);

	if (v)
		return &u->list[*v - 1];
	if (u->nrules >= (1u << 18))
		hb_unwinder_reset(u); /* bound the memory of a huge program */
	if (u->nrules == u->cap) {
		size_t cap = u->cap ? u->cap * 2 : 256;
		struct hb_rule *l = realloc(u->list, cap * sizeof(*l));

		if (!l)
			return NULL;
		u->list = l;
		u->cap = cap;
	}
	make_rule(&u->list[u->nrules], mod, pc);
	if (!hb_table_put(&u->rules, pc, u->nrules + 1))
		return NULL;
	return &u->list[u->nrules++];
}

/* ---- the walk ------------------------------------------------------------ */

/* One frame up with the CFI rule; fills the caller's registers. */
static enum hb_unwind_end step_cfi(const struct hb_rule *rule,
				   const struct regs *r, const struct memory *m,
				   struct regs *caller)
{
	enum hb_unwind_end res;
	uint64_t cfa;
	bool is_value;

	if ((res = eval(&rule->cfa, r, 0, m, &cfa, &is_value)))
		return res;
	caller->valid = 1u << R_SP;
	caller->val[R_SP] = cfa;
	for (unsigned i = 0; i < NTRACKED; i++) {
		const struct expr *e = &rule->reg[i];
		int reg = tracked[i];
		uint64_t v;

		if (e->kind == EXPR_UNDEFINED)
			continue;
		if (e->kind == EXPR_SAME) {
			if (r->valid & (1u << reg)) {
				caller->val[reg] = r->val[reg];
				caller->valid |= 1u << reg;
			}
			continue;
		}
		res = eval(e, r, cfa, m, &v, &is_value);
		if (res == HB_UNWIND_DONE && !is_value)
			res = mem_read(m, v, &v);
		if (res != HB_UNWIND_DONE) {
			if (reg == R_RA)
				return res;
			continue; /* a register we may not need */
		}
		caller->val[reg] = v;
		caller->valid |= 1u << reg;
	}
	return HB_UNWIND_DONE;
}

/* One frame up by the frame pointer: for code without CFI. */
static enum hb_unwind_end step_fp(const struct regs *r, const struct memory *m,
				  struct regs *caller)
{
	enum hb_unwind_end res;
	uint64_t fp = r->val[R_BP];

	if (!(r->valid & (1u << R_BP)))
		return HB_UNWIND_UNKNOWN;
	*caller = *r;
	if ((res = mem_read(m, fp + 8, &caller->val[R_RA])) ||
	    (res = mem_read(m, fp, &caller->val[R_BP])))
		return res;
	caller->val[R_SP] = fp + 16;
	caller->valid |= 1u << R_RA | 1u << R_SP;
	return HB_UNWIND_DONE;
}

enum hb_unwind_end
hb_unwind(struct hb_unwinder *u, const struct hb_regs *regs,
	  const unsigned char *stack, size_t stack_size,
	  struct hb_module *(*find)(void *ctx, uint64_t addr), void *ctx,
	  uint64_t *frames, unsigned max, unsigned *n)
{
	struct memory m = {regs->sp, stack, stack_size};
	struct regs r = {0};
	uint64_t pc = regs->ip;
	bool exact = true; /* pc is where execution is, not a return address */

	r.val[R_SP] = regs->sp;
	r.val[R_BP] = regs->bp;
	r.val[R_BX] = regs->bx;
	r.val[12] = regs->r12;
	r.val[13] = regs->r13;
	r.val[14] = regs->r14;
	r.val[R_R15] = regs->r15;
	r.valid = 1u << R_SP | 1u << R_BP | 1u << R_BX | 0xfu << 12;
	*n = 0;
	if (max == 0)
		return HB_UNWIND_DONE;
	frames[(*n)++] = pc;
	while (*n < max) {
		/* A return address may be the first byte of the next
		 * function (after a noreturn call): look up the call. */
		uint64_t at = exact ? pc : pc - 1;
		struct hb_module *mod = find(ctx, at);
		const struct hb_rule *rule;
		struct regs caller;
		enum hb_unwind_end res;

		if (!mod || !(rule = rule_for(u, mod, at)))
			return HB_UNWIND_UNKNOWN;
		if (rule->status == RULE_CFI)
			res = step_cfi(rule, &r, &m, &caller);
		else
			res = step_fp(&r, &m, &caller);
		if (res)
			return res;
		if (!(caller.valid & (1u << R_RA)) || caller.val[R_RA] == 0)
			return HB_UNWIND_DONE; /* the outermost frame */
		if (caller.val[R_SP] <= r.val[R_SP])
			return HB_UNWIND_UNKNOWN; /* no progress: bad rule */
		pc = caller.val[R_RA];
		exact = rule->status == RULE_CFI && rule->signal_frame;
		caller.valid &= ~(1u << R_RA);
		r = caller;
		frames[(*n)++] = pc;
	}
	return HB_UNWIND_DONE;
}
