/*
 * tests/unit/analyzer_symbolize.c - symbolizing with libdw from the
 * binaries on disk: this test program's own code (an inlined call, so the
 * inline expansion shows), a C++ name from libstdc++ (demangled), a module
 * that is gone or was rebuilt; and ha_append_symbols, after which the log
 * names its frames without the binaries.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyzer/analysis.h"
#include "halloc/log.h"
#include "log_builder.h"
#include "module_of.h"

static const char *const argv_[] = {"./unit-tests", NULL};

/* ---- code whose return addresses the tests symbolize -------------------- */

static int inner_line, outer_line;
static volatile int sink;

static __attribute__((noinline)) uintptr_t where(void)
{
	return (uintptr_t)__builtin_return_address(0);
}

static inline __attribute__((always_inline)) uintptr_t inlined_helper(void)
{
	uintptr_t r = where();
	inner_line = __LINE__ - 1; /* the line of the call above */
	sink++;
	return r;
}

/* frames[0]: the call in inlined_helper; frames[1]: our caller. */
static __attribute__((noinline)) void outer_function(uint64_t frames[2])
{
	frames[0] = inlined_helper();
	outer_line = __LINE__ - 1; /* the line of the call above */
	frames[1] = (uintptr_t)__builtin_return_address(0);
	sink++;
}

/* A log of one leak whose stack is `frames`, all in module m. */
static void build(struct lb *b, const struct module *m, const char *path,
		  const unsigned char *build_id, size_t build_id_len,
		  unsigned n, const uint64_t *frames)
{
	lb_init(b, 100, argv_);
	lb_chunk(b, 1, 100, 100);
	lb_process(b, 1, 100, 1, 0, 0, 0, 10, path, argv_);
	lb_module(b, 2, 1, m->bias, path, (const char *)build_id, build_id_len,
		  m->start, m->size);
	lb_stack(b, 3, 1, n, frames);
	lb_alloc(b, 4, HALLOC_FN_MALLOC, 0x1000, 64, 1);
	lb_exit(b, 100, HALLOC_EXIT_CODE, 0);
}

static struct ha_analysis *analyze_file(const char *path, bool from_files)
{
	struct ha_analyze_options o = {.symbolize_from_files = from_files};
	struct ha_analysis *a = NULL;
	struct ha_diag d;

	cr_assert_eq(ha_analyze_file(path, &o, &a, &d), HA_OK, "%s", d.message);
	return a;
}

static long leak_stack(const struct ha_analysis *a, struct ha_frame **f)
{
	cr_assert_eq(a->nprocs, 1);
	cr_assert_eq(a->procs[0].nleaks, 1);
	return ha_stack_frames(a->log, a->procs[0].leaks[0].stack, f);
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The stack of outer_function's inlined call, as analyze_file sees it. */
static void check_inlined_stack(const struct ha_analysis *a, const char *module)
{
	struct ha_frame *f;
	long n = leak_stack(a, &f);
	struct ha_leak_info l;

	cr_assert_geq(n, 3, "inlined_helper, outer_function, the test");
	cr_assert_str_eq(f[0].function, "inlined_helper");
	cr_assert(ends_with(f[0].file, "/tests/unit/analyzer_symbolize.c"),
		  "%s", f[0].file);
	cr_assert_eq(f[0].file[0], '/', "absolute: %s", f[0].file);
	cr_assert_eq(f[0].line, (uint32_t)inner_line);
	cr_assert_str_eq(f[1].function, "outer_function");
	cr_assert_eq(f[1].line, (uint32_t)outer_line,
		     "the line it was inlined at");
	cr_assert_eq(f[1].address, f[0].address,
		     "both from one return address");
	cr_assert_str_eq(f[2].function, "symbolize_inline_frames_impl");
	cr_assert_str_eq(f[0].module, module);
	free(f);
	cr_assert(ha_analysis_leak(a, 0, 0, &l));
	cr_assert_str_eq(l.function, "inlined_helper",
			 "the site is the innermost frame");
	cr_assert_eq(l.line, (uint32_t)inner_line);
}

static __attribute__((noinline)) void
symbolize_inline_frames_impl(uint64_t frames[2])
{
	outer_function(frames);
	sink++;
}

Test(symbolize, inline_frames_from_the_binary)
{
	uint64_t frames[2];
	struct module m;
	struct lb b;
	struct ha_analysis *a;
	char *path;

	symbolize_inline_frames_impl(frames);
	m = module_of(frames[0]);
	build(&b, &m, m.path, m.build_id, m.build_id_len, 2, frames);
	path = lb_write_temp(&b);
	a = analyze_file(path, true);
	check_inlined_stack(a, m.path);
	ha_analysis_free(a);

	/* Without the binaries, nothing is known... */
	a = analyze_file(path, false);
	cr_assert_str_empty(a->log->sites[a->procs[0].leaks[0].site].function);
	ha_analysis_free(a);
	/* ...until the log carries its symbols. */
	cr_assert_eq(ha_append_symbols(path, NULL), HA_OK);
	a = analyze_file(path, false);
	check_inlined_stack(a, m.path);
	ha_analysis_free(a);
	/* Appending again adds nothing new the log lacks. */
	{
		FILE *f = fopen(path, "rb");
		long before, after;

		fseek(f, 0, SEEK_END);
		before = ftell(f);
		fclose(f);
		cr_assert_eq(ha_append_symbols(path, NULL), HA_OK);
		f = fopen(path, "rb");
		fseek(f, 0, SEEK_END);
		after = ftell(f);
		fclose(f);
		cr_assert_eq(after, before);
	}
	unlink(path);
	free(path);
	lb_free(&b);
}

Test(symbolize, cxx_names_are_demangled)
{
	void *op_new = dlsym(RTLD_DEFAULT, "_Znwm");
	uint64_t frames[1];
	struct module m;
	struct lb b;
	struct ha_analysis *a;
	struct ha_frame *f;
	char *path;

	cr_assert_not_null(op_new, "libstdc++ is linked in");
	frames[0] = (uintptr_t)op_new + 5;
	m = module_of(frames[0]);
	build(&b, &m, m.path, m.build_id, m.build_id_len, 1, frames);
	path = lb_write_temp(&b);
	a = analyze_file(path, true);
	cr_assert_eq(leak_stack(a, &f), 1);
	cr_assert_str_eq(f[0].function, "operator new(unsigned long)");
	free(f);
	ha_analysis_free(a);
	unlink(path);
	free(path);
	lb_free(&b);
}

Test(symbolize, missing_binary_keeps_module_and_address)
{
	uint64_t frames[2];
	struct module m;
	struct lb b;
	struct ha_analysis *a;
	struct ha_frame *f;
	char *path, *text;

	symbolize_inline_frames_impl(frames);
	m = module_of(frames[0]);
	build(&b, &m, "/nonexistent/libgone.so", (const unsigned char *)"", 0,
	      1, frames);
	path = lb_write_temp(&b);
	a = analyze_file(path, true);
	cr_assert_eq(leak_stack(a, &f), 1);
	cr_assert_str_empty(f[0].function);
	cr_assert_str_empty(f[0].file);
	cr_assert_eq(f[0].line, 0);
	cr_assert_str_eq(f[0].module, "/nonexistent/libgone.so");
	cr_assert_eq(f[0].address, frames[0]);
	cr_assert_eq(f[0].offset, frames[0] - 1 - m.bias);
	free(f);
	text = lb_report(a, HA_FORMAT_TEXT, 0);
	cr_assert(strstr(text, "  #0 ??? (/nonexistent/libgone.so+0x"), "%s",
		  text);
	free(text);
	ha_analysis_free(a);
	unlink(path);
	free(path);
	lb_free(&b);
}

Test(symbolize, rebuilt_binary_is_not_used)
{
	static const unsigned char other_build[] = {0xde, 0xad, 0xbe, 0xef};
	uint64_t frames[2];
	struct module m;
	struct lb b;
	struct ha_analysis *a;
	char *path;

	symbolize_inline_frames_impl(frames);
	m = module_of(frames[0]);
	build(&b, &m, m.path, other_build, sizeof(other_build), 1, frames);
	path = lb_write_temp(&b);
	a = analyze_file(path, true);
	cr_assert_str_empty(a->log->sites[a->procs[0].leaks[0].site].function);
	ha_analysis_free(a);
	unlink(path);
	free(path);
	lb_free(&b);
}

/* libc's malloc: its name from the symbol table, and with libc6-dbg
 * installed (the project's dependencies) its source file from the
 * separate debug info found by build-id. */
Test(symbolize, libc_with_separate_debug_info)
{
	/* libc's own malloc, whatever interposes on it (ASan, halloc) */
	void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	uint64_t frames[1];
	struct module m;
	struct lb b;
	struct ha_analysis *a;
	struct ha_frame *f;
	char *path;

	cr_assert_not_null(libc);
	frames[0] = (uintptr_t)dlsym(libc, "malloc") + 5;
	dlclose(libc);
	m = module_of(frames[0]);
	cr_assert(strstr(m.path, "libc.so"), "%s", m.path);
	build(&b, &m, m.path, m.build_id, m.build_id_len, 1, frames);
	path = lb_write_temp(&b);
	a = analyze_file(path, true);
	cr_assert_geq(leak_stack(a, &f), 1);
	cr_assert(strstr(f[0].function, "malloc"), "%s", f[0].function);
	cr_assert(ends_with(f[0].file, "malloc.c"), "libc6-dbg: '%s'",
		  f[0].file);
	cr_assert_gt(f[0].line, 0);
	free(f);
	ha_analysis_free(a);
	unlink(path);
	free(path);
	lb_free(&b);
}
