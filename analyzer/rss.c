/*
 * analyzer/rss.c - resident memory (see pages.h): the RSS frames the tracer
 * sampled, and each process image's samples on its heap timeline.
 *
 * A sample belongs to the image of its pid that was running at its time
 * (CLOCK_REALTIME, as the PROCESS record's start): from that image's start
 * to the start of the next image of the same pid (after an exec). Samples
 * later than the heap's last event fall in the timeline's last point.
 */
#include <stdlib.h>

#include "analyzer/analysis.h"
#include "analyzer/pages.h"

enum ha_result ha_rss_read(struct ha_log *log, const unsigned char *p,
			   size_t len)
{
	struct ha_cursor c = {p, p + len};
	struct ha_rss_sample r = {0};

	if (!ha_get_u32(&c, &r.pid) || !ha_get_uv(&c, &r.time_ns) ||
	    !ha_get_uv(&c, &r.rss) ||
	    (c.p < c.end && !ha_get_uv(&c, &r.hwm)))
		return HA_ERR_CORRUPT;
	if (!HA_RESERVE(log->rss, log->rss_cap, log->nrss + 1))
		return HA_ERR_NOMEM;
	log->rss[log->nrss++] = r;
	return HA_OK;
}

enum ha_result ha_rss_analyze(const struct ha_log *log,
			      struct ha_process *procs)
{
	for (size_t i = 0; i < log->nstreams; i++) {
		const struct ha_stream *s = &log->streams[i];
		struct ha_page_report *r = &procs[i].pages;
		const struct ha_timeline *tl = &procs[i].timeline;
		uint64_t from = s->start_time, to = UINT64_MAX;

		if (!s->has_process || !tl->n)
			continue;
		/* the next image of the same pid (after an exec) */
		for (size_t j = 0; j < log->nstreams; j++)
			if (log->streams[j].pid == s->pid &&
			    log->streams[j].has_process &&
			    log->streams[j].start_time > from &&
			    log->streams[j].start_time < to)
				to = log->streams[j].start_time;
		for (size_t k = 0; k < log->nrss; k++) {
			const struct ha_rss_sample *x = &log->rss[k];
			uint64_t us;
			size_t at;

			if (x->pid != s->pid || x->time_ns < from ||
			    x->time_ns >= to)
				continue;
			if (!r->rss) {
				r->rss = malloc(tl->n * sizeof(*r->rss));
				if (!r->rss)
					return HA_ERR_NOMEM;
				for (size_t t = 0; t < tl->n; t++)
					r->rss[t] = HA_RSS_NONE;
			}
			us = (x->time_ns - from) / 1000;
			at = tl->end_us ? (size_t)((double)us * (double)tl->n /
						   (double)tl->end_us)
					: 0;
			if (at >= tl->n)
				at = tl->n - 1;
			if (r->rss[at] == HA_RSS_NONE || x->rss > r->rss[at])
				r->rss[at] = x->rss;
			if (x->rss > r->peak_rss)
				r->peak_rss = x->rss;
			if (x->hwm > r->peak_rss)
				r->peak_rss = x->hwm;
			r->rss_samples++;
		}
		for (size_t t = 1; r->rss && t < tl->n; t++)
			if (r->rss[t] == HA_RSS_NONE)
				r->rss[t] = r->rss[t - 1];
	}
	return HA_OK;
}

