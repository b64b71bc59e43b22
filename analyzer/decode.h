/*
 * analyzer/decode.h - bounds-checked reading of frame payloads, on top of
 * agent/varint.h. Every reader takes the cursor and the end of the payload,
 * never reads at or past the end, and returns false instead.
 */
#ifndef HALLOC_ANALYZER_DECODE_H
#define HALLOC_ANALYZER_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "agent/varint.h"

struct ha_cursor {
	const unsigned char *p, *end;
};

static inline bool ha_get_uv(struct ha_cursor *c, uint64_t *out)
{
	return halloc_get_uv(&c->p, c->end, out);
}

static inline bool ha_get_sv(struct ha_cursor *c, int64_t *out)
{
	return halloc_get_sv(&c->p, c->end, out);
}

/* A uv that must fit 32 bits. */
static inline bool ha_get_u32(struct ha_cursor *c, uint32_t *out)
{
	uint64_t v;

	if (!ha_get_uv(c, &v) || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* A "str": uv length, then the bytes (not NUL-terminated). */
static inline bool ha_get_str(struct ha_cursor *c, const char **s, size_t *len)
{
	uint64_t n;

	if (!ha_get_uv(c, &n) || n > (uint64_t)(c->end - c->p))
		return false;
	*s = (const char *)c->p;
	*len = (size_t)n;
	c->p += n;
	return true;
}

/* A count of items that each take at least `min_size` bytes: a count the
 * rest of the payload cannot hold is corrupt, and refusing it up front
 * keeps a bad count from becoming a huge allocation. */
static inline bool ha_get_count(struct ha_cursor *c, size_t min_size,
				uint32_t *out)
{
	uint64_t n;

	if (!ha_get_uv(c, &n) || n > UINT32_MAX ||
	    n * min_size > (uint64_t)(c->end - c->p))
		return false;
	*out = (uint32_t)n;
	return true;
}

static inline uint32_t ha_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t ha_le64(const unsigned char *p)
{
	return (uint64_t)ha_le32(p) | (uint64_t)ha_le32(p + 4) << 32;
}

#endif /* HALLOC_ANALYZER_DECODE_H */
