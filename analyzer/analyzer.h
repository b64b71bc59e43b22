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

struct ha_report_options {
	enum ha_format format;
	unsigned stack_frames; /* frames shown per stack; 0 = all */
	bool color;            /* ANSI colour in text */
};

enum ha_result ha_report_write(const struct ha_analysis *analysis,
			       const struct ha_report_options *options,
			       FILE *out, struct ha_diag *diag);

/*
 * Called by halloc-trace when recording has ended: symbolizes every address
 * of every stack in the log at `path` from the binaries on disk (libdw) and
 * appends HALLOC_FRAME_SYMBOLS frames to it, so the log is self-contained.
 * Does not write the END frame.
 */
enum ha_result ha_append_symbols(const char *path, struct ha_diag *diag);

#endif /* HALLOC_ANALYZER_H */
