/*
 * analyzer/chunk_fast.c - CHUNK frames that hold plain events only, read
 * by one tight loop instead of chunk_reader.c's record readers: nearly
 * every chunk of a log (the agent marks them HALLOC_FRAME_EVENTS_ONLY; on
 * a malloc-heavy run 1611 of 1614), and both readings of each.
 *
 * "Plain events": ALLOC (but not halloc(type, n)'s, whose type fields the
 * model takes in), FREE, REALLOC, ALLOC_FAILED. Anything else, anything
 * chunk_reader.c would call corrupt, anything the fast varint reader does
 * not handle: these functions return false having changed nothing the
 * careful reading would not change the same way (stacks named, in the
 * same order), and the caller reads the chunk with chunk_reader.c. So a
 * chunk wrongly marked still reads right, and its numbers are the same.
 *
 * The first reading (with log->skip_events) needs of such a chunk only
 * what the replay's index needs (chunk_reader.c's index_chunk): its first
 * and last sequence numbers, whether they increase, and the stream's
 * latest time; it still names every stack it mentions, so stacks get the
 * indexes the careful reading gives them.
 *
 * The buffer must be followed by HA_SLACK readable bytes (decode.h).
 */
#include "analyzer/chunk_fast.h"
#include "analyzer/decode.h"
#include "halloc/log.h"

#define STACK_MEMO 32

struct fast {
	struct ha_log *log;
	struct ha_stream *stream;
	struct {
		uint64_t id;
		uint32_t index; /* global stack index + 1; 0: empty */
	} stacks[STACK_MEMO];
};

/* What chunk_reader.c's stack_ref does, with its own memo. */
static inline bool fast_stack(struct fast *f, uint64_t id, uint32_t *out)
{
	unsigned m = (unsigned)(id % STACK_MEMO);

	if (f->stacks[m].index != 0 && f->stacks[m].id == id) {
		*out = f->stacks[m].index - 1;
		return true;
	}
	*out = ha_log_stack_ref(f->log, f->stream, id);
	if (*out == HA_NONE)
		return false;
	f->stacks[m].id = id;
	f->stacks[m].index = *out + 1;
	return true;
}

static bool fast_open(struct fast *f, struct ha_log *log,
		      const unsigned char *p, size_t len)
{
	uint64_t stream_id;

	f->log = log;
	for (size_t i = 0; i < STACK_MEMO; i++)
		f->stacks[i].index = 0;
	if (len < HALLOC_CHUNK_HEADER_SIZE || !(stream_id = ha_le64(p)))
		return false;
	f->stream = ha_log_stream(log, stream_id, ha_le32(p + 8));
	return f->stream != NULL;
}

/* One plain event record, decoded. */
struct rec {
	unsigned kind, fn;
	uint64_t seq, seq2, time, addr, old, size;
	uint32_t stack;
};

/* An address or size the caller needs (`values`), or steps over. */
static inline __attribute__((always_inline)) const unsigned char *
value(const unsigned char *p, bool values, uint64_t *out)
{
	return values ? ha_fast_uv(p, out) : ha_fast_skip(p);
}

/*
 * Decodes the record at p into r (r->seq, r->time, r->addr hold the
 * chunk's previous values, and are updated); the cursor after it, or NULL
 * for anything chunk_reader.c should read. Without `values` (the first
 * reading), addresses and sizes are stepped over, not decoded.
 */
static inline __attribute__((always_inline)) const unsigned char *
fast_record(struct fast *f, const unsigned char *p, const unsigned char *end,
	    bool first, bool values, struct rec *r)
{
	uint64_t ua = 0, unew = 0;
	unsigned tag = *p++;
	uint64_t delta, dt, id = 0;

	if (!(p = ha_fast_uv(p, &delta)) || (!first && delta == 0) ||
	    r->seq + delta < r->seq)
		return NULL;
	r->seq += delta;
	r->kind = HALLOC_RECORD_KIND(tag);
	r->fn = HALLOC_RECORD_FN(tag);
	switch (r->kind) {
	case HALLOC_REC_ALLOC:
		if (r->fn == HALLOC_FN_HALLOC || !(p = ha_fast_uv(p, &dt)) ||
		    !(p = value(p, values, &ua)) ||
		    !(p = value(p, values, &r->size)) ||
		    !(p = ha_fast_uv(p, &id)))
			return NULL;
		r->addr += (uint64_t)halloc_unzigzag(ua);
		break;
	case HALLOC_REC_FREE:
		if (!(p = ha_fast_uv(p, &dt)) || !(p = value(p, values, &ua)))
			return NULL;
		r->addr += (uint64_t)halloc_unzigzag(ua);
		break;
	case HALLOC_REC_REALLOC:
		if (!(p = ha_fast_uv(p, &r->seq2)) ||
		    !(p = ha_fast_uv(p, &dt)) || !(p = value(p, values, &ua)) ||
		    !(p = value(p, values, &unew)) ||
		    !(p = value(p, values, &r->size)) ||
		    !(p = ha_fast_uv(p, &id)) || r->seq2 == 0 ||
		    r->seq + r->seq2 < r->seq)
			return NULL;
		r->seq2 += r->seq;
		r->old = r->addr + (uint64_t)halloc_unzigzag(ua);
		r->addr = r->old + (uint64_t)halloc_unzigzag(unew);
		break;
	case HALLOC_REC_ALLOC_FAILED:
		if (!(p = ha_fast_uv(p, &dt)) ||
		    !(p = value(p, values, &r->size)) ||
		    !(p = ha_fast_uv(p, &id)) || !(p = ha_fast_skip(p)))
			return NULL;
		break;
	default:
		return NULL;
	}
	/* A field ran past the end (into the slack): the careful reading
	 * says which record is bad and why. */
	if (p > end)
		return NULL;
	r->time += dt;
	if (r->kind != HALLOC_REC_FREE && !fast_stack(f, id, &r->stack))
		return NULL;
	return p;
}

bool ha_chunk_fast_index(struct ha_log *log, const unsigned char *buf,
			 size_t len)
{
	const unsigned char *p = buf + HALLOC_CHUNK_HEADER_SIZE, *end;
	struct fast f;
	struct rec r = {0};
	uint64_t first_seq = 0, last_seq = 0;
	bool sorted = true;
	struct ha_chunk_ref *ref;

	if (!fast_open(&f, log, buf, len))
		return false;
	end = buf + len;
	for (bool first = true; p < end; first = false) {
		if (!(p = fast_record(&f, p, end, first, false, &r)))
			return false;
		/* A realloc is two events: its free at seq, its alloc at
		 * seq2; chunk_reader.c's push_event sees both. */
		if (!first && r.seq <= last_seq)
			sorted = false;
		if (first)
			first_seq = r.seq;
		last_seq = r.seq;
		if (r.kind == HALLOC_REC_REALLOC)
			last_seq = r.seq2;
	}
	if (p == buf + HALLOC_CHUNK_HEADER_SIZE)
		return true; /* no events: nothing to index */
	if (!HA_RESERVE(log->chunks, log->chunks_cap, log->nchunks + 1))
		return false;
	/* Times never go back within a chunk: the last is its latest. */
	if (r.time > f.stream->last_time)
		f.stream->last_time = r.time;
	ref = &log->chunks[log->nchunks++];
	ref->at = log->payload_at;
	ref->len = (uint32_t)len;
	ref->first_seq = first_seq;
	ref->last_seq = last_seq;
	ref->stream = (uint32_t)(f.stream - log->streams);
	ref->slot = ha_le32(buf + 16);
	ref->chunk_no = ha_le32(buf + 20);
	ref->sorted = sorted;
	ref->events_only = true;
	return true;
}

static void put(struct ha_event *e, uint64_t seq, unsigned kind, unsigned fn,
		uint64_t addr, uint64_t size, uint32_t stack, uint64_t time)
{
	*e = (struct ha_event){.seq = seq,
			       .addr = addr,
			       .size = size,
			       .stack = stack,
			       .kind = (uint8_t)kind,
			       .fn = (uint8_t)fn,
			       .time = time};
}

bool ha_chunk_fast_events(struct ha_log *log, const unsigned char *buf,
			  size_t len, struct ha_event **events, size_t *n,
			  size_t *cap)
{
	const unsigned char *p = buf + HALLOC_CHUNK_HEADER_SIZE, *end;
	size_t start = *n, k = *n;
	struct fast f;
	struct rec r = {0};

	/* Room for every event it can hold: a record takes 4 bytes at
	 * least, a realloc (two events) 8. */
	if (!fast_open(&f, log, buf, len) ||
	    !HA_RESERVE(*events, *cap, k + len / 4 + 2))
		return false;
	end = buf + len;
	for (bool first = true; p < end; first = false) {
		struct ha_event *e;

		if (!(p = fast_record(&f, p, end, first, true, &r))) {
			*n = start;
			return false;
		}
		e = *events + k;
		switch (r.kind) {
		case HALLOC_REC_ALLOC:
			put(e, r.seq, HA_EV_ALLOC, r.fn, r.addr, r.size,
			    r.stack, r.time);
			break;
		case HALLOC_REC_FREE:
			put(e, r.seq, HA_EV_FREE, r.fn, r.addr, 0, HA_NONE,
			    r.time);
			break;
		case HALLOC_REC_REALLOC:
			put(e, r.seq, HA_EV_FREE, HALLOC_FREE_REALLOC, r.old, 0,
			    HA_NONE, r.time);
			put(++e, r.seq2, HA_EV_ALLOC, r.fn, r.addr, r.size,
			    r.stack, r.time);
			k++;
			break;
		default: /* HALLOC_REC_ALLOC_FAILED */
			put(e, r.seq, HA_EV_FAILED, r.fn, 0, r.size, r.stack,
			    r.time);
			break;
		}
		k++;
	}
	*n = k;
	return true;
}
