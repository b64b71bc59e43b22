/*
 * tests/unit/analyzer_refusals.c - REFUSED records (fault injection,
 * --limit, the memory monitor): read apart from the events, never
 * counted, reported by site and reason with how the process ended.
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "halloc/log.h"
#include "log_builder.h"

static const char *const argv_[] = {"./oom", NULL};

/* ./oom: one malloc of 100 at main (oom.c:10), then three refusals at
 * take (oom.c:20) by --fail-after and one at main (oom.c:10) by --limit,
 * the last (seq 9) at take; it ends as `how` says. */
static void build_oom(struct lb *b, unsigned how, uint64_t value)
{
	static const struct lb_sym main_[] = {{"main", "/src/oom.c", 10}};
	static const struct lb_sym take[] = {{"take", "/src/oom.c", 20}};
	const uint64_t at_main[] = {0x401001}, at_take[] = {0x402001};

	lb_init(b, 77, argv_);
	lb_chunk(b, 1, 77, 77);
	lb_process(b, 1, 77, 1, 0, 0, 0, 10, "/src/oom", argv_);
	lb_module(b, 2, 1, 0, "/src/oom", "", 0, 0x400000, 0x10000);
	lb_stack(b, 3, 1, 1, at_main);
	lb_stack(b, 4, 2, 1, at_take);
	lb_alloc(b, 5, HALLOC_FN_MALLOC, 0x1000, 100, 1);
	lb_refused(b, 6, HALLOC_FN_MALLOC, 32, 2, HALLOC_REFUSED_FAIL_AFTER);
	lb_refused(b, 7, HALLOC_FN_CALLOC, 64, 1, HALLOC_REFUSED_LIMIT);
	lb_chunk(b, 1, 77,
		 78); /* another thread: file order is not seq order */
	lb_refused(b, 9, HALLOC_FN_MALLOC, 32, 2, HALLOC_REFUSED_FAIL_AFTER);
	lb_chunk(b, 1, 77, 77);
	lb_refused(b, 8, HALLOC_FN_REALLOC, 32, 2, HALLOC_REFUSED_FAIL_AFTER);
	lb_exit(b, 77, how, value);
	lb_symbols(b, "/src/oom", "", 0x401000, 1, main_);
	lb_symbols(b, "/src/oom", "", 0x402000, 1, take);
	lb_end(b);
}

/* Each string after the previous one; the list ends with NULL. */
static bool has_in_order(const char *text, ...)
{
	const char *s;
	va_list ap;
	bool ok = true;

	va_start(ap, text);
	while (ok && (s = va_arg(ap, const char *))) {
		const char *at = strstr(text, s);

		ok = at != NULL;
		if (ok)
			text = at + strlen(s);
	}
	va_end(ap);
	return ok;
}

static struct ha_analysis *analyze(struct lb *b)
{
	struct ha_analysis *a = NULL;
	struct ha_diag d;

	cr_assert(lb_analyze(b, &a, &d) == HA_OK, "%s", d.message);
	return a;
}

Test(refusals, not_counted)
{
	struct ha_process_info info;
	struct ha_analysis *a;
	struct lb b;

	build_oom(&b, HALLOC_EXIT_CODE, 0);
	a = analyze(&b);
	cr_assert(ha_analysis_process(a, 0, &info));
	cr_expect_eq(info.summary.allocations, 1);
	cr_expect_eq(info.summary.bytes_allocated, 100);
	cr_expect_eq(info.summary.failed_allocations, 0);
	cr_expect_eq(info.summary.leaked_blocks, 1);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(refusals, text_by_site_then_exit)
{
	struct ha_analysis *a;
	struct lb b;
	char *text;

	build_oom(&b, HALLOC_EXIT_CODE, 3);
	a = analyze(&b);
	text = lb_report(a, HA_FORMAT_TEXT, 0);
	cr_expect(strstr(text, "REFUSED ALLOCATIONS"), "%s", text);
	cr_expect(strstr(text, "  3 calls, 96 B, at take (oom.c:20): "
			       "--fail-after\n"
			       "  1 call, 64 B, at main (oom.c:10): --limit\n"
			       "  then it exited with status 3\n"),
		  "%s", text);
	cr_expect(!strstr(text, "last refused"), "%s", text);
	free(text);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(refusals, killed_names_last_refusal)
{
	struct ha_analysis *a;
	struct lb b;
	char *text;

	build_oom(&b, HALLOC_EXIT_SIGNAL, 11);
	a = analyze(&b);
	text = lb_report(a, HA_FORMAT_TEXT, 0);
	cr_expect(strstr(text, "then it was killed by SIGSEGV (signal 11); the "
			       "last refused call was\n  malloc(32) at take "
			       "(oom.c:20):\n  #0 take /src/oom.c:20"),
		  "%s", text);
	free(text);
	text = lb_report(a, HA_FORMAT_JSON, 0);
	cr_expect(strstr(text, "\"killed_after_refusal\": true"), "%s", text);
	cr_expect(has_in_order(
		      text, "\"refused\": [", "\"line\": 20",
		      "\"reason\": \"fail-after\"", "\"allocations\": 3",
		      "\"bytes\": 96", "\"line\": 10", "\"reason\": \"limit\"",
		      "\"allocations\": 1", "\"bytes\": 64", "]", NULL),
		  "%s", text);
	/* the last by sequence number (9): a malloc, not seq 8's realloc */
	cr_expect(has_in_order(text, "\"last_refused\": {",
			       "\"function\": \"malloc\"", "\"size\": 32",
			       "\"reason\": \"fail-after\"", "\"line\": 20",
			       "\"stack\": [", "\"function\": \"take\"", NULL),
		  "%s", text);
	free(text);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(refusals, none_in_json)
{
	static const struct lb_sym main_[] = {{"main", "/src/oom.c", 10}};
	const uint64_t at_main[] = {0x401001};
	struct ha_analysis *a;
	struct lb b;
	char *text;

	lb_init(&b, 77, argv_);
	lb_chunk(&b, 1, 77, 77);
	lb_process(&b, 1, 77, 1, 0, 0, 0, 10, "/src/oom", argv_);
	lb_module(&b, 2, 1, 0, "/src/oom", "", 0, 0x400000, 0x10000);
	lb_stack(&b, 3, 1, 1, at_main);
	lb_alloc(&b, 4, HALLOC_FN_MALLOC, 0x1000, 100, 1);
	lb_exit(&b, 77, HALLOC_EXIT_SIGNAL, 6);
	lb_symbols(&b, "/src/oom", "", 0x401000, 1, main_);
	lb_end(&b);
	a = analyze(&b);
	text = lb_report(a, HA_FORMAT_JSON, 0);
	cr_expect(has_in_order(text, "\"refused\": []",
			       "\"killed_after_refusal\": false",
			       "\"last_refused\": null", NULL),
		  "%s", text);
	free(text);
	text = lb_report(a, HA_FORMAT_TEXT, 0);
	cr_expect(!strstr(text, "REFUSED"), "%s", text);
	free(text);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(refusals, truncated_record_is_corrupt)
{
	struct ha_analysis *a = NULL;
	const unsigned char bad[] = {
	    HALLOC_RECORD_TAG(HALLOC_REC_REFUSED, HALLOC_FN_MALLOC), 1, 0, 32};
	struct ha_diag d;
	struct lb b;

	lb_init(&b, 77, argv_);
	lb_chunk(&b, 1, 77, 77);
	lb_process(&b, 1, 77, 1, 0, 0, 0, 10, "/src/oom", argv_);
	lb_raw(&b, bad, sizeof(bad));
	lb_end(&b);
	cr_expect_eq(lb_analyze(&b, &a, &d), HA_ERR_CORRUPT);
	cr_expect(strstr(d.message, "bad refused-allocation record"), "%s",
		  d.message);
	ha_analysis_free(a);
	lb_free(&b);
}
