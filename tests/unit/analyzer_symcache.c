/*
 * tests/unit/analyzer_symcache.c - the symbol cache's files: what is
 * written reads back the same; a file cut short, damaged anywhere or made
 * for another key is not read; writers racing never show a reader half
 * a file; a file past its bound keeps what was added first; and the cache's
 * keys: a module file changed, or a debug file that appears beside it, is a
 * miss.
 */
#include <criterion/criterion.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "analyzer/symcache.h"

static char *temp_dir(void)
{
	char *dir = strdup("/tmp/halloc-unit-symcache-XXXXXX");

	cr_assert_not_null(dir);
	cr_assert_not_null(mkdtemp(dir));
	return dir;
}

static void remove_dir(char *dir)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
	free(dir);
}

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *p;
	long n;

	cr_assert_not_null(f, "%s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	p = malloc((size_t)n + 1);
	cr_assert_not_null(p);
	cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return p;
}

static void spill(const char *path, const unsigned char *p, size_t len)
{
	FILE *f = fopen(path, "wb");

	cr_assert_not_null(f);
	cr_assert_eq(fwrite(p, 1, len, f), len);
	cr_assert_eq(fclose(f), 0);
}

/* Three answers: two frames (an inlined call), none, one. */
static void sample_list(struct ha_symlist *l)
{
	const struct ha_sym two[2] = {{"inner", "/src/a.c", 12, 3},
				      {"outer", "/src/a.c", 40, 0}};
	const struct ha_sym one = {"memcpy", "", 0, 0};

	memset(l, 0, sizeof(*l));
	cr_assert(ha_symlist_add(l, 0x4000, two, 2));
	cr_assert(ha_symlist_add(l, 0x10, NULL, 0));
	cr_assert(ha_symlist_add(l, 0x123456789ull, &one, 1));
}

static void expect_sample(const struct ha_symfile *f)
{
	struct ha_sym s[HALLOC_DEPTH_MAX];
	uint32_t n = 99;

	cr_assert(ha_symfile_find(f, 0x4000, s, &n));
	cr_assert_eq(n, 2);
	cr_assert_str_eq(s[0].function, "inner");
	cr_assert_str_eq(s[0].file, "/src/a.c");
	cr_assert_eq(s[0].line, 12);
	cr_assert_eq(s[0].column, 3);
	cr_assert_str_eq(s[1].function, "outer");
	cr_assert_eq(s[1].line, 40);
	cr_assert(ha_symfile_find(f, 0x10, s, &n));
	cr_assert_eq(n, 0, "an address symbolizing knew nothing of");
	cr_assert(ha_symfile_find(f, 0x123456789ull, s, &n));
	cr_assert_eq(n, 1);
	cr_assert_str_eq(s[0].function, "memcpy");
	cr_assert_str_eq(s[0].file, "");
	cr_assert_not(ha_symfile_find(f, 0x4001, s, &n));
	cr_assert_not(ha_symfile_find(f, 0, s, &n));
}

/* Read back under its own key only. */
Test(symcache, file_round_trip_by_key)
{
	char *dir = temp_dir(), path[256];
	struct ha_symlist l;
	struct ha_symfile f;

	snprintf(path, sizeof(path), "%s/x.sym", dir);
	sample_list(&l);
	cr_assert(ha_symfile_save(path, "key one", NULL, &l));
	cr_assert_not(ha_symfile_load(&f, path, "key two"));
	cr_assert_not(ha_symfile_load(&f, path, "key on"));
	cr_assert_not(ha_symfile_load(&f, path, "key one "));
	cr_assert_null(f.data);
	cr_assert_not(ha_symfile_load(&f, "/nonexistent/x.sym", "key one"));
	cr_assert(ha_symfile_load(&f, path, "key one"));
	cr_assert_eq(f.nentries, 3);
	expect_sample(&f);
	ha_symfile_free(&f);
	ha_symlist_free(&l);
	remove_dir(dir);
}

/* Every prefix of the file, and the file with any one byte changed. */
Test(symcache, cut_short_or_damaged_not_read)
{
	char *dir = temp_dir(), path[256], bad[256];
	struct ha_symlist l;
	struct ha_symfile f;
	unsigned char *data;
	size_t len;

	snprintf(path, sizeof(path), "%s/x.sym", dir);
	snprintf(bad, sizeof(bad), "%s/bad.sym", dir);
	sample_list(&l);
	cr_assert(ha_symfile_save(path, "key", NULL, &l));
	data = slurp(path, &len);
	for (size_t cut = 0; cut < len; cut++) {
		spill(bad, data, cut);
		cr_assert_not(ha_symfile_load(&f, bad, "key"), "cut at %zu",
			      cut);
	}
	for (size_t at = 0; at < len; at++) {
		for (unsigned bit = 1; bit < 256; bit <<= 1) {
			data[at] ^= (unsigned char)bit;
			spill(bad, data, len);
			cr_assert_not(ha_symfile_load(&f, bad, "key"),
				      "byte %zu ^ %u", at, bit);
			data[at] ^= (unsigned char)bit;
		}
	}
	/* One byte more is not the file either. */
	data[len] = 0;
	spill(bad, data, len + 1);
	cr_assert_not(ha_symfile_load(&f, bad, "key"));
	spill(bad, data, len);
	cr_assert(ha_symfile_load(&f, bad, "key"), "the copy itself reads");
	ha_symfile_free(&f);
	free(data);
	ha_symlist_free(&l);
	remove_dir(dir);
}

/* A file whose CRC is right but whose tables are not: never an answer. */
Test(symcache, bad_references_not_read)
{
	char *dir = temp_dir(), path[256];
	struct ha_symlist l;
	struct ha_symfile f;
	unsigned char *data;
	size_t len;

	snprintf(path, sizeof(path), "%s/x.sym", dir);
	sample_list(&l);
	cr_assert(ha_symfile_save(path, "key", NULL, &l));
	data = slurp(path, &len);
	/* The last frame's function: past the strings, the CRC made again. */
	{
		size_t frame = len - 16;
		uint32_t past = 0xffff;
		unsigned char *p = data + frame;
		uLong crc;
		uint32_t crc32_le;

		memcpy(p, &past, 4);
		crc = crc32(0L, Z_NULL, 0);
		crc = crc32(crc, data, 28);
		crc = crc32(crc, data + 32, (uInt)(len - 32));
		crc32_le = (uint32_t)crc;
		memcpy(data + 28, &crc32_le, 4);
	}
	spill(path, data, len);
	cr_assert_not(ha_symfile_load(&f, path, "key"));
	free(data);
	ha_symlist_free(&l);
	remove_dir(dir);
}

/* Saving over a file keeps its answers; a fresh answer replaces an old
 * one at the same offset. */
Test(symcache, save_merges_with_old_file)
{
	char *dir = temp_dir(), path[256];
	const struct ha_sym newer = {"newer", "/src/b.c", 7, 1};
	struct ha_symlist l, more = {0};
	struct ha_symfile f, g;
	struct ha_sym s[HALLOC_DEPTH_MAX];
	uint32_t n;

	snprintf(path, sizeof(path), "%s/x.sym", dir);
	sample_list(&l);
	cr_assert(ha_symfile_save(path, "key", NULL, &l));
	cr_assert(ha_symfile_load(&f, path, "key"));
	cr_assert(ha_symlist_add(&more, 0x10, &newer, 1));
	cr_assert(ha_symlist_add(&more, 0x20, &newer, 1));
	cr_assert(ha_symlist_add(&more, 0x20, NULL, 0)); /* first holds */
	cr_assert(ha_symfile_save(path, "key", &f, &more));
	cr_assert(ha_symfile_load(&g, path, "key"));
	cr_assert_eq(g.nentries, 4);
	cr_assert(ha_symfile_find(&g, 0x10, s, &n));
	cr_assert_eq(n, 1);
	cr_assert_str_eq(s[0].function, "newer");
	cr_assert(ha_symfile_find(&g, 0x20, s, &n));
	cr_assert_eq(n, 1);
	cr_assert(ha_symfile_find(&g, 0x4000, s, &n));
	cr_assert_eq(n, 2);
	cr_assert_str_eq(s[1].function, "outer");
	ha_symfile_free(&f);
	ha_symfile_free(&g);
	ha_symlist_free(&l);
	ha_symlist_free(&more);
	remove_dir(dir);
}

/* Two writers replacing one file while it is read: a reader sees one
 * writer's file or the other's, whole, never a part of one. */
Test(symcache, concurrent_writers_never_half_a_file)
{
	char *dir = temp_dir(), path[256];
	const struct ha_sym one = {"f", "/src/c.c", 1, 1};
	struct ha_symlist lists[2] = {{0}, {0}};
	struct ha_symfile f;
	pid_t kids[2];
	int seen[2] = {0, 0};

	snprintf(path, sizeof(path), "%s/x.sym", dir);
	for (int k = 0; k < 2; k++)
		for (uint64_t i = 0; i < 2000 + 3000 * (uint64_t)k; i++)
			cr_assert(ha_symlist_add(&lists[k], i * 8, &one, 1));
	cr_assert(ha_symfile_save(path, "key", NULL, &lists[0]));
	for (int k = 0; k < 2; k++) {
		kids[k] = fork();
		cr_assert_geq(kids[k], 0);
		if (kids[k] == 0) {
			for (int i = 0; i < 100; i++)
				if (!ha_symfile_save(path, "key", NULL,
						     &lists[k]))
					_exit(1);
			_exit(0);
		}
	}
	for (int i = 0; i < 400; i++) {
		cr_assert(ha_symfile_load(&f, path, "key"), "load %d", i);
		cr_assert(f.nentries == lists[0].n || f.nentries == lists[1].n,
			  "%u entries", f.nentries);
		seen[f.nentries == lists[1].n]++;
		ha_symfile_free(&f);
	}
	for (int k = 0; k < 2; k++) {
		int status;

		cr_assert_eq(waitpid(kids[k], &status, 0), kids[k]);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	cr_assert(seen[0] + seen[1] == 400);
	ha_symlist_free(&lists[0]);
	ha_symlist_free(&lists[1]);
	remove_dir(dir);
}

/* More answers than HA_SYMFILE_MAX holds: the file stays under it and
 * keeps the first added. */
Test(symcache, bounded_size)
{
	char *dir = temp_dir(), path[256], *name;
	struct ha_symlist l = {0};
	struct ha_symfile f;
	struct ha_sym s[HALLOC_DEPTH_MAX], one;
	size_t len, count = HA_SYMFILE_MAX / 4096 + 64;
	struct stat st;
	uint32_t n;

	snprintf(path, sizeof(path), "%s/x.sym", dir);
	name = malloc(4096);
	cr_assert_not_null(name);
	for (size_t i = 0; i < count; i++) {
		len = (size_t)snprintf(name, 4096, "f%zu_", i);
		memset(name + len, 'x', 4000 - len);
		name[4000] = '\0';
		one = (struct ha_sym){name, "", (uint32_t)i, 0};
		/* Added in descending order: the file sorts them. */
		cr_assert(ha_symlist_add(&l, (count - i) * 16, &one, 1));
		/* The list keeps pointers: each entry its own string. */
		l.syms[l.nsyms - 1].function = strdup(name);
	}
	cr_assert(ha_symfile_save(path, "key", NULL, &l));
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_leq((size_t)st.st_size, HA_SYMFILE_MAX);
	cr_assert_geq((size_t)st.st_size, HA_SYMFILE_MAX - 8192);
	cr_assert(ha_symfile_load(&f, path, "key"));
	cr_assert_lt(f.nentries, count);
	cr_assert(ha_symfile_find(&f, l.entries[0].offset, s, &n));
	cr_assert_str_eq(s[0].function, l.syms[0].function);
	cr_assert_not(ha_symfile_find(&f, l.entries[count - 1].offset, s, &n));
	ha_symfile_free(&f);
	for (size_t i = 0; i < l.nsyms; i++)
		free((char *)l.syms[i].function);
	ha_symlist_free(&l);
	free(name);
	remove_dir(dir);
}

/* ---- keys ---------------------------------------------------------------- */

static int own_build_id(struct dl_phdr_info *info, size_t size, void *arg)
{
	char *hex = arg;

	if (info->dlpi_name[0])
		return 0; /* the main program comes first, unnamed */
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		const unsigned char *p =
		    (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
		const unsigned char *end = p + ph->p_memsz;

		while (ph->p_type == PT_NOTE && p + sizeof(ElfW(Nhdr)) <= end) {
			const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
			const unsigned char *desc =
			    p + sizeof(*nh) + ((nh->n_namesz + 3) & ~3u);

			if (nh->n_type == NT_GNU_BUILD_ID) {
				for (unsigned k = 0; k < nh->n_descsz; k++)
					sprintf(hex + 2 * k, "%02x", desc[k]);
				return 1;
			}
			p = desc + ((nh->n_descsz + 3) & ~3u);
		}
	}
	return 1;
}

static void copy_file(const char *from, const char *to)
{
	size_t len;
	unsigned char *p = slurp(from, &len);

	spill(to, p, len);
	free(p);
}

/* Looks (modfile, 0x1234) up in a new cache over `dir`. */
static int lookup(struct ha_log *log, uint32_t modfile, struct ha_sym *s,
		  uint32_t *n)
{
	struct ha_symcache *c = ha_symcache_new();
	int found;

	cr_assert_not_null(c);
	found = ha_symcache_lookup(c, log, modfile, 0x1234, s, n);
	ha_symcache_free(c);
	return found;
}

Test(symcache, keyed_by_module_and_debug_file)
{
	char *dir = temp_dir(), mod[256], debug[256], exe[4096], hex[129] = "";
	const struct ha_sym answer = {"answer", "/src/q.c", 9, 2};
	struct ha_log *log = ha_log_new();
	struct ha_sym s[HALLOC_DEPTH_MAX];
	struct ha_symcache *c;
	uint32_t modfile, n;

	cr_assert_not_null(log);
	dl_iterate_phdr(own_build_id, hex);
	cr_assert(hex[0], "the test program has a build-id");
	cr_assert_not_null(realpath("/proc/self/exe", exe));
	snprintf(mod, sizeof(mod), "%s/mod", dir);
	snprintf(debug, sizeof(debug), "%s/mod.debug", dir);
	copy_file(exe, mod);
	setenv("HALLOC_CACHE_DIR", dir, 1);
	unsetenv("DEBUGINFOD_URLS");
	modfile = ha_log_modfile(log, mod, hex);

	c = ha_symcache_new();
	cr_assert_not_null(c);
	cr_assert_eq(ha_symcache_lookup(c, log, modfile, 0x1234, s, &n), 0);
	cr_assert(ha_symcache_add(c, log, modfile, 0x1234, &answer, 1));
	ha_symcache_save(c, 0);
	ha_symcache_free(c);
	cr_assert_eq(lookup(log, modfile, s, &n), 1, "saved, read back");
	cr_assert_eq(n, 1);
	cr_assert_str_eq(s[0].function, "answer");
	cr_assert_eq(s[0].line, 9);

	/* Another build-id recorded for the same file: not this file. */
	cr_assert_eq(lookup(log, ha_log_modfile(log, mod, "00ff"), s, &n), 0);
	/* A debug file appears (a -dbg package installed): a miss. */
	copy_file(exe, debug);
	cr_assert_eq(lookup(log, modfile, s, &n), 0, "debug file ignored");
	unlink(debug);
	cr_assert_eq(lookup(log, modfile, s, &n), 1, "gone again");
	/* The module file rewritten (same build-id, same bytes): a miss. */
	unlink(mod);
	copy_file(exe, mod);
	cr_assert_eq(lookup(log, modfile, s, &n), 0, "module file ignored");
	/* No cache at all when HALLOC_CACHE_DIR is empty. */
	setenv("HALLOC_CACHE_DIR", "", 1);
	cr_assert_null(ha_symcache_new());
	ha_log_free(log);
	remove_dir(dir);
}
