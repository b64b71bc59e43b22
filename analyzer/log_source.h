/*
 * analyzer/log_source.h - the bytes of a log, whether the file holds them
 * as they are or compressed with zstd (log_source.c). Internal to the
 * analyzer.
 *
 * A compressed log is a sequence of zstd frames whose decompressed
 * concatenation is the log (include/halloc/log.h): the tracer compresses
 * what it records, then appends the SYMBOLS and END frames as frames of
 * their own. Readers see the decompressed bytes and offsets into them.
 *
 * End of input inside a zstd frame is a cut-short file, like a partial
 * frame of a plain log: the bytes decompressed so far are delivered, then
 * the source ends. Data zstd cannot decode sets `corrupt`.
 */
#ifndef HALLOC_ANALYZER_LOG_SOURCE_H
#define HALLOC_ANALYZER_LOG_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "analyzer/model.h"

/*
 * The first reading of a compressed log keeps the zstd frames it
 * decompresses (struct ha_zframe.plain) for the replay, which would
 * otherwise decompress each again (a fifth of the report's time on
 * churn), until they hold this many bytes; frames past it are
 * decompressed again. So reading a compressed log takes at most this
 * much more memory than reading it plain (a plain log is read back from
 * the file; tests/unit/analyzer_bounded.c's 32 MiB bound is for a plain
 * log). Whole frames only: one the file ends inside is not kept.
 * Why not more: on this project's virtual machine, memory a process
 * touches for the first time costs system time (page clearing, the
 * host's faults), the more so right after another big process exited;
 * past ~32 MiB that ate the time zstd saved (churn-2t: 62 MiB of frames).
 */
#define HA_KEEP_BUDGET ((size_t)32 << 20)

/* The first bytes of a zstd frame (RFC 8878), little-endian 0xFD2FB528. */
#define HA_ZSTD_MAGIC	  "\x28\xb5\x2f\xfd"
#define HA_ZSTD_MAGIC_LEN 4

struct ha_source {
	FILE *f;
	bool compressed;
	bool corrupt;  /* zstd could not decode the data */
	bool io_error; /* reading the file failed */
	bool in_frame; /* inside an unfinished zstd frame */
	const char *zstd_error;
	void *dctx; /* ZSTD_DCtx */
	unsigned char *in, *out;
	const unsigned char *view; /* what out_pos/out_len index: out or keep */
	size_t in_pos, in_len, out_pos, out_len;
	/* Kept frames lie one after the other in `keep` (keep_budget bytes
	 * of address space, touched as filled), keep_used bytes so far; the
	 * frame being decompressed follows them, keep_len bytes so far.
	 * keep_budget 0: keeping none, or no more. */
	unsigned char *keep;
	size_t keep_used, keep_len, keep_budget, keep_size;
	bool in_eof;
	uint64_t in_at;	    /* file offset of in[0] */
	uint64_t raw_total; /* decompressed bytes so far */
	/* Where each zstd frame starts (the last entry may be the end). */
	struct ha_zframe *frames;
	size_t nframes, frames_cap;
	bool nomem;
};

/* Peeks at the first bytes of `f` to learn whether it is compressed.
 * Keeps the frames it decompresses, up to keep_budget bytes (0: none).
 * False when out of memory. */
bool ha_source_open(struct ha_source *src, FILE *f, size_t keep_budget);
/* Up to n decompressed bytes into dst; short only at the end. */
size_t ha_source_read(struct ha_source *src, void *dst, size_t n);
void ha_source_close(struct ha_source *src);

/*
 * The replay's reading of a log's bytes at an offset (ha_chunk_ref), from a
 * file that can seek: directly when plain, through the zstd frame holding
 * them when compressed (the last few frames decompressed are kept, so
 * reading chunks in roughly file order decompresses each frame once).
 */
struct ha_fetch;
struct ha_fetch *ha_fetch_new(FILE *f, const struct ha_log *log);
/* Copies len bytes at offset `at` to dst; false on a read error. */
bool ha_fetch(struct ha_fetch *fetch, uint64_t at, void *dst, size_t len);
/* The len bytes at `at`, followed by HA_SLACK readable bytes (decode.h):
 * in the cache of decompressed frames when one holds them all, else
 * copied to buf (len + HA_SLACK bytes), the slack zeroed. NULL on a read
 * error. Valid until the next call. */
const unsigned char *ha_fetch_view(struct ha_fetch *fetch, uint64_t at,
				   size_t len, unsigned char *buf);
void ha_fetch_free(struct ha_fetch *fetch);
/* Another reader of the same file and frames, with its own cache: for
 * another thread (read_ahead.c). NULL when out of memory. */
struct ha_fetch *ha_fetch_twin(const struct ha_fetch *fetch);

/* Whether the file at `fd` starts with the zstd magic (offset kept). */
bool ha_fd_is_compressed(int fd);

/* Compresses data[0, len) into one zstd frame appended to fd. False with
 * errno set on failure. */
bool ha_append_compressed(int fd, const void *data, size_t len);

#endif /* HALLOC_ANALYZER_LOG_SOURCE_H */
