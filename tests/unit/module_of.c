/*
 * tests/unit/module_of.c - see module_of.h.
 */
#include <criterion/criterion.h>
#include <elf.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "module_of.h"

static void note_build_id(struct module *m, const struct dl_phdr_info *info,
			  const ElfW(Phdr) * ph)
{
	const unsigned char *p =
	    (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
	const unsigned char *end = p + ph->p_memsz;

	while (p + sizeof(ElfW(Nhdr)) <= end) {
		const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
		const unsigned char *name = p + sizeof(*n);
		const unsigned char *desc = name + ((n->n_namesz + 3) & ~3u);

		if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 &&
		    memcmp(name, "GNU", 4) == 0 &&
		    n->n_descsz <= sizeof(m->build_id)) {
			memcpy(m->build_id, desc, n->n_descsz);
			m->build_id_len = n->n_descsz;
		}
		p = desc + ((n->n_descsz + 3) & ~3u);
	}
}

static int find_module(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct module *m = arg;

	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uint64_t start = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type != PT_LOAD || m->addr < start ||
		    m->addr >= start + ph->p_memsz)
			continue;
		m->found = true;
		m->bias = info->dlpi_addr;
		m->start = start;
		m->size = ph->p_memsz;
		if (info->dlpi_name[0])
			snprintf(m->path, sizeof(m->path), "%s",
				 info->dlpi_name);
		else if (!realpath("/proc/self/exe", m->path))
			cr_assert_fail("realpath /proc/self/exe");
		for (int j = 0; j < info->dlpi_phnum; j++)
			if (info->dlpi_phdr[j].p_type == PT_NOTE)
				note_build_id(m, info, &info->dlpi_phdr[j]);
		return 1;
	}
	return 0;
}

struct module module_of(uintptr_t addr)
{
	struct module m = {.addr = addr};

	dl_iterate_phdr(find_module, &m);
	cr_assert(m.found, "no module holds %#lx", (unsigned long)addr);
	return m;
}
