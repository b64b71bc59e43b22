/*
 * tracer/chunks.h - which chunks the log holds, and the ones that only
 * shared memory holds. Internal to tracer/.
 *
 * A chunk is named by (slot, chunk_no) for the whole run (agent/transport.h).
 * The tracer remembers the name of every chunk that came through the pipe;
 * when the traced processes have ended, each slot's unflushed frame is
 * appended unless its chunk is already in the log (a thread can die between
 * its write(2) and starting the next frame).
 */
#ifndef HALLOC_TRACER_CHUNKS_H
#define HALLOC_TRACER_CHUNKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/transport.h"

/* A set of chunk names: appended to while recording, then sorted once. */
struct ht_chunk_set {
	uint64_t *keys;
	size_t count, capacity;
	bool sorted;
};

void ht_chunk_set_init(struct ht_chunk_set *set);
void ht_chunk_set_free(struct ht_chunk_set *set);
/* 0, or -1 when out of memory. */
int ht_chunk_set_add(struct ht_chunk_set *set, uint32_t slot,
		     uint32_t chunk_no);
/* Sorts and drops duplicates; call before ht_chunk_set_contains. */
void ht_chunk_set_sort(struct ht_chunk_set *set);
bool ht_chunk_set_contains(const struct ht_chunk_set *set, uint32_t slot,
			   uint32_t chunk_no);

/*
 * Chunk numbers missing from the set: for every slot, the numbers between
 * the lowest and the highest seen that were not seen. The agent numbers a
 * slot's chunks consecutively, so each gap is a chunk that never reached
 * the log. The set must be sorted.
 */
uint64_t ht_chunk_set_gaps(const struct ht_chunk_set *set);

/*
 * Copies the unflushed frame of `slot` into `out` and completes its frame
 * header (the length comes from `used`). Returns its size, or 0 if the slot
 * holds no record, holds something that is not a frame, or its chunk is in
 * `seen` (sorted).
 */
size_t ht_slot_leftover(const struct halloc_slot *slot,
			const struct ht_chunk_set *seen,
			unsigned char out[HALLOC_FRAME_MAX]);

#endif /* HALLOC_TRACER_CHUNKS_H */
