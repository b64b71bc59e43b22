/*
 * cli/common.h - what halloc-trace and halloc-report share: the version,
 * option errors, number and size values, the gates and the locale
 * (cli/display.h builds the report options on these).
 * Header-only: each command is one .c file.
 */
#ifndef HALLOC_CLI_COMMON_H
#define HALLOC_CLI_COMMON_H

#include <errno.h>
#include <getopt.h>
#include <langinfo.h>
#include <locale.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyzer/analyzer.h"

#define HALLOC_VERSION "0.1.0"

/* Parses a decimal number in [min, max]: digits only, no sign, no blanks. */
static inline bool cli_parse_unsigned(const char *text, unsigned min,
				      unsigned max, unsigned *out)
{
	unsigned long value;
	char *end;

	if (*text < '0' || *text > '9')
		return false;
	errno = 0;
	value = strtoul(text, &end, 10);
	if (errno || *end || value < min || value > max)
		return false;
	*out = (unsigned)value;
	return true;
}

/*
 * A size in bytes: decimal digits, optionally followed by K, M or G (KiB,
 * MiB, GiB: powers of 1024). No sign, no blanks.
 */
static inline bool cli_parse_bytes(const char *text, uint64_t *out)
{
	unsigned long long value;
	unsigned shift = 0;
	char *end;

	if (*text < '0' || *text > '9')
		return false;
	errno = 0;
	value = strtoull(text, &end, 10);
	if (errno)
		return false;
	if (*end == 'K' || *end == 'k')
		shift = 10;
	else if (*end == 'M')
		shift = 20;
	else if (*end == 'G')
		shift = 30;
	if (shift)
		end++;
	if (*end || (shift && value > (UINT64_MAX >> shift)))
		return false;
	*out = (uint64_t)value << shift;
	return true;
}

/* The gate options both commands take: --error-exitcode, --max-leaked,
 * --max-peak. The status a failed gate exits with: N, or 1 without
 * --error-exitcode (a threshold alone still fails the pipeline). */
struct cli_gates {
	struct ha_gate_options gate;
	unsigned exit_code; /* 0: --error-exitcode not given */
};

#define CLI_GATE_EXIT_DEFAULT 1

static inline bool cli_gates_set(const struct cli_gates *g)
{
	return g->gate.no_leaks || g->gate.max_leaked_set ||
	       g->gate.max_peak_set;
}

/* Checks the gates; on failure prints why and returns the exit status to
 * use, else returns 0. */
static inline int cli_gates_status(const char *name,
				   const struct ha_analysis *analysis,
				   const struct cli_gates *g)
{
	char why[256];

	if (!cli_gates_set(g) || !ha_gate_check(analysis, &g->gate, why,
						sizeof(why)))
		return 0;
	fprintf(stderr, "%s: gate failed: %s\n", name, why);
	return g->exit_code ? (int)g->exit_code : CLI_GATE_EXIT_DEFAULT;
}

/* Whether the user's locale (LC_ALL, LC_CTYPE, LANG) is UTF-8: only then
 * does text use Unicode characters. */
static inline bool cli_utf8(void)
{
	const char *codeset;

	if (!setlocale(LC_CTYPE, ""))
		return false;
	codeset = nl_langinfo(CODESET);
	return codeset && (strcmp(codeset, "UTF-8") == 0 ||
			   strcmp(codeset, "utf8") == 0);
}

/* The command's name for messages ("halloc-trace"); main sets it first. */
static const char *cli_name = "halloc";

static inline int cli_usage_error(const char *format, ...)
    __attribute__((format(printf, 1, 2)));

/* One line saying what is wrong, one saying where to look; returns -1. */
static inline int cli_usage_error(const char *format, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", cli_name);
	va_start(ap, format);
	vfprintf(stderr, format, ap);
	va_end(ap);
	fprintf(stderr, "\ntry '%s --help'\n", cli_name);
	return -1;
}

/*
 * After getopt_long returned '?' (missing_value 0) or ':' (missing_value 1):
 * names the option as the user wrote it, "-x" or "--name".
 */
static inline int cli_bad_option(char **argv, int missing_value)
{
	const char *arg = argv[optind - 1];
	char shortopt[3] = {'-', (char)optopt, '\0'};

	if (strncmp(arg, "--", 2) == 0) {
		char name[64];

		snprintf(name, sizeof(name), "%.*s", (int)strcspn(arg, "="),
			 arg);
		if (missing_value)
			return cli_usage_error("option '%s' needs a value", name);
		if (optopt)
			return cli_usage_error("option '%s' takes no value", name);
		return cli_usage_error("unknown option '%s'", name);
	}
	if (missing_value)
		return cli_usage_error("option '%s' needs a value", shortopt);
	return cli_usage_error("unknown option '%s'", shortopt);
}

#define CLI_SUPPRESSIONS_USAGE                                              \
	"      --suppressions FILE leaks to leave out, in LeakSanitizer's\n"     \
	"                          format (leak:PATTERN lines)\n"

/* Usage text both commands show for the gate options. */
#define CLI_GATES_USAGE                                                     \
	"      --error-exitcode N  exit N (1-255) when leaks remain or a\n"      \
	"                          --max-* limit is exceeded\n"                 \
	"      --max-leaked BYTES  fail when more than BYTES leak in all\n"     \
	"                          (suffix K, M, G: KiB, MiB, GiB)\n"           \
	"      --max-peak BYTES    fail when a process's peak heap is more\n"   \
	"                          than BYTES\n"

/* One of the gate options; `option` is its long name without dashes.
 * Returns 1 when handled, -1 on an invalid value. */
static inline int cli_gate_option(const char *option, const char *arg,
				  struct cli_gates *g)
{
	if (strcmp(option, "error-exitcode") == 0) {
		if (!cli_parse_unsigned(arg, 1, 255, &g->exit_code))
			return cli_usage_error("invalid exit status '%s': "
					   "expected 1 to 255",
					   arg);
		g->gate.no_leaks = true;
		return 1;
	}
	if (strcmp(option, "max-leaked") == 0) {
		if (!cli_parse_bytes(arg, &g->gate.max_leaked))
			return cli_usage_error("invalid size '%s' for "
					   "--max-leaked: expected bytes "
					   "(e.g. 4096, 64K, 1M)",
					   arg);
		g->gate.max_leaked_set = true;
		return 1;
	}
	if (!cli_parse_bytes(arg, &g->gate.max_peak))
		return cli_usage_error("invalid size '%s' for --max-peak: "
				   "expected bytes (e.g. 4096, 64K, 1M)",
				   arg);
	g->gate.max_peak_set = true;
	return 1;
}

#endif /* HALLOC_CLI_COMMON_H */
