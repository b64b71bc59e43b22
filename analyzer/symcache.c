/*
 * analyzer/symcache.c - the symbol cache: what symbolizing a module
 * file's addresses gave, kept in the cache directory between runs
 * (symcache.h), so that a program traced again and again does not have
 * its module files' debug info read each time.
 *
 * $HALLOC_CACHE_DIR/symbols/<build-id>/<key hash>.sym, where the key is
 * the text of everything the answers depend on:
 *   - the module file: the build-id the log recorded (it must be the
 *     file's), its path, device, inode, size and times of change;
 *   - its separate debug file, found as debuginfo.c finds it (stats and
 *     ELF notes; no debug section is read): path, device, inode, size and
 *     times, or "none" (a -dbg package installed later changes the key);
 *   - the symbolizer: the build-ids of every object loaded in this
 *     process (halloc itself, libdw, libelf, the C++ demangler...), so a
 *     rebuilt or upgraded halloc never reads an old answer.
 * A module file or debug file that names a dwz file (.gnu_debugaltlink)
 * has no key: the answers would depend on a third file. A module's
 * directory keeps its 8 newest files (halloc-trace and halloc-report,
 * each build, have their own).
 */
#include <dirent.h>
#include <elfutils/libdwelf.h>
#include <fcntl.h>
#include <gelf.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "analyzer/debuginfo.h"
#include "analyzer/symcache.h"

/* Cache files kept per module build-id besides the one just written. */
#define KEEP_OTHERS 7
/* A temporary file this old was left by a writer that died. */
#define STALE_TMP_SECONDS 3600

struct module {
	bool tried;
	char *key;		/* NULL: no cache for this module file */
	char *path;		/* its cache file */
	struct ha_symfile file; /* empty: none was read */
	struct ha_symlist fresh;
	size_t saved; /* fresh entries written already */
};

struct ha_symcache {
	char dir[4096]; /* .../symbols */
	uint64_t symbolizer;
	struct module *mods; /* by modfile */
	size_t n;
	unsigned answered, added;
};

/* ---- naming the symbolizer ------------------------------------------------
 */

struct loaded {
	uint64_t hash;
	bool unnamed; /* an object without a build-id */
};

static bool note_build_id(const unsigned char *p, const unsigned char *end,
			  uint64_t *hash)
{
	while (p + sizeof(ElfW(Nhdr)) <= end) {
		const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
		const unsigned char *name = p + sizeof(*n);
		const unsigned char *desc = name + ((n->n_namesz + 3) & ~3u);

		if (desc + n->n_descsz > end)
			return false;
		if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 &&
		    memcmp(name, "GNU", 4) == 0 && n->n_descsz > 0) {
			*hash =
			    ha_hash_bytes(desc, n->n_descsz) ^ ha_hash64(*hash);
			return true;
		}
		p = desc + ((n->n_descsz + 3) & ~3u);
	}
	return false;
}

static int each_object(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct loaded *l = arg;

	/* The kernel's vDSO symbolizes nothing. */
	if (info->dlpi_name && strncmp(info->dlpi_name, "linux-", 6) == 0)
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		const unsigned char *p =
		    (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);

		if (ph->p_type == PT_NOTE &&
		    note_build_id(p, p + ph->p_memsz, &l->hash))
			return 0;
	}
	l->unnamed = true;
	return 0;
}

/* ---- a module file's key ---------------------------------------------------
 */

static bool hex_build_id(const char *s)
{
	size_t n = strspn(s, "0123456789abcdef");

	return n >= 2 && n <= 128 && n % 2 == 0 && s[n] == '\0';
}

/* No key for a file whose answers would depend on a dwz file, nor for
 * one whose sections cannot be read. */
static bool has_altlink(Elf *elf)
{
	bool altlink;

	return !ha_elf_sections(elf, NULL, &altlink) || altlink;
}

static void identity(char *out, size_t n, const char *path,
		     const struct stat *st)
{
	snprintf(out, n, "%s %llu %llu %lld %lld.%09ld %lld.%09ld", path,
		 (unsigned long long)st->st_dev, (unsigned long long)st->st_ino,
		 (long long)st->st_size, (long long)st->st_mtim.tv_sec,
		 st->st_mtim.tv_nsec, (long long)st->st_ctim.tv_sec,
		 st->st_ctim.tv_nsec);
}

/* The debug file's line of the key; false when it names a dwz file. */
static bool debug_identity(char *out, size_t n, const char *path, Elf *elf,
			   const void *bits, ssize_t nbits)
{
	GElf_Word crc = 0;
	const char *link = dwelf_elf_gnu_debuglink(elf, &crc);
	char *found = NULL;
	struct stat st;
	Elf *debug;
	bool ok;
	int fd;

	fd = ha_debuginfo_find_local(path, link, bits, (int)nbits, crc, &found);
	if (fd < 0) {
		snprintf(out, n, "none");
		return true;
	}
	debug = elf_begin(fd, ELF_C_READ, NULL);
	ok = debug && !has_altlink(debug) && fstat(fd, &st) == 0 &&
	     !strchr(found, '\n');
	if (ok)
		identity(out, n, found, &st);
	if (debug)
		elf_end(debug);
	close(fd);
	free(found);
	return ok;
}

/* The key of module file mf, or NULL when it has none. */
static char *module_key(const struct ha_symcache *c,
			const struct ha_modfile *mf)
{
	char file[8192], debug[8192], *key = NULL;
	const void *bits = NULL;
	struct stat st;
	ssize_t nbits;
	Elf *elf;
	int fd;

	/* A newline in a path could make two keys' texts alike. */
	if (mf->path[0] != '/' || strchr(mf->path, '\n') ||
	    !hex_build_id(mf->build_id))
		return NULL;
	fd = open(mf->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	elf = fstat(fd, &st) == 0 && S_ISREG(st.st_mode)
		  ? elf_begin(fd, ELF_C_READ, NULL)
		  : NULL;
	nbits = elf ? dwelf_elf_gnu_build_id(elf, &bits) : -1;
	if (ha_build_id_is(bits, nbits, mf->build_id) && !has_altlink(elf) &&
	    debug_identity(debug, sizeof(debug), mf->path, elf, bits, nbits)) {
		identity(file, sizeof(file), mf->path, &st);
		if (asprintf(&key,
			     "halloc symbol cache\nmodule %s\nfile %s\n"
			     "debug %s\nsymbolizer %016llx\n",
			     mf->build_id, file, debug,
			     (unsigned long long)c->symbolizer) < 0)
			key = NULL;
	}
	if (elf)
		elf_end(elf);
	close(fd);
	return key;
}

/* The module file's cache, its key worked out and its file read on first
 * use; NULL on no memory. modfile is one of the log's. */
static struct module *module(struct ha_symcache *c, const struct ha_log *log,
			     uint32_t modfile)
{
	struct module *m;

	if (modfile >= c->n) {
		size_t cap = c->n;

		if (!HA_RESERVE(c->mods, cap, log->nmodfiles))
			return NULL;
		memset(c->mods + c->n, 0, (cap - c->n) * sizeof(*c->mods));
		c->n = cap;
	}
	m = &c->mods[modfile];
	if (m->tried)
		return m;
	m->tried = true;
	m->key = module_key(c, &log->modfiles[modfile]);
	if (m->key && asprintf(&m->path, "%s/%s/%016llx.sym", c->dir,
			       log->modfiles[modfile].build_id,
			       (unsigned long long)ha_hash_bytes(
				   m->key, strlen(m->key))) < 0) {
		m->path = NULL;
		free(m->key);
		m->key = NULL;
	}
	if (m->key)
		ha_symfile_load(&m->file, m->path, m->key);
	return m;
}

/* ---- the cache ------------------------------------------------------------
 */

struct ha_symcache *ha_symcache_new(void)
{
	const char *urls = getenv("DEBUGINFOD_URLS");
	struct loaded loaded = {0};
	struct ha_symcache *c;
	size_t len;

	if (urls && *urls)
		return NULL;
	if (!(c = calloc(1, sizeof(*c))))
		return NULL;
	dl_iterate_phdr(each_object, &loaded);
	len = ha_cache_dir(c->dir, sizeof(c->dir)) ? strlen(c->dir) : 0;
	if (len == 0 || loaded.unnamed || len + 9 >= sizeof(c->dir)) {
		free(c);
		return NULL;
	}
	memcpy(c->dir + len, "/symbols", 9);
	c->symbolizer = loaded.hash;
	elf_version(EV_CURRENT);
	return c;
}

void ha_symcache_free(struct ha_symcache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->mods[i].key);
		free(c->mods[i].path);
		ha_symfile_free(&c->mods[i].file);
		ha_symlist_free(&c->mods[i].fresh);
	}
	free(c->mods);
	free(c);
}

int ha_symcache_lookup(struct ha_symcache *c, struct ha_log *log,
		       uint32_t modfile, uint64_t offset,
		       struct ha_sym out[HALLOC_DEPTH_MAX], uint32_t *n)
{
	struct module *m;

	if (!c || modfile >= log->nmodfiles)
		return 0;
	m = module(c, log, modfile);
	if (!m)
		return -1;
	if (!m->file.data || !ha_symfile_find(&m->file, offset, out, n))
		return 0;
	for (uint32_t i = 0; i < *n; i++) {
		out[i].function = ha_intern_str(&log->strings, out[i].function);
		out[i].file = ha_intern_str(&log->strings, out[i].file);
		if (!out[i].function || !out[i].file)
			return -1;
	}
	c->answered++;
	return 1;
}

bool ha_symcache_add(struct ha_symcache *c, const struct ha_log *log,
		     uint32_t modfile, uint64_t offset,
		     const struct ha_sym *syms, uint32_t n)
{
	struct module *m;

	if (!c || modfile >= log->nmodfiles)
		return true;
	if (!(m = module(c, log, modfile)))
		return false;
	if (!m->key)
		return true;
	c->added++;
	return ha_symlist_add(&m->fresh, offset, syms, n);
}

struct old_file {
	char *name;
	struct timespec mtime;
};

static int older_first(const void *a, const void *b)
{
	const struct timespec *x = &((const struct old_file *)a)->mtime;
	const struct timespec *y = &((const struct old_file *)b)->mtime;

	if (x->tv_sec != y->tv_sec)
		return x->tv_sec < y->tv_sec ? -1 : 1;
	return (x->tv_nsec > y->tv_nsec) - (x->tv_nsec < y->tv_nsec);
}

/* In the module's directory: the oldest cache files past KEEP_OTHERS
 * besides `mine`, and temporary files their writers left, go. */
static void prune(const char *dir, const char *mine)
{
	struct old_file *files = NULL;
	size_t n = 0, cap = 0;
	struct dirent *d;
	DIR *dp = opendir(dir);
	int dfd;

	if (!dp)
		return;
	dfd = dirfd(dp);
	while ((d = readdir(dp))) {
		struct stat st;
		bool sym = ha_ends_with(d->d_name, ".sym");

		if ((!sym && !ha_ends_with(d->d_name, ".tmp")) ||
		    strcmp(d->d_name, mine) == 0 ||
		    fstatat(dfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (!sym) {
			if (st.st_mtime + STALE_TMP_SECONDS < time(NULL))
				unlinkat(dfd, d->d_name, 0);
			continue;
		}
		if (!HA_RESERVE(files, cap, n + 1))
			break;
		files[n].mtime = st.st_mtim;
		if (!(files[n].name = strdup(d->d_name)))
			break;
		n++;
	}
	if (n > KEEP_OTHERS) {
		qsort(files, n, sizeof(*files), older_first);
		for (size_t i = 0; i < n - KEEP_OTHERS; i++)
			unlinkat(dfd, files[i].name, 0);
	}
	for (size_t i = 0; i < n; i++)
		free(files[i].name);
	free(files);
	closedir(dp);
}

static void save_module(struct module *m)
{
	char *slash = strrchr(m->path, '/');

	*slash = '\0';
	if (ha_make_dirs(m->path)) {
		*slash = '/';
		if (ha_symfile_save(m->path, m->key,
				    m->file.data ? &m->file : NULL, &m->fresh))
			m->saved = m->fresh.n;
		*slash = '\0';
		prune(m->path, slash + 1);
	}
	*slash = '/';
}

void ha_symcache_save(struct ha_symcache *c, unsigned modules_opened)
{
	const char *stats = getenv("HALLOC_SYMCACHE_STATS");

	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		if (c->mods[i].key && c->mods[i].fresh.n > c->mods[i].saved)
			save_module(&c->mods[i]);
	ha_cache_prune();
	/* For tests: what the cache spared. */
	if (stats && *stats) {
		FILE *f = fopen(stats, "ae");

		if (f) {
			fprintf(f, "opened %u answered %u symbolized %u\n",
				modules_opened, c->answered, c->added);
			fclose(f);
		}
	}
}
