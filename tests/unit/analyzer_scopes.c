/*
 * tests/unit/analyzer_scopes.c - analyzer/scopes.c finds, at every
 * address, the DIE dwarf_getscopes finds first: over the text of this
 * test binary (-O2 -g: inlined functions, lexical blocks) and of libc
 * (its separate debug file, when installed).
 */
#include <criterion/criterion.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <gnu/lib-names.h>
#include <limits.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyzer/debuginfo.h"
#include "analyzer/symbolize.h"

struct text {
	uint64_t start, end;
};

static bool text_of(Dwfl_Module *mod, struct text *t)
{
	GElf_Addr bias;
	Elf *elf = dwfl_module_getelf(mod, &bias);
	size_t shstrndx;
	Elf_Scn *scn = NULL;

	if (!elf || elf_getshdrstrndx(elf, &shstrndx) != 0)
		return false;
	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr shdr;
		const char *name;

		if (!gelf_getshdr(scn, &shdr))
			continue;
		name = elf_strptr(elf, shstrndx, shdr.sh_name);
		if (name && !strcmp(name, ".text")) {
			t->start = shdr.sh_addr + bias;
			t->end = t->start + shdr.sh_size;
			return true;
		}
	}
	return false;
}

/* Addresses compared, and how many were inside some DIE. */
static void compare_module(const char *path, unsigned stride,
			   unsigned *compared, unsigned *inside)
{
	Dwfl *dwfl = dwfl_begin(&ha_dwfl_offline_callbacks);
	struct ha_scope_index *ix = ha_scopes_new();
	Dwfl_Module *mod;
	struct text t;

	cr_assert(dwfl && ix);
	dwfl_report_begin(dwfl);
	mod = dwfl_report_elf(dwfl, "m", path, -1, 0, true);
	dwfl_report_end(dwfl, NULL, NULL);
	cr_assert(mod, "cannot open %s", path);
	cr_assert(text_of(mod, &t), "no .text in %s", path);
	for (uint64_t a = t.start; a < t.end; a += stride) {
		Dwarf_Addr bias;
		Dwarf_Die *cu = dwfl_module_addrdie(mod, a, &bias);
		Dwarf_Die *scopes = NULL, found;
		int n, r;

		if (!cu)
			continue;
		n = dwarf_getscopes(cu, a - bias, &scopes);
		r = ha_scopes_innermost(ix, cu, a - bias, &found);
		(*compared)++;
		cr_assert_eq(n > 0, r == 1,
			     "%s+%#lx: dwarf_getscopes %d, scopes.c %d", path,
			     (unsigned long)a, n, r);
		if (n > 0) {
			(*inside)++;
			cr_assert_eq(dwarf_dieoffset(&scopes[0]),
				     dwarf_dieoffset(&found),
				     "%s+%#lx: DIE %#lx, scopes.c %#lx", path,
				     (unsigned long)a,
				     (unsigned long)dwarf_dieoffset(&scopes[0]),
				     (unsigned long)dwarf_dieoffset(&found));
		}
		free(scopes);
	}
	ha_scopes_free(ix);
	dwfl_end(dwfl);
}

Test(scopes, same_innermost_die_as_libdw_in_this_binary)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	unsigned compared = 0, inside = 0;

	cr_assert(n > 0);
	exe[n] = '\0';
	compare_module(exe, 3, &compared, &inside);
	cr_assert_gt(inside, 10000, "only %u of %u addresses inside a DIE",
		     inside, compared);
}

static int find_libc(struct dl_phdr_info *info, size_t size, void *arg)
{
	if (strstr(info->dlpi_name, LIBC_SO)) {
		snprintf(arg, PATH_MAX, "%s", info->dlpi_name);
		return 1;
	}
	return 0;
}

Test(scopes, same_innermost_die_as_libdw_in_libc)
{
	char libc[PATH_MAX] = "";
	unsigned compared = 0, inside = 0;

	dl_iterate_phdr(find_libc, libc);
	cr_assert(libc[0], "libc not mapped");
	compare_module(libc, 61, &compared, &inside);
	/* Without libc6-dbg there is no DWARF to compare: nothing to say. */
	if (compared == 0)
		cr_log_warn("no debug info for %s: not compared", libc);
}
