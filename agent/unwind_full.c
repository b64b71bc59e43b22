/*
 * agent/unwind_full.c - one step of the walk by the full rules: the CFA,
 * the return address and rbp by any rule cfi.c reports, DWARF expressions
 * included (PLT entries, realigned frames, glibc's signal trampoline).
 * unwind.c steps the common frames itself and comes here for the others.
 * Every stack load goes through ha_agent_walk_load(): checked.
 */
#include <string.h>

#include "agent/unwind.h"

static bool reg_value(const struct ha_agent_walk *w, uint64_t reg,
		      uintptr_t *out)
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
static bool eval(const struct ha_agent_walk *w, const uint8_t *p, uint32_t len,
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
			if (!ha_agent_walk_load(w, a, &st[sp++]))
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
static bool recover(const struct ha_agent_walk *w,
		    const struct ha_cfi_reg *rule, uintptr_t cfa,
		    uintptr_t self, uintptr_t *out)
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
		return ha_agent_walk_load(w, cfa + (uintptr_t)rule->off, out);
	case HA_RULE_VAL_OFFSET:
		*out = cfa + (uintptr_t)rule->off;
		return true;
	case HA_RULE_REG:
		return reg_value(w, (uint64_t)rule->off, out);
	case HA_RULE_EXPR:
		return eval(w, rule->expr, rule->len, &cfa, &addr) &&
		       ha_agent_walk_load(w, addr, out);
	case HA_RULE_VAL_EXPR:
		return eval(w, rule->expr, rule->len, &cfa, out);
	default:
		return false;
	}
}

/* One frame up from the full rules. 1: done, 0: the end, -1: stuck. */
int ha_agent_step_full(struct ha_agent_walk *w, const struct ha_cfi *c,
		       bool *signal)
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
