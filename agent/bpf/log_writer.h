/*
 * agent/bpf/log_writer.h - writing the eBPF attach's log: the same frames
 * and records the preload agent and the tracer write (include/halloc/
 * log.h), so halloc-report cannot tell them apart but for TRACE_INFO.
 * Internal to agent/bpf/.
 *
 * Each thread of the target gets a chunk under construction (its "slot");
 * a record goes into its thread's chunk, and a full chunk is written to
 * the file as one CHUNK frame. Deltas restart in every chunk.
 *
 * Invariants:
 *  - Sequence numbers given to the record functions increase strictly per
 *    thread (the caller's job: events of one thread come in program
 *    order, and records it adds before an event use the numbers just
 *    below the event's, see HB_SEQ_SHIFT).
 *  - The first write error sticks in log->error; later writes do nothing.
 */
#ifndef HALLOC_AGENT_BPF_LOG_WRITER_H
#define HALLOC_AGENT_BPF_LOG_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/bpf/table.h"
#include "halloc/log.h"
#include "tracer/frames.h"

struct hb_log {
	int fd;
	int error;	/* errno of the first failed write, 0 if none */
	uint32_t slots; /* slots handed out so far */
	size_t used;
	unsigned char buf[1 << 16];
};

struct hb_thread;

/* One process image. */
struct hb_stream {
	struct hb_log *log;
	uint64_t id;
	uint32_t pid;
	uint64_t start_boot_ns;	 /* CLOCK_BOOTTIME of the image's start */
	struct hb_table threads; /* tid -> struct hb_thread * */
	struct hb_table stacks;	 /* hash -> index in stack_list + 1 */
	struct hb_stack_entry *stack_list;
	size_t nstacks, stacks_cap;
	uint32_t next_module_id;
};

/* Opens (creates, truncates) the log; writes the file header. errno on
 * failure. */
int hb_log_open(struct hb_log *log, const char *path);
void hb_log_write(struct hb_log *log, const void *data, size_t size);
/* Writes out the buffer. Returns log->error. */
int hb_log_flush(struct hb_log *log);
/* Flushes and closes; returns the first error (errno) or 0. */
int hb_log_close(struct hb_log *log);

/* TRACE_INFO, PROCESS_EXIT and END: the tracer's encoders (info->recorder
 * is HALLOC_RECORDER_BPF; end->bpf_counts set). */
void hb_log_trace_info(struct hb_log *log, const struct ht_trace_info *info);
void hb_log_process_exit(struct hb_log *log, uint32_t pid, uint64_t how,
			 uint64_t value, uint64_t flags);
void hb_log_end(struct hb_log *log, const struct ht_end *end);

/* ---- a stream's records ---------------------------------------------- */

struct hb_stream *hb_stream_new(struct hb_log *log, uint32_t pid,
				uint64_t start_boot_ns);
/* Writes every thread's chunk and frees the stream. */
void hb_stream_free(struct hb_stream *s);
/* Writes one thread's chunk (the thread ended); NULL-safe. */
void hb_stream_flush_thread(struct hb_stream *s, uint32_t tid);

struct hb_process_info {
	uint32_t pid, ppid;
	uint64_t flags;	   /* PROCESS flags */
	uint64_t start_ns; /* CLOCK_REALTIME */
	const char *exe;
	unsigned argc;
	char *const *argv;
};

struct hb_segment {
	uint64_t start, size;
};

struct hb_module_info {
	uint64_t bias;
	const char *path;
	const unsigned char *build_id;
	size_t build_id_len;
	unsigned nsegments;
	const struct hb_segment *segments;
};

/* Each returns false when out of memory (the record is not written). */
bool hb_rec_process(struct hb_stream *s, uint32_t tid, uint64_t seq,
		    const struct hb_process_info *p);
/* Returns the module id given, 0 when out of memory. */
uint32_t hb_rec_module(struct hb_stream *s, uint32_t tid, uint64_t seq,
		       const struct hb_module_info *m);
/* The stack id of these frames; when they are new, a STACK record with
 * `seq` is written first and *wrote is set. 0 on out of memory. */
uint64_t hb_stack_id(struct hb_stream *s, uint32_t tid, uint64_t seq,
		     const uint64_t *frames, unsigned n, bool *wrote);

/* time_us: microseconds since the stream's start. */
bool hb_rec_alloc(struct hb_stream *s, uint32_t tid, uint64_t seq, unsigned fn,
		  uint64_t time_us, uint64_t addr, uint64_t size,
		  uint64_t stack);
bool hb_rec_free(struct hb_stream *s, uint32_t tid, uint64_t seq, unsigned fn,
		 uint64_t time_us, uint64_t addr);
bool hb_rec_realloc(struct hb_stream *s, uint32_t tid, uint64_t seq,
		    uint64_t seq2, unsigned fn, uint64_t time_us,
		    uint64_t old_addr, uint64_t new_addr, uint64_t size,
		    uint64_t stack);
bool hb_rec_failed(struct hb_stream *s, uint32_t tid, uint64_t seq, unsigned fn,
		   uint64_t time_us, uint64_t size, uint64_t stack,
		   uint64_t err);

/* Microseconds since the stream's start of a CLOCK_BOOTTIME time. */
static inline uint64_t hb_stream_time_us(const struct hb_stream *s,
					 uint64_t boot_ns)
{
	return boot_ns > s->start_boot_ns ? (boot_ns - s->start_boot_ns) / 1000
					  : 0;
}

#endif /* HALLOC_AGENT_BPF_LOG_WRITER_H */
