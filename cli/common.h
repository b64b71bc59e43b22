/*
 * cli/common.h - what halloc-trace and halloc-report share: the version,
 * the report defaults, and helpers for option errors, values and colour.
 * Header-only: each command is one .c file.
 */
#ifndef HALLOC_CLI_COMMON_H
#define HALLOC_CLI_COMMON_H

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HALLOC_VERSION "0.1.0"

/* Frames shown per stack in a text report unless --stacks says otherwise;
 * JSON shows every frame, for tools. */
#define CLI_TEXT_STACK_FRAMES 12u

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

/* Colour only on a terminal, and never when NO_COLOR is set (no-color.org). */
static inline bool cli_use_color(int fd)
{
	const char *no_color = getenv("NO_COLOR");

	return isatty(fd) && !(no_color && *no_color);
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

#endif /* HALLOC_CLI_COMMON_H */
