/*
 * tests/unit/analyzer_kept_frames.c - the first reading of a compressed log
 * keeps the zstd frames it decompresses for the replay, up to a budget
 * (HA_KEEP_BUDGET, analyzer/log_source.h); frames past it are decompressed
 * again. Whatever the budget keeps, the replay reads the log's own bytes,
 * and a log bigger than the budget reports what its plain copy does.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analyzer/decode.h"
#include "analyzer/log_source.h"
#include "analyzer/model.h"
#include "analyzer/read_ahead.h"
#include "halloc/log.h"
#include "log_builder.h"

static const char *const prog_argv[] = {"./prog", NULL};

/* The block of pair i: thread 100 or 101's, 1024 live at a time. */
static uint64_t addr_of(uint64_t i)
{
	return ((100 + (i / 150) % 2) << 32) + (i % 1024) * 0x40;
}

/* Two threads whose chunks interleave in seq: `pairs` allocations and
 * frees, a window of live blocks each, a few left live at the end. */
static void build(struct lb *b, uint64_t pairs)
{
	const uint64_t frames[] = {0x401001, 0x401200};
	uint64_t seq = 10;

	lb_init(b, 100, prog_argv);
	lb_chunk(b, 1, 100, 100);
	lb_process(b, 1, 100, 1, 0, 0, 0, 5000, "/src/prog", prog_argv);
	lb_module(b, 2, 1, 0, "/src/prog", "", 0, 0x400000, 0x10000);
	lb_stack(b, 3, 1, 2, frames);
	for (uint64_t i = 0; i < pairs;) {
		lb_chunk(b, 1, 100, 100 + (uint32_t)(i / 150) % 2);
		b->buf[b->chunk_at + 6] = HALLOC_FRAME_EVENTS_ONLY;
		for (unsigned k = 0; k < 150 && i < pairs; k++, i++) {
			/* A block allocated now is freed 1024 pairs later. */
			if (i >= 1024)
				lb_free_rec(b, seq++, HALLOC_FREE_FREE,
					    addr_of(i - 1024));
			lb_alloc(b, seq++, HALLOC_FN_MALLOC, addr_of(i),
				 16 + i % 2000, 1);
		}
	}
	lb_exit(b, 100, HALLOC_EXIT_CODE, 0);
	lb_end(b);
}

/* The log in zstd frames of `frame` bytes each (cut anywhere: chunks
 * span frames), or plain when frame is 0. */
static char *write_file(const struct lb *b, size_t frame)
{
	char *path = strdup("/tmp/halloc-unit-XXXXXX");
	int fd = mkstemp(path);

	cr_assert(fd >= 0);
	if (!frame)
		cr_assert_eq(write(fd, b->buf, b->len), (ssize_t)b->len);
	for (size_t at = 0; frame && at < b->len; at += frame)
		cr_assert(ha_append_compressed(
		    fd, b->buf + at, b->len - at < frame ? b->len - at : frame));
	close(fd);
	return path;
}

/* Reads the log keeping up to `budget` bytes, then reads every chunk back
 * as the replay does; returns how many frames were kept. */
static size_t read_back(const struct lb *b, const char *path, size_t budget)
{
	FILE *f = fopen(path, "rb");
	struct ha_log *log;
	struct ha_diag d;
	struct ha_fetch *fetch;
	unsigned char *buf = malloc(HALLOC_FRAME_MAX + HA_SLACK);
	size_t kept = 0;

	cr_assert(f && buf);
	cr_assert_eq(ha_log_read_keeping(f, path, true, budget, &log, &d),
		     HA_OK, "%s", d.message);
	cr_assert(log->compressed);
	cr_assert_gt(log->nchunks, 100);
	for (size_t i = 0; i < log->nzframes; i++)
		kept += log->zframes[i].plain != NULL;
	fetch = ha_fetch_new(f, log);
	cr_assert(fetch);
	for (size_t i = 0; i < log->nchunks; i++) {
		const struct ha_chunk_ref *r = &log->chunks[i];
		const unsigned char *p = ha_fetch_view(fetch, r->at, r->len, buf);

		cr_assert(p, "chunk %zu", i);
		cr_assert_eq(memcmp(p, b->buf + r->at, r->len), 0,
			     "chunk %zu at %llu, budget %zu", i,
			     (unsigned long long)r->at, budget);
	}
	ha_fetch_free(fetch);
	ha_log_free(log);
	fclose(f);
	free(buf);
	return kept;
}

Test(kept_frames, every_budget_reads_the_logs_own_bytes)
{
	struct lb b;
	char *path;
	size_t none, some, all;

	build(&b, 40000);
	path = write_file(&b, 20000);
	none = read_back(&b, path, 0);
	/* Room for a few frames: the first ones are kept, the rest not. */
	some = read_back(&b, path, 400000);
	all = read_back(&b, path, HA_KEEP_BUDGET);
	cr_assert_eq(none, 0);
	cr_assert(some > 0 && some < all, "kept %zu of %zu", some, all);
	/* Every whole frame fits the default budget. */
	cr_assert_geq(all, b.len / 20000);
	unlink(path);
	free(path);
	lb_free(&b);
}

static char *report_of(const char *path)
{
	struct ha_analysis *a;
	struct ha_diag d;
	char *json, *text, *both;

	cr_assert_eq(ha_analyze_file(path, NULL, &a, &d), HA_OK, "%s",
		     d.message);
	json = lb_report(a, HA_FORMAT_JSON, 0);
	text = lb_report(a, HA_FORMAT_TEXT, 0);
	cr_assert(asprintf(&both, "%s\n%s", json, text) > 0);
	free(json);
	free(text);
	ha_analysis_free(a);
	return both;
}

/* Bigger than the budget: the first frames are kept, the others read
 * again; the report is the plain file's, as a small log's, kept whole, is
 * its plain copy's. */
Test(kept_frames, log_past_the_budget_reports_as_plain, .timeout = 120)
{
	struct lb b;
	uint64_t per_pair;

	build(&b, 100000);
	per_pair = b.len / 100000;
	for (int big = 0; big < 2; big++) {
		char *plain, *packed, *want, *got;

		if (big) {
			build(&b, HA_KEEP_BUDGET / per_pair * 9 / 8);
			cr_assert_gt(b.len, HA_KEEP_BUDGET);
		}
		plain = write_file(&b, 0);
		packed = write_file(&b, 1u << 20);
		want = report_of(plain);
		got = report_of(packed);
		cr_assert_str_eq(got, want, "big %d", big);
		cr_assert(strstr(want, "\"leaked_blocks\": 1024"), "%s", want);
		unlink(plain);
		unlink(packed);
		free(plain);
		free(packed);
		free(want);
		free(got);
		lb_free(&b);
	}
}

/* The log written as write_file() writes it, cut to `keep` of its bytes. */
static char *write_cut(const struct lb *b, size_t frame, double keep)
{
	char *path = write_file(b, frame);
	struct stat st;

	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(truncate(path, (off_t)((double)st.st_size * keep)), 0);
	return path;
}

/* The read-ahead thread (analyzer/read_ahead.c) hands the merge what it
 * would have read itself: the same report, whole or cut short, plain or
 * compressed, frames kept or not. */
Test(kept_frames, read_ahead_reports_as_the_merge_alone, .timeout = 120)
{
	struct lb b;
	char *files[4];

	build(&b, 200000);
	files[0] = write_file(&b, 0);
	files[1] = write_file(&b, 1u << 20);
	files[2] = write_cut(&b, 0, 0.6);
	files[3] = write_cut(&b, 1u << 20, 0.6);
	for (int i = 0; i < 4; i++) {
		char *alone, *ahead;

		ha_ahead_min_bytes = UINT64_MAX;
		alone = report_of(files[i]);
		ha_ahead_min_bytes = 0;
		ahead = report_of(files[i]);
		ha_ahead_min_bytes = HA_AHEAD_MIN_BYTES;
		cr_assert_str_eq(ahead, alone, "file %d", i);
		cr_assert(strstr(alone, i < 2 ? "\"complete\": true"
					      : "\"complete\": false"),
			  "file %d: %.300s", i, alone);
		unlink(files[i]);
		free(files[i]);
		free(alone);
		free(ahead);
	}
	lb_free(&b);
}
