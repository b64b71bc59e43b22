/*
 * analyzer/pages.h - page items and resident memory: what the log's PAGES
 * records and RSS frames (include/halloc/log.h) become. Internal to the
 * analyzer.
 *
 *   chunk_reader.c  PAGES records   -> ha_page_read_record -> stream events
 *   log_reader.c    RSS frames      -> ha_rss_read         -> log samples
 *   analysis.c      ha_pages_analyze (apart from the heap's replay)
 *                   after replay    -> ha_rss_analyze (needs the timeline)
 *   report_pages.c  the "Page items" section, peak RSS, RSS over time
 *
 * A page item is a heap block the allocator served by mmap (PAGES HEAP and
 * HEAP_FREE records), or a mapping the program made itself (MMAP, MUNMAP,
 * MREMAP). The records say all: no heap event is needed. Per site: how many, bytes and pages mapped over the run, the
 * most mapped at once, and what was still mapped at the end.
 */
#ifndef HALLOC_ANALYZER_PAGES_H
#define HALLOC_ANALYZER_PAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "analyzer/analyzer.h"
#include "analyzer/decode.h"

struct ha_log;
struct ha_stream;
struct ha_process;

/* What a stream's page records say, one event per change. */
enum ha_page_op {
	HA_PAGE_MAP = 1,   /* [addr, +len) mapped, stack */
	HA_PAGE_UNMAP,	   /* [addr, +len) ends */
	HA_PAGE_MOVE_FROM, /* mremap: [addr, +len) ends; its stack goes to
			      the MOVE_TO at seq `other` */
	HA_PAGE_MOVE_TO,   /* mremap: [addr, +len) mapped; `other` is the old
			      length */
	HA_PAGE_HEAP,	   /* a heap block by mmap at addr: len bytes asked
			      for, `other` bytes mapped, stack */
	HA_PAGE_HEAP_FREE, /* the heap block at addr ends */
};

struct ha_page_event {
	uint64_t seq, time, addr, len, other;
	uint32_t stack;
	uint8_t op; /* enum ha_page_op */
};

struct ha_rss_sample {
	uint32_t pid;
	uint64_t time_ns; /* CLOCK_REALTIME */
	uint64_t rss, hwm; /* hwm 0: unknown */
};

enum ha_page_kind {
	HA_PAGE_KIND_HEAP = 1, /* a heap block the allocator served by mmap */
	HA_PAGE_KIND_MMAP = 2, /* the program's own anonymous mapping */
};

struct ha_page_site {
	uint32_t site, stack; /* stack: the first one seen */
	uint8_t kind;	      /* enum ha_page_kind */
	uint64_t count;	      /* mappings (mmap calls) or blocks made */
	uint64_t bytes, pages; /* over the run (mremap growth included) */
	uint64_t live, peak;   /* bytes mapped now / at most */
	uint64_t end_bytes, end_pages, end_items; /* still mapped at the end */
};

/* One process's page items and resident memory. */
struct ha_page_report {
	bool recorded; /* the log has page records for this stream */
	struct ha_page_site *sites; /* most bytes first */
	size_t nsites;
	uint64_t peak_bytes, peak_time_us; /* all page items at once */
	uint64_t end_bytes, end_items;

	size_t rss_samples;    /* samples of this process image */
	uint64_t peak_rss;     /* the most resident memory seen (VmHWM too) */
	uint64_t *rss;	       /* per timeline point; HA_RSS_NONE: no sample
				  yet */
};

#define HA_RSS_NONE UINT64_MAX

/* Decodes one PAGES record at the cursor (after its seq); *time and *addr
 * are the chunk's previous values. HA_ERR_CORRUPT with *why, or NOMEM.
 * log NULL: only steps over it (a chunk read again changes nothing). */
enum ha_result ha_page_read_record(struct ha_log *log, struct ha_stream *s,
				   struct ha_cursor *c, unsigned op,
				   uint64_t seq, uint64_t *time,
				   uint64_t *addr, const char **why);

/* Decodes one RSS frame's payload. */
enum ha_result ha_rss_read(struct ha_log *log, const unsigned char *p,
			   size_t len);

/* procs[i] is stream i's: fills procs[i].pages' page items. */
enum ha_result ha_pages_analyze(struct ha_log *log, struct ha_process *procs);
/* After the replay: peak RSS and RSS per timeline point. */
enum ha_result ha_rss_analyze(const struct ha_log *log,
			      struct ha_process *procs);

void ha_pages_free(struct ha_page_report *r);

#endif /* HALLOC_ANALYZER_PAGES_H */
