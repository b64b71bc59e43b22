/*
 * analyzer/log_reader.c - reads a log file into the model: the file header,
 * then frames until the end of the file (format: include/halloc/log.h).
 *
 * What can go wrong, and what it means:
 *  - no magic / another version: not a log we read, nothing to report;
 *  - the file ends inside a frame, or has no END frame: recording was cut
 *    short; everything whole is kept and the log is "incomplete";
 *  - a frame or record that does not decode: "corrupt"; reading stops
 *    there, what came before is kept (the log is also incomplete).
 * Frames of unknown types are skipped: newer writers may add some.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "analyzer/chunk_fast.h"
#include "analyzer/decode.h"
#include "analyzer/log_source.h"
#include "analyzer/model.h"
#include "analyzer/pages.h"
#include "analyzer/sample.h"
#include "halloc/log.h"

/* No frame we know is larger: SYMBOLS frames are split well below it. */
#define FRAME_PAYLOAD_LIMIT (64u << 20)

enum ha_result ha_diag_set(struct ha_diag *diag, enum ha_result result,
			   const char *fmt, ...)
{
	va_list ap;

	if (diag) {
		va_start(ap, fmt);
		vsnprintf(diag->message, sizeof(diag->message), fmt, ap);
		va_end(ap);
	}
	return result;
}

struct reader {
	struct ha_source src; /* the file's bytes, decompressed if need be */
	const char *name;
	struct ha_log *log;
	struct ha_diag *diag;
	uint64_t offset; /* file offset of the next byte */
	unsigned char *buf;
	size_t buf_cap;
};

/* Reads up to n bytes; returns how many (short only at end of file). */
static size_t read_bytes(struct reader *r, void *dst, size_t n)
{
	size_t got = ha_source_read(&r->src, dst, n);

	r->offset += got;
	return got;
}

static enum ha_result io_error(struct reader *r)
{
	return ha_diag_set(r->diag, HA_ERR_IO, "cannot read '%s': %s", r->name,
			   strerror(errno ? errno : EIO));
}

static enum ha_result corrupt(struct reader *r, uint64_t at, const char *why)
{
	struct ha_log *log = r->log;

	log->corrupt = true;
	snprintf(log->corrupt_reason, sizeof(log->corrupt_reason),
		 "corrupt data at byte %llu (%s)", (unsigned long long)at, why);
	return ha_diag_set(
	    r->diag, HA_ERR_CORRUPT,
	    "'%s' is corrupt at byte %llu: %s; reporting what came before",
	    r->name, (unsigned long long)at, why);
}

static enum ha_result read_header(struct reader *r)
{
	unsigned char h[16];
	size_t got = read_bytes(r, h, sizeof(h));
	uint32_t version;

	if (r->src.io_error)
		return io_error(r);
	if (got < HALLOC_LOG_MAGIC_LEN ||
	    memcmp(h, HALLOC_LOG_MAGIC, HALLOC_LOG_MAGIC_LEN) != 0)
		return ha_diag_set(r->diag, HA_ERR_NOT_LOG,
				   "'%s' is not a halloc log", r->name);
	if (got < sizeof(h))
		return ha_diag_set(
		    r->diag, HA_ERR_NOT_LOG,
		    "'%s' is not a halloc log: its header is cut short",
		    r->name);
	version = ha_le32(h + 8);
	if (version != HALLOC_LOG_VERSION)
		return ha_diag_set(
		    r->diag, HA_ERR_VERSION,
		    "'%s' has log version '%u'; this halloc reads version %u",
		    r->name, version, HALLOC_LOG_VERSION);
	r->log->valid_end = r->offset;
	return HA_OK;
}

/* Interns argc strings into a fresh array. */
static bool read_argv(struct ha_log *log, struct ha_cursor *c,
		      const char ***argv, uint32_t *argc)
{
	uint32_t n;
	const char **v;

	if (!ha_get_count(c, 1, &n))
		return false;
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return false;
	for (uint32_t i = 0; i < n; i++) {
		const char *s;
		size_t len;

		if (!ha_get_str(c, &s, &len) ||
		    !(v[i] = ha_intern(&log->strings, s, len))) {
			free(v);
			return false;
		}
	}
	*argv = v;
	*argc = n;
	return true;
}

static bool read_trace_info(struct ha_log *log, struct ha_cursor *c)
{
	uint32_t pid;

	if (log->has_trace_info) /* the first one holds */
		return true;
	if (!ha_get_uv(c, &log->recorder) || !ha_get_uv(c, &log->trace_flags) ||
	    !ha_get_uv(c, &log->depth) || !ha_get_uv(c, &log->start_time) ||
	    !ha_get_u32(c, &pid) || !read_argv(log, c, &log->argv, &log->argc))
		return false;
	/* Optional, after argv: absent in logs of every event. */
	if (c->p < c->end && (!ha_get_uv(c, &log->sample_interval) ||
			      log->sample_interval > HA_SAMPLE_INTERVAL_MAX))
		return false;
	log->pid = pid;
	log->has_trace_info = true;
	return true;
}

static bool read_process_exit(struct ha_log *log, struct ha_cursor *c)
{
	struct ha_exit e;

	if (!ha_get_u32(c, &e.pid) || !ha_get_u32(c, &e.how) ||
	    !ha_get_uv(c, &e.value) || !ha_get_uv(c, &e.flags))
		return false;
	if (!HA_RESERVE(log->exits, log->exits_cap, log->nexits + 1))
		return false;
	log->exits[log->nexits++] = e;
	return true;
}

static bool read_end(struct ha_log *log, struct ha_cursor *c)
{
	if (!ha_get_uv(c, &log->end_flags) || !ha_get_uv(c, &log->chunks_lost))
		return false;
	/* The eBPF recorder's two more counts; absent from others' logs. */
	if (c->p < c->end && (!ha_get_uv(c, &log->events_lost) ||
			      !ha_get_uv(c, &log->stacks_truncated)))
		return false;
	log->has_end = true;
	return true;
}

/* Decodes one whole frame of a known type; its payload is in r->buf,
 * followed by HA_SLACK zero bytes (decode.h). */
static enum ha_result dispatch(struct reader *r, uint64_t frame_at,
			       unsigned type, unsigned flags, size_t len)
{
	struct ha_cursor c = {r->buf, r->buf + len};
	uint64_t payload_at = frame_at + HALLOC_FRAME_HEADER_SIZE;
	enum ha_result res = HA_OK;
	const char *why = NULL;
	size_t bad = 0;

	switch (type) {
	case HALLOC_FRAME_TRACE_INFO:
		if (!read_trace_info(r->log, &c))
			return corrupt(r, frame_at, "bad trace info frame");
		return HA_OK;
	case HALLOC_FRAME_PROCESS_EXIT:
		if (!read_process_exit(r->log, &c))
			return corrupt(r, frame_at, "bad process exit frame");
		return HA_OK;
	case HALLOC_FRAME_END:
		if (!read_end(r->log, &c))
			return corrupt(r, frame_at, "bad end frame");
		return HA_OK;
	case HALLOC_FRAME_CHUNK:
		r->log->payload_at = payload_at;
		/* Marked as holding only events, the chunk is most likely
		 * one the fast reading takes whole. */
		if (r->log->skip_events && (flags & HALLOC_FRAME_EVENTS_ONLY) &&
		    ha_chunk_fast_index(r->log, r->buf, len))
			break;
		res = ha_chunk_read(r->log, r->buf, len, &bad, &why);
		break;
	case HALLOC_FRAME_SYMBOLS:
		res = ha_symbols_read(r->log, r->buf, len, &bad, &why);
		break;
	case HALLOC_FRAME_RSS: /* pages.c */
		if ((res = ha_rss_read(r->log, r->buf, len)) == HA_ERR_CORRUPT)
			return corrupt(r, frame_at, "bad rss frame");
		break;
	}
	if (res == HA_ERR_CORRUPT)
		return corrupt(r, payload_at + bad, why);
	if (res == HA_ERR_NOMEM)
		return ha_diag_set(r->diag, HA_ERR_NOMEM,
				   "out of memory reading '%s'", r->name);
	return res;
}

/* Compressed data that zstd cannot decode: as corrupt as a bad frame. */
static enum ha_result bad_compression(struct reader *r)
{
	return corrupt(r, r->offset, r->src.zstd_error ? r->src.zstd_error
							: "bad compressed data");
}

/* The input ended inside a frame: cut short, or its compression broke. */
static enum ha_result input_ended(struct reader *r)
{
	if (r->src.io_error)
		return io_error(r);
	if (r->src.corrupt)
		return bad_compression(r);
	r->log->truncated = true;
	return HA_OK;
}

/* Skips a frame we do not decode without holding it in memory. */
static bool skip_payload(struct reader *r, uint64_t len)
{
	unsigned char tmp[4096];

	while (len > 0) {
		size_t want = len < sizeof(tmp) ? (size_t)len : sizeof(tmp);
		size_t got = read_bytes(r, tmp, want);

		if (got < want)
			return false;
		len -= got;
	}
	return true;
}

static enum ha_result read_frames(struct reader *r)
{
	for (;;) {
		unsigned char h[HALLOC_FRAME_HEADER_SIZE];
		uint64_t frame_at = r->offset;
		size_t got = read_bytes(r, h, sizeof(h));
		uint32_t len;
		unsigned type;

		if (got < sizeof(h)) {
			if (r->src.io_error)
				return io_error(r);
			if (r->src.corrupt)
				return bad_compression(r);
			/* Ends inside a frame, or inside a zstd frame. */
			if (got > 0 || r->src.in_frame)
				r->log->truncated = true;
			return HA_OK;
		}
		len = ha_le32(h);
		type = (unsigned)h[4] | (unsigned)h[5] << 8;
		if (type == HALLOC_FRAME_CHUNK &&
		    len > HALLOC_FRAME_MAX - HALLOC_FRAME_HEADER_SIZE)
			return corrupt(
			    r, frame_at,
			    "chunk frame longer than the agent writes");
		/* A newer writer's frame type: skip it, unread. */
		if (type < HALLOC_FRAME_TRACE_INFO || type > HALLOC_FRAME_RSS) {
			if (!skip_payload(r, len))
				return input_ended(r);
			r->log->valid_end = r->offset;
			continue;
		}
		if (len > FRAME_PAYLOAD_LIMIT)
			return corrupt(r, frame_at,
				       "frame length out of range");
		if (len + HA_SLACK > r->buf_cap) {
			unsigned char *b = realloc(r->buf, len + HA_SLACK);

			if (!b)
				return ha_diag_set(r->diag, HA_ERR_NOMEM,
						   "out of memory reading '%s'",
						   r->name);
			r->buf = b;
			r->buf_cap = len + HA_SLACK;
		}
		if (read_bytes(r, r->buf, len) < len)
			return input_ended(r);
		memset(r->buf + len, 0, HA_SLACK);
		{
			enum ha_result res =
			    dispatch(r, frame_at, type, h[6] | h[7] << 8, len);

			if (res != HA_OK)
				return res;
		}
		r->log->valid_end = r->offset;
	}
}

enum ha_result ha_log_read(FILE *f, const char *name, bool skip_events,
			   struct ha_log **out, struct ha_diag *diag)
{
	struct reader r = {.name = name, .diag = diag};
	enum ha_result res;

	*out = NULL;
	if (diag)
		diag->message[0] = '\0';
	r.log = ha_log_new();
	if (!r.log)
		return ha_diag_set(diag, HA_ERR_NOMEM,
				   "out of memory reading '%s'", name);
	r.log->skip_events = skip_events;
	errno = 0;
	if (!ha_source_open(&r.src, f))
		res = ha_diag_set(diag, HA_ERR_NOMEM,
				  "out of memory reading '%s'", name);
	else
		res = read_header(&r);
	if (res == HA_OK)
		res = read_frames(&r);
	r.log->compressed = r.src.compressed;
	if (r.src.nomem && res == HA_OK)
		res = ha_diag_set(diag, HA_ERR_NOMEM,
				  "out of memory reading '%s'", name);
	r.log->zframes = r.src.frames;
	r.log->nzframes = r.src.nframes;
	r.src.frames = NULL;
	ha_source_close(&r.src);
	free(r.buf);
	if (res != HA_OK && res != HA_ERR_CORRUPT) {
		ha_log_free(r.log);
		return res;
	}
	*out = r.log;
	return res;
}
