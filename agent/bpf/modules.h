/*
 * agent/bpf/modules.h - the ELF files a target maps, from /proc/PID/maps:
 * where each is loaded (the bias the log's MODULE_LOAD records carry),
 * which of them hold the allocator, and which module an address is in.
 * Internal to agent/bpf/.
 *
 * A module is one file loaded at one bias. The table only grows while a
 * process image lives: a rescan adds what was mapped since (dlopen), and
 * an address keeps resolving to the module it was recorded in.
 * Files are opened through /proc/PID/map_files (the very file mapped,
 * even if replaced on disk since) or else /proc/PID/root/PATH, so a
 * process in another mount namespace works.
 */
#ifndef HALLOC_AGENT_BPF_MODULES_H
#define HALLOC_AGENT_BPF_MODULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <elfutils/libdw.h>
#include <gelf.h>

#include "agent/bpf/log_writer.h"

/* The allocation functions probed, in enum halloc_alloc_fn order, then
 * free (at index HB_FUNC_FREE). */
#define HB_NFUNCS    10
#define HB_FUNC_FREE 9
extern const char *const hb_alloc_functions[HB_NFUNCS];

struct hb_module {
	char *path;	 /* as the target sees it */
	char *open_path; /* how we open it */
	dev_t dev;
	ino_t ino;
	uint64_t bias;
	unsigned char build_id[64];
	size_t build_id_len;
	struct hb_segment segments[16];
	unsigned nsegments;
	uint32_t log_id; /* MODULE_LOAD written with this id; 0: not yet */
	int fd;		 /* -1 until the ELF is needed again */
	Elf *elf;
	Dwarf_CFI *cfi; /* .eh_frame, for DWARF unwinding */
	bool elf_tried, cfi_tried;
};

/* An executable mapping, for looking up code addresses. */
struct hb_mapping {
	uint64_t start, end;
	size_t module;
};

struct hb_modules {
	pid_t pid;     /* 0: our own view of paths (before exec) */
	char root[64]; /* "/proc/PID/root", "" for our own maps */
	struct hb_module *mods;
	size_t nmods, mods_cap;
	struct hb_mapping *maps; /* sorted by start */
	size_t nmaps, maps_cap;
};

void hb_modules_init(struct hb_modules *m, pid_t pid);
void hb_modules_free(struct hb_modules *m);

/* Reads /proc/PID/maps and adds what is new. Returns the number of
 * modules added, or -errno (ESRCH: the process is gone). */
int hb_modules_scan(struct hb_modules *m);

/* The module whose executable mapping holds addr, or NULL. */
struct hb_module *hb_modules_find(struct hb_modules *m, uint64_t addr);

/* The module's ELF, opened on first use; NULL if it cannot be read. */
Elf *hb_module_elf(struct hb_module *mod);

/*
 * File offsets (what a uprobe is attached at) of the allocation functions
 * the ELF file at `path` defines, by hb_alloc_functions index; 0 where it
 * does not. Returns how many it defines, -errno if it cannot be read.
 * Functions at the same address as an earlier one (aligned_alloc and
 * memalign in glibc) get 0: one probe per address. *free_skip: how many
 * bytes past free's entry its probe goes (see free_probe_skip).
 */
int hb_elf_alloc_offsets(const char *path, uint64_t offsets[HB_NFUNCS],
			 unsigned *free_skip);

/* The address range of glibc's tcache_thread_shutdown in a static,
 * non-PIE executable (from .symtab), or false. */
bool hb_elf_internal_free_range(const char *path, uint64_t range[2]);

/* 1 if the file at `path` is a dynamically linked ELF (has PT_INTERP),
 * 0 if a static one, -1 if not ELF (a script). */
int hb_elf_dynamic(const char *path);

#endif /* HALLOC_AGENT_BPF_MODULES_H */
