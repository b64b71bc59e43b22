/*
 * tests/unit/tracer_faults.c - fault injection's HALLOC_AGENT keys, and
 * --fail-at FILE:LINE looked up in a line table: this test binary's own
 * (it is built with -g), at lines of this file.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tracer/faults.h"

static char self[4096];

static const char *self_path(void)
{
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	cr_assert(n > 0);
	self[n] = '\0';
	return self;
}

/* Code on a line of its own, which the lookup must find. */
static const unsigned marked_line = __LINE__ + 3;
static int __attribute__((noinline)) marked(int x)
{
	return x * 3 + 1;
}

Test(tracer_faults, nothing_asked)
{
	struct ht_faults f = {0};
	struct ht_diag d = {{0}};
	char *keys = (char *)"x";

	cr_assert_eq(ht_fault_keys(&f, self_path(), "unit", &keys, &d), HT_OK);
	cr_expect_null(keys);
}

Test(tracer_faults, counts_and_rate)
{
	struct ht_faults f = {.fail_after = 37,
			      .fail_rate_set = true,
			      .fail_rate_ppb = 250000000,
			      .seed = 9};
	struct ht_diag d = {{0}};
	char *keys;

	cr_assert_eq(ht_fault_keys(&f, self_path(), "unit", &keys, &d), HT_OK);
	cr_expect_str_eq(keys, ",fail_after=37,fail_rate=250000000,seed=9");
	free(keys);
}

Test(tracer_faults, line_found)
{
	struct ht_faults f = {.fail_at_file = "tracer_faults.c",
			      .fail_at_line = marked_line};
	struct ht_diag d = {{0}};
	char *keys;

	cr_expect_eq(marked(1), 4);
	cr_assert_eq(ht_fault_keys(&f, self_path(), "unit", &keys, &d), HT_OK,
		     "%s", d.message);
	cr_expect(!strncmp(keys, ",fail_exe=", 10), "%s", keys);
	cr_expect(strstr(keys, ",fail_at="), "%s", keys);
	cr_expect(strstr(keys, ",fail_len="), "%s", keys);
	free(keys);
	/* a longer path that ends in it, whole components only */
	f.fail_at_file = "unit/tracer_faults.c";
	cr_assert_eq(ht_fault_keys(&f, self_path(), "unit", &keys, &d), HT_OK,
		     "%s", d.message);
	free(keys);
	f.fail_at_file = "r_faults.c";
	cr_expect_eq(ht_fault_keys(&f, self_path(), "unit", &keys, &d),
		     HT_ERR_USAGE);
}

Test(tracer_faults, line_not_found)
{
	struct ht_faults f = {.fail_at_file = "tracer_faults.c",
			      .fail_at_line = 1};
	struct ht_diag d = {{0}};
	char *keys;

	cr_assert_eq(ht_fault_keys(&f, self_path(), "unit", &keys, &d),
		     HT_ERR_USAGE);
	cr_expect_str_eq(d.message,
			 "invalid --fail-at 'tracer_faults.c:1': line 1 of "
			 "'tracer_faults.c' has no code in 'unit' or its "
			 "libraries");
	f.fail_at_file = "no_such_file.c";
	cr_assert_eq(ht_fault_keys(&f, self_path(), "unit", &keys, &d),
		     HT_ERR_USAGE);
	cr_expect(strstr(d.message, "no file 'no_such_file.c'"), "%s",
		  d.message);
	cr_expect_eq(ht_result_exit_status(HT_ERR_USAGE), 2);
}

Test(tracer_faults, no_debug_information)
{
	struct ht_faults f = {.fail_at_file = "x.c", .fail_at_line = 3};
	struct ht_diag d = {{0}};
	char *keys;

	cr_assert_eq(ht_fault_keys(&f, "/bin/true", "true", &keys, &d),
		     HT_ERR_USAGE);
	cr_expect(strstr(d.message, "'true'"), "%s", d.message);
}
