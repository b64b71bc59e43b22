/*
 * tracer/log_file.c - writing the log file, compressed with zstd as it is
 * written (see session.h for the contract, analyzer/log_source.h for what
 * readers expect).
 *
 * The tracer shares the machine with the program it traces, so the level
 * is zstd's fastest regular one: it costs a fraction of what writing the
 * uncompressed bytes to the page cache did, and the log shrinks 1.5-90x
 * (BENCHMARKS.md).
 */
#include "tracer/session.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <zstd.h>

#define HT_ZSTD_LEVEL 1
/* A frame ends after this much input: what a killed tracer can lose. */
#define HT_ZSTD_FRAME_INPUT (2u << 20)

static void write_raw(struct ht_session *s, const void *data, size_t size)
{
	const char *p = data;

	while (size > 0 && s->log_errno == 0) {
		ssize_t n = write(s->log_fd, p, size);

		if (n < 0) {
			if (errno != EINTR)
				s->log_errno = errno;
			continue;
		}
		p += n;
		size -= (size_t)n;
	}
}

static bool ready(struct ht_session *s)
{
	if (s->zstd)
		return true;
	s->zstd = ZSTD_createCCtx();
	s->zbuf = malloc(ZSTD_CStreamOutSize());
	if (!s->zstd || !s->zbuf) {
		s->log_errno = ENOMEM;
		return false;
	}
	ZSTD_CCtx_setParameter(s->zstd, ZSTD_c_compressionLevel, HT_ZSTD_LEVEL);
	return true;
}

/* Feeds data (possibly none) to zstd with `mode`, writing what comes out. */
static void compress(struct ht_session *s, const void *data, size_t size,
		     ZSTD_EndDirective mode)
{
	ZSTD_inBuffer in = {data, size, 0};
	size_t left;

	if (s->log_errno || !ready(s))
		return;
	do {
		ZSTD_outBuffer out = {s->zbuf, ZSTD_CStreamOutSize(), 0};

		left = ZSTD_compressStream2(s->zstd, &out, &in, mode);
		if (ZSTD_isError(left)) {
			s->log_errno = EIO;
			return;
		}
		write_raw(s, s->zbuf, out.pos);
	} while (s->log_errno == 0 &&
		 (mode == ZSTD_e_continue ? in.pos < in.size : left != 0));
}

void ht_log_write(struct ht_session *s, const void *data, size_t size)
{
	if (size == 0)
		return;
	compress(s, data, size, ZSTD_e_continue);
	s->frame_input += size;
	if (s->frame_input >= HT_ZSTD_FRAME_INPUT)
		ht_log_seal(s);
}

void ht_log_flush(struct ht_session *s)
{
	if (s->frame_input > 0)
		compress(s, NULL, 0, ZSTD_e_flush);
}

void ht_log_seal(struct ht_session *s)
{
	if (s->frame_input == 0)
		return;
	compress(s, NULL, 0, ZSTD_e_end);
	s->frame_input = 0;
}

void ht_log_file_free(struct ht_session *s)
{
	if (s->log_fd >= 0)
		ht_log_seal(s);
	ZSTD_freeCCtx(s->zstd);
	free(s->zbuf);
	s->zstd = NULL;
	s->zbuf = NULL;
}
