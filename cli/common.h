/*
 * cli/common.h - what halloc-trace and halloc-report share: the version,
 * the report defaults, and two small helpers for option values and colour.
 * Header-only: each command is one .c file.
 */
#ifndef HALLOC_CLI_COMMON_H
#define HALLOC_CLI_COMMON_H

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
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

#endif /* HALLOC_CLI_COMMON_H */
