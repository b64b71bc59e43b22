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

/*
 * Fast readers for the hot loops (chunk_fast.c), over a buffer followed by
 * HA_SLACK readable bytes: they load 8 bytes at a time without looking for
 * the end. A field that runs past the end is caught by the caller, which
 * compares its cursor with the end once per record; each field takes at
 * most 8 bytes, and a record has at most 7 fields before that check, so
 * 64 bytes of slack are never read past. NULL for what they do not handle
 * (a varint longer than 8 bytes): the caller decodes that chunk the
 * careful way instead.
 */
#define HA_SLACK 64

static inline const unsigned char *ha_fast_uv(const unsigned char *p,
					      uint64_t *out)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	uint64_t w, stop, x;
	unsigned bits;

	if (!(*p & 0x80)) {
		*out = *p;
		return p + 1;
	}
	memcpy(&w, p, sizeof(w));
	stop = ~w & 0x8080808080808080ull; /* bytes without continuation */
	if (!stop)
		return NULL;
	bits = (unsigned)__builtin_ctzll(stop) + 1; /* 8 x bytes used */
	x = w & 0x7f7f7f7f7f7f7f7full;
	if (bits < 64)
		x &= ((uint64_t)1 << bits) - 1;
	/* 7-bit groups to one number: pairs, then quads, then all eight */
	x = ((x & 0x7f007f007f007f00ull) >> 1) | (x & 0x007f007f007f007full);
	x = ((x & 0x3fff00003fff0000ull) >> 2) | (x & 0x00003fff00003fffull);
	x = ((x & 0x0fffffff00000000ull) >> 4) | (x & 0x000000000fffffffull);
	*out = x;
	return p + bits / 8;
#else
	const unsigned char *q = p;

	return halloc_get_uv(&q, p + 8, out) ? q : NULL;
#endif
}

/* Steps over a varint whose value is not needed. */
static inline const unsigned char *ha_fast_skip(const unsigned char *p)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	uint64_t w, stop;

	if (!(*p & 0x80))
		return p + 1;
	memcpy(&w, p, sizeof(w));
	stop = ~w & 0x8080808080808080ull;
	return stop ? p + ((unsigned)__builtin_ctzll(stop) + 1) / 8 : NULL;
#else
	uint64_t v;

	return ha_fast_uv(p, &v);
#endif
}

#endif /* HALLOC_ANALYZER_DECODE_H */
