/*
 * analyzer/log_source.c - reading a log's bytes through zstd when the file
 * is compressed, as they are when it is not. See log_source.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "analyzer/log_source.h"

/* Appended frames are small and rare: a fast level is enough. */
#define APPEND_LEVEL 3

bool ha_source_open(struct ha_source *src, FILE *f)
{
	unsigned char magic[HA_ZSTD_MAGIC_LEN];
	size_t got;

	memset(src, 0, sizeof(*src));
	src->f = f;
	got = fread(magic, 1, sizeof(magic), f);
	if (got < sizeof(magic) && ferror(f))
		src->io_error = true;
	src->compressed = got == sizeof(magic) &&
			  memcmp(magic, HA_ZSTD_MAGIC, HA_ZSTD_MAGIC_LEN) == 0;
	if (!src->compressed) {
		/* What was peeked is the start of the log: hand it out first. */
		src->out = malloc(sizeof(magic));
		if (!src->out)
			return false;
		memcpy(src->out, magic, got);
		src->out_len = got;
		return true;
	}
	src->dctx = ZSTD_createDCtx();
	src->in = malloc(ZSTD_DStreamInSize());
	src->out = malloc(ZSTD_DStreamOutSize());
	if (!src->dctx || !src->in || !src->out)
		return false;
	memcpy(src->in, magic, sizeof(magic));
	src->in_len = sizeof(magic);
	return true;
}

/* Decompresses more into src->out; false when nothing more will come. */
static bool refill(struct ha_source *src)
{
	while (!src->corrupt) {
		ZSTD_inBuffer in = {src->in, src->in_len, src->in_pos};
		ZSTD_outBuffer out = {src->out, ZSTD_DStreamOutSize(), 0};
		size_t ret;

		if (src->in_pos == src->in_len) {
			if (src->in_eof)
				return false;
			src->in_len = fread(src->in, 1, ZSTD_DStreamInSize(),
					    src->f);
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

			memcpy(d + done, src->out + src->out_pos, take);
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
