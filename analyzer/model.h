/*
 * analyzer/model.h - the in-memory model of a log, shared by the analyzer's
 * files. Internal: the CLI uses analyzer.h only.
 *
 * Reading fills the model (log_reader.c, chunk_reader.c); then
 * ha_log_resolve() maps every stack frame to a location (module file +
 * offset, modules.c), symbolization fills the locations (symbols from the
 * log's SYMBOLS frames, symbolize.c from the binaries), sites.c gives every
 * stack its allocation site, and replay.c turns each stream's events into
 * one process's numbers.
 *
 * Invariants:
 *  - Strings reachable from the model are interned in `strings` (compare
 *    them by pointer) and live as long as the log; an empty one may also
 *    be a literal "", so emptiness is tested with *s, not by pointer.
 *  - Stacks, module files, locations and sites are global to the log and
 *    named by index; a stack belongs to one stream, but a forked child's
 *    inherited blocks keep pointing at its parent's stacks.
 *  - Index 0 of `modfiles` is the pseudo-module of addresses that no
 *    recorded module covers; its locations hold absolute addresses.
 */
#ifndef HALLOC_ANALYZER_MODEL_H
#define HALLOC_ANALYZER_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "analyzer/analyzer.h"
#include "analyzer/hashmap.h"

struct ha_types;

/* Makes room for `need` elements in a growable array; false on no memory. */
#define HA_RESERVE(arr, cap, need)                                             \
	({                                                                     \
		bool ok_ = true;                                               \
		if ((size_t)(need) > (cap)) {                                  \
			void *p_ = ha_grow_array((arr), &(cap), (need),        \
						 sizeof(*(arr)));              \
			if (p_)                                                \
				(arr) = p_;                                    \
			else                                                   \
				ok_ = false;                                   \
		}                                                              \
		ok_;                                                           \
	})

void *ha_grow_array(void *arr, size_t *cap, size_t need, size_t elem);

/* ---- strings ------------------------------------------------------------ */

struct ha_strpool {
	struct ha_map index; /* hash -> first string with that hash */
	const char **strs;   /* interned strings */
	uint32_t *next;	     /* next string with the same hash */
	size_t n, cap;
	char **blocks; /* storage */
	size_t nblocks, blocks_cap;
	char *cursor; /* free space in the current block */
	size_t block_left;
};

/* The interned copy of s[0..len), NUL-terminated; NULL on no memory. */
const char *ha_intern(struct ha_strpool *pool, const char *s, size_t len);
const char *ha_intern_str(struct ha_strpool *pool, const char *s);
void ha_strpool_free(struct ha_strpool *pool);

/* ---- events ------------------------------------------------------------ */

struct ha_page_event; /* analyzer/pages.h */
struct ha_rss_sample;

enum ha_event_kind {
	HA_EV_ALLOC = 1, /* a block appears: malloc & co, realloc's new block */
	HA_EV_FREE = 2,	 /* a block goes: free, realloc's old block */
	HA_EV_FAILED = 3, /* an allocation returned NULL */
};

/* 32 bytes: a log can hold hundreds of millions of these. */
struct ha_event {
	uint64_t seq;
	uint64_t addr;
	uint64_t size;
	uint32_t stack; /* global stack index, HA_NONE for frees */
	uint8_t kind;	/* enum ha_event_kind */
	uint8_t fn;	/* enum halloc_alloc_fn or halloc_free_fn */
	uint16_t reserved;
	uint64_t time;  /* microseconds since the stream's start */
};

/* An allocation refused before the allocator (HALLOC_REC_REFUSED): not an
 * event, never counted; refusals.c reports them. */
struct ha_refusal {
	uint64_t seq;
	uint64_t time; /* microseconds since the stream's start */
	uint64_t size;
	uint32_t stack;	 /* global stack index */
	uint8_t fn;	 /* enum halloc_alloc_fn */
	uint8_t reason;	 /* enum halloc_refusal */
};

/*
 * Where a chunk's events are, for the replay to read them again instead of
 * holding every event (event_merge.c). `at` is the offset of the chunk's
 * payload in the log's (decompressed) bytes, `len` how much of it decodes.
 */
struct ha_chunk_ref {
	uint64_t at;
	uint64_t first_seq, last_seq; /* of its events */
	uint32_t len;
	uint32_t stream, slot, chunk_no;
	bool sorted; /* its events come in increasing seq order */
	bool events_only; /* plain events only: chunk_fast.c reads it */
};

/* A zstd frame of a compressed log: where it starts, compressed and not. */
struct ha_zframe {
	uint64_t file_at, raw_at;
	/* The frame's decompressed bytes as the first reading saw them,
	 * followed by HA_SLACK zero bytes, kept for the replay within
	 * HA_KEEP_BUDGET (log_source.h), in ha_log.kept; NULL when not. */
	unsigned char *plain;
};

/* ---- modules and locations -------------------------------------------- */

/* One MODULE_LOAD of one stream: valid in [load_seq, unload_seq). */
struct ha_module {
	uint64_t id;
	uint64_t load_seq, unload_seq;
	uint64_t bias;
	uint32_t modfile;
};

/* A PT_LOAD range of a module, for address lookup (see modules.c). */
struct ha_segment {
	uint64_t start, end; /* [start, end) */
	uint64_t max_end;    /* largest `end` of this and earlier segments */
	uint32_t module;     /* index into the stream's modules */
};

struct ha_unload {
	uint64_t id, seq;
};

/* A module file: what symbols are keyed by. */
struct ha_modfile {
	const char *path;      /* interned; "" for the pseudo-module 0 */
	const char *build_id;  /* interned lowercase hex; "" if unknown */
	uint32_t next;	       /* next modfile with the same key hash */
	bool agent;	       /* libhalloc.so: never shown */
	bool runtime;	       /* libc, libstdc++, ...: never a site */
	struct ha_map offsets; /* offset -> location */
};

enum ha_loc_state {
	HA_LOC_PENDING = 0, /* not symbolized yet */
	HA_LOC_FROM_LOG,    /* from a SYMBOLS frame */
	HA_LOC_FROM_FILE,   /* from the binary on disk */
	HA_LOC_UNKNOWN,	    /* tried, nothing known */
};

/* A distinct code address: module file + offset of the looked-up byte. */
struct ha_loc {
	uint64_t offset; /* return address - 1 - bias (absolute in module 0) */
	uint32_t modfile;
	/* ha_log.syms[first_sym, +nsyms): its frames, innermost first */
	uint32_t first_sym;
	uint32_t nsyms;
	uint8_t state; /* enum ha_loc_state */
};

struct ha_sym {
	const char *function; /* interned, "" when unknown */
	const char *file;     /* interned, "" when unknown */
	uint32_t line, column;
};

/* ---- stacks and sites --------------------------------------------------- */

struct ha_stack {
	uint64_t seq; /* when recorded: selects the modules it refers to */
	uint32_t stream;
	uint32_t nframes;
	size_t first;  /* into ha_log.frame_addrs and ha_log.frame_locs */
	uint32_t site; /* set by ha_sites_assign */
	bool defined;  /* its STACK record was read */
};

/* Where blocks come from: (function, file, line) in a module file; `loc`
 * tells unknown places apart (HA_NONE once the function or file is
 * known). */
struct ha_site {
	const char *function, *file;
	uint32_t line;
	uint32_t modfile;
	uint32_t loc;
	uint32_t next; /* next site with the same key hash */
};

/* ---- streams (process images) ---------------------------------------------
 */

struct ha_exit {
	uint32_t pid;
	uint32_t how; /* enum halloc_exit_how */
	uint64_t value;
	uint64_t flags; /* bit 0: core dumped */
};

struct ha_stream {
	uint64_t id;
	uint32_t pid, ppid;
	uint64_t parent_stream, parent_seq;
	uint64_t flags; /* PROCESS flags: bit 0 started by exec */
	uint64_t start_time;
	bool has_process;  /* a PROCESS record was read */
	bool synthetic;	   /* no events: made up for a PROCESS_EXIT */
	const char *exe;   /* interned, "" if unknown */
	const char **argv; /* interned strings */
	uint32_t argc;
	uint32_t appearance; /* order of first appearance in the log */

	struct ha_event *events;
	size_t nevents, events_cap;
	struct ha_refusal *refusals; /* in file order */
	size_t nrefusals, refusals_cap;
	uint64_t last_time; /* the latest event time (us) */
	struct ha_module *modules;
	size_t nmodules, modules_cap;
	struct ha_segment *segments;
	size_t nsegments, segments_cap;
	struct ha_unload *unloads;
	size_t nunloads, unloads_cap;
	struct ha_map stack_ids; /* stack id -> global stack index */
	struct ha_page_event *page_events; /* PAGES records (pages.h) */
	size_t npage_events, page_events_cap;

	/* How the image ended (set by ha_log_resolve). */
	enum ha_end_how end;
	uint64_t end_value;
	bool core_dumped;
};

/* ---- the log ----------------------------------------------------------------
 */

struct ha_log {
	struct ha_strpool strings;

	/* TRACE_INFO */
	bool has_trace_info;
	uint64_t recorder, trace_flags, depth, start_time;
	uint64_t sample_interval; /* bytes; 0: every event was recorded */
	uint32_t pid;
	const char **argv;
	uint32_t argc;

	struct ha_stream *streams;
	size_t nstreams, streams_cap;
	struct ha_map stream_ids; /* stream id -> index */

	struct ha_exit *exits;
	size_t nexits, exits_cap;

	struct ha_rss_sample *rss; /* RSS frames (pages.h), file order */
	size_t nrss, rss_cap;

	struct ha_stack *stacks;
	size_t nstacks, stacks_cap;
	uint64_t *frame_addrs; /* return addresses, per stack contiguous */
	uint32_t *frame_locs;  /* location of each, set by ha_log_resolve */
	size_t nframes, frames_cap, frame_locs_cap;

	struct ha_modfile *modfiles;
	size_t nmodfiles, modfiles_cap;
	struct ha_map modfile_index; /* key hash -> first modfile */

	struct ha_loc *locs;
	size_t nlocs, locs_cap;
	struct ha_sym *syms;
	size_t nsyms, syms_cap;

	struct ha_site *sites;
	size_t nsites, sites_cap;
	struct ha_map site_index; /* key hash -> first site */

	struct ha_types *types; /* types.c: typed sites; NULL: none read */

	/* Set before reading: keep stacks, modules and processes but not the
	 * events, only where each chunk's are (`chunks`); the replay reads
	 * them again from the file. Memory then grows with the chunks, a
	 * 4000th of the events' bytes. */
	bool skip_events;
	/* Set while the replay runs: reading a chunk again finds its stacks
	 * and stream, never adds one, so a thread can read chunks ahead
	 * (read_ahead.h) while the replay reads the model. */
	bool frozen;
	struct ha_chunk_ref *chunks;
	size_t nchunks, chunks_cap;
	struct ha_zframe *zframes; /* compressed logs: every zstd frame */
	size_t nzframes, zframes_cap;
	void *kept; /* the mapping zframes[].plain point into, or NULL */
	size_t kept_size;
	uint64_t payload_at; /* while reading: the current frame's payload */
	bool compressed; /* the file is zstd (analyzer/log_source.h) */

	/* How reading went. */
	bool has_end;
	uint64_t end_flags, chunks_lost;
	uint64_t events_lost, stacks_truncated; /* eBPF recorder's END only */
	bool truncated;				/* a partial last frame */
	bool corrupt;
	uint64_t valid_end; /* file offset after the last whole frame read */
	char corrupt_reason[200];
};

/* model.c */
struct ha_log *ha_log_new(void);
void ha_log_free(struct ha_log *log);
/* The stream with this id, created (in appearance order) if new and the
 * log is not frozen; NULL when not. */
struct ha_stream *ha_log_stream(struct ha_log *log, uint64_t id, uint32_t pid);
/* The global index of a stream's stack id, created undefined if new and
 * the log is not frozen; HA_NONE when not. */
uint32_t ha_log_stack_ref(struct ha_log *log, struct ha_stream *stream,
			  uint64_t id);
/* The module file (path, build-id), created if new; HA_NONE on no memory. */
uint32_t ha_log_modfile(struct ha_log *log, const char *path,
			const char *build_id);
/* The location (modfile, offset), created pending if new and `create`. */
uint32_t ha_log_loc(struct ha_log *log, uint32_t modfile, uint64_t offset,
		    bool create);
/* Appends symbolized frames to a location; false on no memory. */
bool ha_log_set_syms(struct ha_log *log, uint32_t loc,
		     const struct ha_sym *syms, uint32_t nsyms,
		     enum ha_loc_state state);
/* Hex of raw build-id bytes, interned. */
const char *ha_log_build_id_hex(struct ha_log *log, const unsigned char *id,
				size_t len);
const char *ha_basename(const char *path);

/* log_reader.c: reads a whole log from `f`; `name` is for messages.
 * `skip_events`: see ha_log.skip_events. */
enum ha_result ha_log_read(FILE *f, const char *name, bool skip_events,
			   struct ha_log **out, struct ha_diag *diag);
/* The same, keeping at most keep_budget bytes of decompressed zstd frames
 * for the replay (ha_log_read: HA_KEEP_BUDGET, analyzer/log_source.h). */
enum ha_result ha_log_read_keeping(FILE *f, const char *name,
				   bool skip_events, size_t keep_budget,
				   struct ha_log **out, struct ha_diag *diag);
/* Sets diag to a printf-style message; returns `result`. */
enum ha_result ha_diag_set(struct ha_diag *diag, enum ha_result result,
			   const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* chunk_reader.c: decodes one CHUNK payload. On a bad record, returns
 * HA_ERR_CORRUPT with *bad at the record's offset in the payload and *why
 * saying what was wrong; the records before it are kept. */
enum ha_result ha_chunk_read(struct ha_log *log, const unsigned char *p,
			     size_t len, size_t *bad, const char **why);
/* The replay's second reading of a chunk (ha_chunk_ref): only its events,
 * into *events (grown as needed); the model is not touched. */
enum ha_result ha_chunk_events(struct ha_log *log, const unsigned char *p,
			       size_t len, struct ha_event **events,
			       size_t *n, size_t *cap);

/* symbols_frame.c: decodes one SYMBOLS payload (same contract). */
enum ha_result ha_symbols_read(struct ha_log *log, const unsigned char *p,
			       size_t len, size_t *bad, const char **why);
/* Appends SYMBOLS frames for every location symbolized from files. */
enum ha_result ha_symbols_write(struct ha_log *log, int fd);

/* modules.c: after reading: matches unloads, sorts segments, and maps
 * every stack frame to a location. */
enum ha_result ha_log_resolve(struct ha_log *log);
/* Sorts a stream's segments by start, with the running maximum of ends
 * (again after more were read). A lookup walks back from
 * ha_segments_above(s, addr), the number of segments starting at or below
 * addr, and stops at the first whose max_end does not pass addr. */
void ha_segments_index(struct ha_stream *s);
size_t ha_segments_above(const struct ha_stream *s, uint64_t addr);

/* symbolize.c: fills every pending location from the binaries on disk. */
enum ha_result ha_symbolize_from_files(struct ha_log *log);

/* sites.c */
enum ha_result ha_sites_assign(struct ha_log *log);

/* One frame of a stack as shown in a report (inlined frames expanded). */
struct ha_frame {
	const char *function, *file, *module;
	uint32_t line;
	uint64_t address; /* the recorded return address */
	/* the address looked up in the module's ELF: A - 1 - bias */
	uint64_t offset;
};

/* The stack's frames, innermost first, agent frames removed; *out is
 * malloc'ed (NULL with 0 frames). Returns the count, or -1 on no memory. */
long ha_stack_frames(const struct ha_log *log, uint32_t stack,
		     struct ha_frame **out);

#endif /* HALLOC_ANALYZER_MODEL_H */
