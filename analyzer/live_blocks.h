/*
 * analyzer/live_blocks.h - the blocks live at a point of a replay
 * (live_blocks.c), by address. Internal to the analyzer (replay.c).
 */
#ifndef HALLOC_ANALYZER_LIVE_BLOCKS_H
#define HALLOC_ANALYZER_LIVE_BLOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "analyzer/hashmap.h"

struct ha_block {
	uint64_t addr, size;
	uint64_t time; /* allocated at, us since the stream's start */
	uint32_t stack;
	/* 0: an empty slot; else the blocks it stands for: 1, or more in a
	 * sampled log (analyzer/sample.h), where size is the bytes they hold */
	uint32_t used;
};

struct ha_live {
	struct ha_block *slots;
	size_t mask; /* slots - 1 */
	size_t count;	/* blocks: the sum of `used` */
	size_t entries; /* slots in use */
	uint64_t bytes;
};

/* The slot holding addr, or SIZE_MAX. */
size_t ha_live_find(const struct ha_live *t, uint64_t addr);
/* addr is not in the table; false when out of memory. */
bool ha_live_insert(struct ha_live *t, uint64_t addr, uint64_t size,
		    uint32_t blocks, uint32_t stack, uint64_t time);
/* Inserts addr, or replaces the block at addr, which *old then holds
 * (old->used says which); the slot, or SIZE_MAX when out of memory. */
size_t ha_live_put(struct ha_live *t, uint64_t addr, uint64_t size,
		   uint32_t blocks, uint32_t stack, uint64_t time,
		   struct ha_block *old);
#define HA_LIVE_PREFETCH_SLOTS ((size_t)(256 << 10) / sizeof(struct ha_block))

/* Starts loading addr's home slot into the cache. Always inlined: gcc 12
 * finds a function whose only effect is a prefetch "const" and deletes
 * the calls to it before it would inline them (-O2: the replay had no
 * prefetch instruction at all). */
static inline __attribute__((always_inline)) void
ha_live_prefetch(const struct ha_live *t, uint64_t addr)
{
	/* A table of 256 KiB or less stays in the L2 cache: prefetching
	 * would compute the hash twice for no stall saved (sqlite). */
	if (t->slots && t->mask >= HA_LIVE_PREFETCH_SLOTS)
		__builtin_prefetch(&t->slots[ha_hash64(addr) & t->mask]);
}
/* Removes slot i (from ha_live_find). */
void ha_live_remove(struct ha_live *t, size_t i);
/* dst becomes a copy of src; false when out of memory. */
bool ha_live_copy(struct ha_live *dst, const struct ha_live *src);

#endif /* HALLOC_ANALYZER_LIVE_BLOCKS_H */
