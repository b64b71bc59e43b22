/*
 * tests/unit/analyzer_sites.c - choosing the allocation site: skipping the
 * agent, the C/C++ runtime and system-header templates; grouping leaks by
 * site with the largest contributor's stack; modules looked up at the
 * stack's time; symbols from the log's SYMBOLS frames.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "analyzer/analysis.h"
#include "halloc/log.h"
#include "log_builder.h"

static const char *const prog_argv[] = {"./app", NULL};

#define AGENT	  "/opt/halloc/lib/libhalloc.so"
#define LIBC	  "/lib/x86_64-linux-gnu/libc.so.6"
#define LIBSTDCXX "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"
#define APP	  "/src/app"

#define AGENT_BASE 0x7f2000000000ull
#define LIBC_BASE  0x7f0000000000ull
#define CXX_BASE   0x7f1000000000ull

/* The modules and the names of the addresses the tests use. */
static void modules_and_symbols(struct lb *b)
{
	static const struct lb_sym agent_malloc[] = {
	    {"malloc", "/src/agent/alloc.c", 40}};
	static const struct lb_sym strdup_[] = {
	    {"strdup", "./string/strdup.c", 42}};
	static const struct lb_sym new_[] = {
	    {"operator new(unsigned long)", "", 0}};
	static const struct lb_sym push_back[] = {
	    {"std::vector<int>::push_back(int const&)",
	     "/usr/include/c++/12/bits/stl_vector.h", 1287},
	    {"make_list", "/src/app.c", 12},
	};
	static const struct lb_sym main_[] = {{"main", "/src/app.c", 30}};
	static const struct lb_sym other[] = {{"other", "/src/app.c", 50}};

	lb_chunk(b, 1, 100, 100);
	lb_process(b, 1, 100, 1, 0, 0, 0, 10, APP, prog_argv);
	lb_module(b, 2, 1, 0, APP, "\x12\x34", 2, 0x400000, 0x10000);
	lb_module(b, 3, 2, LIBC_BASE, LIBC, "", 0, LIBC_BASE, 0x200000);
	lb_module(b, 4, 3, CXX_BASE, LIBSTDCXX, "", 0, CXX_BASE, 0x200000);
	lb_module(b, 5, 4, AGENT_BASE, AGENT, "", 0, AGENT_BASE, 0x10000);
	/* offsets are return address - 1 - bias */
	lb_symbols(b, AGENT, "", 0x1000, 1, agent_malloc);
	lb_symbols(b, LIBC, "", 0x1000, 1, strdup_);
	lb_symbols(b, LIBSTDCXX, "", 0x2000, 1, new_);
	lb_symbols(b, APP, "1234", 0x401000, 2, push_back);
	lb_symbols(b, APP, "1234", 0x402000, 1, main_);
	lb_symbols(b, APP, "1234", 0x403000, 1, other);
}

static struct ha_analysis *analyze(struct lb *b)
{
	struct ha_analysis *a = NULL;
	struct ha_diag d;

	lb_exit(b, 100, HALLOC_EXIT_CODE, 0);
	lb_end(b);
	cr_assert_eq(lb_analyze(b, &a, &d), HA_OK, "%s", d.message);
	return a;
}

static struct ha_leak_info leak(const struct ha_analysis *a, unsigned i)
{
	struct ha_leak_info l;

	cr_assert(ha_analysis_leak(a, 0, i, &l), "no leak %u", i);
	return l;
}

Test(sites, skips_agent_runtime_and_system_headers)
{
	const uint64_t frames[] = {AGENT_BASE + 0x1001, LIBC_BASE + 0x1001,
				   CXX_BASE + 0x2001, 0x401001, 0x402001};
	struct lb b;
	struct ha_analysis *a;
	struct ha_leak_info l;

	lb_init(&b, 100, prog_argv);
	modules_and_symbols(&b);
	lb_chunk(&b, 1, 100, 100);
	lb_stack(&b, 10, 1, 5, frames);
	lb_alloc(&b, 11, HALLOC_FN_MALLOC, 0x1000, 24, 1);
	a = analyze(&b);
	l = leak(a, 0);
	cr_assert_str_eq(l.function, "make_list");
	cr_assert_str_eq(l.file, "/src/app.c");
	cr_assert_eq(l.line, 12);
	cr_assert_eq(l.bytes, 24);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(sites, stack_shows_no_agent_frame_and_expands_inlines)
{
	const uint64_t frames[] = {AGENT_BASE + 0x1001, LIBC_BASE + 0x1001,
				   0x401001, 0x402001};
	struct lb b;
	struct ha_analysis *a;
	struct ha_frame *f;
	long n;

	lb_init(&b, 100, prog_argv);
	modules_and_symbols(&b);
	lb_chunk(&b, 1, 100, 100);
	lb_stack(&b, 10, 1, 4, frames);
	lb_alloc(&b, 11, HALLOC_FN_MALLOC, 0x1000, 24, 1);
	a = analyze(&b);
	n = ha_stack_frames(a->log, a->procs[0].leaks[0].stack, &f);
	cr_assert_eq(n, 4, "strdup, push_back, make_list (inlined), main");
	cr_assert_str_eq(f[0].function, "strdup");
	cr_assert_str_eq(f[0].module, LIBC);
	cr_assert_eq(f[0].address, LIBC_BASE + 0x1001);
	cr_assert_eq(f[0].offset, 0x1000);
	cr_assert_str_eq(f[1].function,
			 "std::vector<int>::push_back(int const&)");
	cr_assert_str_eq(f[2].function, "make_list");
	cr_assert_eq(f[2].address, 0x401001,
		     "an inlined frame keeps its address");
	cr_assert_str_eq(f[3].function, "main");
	free(f);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(sites, only_runtime_frames_gives_the_innermost_non_agent)
{
	const uint64_t frames[] = {AGENT_BASE + 0x1001, LIBC_BASE + 0x1001,
				   CXX_BASE + 0x2001};
	struct lb b;
	struct ha_analysis *a;

	lb_init(&b, 100, prog_argv);
	modules_and_symbols(&b);
	lb_chunk(&b, 1, 100, 100);
	lb_stack(&b, 10, 1, 3, frames);
	lb_alloc(&b, 11, HALLOC_FN_MALLOC, 0x1000, 24, 1);
	a = analyze(&b);
	cr_assert_str_eq(leak(a, 0).function, "strdup");
	ha_analysis_free(a);
	lb_free(&b);
}

/* Two stacks reach make_list:12 (from main and from other): one leak,
 * whose stack is the one holding more bytes; a smaller site comes after. */
Test(sites, leaks_grouped_by_site_largest_first)
{
	const uint64_t from_main[] = {0x401001, 0x402001};
	const uint64_t from_other[] = {0x401001, 0x403001};
	const uint64_t in_main[] = {0x402001};
	struct lb b;
	struct ha_analysis *a;
	struct ha_frame *f;
	long n;

	lb_init(&b, 100, prog_argv);
	modules_and_symbols(&b);
	lb_chunk(&b, 1, 100, 100);
	lb_stack(&b, 10, 1, 2, from_main);
	lb_stack(&b, 11, 2, 2, from_other);
	lb_stack(&b, 12, 3, 1, in_main);
	lb_alloc(&b, 20, HALLOC_FN_MALLOC, 0x1000, 10, 1);
	lb_alloc(&b, 21, HALLOC_FN_MALLOC, 0x2000, 15, 2);
	lb_alloc(&b, 22, HALLOC_FN_MALLOC, 0x3000, 15, 2);
	lb_alloc(&b, 23, HALLOC_FN_MALLOC, 0x4000, 5, 3);
	lb_alloc(&b, 24, HALLOC_FN_MALLOC, 0x5000, 5, 3);
	a = analyze(&b);
	cr_assert_eq(a->procs[0].nleaks, 2);
	cr_assert_eq(leak(a, 0).bytes, 40);
	cr_assert_eq(leak(a, 0).blocks, 3);
	cr_assert_str_eq(leak(a, 0).function, "make_list");
	cr_assert_eq(leak(a, 1).bytes, 10);
	cr_assert_str_eq(leak(a, 1).function, "main");
	n = ha_stack_frames(a->log, a->procs[0].leaks[0].stack, &f);
	cr_assert_eq(n, 3);
	cr_assert_str_eq(f[2].function, "other",
			 "the largest contributor's stack");
	free(f);
	/* per-site numbers */
	cr_assert_eq(a->procs[0].nsites, 2);
	cr_assert_eq(a->procs[0].sites[0].allocations, 3);
	cr_assert_eq(a->procs[0].sites[0].bytes_allocated, 40);
	cr_assert_eq(a->procs[0].sites[0].leaked_blocks, 3);
	ha_analysis_free(a);
	lb_free(&b);
}

/* The stack record may reach the log after the allocation naming it. */
Test(sites, stack_recorded_in_a_later_chunk)
{
	const uint64_t frames[] = {0x402001};
	struct lb b;
	struct ha_analysis *a;

	lb_init(&b, 100, prog_argv);
	modules_and_symbols(&b);
	lb_chunk(&b, 1, 100, 101);
	lb_alloc(&b, 30, HALLOC_FN_MALLOC, 0x1000, 10, 9);
	lb_chunk(&b, 1, 100, 100);
	lb_stack(&b, 20, 9, 1, frames);
	a = analyze(&b);
	cr_assert_str_eq(leak(a, 0).function, "main");
	cr_assert_eq(leak(a, 0).line, 30);
	ha_analysis_free(a);
	lb_free(&b);
}

/* A library unloaded, and another loaded at the same addresses: a stack
 * is looked up among the modules loaded when it was recorded. */
Test(sites, module_ranges_reused_after_unload)
{
	static const struct lb_sym in_a[] = {{"plugin_a_init", "/src/a.c", 5}};
	static const struct lb_sym in_b[] = {{"plugin_b_init", "/src/b.c", 7}};
	const uint64_t frames[] = {0x7e0000000101ull};
	const uint64_t frames2[] = {0x7e0000000101ull, 0x402001};
	struct lb b;
	struct ha_analysis *a;

	lb_init(&b, 100, prog_argv);
	modules_and_symbols(&b);
	lb_symbols(&b, "/src/liba.so", "", 0x100, 1, in_a);
	lb_symbols(&b, "/src/libb.so", "", 0x100, 1, in_b);
	lb_chunk(&b, 1, 100, 100);
	lb_module(&b, 10, 7, 0x7e0000000000ull, "/src/liba.so", "", 0,
		  0x7e0000000000ull, 0x1000);
	lb_stack(&b, 11, 1, 1, frames);
	lb_alloc(&b, 12, HALLOC_FN_MALLOC, 0x1000, 100, 1);
	lb_unload(&b, 13, 7);
	lb_module(&b, 14, 8, 0x7e0000000000ull, "/src/libb.so", "", 0,
		  0x7e0000000000ull, 0x1000);
	lb_stack(&b, 15, 2, 2, frames2);
	lb_alloc(&b, 16, HALLOC_FN_MALLOC, 0x2000, 50, 2);
	a = analyze(&b);
	cr_assert_str_eq(leak(a, 0).function, "plugin_a_init");
	cr_assert_str_eq(leak(a, 1).function, "plugin_b_init");
	ha_analysis_free(a);
	lb_free(&b);
}

/* Symbols are keyed by build-id too: another build's names do not apply. */
Test(sites, symbols_of_another_build_are_not_used)
{
	static const struct lb_sym wrong[] = {{"stale", "/src/old.c", 1}};
	const uint64_t frames[] = {0x404001};
	struct lb b;
	struct ha_analysis *a;

	lb_init(&b, 100, prog_argv);
	modules_and_symbols(&b);
	lb_symbols(&b, APP, "9999", 0x404000, 1, wrong);
	lb_chunk(&b, 1, 100, 100);
	lb_stack(&b, 10, 1, 1, frames);
	lb_alloc(&b, 11, HALLOC_FN_MALLOC, 0x1000, 10, 1);
	a = analyze(&b);
	cr_assert_str_empty(leak(a, 0).function);
	ha_analysis_free(a);
	lb_free(&b);
}
