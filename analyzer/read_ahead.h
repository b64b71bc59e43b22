/*
 * analyzer/read_ahead.h - a second thread that reads and decodes a
 * stream's chunks ahead of the replay's merge (read_ahead.c). Internal to
 * the analyzer (event_merge.c).
 *
 * The replay's own work per event (the live-block table, sites, the
 * timeline) and getting the events (decompressing the frames, decoding the
 * chunks) take turns on one core otherwise; the machine a report runs on
 * has more than one. The thread hands over each thread's (group's) chunks
 * in the order the merge takes them, decoded exactly as the merge would
 * decode them itself, and errors where the merge would meet them: the
 * report is the same byte for byte, only sooner.
 *
 * Invariants: while a read-ahead runs, the log is frozen (log->frozen:
 * decoding only looks stacks and streams up), and nothing but the thread
 * reads through its ha_fetch. Memory: a ring of decoded chunks per group,
 * 256 chunks in all and at least 8 a group (a few MiB); streams with more
 * groups than HA_AHEAD_MAX_GROUPS are merged without it.
 */
#ifndef HALLOC_ANALYZER_READ_AHEAD_H
#define HALLOC_ANALYZER_READ_AHEAD_H

#include <stdint.h>

#include "analyzer/log_source.h"
#include "analyzer/model.h"

#define HA_AHEAD_MAX_GROUPS 64
/*
 * Streams whose chunks hold fewer bytes are merged without a thread. Past
 * HA_KEEP_BUDGET some of a stream's zstd frames were not kept by the first
 * reading and are decompressed again: the thread takes that off the
 * merge's path, with the decoding (churn-2t: report 0.50 -> 0.44 s). On
 * smaller logs it lost as much as it won (sqlite: 0.11 -> 0.13 s, the
 * merge's own work too light to hide the decoding behind).
 */
#define HA_AHEAD_MIN_BYTES HA_KEEP_BUDGET
/* HA_AHEAD_MIN_BYTES, but for tests, which change it to compare. */
extern uint64_t ha_ahead_min_bytes;

struct ha_read_ahead;

/* One group's chunks: indexes into log->chunks, in the order it reads
 * them. */
struct ha_ahead_group {
	const uint32_t *chunks;
	size_t nchunks;
};

/* Starts the thread over ngroups groups, reading through its own twin of
 * `fetch`; NULL when it cannot (out of memory, no thread): the caller
 * reads the chunks itself. */
struct ha_read_ahead *ha_ahead_start(struct ha_log *log,
				     const struct ha_fetch *fetch,
				     const struct ha_ahead_group *groups,
				     size_t ngroups);
/*
 * Group g's next chunk's events, in *ev (nev of them) until the next call
 * for g, and its offset in *at; the chunk before it is handed back. HA_OK
 * with *ev NULL: the group has no more chunks. Another result: what
 * reading the chunk gave (the group ends there).
 */
enum ha_result ha_ahead_take(struct ha_read_ahead *ra, size_t g,
			     struct ha_event **ev, size_t *nev, uint64_t *at);
/* Stops and joins the thread, frees everything. */
void ha_ahead_stop(struct ha_read_ahead *ra);

#endif /* HALLOC_ANALYZER_READ_AHEAD_H */
