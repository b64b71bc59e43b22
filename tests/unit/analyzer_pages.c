/*
 * tests/unit/analyzer_pages.c - page items (PAGES records) and resident
 * memory (RSS frames) as the analyzer reads and replays them: partial
 * unmaps, a MAP_FIXED mapping over another, mremap, heap blocks by mmap,
 * a forked child's inherited mappings, bad records.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "agent/varint.h"
#include "analyzer/analysis.h"
#include "halloc/log.h"
#include "log_builder.h"

static const char *const argv_[] = {"./pages", NULL};

/* Record header and fields, in the builder's open chunk. */
static void pages_rec(struct lb *b, unsigned op, uint64_t seq)
{
	unsigned char tmp[16], *p = tmp;

	*p++ = HALLOC_RECORD_TAG(HALLOC_REC_PAGES, op);
	p = halloc_put_uv(p, seq - b->seq);
	b->seq = seq;
	lb_raw(b, tmp, (size_t)(p - tmp));
}

static void uv(struct lb *b, uint64_t v)
{
	unsigned char tmp[HALLOC_VARINT_MAX];

	lb_raw(b, tmp, (size_t)(halloc_put_uv(tmp, v) - tmp));
}

static void addr(struct lb *b, uint64_t a)
{
	unsigned char tmp[HALLOC_VARINT_MAX];

	lb_raw(b, tmp,
	       (size_t)(halloc_put_sv(tmp, (int64_t)(a - b->addr)) - tmp));
	b->addr = a;
}

static void map(struct lb *b, uint64_t seq, uint64_t a, uint64_t len,
		uint64_t stack)
{
	pages_rec(b, HALLOC_PAGE_MMAP, seq);
	uv(b, 1);
	addr(b, a);
	uv(b, len);
	uv(b, stack);
	uv(b, 3);    /* PROT_READ | PROT_WRITE */
	uv(b, 0x22); /* MAP_PRIVATE | MAP_ANONYMOUS */
}

static void unmap(struct lb *b, uint64_t seq, uint64_t a, uint64_t len)
{
	pages_rec(b, HALLOC_PAGE_MUNMAP, seq);
	uv(b, 1);
	addr(b, a);
	uv(b, len);
}

static void remap(struct lb *b, uint64_t seq, uint64_t seq2, uint64_t old,
		  uint64_t old_len, uint64_t new_addr, uint64_t new_len)
{
	pages_rec(b, HALLOC_PAGE_MREMAP, seq);
	uv(b, seq2 - seq);
	uv(b, 1);
	addr(b, old);
	addr(b, new_addr);
	uv(b, old_len);
	uv(b, new_len);
}

static void heap(struct lb *b, uint64_t seq, uint64_t a, uint64_t size,
		 uint64_t mapped, uint64_t stack)
{
	pages_rec(b, HALLOC_PAGE_HEAP, seq);
	uv(b, 1);
	addr(b, a);
	uv(b, size);
	uv(b, mapped);
	uv(b, stack);
}

static void heap_free(struct lb *b, uint64_t seq, uint64_t a)
{
	pages_rec(b, HALLOC_PAGE_HEAP_FREE, seq);
	uv(b, 1);
	addr(b, a);
}

static void rss(struct lb *b, uint32_t pid, uint64_t time_ns, uint64_t bytes,
		uint64_t hwm)
{
	unsigned char tmp[4 * HALLOC_VARINT_MAX], *p = tmp;

	p = halloc_put_uv(p, pid);
	p = halloc_put_uv(p, time_ns);
	p = halloc_put_uv(p, bytes);
	if (hwm)
		p = halloc_put_uv(p, hwm);
	lb_frame(b, HALLOC_FRAME_RSS, tmp, (size_t)(p - tmp));
}

static void prologue(struct lb *b)
{
	const uint64_t one[] = {0x401001}, two[] = {0x402001};

	lb_init(b, 7, argv_);
	lb_chunk(b, 1, 7, 7);
	lb_process(b, 1, 7, 1, 0, 0, 0, 1000000, "/src/pages", argv_);
	lb_module(b, 2, 1, 0, "/src/pages", "", 0, 0x400000, 0x10000);
	lb_stack(b, 3, 1, 1, one);
	lb_stack(b, 4, 2, 1, two);
}

static const struct ha_page_site *by_bytes(const struct ha_page_report *r,
					   uint8_t kind, uint64_t bytes)
{
	for (size_t i = 0; i < r->nsites; i++)
		if (r->sites[i].kind == kind && r->sites[i].bytes == bytes)
			return &r->sites[i];
	return NULL;
}

Test(pages, replay)
{
	struct ha_analysis *a;
	struct ha_diag d;
	struct lb b;
	const struct ha_page_report *r;
	const struct ha_page_site *s1, *s2, *h;

	prologue(&b);
	/* stack 1: 8 pages, its middle two unmapped, then its tail moved */
	map(&b, 10, 0x10000, 0x8000, 1);
	unmap(&b, 11, 0x12000, 0x2000);
	remap(&b, 12, 13, 0x14000, 0x4000, 0x80000, 0x6000);
	/* stack 2: one page, then a MAP_FIXED mapping of stack 1 over it */
	map(&b, 14, 0x40000, 0x1000, 2);
	map(&b, 15, 0x3f000, 0x3000, 1);
	/* a heap block by mmap (stack 2), freed; another one leaked */
	lb_alloc(&b, 16, HALLOC_FN_MALLOC, 0x200010, 300000, 2);
	heap(&b, 17, 0x200010, 300000, 303104, 2);
	heap_free(&b, 18, 0x200010);
	lb_free_rec(&b, 19, HALLOC_FREE_FREE, 0x200010);
	lb_alloc(&b, 20, HALLOC_FN_MALLOC, 0x300010, 200000, 2);
	heap(&b, 21, 0x300010, 200000, 200704, 2);
	/* an ordinary block is no page item */
	lb_alloc(&b, 22, HALLOC_FN_MALLOC, 0x500000, 64, 2);
	lb_chunk_end(&b);
	rss(&b, 7, 1000000 + 2000, 4096 * 100, 0);
	rss(&b, 7, 1000000 + 5000, 4096 * 300, 4096 * 400);
	rss(&b, 8, 1000000 + 5000, 4096 * 900, 0); /* another pid */
	lb_exit(&b, 7, HALLOC_EXIT_CODE, 0);
	lb_end(&b);
	cr_assert_eq(lb_analyze(&b, &a, &d), HA_OK, "%s", d.message);
	r = &a->procs[0].pages;
	cr_assert(r->recorded);
	s1 = by_bytes(r, HA_PAGE_KIND_MMAP, 0x8000 + 0x2000 + 0x3000);
	cr_assert_not_null(s1, "stack 1's mappings: 8 pages, 2 grown, 3 more");
	cr_expect_eq(s1->count, 2);
	cr_expect_eq(s1->pages, 8 + 2 + 3);
	/* at the end: the head (2 pages), the moved tail (6), the fixed (3) */
	cr_expect_eq(s1->end_bytes, 0x2000 + 0x6000 + 0x3000);
	cr_expect_eq(s1->end_items, 3);
	cr_expect_eq(s1->peak, 0x2000 + 0x6000 + 0x3000);
	s2 = by_bytes(r, HA_PAGE_KIND_MMAP, 0x1000);
	cr_assert_not_null(s2);
	cr_expect_eq(s2->end_items, 0, "replaced by the MAP_FIXED mapping");
	h = by_bytes(r, HA_PAGE_KIND_HEAP, 500000);
	cr_assert_not_null(h, "both heap blocks, one site");
	cr_expect_eq(h->count, 2);
	cr_expect_eq(h->pages, 74 + 49);
	cr_expect_eq(h->end_bytes, 200000);
	cr_expect_eq(h->end_pages, 49);
	cr_expect_eq(r->nsites, 3);
	cr_expect_eq(r->end_items, 4);
	cr_expect_eq(r->peak_bytes, 0x2000 + 0x6000 + 0x3000 + 300000);
	cr_expect_eq(a->procs[0].pages.rss_samples, 2);
	cr_expect_eq(a->procs[0].pages.peak_rss, 4096 * 400, "VmHWM counts");
	cr_assert_not_null(a->procs[0].pages.rss);
	cr_expect_eq(a->procs[0].pages.rss[a->procs[0].timeline.n - 1],
		     4096 * 300);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(pages, fork_inherits)
{
	struct ha_analysis *a;
	struct ha_diag d;
	struct lb b;

	prologue(&b);
	map(&b, 10, 0x10000, 0x4000, 1);
	map(&b, 12, 0x20000, 0x1000, 1); /* after the fork */
	lb_chunk(&b, 2, 8, 8);
	lb_process(&b, 1, 8, 7, 1, 11, 0, 1000500, "/src/pages", argv_);
	unmap(&b, 2, 0x10000, 0x1000);
	lb_chunk_end(&b);
	lb_exit(&b, 8, HALLOC_EXIT_CODE, 0);
	lb_exit(&b, 7, HALLOC_EXIT_CODE, 0);
	lb_end(&b);
	cr_assert_eq(lb_analyze(&b, &a, &d), HA_OK, "%s", d.message);
	cr_assert_eq(a->nprocs, 2);
	for (size_t i = 0; i < 2; i++) {
		const struct ha_page_report *r = &a->procs[i].pages;
		bool child = a->log->streams[a->procs[i].stream].id == 2;

		cr_expect_eq(r->end_bytes, child ? 0x3000 : 0x5000,
			     "%s", child ? "child" : "parent");
		cr_expect_eq(r->end_items, child ? 1 : 2);
	}
	ha_analysis_free(a);
	lb_free(&b);
}

Test(pages, bad_records)
{
	static const unsigned char op9[] = {
	    HALLOC_RECORD_TAG(HALLOC_REC_PAGES, 9), 10, 1, 0, 1};
	static const unsigned char cut_short[] = {
	    HALLOC_RECORD_TAG(HALLOC_REC_PAGES, HALLOC_PAGE_MMAP), 10, 1};
	const unsigned char *bad[] = {op9, cut_short};
	const size_t len[] = {sizeof(op9), sizeof(cut_short)};
	const char *why[] = {"unknown page operation", "bad page record"};

	for (int i = 0; i < 2; i++) {
		struct ha_analysis *a;
		struct ha_diag d;
		struct lb b;

		prologue(&b);
		lb_raw(&b, bad[i], len[i]);
		lb_chunk_end(&b);
		lb_end(&b);
		cr_expect_eq(lb_analyze(&b, &a, &d), HA_ERR_CORRUPT);
		cr_expect(a && strstr(ha_analysis_incomplete_reason(a), why[i]),
			  "reason: %s", a ? ha_analysis_incomplete_reason(a)
					  : d.message);
		ha_analysis_free(a);
		lb_free(&b);
	}
}
