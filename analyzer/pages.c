/*
 * analyzer/pages.c - page items and resident memory (see pages.h): reading
 * PAGES records and replaying each stream's page items in sequence order
 * (rss.c does the RSS frames).
 *
 * A stream's page items are few (each one cost the program a system call),
 * so the mappings alive during the replay sit in plain arrays searched end
 * to end. A mapping can lose its head, its tail or its middle (then it is
 * two). The records hold all a page item needs (a heap block's HEAP has its
 * size and stack), so this replay is apart from the heap's.
 *
 * A forked child starts with the items its parent had at the fork; an
 * image replaced by exec has nothing left mapped at its end.
 */
#include <stdlib.h>
#include <string.h>

#include "analyzer/analysis.h"
#include "analyzer/pages.h"
#include "halloc/log.h"

/* ---- reading -------------------------------------------------------------- */

/* s NULL: the record is only stepped over (a chunk read a second time). */
static bool push(struct ha_stream *s, const struct ha_page_event *e)
{
	if (!s)
		return true;
	if (!HA_RESERVE(s->page_events, s->page_events_cap,
			s->npage_events + 1))
		return false;
	s->page_events[s->npage_events++] = *e;
	return true;
}

enum ha_result ha_page_read_record(struct ha_log *log, struct ha_stream *s,
				   struct ha_cursor *c, unsigned op,
				   uint64_t seq, uint64_t *time,
				   uint64_t *addr, const char **why)
{
	struct ha_page_event e = {.seq = seq, .stack = HA_NONE};
	uint64_t dt, len, stack_id = 0, prot, flags, d2, len2, old;
	int64_t da, db;

	*why = "bad page record";
	switch (op) {
	case HALLOC_PAGE_MMAP:
		if (!ha_get_uv(c, &dt) || !ha_get_sv(c, &da) ||
		    !ha_get_uv(c, &len) || !ha_get_uv(c, &stack_id) ||
		    !ha_get_uv(c, &prot) || !ha_get_uv(c, &flags))
			return HA_ERR_CORRUPT;
		e.op = HA_PAGE_MAP;
		break;
	case HALLOC_PAGE_MUNMAP:
		if (!ha_get_uv(c, &dt) || !ha_get_sv(c, &da) ||
		    !ha_get_uv(c, &len))
			return HA_ERR_CORRUPT;
		e.op = HA_PAGE_UNMAP;
		break;
	case HALLOC_PAGE_HEAP:
		if (!ha_get_uv(c, &dt) || !ha_get_sv(c, &da) ||
		    !ha_get_uv(c, &len) || !ha_get_uv(c, &e.other) ||
		    !ha_get_uv(c, &stack_id))
			return HA_ERR_CORRUPT;
		e.op = HA_PAGE_HEAP;
		break;
	case HALLOC_PAGE_HEAP_FREE:
		if (!ha_get_uv(c, &dt) || !ha_get_sv(c, &da))
			return HA_ERR_CORRUPT;
		e.op = HA_PAGE_HEAP_FREE;
		len = 0;
		break;
	case HALLOC_PAGE_MREMAP:
		if (!ha_get_uv(c, &d2) || !ha_get_uv(c, &dt) ||
		    !ha_get_sv(c, &da) || !ha_get_sv(c, &db) ||
		    !ha_get_uv(c, &len) || !ha_get_uv(c, &len2))
			return HA_ERR_CORRUPT;
		if (d2 == 0 || seq + d2 < seq) {
			*why = "mremap's second sequence number does not "
			       "follow its first";
			return HA_ERR_CORRUPT;
		}
		*time += dt;
		old = *addr + (uint64_t)da;
		*addr = old + (uint64_t)db;
		e.time = *time;
		e.op = HA_PAGE_MOVE_FROM;
		e.addr = old;
		e.len = len;
		e.other = seq + d2;
		if (!push(log ? s : NULL, &e))
			return HA_ERR_NOMEM;
		e.seq = seq + d2;
		e.op = HA_PAGE_MOVE_TO;
		e.addr = *addr;
		e.len = len2;
		e.other = len;
		return push(log ? s : NULL, &e) ? HA_OK : HA_ERR_NOMEM;
	default:
		*why = "unknown page operation";
		return HA_ERR_CORRUPT;
	}
	*time += dt;
	*addr += (uint64_t)da;
	e.time = *time;
	e.addr = *addr;
	e.len = len;
	if (log && (e.op == HA_PAGE_MAP || e.op == HA_PAGE_HEAP) &&
	    (e.stack = ha_log_stack_ref(log, s, stack_id)) == HA_NONE)
		return HA_ERR_NOMEM;
	return push(log ? s : NULL, &e) ? HA_OK : HA_ERR_NOMEM;
}

/* ---- the replay of one stream -------------------------------------------- */

#define PAGE 4096u

static uint64_t pages_of(uint64_t len)
{
	return (len + PAGE - 1) / PAGE;
}

/* A mapping, or a heap block by mmap (len: its size, mapped: its pages). */
struct item {
	uint64_t start, len, mapped;
	uint32_t stack;
	uint8_t kind;
};

struct items {
	struct item *v;
	size_t n, cap;
};

struct acc {
	const struct ha_log *log;
	struct ha_page_report *r;
	size_t cap;
	struct ha_map index; /* site << 2 | kind -> r->sites */
	uint64_t live;
	struct ha_map moves; /* MOVE_TO seq -> stack */
	bool nomem;
};

static struct ha_page_site *site_for(struct acc *a, uint8_t kind,
				     uint32_t stack)
{
	uint32_t site = a->log->stacks[stack].site;
	uint64_t key = (uint64_t)site << 2 | kind;
	uint32_t i = ha_map_get(&a->index, key);
	struct ha_page_report *r = a->r;

	if (i != HA_NONE)
		return &r->sites[i];
	if (!HA_RESERVE(r->sites, a->cap, r->nsites + 1) ||
	    !ha_map_put(&a->index, key, (uint32_t)r->nsites)) {
		a->nomem = true;
		return NULL;
	}
	r->sites[r->nsites] = (struct ha_page_site){.site = site,
						    .stack = stack,
						    .kind = kind};
	return &r->sites[r->nsites++];
}

static void change(struct acc *a, const struct item *it, bool add,
		   uint64_t time)
{
	struct ha_page_site *ps = site_for(a, it->kind, it->stack);

	if (!ps)
		return;
	if (add) {
		ps->live += it->len;
		a->live += it->len;
	} else {
		ps->live -= it->len;
		a->live -= it->len;
	}
	if (ps->live > ps->peak)
		ps->peak = ps->live;
	if (a->live > a->r->peak_bytes) {
		a->r->peak_bytes = a->live;
		a->r->peak_time_us = time;
	}
}

static bool add_item(struct acc *a, struct items *l, const struct item *it,
		     uint64_t time)
{
	if (!HA_RESERVE(l->v, l->cap, l->n + 1)) {
		a->nomem = true;
		return false;
	}
	l->v[l->n++] = *it;
	change(a, it, true, time);
	return true;
}

static void drop(struct acc *a, struct items *l, size_t i, uint64_t time)
{
	change(a, &l->v[i], false, time);
	l->v[i] = l->v[--l->n];
}

/* Ends [lo, hi) of the mappings; *stack gets the first one's stack. */
static void cut(struct acc *a, struct items *l, uint64_t lo, uint64_t hi,
		uint64_t time, uint32_t *stack)
{
	for (size_t i = 0; i < l->n;) {
		struct item *it = &l->v[i], head, tail;
		uint64_t s = it->start, e = it->start + it->len;

		if (it->kind != HA_PAGE_KIND_MMAP || e <= lo || s >= hi) {
			i++;
			continue;
		}
		if (stack && *stack == HA_NONE)
			*stack = it->stack;
		head = tail = *it;
		head.len = head.mapped = lo > s ? lo - s : 0;
		tail.start = hi;
		tail.len = tail.mapped = e > hi ? e - hi : 0;
		drop(a, l, i, time); /* the entry at i is another one now */
		if (head.len)
			add_item(a, l, &head, time);
		if (tail.len)
			add_item(a, l, &tail, time);
	}
}

static void count_made(struct acc *a, const struct item *it, uint64_t bytes,
		       uint64_t pages, bool new_item)
{
	struct ha_page_site *ps = site_for(a, it->kind, it->stack);

	if (!ps)
		return;
	ps->count += new_item;
	ps->bytes += bytes;
	ps->pages += pages;
}

static size_t heap_item(const struct items *l, uint64_t addr)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].kind == HA_PAGE_KIND_HEAP && l->v[i].start == addr)
			return i;
	return SIZE_MAX;
}

static void apply(struct acc *a, struct items *l, const struct ha_page_event *e)
{
	struct item it = {.start = e->addr, .len = e->len, .stack = e->stack,
			  .kind = HA_PAGE_KIND_MMAP};
	uint32_t stack = HA_NONE;
	size_t i;

	switch (e->op) {
	case HA_PAGE_MAP:
		cut(a, l, e->addr, e->addr + e->len, e->time, NULL);
		it.mapped = e->len;
		if (add_item(a, l, &it, e->time))
			count_made(a, &it, e->len, pages_of(e->len), true);
		break;
	case HA_PAGE_UNMAP:
		cut(a, l, e->addr, e->addr + e->len, e->time, NULL);
		break;
	case HA_PAGE_MOVE_FROM:
		if (e->len) {
			cut(a, l, e->addr, e->addr + e->len, e->time, &stack);
		} else { /* a duplicate: the old mapping stays */
			for (i = 0; i < l->n && stack == HA_NONE; i++)
				if (l->v[i].kind == HA_PAGE_KIND_MMAP &&
				    l->v[i].start <= e->addr &&
				    e->addr < l->v[i].start + l->v[i].len)
					stack = l->v[i].stack;
		}
		if (stack != HA_NONE && !ha_map_put(&a->moves, e->other, stack))
			a->nomem = true;
		break;
	case HA_PAGE_MOVE_TO:
		it.stack = ha_map_get(&a->moves, e->seq);
		if (it.stack == HA_NONE)
			break;
		cut(a, l, e->addr, e->addr + e->len, e->time, NULL);
		it.mapped = e->len;
		if (add_item(a, l, &it, e->time))
			count_made(a, &it,
				   e->len > e->other ? e->len - e->other : 0,
				   pages_of(e->len) > pages_of(e->other)
				       ? pages_of(e->len) - pages_of(e->other)
				       : 0,
				   false);
		break;
	case HA_PAGE_HEAP:
	case HA_PAGE_HEAP_FREE:
		/* a HEAP over a live block: its HEAP_FREE was not seen */
		if ((i = heap_item(l, e->addr)) != SIZE_MAX)
			drop(a, l, i, e->time);
		if (e->op == HA_PAGE_HEAP_FREE)
			break;
		it.kind = HA_PAGE_KIND_HEAP;
		it.mapped = e->other;
		if (add_item(a, l, &it, e->time))
			count_made(a, &it, it.len, pages_of(e->other), true);
		break;
	}
}

static int cmp_event(const void *x, const void *y)
{
	const struct ha_page_event *a = x, *b = y;

	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int cmp_site(const void *x, const void *y)
{
	const struct ha_page_site *a = x, *b = y;

	if (a->bytes != b->bytes)
		return a->bytes > b->bytes ? -1 : 1;
	if (a->kind != b->kind)
		return a->kind < b->kind ? -1 : 1;
	return a->site < b->site ? -1 : a->site > b->site;
}

static bool copy_items(struct items *dst, const struct items *src)
{
	dst->n = dst->cap = 0;
	dst->v = malloc((src->n ? src->n : 1) * sizeof(*dst->v));
	if (!dst->v)
		return false;
	memcpy(dst->v, src->v, src->n * sizeof(*src->v));
	dst->n = dst->cap = src->n;
	if (!dst->cap)
		dst->cap = 1;
	return true;
}

struct kid {
	uint32_t parent, stream;
	uint64_t seq; /* the parent's, at the fork */
};

struct pages_run {
	struct ha_log *log;
	struct ha_process *procs;
	uint32_t *parent;    /* per stream, HA_NONE: none */
	struct items *start; /* per stream: inherited at its fork */
	bool *done;
	struct kid *kids;   /* streams with a parent, by (parent, fork seq) */
	size_t *first_kid;  /* per stream: its children start at kids[this] */
	size_t nkids;
};

/* Replays stream i; hands its state at each fork to the children. */
static bool replay(struct pages_run *pr, uint32_t i)
{
	struct ha_stream *s = &pr->log->streams[i];
	struct ha_page_report *r = &pr->procs[i].pages;
	struct acc a = {.log = pr->log, .r = r};
	struct items l = pr->start[i];
	const struct ha_page_event *ev;
	size_t n, kid = pr->first_kid[i];
	bool ok;

	pr->done[i] = true;
	pr->start[i] = (struct items){0};
	memset(r, 0, sizeof(*r));
	ev = s->page_events;
	n = s->npage_events;
	qsort(s->page_events, n, sizeof(*ev), cmp_event);
	r->recorded = s->npage_events > 0 || l.n > 0;
	for (size_t k = 0; k < l.n; k++) { /* inherited: live, not made */
		struct ha_page_site *ps = site_for(&a, l.v[k].kind, l.v[k].stack);

		if (ps && (ps->live += l.v[k].len) > ps->peak)
			ps->peak = ps->live;
		a.live += l.v[k].len;
	}
	r->peak_bytes = a.live;
	for (size_t k = 0; k <= n && !a.nomem; k++) {
		uint64_t seq = k < n ? ev[k].seq : UINT64_MAX;

		/* children forked before this event start from here */
		for (; kid < pr->nkids && pr->kids[kid].parent == i &&
		       pr->kids[kid].seq < seq;
		     kid++)
			if (l.n && !pr->done[pr->kids[kid].stream] &&
			    !copy_items(&pr->start[pr->kids[kid].stream], &l))
				a.nomem = true;
		if (k < n)
			apply(&a, &l, &ev[k]);
	}
	if (s->end != HA_END_EXEC)
		for (size_t k = 0; k < l.n; k++) {
			struct ha_page_site *ps =
			    site_for(&a, l.v[k].kind, l.v[k].stack);

			if (!ps)
				break;
			ps->end_bytes += l.v[k].len;
			ps->end_pages += pages_of(l.v[k].mapped);
			ps->end_items++;
			r->end_bytes += l.v[k].len;
			r->end_items++;
		}
	ok = !a.nomem;
	if (ok && r->nsites)
		qsort(r->sites, r->nsites, sizeof(*r->sites), cmp_site);
	free(l.v);
	ha_map_free(&a.index);
	ha_map_free(&a.moves);
	return ok;
}

static int cmp_kid(const void *x, const void *y)
{
	const struct kid *a = x, *b = y;

	if (a->parent != b->parent)
		return a->parent < b->parent ? -1 : 1;
	if (a->seq != b->seq)
		return a->seq < b->seq ? -1 : 1;
	return a->stream < b->stream ? -1 : a->stream > b->stream;
}

enum ha_result ha_pages_analyze(struct ha_log *log, struct ha_process *procs)
{
	size_t n = log->nstreams ? log->nstreams : 1;
	struct pages_run pr = {.log = log, .procs = procs};
	bool ok, progress = true;

	pr.parent = malloc(n * sizeof(*pr.parent));
	pr.start = calloc(n, sizeof(*pr.start));
	pr.done = calloc(n, sizeof(*pr.done));
	pr.kids = malloc(n * sizeof(*pr.kids));
	pr.first_kid = malloc(n * sizeof(*pr.first_kid));
	ok = pr.parent && pr.start && pr.done && pr.kids && pr.first_kid;
	for (uint32_t i = 0; ok && i < log->nstreams; i++) {
		const struct ha_stream *s = &log->streams[i];
		uint32_t p = s->has_process && s->parent_stream
				 ? ha_map_get(&log->stream_ids,
					      s->parent_stream)
				 : HA_NONE;

		pr.parent[i] = p == i ? HA_NONE : p;
		if (pr.parent[i] != HA_NONE)
			pr.kids[pr.nkids++] =
			    (struct kid){pr.parent[i], i, s->parent_seq};
	}
	if (ok) {
		qsort(pr.kids, pr.nkids, sizeof(*pr.kids), cmp_kid);
		for (size_t i = 0; i < log->nstreams; i++)
			pr.first_kid[i] = pr.nkids;
		for (size_t k = pr.nkids; k-- > 0;)
			pr.first_kid[pr.kids[k].parent] = k;
	}
	/* parents before their children; a loop of parents from nothing */
	while (ok && progress) {
		progress = false;
		for (uint32_t i = 0; ok && i < log->nstreams; i++)
			if (!pr.done[i] && (pr.parent[i] == HA_NONE ||
					    pr.done[pr.parent[i]])) {
				ok = replay(&pr, i);
				progress = true;
			}
	}
	for (uint32_t i = 0; ok && i < log->nstreams; i++)
		if (!pr.done[i])
			ok = replay(&pr, i);
	for (size_t i = 0; pr.start && i < log->nstreams; i++)
		free(pr.start[i].v);
	free(pr.parent);
	free(pr.start);
	free(pr.done);
	free(pr.kids);
	free(pr.first_kid);
	return ok ? HA_OK : HA_ERR_NOMEM;
}

void ha_pages_free(struct ha_page_report *r)
{
	free(r->sites);
	free(r->rss);
	r->sites = NULL;
	r->rss = NULL;
	r->nsites = 0;
}
