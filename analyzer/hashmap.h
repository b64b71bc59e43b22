/*
 * analyzer/hashmap.h - a map from 64-bit keys to 32-bit indices, and the
 * hash functions the analyzer's tables share.
 *
 * Open addressing with linear probing; a slot is empty when its value is
 * HA_NONE, so every 64-bit key (0 included) can be stored. Values are
 * indices into the caller's arrays. There is no removal: the tables this
 * serves only grow (the live-block table of the replay, which shrinks, has
 * its own). Where keys are hashes of larger things (strings, sites), the
 * caller chains the entries that share a hash and compares them in full.
 */
#ifndef HALLOC_ANALYZER_HASHMAP_H
#define HALLOC_ANALYZER_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HA_NONE UINT32_MAX

struct ha_map_slot {
	uint64_t key;
	uint32_t value; /* HA_NONE: empty */
};

struct ha_map {
	struct ha_map_slot *slots;
	size_t mask; /* slots - 1; 0 with no slots */
	size_t count;
};

/* HA_NONE when the key is absent. */
uint32_t ha_map_get(const struct ha_map *map, uint64_t key);
/* Inserts or replaces. False when out of memory (the map is unchanged). */
bool ha_map_put(struct ha_map *map, uint64_t key, uint32_t value);
void ha_map_free(struct ha_map *map);

/* A well-mixed 64-bit hash of a 64-bit value (splitmix64's finalizer). */
static inline uint64_t ha_hash64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

/* FNV-1a over bytes, then mixed. */
static inline uint64_t ha_hash_bytes(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return ha_hash64(h);
}

#endif /* HALLOC_ANALYZER_HASHMAP_H */
