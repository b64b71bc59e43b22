/*
 * agent/bpf/table.h - a small open-addressing hash table from a 64-bit key
 * to a 64-bit value, for the eBPF attach's user side (threads by tid,
 * stacks by hash, unwind rules by address). Header-only, internal.
 *
 * Invariants: the table is never more than half full, so a probe always
 * ends at an empty slot; key 0 is stored apart (slot 0 means empty).
 */
#ifndef HALLOC_AGENT_BPF_TABLE_H
#define HALLOC_AGENT_BPF_TABLE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

struct hb_table_slot {
	uint64_t key, value;
};

struct hb_table {
	struct hb_table_slot *slots;
	size_t cap; /* power of two, or 0 */
	size_t count;
	bool has_zero;
	uint64_t zero_value;
};

static inline uint64_t hb_mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static inline uint64_t *hb_table_find(struct hb_table *t, uint64_t key)
{
	if (key == 0)
		return t->has_zero ? &t->zero_value : NULL;
	if (!t->cap)
		return NULL;
	for (size_t i = hb_mix64(key) & (t->cap - 1);;
	     i = (i + 1) & (t->cap - 1)) {
		if (t->slots[i].key == key)
			return &t->slots[i].value;
		if (t->slots[i].key == 0)
			return NULL;
	}
}

static inline bool hb_table_grow(struct hb_table *t)
{
	size_t cap = t->cap ? t->cap * 2 : 64;
	struct hb_table_slot *s = calloc(cap, sizeof(*s));

	if (!s)
		return false;
	for (size_t i = 0; i < t->cap; i++) {
		size_t j;

		if (!t->slots[i].key)
			continue;
		for (j = hb_mix64(t->slots[i].key) & (cap - 1); s[j].key;
		     j = (j + 1) & (cap - 1))
			;
		s[j] = t->slots[i];
	}
	free(t->slots);
	t->slots = s;
	t->cap = cap;
	return true;
}

/* Inserts or replaces. False on out of memory. */
static inline bool hb_table_put(struct hb_table *t, uint64_t key,
				uint64_t value)
{
	size_t i;

	if (key == 0) {
		t->has_zero = true;
		t->zero_value = value;
		return true;
	}
	if ((t->count + 1) * 2 > t->cap && !hb_table_grow(t))
		return false;
	for (i = hb_mix64(key) & (t->cap - 1); t->slots[i].key;
	     i = (i + 1) & (t->cap - 1)) {
		if (t->slots[i].key == key) {
			t->slots[i].value = value;
			return true;
		}
	}
	t->slots[i].key = key;
	t->slots[i].value = value;
	t->count++;
	return true;
}

/* Removes a key (backward-shift deletion keeps probes intact). */
static inline void hb_table_del(struct hb_table *t, uint64_t key)
{
	size_t i, j;

	if (key == 0) {
		t->has_zero = false;
		return;
	}
	if (!t->cap)
		return;
	for (i = hb_mix64(key) & (t->cap - 1); t->slots[i].key != key;
	     i = (i + 1) & (t->cap - 1))
		if (!t->slots[i].key)
			return;
	for (j = i;;) {
		size_t home;

		j = (j + 1) & (t->cap - 1);
		if (!t->slots[j].key)
			break;
		home = hb_mix64(t->slots[j].key) & (t->cap - 1);
		/* Move j back to i unless its home lies cyclically in (i, j].
		 */
		if ((j > i && (home <= i || home > j)) ||
		    (j < i && (home <= i && home > j))) {
			t->slots[i] = t->slots[j];
			i = j;
		}
	}
	t->slots[i].key = 0;
	t->slots[i].value = 0;
	t->count--;
}

static inline void hb_table_free(struct hb_table *t)
{
	free(t->slots);
	*t = (struct hb_table){0};
}

#endif /* HALLOC_AGENT_BPF_TABLE_H */
