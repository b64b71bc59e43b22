/*
 * tracer/chunks.c - the set of chunks in the log, and leftovers from shared
 * memory. See chunks.h.
 */
#include "tracer/chunks.h"

#include <stdlib.h>
#include <string.h>

#include "tracer/frames.h"

static uint64_t key_of(uint32_t slot, uint32_t chunk_no)
{
	return (uint64_t)slot << 32 | chunk_no;
}

void ht_chunk_set_init(struct ht_chunk_set *set)
{
	set->keys = NULL;
	set->count = 0;
	set->capacity = 0;
	set->sorted = true;
}

void ht_chunk_set_free(struct ht_chunk_set *set)
{
	free(set->keys);
	ht_chunk_set_init(set);
}

int ht_chunk_set_add(struct ht_chunk_set *set, uint32_t slot, uint32_t chunk_no)
{
	uint64_t key = key_of(slot, chunk_no);

	if (set->count == set->capacity) {
		size_t capacity = set->capacity ? set->capacity * 2 : 1024;
		uint64_t *keys = realloc(set->keys, capacity * sizeof(*keys));

		if (!keys)
			return -1;
		set->keys = keys;
		set->capacity = capacity;
	}
	if (set->count && set->keys[set->count - 1] > key)
		set->sorted = false;
	set->keys[set->count++] = key;
	return 0;
}

static int compare_keys(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

void ht_chunk_set_sort(struct ht_chunk_set *set)
{
	size_t n = 0;

	if (!set->sorted)
		qsort(set->keys, set->count, sizeof(*set->keys), compare_keys);
	set->sorted = true;
	for (size_t i = 0; i < set->count; i++)
		if (n == 0 || set->keys[i] != set->keys[n - 1])
			set->keys[n++] = set->keys[i];
	set->count = n;
}

bool ht_chunk_set_contains(const struct ht_chunk_set *set, uint32_t slot,
			   uint32_t chunk_no)
{
	uint64_t key = key_of(slot, chunk_no);

	return set->count && bsearch(&key, set->keys, set->count,
				     sizeof(*set->keys), compare_keys) != NULL;
}

uint64_t ht_chunk_set_gaps(const struct ht_chunk_set *set)
{
	uint64_t gaps = 0;

	for (size_t i = 1; i < set->count; i++) {
		uint64_t prev = set->keys[i - 1], key = set->keys[i];

		if (prev >> 32 == key >> 32)
			gaps += key - prev - 1;
	}
	return gaps;
}

size_t ht_slot_leftover(const struct halloc_slot *slot,
			const struct ht_chunk_set *seen,
			unsigned char out[HALLOC_FRAME_MAX])
{
	/* `used` is stored (release) after each whole record. */
	uint32_t used = __atomic_load_n(&slot->used, __ATOMIC_ACQUIRE);
	uint32_t slot_no, chunk_no;
	uint64_t stream;

	if (used <= HALLOC_FRAME_HEADER_SIZE + HALLOC_CHUNK_HEADER_SIZE ||
	    used > HALLOC_FRAME_MAX)
		return 0;
	memcpy(out, slot->frame, used);

	/* A chunk always names its stream; 0 means the slot holds garbage. */
	memcpy(&stream, out + HALLOC_FRAME_HEADER_SIZE, sizeof(stream));
	if (stream == 0)
		return 0;
	ht_chunk_key(out, &slot_no, &chunk_no);
	if (ht_chunk_set_contains(seen, slot_no, chunk_no))
		return 0;
	ht_put_frame_header(out, used - HALLOC_FRAME_HEADER_SIZE,
			    HALLOC_FRAME_CHUNK);
	return used;
}
