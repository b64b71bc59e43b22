/*
 * analyzer/live_blocks.c - the blocks live at a point of a replay: an
 * open-addressing hash table by address (linear probing, backward-shift
 * deletion), with the count and bytes it holds.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "analyzer/hashmap.h"
#include "analyzer/live_blocks.h"

static size_t home(const struct ha_live *t, uint64_t addr)
{
	return ha_hash64(addr) & t->mask;
}

/* The slot holding addr, or SIZE_MAX. */
size_t ha_live_find(const struct ha_live *t, uint64_t addr)
{
	if (!t->slots)
		return SIZE_MAX;
	for (size_t i = home(t, addr);; i = (i + 1) & t->mask) {
		if (!t->slots[i].used)
			return SIZE_MAX;
		if (t->slots[i].addr == addr)
			return i;
	}
}

#define HUGE_PAGE ((size_t)2 << 20)

/* Zeroed slots; a table of 256 KiB or more on 2 MiB pages where the kernel
 * has them: it is probed at random once an event, and on 4 KiB pages
 * most probes also miss the TLB. */
static struct ha_block *alloc_slots(size_t n)
{
	size_t bytes = n * sizeof(struct ha_block);
	void *p;

	if (bytes < HUGE_PAGE / 8)
		return calloc(n, sizeof(struct ha_block));
	bytes = (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
	p = aligned_alloc(HUGE_PAGE, bytes);
	if (!p)
		return NULL;
	madvise(p, bytes, MADV_HUGEPAGE);
	memset(p, 0, n * sizeof(struct ha_block));
	return p;
}

static bool ha_live_grow(struct ha_live *t)
{
	size_t n = t->slots ? (t->mask + 1) * 2 : 1024;
	struct ha_block *old = t->slots;
	size_t old_n = t->slots ? t->mask + 1 : 0;

	t->slots = alloc_slots(n);
	if (!t->slots) {
		t->slots = old;
		return false;
	}
	t->mask = n - 1;
	for (size_t i = 0; i < old_n; i++) {
		size_t j;

		if (!old[i].used)
			continue;
		for (j = home(t, old[i].addr); t->slots[j].used;
		     j = (j + 1) & t->mask)
			;
		t->slots[j] = old[i];
	}
	free(old);
	return true;
}

/*
 * Whether one more block needs a bigger table: once it is a quarter full
 * while it has fewer than SPARSE_SLOTS slots, so that it runs 12-25% full
 * (churn's reports took 8-9% less time than with the table 25-50% full:
 * shorter probes and shorter shifts when a block is freed, one event in
 * two; an eighth full gained nothing more); half full past that, so that
 * a big heap costs 64 bytes a live block, not 128.
 */
#define SPARSE_SLOTS ((size_t)1 << 20)

static bool full(const struct ha_live *t)
{
	size_t slots = t->slots ? t->mask + 1 : 0;

	return (t->entries + 1) * (slots < SPARSE_SLOTS ? 4 : 2) > slots;
}

/* addr is not in the table. */
bool ha_live_insert(struct ha_live *t, uint64_t addr, uint64_t size,
		    uint32_t blocks, uint32_t stack, uint64_t time)
{
	size_t i;

	if (full(t) && !ha_live_grow(t))
		return false;
	for (i = home(t, addr); t->slots[i].used; i = (i + 1) & t->mask)
		;
	t->slots[i] = (struct ha_block){addr, size, time, stack, blocks};
	t->entries++;
	t->count += blocks;
	t->bytes += size;
	return true;
}

size_t ha_live_put(struct ha_live *t, uint64_t addr, uint64_t size,
		   uint32_t blocks, uint32_t stack, uint64_t time,
		   struct ha_block *old)
{
	size_t i;

	if (full(t) && !ha_live_grow(t))
		return SIZE_MAX;
	for (i = home(t, addr); t->slots[i].used; i = (i + 1) & t->mask)
		if (t->slots[i].addr == addr)
			break;
	*old = t->slots[i];
	if (old->used) {
		t->entries--;
		t->count -= old->used;
		t->bytes -= old->size;
	}
	t->slots[i] = (struct ha_block){addr, size, time, stack, blocks};
	t->entries++;
	t->count += blocks;
	t->bytes += size;
	return i;
}

/* Backward-shift deletion: no tombstones, probes stay short. */
void ha_live_remove(struct ha_live *t, size_t i)
{
	size_t j = i;

	t->entries--;
	t->count -= t->slots[i].used;
	t->bytes -= t->slots[i].size;
	for (;;) {
		size_t k;

		j = (j + 1) & t->mask;
		if (!t->slots[j].used)
			break;
		k = home(t, t->slots[j].addr);
		/* Move j into the hole at i unless its home lies in (i, j]. */
		if ((j > i && (k <= i || k > j)) ||
		    (j < i && k <= i && k > j)) {
			t->slots[i] = t->slots[j];
			i = j;
		}
	}
	t->slots[i].used = 0;
}

bool ha_live_copy(struct ha_live *dst, const struct ha_live *src)
{
	*dst = *src;
	if (!src->slots)
		return true;
	dst->slots = malloc((src->mask + 1) * sizeof(*src->slots));
	if (!dst->slots)
		return false;
	memcpy(dst->slots, src->slots, (src->mask + 1) * sizeof(*src->slots));
	return true;
}
