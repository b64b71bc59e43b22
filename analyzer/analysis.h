/*
 * analyzer/analysis.h - what an analysis holds once the log is replayed:
 * per process (stream) numbers, leaks grouped by site, per-site numbers.
 * Internal: shared by analysis.c, replay.c and the report writers.
 */
#ifndef HALLOC_ANALYZER_ANALYSIS_H
#define HALLOC_ANALYZER_ANALYSIS_H

#include "analyzer/model.h"
#include "analyzer/types.h"
#include "analyzer/pages.h"

/* The blocks of one site live at the end; `stack` is the one holding the
 * most bytes of them, the stack a report shows. */
struct ha_leak {
	uint64_t bytes, blocks;
	uint32_t site, stack;
	/* when its oldest and youngest blocks were allocated (us since the
	 * start): their ages at the end are summary.duration_us minus these */
	uint64_t first_time, last_time;
};

/* qsort order of leak groups: most bytes first, then blocks, then site. */
int ha_leak_compare(const void *a, const void *b);

struct ha_site_stats {
	uint32_t site;
	uint64_t allocations, bytes_allocated;
	uint64_t peak_bytes; /* the most bytes the site held live at once */
	uint64_t leaked_bytes, leaked_blocks;
	uint64_t temporary; /* allocations freed before any other was made */
};

/* Allocation sizes in power-of-two buckets: bucket 0 holds size 0, bucket
 * k >= 1 sizes [2^(k-1), 2^k - 1]. */
#define HA_SIZE_BUCKETS 65

static inline unsigned ha_size_bucket(uint64_t size)
{
	return size ? 64u - (unsigned)__builtin_clzll(size) : 0u;
}

/* timeline.c: the heap over the run, HA_TIMELINE_POINTS points (one when
 * no time passed); bytes[i] is the most it held in interval i. */
#define HA_TIMELINE_POINTS 200

struct ha_timeline {
	uint64_t end_us;
	size_t n;
	uint64_t *bytes;
	bool *seen;     /* while building */
	uint64_t *last; /* while building: live bytes at the interval's end */
	/* while building: the interval of the last event, [lo_us, hi_us) */
	size_t cur;
	uint64_t lo_us, hi_us;
};

bool ha_timeline_start(struct ha_timeline *tl, uint64_t end_us,
		       uint64_t start_bytes);
void ha_timeline_add(struct ha_timeline *tl, uint64_t time_us, uint64_t bytes);
void ha_timeline_finish(struct ha_timeline *tl);
void ha_timeline_free(struct ha_timeline *tl);
uint64_t ha_timeline_time(const struct ha_timeline *tl, size_t i);

/* A site's share of the heap at the moment of its peak. */
struct ha_peak_site {
	uint32_t site;
	uint64_t bytes, blocks;
};

/* What one suppression entry took out of a process's leaks. */
struct ha_suppressed {
	uint32_t entry; /* index in the suppressions */
	uint64_t stacks, bytes, blocks;
};

struct ha_process {
	uint32_t stream;
	int64_t parent;
	const char *const *argv;
	uint32_t argc;
	struct ha_summary summary, inherited;
	struct ha_leak *leaks; /* largest first; without suppressed ones */
	size_t nleaks;
	struct ha_leak *stack_leaks; /* per stack, any order; all of them */
	size_t nstack_leaks;
	struct ha_suppressed *suppressed; /* entries that matched, file order */
	size_t nsuppressed;
	struct ha_site_stats *sites; /* most bytes allocated first */
	size_t nsites;
	/* every allocation of its own (not the parent's before a fork), and
	 * the temporary ones, by size bucket */
	uint64_t sizes[HA_SIZE_BUCKETS], temporary_sizes[HA_SIZE_BUCKETS];
	struct ha_timeline timeline;
	struct ha_peak_site *peak_sites; /* at the peak, most bytes first */
	size_t npeak_sites;
	struct ha_types_result types; /* memory by type (types.h) */
	struct ha_page_report pages; /* page items, RSS (pages.c) */
};

struct ha_analysis {
	struct ha_log *log;
	struct ha_process *procs; /* report order */
	size_t nprocs;
	bool complete;
	char incomplete_reason[256];
	/* set by ha_analysis_suppress; must outlive the analysis */
	const struct ha_suppressions *suppressions;
};

/* replay.c: fills procs[i] for stream i (all but stream, parent, argv),
 * taking each stream's events in order from the plan (event_merge.h). */
struct ha_merge_plan;
enum ha_result ha_replay(struct ha_log *log, struct ha_process *procs,
			 struct ha_merge_plan *plan);

/* processes.c: the order streams are reported in, how each ended, who its
 * parent is and what its command was. *order is malloc'ed. */
enum ha_result ha_processes_settle(struct ha_log *log, uint32_t **order);
/* `root`: the traced process (the first one when the log does not say). */
void ha_process_identity(const struct ha_log *log, uint32_t stream, bool root,
			 int64_t *parent, const char *const **argv,
			 uint32_t *argc);

/* report_select.c: a leaked block allocated at `time`, its age at the
 * end of the process (0 if the clocks disagree: a block a forked child
 * inherited was timed on its parent's clock). */
static inline uint64_t ha_age_at_end(const struct ha_process *p,
				     uint64_t time)
{
	return p->summary.duration_us > time ? p->summary.duration_us - time
					     : 0;
}

/* report_select.c: n events over `us` microseconds, per second, rounded. */
uint64_t ha_rate_per_second(uint64_t n, uint64_t us);

/* report_select.c: what the report shows, as options say. Leaks and
 * sites come back as malloc'ed indexes into p->leaks / p->sites. */
struct ha_omitted {
	uint64_t leaks, bytes, blocks; /* left out by --top, --min-bytes */
};

bool ha_report_shows(const struct ha_analysis *a, const struct ha_process *p,
		     const struct ha_report_options *o);
enum ha_result ha_select_leaks(const struct ha_analysis *a,
			       const struct ha_process *p,
			       const struct ha_report_options *o,
			       uint32_t **out, size_t *n,
			       struct ha_omitted *omitted);
/* `top`: at most that many; 0 = all. */
enum ha_result ha_select_sites(const struct ha_process *p,
			       const struct ha_report_options *o,
			       unsigned top, uint32_t **out, size_t *n);

/* report_text.c, report_json.c */
enum ha_result ha_report_text(const struct ha_analysis *analysis,
			      const struct ha_report_options *options,
			      FILE *out);
enum ha_result ha_report_json(const struct ha_analysis *analysis,
			      const struct ha_report_options *options,
			      FILE *out);

#endif /* HALLOC_ANALYZER_ANALYSIS_H */
