/*
 * agent/events.c - turning events into log records (include/halloc/log.h).
 *
 * Each function here encodes one record straight into the thread's frame
 * (buffer.c): tag, sequence delta, then the fields in contract order, all
 * deltas against the previous record of the same chunk. No formatting, no
 * system call: the clock is the vDSO's CLOCK_MONOTONIC_COARSE.
 *
 * Ordering (see the contract): an allocation takes its sequence number
 * after the allocator returned, a free before the block is released, and
 * a stack is published with a number taken before any record can name it.
 * All callers hold the thread's guard.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "agent/accounting.h"
#include "agent/agent.h"
#include "agent/varint.h"

/* Tag + up to seven varints: the largest event record (REALLOC). */
#define EVENT_MAX (1 + 7 * HALLOC_VARINT_MAX)

static inline uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static unsigned char *put_seq(struct ha_agent_thread *t, unsigned char *p,
			      uint64_t seq)
{
	p = halloc_put_uv(p, seq - t->last_seq);
	t->last_seq = seq;
	return p;
}

/* Microseconds since the stream started, as a delta in the chunk. */
static inline __attribute__((always_inline)) unsigned char *
put_time(struct ha_agent_thread *t, unsigned char *p)
{
	return halloc_put_time_delta(p, &t->last_time,
				     now_us() - ha_agent.base_us);
}

static unsigned char *put_addr(struct ha_agent_thread *t, unsigned char *p,
			       uintptr_t addr)
{
	return halloc_put_addr_delta(p, &t->last_addr, addr);
}

static unsigned char *put_str(unsigned char *p, const void *s, size_t len)
{
	p = halloc_put_uv(p, len);
	memcpy(p, s, len);
	return p + len;
}

/* ALLOC_FAILED and REFUSED share a layout but for the kind. */
static void put_failed(struct ha_agent_thread *t, unsigned kind, unsigned fn,
		       size_t size, uint64_t stack, uint64_t why)
{
	uint64_t seq = ha_agent_next_seq();
	unsigned char *p = ha_agent_buf_begin(t, EVENT_MAX);

	if (!p)
		return;
	*p++ = HALLOC_RECORD_TAG(kind, fn);
	p = put_seq(t, p, seq);
	p = put_time(t, p);
	p = halloc_put_uv(p, size);
	p = halloc_put_uv(p, stack);
	p = halloc_put_uv(p, why);
	ha_agent_buf_commit(t, p);
}

void ha_agent_record_refused(struct ha_agent_thread *t, unsigned fn,
			     size_t size, unsigned reason)
{
	int saved = errno;

	put_failed(t, HALLOC_REC_REFUSED, fn, size, ha_agent_stack_id(t),
		   reason);
	errno = saved;
}

/* An ALLOC record, its stack published; ptr joins the sampled set. */
static void put_alloc(struct ha_agent_thread *t, unsigned fn, void *ptr,
		      size_t size, uint64_t stack)
{
	/* After the allocator returned and after the stack is published. */
	uint64_t seq = ha_agent_next_seq();
	unsigned char *p = ha_agent_buf_begin(t, EVENT_MAX);

	if (p) {
		*p++ = HALLOC_RECORD_TAG(HALLOC_REC_ALLOC, fn);
		p = put_seq(t, p, seq);
		p = put_time(t, p);
		p = put_addr(t, p, (uintptr_t)ptr);
		p = halloc_put_uv(p, size);
		p = halloc_put_uv(p, stack);
		ha_agent_buf_commit(t, p);
	}
	ha_agent_sample_keep(ptr);
}

/* ha_agent_record_alloc() found it sampled, or recording every event. */
void ha_agent_record_alloc_now(struct ha_agent_thread *t, unsigned fn,
			       void *ptr, size_t size)
{
	int saved = errno;
	uint64_t stack;

	stack = ha_agent_stack_id(t);
	if (!ptr)
		put_failed(t, HALLOC_REC_ALLOC_FAILED, fn, size, stack,
			   (uint64_t)saved);
	else
		put_alloc(t, fn, ptr, size, stack);
	errno = saved;
}

/*
 * halloc(type, n): an ALLOC with fn HALLOC_FN_HALLOC and two more fields,
 * the typed site and the count n (include/halloc/log.h).
 */
void ha_agent_record_typed_alloc(struct ha_agent_thread *t, void *ptr,
				 size_t size, unsigned id, size_t n)
{
	int saved = errno;
	uint64_t stack, seq;
	unsigned char *p;

	if (!ha_agent_sampled(t, size))
		return; /* --sample: as ha_agent_record_alloc() */
	stack = ha_agent_stack_id(t);
	seq = ha_agent_next_seq();
	p = ha_agent_buf_begin(t, EVENT_MAX);
	if (p) {
		*p++ = HALLOC_RECORD_TAG(HALLOC_REC_ALLOC, HALLOC_FN_HALLOC);
		p = put_seq(t, p, seq);
		p = put_time(t, p);
		p = put_addr(t, p, (uintptr_t)ptr);
		p = halloc_put_uv(p, size);
		p = halloc_put_uv(p, stack);
		p = halloc_put_uv(p, id);
		p = halloc_put_uv(p, n);
		ha_agent_buf_commit(t, p);
	}
	ha_agent_sample_keep(ptr);
	errno = saved;
}

/* Names longer than this are cut (a file keeps its end): one frame. */
#define TYPE_NAME_MAX 1024u
#define TYPE_FILE_MAX 2048u

void ha_agent_put_type(struct ha_agent_thread *t, unsigned id,
		       size_t object_size, const char *name, const char *file,
		       unsigned line)
{
	size_t name_len = strlen(name), file_len = strlen(file);
	unsigned char *p;

	if (name_len > TYPE_NAME_MAX)
		name_len = TYPE_NAME_MAX;
	if (file_len > TYPE_FILE_MAX) {
		file += file_len - TYPE_FILE_MAX;
		file_len = TYPE_FILE_MAX;
	}
	p = ha_agent_buf_begin_defs(t, 1 + 6 * HALLOC_VARINT_MAX + name_len +
				      file_len);
	if (!p)
		return;
	*p++ = HALLOC_RECORD_TAG(HALLOC_REC_TYPE, 0);
	p = put_seq(t, p, ha_agent_next_seq());
	p = halloc_put_uv(p, id);
	p = halloc_put_uv(p, object_size);
	p = put_str(p, name, name_len);
	p = put_str(p, file, file_len);
	p = halloc_put_uv(p, line);
	ha_agent_buf_commit(t, p);
}

void ha_agent_record_failed(struct ha_agent_thread *t, unsigned fn, size_t size,
			    int err)
{
	int saved = errno;

	put_failed(t, HALLOC_REC_ALLOC_FAILED, fn, size, ha_agent_stack_id(t),
		   (uint64_t)err);
	errno = saved;
}

void ha_agent_record_free(struct ha_agent_thread *t, unsigned free_fn,
			  uint64_t seq, void *ptr)
{
	int saved;
	unsigned char *p;

	if (seq == HA_AGENT_NO_SEQ)
		return; /* a block not sampled */
	saved = errno;
	p = ha_agent_buf_begin(t, EVENT_MAX);
	if (p) {
		*p++ = HALLOC_RECORD_TAG(HALLOC_REC_FREE, free_fn);
		p = put_seq(t, p, seq);
		p = put_time(t, p);
		p = put_addr(t, p, (uintptr_t)ptr);
		ha_agent_buf_commit(t, p);
	}
	errno = saved;
}

void ha_agent_record_realloc(struct ha_agent_thread *t, unsigned fn,
			     uint64_t stack, uint64_t seq, void *old,
			     void *result, size_t size)
{
	int saved;
	uint64_t seq2;
	unsigned char *p;

	if (result && stack == HA_AGENT_NO_STACK && seq == HA_AGENT_NO_SEQ)
		return; /* sampling: neither half was sampled */
	saved = errno;
	if (!result) {
		/* The old block is untouched: nothing was freed. */
		if (seq != HA_AGENT_NO_SEQ)
			ha_agent_sample_keep(old);
		if (stack == HA_AGENT_NO_STACK)
			stack = ha_agent_stack_id(t);
		put_failed(t, HALLOC_REC_ALLOC_FAILED, fn, size, stack,
			   (uint64_t)saved);
		errno = saved;
		return;
	}
	/* Sampling: record the halves that were sampled, if any. */
	if (stack == HA_AGENT_NO_STACK) {
		ha_agent_record_free(t, HALLOC_FREE_REALLOC, seq, old);
		errno = saved;
		return;
	}
	if (seq == HA_AGENT_NO_SEQ) {
		put_alloc(t, fn, result, size, stack);
		errno = saved;
		return;
	}
	seq2 = ha_agent_next_seq();
	p = ha_agent_buf_begin(t, EVENT_MAX);
	if (p) {
		*p++ = HALLOC_RECORD_TAG(HALLOC_REC_REALLOC, fn);
		p = put_seq(t, p, seq);
		p = halloc_put_uv(p, seq2 - seq);
		p = put_time(t, p);
		p = put_addr(t, p, (uintptr_t)old);
		/* The new address is a delta from the old one. */
		p = put_addr(t, p, (uintptr_t)result);
		p = halloc_put_uv(p, size);
		p = halloc_put_uv(p, stack);
		ha_agent_buf_commit(t, p);
	}
	ha_agent_sample_keep(result);
	errno = saved;
}

uint64_t ha_agent_realloc_stack(struct ha_agent_thread *t, size_t size)
{
	return ha_agent_sampled(t, size) ? ha_agent_stack_id(t)
					 : HA_AGENT_NO_STACK;
}

void ha_agent_put_stack(struct ha_agent_thread *t, uint64_t seq, uint64_t id,
			const uintptr_t *frames, unsigned n)
{
	unsigned char *p;
	uintptr_t prev = 0;
	unsigned i;

	p = ha_agent_buf_begin_defs(t, 1 + (3 + (size_t)n) * HALLOC_VARINT_MAX);
	if (!p)
		return;
	*p++ = HALLOC_RECORD_TAG(HALLOC_REC_STACK, 0);
	p = put_seq(t, p, seq);
	p = halloc_put_uv(p, id);
	p = halloc_put_uv(p, n);
	for (i = 0; i < n; i++) {
		p = halloc_put_sv(p, (int64_t)(frames[i] - prev));
		prev = frames[i];
	}
	ha_agent_buf_commit(t, p);
}

void ha_agent_put_module_load(struct ha_agent_thread *t, uint32_t id,
			      uintptr_t bias, const char *path, size_t path_len,
			      const unsigned char *build_id,
			      size_t build_id_len,
			      const struct ha_agent_segment *seg, unsigned nseg)
{
	size_t fixed, max;
	unsigned char *p;
	unsigned i;

	if (build_id_len > 64)
		build_id_len = 64;
	fixed = 1 + (5 + 2 * (size_t)nseg) * HALLOC_VARINT_MAX +
		HALLOC_VARINT_MAX + build_id_len + HALLOC_VARINT_MAX;
	/* A path too long for one frame keeps its end: the file name. */
	if (fixed + path_len > HA_AGENT_RECORD_MAX) {
		path += path_len - (HA_AGENT_RECORD_MAX - fixed);
		path_len = HA_AGENT_RECORD_MAX - fixed;
	}
	max = fixed + path_len;
	p = ha_agent_buf_begin_defs(t, max);
	if (!p)
		return;
	*p++ = HALLOC_RECORD_TAG(HALLOC_REC_MODULE_LOAD, 0);
	p = put_seq(t, p, ha_agent_next_seq());
	p = halloc_put_uv(p, id);
	p = halloc_put_uv(p, bias);
	p = put_str(p, path, path_len);
	p = put_str(p, build_id, build_id_len);
	p = halloc_put_uv(p, nseg);
	for (i = 0; i < nseg; i++) {
		p = halloc_put_uv(p, seg[i].start);
		p = halloc_put_uv(p, seg[i].size);
	}
	ha_agent_buf_commit(t, p);
}

void ha_agent_put_module_unload(struct ha_agent_thread *t, uint32_t id)
{
	unsigned char *p = ha_agent_buf_begin_defs(t, EVENT_MAX);

	if (!p)
		return;
	*p++ = HALLOC_RECORD_TAG(HALLOC_REC_MODULE_UNLOAD, 0);
	p = put_seq(t, p, ha_agent_next_seq());
	p = halloc_put_uv(p, id);
	ha_agent_buf_commit(t, p);
}

/*
 * The PROCESS record must fit one frame: a long command line keeps as many
 * whole arguments as fit, and the one that does not fit is cut short.
 * Returns how many arguments to write; *last_len is the last one's length.
 */
static size_t uv_size(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint64_t fit_args(const char *args, size_t len, size_t room,
			 size_t *last_len)
{
	uint64_t argc = 0;
	size_t off, n;

	*last_len = 0;
	for (off = 0; off < len && room > HALLOC_VARINT_MAX; off += n + 1) {
		n = strnlen(args + off, len - off);
		if (uv_size(n) + n > room)
			n = room - HALLOC_VARINT_MAX;
		room -= uv_size(n) + n;
		*last_len = n;
		argc++;
	}
	return argc;
}

void ha_agent_put_process(struct ha_agent_thread *t,
			  const struct ha_agent_process *pr)
{
	size_t room, exe_len = pr->exe_len, n, last_len, off = 0;
	uint64_t argc, i;
	unsigned char *p;

	room = HA_AGENT_RECORD_MAX - (1 + 10 * HALLOC_VARINT_MAX);
	if (exe_len > room / 2)
		exe_len = room / 2;
	room -= exe_len;
	argc = fit_args(pr->args, pr->args_len, room, &last_len);
	p = ha_agent_buf_begin_defs(t, HA_AGENT_RECORD_MAX);
	if (!p)
		return;
	*p++ = HALLOC_RECORD_TAG(HALLOC_REC_PROCESS, 0);
	p = put_seq(t, p, ha_agent_next_seq());
	p = halloc_put_uv(p, pr->pid);
	p = halloc_put_uv(p, pr->ppid);
	p = halloc_put_uv(p, pr->parent_stream);
	p = halloc_put_uv(p, pr->parent_seq);
	p = halloc_put_uv(p, pr->flags);
	p = halloc_put_uv(p, pr->start_ns);
	p = put_str(p, pr->exe, exe_len);
	p = halloc_put_uv(p, argc);
	for (i = 0; i < argc; i++, off += n + 1) {
		n = strnlen(pr->args + off, pr->args_len - off);
		p = put_str(p, pr->args + off, i + 1 == argc ? last_len : n);
	}
	ha_agent_buf_commit(t, p);
}
