/*
 * tests/unit/analyzer_fast_chunks.c - chunks marked HALLOC_FRAME_EVENTS_ONLY
 * go through the analyzer's fast reading (analyzer/chunk_fast.c) when the
 * log is a file: the report is the one the careful reading gives, whether
 * the mark is right, missing, or wrong, the record damaged, the varints
 * long, the file plain or compressed (a chunk split across zstd frames).
 *
 * Each log is built twice, the same but for the mark, and each copy is
 * reported three ways: from a plain file, from a compressed file (the
 * replay reads chunks back from both), and from memory (every event read
 * at once, no fast reading). All six reports must be the same bytes.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyzer/log_source.h"
#include "halloc/log.h"
#include "log_builder.h"

static const char *const prog_argv[] = {"./prog", NULL};

/* Marks the open chunk as holding events only (its frame's flags). */
static void mark(struct lb *b, bool on)
{
	if (on)
		b->buf[b->chunk_at + 6] = HALLOC_FRAME_EVENTS_ONLY;
}

static char *write_file(const unsigned char *data, size_t len, bool zstd)
{
	char *path = strdup("/tmp/halloc-unit-XXXXXX");
	int fd = mkstemp(path);

	cr_assert(fd >= 0);
	if (!zstd) {
		cr_assert_eq(write(fd, data, len), (ssize_t)len);
	} else {
		/* Two zstd frames, split inside a chunk: that chunk is read
		 * back across frames, the others from within one. */
		size_t half = len / 2 + 3;

		cr_assert(ha_append_compressed(fd, data, half));
		cr_assert(ha_append_compressed(fd, data + half, len - half));
	}
	close(fd);
	return path;
}

/* The JSON and text reports of the log, and how reading went. */
static char *report(struct lb *b, int how, enum ha_result *res)
{
	struct ha_analysis *a;
	struct ha_diag d;
	char *json, *text, *both;

	lb_chunk_end(b);
	if (how == 0) {
		*res = lb_analyze(b, &a, &d);
	} else {
		char *path = write_file(b->buf, b->len, how == 2);

		*res = ha_analyze_file(path, NULL, &a, &d);
		unlink(path);
		free(path);
	}
	cr_assert(*res == HA_OK || *res == HA_ERR_CORRUPT, "%s", d.message);
	json = lb_report(a, HA_FORMAT_JSON, 0);
	text = lb_report(a, HA_FORMAT_TEXT, 0);
	/* d.message names the file: the reason says the rest. */
	cr_assert(asprintf(&both, "%s\n%s\n%s", json, text,
			   ha_analysis_incomplete_reason(a)) > 0);
	free(json);
	free(text);
	ha_analysis_free(a);
	return both;
}

typedef void (*build_fn)(struct lb *b, bool marked);

/* Every way of reading either copy gives the same report; the marked
 * copy read from a plain file is returned, for the caller's checks. */
static char *same_everywhere(build_fn build, enum ha_result want)
{
	char *first = NULL;

	for (int marked = 1; marked >= 0; marked--)
		for (int how = 1; how <= 2; how++) {
			struct lb b;
			enum ha_result res;
			char *r;

			build(&b, marked);
			r = report(&b, how, &res);
			cr_assert_eq(res, want, "marked %d, how %d", marked,
				     how);
			if (!first)
				first = r;
			else {
				cr_assert_str_eq(r, first, "marked %d, how %d",
						 marked, how);
				free(r);
			}
			lb_free(&b);
		}
	/* From memory (every event at once): the reference reading. */
	{
		struct lb b;
		enum ha_result res;
		char *r;

		build(&b, true);
		r = report(&b, 0, &res);
		cr_assert_eq(res, want);
		cr_assert_str_eq(r, first, "from memory");
		free(r);
		lb_free(&b);
	}
	return first;
}

static void head(struct lb *b)
{
	const uint64_t frames[] = {0x401001, 0x401200};
	const uint64_t other[] = {0x401050};

	lb_init(b, 100, prog_argv);
	lb_chunk(b, 1, 100, 100);
	lb_process(b, 1, 100, 1, 0, 0, 0, 5000, "/src/prog", prog_argv);
	lb_module(b, 2, 1, 0, "/src/prog", "", 0, 0x400000, 0x10000);
	lb_stack(b, 3, 1, 2, frames);
	lb_stack(b, 4, 2, 1, other);
}

/* Two threads whose marked chunks interleave in seq; reallocs, failures,
 * addresses far apart (long varints), seq gaps. */
static void build_threads(struct lb *b, bool marked)
{
	uint64_t seq = 10;

	head(b);
	for (unsigned c = 0; c < 6; c++) {
		uint32_t tid = 100 + c % 2;

		lb_chunk(b, 1, 100, tid);
		mark(b, marked);
		for (unsigned i = 0; i < 50; i++) {
			uint64_t addr = ((uint64_t)tid << 40) +
					(c / 2) * 0x100000 + i * 0x40;

			lb_alloc(b, seq, HALLOC_FN_MALLOC, addr, 16 + i * 1000,
				 1 + i % 2);
			seq += 2;
			if (i % 3 == 0) {
				lb_free_rec(b, seq, HALLOC_FREE_FREE, addr);
				seq += 1000;
			} else if (i % 3 == 1) {
				lb_realloc(b, seq, seq + 7, addr,
					   addr + 0x20000, 1u << 20, 2);
				seq += 9;
			}
		}
		lb_failed(b, seq++, HALLOC_FN_MALLOC, 1u << 30, 1);
	}
	lb_exit(b, 100, HALLOC_EXIT_CODE, 0);
	lb_end(b);
}

Test(fast_chunks, marked_chunks_report_exact_counts)
{
	char *r = same_everywhere(build_threads, HA_OK);

	/* 6 chunks x 50 allocs, 17 reallocs each (their new blocks count),
	 * 17 frees and 17 realloc frees each. */
	cr_assert(strstr(r, "\"allocations\": 402,"), "%s", r);
	cr_assert(strstr(r, "\"frees\": 204,"), "%s", r);
	free(r);
}

/* Marked, yet holding what the model needs: a STACK, a typed allocation
 * of the in-process API, a refusal. */
static void build_wrongly_marked(struct lb *b, bool marked)
{
	const uint64_t frames[] = {0x401300};
	static const unsigned char typed[] = {
	    HALLOC_RECORD_TAG(HALLOC_REC_TYPE, 0),
	    15,
	    1,
	    24,
	    4,
	    'n',
	    'o',
	    'd',
	    'e',
	    3,
	    'x',
	    '.',
	    'c',
	    7};
	static const unsigned char typed_fields[] = {1, 2}; /* site, count */

	head(b);
	lb_chunk(b, 1, 100, 101);
	mark(b, marked);
	lb_alloc(b, 10, HALLOC_FN_MALLOC, 0x5000, 10, 1);
	lb_stack(b, 11, 3, 1, frames);
	lb_alloc(b, 12, HALLOC_FN_MALLOC, 0x6000, 20, 3);
	lb_refused(b, 13, HALLOC_FN_MALLOC, 4096, 3, 1);
	lb_chunk(b, 1, 100, 100);
	mark(b, marked);
	lb_raw(b, typed, sizeof(typed));
	lb_alloc(b, 20, HALLOC_FN_MALLOC, 0x7000, 30, 2);
	lb_alloc(b, 21, HALLOC_FN_HALLOC, 0x8000, 48, 2);
	lb_raw(b, typed_fields, sizeof(typed_fields));
	lb_exit(b, 100, HALLOC_EXIT_CODE, 0);
	lb_end(b);
}

Test(fast_chunks, wrongly_marked_chunks_still_read_right)
{
	char *r = same_everywhere(build_wrongly_marked, HA_OK);

	cr_assert(strstr(r, "\"allocations\": 4,"), "%s", r);
	free(r);
}

/* A marked chunk cut inside its last record's address varint. */
static void build_damaged(struct lb *b, bool marked)
{
	static const unsigned char cut[] = {
	    HALLOC_RECORD_TAG(HALLOC_REC_FREE, HALLOC_FREE_FREE), 1, 0,
	    0x80 | 0x10, 0x80};

	head(b);
	lb_chunk(b, 1, 100, 100);
	mark(b, marked);
	lb_alloc(b, 10, HALLOC_FN_MALLOC, 0x5000, 10, 1);
	lb_alloc(b, 11, HALLOC_FN_MALLOC, 0x6000, 10, 1);
	lb_raw(b, cut, sizeof(cut));
	lb_exit(b, 100, HALLOC_EXIT_CODE, 0);
	lb_end(b);
}

Test(fast_chunks, damaged_marked_chunk_is_corrupt_where_it_was)
{
	char *r = same_everywhere(build_damaged, HA_ERR_CORRUPT);

	cr_assert(strstr(r, "\"allocations\": 2,"), "%s", r);
	cr_assert(strstr(r, "bad free record"), "%s", r);
	free(r);
}

/* Varints of 9 and 10 bytes (a size of 2^60, SIZE_MAX for an overflowed
 * calloc), which the fast reading leaves to the careful one. */
static void build_long_varints(struct lb *b, bool marked)
{
	head(b);
	lb_chunk(b, 1, 100, 100);
	mark(b, marked);
	lb_alloc(b, 10, HALLOC_FN_MALLOC, 0x5000, 10, 1);
	lb_failed(b, 11, HALLOC_FN_CALLOC, UINT64_MAX, 1);
	lb_chunk(b, 1, 100, 100);
	mark(b, marked);
	lb_alloc(b, 12, HALLOC_FN_MALLOC, 0x7fffffff0000ull, 1ull << 60, 2);
	lb_free_rec(b, 13, HALLOC_FREE_FREE, 0x5000);
	lb_exit(b, 100, HALLOC_EXIT_CODE, 0);
	lb_end(b);
}

Test(fast_chunks, long_varints_read_the_same)
{
	char *r = same_everywhere(build_long_varints, HA_OK);

	cr_assert(strstr(r, "\"bytes_allocated\": 1152921504606846986,"), "%s",
		  r);
	free(r);
}
