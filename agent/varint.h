/*
 * agent/varint.h - the log's integer encodings (see include/halloc/log.h):
 * unsigned LEB128 ("uv") and zig-zag signed ("sv"). Internal, header-only:
 * the agent and the tracer write with it, the analyzer reads with it.
 *
 * The writers take a pointer to where to write and return the pointer past
 * what they wrote; the caller guarantees HALLOC_VARINT_MAX bytes of room.
 * The reader never reads at or past `end` and reports failure instead.
 */
#ifndef HALLOC_AGENT_VARINT_H
#define HALLOC_AGENT_VARINT_H

#include <stdbool.h>
#include <stdint.h>

#define HALLOC_VARINT_MAX 10

static inline unsigned char *halloc_put_uv(unsigned char *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (unsigned char)(v | 0x80);
		v >>= 7;
	}
	*p++ = (unsigned char)v;
	return p;
}

static inline uint64_t halloc_zigzag(int64_t v)
{
	/* all ones for a negative v, else zero: the sign spread over 64 bits */
	uint64_t sign = v < 0 ? ~(uint64_t)0 : 0;

	return ((uint64_t)v << 1) ^ sign;
}

static inline int64_t halloc_unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static inline unsigned char *halloc_put_sv(unsigned char *p, int64_t v)
{
	return halloc_put_uv(p, halloc_zigzag(v));
}

/*
 * The chunk deltas of include/halloc/log.h. *prev is the chunk's previous
 * value (0 at a chunk's start) and becomes v. Times are written as uv and
 * never go back: a reading older than *prev (two CPUs' clocks) is written as
 * *prev. Addresses go either way, as sv.
 */
static inline unsigned char *halloc_put_time_delta(unsigned char *p,
						   uint64_t *prev, uint64_t v)
{
	if (v < *prev)
		v = *prev;
	p = halloc_put_uv(p, v - *prev);
	*prev = v;
	return p;
}

static inline unsigned char *halloc_put_addr_delta(unsigned char *p,
						   uint64_t *prev, uint64_t v)
{
	p = halloc_put_sv(p, (int64_t)(v - *prev));
	*prev = v;
	return p;
}

/* Reads one uv at *pp; advances *pp. False on truncation or overlong. */
static inline bool halloc_get_uv(const unsigned char **pp,
				 const unsigned char *end, uint64_t *out)
{
	const unsigned char *p = *pp;
	uint64_t v = 0;
	unsigned shift = 0;

	while (p < end && shift < 64) {
		unsigned char b = *p++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*pp = p;
			*out = v;
			return true;
		}
		shift += 7;
	}
	return false;
}

static inline bool halloc_get_sv(const unsigned char **pp,
				 const unsigned char *end, int64_t *out)
{
	uint64_t u;

	if (!halloc_get_uv(pp, end, &u))
		return false;
	*out = halloc_unzigzag(u);
	return true;
}

#endif /* HALLOC_AGENT_VARINT_H */
