/*
 * tests/unit/tracer_chunks.c - the set of chunks the log holds, and which
 * shared-memory frames the tracer appends when recording ends.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "tracer/chunks.h"
#include "tracer/frames.h"

Test(tracer_chunks, set_contains_what_was_added)
{
	struct ht_chunk_set set;

	ht_chunk_set_init(&set);
	/* Out of order and repeated, as slots interleave in the pipe. */
	for (uint32_t i = 0; i < 5000; i++)
		cr_assert_eq(ht_chunk_set_add(&set, (i * 7919) % 4096, i / 3),
			     0);
	cr_assert_eq(ht_chunk_set_add(&set, 5, 5), 0);
	cr_assert_eq(ht_chunk_set_add(&set, 5, 5), 0);
	ht_chunk_set_sort(&set);
	for (uint32_t i = 0; i < 5000; i++)
		cr_assert(
		    ht_chunk_set_contains(&set, (i * 7919) % 4096, i / 3));
	cr_assert(ht_chunk_set_contains(&set, 5, 5));
	cr_assert_not(ht_chunk_set_contains(&set, 4096, 0));
	cr_assert_not(ht_chunk_set_contains(&set, 0, 5000));
	ht_chunk_set_free(&set);
}

Test(tracer_chunks, empty_set)
{
	struct ht_chunk_set set;

	ht_chunk_set_init(&set);
	ht_chunk_set_sort(&set);
	cr_assert_not(ht_chunk_set_contains(&set, 0, 0));
	cr_assert_eq(ht_chunk_set_gaps(&set), 0);
	ht_chunk_set_free(&set);
}

Test(tracer_chunks, gaps_count_missing_numbers_per_slot)
{
	struct ht_chunk_set set;
	/* slot 1: 0 1 2 5 (3, 4 missing); slot 2: 7 9 (8 missing);
	 * slot 3: 0 only. Slots are never bridged. */
	uint32_t keys[][2] = {{1, 0}, {2, 9}, {1, 5}, {1, 1},
			      {3, 0}, {2, 7}, {1, 2}, {1, 2}};

	ht_chunk_set_init(&set);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		ht_chunk_set_add(&set, keys[i][0], keys[i][1]);
	ht_chunk_set_sort(&set);
	cr_assert_eq(ht_chunk_set_gaps(&set), 3);
	ht_chunk_set_free(&set);
}

static void fill_slot(struct halloc_slot *slot, uint32_t slot_no,
		      uint32_t chunk_no, uint32_t used)
{
	struct halloc_chunk_header ch = {
	    .stream = 99,
	    .pid = 1,
	    .tid = 2,
	    .slot = slot_no,
	    .chunk_no = chunk_no,
	};

	memset(slot, 0, sizeof(*slot));
	/* The agent leaves the length for the tracer to compute. */
	ht_put_frame_header(slot->frame, 0, HALLOC_FRAME_CHUNK);
	memcpy(slot->frame + HALLOC_FRAME_HEADER_SIZE, &ch, sizeof(ch));
	for (uint32_t i = HALLOC_FRAME_HEADER_SIZE + sizeof(ch); i < used; i++)
		slot->frame[i] = (unsigned char)i;
	slot->used = used;
	slot->chunk_no = chunk_no;
	slot->state = 1234;
	slot->stream = 99;
}

Test(tracer_chunks, leftover_is_copied_with_its_length)
{
	static struct halloc_slot slot;
	unsigned char out[HALLOC_FRAME_MAX];
	struct ht_chunk_set seen;
	uint32_t length, s, c;
	size_t size;

	ht_chunk_set_init(&seen);
	fill_slot(&slot, 3, 8, 100);
	size = ht_slot_leftover(&slot, &seen, out);
	cr_assert_eq(size, 100);
	memcpy(&length, out, sizeof(length));
	cr_assert_eq(length, 100 - HALLOC_FRAME_HEADER_SIZE);
	cr_assert(memcmp(out + 4, slot.frame + 4, 96) == 0);
	ht_chunk_key(out, &s, &c);
	cr_assert_eq(s, 3);
	cr_assert_eq(c, 8);
}

Test(tracer_chunks, leftover_already_in_the_log_is_skipped)
{
	static struct halloc_slot slot;
	unsigned char out[HALLOC_FRAME_MAX];
	struct ht_chunk_set seen;

	ht_chunk_set_init(&seen);
	ht_chunk_set_add(&seen, 3, 8);
	ht_chunk_set_sort(&seen);
	fill_slot(&slot, 3, 8, 100);
	cr_assert_eq(ht_slot_leftover(&slot, &seen, out), 0);
	fill_slot(&slot, 3, 9, 100);
	cr_assert_eq(ht_slot_leftover(&slot, &seen, out), 100);
	ht_chunk_set_free(&seen);
}

Test(tracer_chunks, slot_without_records_is_skipped)
{
	static struct halloc_slot slot;
	unsigned char out[HALLOC_FRAME_MAX];
	struct ht_chunk_set seen;

	ht_chunk_set_init(&seen);
	memset(&slot, 0, sizeof(slot));
	cr_assert_eq(ht_slot_leftover(&slot, &seen, out), 0);
	fill_slot(&slot, 0, 0,
		  HALLOC_FRAME_HEADER_SIZE + HALLOC_CHUNK_HEADER_SIZE);
	cr_assert_eq(ht_slot_leftover(&slot, &seen, out), 0);
	fill_slot(&slot, 0, 0,
		  HALLOC_FRAME_HEADER_SIZE + HALLOC_CHUNK_HEADER_SIZE + 1);
	cr_assert_eq(ht_slot_leftover(&slot, &seen, out),
		     HALLOC_FRAME_HEADER_SIZE + HALLOC_CHUNK_HEADER_SIZE + 1);
}

Test(tracer_chunks, garbage_slot_is_skipped)
{
	static struct halloc_slot slot;
	unsigned char out[HALLOC_FRAME_MAX];
	struct ht_chunk_set seen;

	ht_chunk_set_init(&seen);
	fill_slot(&slot, 0, 0, HALLOC_FRAME_MAX);
	cr_assert_eq(ht_slot_leftover(&slot, &seen, out), HALLOC_FRAME_MAX);
	slot.used = HALLOC_FRAME_MAX + 1;
	cr_assert_eq(ht_slot_leftover(&slot, &seen, out), 0);
	fill_slot(&slot, 0, 0, 100);
	memset(slot.frame + HALLOC_FRAME_HEADER_SIZE, 0, 8); /* stream 0 */
	cr_assert_eq(ht_slot_leftover(&slot, &seen, out), 0);
}
