/*
 * agent/bpf/log_writer.c - frames and records of the eBPF attach's log.
 * See log_writer.h; the layouts are include/halloc/log.h's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/bpf/log_writer.h"
#include "agent/varint.h"

/* Chunk payload room for records: frame minus frame and chunk headers. */
#define CHUNK_START (HALLOC_FRAME_HEADER_SIZE + HALLOC_CHUNK_HEADER_SIZE)
#define REC_ROOM    (HALLOC_FRAME_MAX - CHUNK_START)
#define V	    HALLOC_VARINT_MAX

struct hb_thread {
	uint32_t tid, slot, chunk_no;
	size_t used;		  /* bytes of buf, headers included */
	uint64_t seq, time, addr; /* the chunk's delta bases */
	unsigned char buf[HALLOC_FRAME_MAX];
};

struct hb_stack_entry {
	uint64_t id;
	unsigned n;
	uint64_t *frames;
};

static void put_le16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

static void put_le32(unsigned char *p, uint32_t v)
{
	put_le16(p, (uint16_t)v);
	put_le16(p + 2, (uint16_t)(v >> 16));
}

static void put_le64(unsigned char *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

static unsigned char *put_str(unsigned char *p, const char *s, size_t len)
{
	p = halloc_put_uv(p, len);
	memcpy(p, s, len);
	return p + len;
}

/* ---- the file ------------------------------------------------------------ */

int hb_log_open(struct hb_log *log, const char *path)
{
	unsigned char h[HT_FILE_HEADER_SIZE];

	log->error = 0;
	log->slots = 0;
	log->used = 0;
	log->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (log->fd < 0)
		return errno;
	ht_put_file_header(h);
	hb_log_write(log, h, sizeof(h));
	return 0;
}

int hb_log_flush(struct hb_log *log)
{
	size_t done = 0;

	while (!log->error && done < log->used) {
		ssize_t n = write(log->fd, log->buf + done, log->used - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			log->error = n < 0 ? errno : EIO;
		else
			done += (size_t)n;
	}
	log->used = 0;
	return log->error;
}

void hb_log_write(struct hb_log *log, const void *data, size_t size)
{
	const unsigned char *p = data;

	while (size > 0 && !log->error) {
		size_t n = sizeof(log->buf) - log->used;

		if (n > size)
			n = size;
		memcpy(log->buf + log->used, p, n);
		log->used += n;
		p += n;
		size -= n;
		if (log->used == sizeof(log->buf))
			hb_log_flush(log);
	}
}

int hb_log_close(struct hb_log *log)
{
	hb_log_flush(log);
	if (log->fd >= 0 && close(log->fd) && !log->error)
		log->error = errno;
	log->fd = -1;
	return log->error;
}

/* The frames around the chunks are the tracer's (tracer/frames.c): one
 * encoder for both recorders. */
void hb_log_trace_info(struct hb_log *log, const struct ht_trace_info *info)
{
	size_t size;
	unsigned char *frame = ht_frame_trace_info(info, &size);

	if (!frame) {
		if (!log->error)
			log->error = ENOMEM;
		return;
	}
	hb_log_write(log, frame, size);
	free(frame);
}

void hb_log_process_exit(struct hb_log *log, uint32_t pid, uint64_t how,
			 uint64_t value, uint64_t flags)
{
	unsigned char frame[HT_SMALL_FRAME_MAX];

	hb_log_write(
	    log, frame,
	    ht_frame_process_exit_how(frame, (pid_t)pid, how, value, flags));
}

void hb_log_end(struct hb_log *log, const struct ht_end *end)
{
	unsigned char frame[HT_SMALL_FRAME_MAX];

	hb_log_write(log, frame, ht_frame_end(frame, end));
}

/* ---- chunks -------------------------------------------------------------- */

static void chunk_reset(struct hb_stream *s, struct hb_thread *t)
{
	unsigned char *c = t->buf + HALLOC_FRAME_HEADER_SIZE;

	put_le64(c, s->id);
	put_le32(c + 8, s->pid);
	put_le32(c + 12, t->tid);
	put_le32(c + 16, t->slot);
	put_le32(c + 20, t->chunk_no);
	t->used = CHUNK_START;
	t->seq = t->time = t->addr = 0;
}

static void chunk_flush(struct hb_stream *s, struct hb_thread *t)
{
	if (t->used == CHUNK_START)
		return;
	ht_put_frame_header(t->buf,
			    (uint32_t)(t->used - HALLOC_FRAME_HEADER_SIZE),
			    HALLOC_FRAME_CHUNK);
	hb_log_write(s->log, t->buf, t->used);
	t->chunk_no++;
	chunk_reset(s, t);
}

static struct hb_thread *thread_of(struct hb_stream *s, uint32_t tid)
{
	uint64_t *v = hb_table_find(&s->threads, tid);
	struct hb_thread *t;

	if (v)
		return (struct hb_thread *)(uintptr_t)*v;
	t = malloc(sizeof(*t));
	if (!t)
		return NULL;
	t->tid = tid;
	t->slot = s->log->slots++;
	t->chunk_no = 0;
	chunk_reset(s, t);
	if (!hb_table_put(&s->threads, tid, (uintptr_t)t)) {
		free(t);
		return NULL;
	}
	return t;
}

/* Where the next record of `tid` goes, with room for `bound` bytes; the
 * record's tag and seq delta are written. NULL when out of memory. */
static unsigned char *begin(struct hb_stream *s, uint32_t tid, size_t bound,
			    uint8_t tag, uint64_t seq, struct hb_thread **tp)
{
	struct hb_thread *t = thread_of(s, tid);
	unsigned char *p;

	if (!t)
		return NULL;
	if (t->used + bound + 1 + V > HALLOC_FRAME_MAX)
		chunk_flush(s, t);
	p = t->buf + t->used;
	*p++ = tag;
	p = halloc_put_uv(p, seq - t->seq);
	t->seq = seq;
	*tp = t;
	return p;
}

static void commit(struct hb_thread *t, unsigned char *end)
{
	t->used = (size_t)(end - t->buf);
}

static unsigned char *put_time(struct hb_thread *t, unsigned char *p,
			       uint64_t time_us)
{
	return halloc_put_time_delta(p, &t->time, time_us);
}

static unsigned char *put_addr(struct hb_thread *t, unsigned char *p,
			       uint64_t addr)
{
	return halloc_put_addr_delta(p, &t->addr, addr);
}

/* ---- streams ------------------------------------------------------------- */

struct hb_stream *hb_stream_new(struct hb_log *log, uint32_t pid,
				uint64_t start_boot_ns)
{
	struct hb_stream *s = calloc(1, sizeof(*s));
	static uint32_t count;

	if (!s)
		return NULL;
	s->log = log;
	s->pid = pid;
	s->start_boot_ns = start_boot_ns;
	/* Unique in the log and never 0: pid, start, and a counter. */
	s->id = hb_mix64(((uint64_t)pid << 32) ^ start_boot_ns ^ ++count) | 1;
	s->next_module_id = 1;
	return s;
}

void hb_stream_flush_thread(struct hb_stream *s, uint32_t tid)
{
	uint64_t *v;
	struct hb_thread *t;

	if (!s || !(v = hb_table_find(&s->threads, tid)))
		return;
	t = (struct hb_thread *)(uintptr_t)*v;
	chunk_flush(s, t);
	free(t);
	hb_table_del(&s->threads, tid);
}

void hb_stream_free(struct hb_stream *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->threads.cap; i++) {
		struct hb_thread *t;

		if (!s->threads.slots[i].key)
			continue;
		t = (struct hb_thread *)(uintptr_t)s->threads.slots[i].value;
		chunk_flush(s, t);
		free(t);
	}
	for (size_t i = 0; i < s->nstacks; i++)
		free(s->stack_list[i].frames);
	free(s->stack_list);
	hb_table_free(&s->threads);
	hb_table_free(&s->stacks);
	free(s);
}

/* ---- records ------------------------------------------------------------- */

bool hb_rec_process(struct hb_stream *s, uint32_t tid, uint64_t seq,
		    const struct hb_process_info *pi)
{
	/* The record must fit one chunk: a long command line is cut. */
	size_t room = REC_ROOM - 8 * V - 2, exe_len = strlen(pi->exe);
	size_t bound, used;
	unsigned argc = 0;
	struct hb_thread *t;
	unsigned char *p;

	if (exe_len > room / 2)
		exe_len = room / 2;
	used = exe_len + V;
	while (argc < pi->argc && used + V + strlen(pi->argv[argc]) <= room)
		used += V + strlen(pi->argv[argc++]);
	bound = 7 * V + used;
	p = begin(s, tid, bound, HALLOC_RECORD_TAG(HALLOC_REC_PROCESS, 0), seq,
		  &t);
	if (!p)
		return false;
	p = halloc_put_uv(p, pi->pid);
	p = halloc_put_uv(p, pi->ppid);
	p = halloc_put_uv(p, 0); /* parent stream: not forked from one */
	p = halloc_put_uv(p, 0);
	p = halloc_put_uv(p, pi->flags);
	p = halloc_put_uv(p, pi->start_ns);
	p = put_str(p, pi->exe, exe_len);
	p = halloc_put_uv(p, argc);
	for (unsigned i = 0; i < argc; i++)
		p = put_str(p, pi->argv[i], strlen(pi->argv[i]));
	commit(t, p);
	return true;
}

uint32_t hb_rec_module(struct hb_stream *s, uint32_t tid, uint64_t seq,
		       const struct hb_module_info *m)
{
	size_t path_len = strlen(m->path), bid = m->build_id_len;
	unsigned nseg = m->nsegments;
	struct hb_thread *t;
	unsigned char *p;
	uint32_t id;

	if (path_len > REC_ROOM / 2)
		path_len = REC_ROOM / 2;
	if (bid > 64)
		bid = 0;
	if (nseg > 32)
		nseg = 32;
	p = begin(s, tid, 6 * V + path_len + bid + 2 * V * nseg,
		  HALLOC_RECORD_TAG(HALLOC_REC_MODULE_LOAD, 0), seq, &t);
	if (!p)
		return 0;
	id = s->next_module_id++;
	p = halloc_put_uv(p, id);
	p = halloc_put_uv(p, m->bias);
	p = put_str(p, m->path, path_len);
	p = put_str(p, (const char *)m->build_id, bid);
	p = halloc_put_uv(p, nseg);
	for (unsigned i = 0; i < nseg; i++) {
		p = halloc_put_uv(p, m->segments[i].start);
		p = halloc_put_uv(p, m->segments[i].size);
	}
	commit(t, p);
	return id;
}

static uint64_t frames_hash(const uint64_t *frames, unsigned n)
{
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;

	for (unsigned i = 0; i < n; i++)
		h = hb_mix64(h ^ frames[i]) + i;
	return h ? h : 1;
}

uint64_t hb_stack_id(struct hb_stream *s, uint32_t tid, uint64_t seq,
		     const uint64_t *frames, unsigned n, bool *wrote)
{
	uint64_t h = frames_hash(frames, n), *v, prev = 0;
	struct hb_stack_entry *e;
	struct hb_thread *t;
	unsigned char *p;

	*wrote = false;
	/* Equal hashes of different stacks probe on. */
	while ((v = hb_table_find(&s->stacks, h))) {
		e = &s->stack_list[*v - 1];
		if (e->n == n &&
		    !memcmp(e->frames, frames, n * sizeof(*frames)))
			return e->id;
		h = hb_mix64(h + 1) | 1;
	}
	if (s->nstacks == s->stacks_cap) {
		size_t cap = s->stacks_cap ? s->stacks_cap * 2 : 256;
		void *l = realloc(s->stack_list, cap * sizeof(*s->stack_list));

		if (!l)
			return 0;
		s->stack_list = l;
		s->stacks_cap = cap;
	}
	e = &s->stack_list[s->nstacks];
	e->n = n;
	e->id = s->nstacks + 1;
	e->frames = malloc((n ? n : 1) * sizeof(*frames));
	if (!e->frames || !hb_table_put(&s->stacks, h, s->nstacks + 1)) {
		free(e->frames);
		return 0;
	}
	memcpy(e->frames, frames, n * sizeof(*frames));
	s->nstacks++;

	p = begin(s, tid, 3 * V + (size_t)n * V,
		  HALLOC_RECORD_TAG(HALLOC_REC_STACK, 0), seq, &t);
	if (!p)
		return 0;
	p = halloc_put_uv(p, e->id);
	p = halloc_put_uv(p, n);
	for (unsigned i = 0; i < n; i++) {
		p = halloc_put_sv(p, (int64_t)(frames[i] - prev));
		prev = frames[i];
	}
	commit(t, p);
	*wrote = true;
	return e->id;
}

bool hb_rec_alloc(struct hb_stream *s, uint32_t tid, uint64_t seq, unsigned fn,
		  uint64_t time_us, uint64_t addr, uint64_t size,
		  uint64_t stack)
{
	struct hb_thread *t;
	unsigned char *p = begin(
	    s, tid, 4 * V, HALLOC_RECORD_TAG(HALLOC_REC_ALLOC, fn), seq, &t);

	if (!p)
		return false;
	p = put_time(t, p, time_us);
	p = put_addr(t, p, addr);
	p = halloc_put_uv(p, size);
	p = halloc_put_uv(p, stack);
	commit(t, p);
	return true;
}

bool hb_rec_free(struct hb_stream *s, uint32_t tid, uint64_t seq, unsigned fn,
		 uint64_t time_us, uint64_t addr)
{
	struct hb_thread *t;
	unsigned char *p = begin(
	    s, tid, 2 * V, HALLOC_RECORD_TAG(HALLOC_REC_FREE, fn), seq, &t);

	if (!p)
		return false;
	p = put_time(t, p, time_us);
	p = put_addr(t, p, addr);
	commit(t, p);
	return true;
}

bool hb_rec_realloc(struct hb_stream *s, uint32_t tid, uint64_t seq,
		    uint64_t seq2, unsigned fn, uint64_t time_us,
		    uint64_t old_addr, uint64_t new_addr, uint64_t size,
		    uint64_t stack)
{
	struct hb_thread *t;
	unsigned char *p = begin(
	    s, tid, 6 * V, HALLOC_RECORD_TAG(HALLOC_REC_REALLOC, fn), seq, &t);

	if (!p)
		return false;
	p = halloc_put_uv(p, seq2 - seq);
	p = put_time(t, p, time_us);
	p = put_addr(t, p, old_addr);
	/* The new address is a delta from the old one, and becomes the
	 * chunk's previous address. */
	p = put_addr(t, p, new_addr);
	p = halloc_put_uv(p, size);
	p = halloc_put_uv(p, stack);
	commit(t, p);
	return true;
}

bool hb_rec_failed(struct hb_stream *s, uint32_t tid, uint64_t seq, unsigned fn,
		   uint64_t time_us, uint64_t size, uint64_t stack,
		   uint64_t err)
{
	struct hb_thread *t;
	unsigned char *p =
	    begin(s, tid, 4 * V, HALLOC_RECORD_TAG(HALLOC_REC_ALLOC_FAILED, fn),
		  seq, &t);

	if (!p)
		return false;
	p = put_time(t, p, time_us);
	p = halloc_put_uv(p, size);
	p = halloc_put_uv(p, stack);
	p = halloc_put_uv(p, err);
	commit(t, p);
	return true;
}
