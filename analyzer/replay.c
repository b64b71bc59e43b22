/*
 * analyzer/replay.c - replays each stream's events in sequence order and
 * counts the way Valgrind's HEAP SUMMARY does.
 *
 * Live blocks sit in an open-addressing table keyed by address. A forked
 * child starts from its parent's state as of the fork (events with
 * seq <= the PROCESS record's parent seq): the parent's live blocks, which
 * the child may free or leak, and its counters, as Valgrind's child
 * carries the parent's (its HEAP SUMMARY counts the parent's allocations
 * before the fork too). The replay of a parent stops at each fork point and
 * replays the child from a copy of its state, so only one copy per level
 * of forking is alive at a time.
 *
 * The log is the agent's record of what really happened, so it is replayed
 * as is: a free of an address not live still counts as a free (Valgrind
 * counts invalid frees), and an allocation at an address still live
 * replaces the old block (a free the agent did not see). Recording that
 * attached to a running process (HALLOC_TRACE_ATTACHED) sees frees of
 * blocks allocated before it began: those are counted apart.
 */
#include <stdlib.h>
#include <string.h>

#include "analyzer/analysis.h"
#include "halloc/log.h"

/* Deeper fork chains than this replay their children from scratch. */
#define MAX_FORK_DEPTH 256

/* ---- sorting events by sequence number ---------------------------------- */

/* Stable LSD radix sort on seq - min, in as few passes of at most 16 bits
 * as the range of sequence numbers needs. Each thread's events come
 * sorted already; a single-threaded stream skips it. */
static bool sort_events(struct ha_event *ev, size_t n)
{
	uint64_t lo = UINT64_MAX, hi = 0;
	struct ha_event *tmp, *src = ev, *dst;
	bool sorted = true;
	unsigned bits = 0, passes, width;
	size_t *count;

	for (size_t i = 0; i < n; i++) {
		if (i > 0 && ev[i].seq < ev[i - 1].seq)
			sorted = false;
		if (ev[i].seq < lo)
			lo = ev[i].seq;
		if (ev[i].seq > hi)
			hi = ev[i].seq;
	}
	if (sorted)
		return true;
	for (uint64_t range = hi - lo; range; range >>= 1)
		bits++;
	passes = (bits + 15) / 16;
	width = (bits + passes - 1) / passes;
	tmp = malloc(n * sizeof(*tmp));
	count = malloc(((size_t)1 << width) * sizeof(*count));
	if (!tmp || !count) {
		free(tmp);
		free(count);
		return false;
	}
	dst = tmp;
	for (unsigned p = 0; p < passes; p++) {
		unsigned shift = width * p;
		uint64_t mask = ((uint64_t)1 << width) - 1;
		size_t pos = 0;
		struct ha_event *t;

		memset(count, 0, ((size_t)1 << width) * sizeof(*count));
		for (size_t i = 0; i < n; i++)
			count[((src[i].seq - lo) >> shift) & mask]++;
		for (size_t d = 0; d <= mask; d++) {
			size_t c = count[d];

			count[d] = pos;
			pos += c;
		}
		for (size_t i = 0; i < n; i++)
			dst[count[((src[i].seq - lo) >> shift) & mask]++] =
			    src[i];
		t = src;
		src = dst;
		dst = t;
	}
	if (src != ev)
		memcpy(ev, src, n * sizeof(*ev));
	free(tmp);
	free(count);
	return true;
}

/* ---- live blocks -----------------------------------------------------------
 */

struct block {
	uint64_t addr, size;
	uint32_t stack;
	uint32_t used;
};

struct live {
	struct block *slots;
	size_t mask; /* slots - 1 */
	size_t count;
	uint64_t bytes;
};

static size_t home(const struct live *t, uint64_t addr)
{
	return ha_hash64(addr) & t->mask;
}

/* The slot holding addr, or SIZE_MAX. */
static size_t live_find(const struct live *t, uint64_t addr)
{
	if (!t->slots)
		return SIZE_MAX;
	for (size_t i = home(t, addr);; i = (i + 1) & t->mask) {
		if (!t->slots[i].used)
			return SIZE_MAX;
		if (t->slots[i].addr == addr)
			return i;
	}
}

static bool live_grow(struct live *t)
{
	size_t n = t->slots ? (t->mask + 1) * 2 : 1024;
	struct block *old = t->slots;
	size_t old_n = t->slots ? t->mask + 1 : 0;

	t->slots = calloc(n, sizeof(*t->slots));
	if (!t->slots) {
		t->slots = old;
		return false;
	}
	t->mask = n - 1;
	for (size_t i = 0; i < old_n; i++) {
		size_t j;

		if (!old[i].used)
			continue;
		for (j = home(t, old[i].addr); t->slots[j].used;
		     j = (j + 1) & t->mask)
			;
		t->slots[j] = old[i];
	}
	free(old);
	return true;
}

/* addr is not in the table. */
static bool live_insert(struct live *t, uint64_t addr, uint64_t size,
			uint32_t stack)
{
	size_t i;

	if ((!t->slots || (t->count + 1) * 2 > t->mask + 1) && !live_grow(t))
		return false;
	for (i = home(t, addr); t->slots[i].used; i = (i + 1) & t->mask)
		;
	t->slots[i] = (struct block){addr, size, stack, 1};
	t->count++;
	t->bytes += size;
	return true;
}

/* Backward-shift deletion: no tombstones, probes stay short. */
static void live_remove(struct live *t, size_t i)
{
	size_t j = i;

	t->count--;
	t->bytes -= t->slots[i].size;
	for (;;) {
		size_t k;

		j = (j + 1) & t->mask;
		if (!t->slots[j].used)
			break;
		k = home(t, t->slots[j].addr);
		/* Move j into the hole at i unless its home lies in (i, j]. */
		if ((j > i && (k <= i || k > j)) ||
		    (j < i && k <= i && k > j)) {
			t->slots[i] = t->slots[j];
			i = j;
		}
	}
	t->slots[i].used = 0;
}

static bool live_copy(struct live *dst, const struct live *src)
{
	*dst = *src;
	if (!src->slots)
		return true;
	dst->slots = malloc((src->mask + 1) * sizeof(*src->slots));
	if (!dst->slots)
		return false;
	memcpy(dst->slots, src->slots, (src->mask + 1) * sizeof(*src->slots));
	return true;
}

/* ---- one stream's replay
 * ------------------------------------------------------ */

struct site_acc {
	uint64_t allocations, bytes, live, peak;
	uint64_t leaked_bytes, leaked_blocks, best_bytes;
	uint32_t best_stack;
	bool touched;
};

/* Per-site counters of one replay; one set per level of forking. */
struct level {
	struct site_acc *acc;
	uint32_t *touched;
	size_t ntouched;
};

/* A forked stream, under its parent. */
struct kid {
	uint32_t parent, stream;
	uint64_t parent_seq;
};

struct replayer {
	struct ha_log *log;
	bool attached; /* recording began in a running process */
	struct ha_process *procs;
	struct kid *kids;   /* streams with a parent, by (parent, parent seq) */
	size_t *kids_start; /* per stream: its children are kids[start, end) */
	size_t *kids_end;
	bool *done;
	struct level levels[MAX_FORK_DEPTH + 1];
};

struct state {
	struct live live;
	struct ha_summary sum; /* counters and peak; live bytes in `live` */
};

static struct site_acc *touch(struct level *lv, uint32_t site)
{
	struct site_acc *a = &lv->acc[site];

	if (!a->touched) {
		memset(a, 0, sizeof(*a));
		a->touched = true;
		a->best_stack = HA_NONE;
		lv->touched[lv->ntouched++] = site;
	}
	return a;
}

static void site_live_add(struct level *lv, uint32_t site, uint64_t size)
{
	struct site_acc *a = touch(lv, site);

	a->live += size;
	if (a->live > a->peak)
		a->peak = a->live;
}

static bool apply(struct replayer *r, struct level *lv, struct state *st,
		  const struct ha_event *e)
{
	const struct ha_stack *stacks = r->log->stacks;
	size_t i;

	switch (e->kind) {
	case HA_EV_ALLOC:
		i = live_find(&st->live, e->addr);
		if (i != SIZE_MAX) {
			lv->acc[stacks[st->live.slots[i].stack].site].live -=
			    st->live.slots[i].size;
			live_remove(&st->live, i);
		}
		if (!live_insert(&st->live, e->addr, e->size, e->stack))
			return false;
		st->sum.allocations++;
		st->sum.bytes_allocated += e->size;
		touch(lv, stacks[e->stack].site)->allocations++;
		lv->acc[stacks[e->stack].site].bytes += e->size;
		site_live_add(lv, stacks[e->stack].site, e->size);
		if (st->live.bytes > st->sum.peak_bytes) {
			st->sum.peak_bytes = st->live.bytes;
			st->sum.peak_blocks = st->live.count;
		}
		break;
	case HA_EV_FREE:
		i = live_find(&st->live, e->addr);
		if (i == SIZE_MAX) {
			st->sum.unmatched_frees++;
			/* Attached: a block from before recording, apart. */
			if (!r->attached)
				st->sum.frees++;
			break;
		}
		st->sum.frees++;
		lv->acc[stacks[st->live.slots[i].stack].site].live -=
		    st->live.slots[i].size;
		live_remove(&st->live, i);
		break;
	case HA_EV_FAILED:
		st->sum.failed_allocations++;
		break;
	}
	return true;
}

static int cmp_leak(const void *a, const void *b)
{
	const struct ha_leak *x = a, *y = b;

	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	if (x->blocks != y->blocks)
		return x->blocks > y->blocks ? -1 : 1;
	return x->site < y->site ? -1 : x->site > y->site;
}

static int cmp_site_stats(const void *a, const void *b)
{
	const struct ha_site_stats *x = a, *y = b;

	if (x->bytes_allocated != y->bytes_allocated)
		return x->bytes_allocated > y->bytes_allocated ? -1 : 1;
	if (x->leaked_bytes != y->leaked_bytes)
		return x->leaked_bytes > y->leaked_bytes ? -1 : 1;
	return x->site < y->site ? -1 : x->site > y->site;
}

/* Charges every block live at the end to its site and picks, per site,
 * the stack holding the most of its bytes. */
static bool group_leaks(struct replayer *r, struct level *lv,
			const struct live *t)
{
	const struct ha_stack *stacks = r->log->stacks;
	struct ha_map by_stack = {0};
	struct ha_leak *per_stack = NULL; /* site unused here */
	size_t n = 0, cap = 0;
	bool ok = true;

	for (size_t i = 0; t->slots && i <= t->mask && ok; i++) {
		const struct block *b = &t->slots[i];
		struct site_acc *a;
		uint32_t k;

		if (!b->used)
			continue;
		a = touch(lv, stacks[b->stack].site);
		a->leaked_bytes += b->size;
		a->leaked_blocks++;
		k = ha_map_get(&by_stack, b->stack);
		if (k == HA_NONE) {
			ok = HA_RESERVE(per_stack, cap, n + 1) &&
			     ha_map_put(&by_stack, b->stack, (uint32_t)n);
			if (!ok)
				break;
			k = (uint32_t)n++;
			per_stack[k] =
			    (struct ha_leak){0, 0, HA_NONE, b->stack};
		}
		per_stack[k].bytes += b->size;
		per_stack[k].blocks++;
	}
	for (size_t k = 0; k < n && ok; k++) {
		struct site_acc *a = &lv->acc[stacks[per_stack[k].stack].site];

		if (a->best_stack == HA_NONE ||
		    per_stack[k].bytes > a->best_bytes ||
		    (per_stack[k].bytes == a->best_bytes &&
		     per_stack[k].stack < a->best_stack)) {
			a->best_stack = per_stack[k].stack;
			a->best_bytes = per_stack[k].bytes;
		}
	}
	free(per_stack);
	ha_map_free(&by_stack);
	return ok;
}

static bool finish(struct replayer *r, struct level *lv, struct state *st,
		   uint32_t stream)
{
	struct ha_process *p = &r->procs[stream];
	bool exec = r->log->streams[stream].end == HA_END_EXEC;

	st->sum.end_bytes = st->live.bytes;
	st->sum.end_blocks = st->live.count;
	/* An image replaced by exec gives all its memory back. */
	if (!exec) {
		st->sum.leaked_bytes = st->live.bytes;
		st->sum.leaked_blocks = st->live.count;
		if (!group_leaks(r, lv, &st->live))
			return false;
	}
	p->summary = st->sum;
	p->leaks = calloc(lv->ntouched ? lv->ntouched : 1, sizeof(*p->leaks));
	p->sites = calloc(lv->ntouched ? lv->ntouched : 1, sizeof(*p->sites));
	if (!p->leaks || !p->sites)
		return false;
	for (size_t i = 0; i < lv->ntouched; i++) {
		uint32_t site = lv->touched[i];
		struct site_acc *a = &lv->acc[site];

		if (a->leaked_blocks)
			p->leaks[p->nleaks++] =
			    (struct ha_leak){a->leaked_bytes, a->leaked_blocks,
					     site, a->best_stack};
		p->sites[p->nsites++] = (struct ha_site_stats){
		    site,    a->allocations,  a->bytes,
		    a->peak, a->leaked_bytes, a->leaked_blocks};
		a->touched = false;
	}
	lv->ntouched = 0;
	qsort(p->leaks, p->nleaks, sizeof(*p->leaks), cmp_leak);
	qsort(p->sites, p->nsites, sizeof(*p->sites), cmp_site_stats);
	return true;
}

static bool level_ready(struct replayer *r, unsigned depth)
{
	struct level *lv = &r->levels[depth];
	size_t n = r->log->nsites ? r->log->nsites : 1;

	if (lv->acc)
		return true;
	lv->acc = calloc(n, sizeof(*lv->acc));
	lv->touched = malloc(n * sizeof(*lv->touched));
	return lv->acc && lv->touched;
}

static bool replay_stream(struct replayer *r, uint32_t stream,
			  const struct state *parent, unsigned depth);

static bool fork_child(struct replayer *r, uint32_t child,
		       const struct state *st, unsigned depth)
{
	/* Too deep to follow: ha_replay replays it later, from nothing. */
	if (r->done[child] || depth >= MAX_FORK_DEPTH)
		return true;
	return replay_stream(r, child, st, depth + 1);
}

static bool replay_stream(struct replayer *r, uint32_t stream,
			  const struct state *parent, unsigned depth)
{
	struct ha_stream *s = &r->log->streams[stream];
	struct level *lv = &r->levels[depth];
	struct state st = {0};
	size_t kid = r->kids_start[stream];
	bool ok = true;

	r->done[stream] = true;
	if (!level_ready(r, depth) || !sort_events(s->events, s->nevents))
		return false;
	if (parent) {
		const struct live *t = &parent->live;

		if (!live_copy(&st.live, t))
			return false;
		st.sum = parent->sum;
		r->procs[stream].inherited = parent->sum;
		st.sum.peak_bytes = t->bytes;
		st.sum.peak_blocks = t->count;
		for (size_t i = 0; t->slots && i <= t->mask; i++)
			if (t->slots[i].used)
				site_live_add(
				    lv, r->log->stacks[t->slots[i].stack].site,
				    t->slots[i].size);
	}
	for (size_t i = 0; i < s->nevents && ok; i++) {
		const struct ha_event *e = &s->events[i];

		/* A child forked at seq Q has seen every event up to Q. */
		while (ok && kid < r->kids_end[stream] &&
		       r->kids[kid].parent_seq < e->seq)
			ok = fork_child(r, r->kids[kid++].stream, &st, depth);
		ok = ok && apply(r, lv, &st, e);
	}
	while (ok && kid < r->kids_end[stream])
		ok = fork_child(r, r->kids[kid++].stream, &st, depth);
	ok = ok && finish(r, lv, &st, stream);
	free(st.live.slots);
	/* Reports need the numbers, not the events. */
	free(s->events);
	s->events = NULL;
	s->nevents = s->events_cap = 0;
	return ok;
}

/* ---- who forked whom
 * ------------------------------------------------------------ */

static uint32_t parent_of(const struct ha_log *log, uint32_t i)
{
	const struct ha_stream *s = &log->streams[i];
	uint32_t p;

	if (!s->has_process || s->parent_stream == 0)
		return HA_NONE;
	p = ha_map_get(&log->stream_ids, s->parent_stream);
	return p == i ? HA_NONE : p;
}

static int cmp_kid(const void *a, const void *b)
{
	const struct kid *x = a, *y = b;

	if (x->parent != y->parent)
		return x->parent < y->parent ? -1 : 1;
	if (x->parent_seq != y->parent_seq)
		return x->parent_seq < y->parent_seq ? -1 : 1;
	return x->stream < y->stream ? -1 : x->stream > y->stream;
}

enum ha_result ha_replay(struct ha_log *log, struct ha_process *procs)
{
	struct replayer r = {.log = log, .procs = procs};
	size_t n = log->nstreams, nkids = 0;
	bool ok;

	r.attached = log->trace_flags & HALLOC_TRACE_ATTACHED;
	r.kids = malloc((n ? n : 1) * sizeof(*r.kids));
	r.kids_start = calloc(n ? n : 1, sizeof(*r.kids_start));
	r.kids_end = calloc(n ? n : 1, sizeof(*r.kids_end));
	r.done = calloc(n ? n : 1, sizeof(*r.done));
	ok = r.kids && r.kids_start && r.kids_end && r.done;
	for (uint32_t i = 0; ok && i < n; i++) {
		uint32_t p = parent_of(log, i);

		if (p != HA_NONE)
			r.kids[nkids++] =
			    (struct kid){p, i, log->streams[i].parent_seq};
	}
	if (ok) {
		qsort(r.kids, nkids, sizeof(*r.kids), cmp_kid);
		for (size_t k = nkids; k-- > 0;)
			r.kids_start[r.kids[k].parent] = k;
		for (size_t k = 0; k < nkids; k++)
			r.kids_end[r.kids[k].parent] = k + 1;
	}
	/* Roots first; then what they did not reach (a loop of parents, or
	 * forks nested too deep), from scratch. */
	for (uint32_t i = 0; ok && i < n; i++)
		if (!r.done[i] && parent_of(log, i) == HA_NONE)
			ok = replay_stream(&r, i, NULL, 0);
	for (uint32_t i = 0; ok && i < n; i++)
		if (!r.done[i])
			ok = replay_stream(&r, i, NULL, 0);
	for (unsigned d = 0; d <= MAX_FORK_DEPTH; d++) {
		free(r.levels[d].acc);
		free(r.levels[d].touched);
	}
	free(r.kids);
	free(r.kids_start);
	free(r.kids_end);
	free(r.done);
	return ok ? HA_OK : HA_ERR_NOMEM;
}
