/*
 * cli/halloc-trace.c - `halloc-trace [options] [--] PROG [ARGS...]`: run a
 * program with the agent, write its log, print its report to stderr.
 *
 * Exit status: the program's (its exit code, or 128+N if signal N killed
 * it); 2 for a usage error; 125 if halloc-trace itself failed; 126 if the
 * program cannot be executed; 127 if it was not found.
 */
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "analyzer/analyzer.h"
#include "cli/common.h"
#include "halloc/log.h"
#include "tracer/tracer.h"

#define EXIT_USAGE 2

static const char usage_text[] =
    "usage: halloc-trace [options] [--] PROG [ARGS...]\n"
    "\n"
    "Runs PROG with the halloc agent, records its heap allocations in a log\n"
    "and prints a report of what it leaked to standard error.\n"
    "\n"
    "  -o, --output FILE       write the log to FILE\n"
    "                          (default: halloc.PROG.PID.hlog)\n"
    "  -q, --quiet             print no report\n"
    "  -d, --depth N           record up to N stack frames per call\n"
    "                          (1-256, default 64)\n"
    "  -f, --follow-children   also record the processes PROG starts\n"
    "  -h, --help              print this help and exit\n"
    "      --version           print the version and exit\n"
    "\n"
    "Options end at PROG: the options after it are PROG's own.\n";

enum { OPT_VERSION = 256 };

/* "+": stop at the first non-option; ":": report a missing value. */
static const char short_options[] = "+:o:qd:fh";
static const struct option long_options[] = {
    {"output", required_argument, NULL, 'o'},
    {"quiet", no_argument, NULL, 'q'},
    {"depth", required_argument, NULL, 'd'},
    {"follow-children", no_argument, NULL, 'f'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

static struct env {
	const char *output;
	bool quiet;
	unsigned depth;
	bool follow_children;
} env = {
    .depth = HALLOC_DEPTH_DEFAULT,
};

static int usage_error(const char *format, ...)
    __attribute__((format(printf, 1, 2)));

/* One line saying what is wrong, one saying where to look. */
static int usage_error(const char *format, ...)
{
	va_list ap;

	fputs("halloc-trace: ", stderr);
	va_start(ap, format);
	vfprintf(stderr, format, ap);
	va_end(ap);
	fputs("\ntry 'halloc-trace --help'\n", stderr);
	return -1;
}

/* The option as the user wrote it, for a message: "-x" or "--name". */
static int bad_option(char **argv, int missing_value)
{
	const char *arg = argv[optind - 1];
	char shortopt[3] = {'-', (char)optopt, '\0'};

	if (strncmp(arg, "--", 2) == 0) {
		char name[64];

		snprintf(name, sizeof(name), "%.*s", (int)strcspn(arg, "="),
			 arg);
		if (missing_value)
			return usage_error("option '%s' needs a value", name);
		if (optopt)
			return usage_error("option '%s' takes no value", name);
		return usage_error("unknown option '%s'", name);
	}
	if (missing_value)
		return usage_error("option '%s' needs a value", shortopt);
	return usage_error("unknown option '%s'", shortopt);
}

/* Returns the index of PROG in argv, 0 to exit successfully, -1 on a
 * usage error. */
static int parse_options(int argc, char **argv)
{
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, short_options, long_options,
				NULL)) != -1) {
		switch (c) {
		case 'o':
			env.output = optarg;
			break;
		case 'q':
			env.quiet = true;
			break;
		case 'd':
			if (!cli_parse_unsigned(optarg, 1, HALLOC_DEPTH_MAX,
						&env.depth))
				return usage_error(
				    "invalid depth '%s': expected "
				    "a number from 1 to 256",
				    optarg);
			break;
		case 'f':
			env.follow_children = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case OPT_VERSION:
			puts("halloc-trace (halloc) " HALLOC_VERSION);
			return 0;
		case ':':
			return bad_option(argv, 1);
		default:
			return bad_option(argv, 0);
		}
	}
	if (optind >= argc)
		return usage_error("no program to trace");
	return optind;
}

/* The report of the log just written, to stderr, then where the log is. */
static void print_report(const char *path)
{
	struct ha_analyze_options analyze = {.symbolize_from_files = true};
	struct ha_report_options report = {
	    .format = HA_FORMAT_TEXT,
	    .stack_frames = CLI_TEXT_STACK_FRAMES,
	    .color = cli_use_color(STDERR_FILENO),
	};
	struct ha_analysis *analysis = NULL;
	struct ha_diag diag = {{0}}, write_diag = {{0}};
	enum ha_result result;

	result = ha_analyze_file(path, &analyze, &analysis, &diag);
	if (analysis) {
		if (ha_report_write(analysis, &report, stderr, &write_diag) !=
		    HA_OK)
			fprintf(stderr, "halloc-trace: %s\n",
				write_diag.message);
		/* e.g. events lost: the numbers may be short */
		if (result == HA_OK && !ha_analysis_complete(analysis))
			fprintf(stderr, "halloc-trace: warning: %s\n",
				ha_analysis_incomplete_reason(analysis));
		ha_analysis_free(analysis);
	}
	if (result != HA_OK && diag.message[0])
		fprintf(stderr, "halloc-trace: warning: %s\n", diag.message);
	else if (result != HA_OK)
		fprintf(stderr,
			"halloc-trace: warning: cannot report '%s': %s\n", path,
			ha_result_name(result));
	fprintf(stderr, "halloc-trace: log written to %s\n", path);
}

int main(int argc, char **argv)
{
	struct ht_session *session;
	struct ht_config config;
	struct ht_diag diag;
	enum ht_result result;
	int first, status;

	first = parse_options(argc, argv);
	if (first <= 0)
		return first == 0 ? 0 : EXIT_USAGE;

	config = (struct ht_config){
	    .argv = argv + first,
	    .output = env.output,
	    .depth = env.depth,
	    .follow_children = env.follow_children,
	};
	result = ht_start(&config, &session, &diag);
	if (result) {
		fprintf(stderr, "halloc-trace: %s\n", diag.message);
		return ht_result_exit_status(result);
	}

	result = ht_collect(session, &diag);
	if (!result)
		result = ht_finish(session, &diag);
	if (result) {
		fprintf(stderr, "halloc-trace: %s\n", diag.message);
		ht_session_free(session);
		return ht_result_exit_status(result);
	}
	if (diag.message[0])
		fprintf(stderr, "halloc-trace: warning: %s\n", diag.message);

	status = ht_exit_status(session);
	if (!env.quiet) {
		/* The log is complete: a closed stderr must not change the
		 * exit status. */
		signal(SIGPIPE, SIG_IGN);
		print_report(ht_log_path(session));
	}
	ht_session_free(session);
	return status;
}
