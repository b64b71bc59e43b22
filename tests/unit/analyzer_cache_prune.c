/*
 * tests/unit/analyzer_cache_prune.c - what of the cache directory went
 * unused for HA_CACHE_MAX_AGE days is removed, once a day at most, and a
 * file the cache answers from counts as used (analyzer/cache_prune.c).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "analyzer/debuginfo.h"

#define DAY (24 * 60 * 60)

static char root[64];

static const char *in_root(const char *rel)
{
	static char path[2][256];
	static int turn;

	turn ^= 1;
	snprintf(path[turn], sizeof(path[turn]), "%s/%s", root, rel);
	return path[turn];
}

/* A file at rel (its directories made), last changed `days` ago. */
static void file_aged(const char *rel, int days)
{
	char dir[256];
	const char *path = in_root(rel);
	struct timespec t[2];
	int fd;

	snprintf(dir, sizeof(dir), "%s", path);
	*strrchr(dir, '/') = '\0';
	cr_assert(ha_make_dirs(dir), "%s", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert(fd >= 0 && write(fd, "x", 1) == 1, "%s", path);
	t[0].tv_sec = t[1].tv_sec = time(NULL) - (time_t)days * DAY;
	t[0].tv_nsec = t[1].tv_nsec = 0;
	cr_assert_eq(futimens(fd, t), 0);
	close(fd);
}

static bool exists(const char *rel)
{
	struct stat st;

	return lstat(in_root(rel), &st) == 0;
}

static time_t age_days(const char *rel)
{
	struct stat st;

	cr_assert_eq(stat(in_root(rel), &st), 0, "%s", rel);
	return (time(NULL) - st.st_mtime) / DAY;
}

static void setup(void)
{
	snprintf(root, sizeof(root), "/tmp/halloc-unit-cache-XXXXXX");
	cr_assert(mkdtemp(root));
	setenv("HALLOC_CACHE_DIR", root, 1);
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(cache_prune, .init = setup, .fini = teardown);

Test(cache_prune, unused_entries_go_used_ones_stay)
{
	const int old = HA_CACHE_MAX_AGE + 5, recent = HA_CACHE_MAX_AGE - 5;

	file_aged("symbols/aaaa/1.sym", old);
	file_aged("symbols/aaaa/2.sym", old + 10);
	file_aged("symbols/bbbb/1.sym", recent);
	file_aged("symbols/cccc/old.sym", old);
	file_aged("symbols/cccc/new.sym", 0);
	file_aged("symbols/dddd/1.sym.tmp", old);
	file_aged("debug/libc-old.debug", old);
	file_aged("debug/libc-new.debug", 1);
	file_aged("debug/README", old); /* not the cache's: left alone */
	ha_cache_prune();
	cr_assert(!exists("symbols/aaaa"), "a build-id unused for long");
	cr_assert(exists("symbols/bbbb/1.sym"));
	cr_assert(!exists("symbols/cccc/old.sym"));
	cr_assert(exists("symbols/cccc/new.sym"));
	cr_assert(!exists("symbols/dddd"), "only a writer's leftover");
	cr_assert(!exists("debug/libc-old.debug"));
	cr_assert(exists("debug/libc-new.debug"));
	cr_assert(exists("debug/README"));
	cr_assert(exists(".pruned"));
}

Test(cache_prune, once_a_day)
{
	file_aged("symbols/aaaa/1.sym", HA_CACHE_MAX_AGE + 1);
	file_aged(".pruned", 0);
	ha_cache_prune();
	cr_assert(exists("symbols/aaaa/1.sym"), "pruned twice in a day");
	file_aged(".pruned", 2);
	ha_cache_prune();
	cr_assert(!exists("symbols/aaaa"));
	cr_assert_eq(age_days(".pruned"), 0);
}

Test(cache_prune, caching_off_touches_nothing)
{
	file_aged("symbols/aaaa/1.sym", HA_CACHE_MAX_AGE + 1);
	setenv("HALLOC_CACHE_DIR", "", 1);
	ha_cache_prune();
	cr_assert(exists("symbols/aaaa/1.sym"));
	cr_assert(!exists(".pruned"));
}

/* A file the cache answered from is used now; its time moves at most
 * once a day. */
Test(cache_prune, use_is_noted_once_a_day)
{
	struct stat st;
	time_t before;
	int fd;

	file_aged("symbols/aaaa/1.sym", 3);
	fd = open(in_root("symbols/aaaa/1.sym"), O_RDONLY);
	cr_assert(fd >= 0 && fstat(fd, &st) == 0);
	ha_cache_used(fd, &st);
	close(fd);
	cr_assert_eq(age_days("symbols/aaaa/1.sym"), 0);

	file_aged("symbols/aaaa/2.sym", 0);
	cr_assert_eq(stat(in_root("symbols/aaaa/2.sym"), &st), 0);
	before = st.st_mtime;
	sleep(1);
	fd = open(in_root("symbols/aaaa/2.sym"), O_RDONLY);
	cr_assert(fd >= 0 && fstat(fd, &st) == 0);
	ha_cache_used(fd, &st);
	close(fd);
	cr_assert_eq(stat(in_root("symbols/aaaa/2.sym"), &st), 0);
	cr_assert_eq(st.st_mtime, before, "moved within the day");
}
