/*
 * analyzer/sample.c - scaling sampled blocks to estimates (sample.h).
 */
#include <math.h>

#include "analyzer/hashmap.h"
#include "analyzer/sample.h"

double ha_sample_weight(uint64_t interval, uint64_t size)
{
	double s = size ? (double)size : 1.0;

	/* -expm1: exact for small s / interval, where 1 - exp() is not. */
	return 1.0 / -expm1(-s / (double)interval);
}

/* x rounded down or up, up with probability frac(x): E[result] = x. */
static uint64_t round_random(double x, uint64_t random)
{
	double whole = floor(x);
	double u = (double)(random >> 11) * 0x1p-53; /* [0, 1) */

	return (uint64_t)whole + (u < x - whole);
}

void ha_sample_scale(uint64_t interval, uint64_t size, uint64_t key,
		     uint64_t *blocks, uint64_t *bytes)
{
	double w = ha_sample_weight(interval, size);
	uint64_t r1 = ha_hash64(key),
		 r2 = ha_hash64(r1 ^ 0x9e3779b97f4a7c15ull);

	*blocks = round_random(w, r1);
	if (*blocks < 1)
		*blocks = 1;
	*bytes = size ? round_random(w * (double)size, r2) : 0;
}
