/*
 * analyzer/types.h - memory by type: the allocations made through the
 * in-process API's halloc(type, n) (TYPE records and ALLOC records of fn
 * HALLOC_FN_HALLOC, include/halloc/log.h), grouped by type name; every
 * other block grouped by size class. Internal to the analyzer.
 *
 * Reading (chunk_reader.c) hands the two records' extra fields to
 * ha_types_read_*; the replay (replay.c) keeps a struct ha_type_state
 * beside its own state and calls the alloc/free hooks for every block that
 * appears or goes; its finish moves the results into the process.
 *
 * Invariant: a typed ALLOC is told apart by its stream and sequence
 * number, which the replay meets in increasing order; a TYPE record may
 * come after the ALLOCs that name its site (other threads' chunks), so
 * sites are resolved when the replay starts, not when read.
 */
#ifndef HALLOC_ANALYZER_TYPES_H
#define HALLOC_ANALYZER_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "analyzer/decode.h"
#include "analyzer/live_blocks.h"
#include "analyzer/model.h"

/* ---- results, per process ------------------------------------------------ */

struct ha_type_site_usage {
	const char *file; /* as the program's compiler wrote __FILE__ */
	uint32_t line;
	uint64_t allocations, objects, bytes;
};

struct ha_type_usage {
	const char *name; /* as written in halloc(type, n) */
	uint64_t object_size;
	uint64_t allocations, objects, bytes;
	uint64_t peak_bytes; /* the most bytes of the type live at once */
	uint64_t leaked_bytes, leaked_blocks;
	struct ha_type_site_usage *sites; /* most bytes first */
	size_t nsites;
};

/* Blocks without a type whose size falls in a power-of-two class (bucket
 * as ha_size_bucket: 0 holds size 0, k >= 1 sizes [2^(k-1), 2^k - 1]). */
struct ha_size_class {
	unsigned bucket;
	uint64_t allocations, bytes, peak_bytes, leaked_bytes, leaked_blocks;
};

struct ha_types_result {
	struct ha_type_usage *types; /* most bytes first */
	size_t ntypes;
	struct ha_size_class *classes; /* smallest first, used ones only */
	size_t nclasses;
};

void ha_types_result_free(struct ha_types_result *r);

/* report_types.c: "types" and "size_classes" of a process (JSON). */
struct ha_json;
struct ha_process;
void ha_json_types(struct ha_json *j, const struct ha_process *p);

/* ---- reading (chunk_reader.c) ----------------------------------------------
 */

/*
 * The fields of a TYPE record after its seq, and those an ALLOC of fn
 * HALLOC_FN_HALLOC adds at its end. keep: the model takes them in; false
 * for a reading that only steps over them (a chunk read again for its
 * events, after the model has it).
 */
enum ha_result ha_types_read_type(struct ha_log *log, struct ha_stream *s,
				  struct ha_cursor *c, bool keep);
enum ha_result ha_types_read_alloc(struct ha_log *log, struct ha_stream *s,
				   uint64_t seq, struct ha_cursor *c,
				   bool keep);
void ha_types_free(struct ha_log *log);

/* ---- replay (replay.c)
 * ----------------------------------------------------------- */

struct ha_type_acc;
struct ha_class_acc {
	uint64_t allocations, bytes, live, live_blocks, peak;
};

struct ha_type_state {
	const struct ha_log *log;
	uint32_t stream;
	size_t cursor;		 /* next typed ALLOC of the stream */
	struct ha_type_acc *acc; /* per type name, then per site */
	struct ha_live typed;	 /* live typed blocks; .stack = site */
	/* a sampled log's live untyped blocks, .stack = size class: their
	 * bytes are scaled, so a free cannot tell the class from them */
	struct ha_live classed;
	struct ha_class_acc classes[65];
};

/* parent: the forking stream's state at the fork, or NULL. */
bool ha_types_begin(struct ha_type_state *ts, const struct ha_log *log,
		    uint32_t stream, const struct ha_type_state *parent);
/* A block appears (an ALLOC event): it counts as `blocks` blocks of
 * `bytes` in all (1 and its size but in a sampled log, analyzer/sample.h). */
bool ha_types_on_alloc(struct ha_type_state *ts, const struct ha_event *e,
		       uint64_t blocks, uint64_t bytes);
/* A live block goes (freed, or replaced by an allocation at its address),
 * with the blocks and bytes it counted as. */
void ha_types_on_free(struct ha_type_state *ts, uint64_t addr, uint64_t size,
		      uint32_t blocks);
/* The stream ended: leaked unless exec replaced it. */
bool ha_types_finish(struct ha_type_state *ts, bool exec,
		     struct ha_types_result *out);
void ha_types_end(struct ha_type_state *ts);

#endif /* HALLOC_ANALYZER_TYPES_H */
