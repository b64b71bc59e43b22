/*
 * cli/halloc-report.c - `halloc-report [options] LOG`: the report of a log,
 * as text or JSON, on stdout.
 *
 * Exit status: 0 when a report was printed (also for an incomplete log,
 * with a warning); 1 when the log cannot be read, or is corrupt (the report
 * of what precedes the damage is printed first), or the report cannot be
 * written; 2 for a usage error.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "analyzer/analyzer.h"
#include "cli/common.h"

#define EXIT_BAD_LOG 1
#define EXIT_USAGE   2

static const char usage_text[] =
    "usage: halloc-report [options] LOG\n"
    "\n"
    "Prints the report of a log that halloc-trace wrote.\n"
    "\n"
    "      --format FORMAT     text (default) or json\n"
    "      --stacks N          show at most N frames of each stack\n"
    "                          (0: all; default 12 for text, all for json)\n"
    "      --no-color          no colour, even on a terminal\n"
    "  -h, --help              print this help and exit\n"
    "      --version           print the version and exit\n";

enum { OPT_FORMAT = 256, OPT_STACKS, OPT_NO_COLOR, OPT_VERSION };

/* ":": report a missing value. */
static const char short_options[] = ":h";
static const struct option long_options[] = {
    {"format", required_argument, NULL, OPT_FORMAT},
    {"stacks", required_argument, NULL, OPT_STACKS},
    {"no-color", no_argument, NULL, OPT_NO_COLOR},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

/* Above any depth the agent records. */
#define STACKS_MAX 1000000u

static struct env {
	enum ha_format format;
	bool stacks_given;
	unsigned stacks;
	bool no_color;
	const char *log;
} env = {
    .format = HA_FORMAT_TEXT,
};

/* Returns 1 to go on, 0 to exit successfully, -1 on a usage error. */
static int parse_options(int argc, char **argv)
{
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, short_options, long_options,
				NULL)) != -1) {
		switch (c) {
		case OPT_FORMAT:
			if (strcmp(optarg, "text") == 0)
				env.format = HA_FORMAT_TEXT;
			else if (strcmp(optarg, "json") == 0)
				env.format = HA_FORMAT_JSON;
			else
				return cli_usage_error("invalid format '%s': "
						   "expected text or json",
						   optarg);
			break;
		case OPT_STACKS:
			if (!cli_parse_unsigned(optarg, 0, STACKS_MAX,
						&env.stacks))
				return cli_usage_error("invalid number of frames "
						   "'%s': expected 0 (all) or "
						   "more",
						   optarg);
			env.stacks_given = true;
			break;
		case OPT_NO_COLOR:
			env.no_color = true;
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
			return cli_bad_option(argv, 0);
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

int main(int argc, char **argv)
{
	struct ha_analyze_options analyze = {.symbolize_from_files = true};
	struct ha_report_options report;
	struct ha_analysis *analysis = NULL;
	struct ha_diag diag = {{0}}, write_diag = {{0}};
	enum ha_result result;
	int status = 0, go_on;

	cli_name = "halloc-report";
	go_on = parse_options(argc, argv);
	if (go_on <= 0)
		return go_on == 0 ? 0 : EXIT_USAGE;

	result = ha_analyze_file(env.log, &analyze, &analysis, &diag);
	/* Corruption still leaves the report of what precedes it. */
	if (!analysis || (result != HA_OK && result != HA_ERR_CORRUPT)) {
		if (analysis)
			ha_analysis_free(analysis);
		if (diag.message[0])
			fprintf(stderr, "halloc-report: %s\n", diag.message);
		else
			fprintf(stderr, "halloc-report: cannot read '%s': %s\n",
				env.log, ha_result_name(result));
		return EXIT_BAD_LOG;
	}

	report = (struct ha_report_options){
	    .format = env.format,
	    .stack_frames = env.stacks_given ? env.stacks
			    : env.format == HA_FORMAT_TEXT
				? CLI_TEXT_STACK_FRAMES
				: 0,
	    .color = env.format == HA_FORMAT_TEXT && !env.no_color &&
		     cli_use_color(STDOUT_FILENO),
	};
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
	ha_analysis_free(analysis);
	return status;
}
