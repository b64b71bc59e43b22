/*
 * tests/unit/analyzer_reader.c - reading logs: what is and is not a log,
 * truncation (incomplete, keep what is whole), corruption (stop, keep what
 * came before, say where), unknown frames, and never crashing on any input.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "halloc/log.h"
#include "log_builder.h"

static const char *const prog_argv[] = {"./prog", "arg", NULL};

static struct ha_process_info process(const struct ha_analysis *a, unsigned i)
{
	struct ha_process_info info;

	cr_assert(ha_analysis_process(a, i, &info), "no process %u", i);
	return info;
}

/* A small complete log: one process, 3 allocations, 1 free, 2 leaks. */
static void build_basic(struct lb *b, bool end)
{
	const uint64_t frames[] = {0x401001};

	lb_init(b, 100, prog_argv);
	lb_chunk(b, 1, 100, 100);
	lb_process(b, 1, 100, 1, 0, 0, 0, 5000, "/src/prog", prog_argv);
	lb_module(b, 2, 1, 0, "/src/prog", "", 0, 0x400000, 0x10000);
	lb_stack(b, 3, 1, 1, frames);
	lb_alloc(b, 4, HALLOC_FN_MALLOC, 0x1000, 16, 1);
	lb_alloc(b, 5, HALLOC_FN_CALLOC, 0x2000, 32, 1);
	lb_chunk(b, 1, 100, 100);
	lb_free_rec(b, 6, HALLOC_FREE_FREE, 0x1000);
	lb_alloc(b, 7, HALLOC_FN_MALLOC, 0x3000, 64, 1);
	lb_exit(b, 100, HALLOC_EXIT_CODE, 0);
	if (end)
		lb_end(b);
}

Test(reader, not_a_log)
{
	static const char text[] = "this is a text file, not a log\n";
	struct ha_analysis *a = (void *)1;
	struct ha_diag d;

	cr_assert_eq(
	    lb_analyze_bytes((const unsigned char *)text, sizeof(text), &a, &d),
	    HA_ERR_NOT_LOG);
	cr_assert_null(a);
	cr_assert(strstr(d.message, "'test.hlog' is not a halloc log"), "%s",
		  d.message);
	cr_assert_null(strchr(d.message, '\n'));
	cr_assert_eq(lb_analyze_bytes((const unsigned char *)"", 0, &a, &d),
		     HA_ERR_NOT_LOG);
}

Test(reader, version)
{
	struct lb b;
	struct ha_analysis *a;
	struct ha_diag d;

	build_basic(&b, true);
	b.buf[8] = 2; /* version field */
	cr_assert_eq(lb_analyze(&b, &a, &d), HA_ERR_VERSION);
	cr_assert_null(a);
	cr_assert(strstr(d.message, "'2'"), "%s", d.message);
	lb_free(&b);
}

Test(reader, complete_log)
{
	struct lb b;
	struct ha_analysis *a;
	struct ha_diag d;
	struct ha_process_info p;

	build_basic(&b, true);
	cr_assert_eq(lb_analyze(&b, &a, &d), HA_OK, "%s", d.message);
	cr_assert(ha_analysis_complete(a));
	cr_assert_not(ha_analysis_corrupt(a));
	cr_assert_str_empty(ha_analysis_incomplete_reason(a));
	cr_assert_eq(ha_analysis_process_count(a), 1);
	p = process(a, 0);
	cr_assert_eq(p.pid, 100);
	cr_assert_eq(p.summary.allocations, 3);
	cr_assert_eq(p.summary.frees, 1);
	cr_assert_eq(p.summary.bytes_allocated, 112);
	cr_assert_eq(p.summary.leaked_bytes, 96);
	cr_assert_eq(p.summary.leaked_blocks, 2);
	cr_assert_eq(p.end, HA_END_EXIT);
	cr_assert_eq(ha_analysis_leaked_bytes(a), 96);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(reader, missing_end_is_incomplete)
{
	struct lb b;
	struct ha_analysis *a;

	build_basic(&b, false);
	cr_assert_eq(lb_analyze(&b, &a, NULL), HA_OK);
	cr_assert_not(ha_analysis_complete(a));
	cr_assert_not(ha_analysis_corrupt(a));
	cr_assert(strstr(ha_analysis_incomplete_reason(a), "no end mark"));
	cr_assert_eq(process(a, 0).summary.allocations, 3);
	cr_assert_not(process(a, 0).complete);
	ha_analysis_free(a);
	lb_free(&b);
}

static bool at_frame_boundary(const struct lb *b, size_t offset)
{
	size_t at = 16;

	while (at < offset && at + HALLOC_FRAME_HEADER_SIZE <= b->len) {
		const unsigned char *h = b->buf + at;

		at += HALLOC_FRAME_HEADER_SIZE +
		      (h[0] | h[1] << 8 | h[2] << 16 | (uint32_t)h[3] << 24);
	}
	return at == offset;
}

/* Every cut of a log reads as an incomplete log holding the whole frames
 * before the cut, never as an error, and never crashes. */
Test(reader, truncated_at_every_offset)
{
	struct lb b;
	uint64_t last = 0;

	build_basic(&b, true);
	for (size_t cut = 0; cut < b.len; cut++) {
		struct ha_analysis *a = NULL;
		enum ha_result res = lb_analyze_bytes(b.buf, cut, &a, NULL);

		if (cut < 16) {
			cr_assert_eq(res, HA_ERR_NOT_LOG, "cut %zu", cut);
			continue;
		}
		cr_assert_eq(res, HA_OK, "cut %zu: %s", cut,
			     ha_result_name(res));
		cr_assert_not(ha_analysis_complete(a), "cut %zu", cut);
		cr_assert_eq(strstr(ha_analysis_incomplete_reason(a),
				    "inside a frame") != NULL,
			     !at_frame_boundary(&b, cut), "cut %zu: %s", cut,
			     ha_analysis_incomplete_reason(a));
		if (ha_analysis_process_count(a) > 0) {
			uint64_t n = process(a, 0).summary.allocations;

			cr_assert_geq(n, last,
				      "cut %zu lost events a shorter cut had",
				      cut);
			last = n;
		}
		free(lb_report(a, HA_FORMAT_TEXT, 0));
		free(lb_report(a, HA_FORMAT_JSON, 0));
		ha_analysis_free(a);
	}
	cr_assert_eq(last, 3, "the cut before END holds every event");
	lb_free(&b);
}

Test(reader, partial_last_frame_keeps_events_before)
{
	struct lb b;
	struct ha_analysis *a;

	build_basic(&b, false);
	lb_chunk(&b, 1, 100, 100);
	lb_alloc(&b, 8, HALLOC_FN_MALLOC, 0x4000, 1000, 1);
	lb_chunk_end(&b);
	b.len -= 2; /* the last chunk is cut short */
	cr_assert_eq(lb_analyze_bytes(b.buf, b.len, &a, NULL), HA_OK);
	cr_assert(strstr(ha_analysis_incomplete_reason(a), "inside a frame"),
		  "%s", ha_analysis_incomplete_reason(a));
	cr_assert_eq(process(a, 0).summary.allocations, 3);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(reader, corrupt_record_keeps_what_came_before)
{
	struct lb b;
	struct ha_analysis *a = NULL;
	struct ha_diag d;
	size_t bad_at;
	char where[64];
	const unsigned char bad = 0x0f; /* record kind 15 does not exist */

	build_basic(&b, false);
	lb_chunk(&b, 1, 100, 100);
	lb_alloc(&b, 10, HALLOC_FN_MALLOC, 0x5000, 5, 1);
	bad_at = b.len;
	lb_raw(&b, &bad, 1);
	lb_alloc(&b, 11, HALLOC_FN_MALLOC, 0x6000, 6, 1);
	/* A whole frame after the bad one is not read either. */
	lb_chunk(&b, 1, 100, 100);
	lb_alloc(&b, 12, HALLOC_FN_MALLOC, 0x7000, 7, 1);
	lb_end(&b);

	cr_assert_eq(lb_analyze(&b, &a, &d), HA_ERR_CORRUPT);
	cr_assert_not_null(a, "the analysis is kept");
	cr_assert(ha_analysis_corrupt(a));
	cr_assert_not(ha_analysis_complete(a));
	snprintf(where, sizeof(where), "byte %zu", bad_at);
	cr_assert(strstr(d.message, where), "'%s' does not say %s", d.message,
		  where);
	cr_assert(strstr(d.message, "corrupt"), "%s", d.message);
	cr_assert_eq(process(a, 0).summary.allocations, 4,
		     "3 before + the one in its chunk");
	cr_assert_eq(process(a, 0).summary.bytes_allocated, 117);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(reader, seq_not_increasing_is_corrupt)
{
	struct lb b;
	struct ha_analysis *a;

	build_basic(&b, true);
	lb_chunk(&b, 1, 100, 100);
	lb_alloc(&b, 20, HALLOC_FN_MALLOC, 0x5000, 5, 1);
	lb_alloc(&b, 20, HALLOC_FN_MALLOC, 0x6000, 5, 1);
	cr_assert_eq(lb_analyze(&b, &a, NULL), HA_ERR_CORRUPT);
	cr_assert_eq(process(a, 0).summary.allocations, 4);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(reader, oversized_chunk_is_corrupt)
{
	struct lb b;
	struct ha_analysis *a;
	unsigned char big[HALLOC_FRAME_MAX] = {0};

	build_basic(&b, false);
	lb_frame(&b, HALLOC_FRAME_CHUNK, big, sizeof(big));
	lb_end(&b);
	cr_assert_eq(lb_analyze(&b, &a, NULL), HA_ERR_CORRUPT);
	cr_assert_eq(process(a, 0).summary.allocations, 3);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(reader, unknown_frames_are_skipped)
{
	struct lb b;
	struct ha_analysis *a;
	static const char junk[] = "\xff\xfe future frame \x80\x80";

	lb_init(&b, 100, prog_argv);
	lb_frame(&b, 77, junk, sizeof(junk));
	{
		struct lb rest;

		build_basic(&rest, true);
		/* the basic log's frames, after its file header */
		lb_raw(&b, rest.buf + 16, rest.len - 16);
		lb_free(&rest);
	}
	cr_assert_eq(lb_analyze(&b, &a, NULL), HA_OK);
	cr_assert(ha_analysis_complete(a));
	cr_assert_eq(process(a, 0).summary.allocations, 3);
	ha_analysis_free(a);
	lb_free(&b);
}

/* Random damage: any result is fine but a crash, an out-of-bounds read
 * (run under valgrind/ASan to see those) or an error without a message. */
Test(reader, random_damage)
{
	struct lb b;
	unsigned seed = 12345;

	build_basic(&b, true);
	for (int round = 0; round < 3000; round++) {
		unsigned char *copy = malloc(b.len);
		struct ha_analysis *a = NULL;
		struct ha_diag d = {{0}};
		enum ha_result res;
		int flips = 1 + round % 4;

		memcpy(copy, b.buf, b.len);
		for (int i = 0; i < flips; i++) {
			size_t at = 16 + (size_t)rand_r(&seed) % (b.len - 16);

			copy[at] ^= (unsigned char)(1 + rand_r(&seed) % 255);
		}
		res = lb_analyze_bytes(copy, b.len, &a, &d);
		cr_assert(res == HA_OK || res == HA_ERR_CORRUPT, "round %d: %s",
			  round, ha_result_name(res));
		cr_assert_not_null(a);
		if (res == HA_ERR_CORRUPT)
			cr_assert(d.message[0],
				  "round %d: corrupt without a message", round);
		free(lb_report(a, HA_FORMAT_TEXT, 0));
		free(lb_report(a, HA_FORMAT_JSON, 0));
		ha_analysis_free(a);
		free(copy);
	}
	lb_free(&b);
}

Test(reader, analyze_file_errors)
{
	struct ha_analysis *a = (void *)1;
	struct ha_diag d;

	cr_assert_eq(ha_analyze_file("/nonexistent/x.hlog", NULL, &a, &d),
		     HA_ERR_IO);
	cr_assert_null(a);
	cr_assert_str_eq(
	    d.message,
	    "cannot open '/nonexistent/x.hlog': No such file or directory");
}

Test(reader, analyze_file_reads_a_file)
{
	struct lb b;
	struct ha_analysis *a;
	char *path;

	build_basic(&b, true);
	path = lb_write_temp(&b);
	cr_assert_eq(ha_analyze_file(path, NULL, &a, NULL), HA_OK);
	cr_assert_eq(process(a, 0).summary.allocations, 3);
	ha_analysis_free(a);
	unlink(path);
	free(path);
	lb_free(&b);
}
