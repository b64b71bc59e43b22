/*
 * analyzer/symtab.c - dwfl_module_addrinfo's answer, asked once per
 * stretch of addresses where it cannot change.
 *
 * dwfl_module_addrinfo decodes every symbol of the module for every
 * address (CPython's libpython: 26,000 symbols, ~2.8 M instructions an
 * address). What it picks depends on the address only through which
 * symbols start at or below it (value <= addr), which of those still
 * cover it (addr < value + size), and, for symbols without a size, on
 * the address being exactly theirs and on its section. Between two
 * consecutive symbol starts or ends (and a sizeless symbol's value + 1)
 * the first two do not change; so where the answer is a symbol with a
 * size (the section test only ever picks a sizeless one), every address
 * of the stretch gets the same symbol. Other answers (a sizeless symbol,
 * none) are asked again each time. tests/unit/analyzer_scopes.c compares
 * the two over whole modules.
 */
#include <stdlib.h>

#include "analyzer/hashmap.h"
#include "analyzer/model.h"
#include "analyzer/symbolize.h"

struct ha_symtab_memo {
	GElf_Addr *bounds; /* sorted, unique */
	size_t nbounds;
	bool built, failed; /* failed: no memory, always ask libdw */
	struct ha_map by_stretch; /* stretch number -> names[] */
	const char **names;
	size_t nnames, names_cap;
};

static int compare_addr(const void *a, const void *b)
{
	GElf_Addr x = *(const GElf_Addr *)a, y = *(const GElf_Addr *)b;

	return x < y ? -1 : x > y;
}

/* The symbols libdw's search considers at all. */
static bool eligible(const char *name, const GElf_Sym *sym)
{
	unsigned type = GELF_ST_TYPE(sym->st_info);

	return name && *name && sym->st_shndx != SHN_UNDEF &&
	       type != STT_SECTION && type != STT_FILE && type != STT_TLS;
}

static bool add(struct ha_symtab_memo *m, size_t *cap, GElf_Addr a)
{
	if (!HA_RESERVE(m->bounds, *cap, m->nbounds + 1))
		return false;
	m->bounds[m->nbounds++] = a;
	return true;
}

static bool build(struct ha_symtab_memo *m, Dwfl_Module *mod)
{
	int n = dwfl_module_getsymtab(mod);
	size_t cap = 0, out = 0;

	for (int i = 0; i < n; i++) {
		GElf_Sym sym;
		GElf_Addr value;
		GElf_Word shndx;
		Elf *elf;
		Dwarf_Addr bias;
		const char *name = dwfl_module_getsym_info(
		    mod, i, &sym, &value, &shndx, &elf, &bias);

		if (!eligible(name, &sym))
			continue;
		if (!add(m, &cap, value) ||
		    !add(m, &cap, value + (sym.st_size ? sym.st_size : 1)))
			return false;
	}
	if (!m->nbounds)
		return add(m, &cap, 0);
	qsort(m->bounds, m->nbounds, sizeof(*m->bounds), compare_addr);
	for (size_t i = 0; i < m->nbounds; i++)
		if (!out || m->bounds[i] != m->bounds[out - 1])
			m->bounds[out++] = m->bounds[i];
	m->nbounds = out;
	return true;
}

/* How many bounds are <= addr: addresses with the same count lie in one
 * stretch. */
static size_t stretch_of(const struct ha_symtab_memo *m, GElf_Addr addr)
{
	size_t lo = 0, hi = m->nbounds;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->bounds[mid] <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const char *ha_symtab_name(struct ha_symtab_memo *m, Dwfl_Module *mod,
			   GElf_Addr addr)
{
	GElf_Off off;
	GElf_Sym sym;
	const char *name;
	size_t stretch;
	uint32_t i;

	if (m && !m->built) {
		m->built = true;
		if (!build(m, mod)) {
			free(m->bounds);
			m->bounds = NULL;
			m->failed = true;
		}
	}
	if (!m || m->failed)
		return dwfl_module_addrinfo(mod, addr, &off, &sym, NULL, NULL,
					    NULL);
	stretch = stretch_of(m, addr);
	i = ha_map_get(&m->by_stretch, stretch);
	if (i != HA_NONE)
		return m->names[i];
	name = dwfl_module_addrinfo(mod, addr, &off, &sym, NULL, NULL, NULL);
	/* Only a symbol with a size holds for the whole stretch. */
	if (name && sym.st_size &&
	    HA_RESERVE(m->names, m->names_cap, m->nnames + 1) &&
	    ha_map_put(&m->by_stretch, stretch, (uint32_t)m->nnames))
		m->names[m->nnames++] = name;
	return name;
}

struct ha_symtab_memo *ha_symtab_new(void)
{
	return calloc(1, sizeof(struct ha_symtab_memo));
}

void ha_symtab_free(struct ha_symtab_memo *m)
{
	if (!m)
		return;
	free(m->bounds);
	free(m->names);
	ha_map_free(&m->by_stretch);
	free(m);
}
