/*
 * analyzer/log_source.c - reading a log's bytes through zstd when the file
 * is compressed, as they are when it is not. See log_source.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>

#include "analyzer/decode.h"
#include "analyzer/log_source.h"

/* Appended frames are small and rare: a fast level is enough. */
#define APPEND_LEVEL 3

bool ha_source_open(struct ha_source *src, FILE *f, size_t keep_budget)
{
	unsigned char magic[HA_ZSTD_MAGIC_LEN];
	size_t got;

	memset(src, 0, sizeof(*src));
	src->f = f;
	src->keep_budget = keep_budget;
	got = fread(magic, 1, sizeof(magic), f);
	if (got < sizeof(magic) && ferror(f))
		src->io_error = true;
	src->compressed = got == sizeof(magic) &&
			  memcmp(magic, HA_ZSTD_MAGIC, HA_ZSTD_MAGIC_LEN) == 0;
	if (!src->compressed) {
		/* What was peeked is the start of the log: hand it out first.
		 */
		src->out = malloc(sizeof(magic));
		if (!src->out)
			return false;
		memcpy(src->out, magic, got);
		src->out_len = got;
		src->view = src->out;
		return true;
	}
	src->dctx = ZSTD_createDCtx();
	src->in = malloc(ZSTD_DStreamInSize());
	src->out = malloc(ZSTD_DStreamOutSize());
	if (!src->dctx || !src->in || !src->out)
		return false;
	memcpy(src->in, magic, sizeof(magic));
	src->in_len = sizeof(magic);
	src->frames = malloc(16 * sizeof(*src->frames));
	if (!src->frames)
		return false;
	src->frames_cap = 16;
	src->frames[0] = (struct ha_zframe){0, 0, NULL};
	src->nframes = 1;
	return true;
}

/* While frames are kept: decompress into `keep` after the frames kept so
 * far instead of into src->out. False when the budget (or memory) will not
 * take that much more: nothing more is kept then. */
static bool start_keeping(struct ha_source *src, ZSTD_outBuffer *out)
{
	if (!src->keep) {
		void *p = mmap(NULL, src->keep_budget, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			return false;
		/* On 4 KiB pages, the page faults and TLB misses of the kept
		 * bytes cost more than decompressing them again (churn, on
		 * this virtual machine): 2 MiB pages where the kernel has
		 * them. Only what is filled is touched. */
		madvise(p, src->keep_budget, MADV_HUGEPAGE);
		src->keep = p;
		src->keep_size = src->keep_budget;
	}
	if (src->keep_used + src->keep_len + out->size + HA_SLACK >
	    src->keep_size)
		return false;
	out->dst = src->keep + src->keep_used + src->keep_len;
	return true;
}

/* n more bytes decompressed into keep (src->view points at them); the
 * frame goes to src->frames when it ends. */
static void kept_more(struct ha_source *src, size_t n, bool frame_ends)
{
	src->keep_len += n;
	if (!frame_ends)
		return;
	/* The frame being read is the last one src->frames holds. Frames
	 * start 64-byte aligned. */
	memset(src->keep + src->keep_used + src->keep_len, 0, HA_SLACK);
	src->frames[src->nframes - 1].plain = src->keep + src->keep_used;
	src->keep_used += (src->keep_len + HA_SLACK + 63) & ~(size_t)63;
	src->keep_len = 0;
}

/* Decompresses more into src->out (or the frame's keep buffer); false when
 * nothing more will come. */
static bool refill(struct ha_source *src)
{
	while (!src->corrupt) {
		ZSTD_inBuffer in = {src->in, src->in_len, src->in_pos};
		ZSTD_outBuffer out = {src->out, ZSTD_DStreamOutSize(), 0};
		size_t ret;

		/* (A frame index that could not grow would misplace them.) */
		if (src->keep_budget &&
		    (src->nomem || !start_keeping(src, &out)))
			src->keep_budget = 0;

		if (src->in_pos == src->in_len) {
			if (src->in_eof)
				return false;
			src->in_at += src->in_len;
			src->in_len =
			    fread(src->in, 1, ZSTD_DStreamInSize(), src->f);
			src->in_pos = 0;
			if (src->in_len == 0) {
				src->in_eof = true;
				if (ferror(src->f))
					src->io_error = true;
				/* A frame the file ends inside still holds
				 * output zstd has not flushed yet. */
				if (!src->in_frame)
					return false;
			}
			in = (ZSTD_inBuffer){src->in, src->in_len, 0};
		}
		ret = ZSTD_decompressStream(src->dctx, &out, &in);
		src->in_pos = in.pos;
		if (ZSTD_isError(ret)) {
			src->corrupt = true;
			src->zstd_error = ZSTD_getErrorName(ret);
			return false;
		}
		src->in_frame = ret != 0;
		src->raw_total += out.pos;
		src->view = out.dst;
		if (out.dst != src->out)
			kept_more(src, out.pos, ret == 0);
		if (ret == 0) { /* a frame ends: the next one starts here */
			if (!HA_RESERVE(src->frames, src->frames_cap,
					src->nframes + 1))
				src->nomem = true;
			else
				src->frames[src->nframes++] =
				    (struct ha_zframe){src->in_at + in.pos,
						       src->raw_total, NULL};
		}
		if (out.pos > 0) {
			src->out_pos = 0;
			src->out_len = out.pos;
			return true;
		}
		if (src->in_eof && in.pos == in.size)
			return false; /* no more input, no more output */
	}
	return false;
}

size_t ha_source_read(struct ha_source *src, void *dst, size_t n)
{
	unsigned char *d = dst;
	size_t done = 0;

	while (done < n) {
		size_t have = src->out_len - src->out_pos;

		if (have > 0) {
			size_t take = have < n - done ? have : n - done;

			memcpy(d + done, src->view + src->out_pos, take);
			src->out_pos += take;
			done += take;
			continue;
		}
		if (!src->compressed) {
			size_t got = fread(d + done, 1, n - done, src->f);

			if (got < n - done && ferror(src->f))
				src->io_error = true;
			return done + got;
		}
		if (!refill(src))
			break;
	}
	return done;
}

void ha_source_close(struct ha_source *src)
{
	ZSTD_freeDCtx(src->dctx);
	free(src->in);
	free(src->out);
	if (src->keep)
		munmap(src->keep, src->keep_size);
	src->keep = NULL;
	free(src->frames);
	src->frames = NULL;
	src->dctx = NULL;
	src->in = src->out = NULL;
}

bool ha_fd_is_compressed(int fd)
{
	unsigned char magic[HA_ZSTD_MAGIC_LEN];

	return pread(fd, magic, sizeof(magic), 0) == (ssize_t)sizeof(magic) &&
	       memcmp(magic, HA_ZSTD_MAGIC, HA_ZSTD_MAGIC_LEN) == 0;
}

bool ha_append_compressed(int fd, const void *data, size_t len)
{
	size_t cap = ZSTD_compressBound(len), n;
	unsigned char *z = malloc(cap), *p = z;
	bool ok = false;

	if (!z) {
		errno = ENOMEM;
		return false;
	}
	n = ZSTD_compress(z, cap, data, len, APPEND_LEVEL);
	if (ZSTD_isError(n)) {
		errno = EIO;
		goto out;
	}
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			goto out;
		}
		p += w;
		n -= (size_t)w;
	}
	ok = true;
out:
	free(z);
	return ok;
}

/* ---- the replay's reading ------------------------------------------------ */

#define FETCH_CACHE 4

struct cached_frame {
	size_t frame; /* index in frames; SIZE_MAX when empty */
	unsigned char *data;
	size_t len, cap;
	uint64_t used; /* for LRU */
};

struct ha_fetch {
	FILE *f;
	int fd;
	const struct ha_zframe *frames;
	size_t nframes;
	ZSTD_DCtx *dctx;
	unsigned char *in;
	unsigned char *whole; /* a frame's compressed bytes */
	size_t whole_cap;
	struct cached_frame cache[FETCH_CACHE];
	uint64_t clock;
};

static struct ha_fetch *fetch_new(FILE *f, const struct ha_zframe *frames,
				  size_t nframes, bool compressed)
{
	struct ha_fetch *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->f = f;
	h->fd = fileno(f);
	for (size_t i = 0; i < FETCH_CACHE; i++)
		h->cache[i].frame = SIZE_MAX;
	if (!compressed)
		return h;
	h->frames = frames;
	h->nframes = nframes;
	h->dctx = ZSTD_createDCtx();
	h->in = malloc(ZSTD_DStreamInSize());
	if (!h->dctx || !h->in) {
		ha_fetch_free(h);
		return NULL;
	}
	return h;
}

struct ha_fetch *ha_fetch_new(FILE *f, const struct ha_log *log)
{
	return fetch_new(f, log->zframes, log->nzframes, log->compressed);
}

struct ha_fetch *ha_fetch_twin(const struct ha_fetch *h)
{
	return fetch_new(h->f, h->frames, h->nframes, h->dctx != NULL);
}

/*
 * A frame the first reading saw end: its sizes, compressed and not, are
 * known, so it is read and decompressed in one call, straight into the
 * cache (streaming would decompress into zstd's window, then copy).
 */
static bool load_whole(struct ha_fetch *h, size_t k, struct cached_frame *c)
{
	uint64_t zlen = h->frames[k + 1].file_at - h->frames[k].file_at;
	uint64_t raw = h->frames[k + 1].raw_at - h->frames[k].raw_at;
	size_t got;

	if (zlen > SIZE_MAX / 2 || raw > SIZE_MAX / 2 ||
	    !HA_RESERVE(h->whole, h->whole_cap, (size_t)zlen) ||
	    !HA_RESERVE(c->data, c->cap, (size_t)raw + HA_SLACK) ||
	    pread(h->fd, h->whole, (size_t)zlen, (off_t)h->frames[k].file_at) !=
		(ssize_t)zlen)
		return false;
	got = ZSTD_decompressDCtx(h->dctx, c->data, (size_t)raw, h->whole,
				  (size_t)zlen);
	if (ZSTD_isError(got) || got != raw)
		return false;
	c->len = got;
	return true;
}

/* Decompresses frame k whole (what the file holds of it). The cached
 * bytes are followed by HA_SLACK zero bytes (decode.h). */
static struct cached_frame *load_frame(struct ha_fetch *h, size_t k)
{
	struct cached_frame *c = &h->cache[0];
	uint64_t at = h->frames[k].file_at;
	size_t ret = 1;

	for (size_t i = 0; i < FETCH_CACHE; i++) {
		if (h->cache[i].frame == k) {
			h->cache[i].used = ++h->clock;
			return &h->cache[i];
		}
		if (h->cache[i].used < c->used)
			c = &h->cache[i];
	}
	c->frame = SIZE_MAX;
	c->len = 0;
	if (k + 1 < h->nframes && load_whole(h, k, c))
		goto done;
	/* Cut short, damaged, or out of memory: what streaming gets. */
	c->len = 0;
	ZSTD_DCtx_reset(h->dctx, ZSTD_reset_session_only);
	while (ret != 0) {
		ssize_t got =
		    pread(h->fd, h->in, ZSTD_DStreamInSize(), (off_t)at);
		ZSTD_inBuffer in = {h->in, got > 0 ? (size_t)got : 0, 0};

		if (got <= 0)
			break; /* the file ends inside the frame */
		while (in.pos < in.size && ret != 0) {
			ZSTD_outBuffer out;

			if (!HA_RESERVE(c->data, c->cap,
					c->len + ZSTD_DStreamOutSize()))
				return NULL;
			out = (ZSTD_outBuffer){c->data + c->len,
					       ZSTD_DStreamOutSize(), 0};
			ret = ZSTD_decompressStream(h->dctx, &out, &in);
			if (ZSTD_isError(ret))
				break;
			c->len += out.pos;
		}
		/* Bad data: what came before it is what the first reading
		 * indexed. */
		if (ZSTD_isError(ret))
			break;
		at += in.pos;
	}
	if (!HA_RESERVE(c->data, c->cap, c->len + HA_SLACK))
		return NULL;
done:
	memset(c->data + c->len, 0, HA_SLACK);
	c->frame = k;
	c->used = ++h->clock;
	return c;
}

/* Frame k's bytes (followed by HA_SLACK zeros) and their number: kept by
 * the first reading, or decompressed again. NULL when out of memory. */
static const unsigned char *frame_bytes(struct ha_fetch *h, size_t k,
					size_t *len)
{
	struct cached_frame *c;

	if (h->frames[k].plain && k + 1 < h->nframes) {
		*len = (size_t)(h->frames[k + 1].raw_at - h->frames[k].raw_at);
		return h->frames[k].plain;
	}
	c = load_frame(h, k);
	if (!c)
		return NULL;
	*len = c->len;
	return c->data;
}

/* The last frame starting at or before `at`. */
static size_t frame_of(const struct ha_fetch *h, uint64_t at)
{
	size_t lo = 0, hi = h->nframes;

	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (h->frames[mid].raw_at <= at)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

const unsigned char *ha_fetch_view(struct ha_fetch *h, uint64_t at, size_t len,
				   unsigned char *buf)
{
	if (h->dctx) {
		size_t k = frame_of(h, at), flen;
		const unsigned char *d = frame_bytes(h, k, &flen);
		uint64_t off = at - h->frames[k].raw_at;

		if (d && off < flen && len <= flen - off)
			return d + off; /* the usual: one frame holds it */
	}
	if (!ha_fetch(h, at, buf, len))
		return NULL;
	memset(buf + len, 0, HA_SLACK);
	return buf;
}

bool ha_fetch(struct ha_fetch *h, uint64_t at, void *dst, size_t len)
{
	unsigned char *d = dst;

	if (!h->dctx)
		return pread(h->fd, dst, len, (off_t)at) == (ssize_t)len;
	while (len > 0) {
		size_t lo = frame_of(h, at), take, flen;
		const unsigned char *data = frame_bytes(h, lo, &flen);
		uint64_t off;

		off = at - h->frames[lo].raw_at;
		if (!data || off >= flen)
			return false;
		take = flen - off < len ? flen - (size_t)off : len;
		memcpy(d, data + off, take);
		d += take;
		at += take;
		len -= take;
	}
	return true;
}

void ha_fetch_free(struct ha_fetch *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < FETCH_CACHE; i++)
		free(h->cache[i].data);
	ZSTD_freeDCtx(h->dctx);
	free(h->in);
	free(h->whole);
	free(h);
}
