/*
 * cli/halloc-report.c - `halloc-report [options] LOG`: the report of a log,
 * as text or JSON, on stdout.
 *
 * Exit status: 0 when a report was printed (also for an incomplete log,
 * with a warning); 1 when the log cannot be read, or is corrupt (the report
 * of what precedes the damage is printed first), or the report cannot be
 * written; 2 for a usage error. A failed gate (--error-exitcode N with
 * leaks remaining, a --max-* limit exceeded) exits N, or 1 without
 * --error-exitcode, after the report. A suppressions file that cannot be
 * read or has a bad line is a usage error (2), and so is a --process PID
 * the log does not hold.
 */
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "analyzer/analyzer.h"
#include "cli/display.h"

#define EXIT_BAD_LOG 1
#define EXIT_USAGE   2

static const char usage_text[] =
    "usage: halloc-report [options] LOG\n"
    "       halloc-report --diff OLD NEW [--format FORMAT] [--top N]\n"
    "\n"
    "Prints the report of a log that halloc-trace wrote.\n"
    "\n"
    "      --diff OLD          compare the log OLD with LOG: the sites\n"
    "                          whose leaked, peak or allocated bytes\n"
    "                          changed, largest change first\n"
    CLI_DISPLAY_USAGE
    CLI_SUPPRESSIONS_USAGE
    CLI_GATES_USAGE
    "  -h, --help              print this help and exit\n"
    "      --version           print the version and exit\n";

enum {
	OPT_VERSION = 256,
	OPT_DIFF,
	OPT_GATE, /* --error-exitcode, --max-leaked, --max-peak */
	OPT_SUPPRESSIONS,
};

/* ":": report a missing value. */
static const char short_options[] = ":h";
static const struct option long_options[] = {
    {"diff", required_argument, NULL, OPT_DIFF},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    CLI_DISPLAY_LONG_OPTIONS, /* --format, --top, --sort, ... */
    {"suppressions", required_argument, NULL, OPT_SUPPRESSIONS},
    {"error-exitcode", required_argument, NULL, OPT_GATE},
    {"max-leaked", required_argument, NULL, OPT_GATE},
    {"max-peak", required_argument, NULL, OPT_GATE},
    {NULL, 0, NULL, 0},
};

static struct env {
	struct cli_display display;
	struct cli_gates gates;
	const char *suppressions;
	const char *diff_old; /* --diff OLD: LOG is the new one */
	const char *log;
} env;

/* Returns 1 to go on, 0 to exit successfully, -1 on a usage error. */
static int parse_options(int argc, char **argv)
{
	int c, index, done;

	opterr = 0;
	while ((c = getopt_long(argc, argv, short_options, long_options,
				&index)) != -1) {
		switch (c) {
		case OPT_GATE:
			if (cli_gate_option(long_options[index].name, optarg,
					    &env.gates) < 0)
				return -1;
			break;
		case OPT_SUPPRESSIONS:
			env.suppressions = optarg;
			break;
		case OPT_DIFF:
			env.diff_old = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case OPT_VERSION:
			puts("halloc-report (halloc) " HALLOC_VERSION);
			return 0;
		case ':':
			return cli_bad_option(argv, 1);
		default:
			done = cli_display_option(c, optarg, &env.display);
			if (done == 0)
				return cli_bad_option(argv, 0);
			if (done < 0)
				return -1;
			break;
		}
	}
	if (optind >= argc)
		return cli_usage_error("no log to report");
	if (optind + 1 < argc)
		return cli_usage_error("one log at a time: unexpected '%s'",
				   argv[optind + 1]);
	env.log = argv[optind];
	return 1;
}

/* Reads a log for --diff; prints why not and returns NULL on failure
 * (a corrupt log too: a diff of half a log would mislead). */
static struct ha_analysis *read_for_diff(const char *path)
{
	struct ha_analyze_options analyze = {.symbolize_from_files = true};
	struct ha_analysis *a = NULL;
	struct ha_diag diag = {{0}};
	enum ha_result result = ha_analyze_file(path, &analyze, &a, &diag);

	if (result == HA_OK && a)
		return a;
	ha_analysis_free(a);
	fprintf(stderr, "halloc-report: %s\n",
		diag.message[0] ? diag.message : ha_result_name(result));
	return NULL;
}

/* --diff OLD NEW: exit 0 when printed, 1 when a log cannot be read. */
static int diff(void)
{
	struct ha_report_options report =
	    cli_display_report(&env.display, STDOUT_FILENO);
	struct ha_analysis *old_a = read_for_diff(env.diff_old), *new_a;
	struct ha_diag diag = {{0}};
	int status = 0;

	if (!old_a)
		return EXIT_BAD_LOG;
	new_a = read_for_diff(env.log);
	if (!new_a) {
		ha_analysis_free(old_a);
		return EXIT_BAD_LOG;
	}
	if (ha_diff_write(old_a, env.diff_old, new_a, env.log, &report, stdout,
			  &diag) != HA_OK) {
		fprintf(stderr, "halloc-report: %s\n", diag.message);
		status = EXIT_BAD_LOG;
	}
	ha_analysis_free(old_a);
	ha_analysis_free(new_a);
	return status;
}

int main(int argc, char **argv)
{
	struct ha_analyze_options analyze = {.symbolize_from_files = true};
	struct ha_report_options report;
	struct ha_analysis *analysis = NULL;
	struct ha_suppressions *suppressions = NULL;
	struct ha_diag diag = {{0}}, write_diag = {{0}};
	enum ha_result result;
	int status = 0, go_on;

	cli_name = "halloc-report";
	go_on = parse_options(argc, argv);
	if (go_on <= 0)
		return go_on == 0 ? 0 : EXIT_USAGE;
	if (env.diff_old)
		return diff();

	/* A bad suppressions file is a usage error: nothing is reported. */
	if (env.suppressions &&
	    ha_suppressions_load(env.suppressions, &suppressions, &diag) !=
		HA_OK) {
		fprintf(stderr, "halloc-report: %s\n", diag.message);
		return EXIT_USAGE;
	}
	result = ha_analyze_file(env.log, &analyze, &analysis, &diag);
	if (analysis && suppressions &&
	    ha_analysis_suppress(analysis, suppressions) != HA_OK) {
		fprintf(stderr, "halloc-report: out of memory suppressing\n");
		ha_analysis_free(analysis);
		ha_suppressions_free(suppressions);
		return EXIT_BAD_LOG;
	}
	/* Corruption still leaves the report of what precedes it. */
	if (!analysis || (result != HA_OK && result != HA_ERR_CORRUPT)) {
		if (analysis)
			ha_analysis_free(analysis);
		ha_suppressions_free(suppressions);
		if (diag.message[0])
			fprintf(stderr, "halloc-report: %s\n", diag.message);
		else
			fprintf(stderr, "halloc-report: cannot read '%s': %s\n",
				env.log, ha_result_name(result));
		return EXIT_BAD_LOG;
	}

	report = cli_display_report(&env.display, STDOUT_FILENO);
	if (env.display.pid_set && !ha_analysis_has_pid(analysis, env.display.pid)) {
		fprintf(stderr, "halloc-report: no process '%u' in '%s'\n",
			env.display.pid, env.log);
		ha_analysis_free(analysis);
		ha_suppressions_free(suppressions);
		return EXIT_USAGE;
	}
	if (ha_report_write(analysis, &report, stdout, &write_diag) != HA_OK) {
		fprintf(stderr, "halloc-report: %s\n", write_diag.message);
		status = EXIT_BAD_LOG;
	} else if (fflush(stdout) != 0) {
		fprintf(stderr, "halloc-report: cannot write the report: %s\n",
			strerror(errno));
		status = EXIT_BAD_LOG;
	}

	/* The analyzer's messages name the log and say what was kept. */
	if (result == HA_ERR_CORRUPT || ha_analysis_corrupt(analysis)) {
		fprintf(stderr, "halloc-report: warning: %s\n",
			diag.message[0]
			    ? diag.message
			    : ha_analysis_incomplete_reason(analysis));
		status = EXIT_BAD_LOG;
	} else if (!ha_analysis_complete(analysis)) {
		fprintf(stderr,
			"halloc-report: warning: '%s' is incomplete: %s\n",
			env.log, ha_analysis_incomplete_reason(analysis));
	}
	/* A bad log or report already fails; the gate decides the rest. */
	if (status == 0)
		status = cli_gates_status("halloc-report", analysis,
					  &env.gates);
	ha_analysis_free(analysis);
	ha_suppressions_free(suppressions);
	return status;
}
