/*
 * analyzer/debuginfo.h - the libdwfl callbacks every reader of a module
 * file on disk uses (symbolize.c, tracer/faults.c): the file reported at
 * its own addresses, its separate debug info found on this machine.
 *
 * libdw's standard search ends, when nothing local matched, by dlopen'ing
 * libdebuginfod (and curl, gnutls, ... with it: ~10 ms) even when no
 * server is configured. Ours does the same local searches and asks
 * libdw's (debuginfod included) only when DEBUGINFOD_URLS names a server.
 */
#ifndef HALLOC_ANALYZER_DEBUGINFO_H
#define HALLOC_ANALYZER_DEBUGINFO_H

#include <elfutils/libdwfl.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

extern const Dwfl_Callbacks ha_dwfl_offline_callbacks;

/* The separate debug file the local search finds for the module file
 * `file_name` (build-id `bits`, or, when bits_len is 0, the debuglink's
 * `crc` of the whole candidate), before any plain copy: its descriptor,
 * and its path in *found (malloc'd); -1 when there is none. Opens
 * candidates and reads their notes, no debug section. */
int ha_debuginfo_find_local(const char *file_name, const char *debuglink,
			    const unsigned char *bits, int bits_len,
			    GElf_Word crc, char **found);

/* What elf's section headers say: whether a section is compressed, and
 * whether a dwz file is linked (.gnu_debugaltlink): answers that depend
 * on a third file. compressed may be NULL. False when they cannot be
 * read (neither is then known). */
bool ha_elf_sections(Elf *elf, bool *compressed, bool *altlink);
/* Whether the n bytes bits (a build-id; n <= 0: none) are hex, written in
 * lowercase digits. */
bool ha_build_id_is(const void *bits, ssize_t n, const char *hex);

/* The directory halloc's caches live in (HALLOC_CACHE_DIR, else
 * $XDG_CACHE_HOME/halloc, else ~/.cache/halloc); false when caching is
 * off (HALLOC_CACHE_DIR="") or no directory is known. */
bool ha_cache_dir(char *out, size_t n);
/* mkdir -p, private to the user as ~/.cache is. */
bool ha_make_dirs(char *path);
/* Whether name ends in suffix, after something (a cache file's name). */
bool ha_ends_with(const char *name, const char *suffix);

/* Days a file of the cache directory may go unused before it is removed
 * (analyzer/cache_prune.c). */
#define HA_CACHE_MAX_AGE 30
struct stat;
/* The cache file open at fd (its stat in *st) is used: noted in its time
 * of change, at most once a day. */
void ha_cache_used(int fd, const struct stat *st);
/* Removes what of the cache directory went unused for HA_CACHE_MAX_AGE
 * days: once a day at most, whichever run comes first. */
void ha_cache_prune(void);

#endif /* HALLOC_ANALYZER_DEBUGINFO_H */
