/*
 * analyzer/sample.h - what one sampled block stands for (halloc-trace
 * --sample). Internal to the analyzer (replay.c, tests).
 *
 * The agent samples a block of s bytes with probability
 * p(s) = 1 - exp(-s / interval) (agent/sample.c; a block of 0 bytes as if
 * it had 1), so each sampled block stands for 1 / p(s) blocks and s / p(s)
 * bytes: sums of those are unbiased estimates of the run's counts and
 * bytes. The replay counts in whole blocks and bytes, so the two are
 * rounded up or down at random, with the probability that keeps them
 * unbiased, from a key that names the block (the same log always gives the
 * same report).
 */
#ifndef HALLOC_ANALYZER_SAMPLE_H
#define HALLOC_ANALYZER_SAMPLE_H

#include <stdint.h>

/* The largest interval a log may say (blocks then fit 32 bits). */
#define HA_SAMPLE_INTERVAL_MAX (1ull << 30)

/* 1 / p(size): how many blocks one sampled block of `size` stands for. */
double ha_sample_weight(uint64_t interval, uint64_t size);

/* The whole blocks (>= 1) and bytes a sampled block stands for. */
void ha_sample_scale(uint64_t interval, uint64_t size, uint64_t key,
		     uint64_t *blocks, uint64_t *bytes);

#endif /* HALLOC_ANALYZER_SAMPLE_H */
