/*
 * analyzer/hashmap.c - the 64-bit key -> index map (see hashmap.h).
 */
#include <stdlib.h>

#include "analyzer/hashmap.h"

uint32_t ha_map_get(const struct ha_map *map, uint64_t key)
{
	if (!map->slots)
		return HA_NONE;
	for (size_t i = ha_hash64(key) & map->mask;; i = (i + 1) & map->mask) {
		const struct ha_map_slot *s = &map->slots[i];

		if (s->value == HA_NONE)
			return HA_NONE;
		if (s->key == key)
			return s->value;
	}
}

static void insert_slot(struct ha_map_slot *slots, size_t mask, uint64_t key,
			uint32_t value)
{
	size_t i = ha_hash64(key) & mask;

	while (slots[i].value != HA_NONE && slots[i].key != key)
		i = (i + 1) & mask;
	slots[i].key = key;
	slots[i].value = value;
}

/* Keeps the load factor at or below 1/2 so probes stay short. */
static bool grow(struct ha_map *map)
{
	size_t n = map->slots ? (map->mask + 1) * 2 : 16;
	struct ha_map_slot *slots = malloc(n * sizeof(*slots));

	if (!slots)
		return false;
	for (size_t i = 0; i < n; i++)
		slots[i].value = HA_NONE;
	if (map->slots) {
		for (size_t i = 0; i <= map->mask; i++)
			if (map->slots[i].value != HA_NONE)
				insert_slot(slots, n - 1, map->slots[i].key,
					    map->slots[i].value);
		free(map->slots);
	}
	map->slots = slots;
	map->mask = n - 1;
	return true;
}

bool ha_map_put(struct ha_map *map, uint64_t key, uint32_t value)
{
	if (!map->slots || (map->count + 1) * 2 > map->mask + 1) {
		if (!grow(map))
			return false;
	}
	for (size_t i = ha_hash64(key) & map->mask;; i = (i + 1) & map->mask) {
		struct ha_map_slot *s = &map->slots[i];

		if (s->value == HA_NONE) {
			s->key = key;
			s->value = value;
			map->count++;
			return true;
		}
		if (s->key == key) {
			s->value = value;
			return true;
		}
	}
}

void ha_map_free(struct ha_map *map)
{
	free(map->slots);
	map->slots = NULL;
	map->mask = 0;
	map->count = 0;
}
