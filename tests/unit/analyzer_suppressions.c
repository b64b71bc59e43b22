/*
 * tests/unit/analyzer_suppressions.c - LeakSanitizer-style patterns: a
 * substring unless ^ or $ anchor it, `*` any run of characters; and the
 * file format (leak: lines, comments, blank lines; anything else an error).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyzer/analyzer.h"

Test(suppressions, pattern_match)
{
	static const struct {
		const char *pattern, *s;
		bool want;
	} cases[] = {
	    {"leak_big", "leak_big", true},
	    {"eak_bi", "leak_big", true},       /* substring */
	    {"^leak", "leak_big", true},        {"^eak", "leak_big", false},
	    {"big$", "leak_big", true},         {"bi$", "leak_big", false},
	    {"^leak_big$", "leak_big", true},   {"^leak_bi$", "leak_big", false},
	    {"l*g", "leak_big", true},          {"^l*k_b*$", "leak_big", true},
	    {"^*big", "leak_big", true},        {"x*y", "leak_big", false},
	    {"*", "anything", true},            {"a**b", "a_then_b", true},
	    {"/src/*.c", "/src/dir/x.c", true}, {"peak.c", "", false},
	    {"libfoo.so", "/usr/lib/libfoo.so.1", true},
	    {"^libfoo", "/usr/lib/libfoo.so.1", false},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect(ha_suppression_match(cases[i].pattern, cases[i].s) ==
			      cases[i].want,
			  "'%s' on '%s': want %d", cases[i].pattern,
			  cases[i].s, cases[i].want);
}

static char *write_temp(const char *text)
{
	char *path = strdup("/tmp/halloc-supp-XXXXXX");
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");

	cr_assert(f);
	fputs(text, f);
	fclose(f);
	return path;
}

Test(suppressions, file_format)
{
	struct ha_suppressions *s = NULL;
	struct ha_diag d = {{0}};
	char *ok = write_temp("# comment\n\n  leak:foo  \nleak:^bar$\n"),
	     *bad = write_temp("leak:foo\nfun:bar\n"),
	     *empty = write_temp("leak:\n");

	cr_assert(ha_suppressions_load(ok, &s, &d) == HA_OK, "%s", d.message);
	cr_assert(ha_suppressions_count(s) == 2);
	cr_expect_str_eq(ha_suppressions_entry(s, 0)->pattern, "leak:foo");
	cr_expect(ha_suppressions_entry(s, 0)->line == 3);
	cr_expect(ha_suppressions_entry(s, 1)->line == 4);
	cr_expect(ha_suppressions_entry(s, 2) == NULL);
	ha_suppressions_free(s);

	cr_expect(ha_suppressions_load(bad, &s, &d) == HA_ERR_CORRUPT);
	cr_expect(s == NULL);
	cr_expect(strstr(d.message, "line 2"), "%s", d.message);
	cr_expect(ha_suppressions_load(empty, &s, &d) == HA_ERR_CORRUPT);
	cr_expect(ha_suppressions_load("/nonexistent/x.supp", &s, &d) ==
		  HA_ERR_IO);
	cr_expect(strstr(d.message, "'/nonexistent/x.supp'"), "%s", d.message);
	unlink(ok);
	unlink(bad);
	unlink(empty);
	free(ok);
	free(bad);
	free(empty);
}
