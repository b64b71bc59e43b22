/*
 * analyzer/symcache.h - symbolized addresses kept on disk between runs
 * (symcache.c), one file per module file and key, in the format
 * symcache_file.c reads and writes. Internal to the analyzer.
 *
 * Symbolizing is a function of the module file, its debug file and the
 * symbolizer (halloc and the libraries it runs with): a cache file's key
 * names all three, so an answer read back is the one symbolizing would
 * give now. A file that does not read whole, or was made for another key,
 * is not used.
 */
#ifndef HALLOC_ANALYZER_SYMCACHE_H
#define HALLOC_ANALYZER_SYMCACHE_H

#include "analyzer/model.h"
#include "halloc/log.h"

/* ---- the file (symcache_file.c) ------------------------------------------
 *
 * Little-endian, every count checked against the file's size:
 *   0  "HASYMC\r\n"  magic
 *   8  u32 version (1)
 *  12  u32 key bytes       16 u32 string bytes
 *  20  u32 entries         24 u32 frames
 *  28  u32 CRC-32 of the file but these 4 bytes
 *  32  key; strings (NUL-terminated, the last byte a NUL); entries
 *      (u64 offset, u32 first frame, u32 frames), strictly ascending
 *      offsets; frames (u32 function, u32 file: byte offsets in the
 *      strings; u32 line, u32 column).
 */

/* Past this a cache file is neither read nor written bigger. */
#define HA_SYMFILE_MAX (16u << 20)

/* A cache file read whole and checked; strings point into it. */
struct ha_symfile {
	unsigned char *data;
	size_t len;
	const char *strings;
	uint32_t strings_len, nentries, nframes;
	const unsigned char *entries, *frames;
};

/* Answers to write: entries[i] is frames syms[first, +n) at offset. */
struct ha_symlist_entry {
	uint64_t offset;
	uint32_t first, n;
};
struct ha_symlist {
	struct ha_symlist_entry *entries;
	size_t n, cap;
	struct ha_sym *syms;
	size_t nsyms, syms_cap;
};

/* True when the file at path reads whole and was made for `key`; false
 * (f empty) when it is absent, unreadable, corrupt, cut short, too big,
 * made for another key, or memory ran out. */
bool ha_symfile_load(struct ha_symfile *f, const char *path, const char *key);
/* The answer for offset: true and out[0, *n) (strings in f's memory; *n
 * may be 0: symbolizing found nothing), or false: not in the file. */
bool ha_symfile_find(const struct ha_symfile *f, uint64_t offset,
		     struct ha_sym out[HALLOC_DEPTH_MAX], uint32_t *n);
void ha_symfile_free(struct ha_symfile *f);

/* False on no memory (l unchanged). At most HALLOC_DEPTH_MAX frames. */
bool ha_symlist_add(struct ha_symlist *l, uint64_t offset,
		    const struct ha_sym *syms, uint32_t n);
void ha_symlist_free(struct ha_symlist *l);

/* Writes `fresh` and the entries of `old` (may be NULL) at other
 * offsets, up to HA_SYMFILE_MAX bytes (fresh ones first), to `path`
 * through a temporary file beside it renamed into place: a reader sees
 * the old file or the new one, whole. False when nothing was written. */
bool ha_symfile_save(const char *path, const char *key,
		     const struct ha_symfile *old,
		     const struct ha_symlist *fresh);

/* ---- the cache (symcache.c) ---------------------------------------------- */

struct ha_symcache;

/* NULL when there is no cache: HALLOC_CACHE_DIR is empty, no directory
 * is known, DEBUGINFOD_URLS names a server (debug files may come and go
 * there), or the symbolizer cannot be named (a library without a
 * build-id), or no memory. */
struct ha_symcache *ha_symcache_new(void);
void ha_symcache_free(struct ha_symcache *c);

/* What the cache knows of (modfile, offset): 1 and out[0, *n) with
 * strings interned in log (*n may be 0: symbolizing found nothing);
 * 0 not known; -1 no memory. The first question about a module file
 * works out its key (stats, ELF notes, its debuglink) and reads its
 * cache file; no debug section is read. */
int ha_symcache_lookup(struct ha_symcache *c, struct ha_log *log,
		       uint32_t modfile, uint64_t offset,
		       struct ha_sym out[HALLOC_DEPTH_MAX], uint32_t *n);
/* Notes what symbolizing (modfile, offset) gave, for ha_symcache_save;
 * nothing when the module file has no key. False on no memory. */
bool ha_symcache_add(struct ha_symcache *c, const struct ha_log *log,
		     uint32_t modfile, uint64_t offset,
		     const struct ha_sym *syms, uint32_t n);
/* Writes the file of every module file that gained answers. With
 * HALLOC_SYMCACHE_STATS set (for tests), appends to that file a line
 * "opened N answered N symbolized N": module files the caller opened,
 * answers the cache gave, answers symbolizing gave. */
void ha_symcache_save(struct ha_symcache *c, unsigned modules_opened);

#endif /* HALLOC_ANALYZER_SYMCACHE_H */
