/*
 * tests/unit/analyzer_report.c - the text report's lines, and the JSON
 * report: valid (python3 parses it) whatever bytes the log holds, in the
 * shape tools rely on.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "halloc/log.h"
#include "log_builder.h"

static const char *const leaky_argv[] = {"./leaky", "3", NULL};

/* ./leaky: 2 blocks of 2,048 bytes leaked at main (leaky.c:12), called
 * from __libc_start_call_main; 1 block freed. */
static void build_leaky(struct lb *b, const char *const *argv)
{
	static const struct lb_sym main_[] = {{"main", "/src/leaky.c", 12}};
	static const struct lb_sym start[] = {
	    {"__libc_start_call_main", "../sysdeps/nptl/libc_start_call_main.h",
	     58}};
	const uint64_t frames[] = {0x401001, 0x7f0000002001ull};

	lb_init(b, 4242, argv);
	lb_chunk(b, 1, 4242, 4242);
	lb_process(b, 1, 4242, 1, 0, 0, 0, 10, "/src/leaky", argv);
	lb_module(b, 2, 1, 0, "/src/leaky", "", 0, 0x400000, 0x10000);
	lb_module(b, 3, 2, 0x7f0000000000ull, "/lib/x86_64-linux-gnu/libc.so.6",
		  "", 0, 0x7f0000000000ull, 0x100000);
	lb_stack(b, 4, 1, 2, frames);
	lb_alloc(b, 5, HALLOC_FN_MALLOC, 0x1000, 2048, 1);
	lb_alloc(b, 6, HALLOC_FN_MALLOC, 0x2000, 2048, 1);
	lb_alloc(b, 7, HALLOC_FN_MALLOC, 0x3000, 100, 1);
	lb_free_rec(b, 8, HALLOC_FREE_FREE, 0x3000);
	lb_exit(b, 4242, HALLOC_EXIT_CODE, 0);
	lb_symbols(b, "/src/leaky", "", 0x401000, 1, main_);
	lb_symbols(b, "/lib/x86_64-linux-gnu/libc.so.6", "", 0x2000, 1, start);
	lb_end(b);
}

static struct ha_analysis *analyze(struct lb *b)
{
	struct ha_analysis *a = NULL;
	struct ha_diag d;
	enum ha_result res = lb_analyze(b, &a, &d);

	cr_assert(res == HA_OK || res == HA_ERR_CORRUPT, "%s", d.message);
	return a;
}

Test(report_text, leak_lines)
{
	struct lb b;
	struct ha_analysis *a;
	char *text;

	build_leaky(&b, leaky_argv);
	a = analyze(&b);
	text = lb_report(a, HA_FORMAT_TEXT, 0);
	cr_assert(
	    strstr(text,
		   "halloc: process 4242 (./leaky 3) exited with status 0\n"),
	    "%s", text);
	cr_assert(
	    strstr(text,
		   "\nLEAK 1: 4.00 KiB (4,096 bytes) in 2 blocks at main (leaky.c:12)\n"
		   "  #0 main /src/leaky.c:12 (/src/leaky)\n"
		   "  #1 __libc_start_call_main "
		   "../sysdeps/nptl/libc_start_call_main.h:58 "
		   "(/lib/x86_64-linux-gnu/libc.so.6)\n"),
	    "%s", text);
	cr_assert(strstr(text, "  allocations:     3\n"), "%s", text);
	cr_assert(strstr(text, "  frees:           1\n"), "%s", text);
	cr_assert(strstr(text, "  bytes allocated: 4.10 KiB (4,196 bytes)\n"),
		  "%s", text);
	cr_assert(
	    strstr(text,
		   "  peak heap:       4.10 KiB (4,196 bytes) in 3 blocks\n"),
	    "%s", text);
	cr_assert(
	    strstr(text,
		   "  leaked:          4.00 KiB (4,096 bytes) in 2 blocks\n"),
	    "%s", text);
	cr_assert_null(strstr(text, "No leaks."));
	cr_assert_null(strstr(text, "\033["), "no colour unless asked");
	free(text);

	text = lb_report(a, HA_FORMAT_TEXT, 1);
	cr_assert(
	    strstr(
		text,
		"  #0 main /src/leaky.c:12 (/src/leaky)\n  ... 1 more frame\n"),
	    "%s", text);
	free(text);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(report_text, no_leaks_and_colour)
{
	struct lb b;
	struct ha_analysis *a;
	struct ha_report_options o = {.format = HA_FORMAT_TEXT, .color = true};
	char *text = NULL;
	size_t len;
	FILE *f;

	lb_init(&b, 1, leaky_argv);
	lb_chunk(&b, 1, 1, 1);
	lb_alloc(&b, 5, HALLOC_FN_MALLOC, 0x1000, 10, 1);
	lb_free_rec(&b, 6, HALLOC_FREE_FREE, 0x1000);
	lb_exit(&b, 1, HALLOC_EXIT_SIGNAL, 6);
	lb_end(&b);
	a = analyze(&b);
	f = open_memstream(&text, &len);
	cr_assert_eq(ha_report_write(a, &o, f, NULL), HA_OK);
	fclose(f);
	cr_assert(strstr(text, "\nNo leaks.\n"), "%s", text);
	cr_assert(strstr(text, "was killed by SIGABRT (signal 6)"), "%s", text);
	cr_assert(strstr(text, "\033[1m"), "colour when asked");
	free(text);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(report_text, incomplete_says_so)
{
	struct lb b;
	struct ha_analysis *a;
	char *text;

	build_leaky(&b, leaky_argv);
	b.len -= 10; /* cut inside the END frame */
	a = analyze(&b);
	text = lb_report(a, HA_FORMAT_TEXT, 0);
	cr_assert(strstr(text, "; incomplete: "), "%s", text);
	free(text);
	ha_analysis_free(a);
	lb_free(&b);
}

/* An eBPF log says how it was recorded; the agent's says nothing. */
Test(report_text, recorder_line)
{
	/* TRACE_INFO's first fields, one byte each here: the recorder
	 * and the trace flags, right after the file and frame headers. */
	const size_t recorder_at =
	    sizeof(struct halloc_file_header) + HALLOC_FRAME_HEADER_SIZE;
	struct lb b;
	struct ha_analysis *a;
	char *text;

	build_leaky(&b, leaky_argv);
	a = analyze(&b);
	text = lb_report(a, HA_FORMAT_TEXT, 0);
	cr_assert_null(strstr(text, "recorded by"), "%s", text);
	free(text);
	ha_analysis_free(a);

	b.buf[recorder_at] = HALLOC_RECORDER_BPF;
	b.buf[recorder_at + 1] =
	    HALLOC_TRACE_ATTACHED | HALLOC_TRACE_STACK_DWARF;
	a = analyze(&b);
	text = lb_report(a, HA_FORMAT_TEXT, 0);
	cr_assert(strstr(text, "exited with status 0\n"
			       "  recorded by eBPF uprobes (attached), DWARF "
			       "stacks\n"
			       "  allocations:"),
		  "%s", text);
	free(text);
	ha_analysis_free(a);

	b.buf[recorder_at + 1] = HALLOC_TRACE_AGGREGATE | HALLOC_TRACE_STACK_FP;
	a = analyze(&b);
	text = lb_report(a, HA_FORMAT_TEXT, 0);
	cr_assert(strstr(text, "  recorded by eBPF uprobes (aggregated), "
			       "frame-pointer stacks\n"),
		  "%s", text);
	free(text);
	ha_analysis_free(a);
	lb_free(&b);
}

/* Runs a python3 program on the JSON report; returns its stdout. */
static char *python_on_json(const char *json, const char *program)
{
	char path[] = "/tmp/halloc-json-XXXXXX";
	int fd = mkstemp(path);
	char cmd[4096], *out = calloc(1, 65536);
	size_t got;
	FILE *p;

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, json, strlen(json)), (ssize_t)strlen(json));
	close(fd);
	snprintf(cmd, sizeof(cmd),
		 "python3 -c 'import json,sys\n"
		 "d = json.load(open(sys.argv[1], encoding=\"utf-8\"))\n%s' %s",
		 program, path);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	got = fread(out, 1, 65535, p);
	out[got] = '\0';
	cr_assert_eq(pclose(p), 0, "python3 failed on:\n%s", json);
	unlink(path);
	return out;
}

Test(report_json, valid_with_hostile_strings)
{
	/* quotes, backslash, newline, a control character, invalid UTF-8,
	 * and valid UTF-8 that must stay as is */
	static const char *const nasty[] = {
	    "./prog \"x\"", "a\\b\nc\x01", "\xff\xfe",
	    "caf\xc3\xa9 \xf0\x9f\x94\xa5", NULL};
	struct lb b;
	struct ha_analysis *a;
	char *json, *out;

	build_leaky(&b, nasty);
	a = analyze(&b);
	json = lb_report(a, HA_FORMAT_JSON, 0);
	out = python_on_json(
	    json,
	    "p = d[\"processes\"][0]\n"
	    "print(d[\"format\"], d[\"version\"], d[\"complete\"])\n"
	    "print(ascii(p[\"command\"]))\n"
	    "print(p[\"pid\"], p[\"parent\"], p[\"status\"])\n"
	    "s = p[\"summary\"]\n"
	    "print(s[\"allocations\"], s[\"frees\"], s[\"bytes_allocated\"],"
	    " s[\"peak_bytes\"], s[\"peak_blocks\"], s[\"leaked_bytes\"],"
	    " s[\"leaked_blocks\"])\n"
	    "l = p[\"leaks\"][0]\n"
	    "print(l[\"bytes\"], l[\"blocks\"], l[\"site\"][\"function\"],"
	    " l[\"site\"][\"file\"], l[\"site\"][\"line\"])\n"
	    "f = l[\"stack\"][0]\n"
	    "print(f[\"function\"], f[\"file\"], f[\"line\"], f[\"module\"],"
	    " f[\"address\"])\n"
	    "t = p[\"sites\"][0]\n"
	    "print(t[\"allocations\"], t[\"bytes_allocated\"], "
	    "t[\"peak_bytes\"],"
	    " t[\"leaked_bytes\"], t[\"leaked_blocks\"])");
	cr_assert_str_eq(
	    out,
	    "halloc-report 1 True\n"
	    "['./prog \"x\"', 'a\\\\b\\nc\\x01', '\\ufffd\\ufffd', "
	    "'caf\\xe9 \\U0001f525']\n"
	    "4242 None {'exit': 0}\n"
	    "3 1 4196 4196 3 4096 2\n"
	    "4096 2 main /src/leaky.c 12\n"
	    "main /src/leaky.c 12 /src/leaky 0x401001\n"
	    "3 4196 4196 4096 2\n",
	    "%s", json);
	free(out);
	free(json);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(report_json, valid_for_corrupt_and_empty_logs)
{
	struct lb b;
	struct ha_analysis *a;
	char *json, *out;
	const unsigned char bad = 0x0e;

	build_leaky(&b, leaky_argv);
	lb_chunk(&b, 1, 4242, 4242);
	lb_raw(&b, &bad, 1);
	a = analyze(&b);
	json = lb_report(a, HA_FORMAT_JSON, 0);
	out = python_on_json(
	    json, "print(d[\"complete\"], d[\"corrupt\"], "
		  "d[\"incomplete_reason\"][:12], len(d[\"processes\"]))");
	cr_assert_str_eq(out, "False True corrupt data 1\n", "%s", json);
	free(out);
	free(json);
	ha_analysis_free(a);
	lb_free(&b);

	lb_init(&b, 1, NULL);
	a = analyze(&b);
	json = lb_report(a, HA_FORMAT_JSON, 0);
	out = python_on_json(json, "print(d[\"processes\"], d[\"recorder\"])");
	cr_assert_str_eq(out, "[] None\n", "%s", json);
	free(out);
	free(json);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(report_json, status_and_fork_fields)
{
	struct lb b;
	struct ha_analysis *a;
	char *json, *out;

	lb_init(&b, 1, leaky_argv);
	lb_chunk(&b, 1, 1, 1);
	lb_process(&b, 1, 1, 0, 0, 0, 0, 10, "/src/leaky", leaky_argv);
	lb_alloc(&b, 5, HALLOC_FN_MALLOC, 0x1000, 10, 1);
	lb_chunk(&b, 2, 2, 2);
	lb_process(&b, 1, 2, 1, 1, 5, 0, 20, "/src/leaky", leaky_argv);
	lb_exit(&b, 1, HALLOC_EXIT_SIGNAL, 9);
	lb_end(&b);
	a = analyze(&b);
	json = lb_report(a, HA_FORMAT_JSON, 0);
	out = python_on_json(
	    json, "for p in d[\"processes\"]:\n"
		  "    print(p[\"pid\"], p[\"parent\"], p[\"status\"],"
		  " p[\"ended_by\"], p[\"summary\"][\"leaked_bytes\"],"
		  " p.get(\"inherited\"))");
	cr_assert_str_eq(out,
			 "1 None {'signal': 9} signal 10 None\n"
			 "2 1 None unknown 10 {'allocations': 1, 'frees': 0, "
			 "'bytes_allocated': 10, 'failed_allocations': 0}\n",
			 "%s", json);
	free(out);
	free(json);
	ha_analysis_free(a);
	lb_free(&b);
}
