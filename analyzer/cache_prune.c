/*
 * analyzer/cache_prune.c - what of halloc's cache directory is no longer
 * used goes (debuginfo.h: ha_cache_prune, ha_cache_used).
 *
 * Every rebuild of a program makes a new build-id, so a new directory of
 * symbols/; every update of a -dbg package, a new plain copy in debug/
 * (about 10 MB for libc's). Nothing else would ever remove them. A file
 * the cache answers from has its time of change brought up to date (at
 * most once a day, one futimens), so the time of change is the time of
 * last use; what has gone unused for HA_CACHE_MAX_AGE days is removed,
 * by the first run of a day that uses the cache (a stamp file says when
 * the last pruning was).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "analyzer/debuginfo.h"

#define DAY (24 * 60 * 60)
#define STAMP ".pruned"

/* Whether a time of change is older than `age` seconds ago. */
static bool older(const struct stat *st, time_t now, time_t age)
{
	return st->st_mtime + age < now;
}

void ha_cache_used(int fd, const struct stat *st)
{
	if (older(st, time(NULL), DAY))
		futimens(fd, NULL); /* a read-only cache: it stays unused */
}

/* The cache's files: what it writes, and what its writers leave when
 * they die mid-write. */
static bool ours(const char *name, const char *suffix)
{
	return ha_ends_with(name, suffix) || ha_ends_with(name, ".tmp");
}

/* The cache's files in directory fd (taken), unused for too long, go;
 * returns how many entries stay. */
static size_t prune_files(int fd, const char *suffix, time_t now)
{
	DIR *dp = fdopendir(fd);
	size_t left = 0;
	struct dirent *d;

	if (!dp) {
		close(fd);
		return 1; /* unknown: keep the directory */
	}
	while ((d = readdir(dp))) {
		struct stat st;

		if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(dp), d->d_name, &st, AT_SYMLINK_NOFOLLOW) !=
			0 ||
		    !S_ISREG(st.st_mode) || !ours(d->d_name, suffix) ||
		    !older(&st, now, HA_CACHE_MAX_AGE * DAY) ||
		    unlinkat(dirfd(dp), d->d_name, 0) != 0)
			left++;
	}
	closedir(dp);
	return left;
}

/* symbols/: each build-id's directory, its files unused for too long,
 * and the directory when none is left. */
static void prune_symbols(int top, time_t now)
{
	int fd = openat(top, "symbols", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dp = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *d;

	if (!dp) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((d = readdir(dp))) {
		int sub;

		if (d->d_name[0] == '.')
			continue;
		sub = openat(dirfd(dp), d->d_name,
			     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0)
			continue;
		if (prune_files(sub, ".sym", now) == 0)
			unlinkat(dirfd(dp), d->d_name, AT_REMOVEDIR);
	}
	closedir(dp);
}

void ha_cache_prune(void)
{
	char dir[4096];
	time_t now = time(NULL);
	struct stat st;
	int top, stamp, debug;

	if (!ha_cache_dir(dir, sizeof(dir)) ||
	    (top = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return;
	/* Once a day: the stamp's time says when it was last done. */
	if (fstatat(top, STAMP, &st, 0) == 0 && !older(&st, now, DAY)) {
		close(top);
		return;
	}
	stamp = openat(top, STAMP, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (stamp >= 0) {
		futimens(stamp, NULL);
		close(stamp);
	}
	prune_symbols(top, now);
	debug = openat(top, "debug", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (debug >= 0)
		prune_files(debug, ".debug", now);
	close(top);
}
