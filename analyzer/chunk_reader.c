/*
 * analyzer/chunk_reader.c - decodes the records of one CHUNK frame (one
 * thread's buffer) into its stream's events, stacks and modules.
 *
 * Deltas (sequence, time, address) restart at 0 in every chunk, so a chunk
 * decodes on its own; the order of chunks in the file says nothing about
 * the order of events, which the replay takes from sequence numbers.
 * A record refers to a stack by id: the STACK record may come later in the
 * file (another thread's chunk, flushed later), so the stack is created
 * undefined on first mention and filled when its record comes.
 *
 * A chunk is read twice when the log is a file (event_merge.h): first
 * (ha_chunk_read, log->skip_events) for everything but the events, noting
 * where its events are; then (ha_chunk_events, k->out set) by the replay,
 * for its events only, in seq order with the other threads'. A record
 * kind has one reader below, called both times: it decodes its fields,
 * then changes the model only when !k->out (the first reading), and
 * hands events to push_event, which files them where the reading wants.
 */
#include <stdlib.h>
#include <string.h>

#include "analyzer/decode.h"
#include "analyzer/model.h"
#include "analyzer/types.h"
#include "analyzer/pages.h"
#include "halloc/log.h"

#define STACK_MEMO 32

struct stack_memo {
	uint64_t id;
	uint32_t index; /* global stack index + 1; 0: empty */
};

struct chunk {
	struct stack_memo stacks[STACK_MEMO];
	struct ha_log *log;
	struct ha_stream *stream;
	/* The replay's reading (ha_chunk_events): events go here, and the
	 * other records change nothing. */
	struct ha_event **out;
	size_t *nout, *out_cap;
	/* The first reading with log->skip_events: what the index needs. */
	uint64_t first_seq, last_seq;
	bool has_events, sorted;
	struct ha_cursor c;
	uint64_t seq;  /* of the previous record */
	uint64_t addr; /* previous address */
	uint64_t time; /* previous time (the events keep it) */
	bool first;
	const char *why;
	bool nomem;
};

static bool fail(struct chunk *k, const char *why)
{
	k->why = why;
	return false;
}

static bool nomem(struct chunk *k)
{
	k->nomem = true;
	return false;
}

static bool push_event(struct chunk *k, uint64_t seq, unsigned kind,
		       unsigned fn, uint64_t addr, uint64_t size,
		       uint32_t stack)
{
	struct ha_stream *s = k->stream;
	struct ha_event *e;

	if (k->out) {
		if (!HA_RESERVE(*k->out, *k->out_cap, *k->nout + 1))
			return nomem(k);
		e = &(*k->out)[(*k->nout)++];
		goto fill;
	}
	if (k->time > s->last_time)
		s->last_time = k->time;
	if (k->log->skip_events) {
		if (k->has_events && seq <= k->last_seq)
			k->sorted = false;
		if (!k->has_events)
			k->first_seq = seq;
		k->last_seq = seq;
		k->has_events = true;
		return true;
	}
	if (!HA_RESERVE(s->events, s->events_cap, s->nevents + 1))
		return nomem(k);
	e = &s->events[s->nevents++];
fill:
	e->seq = seq;
	e->addr = addr;
	e->size = size;
	e->stack = stack;
	e->kind = (uint8_t)kind;
	e->fn = (uint8_t)fn;
	e->reserved = 0;
	e->time = k->time;
	return true;
}

static bool stack_ref(struct chunk *k, uint64_t id, uint32_t *out)
{
	/* A stack id names the same stack for the whole stream: remembered
	 * per chunk, most lookups skip the stream's hash map. */
	struct stack_memo *m = &k->stacks[id % STACK_MEMO];

	if (m->index != 0 && m->id == id) {
		*out = m->index - 1;
		return true;
	}
	*out = ha_log_stack_ref(k->log, k->stream, id);
	if (*out == HA_NONE)
		return nomem(k);
	m->id = id;
	m->index = *out + 1;
	return true;
}

static bool read_process(struct chunk *k, uint64_t seq)
{
	struct ha_stream *s = k->stream;
	uint32_t pid, ppid, argc;
	uint64_t parent_stream, parent_seq, flags, start;
	const char *exe, **argv;
	size_t exe_len;

	if (!ha_get_u32(&k->c, &pid) || !ha_get_u32(&k->c, &ppid) ||
	    !ha_get_uv(&k->c, &parent_stream) ||
	    !ha_get_uv(&k->c, &parent_seq) || !ha_get_uv(&k->c, &flags) ||
	    !ha_get_uv(&k->c, &start) || !ha_get_str(&k->c, &exe, &exe_len) ||
	    !ha_get_count(&k->c, 1, &argc))
		return fail(k, "bad process record");
	argv = calloc(argc ? argc : 1, sizeof(*argv));
	if (!argv)
		return nomem(k);
	for (uint32_t i = 0; i < argc; i++) {
		const char *a;
		size_t len;

		if (!ha_get_str(&k->c, &a, &len)) {
			free(argv);
			return fail(k, "bad process record");
		}
		if (!(argv[i] = ha_intern(&k->log->strings, a, len))) {
			free(argv);
			return nomem(k);
		}
	}
	if (s->has_process) { /* a repeat says nothing new */
		free(argv);
		return true;
	}
	if (!(s->exe = ha_intern(&k->log->strings, exe, exe_len))) {
		free(argv);
		return nomem(k);
	}
	s->has_process = true;
	s->pid = pid;
	s->ppid = ppid;
	s->parent_stream = parent_stream;
	s->parent_seq = parent_seq;
	s->flags = flags;
	s->start_time = start;
	s->argv = argv;
	s->argc = argc;
	(void)seq;
	return true;
}

static bool read_module_load(struct chunk *k, uint64_t seq)
{
	struct ha_stream *s = k->stream;
	uint64_t id, bias;
	const char *path, *bid, *path_i, *bid_hex;
	size_t path_len, bid_len;
	uint32_t nsegs, modfile;
	size_t nsegs_before;
	struct ha_module *m;

	if (!ha_get_uv(&k->c, &id) || !ha_get_uv(&k->c, &bias) ||
	    !ha_get_str(&k->c, &path, &path_len) ||
	    !ha_get_str(&k->c, &bid, &bid_len) ||
	    !ha_get_count(&k->c, 2, &nsegs))
		return fail(k, "bad module record");
	if (k->out) { /* read before: only step over it */
		for (uint32_t i = 0; i < 2 * nsegs; i++)
			if (!ha_get_uv(&k->c, &id))
				return fail(k, "bad module record");
		return true;
	}
	path_i = ha_intern(&k->log->strings, path, path_len);
	bid_hex =
	    ha_log_build_id_hex(k->log, (const unsigned char *)bid, bid_len);
	if (!path_i || !bid_hex)
		return nomem(k);
	modfile = ha_log_modfile(k->log, path_i, bid_hex);
	if (modfile == HA_NONE ||
	    !HA_RESERVE(s->modules, s->modules_cap, s->nmodules + 1) ||
	    !HA_RESERVE(s->segments, s->segments_cap, s->nsegments + nsegs))
		return nomem(k);
	nsegs_before = s->nsegments;
	m = &s->modules[s->nmodules];
	m->id = id;
	m->load_seq = seq;
	m->unload_seq = UINT64_MAX;
	m->bias = bias;
	m->modfile = modfile;
	for (uint32_t i = 0; i < nsegs; i++) {
		uint64_t start, size;
		struct ha_segment *seg;

		if (!ha_get_uv(&k->c, &start) || !ha_get_uv(&k->c, &size)) {
			s->nsegments =
			    nsegs_before; /* no segment of no module */
			return fail(k, "bad module record");
		}
		if (size == 0 || start + size < start)
			continue; /* says nothing a lookup can use */
		seg = &s->segments[s->nsegments++];
		seg->start = start;
		seg->end = start + size;
		seg->max_end = 0;
		seg->module = (uint32_t)s->nmodules;
	}
	s->nmodules++;
	return true;
}

static bool read_module_unload(struct chunk *k, uint64_t seq)
{
	struct ha_stream *s = k->stream;
	uint64_t id;

	if (!ha_get_uv(&k->c, &id))
		return fail(k, "bad module unload record");
	if (k->out)
		return true;
	if (!HA_RESERVE(s->unloads, s->unloads_cap, s->nunloads + 1))
		return nomem(k);
	s->unloads[s->nunloads].id = id;
	s->unloads[s->nunloads].seq = seq;
	s->nunloads++;
	return true;
}

static bool read_stack(struct chunk *k, uint64_t seq)
{
	struct ha_log *log = k->log;
	uint64_t id, addr = 0;
	uint32_t n, index;
	struct ha_stack *st;

	if (!ha_get_uv(&k->c, &id) || !ha_get_count(&k->c, 1, &n))
		return fail(k, "bad stack record");
	if (n > HALLOC_DEPTH_MAX)
		return fail(k, "stack deeper than the format allows");
	if (!stack_ref(k, id, &index))
		return false;
	st = &log->stacks[index];
	if (!HA_RESERVE(log->frame_addrs, log->frames_cap, log->nframes + n))
		return nomem(k);
	for (uint32_t i = 0; i < n; i++) {
		int64_t d;

		if (!ha_get_sv(&k->c, &d))
			return fail(k, "bad stack record");
		addr += (uint64_t)d;
		log->frame_addrs[log->nframes + i] = addr;
	}
	if (st->defined) /* sent once per stream; a repeat changes nothing */
		return true;
	st->defined = true;
	st->seq = seq;
	st->first = log->nframes;
	st->nframes = n;
	log->nframes += n;
	return true;
}

/* What types.c said of a record of the in-process API. */
static bool typed(struct chunk *k, enum ha_result r)
{
	if (r == HA_ERR_NOMEM)
		return nomem(k);
	return r == HA_OK || fail(k, "bad typed-allocation record");
}

static bool read_alloc(struct chunk *k, uint64_t seq, unsigned fn)
{
	uint64_t dt, size, stack_id;
	int64_t da;
	uint32_t stack;

	if (!ha_get_uv(&k->c, &dt) || !ha_get_sv(&k->c, &da) ||
	    !ha_get_uv(&k->c, &size) || !ha_get_uv(&k->c, &stack_id))
		return fail(k, "bad alloc record");
	k->time += dt;
	k->addr += (uint64_t)da;
	/* The model takes the typed fields in at the first reading only. */
	if (fn == HALLOC_FN_HALLOC &&
	    !typed(k, ha_types_read_alloc(k->log, k->stream, seq, &k->c,
					  !k->out)))
		return false;
	return stack_ref(k, stack_id, &stack) &&
	       push_event(k, seq, HA_EV_ALLOC, fn, k->addr, size, stack);
}

static bool read_free(struct chunk *k, uint64_t seq, unsigned fn)
{
	uint64_t dt;
	int64_t da;

	if (!ha_get_uv(&k->c, &dt) || !ha_get_sv(&k->c, &da))
		return fail(k, "bad free record");
	k->time += dt;
	k->addr += (uint64_t)da;
	return push_event(k, seq, HA_EV_FREE, fn, k->addr, 0, HA_NONE);
}

static bool read_realloc(struct chunk *k, uint64_t seq, unsigned fn)
{
	uint64_t d2, dt, size, stack_id, old;
	int64_t dold, dnew;
	uint32_t stack;

	if (!ha_get_uv(&k->c, &d2) || !ha_get_uv(&k->c, &dt) ||
	    !ha_get_sv(&k->c, &dold) || !ha_get_sv(&k->c, &dnew) ||
	    !ha_get_uv(&k->c, &size) || !ha_get_uv(&k->c, &stack_id))
		return fail(k, "bad realloc record");
	if (d2 == 0 || seq + d2 < seq)
		return fail(k, "realloc's second sequence number does not "
			       "follow its first");
	k->time += dt;
	old = k->addr + (uint64_t)dold;
	k->addr = old + (uint64_t)dnew;
	return stack_ref(k, stack_id, &stack) &&
	       push_event(k, seq, HA_EV_FREE, HALLOC_FREE_REALLOC, old, 0,
			  HA_NONE) &&
	       push_event(k, seq + d2, HA_EV_ALLOC, fn, k->addr, size, stack);
}

static bool read_alloc_failed(struct chunk *k, uint64_t seq, unsigned fn)
{
	uint64_t dt, size, stack_id, err;
	uint32_t stack;

	if (!ha_get_uv(&k->c, &dt) || !ha_get_uv(&k->c, &size) ||
	    !ha_get_uv(&k->c, &stack_id) || !ha_get_uv(&k->c, &err))
		return fail(k, "bad failed-allocation record");
	k->time += dt;
	return stack_ref(k, stack_id, &stack) &&
	       push_event(k, seq, HA_EV_FAILED, fn, 0, size, stack);
}

/* Kept apart from the events: a refusal changes no count. */
static bool read_refused(struct chunk *k, uint64_t seq, unsigned fn)
{
	struct ha_stream *s = k->stream;
	uint64_t dt, size, stack_id, reason;
	struct ha_refusal *r;
	uint32_t stack;

	if (!ha_get_uv(&k->c, &dt) || !ha_get_uv(&k->c, &size) ||
	    !ha_get_uv(&k->c, &stack_id) || !ha_get_uv(&k->c, &reason) ||
	    reason > UINT8_MAX)
		return fail(k, "bad refused-allocation record");
	k->time += dt;
	if (k->out)
		return true; /* the replay's reading: not an event */
	if (k->time > s->last_time)
		s->last_time = k->time;
	if (!stack_ref(k, stack_id, &stack))
		return false;
	if (!HA_RESERVE(s->refusals, s->refusals_cap, s->nrefusals + 1))
		return nomem(k);
	r = &s->refusals[s->nrefusals++];
	*r = (struct ha_refusal){.seq = seq, .time = k->time, .size = size,
				 .stack = stack, .fn = (uint8_t)fn,
				 .reason = (uint8_t)reason};
	return true;
}

static bool read_record(struct chunk *k)
{
	unsigned tag = *k->c.p++;
	uint64_t delta, seq;

	if (!ha_get_uv(&k->c, &delta))
		return fail(k, "bad record header");
	if (!k->first && delta == 0)
		return fail(k,
			    "sequence numbers do not increase within a chunk");
	seq = k->seq + delta;
	if (seq < k->seq)
		return fail(k, "sequence number overflows");
	k->seq = seq;
	k->first = false;

	switch (HALLOC_RECORD_KIND(tag)) {
	case HALLOC_REC_PROCESS:
		return read_process(k, seq);
	case HALLOC_REC_MODULE_LOAD:
		return read_module_load(k, seq);
	case HALLOC_REC_MODULE_UNLOAD:
		return read_module_unload(k, seq);
	case HALLOC_REC_STACK:
		return read_stack(k, seq);
	case HALLOC_REC_ALLOC:
		return read_alloc(k, seq, HALLOC_RECORD_FN(tag));
	case HALLOC_REC_FREE:
		return read_free(k, seq, HALLOC_RECORD_FN(tag));
	case HALLOC_REC_REALLOC:
		return read_realloc(k, seq, HALLOC_RECORD_FN(tag));
	case HALLOC_REC_ALLOC_FAILED:
		return read_alloc_failed(k, seq, HALLOC_RECORD_FN(tag));
	case HALLOC_REC_REFUSED:
		return read_refused(k, seq, HALLOC_RECORD_FN(tag));
	case HALLOC_REC_TYPE:
		return typed(k, ha_types_read_type(k->log, k->stream, &k->c,
						   !k->out));
	case HALLOC_REC_PAGES: /* pages.c; the replay's reading steps over */
		switch (ha_page_read_record(k->out ? NULL : k->log, k->stream,
					    &k->c,
					    HALLOC_RECORD_FN(tag), seq,
					    &k->time, &k->addr, &k->why)) {
		case HA_OK:
			return true;
		case HA_ERR_NOMEM:
			return nomem(k);
		default:
			return false;
		}
	default:
		return fail(k, "unknown record kind");
	}
}

/* Decodes the chunk's records; on a bad one, *bad and *why say where and
 * why (the records before it took effect). */
static enum ha_result decode(struct chunk *k, const unsigned char *p,
			     size_t len, size_t *bad, const char **why)
{
	uint64_t stream_id;

	*bad = 0;
	if (len < HALLOC_CHUNK_HEADER_SIZE) {
		*why = "chunk shorter than its header";
		return HA_ERR_CORRUPT;
	}
	stream_id = ha_le64(p);
	if (stream_id == 0) {
		*why = "chunk of stream 0";
		return HA_ERR_CORRUPT;
	}
	k->stream = ha_log_stream(k->log, stream_id, ha_le32(p + 8));
	if (!k->stream)
		return HA_ERR_NOMEM;
	k->c.p = p + HALLOC_CHUNK_HEADER_SIZE;
	k->c.end = p + len;
	while (k->c.p < k->c.end) {
		const unsigned char *start = k->c.p;

		if (!read_record(k)) {
			if (k->nomem)
				return HA_ERR_NOMEM;
			*bad = (size_t)(start - p);
			*why = k->why;
			return HA_ERR_CORRUPT;
		}
	}
	return HA_OK;
}

/* With skip_events: where the chunk's events are, for the replay. */
static bool index_chunk(struct chunk *k, const unsigned char *p, size_t len)
{
	struct ha_log *log = k->log;
	struct ha_chunk_ref *ref;

	if (!k->has_events)
		return true;
	if (!HA_RESERVE(log->chunks, log->chunks_cap, log->nchunks + 1))
		return false;
	ref = &log->chunks[log->nchunks++];
	ref->at = log->payload_at;
	ref->len = (uint32_t)len;
	ref->first_seq = k->first_seq;
	ref->last_seq = k->last_seq;
	ref->stream = (uint32_t)(k->stream - log->streams);
	ref->slot = ha_le32(p + 16);
	ref->chunk_no = ha_le32(p + 20);
	ref->sorted = k->sorted;
	ref->events_only = false;
	return true;
}

enum ha_result ha_chunk_read(struct ha_log *log, const unsigned char *p,
			     size_t len, size_t *bad, const char **why)
{
	struct chunk k = {.log = log, .first = true, .sorted = true};
	enum ha_result res = decode(&k, p, len, bad, why);

	/* A bad record ends the chunk: what came before it still counts. */
	if ((res == HA_OK || res == HA_ERR_CORRUPT) && log->skip_events &&
	    !index_chunk(&k, p, res == HA_OK ? len : *bad))
		return HA_ERR_NOMEM;
	return res;
}

enum ha_result ha_chunk_events(struct ha_log *log, const unsigned char *p,
			       size_t len, struct ha_event **events, size_t *n,
			       size_t *cap)
{
	struct chunk k = {.log = log, .first = true};
	const char *why;
	size_t bad;
	enum ha_result res;

	k.out = events;
	k.nout = n;
	k.out_cap = cap;
	res = decode(&k, p, len, &bad, &why);
	/* The first reading found it whole up to len. */
	return res == HA_ERR_CORRUPT ? HA_OK : res;
}
