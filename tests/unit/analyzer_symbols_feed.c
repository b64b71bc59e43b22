/*
 * tests/unit/analyzer_symbols_feed.c - the symbols pass halloc-trace runs
 * from the frames it wrote (analyzer/symbols_feed.c) appends what
 * ha_append_symbols, reading the file, appends: with module files warmed
 * on another thread while frames come, and past its memory limit; and
 * the plain copies of compressed debug files (analyzer/debuginfo.c).
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analyzer/analysis.h"
#include "halloc/log.h"
#include "log_builder.h"
#include "module_of.h"

static const char *const argv_[] = {"./unit-tests", NULL};

static __attribute__((noinline)) uintptr_t here(void)
{
	return (uintptr_t)__builtin_return_address(0);
}

/*
 * Two streams (a fork), each with this program and libc mapped; stacks
 * through both, one defined in a chunk after an events-only chunk that
 * names it; a module unloaded and its range reused.
 */
static void build(struct lb *b)
{
	void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	uint64_t s1[3], s2[2];
	struct module self, lc;

	cr_assert_not_null(libc);
	s1[0] = here();
	s1[1] = (uintptr_t)dlsym(libc, "malloc") + 5;
	s1[2] = (uintptr_t)dlsym(libc, "free") + 9;
	s2[0] = (uintptr_t)dlsym(libc, "strdup") + 7;
	s2[1] = here() + 1;
	dlclose(libc);
	self = module_of(s1[0]);
	lc = module_of(s1[1]);
	lb_init(b, 100, argv_);
	for (uint64_t stream = 1; stream <= 2; stream++) {
		uint32_t pid = 99 + (uint32_t)stream;

		lb_chunk(b, stream, pid, pid);
		lb_process(b, 1, pid, 1, stream == 2 ? 1 : 0, 0, 0, 10,
			   self.path, argv_);
		lb_module(b, 2, 1, self.bias, self.path, "", 0, self.start,
			  self.size);
		lb_module(b, 3, 2, lc.bias, lc.path, "", 0, lc.start, lc.size);
		lb_stack(b, 4, 1, 3, s1);
		lb_alloc(b, 5, HALLOC_FN_MALLOC, 0x1000, 64, 1);
		/* Events only: names stack 2 before its STACK record. */
		lb_chunk(b, stream, pid, pid + 1000);
		lb_alloc(b, 7, HALLOC_FN_MALLOC, 0x2000, 32, 2);
		lb_chunk_end(b);
		lb_chunk(b, stream, pid, pid);
		lb_stack(b, 6, 2, 2, s2);
		lb_unload(b, 8, 2);
		lb_alloc(b, 9, HALLOC_FN_MALLOC, 0x3000, 16, 2);
	}
	lb_exit(b, 100, HALLOC_EXIT_CODE, 0);
	lb_exit(b, 101, HALLOC_EXIT_CODE, 0);
	lb_chunk_end(b);
}

/* Marks every chunk without a definition record as events only. */
static void mark_events_only(struct lb *b)
{
	for (size_t at = 16; at + 8 <= b->len;) {
		uint32_t len;
		unsigned char tag;

		memcpy(&len, b->buf + at, 4);
		tag = b->buf[at + 8 + HALLOC_CHUNK_HEADER_SIZE];
		if (b->buf[at + 4] == HALLOC_FRAME_CHUNK &&
		    HALLOC_RECORD_KIND(tag) == HALLOC_REC_ALLOC)
			b->buf[at + 6] |= HALLOC_FRAME_EVENTS_ONLY;
		at += 8 + len;
	}
}

static unsigned char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *data;
	long n;

	cr_assert_not_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	data = malloc((size_t)n + 1);
	cr_assert_eq(fread(data, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return data;
}

struct feeder {
	struct ha_symbols_feed *feed;
	const struct lb *b;
	bool skip_events_only;
	volatile bool done;
};

/* Feeds each frame as halloc-trace does: all but events-only chunks. */
static void *feed_frames(void *arg)
{
	struct feeder *fd = arg;
	const struct lb *b = fd->b;

	for (size_t at = 16; at + 8 <= b->len;) {
		uint32_t len;

		memcpy(&len, b->buf + at, 4);
		if (!fd->skip_events_only ||
		    !(b->buf[at + 4] == HALLOC_FRAME_CHUNK &&
		      (b->buf[at + 6] & HALLOC_FRAME_EVENTS_ONLY)))
			ha_symbols_feed_frame(fd->feed, b->buf + at, 8 + len);
		at += 8 + len;
		usleep(1000);
	}
	fd->done = true;
	return NULL;
}

/*
 * Both copies of a log of log_len bytes got symbols appended, the same
 * bytes. Removes and frees both.
 */
static void expect_same_symbols(char *old_path, char *new_path,
				size_t log_len)
{
	unsigned char *old_bytes, *new_bytes;
	size_t old_len, new_len;

	old_bytes = read_all(old_path, &old_len);
	new_bytes = read_all(new_path, &new_len);
	cr_assert_gt(old_len, log_len, "the file pass appended symbols");
	cr_assert_eq(new_len, old_len);
	cr_assert(memcmp(old_bytes, new_bytes, old_len) == 0,
		  "the same SYMBOLS frames");
	free(old_bytes);
	free(new_bytes);
	unlink(old_path);
	unlink(new_path);
	free(old_path);
	free(new_path);
}

/* The SYMBOLS bytes each pass appended to a copy of the log. */
static void compare_passes(struct lb *b, bool threaded, size_t padding)
{
	char *old_path = lb_write_temp(b), *new_path = lb_write_temp(b);
	struct feeder fd = {.b = b, .skip_events_only = true};
	struct ha_diag diag;
	pthread_t t;

	cr_assert_eq(ha_append_symbols(old_path, &diag), HA_OK, "%s",
		     diag.message);
	fd.feed = ha_symbols_feed_new();
	cr_assert_not_null(fd.feed);
	/* Frames past the limit: the feed lets go and reads the file. */
	for (size_t i = 0; i < padding; i++) {
		static unsigned char frame[4096];

		frame[4] = 99; /* a type no reader knows: skipped */
		ha_symbols_feed_frame(fd.feed, frame, sizeof(frame));
	}
	if (threaded) {
		cr_assert_eq(pthread_create(&t, NULL, feed_frames, &fd), 0);
		while (!fd.done)
			ha_symbols_feed_work(fd.feed);
		pthread_join(t, NULL);
	} else {
		feed_frames(&fd);
	}
	cr_assert_eq(ha_symbols_feed_append(fd.feed, new_path, &diag), HA_OK,
		     "%s", diag.message);
	ha_symbols_feed_free(fd.feed);
	expect_same_symbols(old_path, new_path, b->len);
}

Test(symbols_feed, same_symbols_as_reading_the_file)
{
	struct lb b;

	build(&b);
	mark_events_only(&b);
	compare_passes(&b, false, 0);
	lb_free(&b);
}

Test(symbols_feed, warmed_on_another_thread_while_fed)
{
	struct lb b;

	build(&b);
	mark_events_only(&b);
	compare_passes(&b, true, 0);
	lb_free(&b);
}

Test(symbols_feed, past_its_limit_reads_the_file)
{
	struct lb b;

	build(&b);
	mark_events_only(&b);
	compare_passes(&b, false, (64u << 20) / 4096 + 1);
	lb_free(&b);
}

/* A chunk that does not decode: what came before is symbolized, as from
 * reading the file, and the caller hears why. */
Test(symbols_feed, corrupt_chunk)
{
	static const unsigned char bad[] = {0x0f, 0x00};
	struct lb b;
	struct feeder fd = {.feed = ha_symbols_feed_new(), .b = &b};
	struct ha_diag diag = {{0}};
	char *old_path, *new_path;

	build(&b);
	lb_chunk(&b, 1, 100, 100);
	lb_raw(&b, bad, sizeof(bad));
	lb_chunk_end(&b);
	old_path = lb_write_temp(&b);
	new_path = lb_write_temp(&b);
	cr_assert_eq(ha_append_symbols(old_path, NULL), HA_ERR_CORRUPT);
	feed_frames(&fd); /* every frame */
	cr_assert_eq(ha_symbols_feed_append(fd.feed, new_path, &diag),
		     HA_ERR_CORRUPT);
	cr_assert(strstr(diag.message, "corrupt"), "%s", diag.message);
	ha_symbols_feed_free(fd.feed);
	/* Symbols of what came before the bad chunk. */
	expect_same_symbols(old_path, new_path, b.len);
	lb_free(&b);
}

/* libc's debug file (libc6-dbg, zlib-compressed) gets a plain copy in the
 * cache directory; symbols read through it are the same. */
Test(symbols_feed, plain_copy_of_compressed_debug_info)
{
	char dir[] = "/tmp/halloc-unit-cache-XXXXXX", sub[64];
	struct lb b;
	char *path;
	unsigned char *first, *second;
	size_t first_len, second_len, before;
	struct stat st;

	cr_assert_not_null(mkdtemp(dir));
	setenv("HALLOC_CACHE_DIR", dir, 1);
	build(&b);
	before = b.len;
	path = lb_write_temp(&b);
	cr_assert_eq(ha_append_symbols(path, NULL), HA_OK);
	first = read_all(path, &first_len);
	snprintf(sub, sizeof(sub), "%s/debug", dir);
	if (stat("/usr/lib/debug/.build-id", &st) == 0)
		cr_assert_eq(stat(sub, &st), 0, "no plain copy made");
	cr_assert_eq(truncate(path, (off_t)before), 0);
	cr_assert_eq(ha_append_symbols(path, NULL), HA_OK); /* the copy */
	second = read_all(path, &second_len);
	cr_assert_eq(second_len, first_len);
	cr_assert(memcmp(first, second, first_len) == 0);
	cr_assert_eq(truncate(path, (off_t)before), 0);
	setenv("HALLOC_CACHE_DIR", "", 1); /* none kept: libdw inflates */
	cr_assert_eq(ha_append_symbols(path, NULL), HA_OK);
	free(second);
	second = read_all(path, &second_len);
	cr_assert_eq(second_len, first_len);
	cr_assert(memcmp(first, second, first_len) == 0);
	free(first);
	free(second);
	unlink(path);
	free(path);
	lb_free(&b);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		cr_assert_eq(system(cmd), 0);
	}
}
