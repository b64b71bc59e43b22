/*
 * tests/unit/analyzer_sample.c - sampled logs (halloc-trace --sample): what
 * one sampled block stands for (analyzer/sample.h), and a sampled log's
 * report: scaled numbers, and saying that it is sampled.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "agent/varint.h"
#include "analyzer/sample.h"
#include "halloc/log.h"
#include "log_builder.h"

Test(sample, weight_is_the_inverse_of_the_probability)
{
	/* s = interval: sampled with probability 1 - 1/e. */
	cr_assert_float_eq(ha_sample_weight(4096, 4096), 1 / (1 - exp(-1.0)),
			   1e-12);
	/* Small blocks stand for about interval / s blocks. */
	cr_assert_float_eq(ha_sample_weight(524288, 16), 524288.0 / 16 + 0.5,
			   1e-3);
	/* Blocks much bigger than the interval are always sampled. */
	cr_assert_float_eq(ha_sample_weight(4096, 1 << 20), 1.0, 1e-12);
	/* A 0-byte block is sampled as if it had 1 byte. */
	cr_assert_float_eq(ha_sample_weight(4096, 0), ha_sample_weight(4096, 1),
			   1e-12);
}

Test(sample, rounding_is_unbiased_and_repeatable)
{
	const uint64_t interval = 4096, size = 3000;
	double w = ha_sample_weight(interval, size);
	double blocks = 0, bytes = 0;
	const unsigned n = 200000;

	for (uint64_t key = 0; key < n; key++) {
		uint64_t b, y, b2, y2;

		ha_sample_scale(interval, size, key * 0x10 + 0x7f0000, &b, &y);
		cr_assert(b == (uint64_t)floor(w) || b == (uint64_t)ceil(w),
			  "blocks %llu for weight %f", (unsigned long long)b,
			  w);
		ha_sample_scale(interval, size, key * 0x10 + 0x7f0000, &b2,
				&y2);
		cr_assert(b == b2 && y == y2, "not repeatable");
		blocks += (double)b;
		bytes += (double)y;
	}
	cr_assert_float_eq(blocks / n, w, w * 0.005);
	cr_assert_float_eq(bytes / n, w * size, w * size * 0.005);
	/* Never less than the block itself. */
	for (uint64_t key = 0; key < 1000; key++) {
		uint64_t b, y;

		ha_sample_scale(interval, 1 << 20, key, &b, &y);
		cr_assert_eq(b, 1);
		cr_assert_eq(y, 1 << 20);
	}
}

/* A TRACE_INFO saying the log is sampled every `interval` bytes. */
static void sampled_info(struct lb *b, uint64_t interval)
{
	unsigned char p[64], *q = p;

	q = halloc_put_uv(q, HALLOC_RECORDER_PRELOAD);
	q = halloc_put_uv(q, 0);
	q = halloc_put_uv(q, HALLOC_DEPTH_DEFAULT);
	q = halloc_put_uv(q, 1000);
	q = halloc_put_uv(q, 100);
	q = halloc_put_uv(q, 1);
	q = halloc_put_uv(q, 6);
	memcpy(q, "./prog", 6);
	q += 6;
	q = halloc_put_uv(q, interval);
	lb_frame(b, HALLOC_FRAME_TRACE_INFO, p, (size_t)(q - p));
}

Test(sample, report_scales_and_says_so)
{
	static const char *const argv[] = {"./prog", NULL};
	const uint64_t frames[] = {0x401001, 0x402001};
	struct ha_analysis *a = NULL;
	struct ha_process_info info;
	struct ha_diag d;
	struct lb b;
	uint64_t small_blocks, small_bytes;
	char *text, *json;

	lb_init(&b, 100, NULL);
	sampled_info(&b, 4096);
	lb_chunk(&b, 1, 100, 100);
	lb_process(&b, 1, 100, 1, 0, 0, 0, 10, "/src/prog", argv);
	lb_module(&b, 2, 1, 0, "/src/prog", "", 0, 0x400000, 0x10000);
	lb_stack(&b, 3, 1, 2, frames);
	lb_alloc(&b, 10, HALLOC_FN_MALLOC, 0x100000, 1 << 20, 1);
	lb_alloc(&b, 11, HALLOC_FN_MALLOC, 0x2000, 100, 1);
	lb_free_rec(&b, 12, HALLOC_FREE_FREE, 0x2000);
	lb_exit(&b, 100, HALLOC_EXIT_CODE, 0);
	lb_end(&b);
	cr_assert_eq(lb_analyze(&b, &a, &d), HA_OK, "%s", d.message);
	cr_assert(ha_analysis_process(a, 0, &info));

	ha_sample_scale(4096, 100, 0x2000 ^ 11, &small_blocks, &small_bytes);
	cr_assert_gt(small_blocks, 30); /* about 41.5 */
	cr_assert_eq(info.summary.allocations, 1 + small_blocks);
	cr_assert_eq(info.summary.frees, small_blocks);
	cr_assert_eq(info.summary.bytes_allocated, (1 << 20) + small_bytes);
	cr_assert_eq(info.summary.leaked_bytes, 1 << 20);
	cr_assert_eq(info.summary.leaked_blocks, 1);
	cr_assert_eq(info.summary.peak_blocks, 1 + small_blocks);
	cr_assert_eq(info.summary.peak_bytes, (1 << 20) + small_bytes);

	text = lb_report(a, HA_FORMAT_TEXT, 4);
	cr_assert(strstr(text, "sampled: one allocation per 4.00 KiB"), "%s",
		  text);
	json = lb_report(a, HA_FORMAT_JSON, 4);
	cr_assert(strstr(json, "\"sampled\": { \"interval\": 4096 }"), "%s",
		  json);
	free(text);
	free(json);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(sample, exact_log_says_null)
{
	static const char *const argv[] = {"./prog", NULL};
	struct ha_analysis *a = NULL;
	struct ha_diag d;
	struct lb b;
	char *json;

	lb_init(&b, 100, argv);
	lb_end(&b);
	cr_assert_eq(lb_analyze(&b, &a, &d), HA_OK, "%s", d.message);
	json = lb_report(a, HA_FORMAT_JSON, 4);
	cr_assert(strstr(json, "\"sampled\": null"), "%s", json);
	free(json);
	ha_analysis_free(a);
	lb_free(&b);
}
