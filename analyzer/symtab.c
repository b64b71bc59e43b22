/*
 * analyzer/symtab.c - dwfl_module_addrinfo's answer without its cost.
 *
 * dwfl_module_addrinfo decodes every symbol of the module again for every
 * address (CPython's libpython: 26,000 symbols, ~2.8 M instructions an
 * address). Here the eligible symbols are read once per module, and its
 * choice is made over that list, in its order and by its rules
 * (libdwfl/dwfl_module_addrsym.c): the globals first, then, if they gave
 * nothing, the locals; among the symbols at or below the address that
 * cover it, the one starting closest below it, else the stronger binding,
 * and at the same start the smaller size unless that weakens the binding;
 * the first found when all are equal. Its answers that are symbols
 * without a size (assembly labels) depend on sections as well; those, the
 * case where such a label decides whether the locals are searched, and
 * "none" are left to libdw itself. tests/unit/analyzer_scopes.c compares
 * the two over whole modules.
 */
#include <stdlib.h>

#include "analyzer/model.h"
#include "analyzer/symbolize.h"

struct symbol {
	GElf_Addr value, size;
	const char *name;
	int binding; /* binding_value() */
};

struct ha_symtab_memo {
	struct symbol *syms; /* the eligible ones, in libdw's index order */
	size_t nsyms;
	size_t first_global; /* syms[] index where libdw's globals start */
	bool built, failed;  /* failed: no memory, always ask libdw */
};

/* libdw's ranking of bindings: higher is better. */
static int binding_value(const GElf_Sym *sym)
{
	switch (GELF_ST_BIND(sym->st_info)) {
	case STB_GLOBAL:
		return 3;
	case STB_WEAK:
		return 2;
	case STB_LOCAL:
		return 1;
	default:
		return 0;
	}
}

/* The symbols libdw's search considers at all. */
static bool eligible(const char *name, const GElf_Sym *sym)
{
	unsigned type = GELF_ST_TYPE(sym->st_info);

	return name && *name && sym->st_shndx != SHN_UNDEF &&
	       type != STT_SECTION && type != STT_FILE && type != STT_TLS;
}

static bool build(struct ha_symtab_memo *m, Dwfl_Module *mod)
{
	int n = dwfl_module_getsymtab(mod);
	int first_global = dwfl_module_getsymtab_first_global(mod);
	size_t cap = 0;

	if (n < 0 || first_global < 0)
		return false;
	/* libdw's globals: [first_global, n), from 1 when it is 0; its
	 * locals, searched second: [1, first_global) when first_global > 1. */
	m->first_global = 0;
	for (int i = 1; i < n; i++) {
		GElf_Sym sym;
		GElf_Addr value;
		GElf_Word shndx;
		Elf *elf;
		Dwarf_Addr bias;
		const char *name;

		if (i == first_global)
			m->first_global = m->nsyms;
		name = dwfl_module_getsym_info(mod, i, &sym, &value, &shndx,
					       &elf, &bias);
		if (!eligible(name, &sym))
			continue;
		if (!HA_RESERVE(m->syms, cap, m->nsyms + 1))
			return false;
		m->syms[m->nsyms++] = (struct symbol){
		    value, sym.st_size, name, binding_value(&sym)};
	}
	if (first_global <= 1)
		m->first_global = 0;
	else if (first_global >= n)
		m->first_global = m->nsyms;
	return true;
}

struct choice {
	const struct symbol *closest;
	bool label_at_addr; /* a sizeless symbol starts at addr */
};

/* libdw's search_table over syms[start, end), sized symbols only. */
static void search(const struct ha_symtab_memo *m, size_t start, size_t end,
		   GElf_Addr addr, struct choice *c)
{
	for (size_t i = start; i < end; i++) {
		const struct symbol *s = &m->syms[i];

		if (s->value > addr)
			continue;
		if (s->size == 0) {
			c->label_at_addr |= s->value == addr;
			continue;
		}
		if (addr - s->value >= s->size)
			continue;
		if (!c->closest || c->closest->value < s->value ||
		    c->closest->binding < s->binding)
			c->closest = s;
		else if (c->closest->value == s->value &&
			 ((c->closest->size > s->size &&
			   c->closest->binding <= s->binding) ||
			  (c->closest->size >= s->size &&
			   c->closest->binding < s->binding)))
			c->closest = s;
	}
}

const char *ha_symtab_name(struct ha_symtab_memo *m, Dwfl_Module *mod,
			   GElf_Addr addr)
{
	struct choice c = {NULL, false};
	GElf_Off off;
	GElf_Sym sym;

	if (m && !m->built) {
		m->built = true;
		if (!build(m, mod)) {
			free(m->syms);
			m->syms = NULL;
			m->nsyms = 0;
			m->failed = true;
		}
	}
	if (m && !m->failed) {
		search(m, m->first_global, m->nsyms, addr, &c);
		/* A global label exactly at addr may stop libdw before the
		 * locals, depending on its section: libdw decides that. */
		if (!c.closest && !c.label_at_addr && m->first_global > 0)
			search(m, 0, m->first_global, addr, &c);
		if (c.closest)
			return c.closest->name;
	}
	/* A label, or nothing: libdw decides, sections and all. */
	return dwfl_module_addrinfo(mod, addr, &off, &sym, NULL, NULL, NULL);
}

struct ha_symtab_memo *ha_symtab_new(void)
{
	return calloc(1, sizeof(struct ha_symtab_memo));
}

void ha_symtab_free(struct ha_symtab_memo *m)
{
	if (!m)
		return;
	free(m->syms);
	free(m);
}
