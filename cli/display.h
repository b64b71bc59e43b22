/*
 * cli/display.h - the report options halloc-trace and halloc-report both
 * take (what the report shows, and how), parsed once here.
 *
 * A command adds CLI_DISPLAY_LONG_OPTIONS to its getopt_long table and
 * hands every value getopt_long returns that its own switch does not know
 * to cli_display_option(). The ids are above any command's own (256 + a
 * few), so the tables merge without renumbering. The CI gates and
 * --suppressions stay in each command's table (cli_gate_option() in
 * common.h parses the gates): what they check is not what the report
 * shows. Header-only: each command is one .c file.
 */
#ifndef HALLOC_CLI_DISPLAY_H
#define HALLOC_CLI_DISPLAY_H

#include <limits.h>
#include <sys/ioctl.h>

#include "cli/common.h"

enum cli_display_id {
	CLI_OPT_FORMAT = 0x1000,
	CLI_OPT_TOP,
	CLI_OPT_SORT,
	CLI_OPT_PROCESS,
	CLI_OPT_STACKS,
	CLI_OPT_NO_STACKS,
	CLI_OPT_MIN_BYTES,
	CLI_OPT_COLOR,
	CLI_OPT_NO_COLOR,
};

#define CLI_DISPLAY_LONG_OPTIONS                                               \
	{"format", required_argument, NULL, CLI_OPT_FORMAT},                   \
	{"top", required_argument, NULL, CLI_OPT_TOP},                         \
	{"sort", required_argument, NULL, CLI_OPT_SORT},                       \
	{"process", required_argument, NULL, CLI_OPT_PROCESS},                 \
	{"stacks", required_argument, NULL, CLI_OPT_STACKS},                   \
	{"no-stacks", no_argument, NULL, CLI_OPT_NO_STACKS},                   \
	{"min-bytes", required_argument, NULL, CLI_OPT_MIN_BYTES},             \
	{"color", required_argument, NULL, CLI_OPT_COLOR},                     \
	{"no-color", no_argument, NULL, CLI_OPT_NO_COLOR}

/* Usage text of the options above, in the order --help shows them. */
#define CLI_DISPLAY_USAGE                                                      \
	"      --format FORMAT     text (default) or json\n"                   \
	"      --top N             show the N largest leaks (and sites)\n"     \
	"      --sort KEY          order leaks and sites by their site's\n"    \
	"                          peak, leaked, allocated (bytes), calls\n"   \
	"                          or temporary (allocations)\n"               \
	"      --min-bytes BYTES   hide leaks of fewer bytes\n"                \
	"      --stacks N          show at most N frames of each stack\n"      \
	"                          (0: all; default 12 in text, all in\n"      \
	"                          json)\n"                                    \
	"      --no-stacks         show no call stacks\n"                      \
	"      --process PID       report only the process PID\n"              \
	"      --color WHEN        auto (default: colour on a terminal\n"      \
	"                          unless NO_COLOR is set), always or\n"       \
	"                          never\n"                                    \
	"      --no-color          the same as --color never\n"

/* Frames shown per stack in a text report unless --stacks says otherwise;
 * JSON shows every frame, for tools. */
#define CLI_TEXT_STACK_FRAMES 12u
/* Above any depth the agent records. */
#define CLI_STACKS_MAX 1000000u

enum cli_color { CLI_COLOR_AUTO = 0, CLI_COLOR_ALWAYS, CLI_COLOR_NEVER };

struct cli_display {
	enum ha_format format;
	unsigned top;
	enum ha_sort sort;
	bool pid_set;
	unsigned pid;
	bool stacks_given;
	unsigned stacks;
	bool no_stacks;
	uint64_t min_bytes;
	enum cli_color color;
};

static inline bool cli_parse_sort(const char *text, enum ha_sort *out)
{
	static const struct {
		const char *name;
		enum ha_sort sort;
	} keys[] = {{"peak", HA_SORT_PEAK},
		    {"leaked", HA_SORT_LEAKED},
		    {"allocated", HA_SORT_ALLOCATED},
		    {"calls", HA_SORT_CALLS},
		    {"temporary", HA_SORT_TEMPORARY}};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(text, keys[i].name) == 0) {
			*out = keys[i].sort;
			return true;
		}
	return false;
}

static inline int cli_parse_color(const char *text, enum cli_color *out)
{
	if (strcmp(text, "auto") == 0)
		*out = CLI_COLOR_AUTO;
	else if (strcmp(text, "always") == 0)
		*out = CLI_COLOR_ALWAYS;
	else if (strcmp(text, "never") == 0)
		*out = CLI_COLOR_NEVER;
	else
		return cli_usage_error("invalid colour mode '%s': expected "
				       "auto, always or never",
				       text);
	return 1;
}

/*
 * One of the options above: `id` is what getopt_long returned, `arg` its
 * optarg. Returns 1 when handled, 0 when `id` is not one of them (the
 * caller's bad option), -1 on an invalid value (already said).
 */
static inline int cli_display_option(int id, const char *arg,
				     struct cli_display *d)
{
	switch (id) {
	case CLI_OPT_FORMAT:
		if (strcmp(arg, "text") == 0)
			d->format = HA_FORMAT_TEXT;
		else if (strcmp(arg, "json") == 0)
			d->format = HA_FORMAT_JSON;
		else
			return cli_usage_error("invalid format '%s': expected "
					       "text or json",
					       arg);
		return 1;
	case CLI_OPT_TOP:
		if (!cli_parse_unsigned(arg, 1, UINT_MAX, &d->top))
			return cli_usage_error("invalid number '%s' for --top: "
					       "expected 1 or more",
					       arg);
		return 1;
	case CLI_OPT_SORT:
		if (!cli_parse_sort(arg, &d->sort))
			return cli_usage_error(
			    "invalid sort key '%s': expected peak, leaked, "
			    "allocated, calls or temporary",
			    arg);
		return 1;
	case CLI_OPT_PROCESS:
		if (!cli_parse_unsigned(arg, 1, INT_MAX, &d->pid))
			return cli_usage_error("invalid pid '%s'", arg);
		d->pid_set = true;
		return 1;
	case CLI_OPT_STACKS:
		if (!cli_parse_unsigned(arg, 0, CLI_STACKS_MAX, &d->stacks))
			return cli_usage_error("invalid number of frames '%s': "
					       "expected 0 (all) or more",
					       arg);
		d->stacks_given = true;
		return 1;
	case CLI_OPT_NO_STACKS:
		d->no_stacks = true;
		return 1;
	case CLI_OPT_MIN_BYTES:
		if (!cli_parse_bytes(arg, &d->min_bytes))
			return cli_usage_error(
			    "invalid size '%s' for --min-bytes: expected "
			    "bytes (e.g. 4096, 64K, 1M)",
			    arg);
		return 1;
	case CLI_OPT_COLOR:
		return cli_parse_color(arg, &d->color);
	case CLI_OPT_NO_COLOR:
		d->color = CLI_COLOR_NEVER;
		return 1;
	default:
		return 0;
	}
}

/* Colour only on a terminal, and never when NO_COLOR is set (no-color.org),
 * unless --color always. */
static inline bool cli_use_color(enum cli_color mode, int fd)
{
	const char *no_color = getenv("NO_COLOR");

	if (mode != CLI_COLOR_AUTO)
		return mode == CLI_COLOR_ALWAYS;
	return isatty(fd) && !(no_color && *no_color);
}

/* The text width: COLUMNS when set (as in ls), else the terminal's on
 * fd, else 0 (not a terminal: the report keeps its fixed layout). */
static inline unsigned cli_width(int fd)
{
	const char *columns = getenv("COLUMNS");
	struct winsize ws;
	unsigned width;

	if (columns && cli_parse_unsigned(columns, 1, 10000, &width))
		return width;
	if (isatty(fd) && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col)
		return ws.ws_col;
	return 0;
}

/* The analyzer's report options for a report written to fd. */
static inline struct ha_report_options
cli_display_report(const struct cli_display *d, int fd)
{
	bool text = d->format == HA_FORMAT_TEXT;

	return (struct ha_report_options){
	    .format = d->format,
	    .stack_frames = d->stacks_given ? d->stacks
			    : text	    ? CLI_TEXT_STACK_FRAMES
					    : 0,
	    .color = text && cli_use_color(d->color, fd),
	    .top = d->top,
	    .sort = d->sort,
	    .min_bytes = d->min_bytes,
	    .no_stacks = d->no_stacks,
	    .pid_set = d->pid_set,
	    .pid = d->pid,
	    .utf8 = cli_utf8(),
	    .width = text ? cli_width(fd) : 0,
	};
}

#endif /* HALLOC_CLI_DISPLAY_H */
