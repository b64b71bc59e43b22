/*
 * tracer/frames.h - frames as the tracer sees them: splitting the pipe's
 * byte stream into whole frames, and encoding the frames the tracer itself
 * writes (see include/halloc/log.h for every layout). Internal to tracer/.
 *
 * The agent writes each frame with one write(2) of at most HALLOC_FRAME_MAX
 * bytes, so frames never interleave in the pipe; but a read(2) may end in
 * the middle of one. The framer holds such a partial frame until the rest
 * arrives, so only whole frames ever reach the log.
 *
 * A frame header that cannot be the agent's (not a chunk, or a length out of
 * range) means something else wrote into the pipe. Frame boundaries cannot
 * be trusted after that, so the framer drops the rest of the stream rather
 * than copy garbage into the log, and says so.
 */
#ifndef HALLOC_TRACER_FRAMES_H
#define HALLOC_TRACER_FRAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "halloc/log.h"

struct ht_framer {
	size_t have;	  /* bytes of a frame gathered in partial[] */
	bool broken;	  /* an invalid frame header was seen */
	uint64_t dropped; /* bytes dropped since then */
	unsigned char partial[HALLOC_FRAME_MAX];
};

void ht_framer_init(struct ht_framer *framer);

/*
 * Takes bytes from [*data, *data + *len) and advances past what it used.
 * Returns the next whole frame and sets *size, or NULL once the input is
 * used up. The frame points into the input or into framer->partial, and
 * stays valid until the next call.
 */
const unsigned char *ht_framer_next(struct ht_framer *framer,
				    const unsigned char **data, size_t *len,
				    size_t *size);

/* At end of stream: true if a partial frame was pending (it is dropped). */
bool ht_framer_end(struct ht_framer *framer);

/* Reads the (slot, chunk_no) of a whole chunk frame. */
void ht_chunk_key(const unsigned char *frame, uint32_t *slot,
		  uint32_t *chunk_no);

/* ---- frames the tracer writes -------------------------------------------- */

#define HT_FILE_HEADER_SIZE 16u
/* Room for a PROCESS_EXIT or END frame. */
#define HT_SMALL_FRAME_MAX 64u

void ht_put_file_header(unsigned char out[HT_FILE_HEADER_SIZE]);
void ht_put_frame_header(unsigned char *out, uint32_t length, uint16_t type);

struct ht_trace_info {
	uint64_t recorder; /* enum halloc_recorder */
	uint64_t flags;	   /* enum halloc_trace_flags */
	uint64_t depth;
	uint64_t start_ns; /* CLOCK_REALTIME */
	uint64_t pid;
	char *const *argv; /* NULL-ended */
};

/* A malloc'd TRACE_INFO frame (it has no size limit); NULL on ENOMEM. */
unsigned char *ht_frame_trace_info(const struct ht_trace_info *info,
				   size_t *size);

/* A PROCESS_EXIT frame from a waitpid(2) status; returns its size. */
size_t ht_frame_process_exit(unsigned char out[HT_SMALL_FRAME_MAX], pid_t pid,
			     int wait_status);

/* An END frame; returns its size. */
size_t ht_frame_end(unsigned char out[HT_SMALL_FRAME_MAX], uint64_t flags,
		    uint64_t chunks_lost);

#define HT_END_EVENTS_LOST 1u /* END flags bit 0 */

#endif /* HALLOC_TRACER_FRAMES_H */
