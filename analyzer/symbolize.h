/*
 * analyzer/symbolize.h - the module files symbolize.c opens, kept open
 * across calls, so a recording's files can be opened while it runs
 * (symbols_feed.c) and its end-of-run pass finds them ready. Internal to
 * the analyzer.
 *
 * A cache serves one log: it is indexed by that log's modfile numbers.
 * One thread at a time uses a cache (libdw's Dwfl is not thread-safe).
 */
#ifndef HALLOC_ANALYZER_SYMBOLIZE_H
#define HALLOC_ANALYZER_SYMBOLIZE_H

#include <elfutils/libdwfl.h>

#include "analyzer/model.h"

struct ha_module_syms;
struct ha_symcache;

/* scopes.c: per module file, the top level of each unit indexed by the
 * ranges of its children. One thread at a time, as the cache. */
struct ha_scope_index;
struct ha_scope_index *ha_scopes_new(void);
void ha_scopes_free(struct ha_scope_index *ix);
/* The innermost DIE whose ranges hold pc, below the unit DIE `unit`: the
 * DIE dwarf_getscopes would give first. 1 found, 0 none, -1 no memory or
 * bad DWARF. */
int ha_scopes_innermost(struct ha_scope_index *ix, Dwarf_Die *unit,
			Dwarf_Addr pc, Dwarf_Die *out);
/* The child of `unit` whose subtree holds the DIE at offset target. 1
 * found, 0 target is not below a child, -1 no memory or bad DWARF. */
int ha_scopes_top_child(struct ha_scope_index *ix, Dwarf_Die *unit,
			Dwarf_Off target, Dwarf_Die *out);

/* symtab.c: per module file, dwfl_module_addrinfo's answers by stretch
 * of addresses where they cannot change. One thread at a time. */
struct ha_symtab_memo;
struct ha_symtab_memo *ha_symtab_new(void);
void ha_symtab_free(struct ha_symtab_memo *m);
/* What dwfl_module_addrinfo(mod, addr) names (m may be NULL). */
const char *ha_symtab_name(struct ha_symtab_memo *m, Dwfl_Module *mod,
			   GElf_Addr addr);

/* An address symbolized ahead of the final pass: syms[first, +n). */
struct ha_presym {
	uint64_t offset;
	uint32_t modfile, first, n;
};

struct ha_module_cache {
	struct ha_module_syms *mods; /* by modfile */
	size_t n;
	/* Addresses symbolized while the program ran (symbols_feed.c);
	 * symbolizing is a function of (modfile, offset), so the final
	 * pass takes these as they are. Strings are the log's. */
	struct ha_presym *pre;
	size_t npre, pre_cap;
	struct ha_map pre_index; /* hash of (modfile, offset) -> pre */
	struct ha_sym *syms;
	size_t nsyms, syms_cap;
	/* Answers of earlier runs (symcache.h); made on first use. */
	struct ha_symcache *disk;
	bool disk_tried;
	unsigned opened; /* module files opened with libdw */
};

/* The module file, opened on first use (NULL: unreadable, or not the
 * recorded build-id; asked once). */
Dwfl_Module *ha_module_cache_open(struct ha_module_cache *cache,
				  const struct ha_log *log, uint32_t modfile);
void ha_module_cache_free(struct ha_module_cache *cache);
/* Symbolizes (modfile, offset) now, for ha_symbolize_cached to find:
 * from the symbol cache when it knows the answer, else from the module
 * file (opened, its debug info read, on first use). False on no memory. */
bool ha_module_cache_presymbolize(struct ha_module_cache *cache,
				  struct ha_log *log, uint32_t modfile,
				  uint64_t offset);

/* ha_symbolize_from_files with the files in `cache` (filled as needed);
 * what symbolizing gave goes to the symbol cache. */
enum ha_result ha_symbolize_cached(struct ha_log *log,
				   struct ha_module_cache *cache);

/* analysis.c: appends SYMBOLS frames for every location symbolized
 * from files to the log at `path`, compressed if the file is. */
enum ha_result ha_symbols_append_file(struct ha_log *log, const char *path,
				      struct ha_diag *diag);

#endif /* HALLOC_ANALYZER_SYMBOLIZE_H */
