/*
 * analyzer/scopes.c - the innermost DIE at an address, as dwarf_getscopes
 * finds it, without its cost in big units.
 *
 * dwarf_getscopes visits a unit's children in order, descends into the
 * first whose ranges hold the address (dwarf_haspc), and so on down; the
 * innermost DIE is the first, in that order, with no child that holds it.
 * At the top of a big unit (CPython's ceval.c: thousands of functions,
 * types and declarations) every child's attributes are decoded again for
 * every address. Here the top level is read once per unit: the children
 * that have ranges at all, in order, with their ranges. The first of
 * them holding the address is the one dwarf_getscopes descends into (the
 * others cannot match: dwarf_haspc is false for a DIE without ranges);
 * below it, the same descent with libdw's own calls, over one function.
 */
#include <dwarf.h>
#include <stdlib.h>

#include "analyzer/hashmap.h"
#include "analyzer/model.h"
#include "analyzer/symbolize.h"

struct range {
	Dwarf_Addr lo, hi;
};

/* A top-level child of a unit that has ranges. */
struct ranged {
	Dwarf_Off offset;
	uint32_t first, n; /* its ranges in unit->ranges */
};

struct unit_index {
	Dwarf_Off *tops; /* every top-level child, in order */
	size_t ntops, tops_cap;
	struct ranged *children;
	size_t nchildren, children_cap;
	struct range *ranges;
	size_t nranges, ranges_cap;
};

struct ha_scope_index {
	Dwarf *dwarf; /* the module's own: offsets are only unique in one */
	struct ha_map by_unit; /* unit DIE offset -> units[] */
	struct unit_index *units;
	size_t nunits, units_cap;
};

/* The tags dwarf_getscopes descends into (libdw's classify_die: "match"
 * and "walk"); the others it never enters. */
static bool descended(Dwarf_Die *die)
{
	switch (dwarf_tag(die)) {
	case DW_TAG_compile_unit:
	case DW_TAG_module:
	case DW_TAG_lexical_block:
	case DW_TAG_with_stmt:
	case DW_TAG_catch_block:
	case DW_TAG_try_block:
	case DW_TAG_entry_point:
	case DW_TAG_inlined_subroutine:
	case DW_TAG_subprogram:
	case DW_TAG_namespace:
	case DW_TAG_class_type:
	case DW_TAG_structure_type:
		return true;
	default:
		return false;
	}
}

static bool index_unit(struct unit_index *u, Dwarf_Die *unit)
{
	Dwarf_Die child;

	if (dwarf_child(unit, &child) != 0)
		return true;
	do {
		Dwarf_Addr base, lo, hi;
		ptrdiff_t off = 0;
		size_t first = u->nranges;

		if (!HA_RESERVE(u->tops, u->tops_cap, u->ntops + 1))
			return false;
		u->tops[u->ntops++] = dwarf_dieoffset(&child);
		while ((off = dwarf_ranges(&child, off, &base, &lo, &hi)) > 0) {
			if (!HA_RESERVE(u->ranges, u->ranges_cap,
					u->nranges + 1))
				return false;
			u->ranges[u->nranges++] = (struct range){lo, hi};
		}
		if (u->nranges == first)
			continue;
		if (!HA_RESERVE(u->children, u->children_cap,
				u->nchildren + 1))
			return false;
		u->children[u->nchildren++] = (struct ranged){
		    dwarf_dieoffset(&child), (uint32_t)first,
		    (uint32_t)(u->nranges - first)};
	} while (dwarf_siblingof(&child, &child) == 0);
	return true;
}

/* A unit of another file than the first one seen (a dwz file's partial
 * unit) is not indexed: its offsets could clash. */
static bool foreign(struct ha_scope_index *ix, Dwarf_Die *unit)
{
	Dwarf *dwarf = dwarf_cu_getdwarf(unit->cu);

	if (!ix->dwarf)
		ix->dwarf = dwarf;
	return dwarf != ix->dwarf;
}

static struct unit_index *unit_of(struct ha_scope_index *ix, Dwarf_Die *unit)
{
	uint64_t key = dwarf_dieoffset(unit);
	uint32_t i;

	if (foreign(ix, unit))
		return NULL;
	i = ha_map_get(&ix->by_unit, key);

	if (i != HA_NONE)
		return &ix->units[i];
	if (!HA_RESERVE(ix->units, ix->units_cap, ix->nunits + 1))
		return NULL;
	ix->units[ix->nunits] = (struct unit_index){0};
	if (!index_unit(&ix->units[ix->nunits], unit) ||
	    !ha_map_put(&ix->by_unit, key, (uint32_t)ix->nunits)) {
		free(ix->units[ix->nunits].tops);
		free(ix->units[ix->nunits].children);
		free(ix->units[ix->nunits].ranges);
		return NULL;
	}
	return &ix->units[ix->nunits++];
}

/* Below a DIE that holds pc: dwarf_getscopes's descent. */
static void descend(Dwarf_Die *die, Dwarf_Addr pc)
{
	Dwarf_Die child;

	for (;;) {
		bool found = false;

		if (!descended(die) || dwarf_child(die, &child) != 0)
			return;
		do {
			if (dwarf_haspc(&child, pc) == 1) {
				found = true;
				break;
			}
		} while (dwarf_siblingof(&child, &child) == 0);
		if (!found)
			return;
		*die = child;
	}
}

int ha_scopes_innermost(struct ha_scope_index *ix, Dwarf_Die *unit,
			Dwarf_Addr pc, Dwarf_Die *out)
{
	struct unit_index *u = unit_of(ix, unit);

	if (!u)
		return -1;
	for (size_t i = 0; i < u->nchildren; i++) {
		const struct ranged *c = &u->children[i];

		for (uint32_t r = 0; r < c->n; r++) {
			const struct range *rg = &u->ranges[c->first + r];

			if (pc < rg->lo || pc >= rg->hi)
				continue;
			if (!dwarf_offdie(dwarf_cu_getdwarf(unit->cu),
					  c->offset, out))
				return -1;
			descend(out, pc);
			return 1;
		}
	}
	return 0;
}

int ha_scopes_top_child(struct ha_scope_index *ix, Dwarf_Die *unit,
			Dwarf_Off target, Dwarf_Die *out)
{
	struct unit_index *u;
	size_t lo = 0, hi;

	if (foreign(ix, unit))
		return 0; /* the caller walks it */
	if (!(u = unit_of(ix, unit)))
		return -1;
	/* The last top-level child at or before target holds it. */
	hi = u->ntops;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (u->tops[mid] <= target)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return 0;
	return dwarf_offdie(dwarf_cu_getdwarf(unit->cu), u->tops[lo - 1], out)
		   ? 1
		   : -1;
}

struct ha_scope_index *ha_scopes_new(void)
{
	return calloc(1, sizeof(struct ha_scope_index));
}

void ha_scopes_free(struct ha_scope_index *ix)
{
	if (!ix)
		return;
	for (size_t i = 0; i < ix->nunits; i++) {
		free(ix->units[i].tops);
		free(ix->units[i].children);
		free(ix->units[i].ranges);
	}
	free(ix->units);
	ha_map_free(&ix->by_unit);
	free(ix);
}
