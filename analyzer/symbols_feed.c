/*
 * analyzer/symbols_feed.c - the symbols of a recording, fed to the
 * analyzer frame by frame as the tracer records it (analyzer.h), so that
 * the end of a run neither reads the log again nor waits for libdw to
 * open every module file.
 *
 * Only frames that may define something are fed: a CHUNK with
 * HALLOC_FRAME_EVENTS_ONLY holds no PROCESS, MODULE or STACK record, and
 * everything symbols need (the model of modules and stacks) comes from
 * the others. The model is the one ha_append_symbols reads from the file,
 * so the SYMBOLS frames hold the same entries.
 *
 * Two threads: the feeding one only queues bytes (a mutex held for a
 * copy); ha_symbols_feed_work, on another thread, decodes what was queued
 * and warms the module files the stacks seen so far lie in. The model and
 * the module cache belong to whichever thread calls work or append, one
 * at a time: append only after the last work returned.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyzer/decode.h"
#include "analyzer/log_source.h"
#include "analyzer/model.h"
#include "analyzer/symbolize.h"
#include "halloc/log.h"

/* Past this many bytes fed, the feed lets go of them and append reads the
 * log file instead, as ha_append_symbols does. */
#define FEED_LIMIT (64u << 20)

/* What was looked up in a stream. */
struct stream_index {
	size_t nsegments; /* the stream's, when they were last indexed */
	struct ha_map seen; /* address -> 0: looked up already */
};

struct ha_symbols_feed {
	pthread_mutex_t lock;
	unsigned char *queue; /* frames fed, not decoded yet */
	size_t queued, queue_cap;
	uint64_t fed;
	bool over; /* fed past FEED_LIMIT, or out of memory: read the file */

	/* Owned by the thread in work or append. */
	struct ha_log *log;
	bool corrupt; /* a chunk did not decode: later ones are not read */
	const char *why;
	uint64_t corrupt_at;
	uint64_t offset;       /* of the next frame, in the bytes fed */
	size_t stacks_checked; /* stacks before this are all defined+seen */
	bool *checked;	       /* by stack */
	size_t checked_cap;
	struct stream_index *index; /* by stream */
	size_t index_cap;
	struct ha_module_cache cache;
};

struct ha_symbols_feed *ha_symbols_feed_new(void)
{
	struct ha_symbols_feed *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->log = ha_log_new();
	if (!f->log || pthread_mutex_init(&f->lock, NULL) != 0) {
		ha_log_free(f->log);
		free(f);
		return NULL;
	}
	/* Events are not wanted; each chunk with some is only noted. */
	f->log->skip_events = true;
	f->log->compressed = false;
	return f;
}

void ha_symbols_feed_free(struct ha_symbols_feed *f)
{
	if (!f)
		return;
	pthread_mutex_destroy(&f->lock);
	free(f->queue);
	for (size_t i = 0; i < f->index_cap; i++)
		ha_map_free(&f->index[i].seen);
	free(f->index);
	free(f->checked);
	ha_module_cache_free(&f->cache);
	ha_log_free(f->log);
	free(f);
}

void ha_symbols_feed_frame(struct ha_symbols_feed *f, const void *frame,
			   size_t size)
{
	pthread_mutex_lock(&f->lock);
	if (!f->over) {
		f->fed += size;
		if (f->fed > FEED_LIMIT ||
		    !HA_RESERVE(f->queue, f->queue_cap, f->queued + size)) {
			f->over = true;
			free(f->queue);
			f->queue = NULL;
			f->queued = f->queue_cap = 0;
		} else {
			memcpy(f->queue + f->queued, frame, size);
			f->queued += size;
		}
	}
	pthread_mutex_unlock(&f->lock);
}

/* Decodes whole frames of `p`; a partial one at the end is not fed. */
static enum ha_result decode(struct ha_symbols_feed *f, const unsigned char *p,
			     size_t len)
{
	while (!f->corrupt && len >= HALLOC_FRAME_HEADER_SIZE) {
		uint32_t size = ha_le32(p);
		unsigned type = (unsigned)p[4] | (unsigned)p[5] << 8;
		size_t bad = 0;
		enum ha_result res = HA_OK;

		if (size > len - HALLOC_FRAME_HEADER_SIZE)
			break;
		if (type == HALLOC_FRAME_CHUNK) {
			f->log->payload_at =
			    f->offset + HALLOC_FRAME_HEADER_SIZE;
			res =
			    ha_chunk_read(f->log, p + HALLOC_FRAME_HEADER_SIZE,
					  size, &bad, &f->why);
		}
		if (res == HA_ERR_NOMEM)
			return res;
		if (res == HA_ERR_CORRUPT) {
			/* As a reader of the file does: what came before. */
			f->corrupt = true;
			f->corrupt_at =
			    f->offset + HALLOC_FRAME_HEADER_SIZE + bad;
		}
		f->offset += HALLOC_FRAME_HEADER_SIZE + size;
		p += HALLOC_FRAME_HEADER_SIZE + size;
		len -= HALLOC_FRAME_HEADER_SIZE + size;
	}
	return HA_OK;
}

/* Takes what was queued; false when the feed is over its limit. */
static bool take_queue(struct ha_symbols_feed *f, unsigned char **p,
		       size_t *len)
{
	bool over;

	pthread_mutex_lock(&f->lock);
	over = f->over;
	*p = f->queue;
	*len = f->queued;
	f->queue = NULL;
	f->queued = f->queue_cap = 0;
	pthread_mutex_unlock(&f->lock);
	return !over;
}

/* The stream, its segments indexed for lookups (modules.c) as far as they
 * were read: this log is the feed's own, sorting them in place is fine. */
static struct stream_index *stream_index(struct ha_symbols_feed *f,
					 uint32_t stream)
{
	struct ha_stream *s = &f->log->streams[stream];
	struct stream_index *x;

	if (stream >= f->index_cap) {
		size_t cap = f->index_cap;

		if (!HA_RESERVE(f->index, cap, f->log->nstreams))
			return NULL;
		memset(f->index + f->index_cap, 0,
		       (cap - f->index_cap) * sizeof(*f->index));
		f->index_cap = cap;
	}
	x = &f->index[stream];
	if (x->nsegments != s->nsegments) {
		ha_segments_index(s);
		x->nsegments = s->nsegments;
	}
	return x;
}

/* Symbolizes return address addr in every module file with a segment
 * that holds it, in any load of the stream (an answer the final pass does
 * not use only costs time). */
static void warm_address(struct ha_symbols_feed *f, uint32_t stream,
			 struct stream_index *x, uint64_t addr)
{
	const struct ha_stream *s = &f->log->streams[stream];

	if (ha_map_get(&x->seen, addr) != HA_NONE ||
	    !ha_map_put(&x->seen, addr, 0))
		return;
	for (size_t i = ha_segments_above(s, addr);
	     i-- > 0 && s->segments[i].max_end > addr;) {
		const struct ha_module *m = &s->modules[s->segments[i].module];

		if (addr >= s->segments[i].end)
			continue;
		/* What the final pass will look up, if this is the module:
		 * from the symbol cache, or from the module file, whose
		 * debug info is read now, while the program runs. */
		ha_module_cache_presymbolize(&f->cache, f->log, m->modfile,
					     (addr ? addr - 1 : 0) - m->bias);
	}
}

static void warm_stacks(struct ha_symbols_feed *f)
{
	struct ha_log *log = f->log;

	if (log->nstacks > f->checked_cap) {
		size_t cap = f->checked_cap;

		if (!HA_RESERVE(f->checked, cap, log->nstacks))
			return;
		memset(f->checked + f->checked_cap, 0,
		       (cap - f->checked_cap) * sizeof(*f->checked));
		f->checked_cap = cap;
	}
	for (size_t i = f->stacks_checked; i < log->nstacks; i++) {
		const struct ha_stack *st = &log->stacks[i];
		struct stream_index *x;

		if (f->checked[i] || !st->defined)
			continue;
		f->checked[i] = true;
		if (!(x = stream_index(f, st->stream)))
			return;
		for (uint32_t k = 0; k < st->nframes; k++) {
			uint64_t addr = log->frame_addrs[st->first + k];

			warm_address(f, st->stream, x, addr);
		}
	}
	while (f->stacks_checked < log->nstacks &&
	       f->checked[f->stacks_checked])
		f->stacks_checked++;
}

bool ha_symbols_feed_work(struct ha_symbols_feed *f)
{
	unsigned char *p;
	size_t len;

	if (!take_queue(f, &p, &len) || !f->log)
		return false;
	if (len > 0 && decode(f, p, len) != HA_OK) {
		free(p);
		pthread_mutex_lock(&f->lock);
		f->over = true;
		pthread_mutex_unlock(&f->lock);
		return false;
	}
	free(p);
	warm_stacks(f);
	return len > 0;
}

enum ha_result ha_symbols_feed_append(struct ha_symbols_feed *f,
				      const char *path, struct ha_diag *diag)
{
	enum ha_result res;
	unsigned char *p;
	size_t len;

	if (!take_queue(f, &p, &len))
		return ha_append_symbols(path, diag);
	res = decode(f, p, len);
	free(p);
	if (res == HA_OK)
		res = ha_log_resolve(f->log);
	if (res == HA_OK)
		res = ha_symbolize_cached(f->log, &f->cache);
	if (res != HA_OK)
		return ha_diag_set(diag, res, "out of memory symbolizing '%s'",
				   path);
	res = ha_symbols_append_file(f->log, path, diag);
	if (res == HA_OK && f->corrupt)
		return ha_diag_set(
		    diag, HA_ERR_CORRUPT,
		    "'%s' is corrupt at byte %llu of its "
		    "definitions: %s; symbolized what came before",
		    path, (unsigned long long)f->corrupt_at,
		    f->why ? f->why : "bad record");
	return res;
}
