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
 *
 * A sampled log (TRACE_INFO's sample interval) holds some of the blocks
 * and the frees of those: each block counts as the blocks and bytes it
 * stands for (analyzer/sample.h), in every number but failures and frees
 * of unknown blocks, so the report's numbers are estimates of the run's.
 */
#include <stdlib.h>
#include <string.h>

#include "analyzer/analysis.h"
#include "analyzer/event_merge.h"
#include "analyzer/live_blocks.h"
#include "analyzer/sample.h"
#include "halloc/log.h"

/* Deeper fork chains than this replay their children from scratch. */
#define MAX_FORK_DEPTH 256

/* ---- one stream's replay
 * ------------------------------------------------------ */

struct site_acc {
	uint64_t allocations, bytes, live, peak;
	/* live blocks; the site's live bytes and blocks when the heap last
	 * reached a new peak, kept by the first change after it (epoch) */
	uint64_t live_blocks, at_peak, at_peak_blocks, epoch;
	uint64_t leaked_bytes, leaked_blocks, best_bytes;
	uint64_t leak_first, leak_last; /* its leaked blocks' alloc times */
	uint64_t temporary;
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
	struct ha_merge_plan *plan;
	bool attached; /* recording began in a running process */
	uint64_t sample; /* the log's sample interval; 0: every event */
	struct ha_process *procs;
	struct kid *kids;   /* streams with a parent, by (parent, parent seq) */
	size_t *kids_start; /* per stream: its children are kids[start, end) */
	size_t *kids_end;
	bool *done;
	struct level levels[MAX_FORK_DEPTH + 1];
};

struct state {
	struct ha_live live;
	struct ha_summary sum; /* counters and peak; live bytes in `live` */
	uint64_t epoch;        /* how many times the heap reached a new peak */
	/* the last allocation, while no other came after it: freed now, it
	 * is a temporary allocation */
	uint64_t last_alloc, last_alloc_size;
	bool last_alloc_open;
	uint64_t sizes[HA_SIZE_BUCKETS], temporary_sizes[HA_SIZE_BUCKETS];
	struct ha_type_state types; /* memory by type (types.c) */
};

static struct site_acc *touch(struct level *lv, uint32_t site)
{
	struct site_acc *a = &lv->acc[site];

	if (!a->touched) {
		memset(a, 0, sizeof(*a));
		a->touched = true;
		a->best_stack = HA_NONE;
		a->leak_first = UINT64_MAX;
		lv->touched[lv->ntouched++] = site;
	}
	return a;
}

/*
 * A site's live bytes change. The first change after the heap reached a
 * new peak keeps the value the site had then, so at the end a site's share
 * of the peak is that kept value, or its live bytes if it has not changed
 * since: the peak's contributors in O(1) per event, no snapshots.
 */
static void site_live_change(struct level *lv, const struct state *st,
			     uint32_t site, uint64_t size, uint32_t blocks,
			     bool add)
{
	struct site_acc *a = touch(lv, site);

	if (a->epoch != st->epoch) {
		a->at_peak = a->live;
		a->at_peak_blocks = a->live_blocks;
		a->epoch = st->epoch;
	}
	if (add) {
		a->live += size;
		a->live_blocks += blocks;
	} else {
		a->live -= size;
		a->live_blocks -= blocks;
	}
	if (a->live > a->peak)
		a->peak = a->live;
}

static bool apply(struct replayer *r, struct level *lv, struct state *st,
		  const struct ha_event *e)
{
	const struct ha_stack *stacks = r->log->stacks;
	struct ha_block old, *b;
	uint64_t blocks = 1, bytes = e->size;
	size_t i;

	switch (e->kind) {
	case HA_EV_ALLOC:
		if (r->sample)
			ha_sample_scale(r->sample, e->size, e->addr ^ e->seq,
					&blocks, &bytes);
		/* At an address still live, the new block replaces the old. */
		if (ha_live_put(&st->live, e->addr, bytes, (uint32_t)blocks,
				e->stack, e->time, &old) == SIZE_MAX)
			return false;
		if (old.used) {
			site_live_change(lv, st, stacks[old.stack].site,
					 old.size, old.used, false);
			ha_types_on_free(&st->types, e->addr, old.size,
					 old.used);
		}
		if (!ha_types_on_alloc(&st->types, e, blocks, bytes))
			return false;
		st->sum.allocations += blocks;
		st->sum.bytes_allocated += bytes;
		st->sizes[ha_size_bucket(e->size)] += blocks;
		st->last_alloc = e->addr;
		st->last_alloc_size = e->size;
		st->last_alloc_open = true;
		touch(lv, stacks[e->stack].site)->allocations += blocks;
		lv->acc[stacks[e->stack].site].bytes += bytes;
		site_live_change(lv, st, stacks[e->stack].site, bytes,
				 (uint32_t)blocks, true);
		if (st->live.bytes > st->sum.peak_bytes) {
			st->epoch++;
			st->sum.peak_bytes = st->live.bytes;
			st->sum.peak_blocks = st->live.count;
			st->sum.peak_time_us = e->time;
		}
		break;
	case HA_EV_FREE:
		i = ha_live_find(&st->live, e->addr);
		if (i == SIZE_MAX) {
			st->sum.unmatched_frees++;
			/* Attached: a block from before recording, apart. */
			if (!r->attached)
				st->sum.frees++;
			break;
		}
		b = &st->live.slots[i];
		st->sum.frees += b->used;
		if (st->last_alloc_open && st->last_alloc == e->addr) {
			st->sum.temporary += b->used;
			st->temporary_sizes[ha_size_bucket(
			    st->last_alloc_size)] += b->used;
			lv->acc[stacks[b->stack].site].temporary += b->used;
		}
		st->last_alloc_open = false;
		site_live_change(lv, st, stacks[b->stack].site, b->size,
				 b->used, false);
		ha_types_on_free(&st->types, e->addr, b->size, b->used);
		ha_live_remove(&st->live, i);
		break;
	case HA_EV_FAILED:
		st->sum.failed_allocations++;
		break;
	}
	return true;
}

/* Leak groups in report order: most bytes, then most blocks, then site. */
int ha_leak_compare(const void *a, const void *b)
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

static int cmp_peak_site(const void *a, const void *b)
{
	const struct ha_peak_site *x = a, *y = b;

	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	return x->site < y->site ? -1 : x->site > y->site;
}

/* Charges every block live at the end to its site and picks, per site,
 * the stack holding the most of its bytes. The per stack totals go to
 * p->stack_leaks (suppressions match stacks, not sites). */
static bool group_leaks(struct replayer *r, struct level *lv,
			const struct ha_live *t, struct ha_process *p)
{
	const struct ha_stack *stacks = r->log->stacks;
	struct ha_map by_stack = {0};
	struct ha_leak *per_stack = NULL;
	size_t n = 0, cap = 0;
	bool ok = true;

	for (size_t i = 0; t->slots && i <= t->mask && ok; i++) {
		const struct ha_block *b = &t->slots[i];
		struct site_acc *a;
		uint32_t k;

		if (!b->used)
			continue;
		a = touch(lv, stacks[b->stack].site);
		a->leaked_bytes += b->size;
		a->leaked_blocks += b->used;
		k = ha_map_get(&by_stack, b->stack);
		if (k == HA_NONE) {
			ok = HA_RESERVE(per_stack, cap, n + 1) &&
			     ha_map_put(&by_stack, b->stack, (uint32_t)n);
			if (!ok)
				break;
			k = (uint32_t)n++;
			per_stack[k] = (struct ha_leak){
			    0, 0, stacks[b->stack].site, b->stack, UINT64_MAX,
			    0};
		}
		if (b->time < per_stack[k].first_time)
			per_stack[k].first_time = b->time;
		if (b->time > per_stack[k].last_time)
			per_stack[k].last_time = b->time;
		if (b->time < a->leak_first)
			a->leak_first = b->time;
		if (b->time > a->leak_last)
			a->leak_last = b->time;
		per_stack[k].bytes += b->size;
		per_stack[k].blocks += b->used;
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
	ha_map_free(&by_stack);
	if (!ok) {
		free(per_stack);
		return false;
	}
	p->stack_leaks = per_stack;
	p->nstack_leaks = n;
	return true;
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
		if (!group_leaks(r, lv, &st->live, p))
			return false;
	}
	if (!ha_types_finish(&st->types, exec, &p->types))
		return false;
	p->summary = st->sum;
	memcpy(p->sizes, st->sizes, sizeof(p->sizes));
	memcpy(p->temporary_sizes, st->temporary_sizes,
	       sizeof(p->temporary_sizes));
	p->leaks = calloc(lv->ntouched ? lv->ntouched : 1, sizeof(*p->leaks));
	p->sites = calloc(lv->ntouched ? lv->ntouched : 1, sizeof(*p->sites));
	p->peak_sites =
	    calloc(lv->ntouched ? lv->ntouched : 1, sizeof(*p->peak_sites));
	if (!p->leaks || !p->sites || !p->peak_sites)
		return false;
	for (size_t i = 0; i < lv->ntouched; i++) {
		uint32_t site = lv->touched[i];
		struct site_acc *a = &lv->acc[site];

		if (a->leaked_blocks)
			p->leaks[p->nleaks++] =
			    (struct ha_leak){a->leaked_bytes, a->leaked_blocks,
					     site,	      a->best_stack,
					     a->leak_first,   a->leak_last};
		p->sites[p->nsites++] = (struct ha_site_stats){
		    site,    a->allocations,  a->bytes,
		    a->peak, a->leaked_bytes, a->leaked_blocks, a->temporary};
		/* unchanged since the last peak: what it holds now */
		if (a->epoch == st->epoch && a->at_peak)
			p->peak_sites[p->npeak_sites++] = (struct ha_peak_site){
			    site, a->at_peak, a->at_peak_blocks};
		else if (a->epoch != st->epoch && a->live)
			p->peak_sites[p->npeak_sites++] = (struct ha_peak_site){
			    site, a->live, a->live_blocks};
		a->touched = false;
	}
	lv->ntouched = 0;
	qsort(p->leaks, p->nleaks, sizeof(*p->leaks), ha_leak_compare);
	qsort(p->sites, p->nsites, sizeof(*p->sites), cmp_site_stats);
	qsort(p->peak_sites, p->npeak_sites, sizeof(*p->peak_sites),
	      cmp_peak_site);
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
	struct ha_event_iter it = {0}; /* closed on every path */
	const struct ha_event *e;
	bool ok = true;

	r->done[stream] = true;
	if (!level_ready(r, depth) ||
	    ha_events_open(&it, r->log, r->plan, stream) != HA_OK ||
	    !ha_types_begin(&st.types, r->log, stream,
			    parent ? &parent->types : NULL)) {
		ha_events_close(&it);
		ha_types_end(&st.types);
		return false;
	}
	if (parent) {
		const struct ha_live *t = &parent->live;

		if (!ha_live_copy(&st.live, t)) {
			ha_events_close(&it);
			ha_types_end(&st.types);
			return false;
		}
		st.sum = parent->sum;
		r->procs[stream].inherited = parent->sum;
		st.sum.peak_bytes = t->bytes;
		st.sum.peak_blocks = t->count;
		st.sum.peak_time_us = st.sum.duration_us = 0; /* its own clock */
		for (size_t i = 0; t->slots && i <= t->mask; i++)
			if (t->slots[i].used)
				site_live_change(
				    lv, &st,
				    r->log->stacks[t->slots[i].stack].site,
				    t->slots[i].size, t->slots[i].used, true);
		st.epoch = 1; /* the inherited heap is its first peak */
	}
	ok = ha_timeline_start(&r->procs[stream].timeline, s->last_time,
			       st.live.bytes);
	while (ok && (e = ha_events_next(&it))) {
		const struct ha_event *ahead = ha_events_ahead(&it, 16);

		/* The table is bigger than the cache and its accesses random:
		 * ask for the slot of an event a few ahead now. */
		if (ahead)
			ha_live_prefetch(&st.live, ahead->addr);
		/* A child forked at seq Q has seen every event up to Q. */
		while (ok && kid < r->kids_end[stream] &&
		       r->kids[kid].parent_seq < e->seq)
			ok = fork_child(r, r->kids[kid++].stream, &st, depth);
		ok = ok && apply(r, lv, &st, e);
		if (e->time > st.sum.duration_us)
			st.sum.duration_us = e->time;
		ha_timeline_add(&r->procs[stream].timeline, e->time,
				st.live.bytes);
	}
	ok = ok && it.error == HA_OK;
	if (ok)
		ha_timeline_finish(&r->procs[stream].timeline);
	while (ok && kid < r->kids_end[stream])
		ok = fork_child(r, r->kids[kid++].stream, &st, depth);
	ok = ok && finish(r, lv, &st, stream);
	free(st.live.slots);
	ha_events_close(&it);
	ha_types_end(&st.types);
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

enum ha_result ha_replay(struct ha_log *log, struct ha_process *procs,
			 struct ha_merge_plan *plan)
{
	struct replayer r = {.log = log, .procs = procs, .plan = plan};
	size_t n = log->nstreams, nkids = 0;
	bool ok;

	r.attached = log->trace_flags & HALLOC_TRACE_ATTACHED;
	r.sample = log->sample_interval;
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
