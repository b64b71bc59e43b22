/*
 * analyzer/event_merge.c - a stream's events in sequence order: merged
 * from its threads' chunks read back from the file, or sorted in memory.
 * See event_merge.h.
 */
#include <stdlib.h>
#include <string.h>

#include "analyzer/chunk_fast.h"
#include "analyzer/decode.h"
#include "analyzer/event_merge.h"
#include "halloc/log.h"

/* ---- sorting events by sequence number ---------------------------------- */

/* Stable LSD radix sort on seq - min, in as few passes of at most 16 bits
 * as the range of sequence numbers needs. Each thread's events come
 * sorted already; a single-threaded stream skips it. */
static bool sort_events(struct ha_event *ev, size_t n)
{
	uint64_t lo = UINT64_MAX, hi = 0;
	struct ha_event *tmp, *src = ev, *dst;
	bool sorted = true;
	unsigned bits = 0, passes, width;
	size_t *count;

	for (size_t i = 0; i < n; i++) {
		if (i > 0 && ev[i].seq < ev[i - 1].seq)
			sorted = false;
		if (ev[i].seq < lo)
			lo = ev[i].seq;
		if (ev[i].seq > hi)
			hi = ev[i].seq;
	}
	if (sorted)
		return true;
	for (uint64_t range = hi - lo; range; range >>= 1)
		bits++;
	passes = (bits + 15) / 16;
	width = (bits + passes - 1) / passes;
	tmp = malloc(n * sizeof(*tmp));
	count = malloc(((size_t)1 << width) * sizeof(*count));
	if (!tmp || !count) {
		free(tmp);
		free(count);
		return false;
	}
	dst = tmp;
	for (unsigned p = 0; p < passes; p++) {
		unsigned shift = width * p;
		uint64_t mask = ((uint64_t)1 << width) - 1;
		size_t pos = 0;
		struct ha_event *t;

		memset(count, 0, ((size_t)1 << width) * sizeof(*count));
		for (size_t i = 0; i < n; i++)
			count[((src[i].seq - lo) >> shift) & mask]++;
		for (size_t d = 0; d <= mask; d++) {
			size_t c = count[d];

			count[d] = pos;
			pos += c;
		}
		for (size_t i = 0; i < n; i++)
			dst[count[((src[i].seq - lo) >> shift) & mask]++] =
			    src[i];
		t = src;
		src = dst;
		dst = t;
	}
	if (src != ev)
		memcpy(ev, src, n * sizeof(*ev));
	free(tmp);
	free(count);
	return true;
}

/* ---- the plan ------------------------------------------------------------ */

struct chunk_key {
	uint32_t stream, slot, chunk_no, index;
	uint64_t at;
};

static int cmp_chunk(const void *a, const void *b)
{
	const struct chunk_key *x = a, *y = b;

	if (x->stream != y->stream)
		return x->stream < y->stream ? -1 : 1;
	if (x->slot != y->slot)
		return x->slot < y->slot ? -1 : 1;
	if (x->chunk_no != y->chunk_no)
		return x->chunk_no < y->chunk_no ? -1 : 1;
	return x->at < y->at ? -1 : x->at > y->at;
}

enum ha_result ha_merge_plan(struct ha_log *log, struct ha_fetch *fetch,
			     struct ha_merge_plan *plan)
{
	size_t n = log->nchunks, ns = log->nstreams ? log->nstreams : 1;
	struct chunk_key *keys;

	memset(plan, 0, sizeof(*plan));
	plan->fetch = fetch;
	plan->order = malloc((n ? n : 1) * sizeof(*plan->order));
	plan->start = calloc(ns, sizeof(*plan->start));
	plan->end = calloc(ns, sizeof(*plan->end));
	keys = malloc((n ? n : 1) * sizeof(*keys));
	if (!plan->order || !plan->start || !plan->end || !keys) {
		free(keys);
		return HA_ERR_NOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		const struct ha_chunk_ref *r = &log->chunks[i];

		keys[i] = (struct chunk_key){r->stream, r->slot, r->chunk_no,
					     (uint32_t)i, r->at};
	}
	qsort(keys, n, sizeof(*keys), cmp_chunk);
	for (size_t i = 0; i < n; i++)
		plan->order[i] = keys[i].index;
	free(keys);
	for (size_t i = n; i-- > 0;)
		plan->start[log->chunks[plan->order[i]].stream] = i;
	for (size_t i = 0; i < n; i++)
		plan->end[log->chunks[plan->order[i]].stream] = i + 1;
	return HA_OK;
}

void ha_merge_plan_free(struct ha_merge_plan *plan)
{
	free(plan->order);
	free(plan->start);
	free(plan->end);
	memset(plan, 0, sizeof(*plan));
}

/* ---- reading chunks back ------------------------------------------------- */

enum ha_result ha_merge_read_chunk(struct ha_log *log, struct ha_fetch *fetch,
				   uint32_t chunk, unsigned char *buf,
				   struct ha_event **ev, size_t *n, size_t *cap)
{
	const struct ha_chunk_ref *ref = &log->chunks[chunk];
	const unsigned char *p = ha_fetch_view(fetch, ref->at, ref->len, buf);

	if (!p)
		return HA_ERR_IO;
	if (ref->events_only &&
	    ha_chunk_fast_events(log, p, ref->len, ev, n, cap))
		return HA_OK;
	return ha_chunk_events(log, p, ref->len, ev, n, cap);
}

static enum ha_result read_chunk(struct ha_event_iter *it, uint32_t chunk,
				 struct ha_event **ev, size_t *n, size_t *cap)
{
	return ha_merge_read_chunk(it->log, it->plan->fetch, chunk, it->buf, ev,
				   n, cap);
}

static int cmp_index(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* The stream's chunks, in file order, read whole and sorted: what the
 * merge cannot order. */
static enum ha_result read_all(struct ha_event_iter *it, const uint32_t *c,
			       size_t n)
{
	uint32_t *by_file = malloc((n ? n : 1) * sizeof(*by_file));
	size_t cap = 0;
	enum ha_result res = HA_OK;

	if (!by_file)
		return HA_ERR_NOMEM;
	memcpy(by_file, c, n * sizeof(*c));
	/* Chunk indexes go in file order. */
	qsort(by_file, n, sizeof(*by_file), cmp_index);
	it->own_events = true;
	for (size_t i = 0; i < n && res == HA_OK; i++)
		res =
		    read_chunk(it, by_file[i], &it->events, &it->nevents, &cap);
	free(by_file);
	if (res == HA_OK && !sort_events(it->events, it->nevents))
		res = HA_ERR_NOMEM;
	return res;
}

/* Whether a merge gives seq order: every chunk sorted inside, and each
 * slot's chunks one after the other in seq. */
static bool mergeable(const struct ha_log *log, const uint32_t *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct ha_chunk_ref *r = &log->chunks[c[i]];

		if (!r->sorted)
			return false;
		if (i > 0 && log->chunks[c[i - 1]].slot == r->slot &&
		    log->chunks[c[i - 1]].last_seq >= r->first_seq)
			return false;
	}
	return true;
}

/* Loads the group's next non-empty chunk; false when none is left. */
static bool group_advance(struct ha_event_iter *it, struct ha_merge_group *g)
{
	while (it->ahead) {
		it->error = ha_ahead_take(it->ahead, (size_t)(g - it->groups),
					  &g->ev, &g->nev, &g->at);
		g->pos = 0;
		if (it->error != HA_OK || !g->ev)
			return false;
		if (g->nev > 0)
			return true;
	}
	while (g->next_chunk < g->nchunks) {
		uint32_t chunk = g->chunks[g->next_chunk++];

		g->nev = g->pos = 0;
		g->at = it->log->chunks[chunk].at;
		it->error = read_chunk(it, chunk, &g->ev, &g->nev, &g->cap);
		if (it->error != HA_OK)
			return false;
		if (g->nev > 0)
			return true;
	}
	return false;
}

static inline __attribute__((always_inline)) bool
before(const struct ha_event_iter *it, uint32_t a, uint32_t b)
{
	const struct ha_merge_group *x = &it->groups[a], *y = &it->groups[b];
	uint64_t sx = x->ev[x->pos].seq, sy = y->ev[y->pos].seq;

	return sx != sy ? sx < sy : x->at < y->at;
}

static void sift_down(struct ha_event_iter *it, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;

		if (l < it->nheap && before(it, it->heap[l], it->heap[m]))
			m = l;
		if (l + 1 < it->nheap &&
		    before(it, it->heap[l + 1], it->heap[m]))
			m = l + 1;
		if (m == i)
			return;
		uint32_t t = it->heap[i];
		it->heap[i] = it->heap[m];
		it->heap[m] = t;
		i = m;
	}
}

/* Up to this many read-aheads at once: a forked child's stream is
 * replayed while its parent's waits, with its own. */
#define MAX_AHEADS 4

/* A thread to read the groups' chunks ahead, when it is worth one. */
static void start_ahead(struct ha_event_iter *it, const uint32_t *c,
			size_t nchunks)
{
	struct ha_ahead_group groups[HA_AHEAD_MAX_GROUPS];
	uint64_t bytes = 0;

	for (size_t i = 0; i < nchunks; i++)
		bytes += it->log->chunks[c[i]].len;
	if (bytes <= ha_ahead_min_bytes ||
	    it->ngroups > HA_AHEAD_MAX_GROUPS || it->plan->aheads >= MAX_AHEADS)
		return;
	for (size_t g = 0; g < it->ngroups; g++)
		groups[g] = (struct ha_ahead_group){it->groups[g].chunks,
						    it->groups[g].nchunks};
	it->ahead = ha_ahead_start(it->log, it->plan->fetch, groups,
				   it->ngroups);
	if (it->ahead)
		it->plan->aheads++;
}

enum ha_result ha_events_open(struct ha_event_iter *it, struct ha_log *log,
			      struct ha_merge_plan *plan, uint32_t stream)
{
	struct ha_stream *s = &log->streams[stream];
	const uint32_t *c;
	size_t n;

	memset(it, 0, sizeof(*it));
	it->log = log;
	it->plan = plan;
	if (!plan->fetch) { /* read with its events: sort them */
		it->events = s->events;
		it->nevents = s->nevents;
		return sort_events(s->events, s->nevents) ? HA_OK
							  : HA_ERR_NOMEM;
	}
	c = plan->order + plan->start[stream];
	n = plan->end[stream] - plan->start[stream];
	it->buf = malloc(HALLOC_FRAME_MAX + HA_SLACK);
	if (!it->buf)
		return HA_ERR_NOMEM;
	if (!mergeable(log, c, n))
		return read_all(it, c, n);
	for (size_t i = 0; i < n; i++)
		if (i == 0 ||
		    log->chunks[c[i]].slot != log->chunks[c[i - 1]].slot)
			it->ngroups++;
	it->groups = calloc(it->ngroups ? it->ngroups : 1, sizeof(*it->groups));
	it->heap = malloc((it->ngroups ? it->ngroups : 1) * sizeof(*it->heap));
	if (!it->groups || !it->heap)
		return HA_ERR_NOMEM;
	for (size_t i = 0, g = 0; i < n; i++) {
		if (i > 0 &&
		    log->chunks[c[i]].slot == log->chunks[c[i - 1]].slot)
			continue;
		it->groups[g].chunks = c + i;
		while (i + it->groups[g].nchunks < n &&
		       log->chunks[c[i + it->groups[g].nchunks]].slot ==
			   log->chunks[c[i]].slot)
			it->groups[g].nchunks++;
		g++;
	}
	start_ahead(it, c, n);
	for (size_t g = 0; g < it->ngroups; g++) {
		if (group_advance(it, &it->groups[g]))
			it->heap[it->nheap++] = (uint32_t)g;
		else if (it->error != HA_OK)
			return it->error;
	}
	for (size_t i = it->nheap / 2; i-- > 0;)
		sift_down(it, i);
	return HA_OK;
}

const struct ha_event *ha_events_next(struct ha_event_iter *it)
{
	struct ha_merge_group *g;
	const struct ha_event *e;

	if (!it->groups)
		return it->next < it->nevents ? &it->events[it->next++] : NULL;
	if (it->nheap == 0)
		return NULL;
	g = &it->groups[it->heap[0]];
	e = &g->ev[g->pos++];
	if (g->pos == g->nev) {
		/* The caller uses e before the next call: copy it out of the
		 * way of the group's next chunk. */
		it->current = *e;
		e = &it->current;
		if (!group_advance(it, g)) {
			if (it->error != HA_OK)
				return NULL;
			it->heap[0] = it->heap[--it->nheap];
		}
	}
	if (it->nheap == 2) {
		/* Two threads, the usual many: one comparison. */
		uint32_t t = it->heap[0];

		if (before(it, it->heap[1], t)) {
			it->heap[0] = it->heap[1];
			it->heap[1] = t;
		}
	} else if (it->nheap > 2) {
		sift_down(it, 0);
	}
	return e;
}

void ha_events_close(struct ha_event_iter *it)
{
	if (it->ahead) { /* its chunks are the read-ahead's */
		ha_ahead_stop(it->ahead);
		it->plan->aheads--;
		for (size_t g = 0; g < it->ngroups; g++)
			it->groups[g].ev = NULL;
	}
	for (size_t g = 0; g < it->ngroups; g++)
		free(it->groups[g].ev);
	free(it->groups);
	free(it->heap);
	free(it->buf);
	if (it->own_events)
		free(it->events);
	memset(it, 0, sizeof(*it));
}
