/*
 * tests/unit/analyzer_symtab.c - analyzer/symtab.c names, at every
 * address, the symbol dwfl_module_addrinfo names: over the text of this
 * test binary, of libc and of the loader (symbols with and without sizes,
 * aliases, weak and local ones, labels).
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

static void compare_module(const char *path, unsigned stride)
{
	Dwfl *dwfl = dwfl_begin(&ha_dwfl_offline_callbacks);
	struct ha_symtab_memo *m = ha_symtab_new();
	Dwfl_Module *mod;
	struct text t;
	unsigned named = 0;

	cr_assert(dwfl && m);
	dwfl_report_begin(dwfl);
	mod = dwfl_report_elf(dwfl, "m", path, -1, 0, true);
	dwfl_report_end(dwfl, NULL, NULL);
	cr_assert(mod, "cannot open %s", path);
	cr_assert(text_of(mod, &t), "no .text in %s", path);
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
	compare_module(exe, 13);
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

Test(symtab, same_names_as_libdw_in_libc_and_the_loader)
{
	struct lib libs[] = {{LIBC_SO, ""}, {"ld-linux", ""}};

	for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
		dl_iterate_phdr(find_lib, &libs[i]);
		cr_assert(libs[i].path[0], "%s not mapped", libs[i].soname);
		compare_module(libs[i].path, 89);
	}
}
