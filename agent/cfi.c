/*
 * agent/cfi.c - the unwinding rules at one address, from DWARF CFI.
 *
 * Every object built for x86_64 Linux carries .eh_frame (call frame
 * information, the same tables C++ exceptions use, present even without
 * -g and in glibc) and .eh_frame_hdr, a sorted index of it. For an address
 * we find the object with glibc's lock-free _dl_find_object, binary-search
 * the index for the FDE, and run the CIE's and the FDE's CFA programs up to
 * the address. The result says how to find the caller's frame: the CFA
 * (canonical frame address: the stack pointer before the call), and where
 * the return address and rbp were saved. Other registers are not needed to
 * walk the stack, except in expressions, which unwind.c evaluates.
 *
 * Everything read here is the objects' own read-only data: a malformed
 * table makes the lookup fail (the stack ends there), never a wild read.
 */
#include <dlfcn.h>
#include <string.h>

#include "agent/unwind.h"

/* Pointer encodings (DW_EH_PE_*). */
#define PE_OMIT	    0xff
#define PE_FORMAT   0x0f
#define PE_APPLY    0x70
#define PE_PCREL    0x10
#define PE_DATAREL  0x30
#define PE_INDIRECT 0x80

/* Depth of DW_CFA_remember_state. */
#define STATE_STACK 8

struct reader {
	const uint8_t *p, *end;
	bool bad;
};

static uint64_t get_u(struct reader *r, size_t n)
{
	uint64_t v = 0;

	if ((size_t)(r->end - r->p) < n) {
		r->bad = true;
		r->p = r->end;
		return 0;
	}
	memcpy(&v, r->p, n); /* little-endian */
	r->p += n;
	return v;
}

static uint64_t get_uleb(struct reader *r)
{
	uint64_t v = 0;
	unsigned shift = 0;

	while (r->p < r->end) {
		uint8_t b = *r->p++;

		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80))
			return v;
	}
	r->bad = true;
	return 0;
}

static int64_t get_sleb(struct reader *r)
{
	uint64_t v = 0;
	unsigned shift = 0;
	uint8_t b = 0x80;

	while (r->p < r->end && (b & 0x80)) {
		b = *r->p++;
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
	}
	if (b & 0x80) {
		r->bad = true;
		return 0;
	}
	if (shift < 64 && (b & 0x40))
		v |= ~(uint64_t)0 << shift;
	return (int64_t)v;
}

/* An encoded pointer; datarel is relative to `data` (.eh_frame_hdr). */
static uintptr_t get_ptr(struct reader *r, uint8_t enc, uintptr_t data)
{
	uintptr_t at = (uintptr_t)r->p, v;

	if (enc == PE_OMIT)
		return 0;
	switch (enc & PE_FORMAT) {
	case 0x00:
		v = (uintptr_t)get_u(r, 8);
		break;
	case 0x01:
		v = (uintptr_t)get_uleb(r);
		break;
	case 0x02:
		v = (uintptr_t)get_u(r, 2);
		break;
	case 0x03:
		v = (uintptr_t)get_u(r, 4);
		break;
	case 0x04:
		v = (uintptr_t)get_u(r, 8);
		break;
	case 0x09:
		v = (uintptr_t)get_sleb(r);
		break;
	case 0x0a:
		v = (uintptr_t)(int16_t)get_u(r, 2);
		break;
	case 0x0b:
		v = (uintptr_t)(int32_t)get_u(r, 4);
		break;
	case 0x0c:
		v = (uintptr_t)get_u(r, 8);
		break;
	default:
		r->bad = true;
		return 0;
	}
	switch (enc & PE_APPLY) {
	case 0:
		break;
	case PE_PCREL:
		v += at;
		break;
	case PE_DATAREL:
		v += data;
		break;
	default:
		r->bad = true;
		return 0;
	}
	if ((enc & PE_INDIRECT) && !r->bad)
		v = *(const uintptr_t *)v;
	return v;
}

/* Size of a pointer's encoding, for the index entries (no uleb there). */
static size_t ptr_size(uint8_t enc)
{
	switch (enc & PE_FORMAT) {
	case 0x02:
	case 0x0a:
		return 2;
	case 0x03:
	case 0x0b:
		return 4;
	case 0x00:
	case 0x04:
	case 0x0c:
		return 8;
	default:
		return 0;
	}
}

/* The FDE covering pc, by .eh_frame_hdr's sorted table. */
static const uint8_t *find_fde(const uint8_t *hdr, uintptr_t pc)
{
	struct reader r = {hdr, hdr + 4096, false};
	uint8_t version, frame_enc, count_enc, table_enc;
	size_t count, lo, hi, entry;
	const uint8_t *table;

	version = (uint8_t)get_u(&r, 1);
	frame_enc = (uint8_t)get_u(&r, 1);
	count_enc = (uint8_t)get_u(&r, 1);
	table_enc = (uint8_t)get_u(&r, 1);
	if (version != 1 || table_enc == PE_OMIT || count_enc == PE_OMIT)
		return NULL;
	get_ptr(&r, frame_enc, (uintptr_t)hdr);
	count = get_ptr(&r, count_enc, (uintptr_t)hdr);
	entry = 2 * ptr_size(table_enc);
	if (r.bad || !count || !entry || (table_enc & PE_APPLY) != PE_DATAREL)
		return NULL;
	table = r.p;
	/* The last entry whose start is <= pc. */
	lo = 0;
	hi = count;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		struct reader e = {table + mid * entry,
				   table + (mid + 1) * entry, false};

		if (get_ptr(&e, table_enc, (uintptr_t)hdr) <= pc)
			lo = mid;
		else
			hi = mid;
	}
	r.p = table + lo * entry;
	r.end = r.p + entry;
	if (get_ptr(&r, table_enc, (uintptr_t)hdr) > pc)
		return NULL;
	return (const uint8_t *)get_ptr(&r, table_enc, (uintptr_t)hdr);
}

struct cie {
	uint64_t code_align;
	int64_t data_align;
	uint64_t ra_reg;
	uint8_t fde_enc;
	bool has_aug_data;
	bool signal;
	const uint8_t *insns, *end;
};

/* One length-prefixed entry of .eh_frame: where its body starts and ends. */
static bool entry_bounds(const uint8_t *at, const uint8_t **body,
			 const uint8_t **end)
{
	struct reader r = {at, at + 12, false};
	uint64_t len = get_u(&r, 4);

	if (len == 0xffffffff)
		len = get_u(&r, 8);
	if (r.bad || !len || len > (1u << 24))
		return false;
	*body = r.p;
	*end = r.p + len;
	return true;
}

static bool parse_cie(const uint8_t *at, struct cie *c)
{
	const uint8_t *body, *end, *aug;
	struct reader r;
	uint8_t version;

	if (!entry_bounds(at, &body, &end))
		return false;
	r = (struct reader){body, end, false};
	if (get_u(&r, 4) != 0) /* CIE id */
		return false;
	version = (uint8_t)get_u(&r, 1);
	if (version != 1 && version != 3)
		return false;
	aug = r.p;
	while (r.p < r.end && *r.p)
		r.p++;
	r.p++;
	if (aug[0] == 'e' && aug[1] == 'h')
		get_u(&r, 8);
	c->code_align = get_uleb(&r);
	c->data_align = get_sleb(&r);
	c->ra_reg = version == 1 ? get_u(&r, 1) : get_uleb(&r);
	c->fde_enc = 0;
	c->signal = false;
	c->has_aug_data = aug[0] == 'z';
	if (c->has_aug_data) {
		uint64_t len = get_uleb(&r);
		const uint8_t *data_end = r.p + len;

		for (const uint8_t *a = aug + 1; *a && !r.bad; a++) {
			if (*a == 'R')
				c->fde_enc = (uint8_t)get_u(&r, 1);
			else if (*a == 'L')
				get_u(&r, 1);
			else if (*a == 'P')
				get_ptr(&r, (uint8_t)get_u(&r, 1) & 0x7f, 0);
			else if (*a == 'S')
				c->signal = true;
			else if (*a != 'B')
				break; /* unknown: the length lets us skip */
		}
		r.p = data_end;
	}
	c->insns = r.p;
	c->end = end;
	return !r.bad && c->ra_reg == HA_REG_RA && r.p <= end;
}

static void set_reg(struct ha_cfi *st, uint64_t reg, uint8_t kind, int64_t off,
		    const uint8_t *expr, uint64_t len)
{
	struct ha_cfi_reg *r;

	if (reg == HA_REG_RBP)
		r = &st->rbp;
	else if (reg == HA_REG_RSP)
		r = &st->rsp;
	else if (reg == HA_REG_RA)
		r = &st->ra;
	else
		return; /* registers the walk does not need */
	r->kind = kind;
	r->off = off;
	r->expr = expr;
	r->len = (uint32_t)len;
}

static void restore_reg(struct ha_cfi *st, const struct ha_cfi *init,
			uint64_t reg)
{
	if (reg == HA_REG_RBP)
		st->rbp = init->rbp;
	else if (reg == HA_REG_RSP)
		st->rsp = init->rsp;
	else if (reg == HA_REG_RA)
		st->ra = init->ra;
}

/*
 * Run a CFA program from loc until the rules for pc are known. Returns
 * false on an instruction we do not know or a malformed program.
 */
static bool run(struct ha_cfi *st, const struct ha_cfi *init,
		const struct cie *c, const uint8_t *p, const uint8_t *end,
		uintptr_t loc, uintptr_t pc)
{
	struct ha_cfi saved[STATE_STACK];
	struct reader r = {p, end, false};
	unsigned depth = 0;

	while (r.p < r.end && !r.bad) {
		uint8_t op = (uint8_t)get_u(&r, 1), low = op & 0x3f;
		uint64_t reg, delta = 0, len;
		int64_t off;

		switch (op >> 6) {
		case 1: /* advance_loc */
			delta = low * c->code_align;
			break;
		case 2: /* offset */
			off = (int64_t)get_uleb(&r) * c->data_align;
			set_reg(st, low, HA_RULE_OFFSET, off, NULL, 0);
			continue;
		case 3: /* restore */
			restore_reg(st, init, low);
			continue;
		default:
			break;
		}
		if (op >> 6 == 0) {
			switch (op) {
			case 0x00: /* nop */
				continue;
			case 0x01: /* set_loc */
				reg = get_ptr(&r, c->fde_enc, 0);
				if (reg > pc)
					return !r.bad;
				loc = reg;
				continue;
			case 0x02:
				delta = get_u(&r, 1) * c->code_align;
				break;
			case 0x03:
				delta = get_u(&r, 2) * c->code_align;
				break;
			case 0x04:
				delta = get_u(&r, 4) * c->code_align;
				break;
			case 0x05: /* offset_extended */
				reg = get_uleb(&r);
				off = (int64_t)get_uleb(&r) * c->data_align;
				set_reg(st, reg, HA_RULE_OFFSET, off, NULL, 0);
				continue;
			case 0x06: /* restore_extended */
				restore_reg(st, init, get_uleb(&r));
				continue;
			case 0x07: /* undefined */
				set_reg(st, get_uleb(&r), HA_RULE_UNDEF, 0,
					NULL, 0);
				continue;
			case 0x08: /* same_value */
				set_reg(st, get_uleb(&r), HA_RULE_SAME, 0, NULL,
					0);
				continue;
			case 0x09: /* register */
				reg = get_uleb(&r);
				off = (int64_t)get_uleb(&r);
				set_reg(st, reg, HA_RULE_REG, off, NULL, 0);
				continue;
			case 0x0a: /* remember_state */
				if (depth == STATE_STACK)
					return false;
				saved[depth++] = *st;
				continue;
			case 0x0b: /* restore_state */
				if (!depth)
					return false;
				*st = saved[--depth];
				continue;
			case 0x0c: /* def_cfa */
				st->cfa_reg = (uint8_t)get_uleb(&r);
				st->cfa_off = (int64_t)get_uleb(&r);
				st->cfa_expr = NULL;
				continue;
			case 0x0d: /* def_cfa_register */
				st->cfa_reg = (uint8_t)get_uleb(&r);
				st->cfa_expr = NULL;
				continue;
			case 0x0e: /* def_cfa_offset */
				st->cfa_off = (int64_t)get_uleb(&r);
				continue;
			case 0x0f: /* def_cfa_expression */
				len = get_uleb(&r);
				st->cfa_expr = r.p;
				st->cfa_len = (uint32_t)len;
				r.p += len;
				continue;
			case 0x10: /* expression */
			case 0x16: /* val_expression */
				reg = get_uleb(&r);
				len = get_uleb(&r);
				set_reg(st, reg,
					op == 0x10 ? HA_RULE_EXPR
						   : HA_RULE_VAL_EXPR,
					0, r.p, len);
				r.p += len;
				continue;
			case 0x11: /* offset_extended_sf */
				reg = get_uleb(&r);
				off = get_sleb(&r) * c->data_align;
				set_reg(st, reg, HA_RULE_OFFSET, off, NULL, 0);
				continue;
			case 0x12: /* def_cfa_sf */
				st->cfa_reg = (uint8_t)get_uleb(&r);
				st->cfa_off = get_sleb(&r) * c->data_align;
				st->cfa_expr = NULL;
				continue;
			case 0x13: /* def_cfa_offset_sf */
				st->cfa_off = get_sleb(&r) * c->data_align;
				continue;
			case 0x14: /* val_offset */
				reg = get_uleb(&r);
				off = (int64_t)get_uleb(&r) * c->data_align;
				set_reg(st, reg, HA_RULE_VAL_OFFSET, off, NULL,
					0);
				continue;
			case 0x15: /* val_offset_sf */
				reg = get_uleb(&r);
				off = get_sleb(&r) * c->data_align;
				set_reg(st, reg, HA_RULE_VAL_OFFSET, off, NULL,
					0);
				continue;
			case 0x2e: /* GNU_args_size */
				get_uleb(&r);
				continue;
			case 0x2f: /* GNU_negative_offset_extended */
				reg = get_uleb(&r);
				off = -(int64_t)get_uleb(&r) * c->data_align;
				set_reg(st, reg, HA_RULE_OFFSET, off, NULL, 0);
				continue;
			default:
				return false;
			}
		}
		/* An advance: the rules so far hold for pc if it lies before.
		 */
		if (loc + delta > pc)
			return !r.bad;
		loc += delta;
	}
	return !r.bad;
}

bool ha_agent_cfi_find(uintptr_t pc, struct ha_cfi *out)
{
	const uint8_t *fde, *body, *end, *cie_at;
	struct dl_find_object fo;
	struct ha_cfi init;
	struct reader r;
	uintptr_t start, range;
	struct cie c;

	if (_dl_find_object((void *)pc, &fo) || !fo.dlfo_eh_frame)
		return false;
	fde = find_fde(fo.dlfo_eh_frame, pc);
	if (!fde || !entry_bounds(fde, &body, &end))
		return false;
	r = (struct reader){body, end, false};
	cie_at = body - (uint32_t)get_u(&r, 4);
	if (r.bad || cie_at == body || !parse_cie(cie_at, &c))
		return false;
	start = get_ptr(&r, c.fde_enc, 0);
	range = get_ptr(&r, c.fde_enc & PE_FORMAT, 0);
	if (r.bad || pc < start || pc - start >= range)
		return false;
	if (c.has_aug_data)
		r.p += get_uleb(&r);

	memset(&init, 0, sizeof(init));
	init.cfa_reg = HA_REG_RSP;
	init.rbp.kind = HA_RULE_SAME;
	init.rsp.kind = HA_RULE_CFA;
	init.ra.kind = HA_RULE_UNDEF;
	/* The CIE's program has no advance that matters: run it whole. */
	if (!run(&init, &init, &c, c.insns, c.end, start, UINTPTR_MAX))
		return false;
	*out = init;
	if (!run(out, &init, &c, r.p, end, start, pc))
		return false;
	out->signal = c.signal;
	return true;
}
