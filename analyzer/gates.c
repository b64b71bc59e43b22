/*
 * analyzer/gates.c - CI gates: whether an analysis passes the limits a
 * pipeline set (no leak, at most so many bytes leaked, a peak no higher
 * than ...). A pure function of the analysis, so the two commands agree
 * and tests can call it.
 *
 * Suppressed leaks do not count. Leaked bytes are summed over every process of
 * the log; the peak is per process (the processes' heaps are separate), so the
 * highest one counts.
 */
#include <inttypes.h>
#include <stdio.h>

#include "analyzer/analysis.h"

bool ha_gate_check(const struct ha_analysis *analysis,
		   const struct ha_gate_options *options, char *why,
		   size_t why_size)
{
	uint64_t leaked = 0, blocks = 0, peak = 0;
	uint32_t peak_pid = 0;

	if (why_size)
		why[0] = '\0';
	for (size_t i = 0; i < analysis->nprocs; i++) {
		const struct ha_process *p = &analysis->procs[i];

		/* what suppressions took is not a failure */
		leaked += p->summary.leaked_bytes - p->summary.suppressed_bytes;
		blocks +=
		    p->summary.leaked_blocks - p->summary.suppressed_blocks;
		if (p->summary.peak_bytes > peak) {
			peak = p->summary.peak_bytes;
			peak_pid = analysis->log->streams[p->stream].pid;
		}
	}
	if (options->no_leaks && blocks) {
		snprintf(why, why_size,
			 "%" PRIu64 " bytes leaked in %" PRIu64 " %s", leaked,
			 blocks, blocks == 1 ? "block" : "blocks");
		return true;
	}
	if (options->max_leaked_set && leaked > options->max_leaked) {
		snprintf(why, why_size,
			 "%" PRIu64 " bytes leaked, more than the %" PRIu64
			 " allowed",
			 leaked, options->max_leaked);
		return true;
	}
	if (options->max_peak_set && peak > options->max_peak) {
		snprintf(why, why_size,
			 "peak heap of %" PRIu64 " bytes (process %" PRIu32
			 "), more than the %" PRIu64 " allowed",
			 peak, peak_pid, options->max_peak);
		return true;
	}
	return false;
}
