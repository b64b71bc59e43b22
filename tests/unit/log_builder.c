/*
 * tests/unit/log_builder.c - the in-memory log writer (see log_builder.h).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/varint.h"
#include "halloc/log.h"
#include "log_builder.h"

static void put(struct lb *b, const void *data, size_t len)
{
	if (b->len + len > b->cap) {
		b->cap = (b->len + len) * 2 + 256;
		b->buf = realloc(b->buf, b->cap);
		if (!b->buf)
			abort();
	}
	memcpy(b->buf + b->len, data, len);
	b->len += len;
}

static void put_uv(struct lb *b, uint64_t v)
{
	unsigned char tmp[HALLOC_VARINT_MAX] = {0};

	put(b, tmp, (size_t)(halloc_put_uv(tmp, v) - tmp));
}

static void put_sv(struct lb *b, int64_t v)
{
	put_uv(b, halloc_zigzag(v));
}

static void put_str(struct lb *b, const char *s)
{
	put_uv(b, strlen(s));
	put(b, s, strlen(s));
}

static void put_le(struct lb *b, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++) {
		unsigned char c = (unsigned char)(v >> (8 * i));

		put(b, &c, 1);
	}
}

static unsigned argc_of(const char *const *argv)
{
	unsigned n = 0;

	while (argv && argv[n])
		n++;
	return n;
}

/* Starts a frame; returns the offset of its header. */
static size_t frame_begin(struct lb *b, unsigned type)
{
	size_t at = b->len;

	put_le(b, 0, 4);
	put_le(b, type, 2);
	put_le(b, 0, 2);
	return at;
}

static void frame_finish(struct lb *b, size_t at)
{
	uint32_t len = (uint32_t)(b->len - at - HALLOC_FRAME_HEADER_SIZE);

	for (unsigned i = 0; i < 4; i++)
		b->buf[at + i] = (unsigned char)(len >> (8 * i));
}

void lb_init(struct lb *b, uint32_t pid, const char *const *argv)
{
	size_t at;

	memset(b, 0, sizeof(*b));
	put(b, HALLOC_LOG_MAGIC, HALLOC_LOG_MAGIC_LEN);
	put_le(b, HALLOC_LOG_VERSION, 4);
	put_le(b, 0, 4);
	if (!argv)
		return;
	at = frame_begin(b, HALLOC_FRAME_TRACE_INFO);
	put_uv(b, HALLOC_RECORDER_PRELOAD);
	put_uv(b, 0);
	put_uv(b, HALLOC_DEPTH_DEFAULT);
	put_uv(b, 1000);
	put_uv(b, pid);
	put_uv(b, argc_of(argv));
	for (unsigned i = 0; i < argc_of(argv); i++)
		put_str(b, argv[i]);
	frame_finish(b, at);
}

void lb_free(struct lb *b)
{
	free(b->buf);
	memset(b, 0, sizeof(*b));
}

void lb_chunk_end(struct lb *b)
{
	if (b->chunk_at) {
		frame_finish(b, b->chunk_at);
		b->chunk_at = 0;
	}
}

void lb_chunk(struct lb *b, uint64_t stream, uint32_t pid, uint32_t tid)
{
	lb_chunk_end(b);
	b->chunk_at = frame_begin(b, HALLOC_FRAME_CHUNK);
	put_le(b, stream, 8);
	put_le(b, pid, 4);
	put_le(b, tid, 4);
	put_le(b, tid, 4); /* slot */
	put_le(b, b->chunk_no++, 4);
	b->seq = 0;
	b->addr = 0;
}

static void record(struct lb *b, unsigned kind, unsigned fn, uint64_t seq)
{
	unsigned char tag = HALLOC_RECORD_TAG(kind, fn);

	put(b, &tag, 1);
	put_uv(b, seq - b->seq);
	b->seq = seq;
}

void lb_process(struct lb *b, uint64_t seq, uint32_t pid, uint32_t ppid,
		uint64_t parent_stream, uint64_t parent_seq, uint64_t flags,
		uint64_t start_time, const char *exe, const char *const *argv)
{
	record(b, HALLOC_REC_PROCESS, 0, seq);
	put_uv(b, pid);
	put_uv(b, ppid);
	put_uv(b, parent_stream);
	put_uv(b, parent_seq);
	put_uv(b, flags);
	put_uv(b, start_time);
	put_str(b, exe);
	put_uv(b, argc_of(argv));
	for (unsigned i = 0; i < argc_of(argv); i++)
		put_str(b, argv[i]);
}

void lb_module(struct lb *b, uint64_t seq, uint64_t id, uint64_t bias,
	       const char *path, const char *build_id, size_t build_id_len,
	       uint64_t start, uint64_t size)
{
	record(b, HALLOC_REC_MODULE_LOAD, 0, seq);
	put_uv(b, id);
	put_uv(b, bias);
	put_str(b, path);
	put_uv(b, build_id_len);
	if (build_id_len)
		put(b, build_id, build_id_len);
	put_uv(b, 1);
	put_uv(b, start);
	put_uv(b, size);
}

void lb_unload(struct lb *b, uint64_t seq, uint64_t id)
{
	record(b, HALLOC_REC_MODULE_UNLOAD, 0, seq);
	put_uv(b, id);
}

void lb_stack(struct lb *b, uint64_t seq, uint64_t id, unsigned n,
	      const uint64_t *frames)
{
	uint64_t prev = 0;

	record(b, HALLOC_REC_STACK, 0, seq);
	put_uv(b, id);
	put_uv(b, n);
	for (unsigned i = 0; i < n; i++) {
		put_sv(b, (int64_t)(frames[i] - prev));
		prev = frames[i];
	}
}

void lb_alloc(struct lb *b, uint64_t seq, unsigned fn, uint64_t addr,
	      uint64_t size, uint64_t stack)
{
	record(b, HALLOC_REC_ALLOC, fn, seq);
	put_uv(b, 1);
	put_sv(b, (int64_t)(addr - b->addr));
	b->addr = addr;
	put_uv(b, size);
	put_uv(b, stack);
}

void lb_free_rec(struct lb *b, uint64_t seq, unsigned fn, uint64_t addr)
{
	record(b, HALLOC_REC_FREE, fn, seq);
	put_uv(b, 1);
	put_sv(b, (int64_t)(addr - b->addr));
	b->addr = addr;
}

void lb_realloc(struct lb *b, uint64_t seq, uint64_t seq2, uint64_t old,
		uint64_t new_addr, uint64_t size, uint64_t stack)
{
	record(b, HALLOC_REC_REALLOC, HALLOC_FN_REALLOC, seq);
	put_uv(b, seq2 - seq);
	put_uv(b, 1);
	put_sv(b, (int64_t)(old - b->addr));
	put_sv(b, (int64_t)(new_addr - old));
	b->addr = new_addr;
	put_uv(b, size);
	put_uv(b, stack);
}

void lb_failed(struct lb *b, uint64_t seq, unsigned fn, uint64_t size,
	       uint64_t stack)
{
	record(b, HALLOC_REC_ALLOC_FAILED, fn, seq);
	put_uv(b, 1);
	put_uv(b, size);
	put_uv(b, stack);
	put_uv(b, 12); /* ENOMEM */
}

void lb_refused(struct lb *b, uint64_t seq, unsigned fn, uint64_t size,
		uint64_t stack, unsigned reason)
{
	record(b, HALLOC_REC_REFUSED, fn, seq);
	put_uv(b, 1);
	put_uv(b, size);
	put_uv(b, stack);
	put_uv(b, reason);
}

void lb_raw(struct lb *b, const void *data, size_t len)
{
	put(b, data, len);
}

void lb_exit(struct lb *b, uint32_t pid, unsigned how, uint64_t value)
{
	size_t at;

	lb_chunk_end(b);
	at = frame_begin(b, HALLOC_FRAME_PROCESS_EXIT);
	put_uv(b, pid);
	put_uv(b, how);
	put_uv(b, value);
	put_uv(b, 0);
	frame_finish(b, at);
}

void lb_symbols(struct lb *b, const char *module, const char *build_id_hex,
		uint64_t offset, unsigned n, const struct lb_sym *frames)
{
	size_t at;

	lb_chunk_end(b);
	at = frame_begin(b, HALLOC_FRAME_SYMBOLS);
	/* strings: "", module, build-id, then function and file per frame */
	put_uv(b, 3 + 2 * n);
	put_str(b, "");
	put_str(b, module);
	put_str(b, build_id_hex);
	for (unsigned i = 0; i < n; i++) {
		put_str(b, frames[i].function);
		put_str(b, frames[i].file);
	}
	put_uv(b, 1);
	put_uv(b, 1);
	put_uv(b, *build_id_hex ? 2 : 0);
	put_uv(b, offset);
	put_uv(b, n);
	for (unsigned i = 0; i < n; i++) {
		put_uv(b, 3 + 2 * i);
		put_uv(b, 4 + 2 * i);
		put_uv(b, frames[i].line);
		put_uv(b, 0);
	}
	frame_finish(b, at);
}

void lb_frame(struct lb *b, unsigned type, const void *payload, size_t len)
{
	size_t at;

	lb_chunk_end(b);
	at = frame_begin(b, type);
	put(b, payload, len);
	frame_finish(b, at);
}

void lb_end(struct lb *b)
{
	unsigned char payload[2] = {0, 0};

	lb_frame(b, HALLOC_FRAME_END, payload, sizeof(payload));
}

enum ha_result lb_analyze_bytes(const unsigned char *data, size_t len,
				struct ha_analysis **out, struct ha_diag *diag)
{
	struct ha_analyze_options opts = {.symbolize_from_files = false};
	unsigned char *copy = malloc(len ? len : 1);
	FILE *f;
	enum ha_result res;

	memcpy(copy, data, len);
	f = len ? fmemopen(copy, len, "rb") : fopen("/dev/null", "rb");
	if (!f)
		abort();
	res = ha_analyze_stream(f, "test.hlog", &opts, out, diag);
	fclose(f);
	free(copy);
	return res;
}

enum ha_result lb_analyze(struct lb *b, struct ha_analysis **out,
			  struct ha_diag *diag)
{
	lb_chunk_end(b);
	return lb_analyze_bytes(b->buf, b->len, out, diag);
}

char *lb_write_temp(struct lb *b)
{
	char *path = strdup("/tmp/halloc-unit-XXXXXX");
	int fd = mkstemp(path);

	lb_chunk_end(b);
	if (fd < 0 || write(fd, b->buf, b->len) != (ssize_t)b->len)
		abort();
	close(fd);
	return path;
}

char *lb_report(const struct ha_analysis *a, enum ha_format format,
		unsigned stack_frames)
{
	struct ha_report_options o = {.format = format,
				      .stack_frames = stack_frames};
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f || ha_report_write(a, &o, f, NULL) != HA_OK)
		abort();
	fclose(f);
	return text;
}
