/*
 * analyzer/timeline.c - the heap over time: live bytes sampled into up to
 * HA_TIMELINE_POINTS evenly spaced intervals of the run, each point the
 * most the heap held during its interval (so the peak shows), an interval
 * with no event keeping the value the heap had when the last one ended.
 */
#include <stdlib.h>

#include "analyzer/analysis.h"

bool ha_timeline_start(struct ha_timeline *tl, uint64_t end_us,
		       uint64_t start_bytes)
{
	tl->end_us = end_us;
	tl->n = end_us ? HA_TIMELINE_POINTS : 1;
	tl->bytes = calloc(tl->n, sizeof(*tl->bytes));
	tl->seen = calloc(tl->n, sizeof(*tl->seen));
	tl->last = calloc(tl->n, sizeof(*tl->last));
	if (!tl->bytes || !tl->seen || !tl->last)
		return false;
	tl->bytes[0] = start_bytes; /* a forked child starts with a heap */
	tl->seen[0] = true;
	tl->last[0] = start_bytes;
	return true;
}

static size_t interval_of(const struct ha_timeline *tl, uint64_t time_us)
{
	size_t i =
	    tl->end_us
		? (size_t)((double)time_us * (double)tl->n / (double)tl->end_us)
		: 0;

	return i >= tl->n ? tl->n - 1 : i;
}

void ha_timeline_add(struct ha_timeline *tl, uint64_t time_us, uint64_t bytes)
{
	size_t i = tl->cur;

	/* Events come in time order, mostly: most fall in the interval of
	 * the one before, with no division. */
	if (time_us < tl->lo_us || time_us >= tl->hi_us) {
		i = interval_of(tl, time_us);
		tl->cur = i;
		/* The times that map to i: bounds found by the same formula,
		 * so the shortcut never disagrees with it. */
		tl->lo_us = time_us;
		while (tl->lo_us > 0 && interval_of(tl, tl->lo_us - 1) == i &&
		       time_us - tl->lo_us < 64)
			tl->lo_us--;
		tl->hi_us = time_us + 1;
		while (interval_of(tl, tl->hi_us) == i &&
		       tl->hi_us - time_us < 64)
			tl->hi_us++;
	}
	if (!tl->seen[i] || bytes > tl->bytes[i])
		tl->bytes[i] = bytes;
	tl->seen[i] = true;
	tl->last[i] = bytes;
}

/* Fills the intervals no event fell in; frees what only building needed. */
void ha_timeline_finish(struct ha_timeline *tl)
{
	for (size_t i = 1; i < tl->n; i++)
		if (!tl->seen[i]) {
			tl->bytes[i] = tl->last[i - 1];
			tl->last[i] = tl->last[i - 1];
		}
	free(tl->seen);
	free(tl->last);
	tl->seen = NULL;
	tl->last = NULL;
}

void ha_timeline_free(struct ha_timeline *tl)
{
	free(tl->bytes);
	free(tl->seen);
	free(tl->last);
	tl->bytes = tl->last = NULL;
	tl->seen = NULL;
	tl->n = 0;
}

/* Point i's time: the end of its interval. */
uint64_t ha_timeline_time(const struct ha_timeline *tl, size_t i)
{
	return tl->n ? (uint64_t)((double)tl->end_us * (double)(i + 1) /
				  (double)tl->n)
		     : 0;
}
