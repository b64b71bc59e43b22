/*
 * analyzer/symbolize.c - locations to function, file and line, from the
 * binaries on disk with libdw (elfutils), inlined frames included.
 *
 * Each module file gets its own Dwfl, reported at base 0 with its
 * p_vaddr kept, so an address in it is just the location's offset (the
 * recorded address minus 1 minus the load bias). Separate debug info is
 * found as libdw does (debuginfo.c): the build-id under /usr/lib/debug,
 * then .gnu_debuglink. A file whose build-id differs from the recorded one is a
 * different binary: it is not used, rather than giving wrong lines.
 *
 * Inlined frames are found like `eu-addr2line -i`: the scopes around the
 * address, innermost first; each DW_TAG_inlined_subroutine is a frame
 * whose caller's line is its DW_AT_call_file/DW_AT_call_line.
 */
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyzer/debuginfo.h"
#include "analyzer/model.h"
#include "analyzer/symbolize.h"
#include "analyzer/symcache.h"
#include "halloc/log.h"

char *__cxa_demangle(const char *mangled, char *out, size_t *len, int *status);

struct ha_module_syms {
	Dwfl *dwfl;
	Dwfl_Module *mod;
	struct ha_scope_index *scopes; /* NULL: ask dwarf_getscopes */
	struct ha_symtab_memo *names;  /* NULL: ask dwfl_module_addrinfo */
	bool tried;
};

struct symbolizer {
	struct ha_log *log;
	struct ha_module_cache *cache;
	struct ha_sym frames[HALLOC_DEPTH_MAX];
	uint32_t nframes;
};

static bool build_id_matches(Dwfl_Module *mod, const char *want_hex)
{
	const unsigned char *bits;
	GElf_Addr vaddr;
	int n;

	if (!*want_hex)
		return true; /* nothing recorded to compare */
	n = dwfl_module_build_id(mod, &bits, &vaddr);
	return ha_build_id_is(bits, n, want_hex);
}

Dwfl_Module *ha_module_cache_open(struct ha_module_cache *cache,
				  const struct ha_log *log, uint32_t modfile)
{
	struct ha_module_syms *ms;
	const struct ha_modfile *mf = &log->modfiles[modfile];

	if (modfile >= cache->n) {
		size_t cap = cache->n;

		if (!HA_RESERVE(cache->mods, cap, log->nmodfiles))
			return NULL;
		memset(cache->mods + cache->n, 0,
		       (cap - cache->n) * sizeof(*cache->mods));
		cache->n = cap;
	}
	ms = &cache->mods[modfile];
	if (ms->tried)
		return ms->mod;
	ms->tried = true;
	if (mf->path[0] != '/' || access(mf->path, R_OK) != 0)
		return NULL;
	ms->dwfl = dwfl_begin(&ha_dwfl_offline_callbacks);
	if (!ms->dwfl)
		return NULL;
	cache->opened++;
	dwfl_report_begin(ms->dwfl);
	ms->mod = dwfl_report_elf(ms->dwfl, ha_basename(mf->path), mf->path, -1,
				  0, true);
	dwfl_report_end(ms->dwfl, NULL, NULL);
	if (ms->mod && !build_id_matches(ms->mod, mf->build_id))
		ms->mod = NULL;
	if (ms->mod) {
		ms->scopes = ha_scopes_new();
		ms->names = ha_symtab_new();
	}
	return ms->mod;
}

void ha_module_cache_free(struct ha_module_cache *cache)
{
	for (size_t i = 0; i < cache->n; i++) {
		if (cache->mods[i].dwfl)
			dwfl_end(cache->mods[i].dwfl);
		ha_scopes_free(cache->mods[i].scopes);
		ha_symtab_free(cache->mods[i].names);
	}
	free(cache->mods);
	free(cache->pre);
	free(cache->syms);
	ha_map_free(&cache->pre_index);
	ha_symcache_free(cache->disk);
	memset(cache, 0, sizeof(*cache));
}

static uint64_t pre_key(uint32_t modfile, uint64_t offset)
{
	return ha_hash64(offset) ^ ha_hash64((uint64_t)modfile + 1);
}

static const struct ha_presym *pre_find(const struct ha_module_cache *cache,
					uint32_t modfile, uint64_t offset)
{
	uint32_t i = ha_map_get(&cache->pre_index, pre_key(modfile, offset));

	if (i == HA_NONE || cache->pre[i].modfile != modfile ||
	    cache->pre[i].offset != offset)
		return NULL;
	return &cache->pre[i];
}

static const char *intern(struct symbolizer *z, const char *s)
{
	return ha_intern_str(&z->log->strings, s ? s : "");
}

/* Mangled C++ names are shown demangled, as a developer writes them. */
static const char *function_name(struct symbolizer *z, const char *name)
{
	const char *res;
	char *plain;
	int status = -1;

	if (!name || strncmp(name, "_Z", 2) != 0)
		return intern(z, name);
	plain = __cxa_demangle(name, NULL, NULL, &status);
	if (!plain || status != 0) {
		free(plain);
		return intern(z, name);
	}
	res = intern(z, plain);
	free(plain);
	return res;
}

/* An ELF symbol's name, without its version ("memcpy@@GLIBC_2.14"). */
static const char *symbol_name(struct symbolizer *z, const char *name)
{
	const char *at = name ? strchr(name, '@') : NULL;
	char *bare;
	const char *res;

	if (!at)
		return function_name(z, name);
	bare = strndup(name, (size_t)(at - name));
	if (!bare)
		return NULL;
	res = function_name(z, bare);
	free(bare);
	return res;
}

/* A DIE's name: the linkage name when it has one (it says which overload
 * or class), else its plain name; both looked up through abstract_origin
 * and specification. */
static const char *die_name(struct symbolizer *z, Dwarf_Die *die)
{
	Dwarf_Attribute attr;
	const char *name;

	name = dwarf_formstring(
	    dwarf_attr_integrate(die, DW_AT_linkage_name, &attr));
	if (!name)
		name = dwarf_formstring(
		    dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &attr));
	if (!name)
		name = dwarf_diename(die);
	return function_name(z, name);
}

/* "./csu/../sysdeps/x.h" -> "sysdeps/x.h": without "." and "dir/.."
 * components; a ".." that has nothing before it to remove is kept. */
static void clean_path(char *out, const char *path)
{
	char *base = out + (*path == '/'), *o = base;
	unsigned removable = 0; /* components in out that ".." may remove */

	if (*path == '/')
		*out = '/';
	while (*path) {
		size_t n = strcspn(path, "/");

		if (n == 2 && path[0] == '.' && path[1] == '.' && removable) {
			while (o > base && o[-1] != '/')
				o--;
			if (o > base)
				o--;
			removable--;
		} else if (n > 0 && !(n == 1 && path[0] == '.') &&
			   !(n == 2 && path[0] == '.' && path[1] == '.' &&
			     base > out)) {
			if (o > base)
				*o++ = '/';
			memcpy(o, path, n);
			o += n;
			if (!(n == 2 && path[0] == '.' && path[1] == '.'))
				removable++;
		}
		path += n;
		while (*path == '/')
			path++;
	}
	*o = '\0';
}

/*
 * A source path: libdw joins a file with its line-table directory, which
 * may itself be relative to the compilation directory ("examples"), so a
 * relative result is joined with an absolute compilation directory. A
 * relative one (a build that mapped it away, like Debian's glibc:
 * "./string") cannot help: the path stays relative.
 */
static const char *source_path(struct symbolizer *z, const char *file,
			       const char *comp_dir)
{
	const char *res;
	char *joined, *clean;

	if (!file || !*file)
		return intern(z, "");
	if (file[0] != '/' && comp_dir && comp_dir[0] == '/') {
		if (asprintf(&joined, "%s/%s", comp_dir, file) < 0)
			return NULL;
	} else if (!(joined = strdup(file))) {
		return NULL;
	}
	clean = malloc(strlen(joined) + 1);
	if (clean) {
		clean_path(clean, joined);
		res = intern(z, *clean ? clean : joined);
	}
	free(clean);
	free(joined);
	return clean ? res : NULL;
}

static const char *cu_comp_dir(Dwarf_Die *die)
{
	Dwarf_Die cu;
	Dwarf_Attribute attr;

	if (!dwarf_diecu(die, &cu, NULL, NULL))
		return NULL;
	return dwarf_formstring(dwarf_attr(&cu, DW_AT_comp_dir, &attr));
}

static bool push_frame(struct symbolizer *z, const char *function,
		       const char *file, uint32_t line, uint32_t column)
{
	struct ha_sym *s;

	if (!function || !file)
		return false;
	if (z->nframes >= HALLOC_DEPTH_MAX)
		return true; /* deeper inlining than anyone reads */
	s = &z->frames[z->nframes++];
	s->function = function;
	s->file = file;
	s->line = line;
	s->column = column;
	return true;
}

/*
 * The DIEs that contain die, die first, out to the root of its unit: what
 * dwarf_getscopes_die returns. That walks the unit in order until it
 * meets die, which in a big unit (CPython's ceval.c) is most of it for
 * every address; here, from the root down, each level's child whose
 * subtree holds die's offset (a DIE's subtree spans the offsets up to its
 * next sibling's), so only the siblings before the path are passed, most
 * in one step each (DW_AT_sibling). -1 when die is not found (no memory,
 * or bad DWARF).
 */
static int path_to_die(struct ha_scope_index *ix, Dwarf_Die *die,
		       Dwarf_Die **out)
{
	Dwarf_Off target = dwarf_dieoffset(die);
	Dwarf_Die cur, child, next, *chain = NULL, *grown;
	size_t n = 0, cap = 0;
	bool top = true;

	*out = NULL;
	if (!dwarf_diecu(die, &cur, NULL, NULL))
		return -1;
	for (;; top = false) {
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			grown = realloc(chain, cap * sizeof(*chain));
			if (!grown)
				goto fail;
			chain = grown;
		}
		chain[n++] = cur;
		if (dwarf_dieoffset(&cur) == target)
			break;
		/* A unit's top level is wide: its children are indexed. */
		if (top && ix) {
			int found = ha_scopes_top_child(ix, &cur, target, &child);

			if (found < 0)
				goto fail;
			if (found > 0) {
				cur = child;
				continue;
			}
		}
		if (dwarf_child(&cur, &child) != 0 ||
		    dwarf_dieoffset(&child) > target)
			goto fail;
		while (dwarf_siblingof(&child, &next) == 0 &&
		       dwarf_dieoffset(&next) <= target)
			child = next;
		cur = child;
	}
	/* Innermost first, as dwarf_getscopes_die gives them. */
	for (size_t i = 0; i < n / 2; i++) {
		Dwarf_Die t = chain[i];

		chain[i] = chain[n - 1 - i];
		chain[n - 1 - i] = t;
	}
	*out = chain;
	return (int)n;
fail:
	free(chain);
	return -1;
}

/* The scopes at addr, from the innermost DIE outwards through the real
 * nesting (eu-addr2line's way: dwarf_getscopes alone continues into the
 * abstract definition of an inlined function). */
static int scopes_at(Dwfl_Module *mod, struct ha_scope_index *ix,
		     Dwarf_Die *cudie, Dwarf_Addr addr, Dwarf_Die **scopes)
{
	Dwarf_Die innermost, found;
	Dwarf_Addr bias;
	Dwarf *dwarf;
	int n;

	*scopes = NULL;
	/* The same innermost DIE as dwarf_getscopes, found faster. */
	n = ix ? ha_scopes_innermost(ix, cudie, addr, &found) : -1;
	if (n == 0)
		return 0;
	dwarf = dwfl_module_getdwarf(mod, &bias);
	if (n > 0 && dwarf &&
	    dwarf_offdie(dwarf, dwarf_dieoffset(&found), &innermost))
		return path_to_die(ix, &innermost, scopes);
	n = dwarf_getscopes(cudie, addr, scopes);

	if (n <= 0)
		return n;
	dwarf = dwfl_module_getdwarf(mod, &bias);
	if (!dwarf ||
	    !dwarf_offdie(dwarf, dwarf_dieoffset(&(*scopes)[0]), &innermost)) {
		return n;
	}
	free(*scopes);
	*scopes = NULL;
	return path_to_die(ix, &innermost, scopes);
}

/* Fills z->frames for one address. False on no memory. */
static bool symbolize_address(struct symbolizer *z,
			      struct ha_module_syms *ms, GElf_Addr addr)
{
	Dwfl_Module *mod = ms->mod;
	struct ha_scope_index *ix = ms->scopes;
	const char *symname = ha_symtab_name(ms->names, mod, addr);
	Dwarf_Addr bias = 0;
	Dwarf_Die *cudie = dwfl_module_addrdie(mod, addr, &bias);
	Dwarf_Die *scopes = NULL;
	Dwfl_Line *line;
	const char *file = NULL;
	int lineno = 0, col = 0, n;
	uint32_t cur_line, cur_col;
	const char *cur_file;
	bool ok = true, outer_done = false;

	z->nframes = 0;
	if (!cudie) {
		/* No debug info: the ELF symbol is all there is. */
		return !symname || push_frame(z, symbol_name(z, symname),
					      intern(z, ""), 0, 0);
	}
	line = dwfl_module_getsrc(mod, addr);
	if (line)
		file = dwfl_lineinfo(line, NULL, &lineno, &col, NULL, NULL);
	cur_file = source_path(z, file, line ? dwfl_line_comp_dir(line) : NULL);
	cur_line = lineno > 0 ? (uint32_t)lineno : 0;
	cur_col = col > 0 ? (uint32_t)col : 0;

	n = scopes_at(mod, ix, cudie, addr - bias, &scopes);
	for (int i = 0; ok && i < n && !outer_done; i++) {
		Dwarf_Die *die = &scopes[i];
		Dwarf_Attribute attr;
		Dwarf_Word val;
		Dwarf_Files *files;
		Dwarf_Die cu;

		switch (dwarf_tag(die)) {
		case DW_TAG_inlined_subroutine:
			ok = push_frame(z, die_name(z, die), cur_file, cur_line,
					cur_col);
			/* The caller's position is where this was inlined. */
			cur_file = intern(z, "");
			cur_line = cur_col = 0;
			if (dwarf_formudata(
				dwarf_attr(die, DW_AT_call_file, &attr),
				&val) == 0 &&
			    dwarf_diecu(die, &cu, NULL, NULL) &&
			    dwarf_getsrcfiles(&cu, &files, NULL) == 0)
				cur_file = source_path(
				    z, dwarf_filesrc(files, val, NULL, NULL),
				    cu_comp_dir(die));
			if (dwarf_formudata(
				dwarf_attr(die, DW_AT_call_line, &attr),
				&val) == 0)
				cur_line = (uint32_t)val;
			if (dwarf_formudata(
				dwarf_attr(die, DW_AT_call_column, &attr),
				&val) == 0)
				cur_col = (uint32_t)val;
			ok = ok && cur_file;
			break;
		case DW_TAG_subprogram:
		case DW_TAG_entry_point:
			/* The symbol table names the real function (the name
			 * a debugger shows); the DIE when it has none. */
			ok = push_frame(z,
					symname ? symbol_name(z, symname)
						: die_name(z, die),
					cur_file, cur_line, cur_col);
			outer_done = true;
			break;
		default:
			break;
		}
	}
	free(scopes);
	if (ok && !outer_done)
		ok = push_frame(z, symbol_name(z, symname), cur_file, cur_line,
				cur_col);
	return ok;
}

/* What (modfile, offset) gives, in z->frames: from the symbol cache, or
 * symbolized (and noted for the cache). 1 done, 0 the module file cannot
 * be read, -1 no memory. */
static int symbolize(struct symbolizer *z, uint32_t modfile, uint64_t offset)
{
	struct ha_module_cache *cache = z->cache;
	int known;

	if (!cache->disk_tried) {
		cache->disk_tried = true;
		cache->disk = ha_symcache_new();
	}
	known = ha_symcache_lookup(cache->disk, z->log, modfile, offset,
				   z->frames, &z->nframes);
	if (known != 0)
		return known;
	if (!ha_module_cache_open(cache, z->log, modfile))
		return 0;
	if (!symbolize_address(z, &cache->mods[modfile], offset) ||
	    !ha_symcache_add(cache->disk, z->log, modfile, offset, z->frames,
			     z->nframes))
		return -1;
	return 1;
}

bool ha_module_cache_presymbolize(struct ha_module_cache *cache,
				  struct ha_log *log, uint32_t modfile,
				  uint64_t offset)
{
	uint64_t key = pre_key(modfile, offset);
	struct symbolizer *z;
	struct ha_presym *p;
	int done;
	bool ok;

	/* Taken already, or its hash is (a rare clash: the final pass
	 * symbolizes that one itself). */
	if (ha_map_get(&cache->pre_index, key) != HA_NONE)
		return true;
	if (!(z = calloc(1, sizeof(*z))))
		return false;
	z->log = log;
	z->cache = cache;
	done = symbolize(z, modfile, offset);
	ok = done >= 0;
	if (done > 0 &&
	    (ok = HA_RESERVE(cache->pre, cache->pre_cap, cache->npre + 1) &&
		  HA_RESERVE(cache->syms, cache->syms_cap,
			     cache->nsyms + z->nframes) &&
		  ha_map_put(&cache->pre_index, key, (uint32_t)cache->npre))) {
		p = &cache->pre[cache->npre++];
		p->offset = offset;
		p->modfile = modfile;
		p->first = (uint32_t)cache->nsyms;
		p->n = z->nframes;
		memcpy(cache->syms + cache->nsyms, z->frames,
		       z->nframes * sizeof(*z->frames));
		cache->nsyms += z->nframes;
	}
	free(z);
	return ok;
}

enum ha_result ha_symbolize_cached(struct ha_log *log,
				   struct ha_module_cache *cache)
{
	struct symbolizer *z = calloc(1, sizeof(*z));
	enum ha_result res = HA_OK;

	if (!z)
		return HA_ERR_NOMEM;
	z->log = log;
	z->cache = cache;
	for (size_t i = 0; i < log->nlocs && res == HA_OK; i++) {
		struct ha_loc *loc = &log->locs[i];
		const struct ha_presym *pre;
		const struct ha_sym *syms = z->frames;
		uint32_t n;
		int done;

		if (loc->state != HA_LOC_PENDING)
			continue;
		if (!loc->modfile) {
			loc->state = HA_LOC_UNKNOWN;
			continue;
		}
		pre = pre_find(cache, loc->modfile, loc->offset);
		if (pre) {
			syms = cache->syms + pre->first;
			n = pre->n;
		} else {
			done = symbolize(z, loc->modfile, loc->offset);
			if (done < 0) {
				res = HA_ERR_NOMEM;
				break;
			}
			n = done ? z->nframes : 0;
		}
		if (n == 0)
			loc->state = HA_LOC_UNKNOWN;
		else if (!ha_log_set_syms(log, (uint32_t)i, syms, n,
					  HA_LOC_FROM_FILE))
			res = HA_ERR_NOMEM;
	}
	free(z);
	ha_symcache_save(cache->disk, cache->opened);
	return res;
}

enum ha_result ha_symbolize_from_files(struct ha_log *log)
{
	struct ha_module_cache cache = {0};
	enum ha_result res = ha_symbolize_cached(log, &cache);

	ha_module_cache_free(&cache);
	return res;
}
