/*
 * analyzer/analyzer.h - libhalloc-analyzer: from a log to a report.
 *
 * A report is a pure function of a log and options: no global state, so
 * tests can call every step. The CLI (halloc-report, halloc-trace) only
 * parses options, calls these and maps results to exit statuses.
 *
 * Counting follows Valgrind's HEAP SUMMARY: every successful call that
 * returns new memory is one allocation (malloc(0) too; a realloc of a
 * non-NULL pointer to a non-zero size is one allocation and one free);
 * free(NULL) is not a free; leaked means still allocated when the process
 * (image) ended.
 */
#ifndef HALLOC_ANALYZER_H
#define HALLOC_ANALYZER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum ha_result {
	HA_OK = 0,
	HA_ERR_IO,      /* cannot open/read/write; errno-based message */
	HA_ERR_NOT_LOG, /* no halloc magic */
	HA_ERR_VERSION, /* a version this build does not read */
	HA_ERR_CORRUPT, /* a frame or record that cannot be decoded */
	HA_ERR_NOMEM,
};

/* One line explaining the last failure or warning, for the CLI to print. */
struct ha_diag {
	char message[512];
};

const char *ha_result_name(enum ha_result result);

/*
 * Reading a log. Truncation (no END frame, a partial last frame) is not an
 * error: the analysis is marked incomplete. Corruption stops reading at the
 * bad frame; what came before is kept, the analysis is marked incomplete
 * and corrupt, and ha_analyze_file returns HA_ERR_CORRUPT with the
 * analysis still set, so the caller can report what it holds.
 */
struct ha_analysis;

struct ha_analyze_options {
	bool symbolize_from_files; /* use binaries on disk for addresses the
	                              log's SYMBOLS frames do not cover */
};

enum ha_result ha_analyze_file(const char *path,
			       const struct ha_analyze_options *options,
			       struct ha_analysis **out, struct ha_diag *diag);
void ha_analysis_free(struct ha_analysis *analysis);

/* Whole-log facts the CLI needs for its exit status and messages. */
bool ha_analysis_complete(const struct ha_analysis *analysis);
bool ha_analysis_corrupt(const struct ha_analysis *analysis);
unsigned ha_analysis_process_count(const struct ha_analysis *analysis);
uint64_t ha_analysis_leaked_bytes(const struct ha_analysis *analysis);
uint64_t ha_analysis_leaked_blocks(const struct ha_analysis *analysis);

/* Same as ha_analyze_file, from an open stream; `name` is for messages. */
enum ha_result ha_analyze_stream(FILE *f, const char *name,
				 const struct ha_analyze_options *options,
				 struct ha_analysis **out, struct ha_diag *diag);

/* Why the analysis is incomplete ("" when it is complete). */
const char *ha_analysis_incomplete_reason(const struct ha_analysis *analysis);

/*
 * Per process (image) results, in report order: the order processes started
 * in. A forked child starts with its parent's heap as of the fork: its live
 * blocks and, as in Valgrind, its counters (`inherited` says how much of
 * `summary` came from the parent). An image replaced by exec leaks nothing.
 */
enum ha_end_how {
	HA_END_UNKNOWN = 0, /* the tracer could not tell */
	HA_END_EXIT,        /* exited; end_value is the exit status */
	HA_END_SIGNAL,      /* killed; end_value is the signal number */
	HA_END_EXEC,        /* replaced by exec */
	HA_END_DETACHED,    /* still running when recording stopped (-p) */
};

struct ha_summary {
	uint64_t allocations, frees, bytes_allocated;
	uint64_t peak_bytes, peak_blocks; /* largest live bytes, in seq order */
	uint64_t leaked_bytes, leaked_blocks;
	uint64_t failed_allocations;      /* allocations that returned NULL */
	/* Frees of addresses not live then: blocks allocated before
	 * recording started when attached (not counted in `frees`), else
	 * invalid or double frees (counted, as Valgrind does). */
	uint64_t unmatched_frees;
	uint64_t end_bytes, end_blocks;   /* live when the image ended */
	/* Times in microseconds since the image started (the records'
	 * clock): when live bytes first reached peak_bytes, and the last
	 * event (the run's length as recorded; 0 when unknown). */
	uint64_t peak_time_us, duration_us;
	/* Allocations freed before the process made any other allocation
	 * (heaptrack's temporary allocations), in seq order. */
	uint64_t temporary;
	/* Part of leaked_* the suppressions took (ha_analysis_suppress). */
	uint64_t suppressed_bytes, suppressed_blocks;
};

struct ha_process_info {
	uint32_t pid;
	int64_t parent; /* parent pid; -1 for the traced process or unknown */
	const char *const *argv;
	unsigned argc;
	enum ha_end_how end;
	uint64_t end_value;
	bool core_dumped;
	bool complete;
	bool recorded;  /* false: the tracer saw it end, but no event came */
	struct ha_summary summary;
	struct ha_summary inherited; /* counters taken over at the fork */
	unsigned nleaks;
};

/* A leak: the blocks of one allocation site still live at the end. */
struct ha_leak_info {
	uint64_t bytes, blocks;
	const char *function, *file; /* the site; "" when unknown */
	unsigned line;
};

/* False when index is out of range. Strings live as long as the analysis. */
bool ha_analysis_process(const struct ha_analysis *analysis, unsigned index,
			 struct ha_process_info *out);
/* Leaks of a process, largest first. */
bool ha_analysis_leak(const struct ha_analysis *analysis, unsigned process,
		      unsigned index, struct ha_leak_info *out);

enum ha_format { HA_FORMAT_TEXT = 0, HA_FORMAT_JSON = 1 };

/* What leaks and sites are ordered by (--sort). DEFAULT: leaks by bytes
 * leaked, sites by bytes allocated; the others order both by their site's
 * number: leaked bytes, peak bytes, bytes allocated, allocations,
 * temporary allocations. */
enum ha_sort {
	HA_SORT_DEFAULT = 0,
	HA_SORT_LEAKED,
	HA_SORT_PEAK,
	HA_SORT_ALLOCATED,
	HA_SORT_CALLS,
	HA_SORT_TEMPORARY, /* temporary allocations */
};

struct ha_report_options {
	enum ha_format format;
	unsigned stack_frames; /* frames shown per stack; 0 = all */
	bool color;            /* ANSI colour in text */
	/* Zero values change nothing. Leaks left out by top/min_bytes are
	 * counted in the report ("leaks_omitted" in JSON); JSON keeps every
	 * site, in sort order. */
	unsigned top;          /* leaks (and text's sites) shown; 0 = all */
	enum ha_sort sort;
	uint64_t min_bytes;    /* leaks of fewer bytes are not shown */
	bool no_stacks;        /* no frames (JSON: "stack": []) */
	bool pid_set;          /* only the processes (images) of pid */
	uint32_t pid;
	bool utf8;             /* text may use Unicode (the sparkline) */
	/* Columns text may use (the terminal's); 0: unknown, a fixed layout
	 * with full paths. With a width, the sparkline fills it and stack
	 * lines that would not fit show module and file basenames. */
	unsigned width;
};

/* Whether the analysis holds a process (image) with this pid. */
bool ha_analysis_has_pid(const struct ha_analysis *analysis, uint32_t pid);

enum ha_result ha_report_write(const struct ha_analysis *analysis,
			       const struct ha_report_options *options,
			       FILE *out, struct ha_diag *diag);

/*
 * Suppressions (suppressions.c), in LeakSanitizer's format: `leak:PATTERN`
 * lines, `#` comments and blank lines. PATTERN matches as a substring,
 * `*` is any run of characters, `^` and `$` anchor it at the start and the
 * end; a leaked stack is suppressed when PATTERN matches the function, file
 * or module of any of its frames (the first matching entry takes it).
 * A line of any other form is an error (HA_ERR_CORRUPT, the line named).
 */
struct ha_suppressions;
struct ha_suppression_entry {
	char *pattern; /* the line as written, "leak:foo" */
	unsigned line;
	char *glob; /* internal */
};

enum ha_result ha_suppressions_load(const char *path,
				    struct ha_suppressions **out,
				    struct ha_diag *diag);
void ha_suppressions_free(struct ha_suppressions *suppressions);
size_t ha_suppressions_count(const struct ha_suppressions *suppressions);
const struct ha_suppression_entry *
ha_suppressions_entry(const struct ha_suppressions *suppressions,
		      size_t index);
/* Whether PATTERN (without "leak:") matches s, as above. */
bool ha_suppression_match(const char *pattern, const char *s);
/* Takes the leaks the suppressions match out of every process's leaks,
 * counting them in summary.suppressed_*. `suppressions` must outlive the
 * analysis: the report names its entries. */
enum ha_result ha_analysis_suppress(struct ha_analysis *analysis,
				    const struct ha_suppressions *suppressions);

/*
 * CI gates (gates.c), on the leaks no suppression took. A gate fails
 * when: `no_leaks` and a block is still leaked in any process;
 * `max_leaked_set` and the bytes leaked by all the processes together
 * exceed max_leaked; `max_peak_set` and the peak heap
 * of some process exceeds max_peak. Returns true when one fails, with a
 * line (lowercase, no final period) saying which in `why`.
 */
struct ha_gate_options {
	bool no_leaks;
	bool max_leaked_set, max_peak_set;
	uint64_t max_leaked, max_peak;
};

bool ha_gate_check(const struct ha_analysis *analysis,
		   const struct ha_gate_options *options, char *why,
		   size_t why_size);

/*
 * `halloc-report --diff` (diff.c): the sites whose leaked, peak or
 * allocated bytes (or allocations) changed from OLD to NEW, largest change
 * first, and the totals; text or JSON as options->format says (also
 * options->top). Sites match by function, file and line.
 */
enum ha_result ha_diff_write(const struct ha_analysis *old_analysis,
			     const char *old_name,
			     const struct ha_analysis *new_analysis,
			     const char *new_name,
			     const struct ha_report_options *options,
			     FILE *out, struct ha_diag *diag);

/*
 * Called by halloc-trace when recording has ended: symbolizes every address
 * of every stack in the log at `path` from the binaries on disk (libdw) and
 * appends HALLOC_FRAME_SYMBOLS frames to it, so the log is self-contained.
 * Does not write the END frame.
 */
enum ha_result ha_append_symbols(const char *path, struct ha_diag *diag);

/*
 * The same, without reading the log again (symbols_feed.c): halloc-trace
 * feeds each frame it writes that may define modules or stacks (all but
 * CHUNK frames with HALLOC_FRAME_EVENTS_ONLY), in log order, and calls
 * ha_symbols_feed_append when the log is written but for SYMBOLS and END.
 * Feeding may happen on one thread while another calls
 * ha_symbols_feed_work (it decodes what was fed and opens the module
 * files its stacks lie in, so append finds them open; true when it
 * found something to do); append only after the last work returned.
 * Past 64 MiB fed, append reads the file as ha_append_symbols does.
 */
struct ha_symbols_feed;
struct ha_symbols_feed *ha_symbols_feed_new(void);
void ha_symbols_feed_frame(struct ha_symbols_feed *feed, const void *frame,
			   size_t size);
bool ha_symbols_feed_work(struct ha_symbols_feed *feed);
enum ha_result ha_symbols_feed_append(struct ha_symbols_feed *feed,
				      const char *path, struct ha_diag *diag);
void ha_symbols_feed_free(struct ha_symbols_feed *feed);

#endif /* HALLOC_ANALYZER_H */
