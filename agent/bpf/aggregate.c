/*
 * agent/bpf/aggregate.c - --aggregate: the kernel kept, per call stack,
 * allocations, bytes and failures, and every live block (a site's frees
 * are its allocations less its live blocks); when
 * recording ends they become records of the stream (TRACE_INFO says
 * HALLOC_TRACE_AGGREGATE):
 *
 *   per site: its STACK, one ALLOC + FREE pair per freed block (at an
 *   address no user block has, sizes summing to the bytes freed), one
 *   ALLOC_FAILED per failure (size unknown: 0);
 *   then every live block as the ALLOC it was (address, size, time);
 *   then one FREE per free of a block allocated before the attach (each
 *   at its own such address).
 *
 * So the counts, bytes, sites and leaks are exact and leaks keep their
 * age; the order and times of freed blocks are made up.
 */
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "agent/bpf/halloc.h"
#include "halloc.skel.h" /* generated: build/bpf/ */
#include "agent/bpf/session.h"

/* Not user addresses (the kernel's half): cannot meet a real block. */
#define FREED_ADDR  0xffff000000000000ull
#define BEFORE_ADDR 0xffff800000000000ull

struct live_block {
	uint64_t addr;
	struct hb_live b;
};

struct dump {
	struct hb_session *s;
	uint32_t tid;
	uint64_t seq;	     /* next sequence number */
	struct hb_table ids; /* site key -> stack id << 8 | function */
	/* site key -> its blocks still live, and their bytes */
	struct hb_table live_blocks, live_bytes;
};

static int by_time(const void *a, const void *b)
{
	const struct live_block *x = a, *y = b;

	return (x->b.time_ns > y->b.time_ns) - (x->b.time_ns < y->b.time_ns);
}

static struct live_block *read_live(int fd, size_t *count)
{
	size_t n = 0, cap = 1024;
	struct live_block *v = malloc(cap * sizeof(*v));
	uint64_t key, next;
	void *prev = NULL;

	while (v && !bpf_map_get_next_key(fd, prev, &next)) {
		key = next;
		prev = &key;
		if (n == cap) {
			struct live_block *w = realloc(v, 2 * cap * sizeof(*v));

			if (!w) {
				free(v);
				return NULL;
			}
			v = w;
			cap *= 2;
		}
		if (!bpf_map_lookup_elem(fd, &key, &v[n].b)) {
			v[n].addr = key;
			n++;
		}
	}
	*count = n;
	return v;
}

/* A site's records: new modules, its stack, its freed blocks and its
 * failures. Its live blocks come later, in time order. */
static void dump_site(struct dump *d, uint64_t key, const struct hb_site *site)
{
	struct hb_session *s = d->s;
	unsigned fn = HALLOC_FN_MALLOC, n = 0;
	struct hb_stack st;
	uint64_t stack, frees = site->allocs, freed_bytes = site->bytes;
	const uint64_t *nlive = hb_table_find(&d->live_blocks, key),
		       *live_bytes = hb_table_find(&d->live_bytes, key);
	bool wrote;

	if (nlive && *nlive <= frees && live_bytes &&
	    *live_bytes <= freed_bytes) {
		frees -= *nlive;
		freed_bytes -= *live_bytes;
	}

	if (!bpf_map_lookup_elem(bpf_map__fd(s->skel->maps.stacks), &key,
				 &st)) {
		fn = st.fn;
		n = hb_fp_frames(s, (const uint64_t *)st.frames,
				 st.nframes < HB_FP_DEPTH_MAX
				     ? st.nframes
				     : HB_FP_DEPTH_MAX);
	}
	s->event_seq = (d->seq >> HB_SEQ_SHIFT) + 1;
	s->sub_seq = 0;
	s->rescanned = false;
	hb_write_new_modules(s, d->tid);
	d->seq = HB_STACK_SEQ(s->event_seq);
	stack = hb_stack_id(s->stream, d->tid, d->seq++, s->frames, n, &wrote);
	hb_table_put(&d->ids, key, stack << 8 | fn);

	for (uint64_t i = 0; i < frees; i++) {
		uint64_t size = freed_bytes / frees + (i < freed_bytes % frees);

		hb_rec_alloc(s->stream, d->tid, d->seq++, fn, 0, FREED_ADDR,
			     size, stack);
		hb_rec_free(s->stream, d->tid, d->seq++, HALLOC_FREE_FREE, 0,
			    FREED_ADDR);
	}
	for (uint64_t i = 0; i < site->failed; i++)
		hb_rec_failed(s->stream, d->tid, d->seq++, fn, 0, 0, stack,
			      12 /* ENOMEM */);
}

enum hb_result hb_aggregate_dump(struct hb_session *s, struct hb_diag *diag)
{
	int sites_fd = bpf_map__fd(s->skel->maps.sites);
	struct dump d = {.s = s, .tid = (uint32_t)s->pid};
	struct live_block *live;
	size_t nlive;
	uint64_t key, next, before;
	void *prev = NULL;

	if (!s->stream)
		return HB_OK;
	live = read_live(bpf_map__fd(s->skel->maps.live), &nlive);
	if (!live)
		return hb_diag_set(diag, HB_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < nlive; i++) {
		uint64_t *n = hb_table_find(&d.live_blocks, live[i].b.site),
			 *b = hb_table_find(&d.live_bytes, live[i].b.site);

		if (!hb_table_put(&d.live_blocks, live[i].b.site,
				  n ? *n + 1 : 1) ||
		    !hb_table_put(&d.live_bytes, live[i].b.site,
				  (b ? *b : 0) + live[i].b.size)) {
			free(live);
			hb_table_free(&d.live_blocks);
			hb_table_free(&d.live_bytes);
			return hb_diag_set(diag, HB_ERR_NOMEM, "out of memory");
		}
	}
	d.seq = HB_EVENT_SEQ(s->skel->data->next_seq) + 1;
	while (!bpf_map_get_next_key(sites_fd, prev, &next)) {
		struct hb_site site;

		key = next;
		prev = &key;
		if (!bpf_map_lookup_elem(sites_fd, &key, &site))
			dump_site(&d, key, &site);
	}

	qsort(live, nlive, sizeof(*live), by_time);
	for (size_t i = 0; i < nlive; i++) {
		uint64_t *id = hb_table_find(&d.ids, live[i].b.site);
		uint64_t v;
		bool wrote;

		if (id) {
			v = *id;
		} else { /* its site was not read: an empty stack */
			v = hb_stack_id(s->stream, d.tid, d.seq++, s->frames, 0,
					&wrote)
				<< 8 |
			    HALLOC_FN_MALLOC;
		}

		hb_rec_alloc(s->stream, d.tid, d.seq++, (unsigned)(v & 0xff),
			     hb_stream_time_us(s->stream, live[i].b.time_ns),
			     live[i].addr, live[i].b.size, v >> 8);
	}
	free(live);
	hb_table_free(&d.ids);
	hb_table_free(&d.live_blocks);
	hb_table_free(&d.live_bytes);

	before = hb_counter(s, HB_CNT_UNKNOWN_FREES);
	s->out->unknown_frees = before;
	for (uint64_t i = 0; i < before; i++)
		hb_rec_free(s->stream, d.tid, d.seq++, HALLOC_FREE_FREE, 0,
			    BEFORE_ADDR + 16 * i);
	s->out->events_lost +=
	    hb_counter(s, HB_CNT_LIVE_FULL) + hb_counter(s, HB_CNT_SITES_FULL);
	return HB_OK;
}
