/*
 * analyzer/report_json.c - the report tools parse. Its shape is fixed
 * (see notes in analyzer.h and the man page); keys are only ever added:
 *
 *   {"format": "halloc-report", "version": 1, "complete": ..., "processes": [
 *     {"pid", "parent", "command", "status", "complete", "summary",
 *      "leaks": [{"bytes", "blocks", "oldest_age_us", "youngest_age_us",
 *                 "site", "stack"}],
 *      "leaks_omitted": {"leaks", "bytes", "blocks"},
 *      "size_histogram": [{"min", "max", "allocations", "temporary"}],
 *      "timeline": [{"time_us", "bytes"}],
 *      "peak_contributors": [{"site", "bytes", "blocks"}],
 *      "suppressed": [{"suppression", "line", "stacks", "bytes", "blocks"}],
 *      "refused": [{"site", "reason", "allocations", "bytes"}],
 *      "killed_after_refusal", "last_refused" (refusals.h),
 *      "sites": [{"site", "allocations", "bytes_allocated", "peak_bytes",
 *                 "leaked_bytes", "leaked_blocks"}],
 *      "types": [...], "size_classes": [...]}]}    (report_types.c)
 *
 * "status" is {"exit": n}, {"signal": n}, or null when the image did not
 * end that way (replaced by exec, still running when recording stopped) or
 * its end was not recorded; "ended_by" says which: "exit", "signal",
 * "exec", "detached" or "unknown".
 */
#include <stdlib.h>

#include "analyzer/analysis.h"
#include "analyzer/json.h"
#include "analyzer/refusals.h"
#include "analyzer/report_pages.h"
#include "halloc/log.h"

void ha_json_site(struct ha_json *j, const struct ha_log *log,
		  const struct ha_site *site)
{
	ha_json_object(j, true);
	ha_json_key(j, "function");
	ha_json_string(j, site->function);
	ha_json_key(j, "file");
	ha_json_string(j, site->file);
	ha_json_key(j, "line");
	ha_json_uint(j, site->line);
	ha_json_key(j, "module");
	ha_json_string(j, log->modfiles[site->modfile].path);
	if (site->loc != HA_NONE) {
		ha_json_key(j, "offset");
		ha_json_hex(j, log->locs[site->loc].offset);
	}
	ha_json_end(j);
}

static enum ha_result write_stack(struct ha_json *j, const struct ha_log *log,
				  uint32_t stack)
{
	struct ha_frame *frames;
	long n = ha_stack_frames(log, stack, &frames);

	if (n < 0)
		return HA_ERR_NOMEM;
	ha_json_array(j, false);
	for (long i = 0; i < n; i++) {
		ha_json_object(j, true);
		ha_json_key(j, "function");
		ha_json_string(j, frames[i].function);
		ha_json_key(j, "file");
		ha_json_string(j, frames[i].file);
		ha_json_key(j, "line");
		ha_json_uint(j, frames[i].line);
		ha_json_key(j, "module");
		ha_json_string(j, frames[i].module);
		ha_json_key(j, "address");
		ha_json_hex(j, frames[i].address);
		ha_json_key(j, "offset");
		ha_json_hex(j, frames[i].offset);
		ha_json_end(j);
	}
	ha_json_end(j);
	free(frames);
	return HA_OK;
}

static void write_status(struct ha_json *j, const struct ha_stream *s)
{
	static const char *const ended_by[] = {
	    [HA_END_UNKNOWN] = "unknown",   [HA_END_EXIT] = "exit",
	    [HA_END_SIGNAL] = "signal",	    [HA_END_EXEC] = "exec",
	    [HA_END_DETACHED] = "detached",
	};

	ha_json_key(j, "status");
	if (s->end == HA_END_EXIT || s->end == HA_END_SIGNAL) {
		ha_json_object(j, true);
		ha_json_key(j, s->end == HA_END_EXIT ? "exit" : "signal");
		ha_json_uint(j, s->end_value);
		ha_json_end(j);
	} else {
		ha_json_null(j);
	}
	ha_json_key(j, "ended_by");
	ha_json_string(j, ended_by[s->end]);
	if (s->end == HA_END_SIGNAL) {
		ha_json_key(j, "core_dumped");
		ha_json_bool(j, s->core_dumped);
	}
}

static void write_summary(struct ha_json *j, const struct ha_process *p)
{
	const struct ha_summary *m = &p->summary;

	ha_json_object(j, false);
	ha_json_counter(j, "allocations", m->allocations);
	ha_json_counter(j, "frees", m->frees);
	ha_json_counter(j, "bytes_allocated", m->bytes_allocated);
	ha_json_counter(j, "peak_bytes", m->peak_bytes);
	ha_json_counter(j, "peak_blocks", m->peak_blocks);
	ha_json_counter(j, "leaked_bytes", m->leaked_bytes);
	ha_json_counter(j, "leaked_blocks", m->leaked_blocks);
	ha_json_counter(j, "failed_allocations", m->failed_allocations);
	ha_json_counter(j, "unmatched_frees", m->unmatched_frees);
	ha_json_counter(j, "in_use_at_end_bytes", m->end_bytes);
	ha_json_counter(j, "in_use_at_end_blocks", m->end_blocks);
	ha_json_counter(j, "peak_time_us", m->peak_time_us);
	ha_json_counter(j, "duration_us", m->duration_us);
	/* allocations per second over the recorded run; null: no time */
	ha_json_key(j, "allocation_rate");
	if (m->duration_us)
		ha_json_uint(j, ha_rate_per_second(m->allocations,
						   m->duration_us));
	else
		ha_json_null(j);
	ha_json_counter(j, "temporary_allocations", m->temporary);
	ha_json_counter(j, "suppressed_bytes", m->suppressed_bytes);
	ha_json_counter(j, "suppressed_blocks", m->suppressed_blocks);
	ha_json_peak_rss(j, p);
	ha_json_end(j);
}

/* "size_histogram": the non-empty power-of-two buckets, smallest first;
 * "max" is the largest size the bucket holds. */
static void write_histogram(struct ha_json *j, const struct ha_process *p)
{
	ha_json_key(j, "size_histogram");
	ha_json_array(j, false);
	for (unsigned k = 0; k < HA_SIZE_BUCKETS; k++) {
		if (!p->sizes[k] && !p->temporary_sizes[k])
			continue;
		ha_json_object(j, true);
		ha_json_counter(j, "min", k ? 1ull << (k - 1) : 0);
		ha_json_counter(j, "max",
			      k == 0 ? 0 : k == 64 ? UINT64_MAX : (1ull << k) - 1);
		ha_json_counter(j, "allocations", p->sizes[k]);
		ha_json_counter(j, "temporary", p->temporary_sizes[k]);
		ha_json_end(j);
	}
	ha_json_end(j);
}

/* "suppressed": the entries that took leaks out of "leaks", file order. */
static void write_suppressed(struct ha_json *j, const struct ha_analysis *a,
			     const struct ha_process *p)
{
	ha_json_key(j, "suppressed");
	ha_json_array(j, false);
	for (size_t i = 0; i < p->nsuppressed; i++) {
		const struct ha_suppressed *u = &p->suppressed[i];
		const struct ha_suppression_entry *e =
		    ha_suppressions_entry(a->suppressions, u->entry);

		ha_json_object(j, true);
		ha_json_key(j, "suppression");
		ha_json_string(j, e ? e->pattern : "");
		ha_json_counter(j, "line", e ? e->line : 0);
		ha_json_counter(j, "stacks", u->stacks);
		ha_json_counter(j, "bytes", u->bytes);
		ha_json_counter(j, "blocks", u->blocks);
		ha_json_end(j);
	}
	ha_json_end(j);
}

enum ha_result ha_json_stack(struct ha_json *j, const struct ha_log *log,
			     uint32_t stack)
{
	return write_stack(j, log, stack);
}

static enum ha_result write_process(struct ha_json *j,
				    const struct ha_analysis *a,
				    const struct ha_process *p,
				    const struct ha_report_options *o)
{
	struct ha_omitted omitted;
	uint32_t *idx;
	size_t n;
	const struct ha_log *log = a->log;
	const struct ha_stream *s = &log->streams[p->stream];

	ha_json_object(j, false);
	ha_json_key(j, "pid");
	ha_json_uint(j, s->pid);
	ha_json_key(j, "parent");
	if (p->parent < 0)
		ha_json_null(j);
	else
		ha_json_int(j, p->parent);
	ha_json_key(j, "command");
	ha_json_array(j, true);
	for (uint32_t i = 0; i < p->argc; i++)
		ha_json_string(j, p->argv[i]);
	ha_json_end(j);
	write_status(j, s);
	ha_json_key(j, "complete");
	ha_json_bool(j, a->complete);
	ha_json_key(j, "recorded");
	ha_json_bool(j, !s->synthetic);
	ha_json_key(j, "summary");
	write_summary(j, p);
	if (p->inherited.allocations || p->inherited.frees) {
		/* Counters taken over from the parent at the fork, included
		 * in "summary" as Valgrind includes them. */
		ha_json_key(j, "inherited");
		ha_json_object(j, true);
		ha_json_counter(j, "allocations", p->inherited.allocations);
		ha_json_counter(j, "frees", p->inherited.frees);
		ha_json_counter(j, "bytes_allocated",
			      p->inherited.bytes_allocated);
		ha_json_counter(j, "failed_allocations",
			      p->inherited.failed_allocations);
		ha_json_end(j);
	}
	if (ha_select_leaks(a, p, o, &idx, &n, &omitted) != HA_OK)
		return HA_ERR_NOMEM;
	ha_json_key(j, "leaks");
	ha_json_array(j, false);
	for (size_t i = 0; i < n; i++) {
		const struct ha_leak *l = &p->leaks[idx[i]];

		ha_json_object(j, false);
		ha_json_counter(j, "bytes", l->bytes);
		ha_json_counter(j, "blocks", l->blocks);
		/* how long before the end its blocks were allocated */
		ha_json_counter(j, "oldest_age_us", ha_age_at_end(p, l->first_time));
		ha_json_counter(j, "youngest_age_us",
			      ha_age_at_end(p, l->last_time));
		ha_json_key(j, "site");
		ha_json_site(j, log, &log->sites[l->site]);
		ha_json_key(j, "stack");
		if (o->no_stacks) {
			ha_json_array(j, true);
			ha_json_end(j);
		} else if (write_stack(j, log, l->stack) != HA_OK) {
			free(idx);
			return HA_ERR_NOMEM;
		}
		ha_json_end(j);
	}
	ha_json_end(j);
	free(idx);
	/* what --top and --min-bytes left out of "leaks" */
	ha_json_key(j, "leaks_omitted");
	ha_json_object(j, true);
	ha_json_counter(j, "leaks", omitted.leaks);
	ha_json_counter(j, "bytes", omitted.bytes);
	ha_json_counter(j, "blocks", omitted.blocks);
	ha_json_end(j);
	write_suppressed(j, a, p);
	if (ha_json_refused(j, log, p, o) != HA_OK)
		return HA_ERR_NOMEM;
	/* the sites holding the heap at its peak, most bytes first */
	ha_json_key(j, "peak_contributors");
	ha_json_array(j, false);
	for (size_t i = 0; i < p->npeak_sites; i++) {
		ha_json_object(j, false);
		ha_json_key(j, "site");
		ha_json_site(j, log, &log->sites[p->peak_sites[i].site]);
		ha_json_counter(j, "bytes", p->peak_sites[i].bytes);
		ha_json_counter(j, "blocks", p->peak_sites[i].blocks);
		ha_json_end(j);
	}
	ha_json_end(j);
	if (ha_select_sites(p, o, 0, &idx, &n) != HA_OK)
		return HA_ERR_NOMEM;
	ha_json_key(j, "sites");
	ha_json_array(j, false);
	for (size_t i = 0; i < n; i++) {
		const struct ha_site_stats *st = &p->sites[idx[i]];

		ha_json_object(j, false);
		ha_json_key(j, "site");
		ha_json_site(j, log, &log->sites[st->site]);
		ha_json_counter(j, "allocations", st->allocations);
		ha_json_counter(j, "bytes_allocated", st->bytes_allocated);
		ha_json_counter(j, "peak_bytes", st->peak_bytes);
		ha_json_counter(j, "leaked_bytes", st->leaked_bytes);
		ha_json_counter(j, "leaked_blocks", st->leaked_blocks);
		ha_json_counter(j, "temporary", st->temporary);
		ha_json_end(j);
	}
	ha_json_end(j);
	free(idx);
	write_histogram(j, p);
	ha_json_types(j, p);
	/* the heap over time: the most it held in each interval */
	ha_json_key(j, "timeline");
	ha_json_array(j, false);
	for (size_t i = 0; i < p->timeline.n; i++) {
		ha_json_object(j, true);
		ha_json_counter(j, "time_us", ha_timeline_time(&p->timeline, i));
		ha_json_counter(j, "bytes", p->timeline.bytes[i]);
		ha_json_rss_point(j, p, i);
		ha_json_end(j);
	}
	ha_json_end(j);
	ha_json_page_items(j, log, p);
	ha_json_end(j);
	return HA_OK;
}

static const char *recorder_name(uint64_t recorder)
{
	switch (recorder) {
	case HALLOC_RECORDER_PRELOAD:
		return "preload";
	case HALLOC_RECORDER_BPF:
		return "bpf";
	default:
		return NULL;
	}
}

enum ha_result ha_report_json(const struct ha_analysis *a,
			      const struct ha_report_options *o, FILE *out)
{
	const char *recorder =
	    a->log->has_trace_info ? recorder_name(a->log->recorder) : NULL;
	struct ha_json j;

	ha_json_init(&j, out);
	ha_json_object(&j, false);
	ha_json_key(&j, "format");
	ha_json_string(&j, "halloc-report");
	ha_json_key(&j, "version");
	ha_json_uint(&j, 1);
	ha_json_key(&j, "complete");
	ha_json_bool(&j, a->complete);
	if (!a->complete) {
		ha_json_key(&j, "incomplete_reason");
		ha_json_string(&j, a->incomplete_reason);
	}
	ha_json_key(&j, "corrupt");
	ha_json_bool(&j, a->log->corrupt);
	ha_json_key(&j, "recorder");
	if (recorder)
		ha_json_string(&j, recorder);
	else
		ha_json_null(&j);
	ha_json_key(&j, "attached");
	ha_json_bool(&j, a->log->trace_flags & HALLOC_TRACE_ATTACHED);
	/* --aggregate: the order of frees is made up, so peaks mean nothing. */
	ha_json_key(&j, "aggregate");
	ha_json_bool(&j, a->log->trace_flags & HALLOC_TRACE_AGGREGATE);
	ha_json_key(&j, "stacks_truncated");
	ha_json_uint(&j, a->log->stacks_truncated);
	/* --sample: counts and bytes are estimates; null: exact. */
	ha_json_key(&j, "sampled");
	if (a->log->sample_interval) {
		ha_json_object(&j, true);
		ha_json_key(&j, "interval");
		ha_json_uint(&j, a->log->sample_interval);
		ha_json_end(&j);
	} else {
		ha_json_null(&j);
	}
	ha_json_key(&j, "processes");
	ha_json_array(&j, false);
	for (size_t i = 0; i < a->nprocs; i++)
		if (ha_report_shows(a, &a->procs[i], o) &&
		    write_process(&j, a, &a->procs[i], o) != HA_OK)
			return HA_ERR_NOMEM;
	ha_json_end(&j);
	ha_json_end(&j);
	return HA_OK;
}
