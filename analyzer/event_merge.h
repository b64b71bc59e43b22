/*
 * analyzer/event_merge.h - a stream's events in sequence order, for the
 * replay (event_merge.c). Internal to the analyzer.
 *
 * When the log was read with skip_events (the file can be read again), no
 * event is held: each thread's chunks (one agent slot, by chunk number)
 * hold its events in sequence order, so a k-way merge over the stream's
 * threads, each reading one chunk at a time back from the file, gives the
 * order a sort would, in memory that grows with the threads, not the
 * events. A stream whose chunks break that rule (a slot's chunks that
 * overlap in sequence numbers, a chunk out of order inside) is read whole
 * and sorted instead, as is every stream of a log read with its events.
 */
#ifndef HALLOC_ANALYZER_EVENT_MERGE_H
#define HALLOC_ANALYZER_EVENT_MERGE_H

#include "analyzer/log_source.h"
#include "analyzer/model.h"
#include "analyzer/read_ahead.h"

/* Every stream's chunks, grouped for the merge. */
struct ha_merge_plan {
	uint32_t *order; /* chunk indexes by (stream, slot, chunk_no, at) */
	size_t *start;	 /* per stream: its chunks are order[start, end) */
	size_t *end;
	struct ha_fetch *fetch; /* NULL: the events are in the streams */
	unsigned aheads;	/* read-aheads running (read_ahead.h) */
};

enum ha_result ha_merge_plan(struct ha_log *log, struct ha_fetch *fetch,
			     struct ha_merge_plan *plan);
void ha_merge_plan_free(struct ha_merge_plan *plan);
/* Chunk `chunk`'s events appended to *ev (*n of *cap), read through
 * fetch; buf (HALLOC_FRAME_MAX + HA_SLACK bytes) takes a chunk that spans
 * zstd frames. */
enum ha_result ha_merge_read_chunk(struct ha_log *log, struct ha_fetch *fetch,
				   uint32_t chunk, unsigned char *buf,
				   struct ha_event **ev, size_t *n, size_t *cap);

/* One thread's chunks. */
struct ha_merge_group {
	const uint32_t *chunks; /* into log->chunks, in chunk_no order */
	size_t nchunks, next_chunk;
	struct ha_event *ev; /* the current chunk's events */
	size_t nev, pos, cap;
	uint64_t at; /* the current chunk's offset: ties go by file order */
};

struct ha_event_iter {
	struct ha_log *log;
	struct ha_merge_plan *plan;
	/* sorted array: the stream's own (replay.c frees it) or read whole */
	struct ha_event *events;
	size_t nevents, next;
	bool own_events;
	/* merge */
	struct ha_merge_group *groups;
	size_t ngroups;
	uint32_t *heap; /* group indexes, the smallest next seq first */
	size_t nheap;
	struct ha_read_ahead *ahead; /* NULL: the merge reads its chunks */
	unsigned char *buf; /* a chunk's bytes */
	struct ha_event current;
	enum ha_result error;
};

enum ha_result ha_events_open(struct ha_event_iter *it, struct ha_log *log,
			      struct ha_merge_plan *plan, uint32_t stream);
/* The next event, NULL at the end or on an error (it->error). */
const struct ha_event *ha_events_next(struct ha_event_iter *it);
/* An event that comes k after the last one ha_events_next returned, or
 * likely will (the same thread's), or NULL: for prefetching only. */
static inline __attribute__((always_inline)) const struct ha_event *
ha_events_ahead(const struct ha_event_iter *it, size_t k)
{
	const struct ha_merge_group *g;

	if (!it->groups)
		return it->next + k < it->nevents ? &it->events[it->next + k]
						  : NULL;
	if (it->nheap == 0)
		return NULL;
	g = &it->groups[it->heap[0]];
	return g->pos + k < g->nev ? &g->ev[g->pos + k] : NULL;
}
void ha_events_close(struct ha_event_iter *it);

#endif /* HALLOC_ANALYZER_EVENT_MERGE_H */
