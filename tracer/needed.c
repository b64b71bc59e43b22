/*
 * tracer/needed.c - the shared libraries a program links (DT_NEEDED, and
 * theirs), found as the dynamic loader would find them, for --fail-at to
 * search their line tables too.
 *
 * The search follows ld.so(8) closely enough for libraries a user builds:
 * a name with a slash is a path; otherwise DT_RPATH (when there is no
 * DT_RUNPATH), LD_LIBRARY_PATH, DT_RUNPATH, then the default directories
 * (Debian's multiarch ones first), with $ORIGIN replaced by the object's
 * directory. /etc/ld.so.cache is not read: a library found only through
 * it is in a default directory on Debian anyway. Libraries opened later
 * with dlopen(3) are not known here.
 */
#include "tracer/faults.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_LIBRARIES 64

static const char *const default_dirs[] = {
    "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib"};

struct search {
	char **paths; /* found so far, the program's first */
	size_t n;
};

/* The C/C++ runtime: never a site, and big; not worth a look. */
static bool runtime_library(const char *name)
{
	static const char *const names[] = {
	    "libc.so", "libstdc++.so", "libgcc_s.so", "ld-linux", "libm.so"};
	const char *base = strrchr(name, '/');

	base = base ? base + 1 : name;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strncmp(base, names[i], strlen(names[i])))
			return true;
	return false;
}

/* dir/name, with $ORIGIN (or ${ORIGIN}) at dir's start made origin. */
static bool try_dir(const char *dir, size_t len, const char *origin,
		    const char *name, char *out)
{
	int n;

	if (len >= 7 && !strncmp(dir, "$ORIGIN", 7))
		n = snprintf(out, PATH_MAX, "%s%.*s/%s", origin, (int)(len - 7),
			     dir + 7, name);
	else if (len >= 9 && !strncmp(dir, "${ORIGIN}", 9))
		n = snprintf(out, PATH_MAX, "%s%.*s/%s", origin, (int)(len - 9),
			     dir + 9, name);
	else
		n = snprintf(out, PATH_MAX, "%.*s/%s", (int)len,
			     len ? dir : ".", name);
	return n > 0 && n < PATH_MAX && access(out, R_OK) == 0;
}

/* The first of a colon-separated list of directories holding name. */
static bool try_list(const char *list, const char *origin, const char *name,
		     char *out)
{
	while (list && *list) {
		size_t len = strcspn(list, ":");

		if (try_dir(list, len, origin, name, out))
			return true;
		list += len + (list[len] == ':');
	}
	return false;
}

static bool find_library(const char *name, const char *rpath,
			 const char *runpath, const char *origin, char *out)
{
	if (strchr(name, '/'))
		return snprintf(out, PATH_MAX, "%s", name) < PATH_MAX &&
		       access(out, R_OK) == 0;
	if (!runpath && try_list(rpath, origin, name, out))
		return true;
	if (try_list(getenv("LD_LIBRARY_PATH"), origin, name, out) ||
	    try_list(runpath, origin, name, out))
		return true;
	for (size_t i = 0; i < sizeof(default_dirs) / sizeof(default_dirs[0]);
	     i++)
		if (try_dir(default_dirs[i], strlen(default_dirs[i]), origin,
			    name, out))
			return true;
	return false;
}

static bool known(const struct search *s, const char *path)
{
	char real[PATH_MAX];

	if (!realpath(path, real))
		return true; /* cannot be opened anyway */
	for (size_t i = 0; i < s->n; i++) {
		char other[PATH_MAX];

		if (realpath(s->paths[i], other) && !strcmp(real, other))
			return true;
	}
	return false;
}

static void add(struct search *s, const char *path);

/* Adds the libraries the object at s->paths[at] needs. */
static void add_needed(struct search *s, size_t at)
{
	char origin[PATH_MAX], found[PATH_MAX];
	const char *rpath = NULL, *runpath = NULL, *slash;
	Elf_Scn *scn = NULL;
	int fd = open(s->paths[at], O_RDONLY | O_CLOEXEC);
	Elf *elf;

	if (fd < 0)
		return;
	elf = elf_begin(fd, ELF_C_READ, NULL);
	slash = strrchr(s->paths[at], '/');
	snprintf(origin, sizeof(origin), "%.*s",
		 slash ? (int)(slash - s->paths[at]) : 1,
		 slash ? s->paths[at] : ".");
	while (elf && (scn = elf_nextscn(elf, scn))) {
		GElf_Shdr shdr;
		Elf_Data *data;

		if (!gelf_getshdr(scn, &shdr) || shdr.sh_type != SHT_DYNAMIC ||
		    !(data = elf_getdata(scn, NULL)))
			continue;
		/* Paths first: DT_NEEDED may come before them. */
		for (int pass = 0; pass < 2; pass++) {
			GElf_Dyn dyn;

			for (int i = 0; gelf_getdyn(data, i, &dyn); i++) {
				const char *str = elf_strptr(elf, shdr.sh_link,
							     dyn.d_un.d_val);

				if (!str)
					continue;
				if (pass == 0 && dyn.d_tag == DT_RPATH)
					rpath = str;
				else if (pass == 0 && dyn.d_tag == DT_RUNPATH)
					runpath = str;
				else if (pass == 1 && dyn.d_tag == DT_NEEDED &&
					 !runtime_library(str) &&
					 find_library(str, rpath, runpath,
						      origin, found))
					add(s, found);
			}
		}
	}
	if (elf)
		elf_end(elf);
	close(fd);
}

static void add(struct search *s, const char *path)
{
	char *copy;

	if (s->n == MAX_LIBRARIES + 1 || known(s, path) ||
	    !(copy = strdup(path)))
		return;
	s->paths[s->n++] = copy;
	add_needed(s, s->n - 1);
}

char **ht_needed_libraries(const char *program, size_t *n)
{
	struct search s = {.paths = calloc(MAX_LIBRARIES + 1, sizeof(char *))};
	char **libs;

	*n = 0;
	if (!s.paths)
		return NULL;
	elf_version(EV_CURRENT);
	s.paths[s.n++] = strdup(program);
	if (s.paths[0])
		add_needed(&s, 0);
	/* The program itself is not one of them. */
	free(s.paths[0]);
	libs = s.paths;
	memmove(libs, libs + 1, (s.n - 1) * sizeof(*libs));
	*n = s.n - 1;
	return libs;
}

void ht_needed_free(char **libs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(libs[i]);
	free(libs);
}
