/*
 * tests/unit/analyzer_text_layout.c - how the text report writes sizes
 * (human units) and fits a width: the pure parts, without a log file.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "analyzer/report_text.h"
#include "halloc/log.h"
#include "log_builder.h"

Test(text_units, bytes_to_three_digits)
{
	static const struct {
		uint64_t bytes;
		const char *want;
	} cases[] = {
	    {0, "0 B"},
	    {1023, "1023 B"},
	    {1024, "1.00 KiB"},
	    {5000, "4.88 KiB"},
	    {10234, "9.99 KiB"},
	    {10235, "10.0 KiB"}, /* 9.9951 rounds up: one decimal fewer */
	    {100000, "97.7 KiB"},
	    {102348, "99.9 KiB"},
	    {102349, "100 KiB"},
	    {1048575, "1024 KiB"},
	    {1048576, "1.00 MiB"},
	    {3ull << 30, "3.00 GiB"},
	    {UINT64_MAX, "16.0 EiB"},
	};
	char buf[32];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_str_eq(ha_text_bytes(buf, cases[i].bytes),
				 cases[i].want, "%llu bytes",
				 (unsigned long long)cases[i].bytes);
}

Test(text_units, size_keeps_the_exact_count_from_1_kib)
{
	char buf[64];

	cr_expect_str_eq(ha_text_size(buf, 413), "413 B");
	cr_expect_str_eq(ha_text_size(buf, 5000), "4.88 KiB (5,000 bytes)");
}

/* One leak whose stack has a long module path. */
static struct ha_analysis *long_paths(struct lb *b)
{
	static const char *const argv[] = {"./p", NULL};
	static const char mod[] = "/a/very/long/directory/name/that/goes/on/"
				  "and/on/build/bin/program";
	static const struct lb_sym sym[] = {
	    {"main", "/a/very/long/directory/name/src/program.c", 7}};
	const uint64_t frames[] = {0x401001};
	struct ha_analysis *a = NULL;
	struct ha_diag d;

	lb_init(b, 7, argv);
	lb_chunk(b, 1, 7, 7);
	lb_process(b, 1, 7, 1, 0, 0, 0, 10, mod, argv);
	lb_module(b, 2, 1, 0, mod, "", 0, 0x400000, 0x10000);
	lb_stack(b, 3, 1, 1, frames);
	lb_alloc(b, 4, HALLOC_FN_MALLOC, 0x1000, 64, 1);
	lb_exit(b, 7, HALLOC_EXIT_CODE, 0);
	lb_symbols(b, mod, "", 0x401000, 1, sym);
	lb_end(b);
	cr_assert_eq(lb_analyze(b, &a, &d), HA_OK, "%s", d.message);
	return a;
}

static char *report(const struct ha_analysis *a, unsigned width)
{
	struct ha_report_options o = {.format = HA_FORMAT_TEXT, .width = width};
	struct ha_diag d;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	cr_assert_eq(ha_report_write(a, &o, f, &d), HA_OK, "%s", d.message);
	fclose(f);
	return text;
}

Test(text_width, long_stack_lines_take_basenames)
{
	struct lb b;
	struct ha_analysis *a = long_paths(&b);
	char *wide = report(a, 0), *narrow = report(a, 70),
	     *tiny = report(a, 30);

	cr_expect(strstr(wide, "  #0 main /a/very/long/directory/name/src/"
			       "program.c:7 (/a/very/long/directory/name/"
			       "that/goes/on/and/on/build/bin/program)\n"),
		  "%s", wide);
	cr_expect(strstr(narrow, "  #0 main /a/very/long/directory/name/src/"
				 "program.c:7 (program)\n"),
		  "%s", narrow);
	cr_expect(strstr(tiny, "  #0 main program.c:7 (program)\n"), "%s",
		  tiny);
	free(wide);
	free(narrow);
	free(tiny);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(text_width, long_function_names_lose_their_middle)
{
	static const char *const argv[] = {"./p", NULL};
	static const char mod[] = "/bin/p";
	static const struct lb_sym sym[] = {
	    {"std::vector<std::pair<std::basic_string<char>, std::map<int, "
	     "std::basic_string<char> > > >::_M_realloc_insert(iterator)",
	     "/src/p.cc", 7}};
	const uint64_t frames[] = {0x401001};
	struct ha_analysis *a = NULL;
	struct ha_diag d;
	struct lb b;
	char *text, *line;

	lb_init(&b, 7, argv);
	lb_chunk(&b, 1, 7, 7);
	lb_process(&b, 1, 7, 1, 0, 0, 0, 10, mod, argv);
	lb_module(&b, 2, 1, 0, mod, "", 0, 0x400000, 0x10000);
	lb_stack(&b, 3, 1, 1, frames);
	lb_alloc(&b, 4, HALLOC_FN_MALLOC, 0x1000, 64, 1);
	lb_exit(&b, 7, HALLOC_EXIT_CODE, 0);
	lb_symbols(&b, mod, "", 0x401000, 1, sym);
	lb_end(&b);
	cr_assert_eq(lb_analyze(&b, &a, &d), HA_OK, "%s", d.message);

	text = report(a, 80);
	line = strstr(text, "  #0 ");
	cr_assert(line, "%s", text);
	*strchr(line, '\n') = '\0';
	cr_expect_eq(strlen(line), 80, "%s", line);
	cr_expect_str_eq(line, "  #0 std::vector<std::pair<std::bas... >::"
			       "_M_realloc_insert(iterator) p.cc:7 (p)");
	free(text);
	text = report(a, 0);
	cr_expect(strstr(text, sym[0].function), "%s", text);
	free(text);
	ha_analysis_free(a);
	lb_free(&b);
}
