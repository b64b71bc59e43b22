/*
 * analyzer/chunk_fast.h - both readings of a CHUNK of plain events by one
 * tight loop (chunk_fast.c). Internal to the analyzer.
 *
 * Each returns false, having changed nothing the careful reading
 * (chunk_reader.c) would not change alike, for a chunk it does not read:
 * the caller then reads it with ha_chunk_read or ha_chunk_events. The
 * payload at p must be followed by HA_SLACK readable bytes (decode.h).
 */
#ifndef HALLOC_ANALYZER_CHUNK_FAST_H
#define HALLOC_ANALYZER_CHUNK_FAST_H

#include "analyzer/model.h"

/* The first reading, with log->skip_events: indexes the chunk (its ref
 * gets events_only) at log->payload_at. */
bool ha_chunk_fast_index(struct ha_log *log, const unsigned char *p,
			 size_t len);
/* The replay's reading of a chunk indexed so: appends its events. */
bool ha_chunk_fast_events(struct ha_log *log, const unsigned char *p,
			  size_t len, struct ha_event **events, size_t *n,
			  size_t *cap);

#endif /* HALLOC_ANALYZER_CHUNK_FAST_H */
