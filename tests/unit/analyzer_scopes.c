/*
 * tests/unit/analyzer_scopes.c - the symbolizer's shortcuts give libdw's
 * answers: analyzer/scopes.c finds, at every address, the DIE
 * dwarf_getscopes finds first, and analyzer/symtab.c names the symbol
 * dwfl_module_addrinfo names; over the text of this test binary (-O2 -g:
 * inlined functions, lexical blocks), of libc (its separate debug file,
 * when installed) and of the loader (symbols with and without sizes,
 * aliases, weak and local ones).
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

/* The module file at path, opened alone as the symbolizer opens it, and
 * its text. */
static Dwfl_Module *open_module(Dwfl *dwfl, const char *path, struct text *t)
{
	Dwfl_Module *mod;

	dwfl_report_begin(dwfl);
	mod = dwfl_report_elf(dwfl, "m", path, -1, 0, true);
	dwfl_report_end(dwfl, NULL, NULL);
	cr_assert(mod, "cannot open %s", path);
	cr_assert(text_of(mod, t), "no .text in %s", path);
	return mod;
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
	mod = open_module(dwfl, path, &t);
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

struct lib {
	const char *soname;
	char path[PATH_MAX];
};

static int find_lib(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct lib *l = arg;

	if (strstr(info->dlpi_name, l->soname)) {
		snprintf(l->path, sizeof(l->path), "%s", info->dlpi_name);
		return 1;
	}
	return 0;
}

Test(scopes, same_innermost_die_as_libdw_in_libc)
{
	struct lib libc = {LIBC_SO, ""};
	unsigned compared = 0, inside = 0;

	dl_iterate_phdr(find_lib, &libc);
	cr_assert(libc.path[0], "libc not mapped");
	compare_module(libc.path, 61, &compared, &inside);
	/* Without libc6-dbg there is no DWARF to compare: nothing to say. */
	if (compared == 0)
		cr_log_warn("no debug info for %s: not compared", libc.path);
}

static void compare_names(const char *path, unsigned stride)
{
	Dwfl *dwfl = dwfl_begin(&ha_dwfl_offline_callbacks);
	struct ha_symtab_memo *m = ha_symtab_new();
	Dwfl_Module *mod;
	struct text t;
	unsigned named = 0;

	cr_assert(dwfl && m);
	mod = open_module(dwfl, path, &t);
	/* Below and past the text too: addresses no symbol covers. */
	for (uint64_t a = t.start > 4096 ? t.start - 4096 : 0;
	     a < t.end + 4096; a += stride) {
		GElf_Off off;
		GElf_Sym sym;
		const char *want = dwfl_module_addrinfo(mod, a, &off, &sym,
							 NULL, NULL, NULL);
		const char *got = ha_symtab_name(m, mod, a);

		cr_assert(want == got || (want && got && !strcmp(want, got)),
			  "%s+%#lx: libdw says %s, symtab.c %s", path,
			  (unsigned long)a, want ? want : "(none)",
			  got ? got : "(none)");
		named += want != NULL;
	}
	cr_assert_gt(named, 100, "%s: only %u addresses named", path, named);
	ha_symtab_free(m);
	dwfl_end(dwfl);
}

Test(symtab, same_names_as_libdw_in_this_binary)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	cr_assert(n > 0);
	exe[n] = '\0';
	compare_names(exe, 13);
}

Test(symtab, same_names_as_libdw_in_libc_and_the_loader)
{
	struct lib libs[] = {{LIBC_SO, ""}, {"ld-linux", ""}};

	for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
		dl_iterate_phdr(find_lib, &libs[i]);
		cr_assert(libs[i].path[0], "%s not mapped", libs[i].soname);
		compare_names(libs[i].path, 89);
	}
}
