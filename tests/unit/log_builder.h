/*
 * tests/unit/log_builder.h - writes halloc logs in memory, record by record,
 * so analyzer tests can state exactly what a log holds
 * (format: include/halloc/log.h).
 *
 * Records go into the chunk opened last with lb_chunk(); deltas restart at
 * every chunk, as the agent's do. Sizes are unchecked: a test may build
 * a chunk larger than the agent would.
 */
#ifndef HALLOC_TESTS_LOG_BUILDER_H
#define HALLOC_TESTS_LOG_BUILDER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "analyzer/analyzer.h"

struct lb {
	unsigned char *buf;
	size_t len, cap;
	size_t chunk_at; /* offset of the open chunk's frame header, or 0 */
	uint64_t seq, addr;
	uint32_t chunk_no;
};

struct lb_sym {
	const char *function, *file;
	unsigned line;
};

/* Starts a log: file header, and TRACE_INFO when argv is not NULL. */
void lb_init(struct lb *b, uint32_t pid, const char *const *argv);
void lb_free(struct lb *b);

void lb_chunk(struct lb *b, uint64_t stream, uint32_t pid, uint32_t tid);
void lb_process(struct lb *b, uint64_t seq, uint32_t pid, uint32_t ppid,
		uint64_t parent_stream, uint64_t parent_seq, uint64_t flags,
		uint64_t start_time, const char *exe, const char *const *argv);
void lb_module(struct lb *b, uint64_t seq, uint64_t id, uint64_t bias,
	       const char *path, const char *build_id, size_t build_id_len,
	       uint64_t start, uint64_t size);
void lb_unload(struct lb *b, uint64_t seq, uint64_t id);
void lb_stack(struct lb *b, uint64_t seq, uint64_t id, unsigned n,
	      const uint64_t *frames);
void lb_alloc(struct lb *b, uint64_t seq, unsigned fn, uint64_t addr,
	      uint64_t size, uint64_t stack);
void lb_free_rec(struct lb *b, uint64_t seq, unsigned fn, uint64_t addr);
void lb_realloc(struct lb *b, uint64_t seq, uint64_t seq2, uint64_t old,
		uint64_t new_addr, uint64_t size, uint64_t stack);
void lb_failed(struct lb *b, uint64_t seq, unsigned fn, uint64_t size,
	       uint64_t stack);
/* An allocation refused before the allocator (enum halloc_refusal). */
void lb_refused(struct lb *b, uint64_t seq, unsigned fn, uint64_t size,
		uint64_t stack, unsigned reason);
/* Raw bytes inside the open chunk (for corrupt records). */
void lb_raw(struct lb *b, const void *data, size_t len);
/* Closes the open chunk (fills in its length). Frames below do it too. */
void lb_chunk_end(struct lb *b);

void lb_exit(struct lb *b, uint32_t pid, unsigned how, uint64_t value);
/* One SYMBOLS frame with one entry. */
void lb_symbols(struct lb *b, const char *module, const char *build_id_hex,
		uint64_t offset, unsigned n, const struct lb_sym *frames);
void lb_frame(struct lb *b, unsigned type, const void *payload, size_t len);
void lb_end(struct lb *b);

/* Analyzes the bytes built so far (through fmemopen). */
enum ha_result lb_analyze(struct lb *b, struct ha_analysis **out,
			  struct ha_diag *diag);
enum ha_result lb_analyze_bytes(const unsigned char *data, size_t len,
				struct ha_analysis **out, struct ha_diag *diag);
/* Writes the log to a fresh temporary file; returns its malloc'ed path. */
char *lb_write_temp(struct lb *b);

/* The report as a malloc'ed string. */
char *lb_report(const struct ha_analysis *a, enum ha_format format,
		unsigned stack_frames);

#endif /* HALLOC_TESTS_LOG_BUILDER_H */
