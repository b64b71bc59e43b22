/*
 * analyzer/analysis.h - what an analysis holds once the log is replayed:
 * per process (stream) numbers, leaks grouped by site, per-site numbers.
 * Internal: shared by analysis.c, replay.c and the report writers.
 */
#ifndef HALLOC_ANALYZER_ANALYSIS_H
#define HALLOC_ANALYZER_ANALYSIS_H

#include "analyzer/model.h"

/* The blocks of one site live at the end; `stack` is the one holding the
 * most bytes of them, the stack a report shows. */
struct ha_leak {
	uint64_t bytes, blocks;
	uint32_t site, stack;
};

struct ha_site_stats {
	uint32_t site;
	uint64_t allocations, bytes_allocated;
	uint64_t peak_bytes; /* the most bytes the site held live at once */
	uint64_t leaked_bytes, leaked_blocks;
};

struct ha_process {
	uint32_t stream;
	int64_t parent;
	const char *const *argv;
	uint32_t argc;
	struct ha_summary summary, inherited;
	struct ha_leak *leaks; /* largest first */
	size_t nleaks;
	struct ha_site_stats *sites; /* most bytes allocated first */
	size_t nsites;
};

struct ha_analysis {
	struct ha_log *log;
	struct ha_process *procs; /* report order */
	size_t nprocs;
	bool complete;
	char incomplete_reason[256];
};

/* replay.c: fills procs[i] for stream i (all but stream, parent, argv). */
enum ha_result ha_replay(struct ha_log *log, struct ha_process *procs);

/* processes.c: the order streams are reported in, how each ended, who its
 * parent is and what its command was. *order is malloc'ed. */
enum ha_result ha_processes_settle(struct ha_log *log, uint32_t **order);
/* `root`: the traced process (the first one when the log does not say). */
void ha_process_identity(const struct ha_log *log, uint32_t stream, bool root,
			 int64_t *parent, const char *const **argv,
			 uint32_t *argc);

/* report_text.c, report_json.c */
enum ha_result ha_report_text(const struct ha_analysis *analysis,
			      const struct ha_report_options *options,
			      FILE *out);
enum ha_result ha_report_json(const struct ha_analysis *analysis,
			      const struct ha_report_options *options,
			      FILE *out);

#endif /* HALLOC_ANALYZER_ANALYSIS_H */
