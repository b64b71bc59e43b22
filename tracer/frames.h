/*
 * tracer/frames.h - frames as the tracer sees them: splitting the pipe's
 * byte stream into whole frames, and encoding the frames the tracer itself
 * writes (see include/halloc/log.h for every layout). Internal to tracer/
 * and to the eBPF attach's log writer (agent/bpf/log_writer.c), which
 * writes the same TRACE_INFO, PROCESS_EXIT and END frames with these.
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

/*
 * TRACE_INFO's fields, in the frame's order. To append an optional field:
 * add it here (0 must mean "absent" for older readers), write it last in
 * ht_frame_trace_info and raise HT_TRACE_INFO_FIELDS.
 */
struct ht_trace_info {
	uint64_t recorder; /* enum halloc_recorder */
	uint64_t flags;	   /* enum halloc_trace_flags */
	uint64_t depth;
	uint64_t start_ns; /* CLOCK_REALTIME */
	uint64_t pid;
	char *const *argv; /* NULL-ended */
};

/* The varints of TRACE_INFO besides the argument strings. */
#define HT_TRACE_INFO_FIELDS 6u

/* A malloc'd TRACE_INFO frame (it has no size limit); NULL on ENOMEM. */
unsigned char *ht_frame_trace_info(const struct ht_trace_info *info,
				   size_t *size);

/* A PROCESS_EXIT frame from a waitpid(2) status; returns its size. */
size_t ht_frame_process_exit(unsigned char out[HT_SMALL_FRAME_MAX], pid_t pid,
			     int wait_status);

/* A PROCESS_EXIT frame with its fields as log.h has them (enum
 * halloc_exit_how, value, flags: bit 0 core dumped), for ends a wait
 * status cannot say (HALLOC_EXIT_DETACHED, HALLOC_EXIT_UNKNOWN). */
size_t ht_frame_process_exit_how(unsigned char out[HT_SMALL_FRAME_MAX],
				 pid_t pid, uint64_t how, uint64_t value,
				 uint64_t flags);

struct ht_end {
	uint64_t flags; /* HT_END_* */
	uint64_t chunks_lost;
	/* The eBPF recorder's trailing counts (log.h: absent means 0),
	 * written only when bpf_counts is set. */
	bool bpf_counts;
	uint64_t events_lost;	   /* its ring buffer was full */
	uint64_t stacks_truncated; /* DWARF: the copy ended too soon */
};

/* An END frame; returns its size. */
size_t ht_frame_end(unsigned char out[HT_SMALL_FRAME_MAX],
		    const struct ht_end *end);

#define HT_END_EVENTS_LOST 1u /* END flags bit 0 */

#endif /* HALLOC_TRACER_FRAMES_H */
