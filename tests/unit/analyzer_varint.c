/*
 * tests/unit/analyzer_varint.c - the log's integer encodings (agent/varint.h)
 * round-trip, and the reader refuses what is cut short or overlong.
 */
#include <criterion/criterion.h>
#include <stdint.h>

#include "agent/varint.h"

static const uint64_t unsigned_cases[] = {
    0,
    1,
    0x7f,
    0x80,
    0x3fff,
    0x4000,
    0x1fffff,
    0x200000,
    UINT32_MAX,
    (uint64_t)UINT32_MAX + 1,
    0x7fffffffffffffffull,
    0x8000000000000000ull,
    UINT64_MAX - 1,
    UINT64_MAX,
};

Test(varint, unsigned_round_trip)
{
	for (size_t i = 0; i < sizeof(unsigned_cases) / sizeof(*unsigned_cases);
	     i++) {
		unsigned char buf[HALLOC_VARINT_MAX];
		unsigned char *end = halloc_put_uv(buf, unsigned_cases[i]);
		const unsigned char *p = buf;
		uint64_t v = 0;

		cr_assert_leq(end - buf, HALLOC_VARINT_MAX);
		cr_assert(halloc_get_uv(&p, end, &v), "decode %llu",
			  (unsigned long long)unsigned_cases[i]);
		cr_assert_eq(v, unsigned_cases[i]);
		cr_assert_eq(p, end, "consumed exactly what was written");
	}
}

Test(varint, sizes_are_leb128)
{
	unsigned char buf[HALLOC_VARINT_MAX];

	cr_assert_eq(halloc_put_uv(buf, 0x7f) - buf, 1);
	cr_assert_eq(halloc_put_uv(buf, 0x80) - buf, 2);
	cr_assert_eq(buf[0], 0x80);
	cr_assert_eq(buf[1], 0x01);
	cr_assert_eq(halloc_put_uv(buf, UINT64_MAX) - buf, 10);
}

Test(varint, signed_round_trip)
{
	static const int64_t cases[] = {
	    0,	 1,	    -1,	       63,	  -64,	    64,
	    -65, INT32_MIN, INT32_MAX, INT64_MIN, INT64_MAX};

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		unsigned char buf[HALLOC_VARINT_MAX];
		unsigned char *end = halloc_put_sv(buf, cases[i]);
		const unsigned char *p = buf;
		int64_t v = 0;

		cr_assert(halloc_get_sv(&p, end, &v));
		cr_assert_eq(v, cases[i]);
	}
	/* zig-zag keeps small magnitudes small */
	cr_assert_eq(halloc_zigzag(-1), 1);
	cr_assert_eq(halloc_zigzag(1), 2);
}

Test(varint, truncated_is_refused)
{
	unsigned char buf[HALLOC_VARINT_MAX];
	unsigned char *end = halloc_put_uv(buf, 0x123456789ull);

	for (unsigned char *cut = buf; cut < end; cut++) {
		const unsigned char *p = buf;
		uint64_t v;

		cr_assert_not(halloc_get_uv(&p, cut, &v), "cut at %d",
			      (int)(cut - buf));
		cr_assert_eq(p, buf, "the cursor does not move on failure");
	}
}

Test(varint, overlong_is_refused)
{
	unsigned char buf[12];
	const unsigned char *p = buf;
	uint64_t v;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = 0x80;
	buf[11] = 0x01;
	cr_assert_not(halloc_get_uv(&p, buf + sizeof(buf), &v));
}
