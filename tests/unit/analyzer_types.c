/*
 * tests/unit/analyzer_types.c - memory by type: TYPE records and ALLOCs
 * of fn HALLOC_FN_HALLOC, grouped by type with their sites; the rest by
 * size class; a TYPE that comes after the ALLOC naming it (another
 * thread's chunk, flushed later).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "agent/varint.h"
#include "analyzer/analysis.h"
#include "halloc/log.h"
#include "log_builder.h"

static const char *const prog_argv[] = {"./prog", NULL};

static unsigned char *put_str(unsigned char *p, const char *s)
{
	size_t n = strlen(s);

	p = halloc_put_uv(p, n);
	memcpy(p, s, n);
	return p + n;
}

static void put_seq(struct lb *b, unsigned char **p, uint64_t seq)
{
	*p = halloc_put_uv(*p, seq - b->seq);
	b->seq = seq;
}

static void lb_type(struct lb *b, uint64_t seq, uint64_t id,
		    uint64_t object_size, const char *name, const char *file,
		    unsigned line)
{
	unsigned char rec[512], *p = rec;

	*p++ = HALLOC_RECORD_TAG(HALLOC_REC_TYPE, 0);
	put_seq(b, &p, seq);
	p = halloc_put_uv(p, id);
	p = halloc_put_uv(p, object_size);
	p = put_str(p, name);
	p = put_str(p, file);
	p = halloc_put_uv(p, line);
	lb_raw(b, rec, (size_t)(p - rec));
}

static void lb_typed(struct lb *b, uint64_t seq, uint64_t addr, uint64_t size,
		     uint64_t stack, uint64_t id, uint64_t n)
{
	unsigned char rec[128], *p = rec;

	*p++ = HALLOC_RECORD_TAG(HALLOC_REC_ALLOC, HALLOC_FN_HALLOC);
	put_seq(b, &p, seq);
	p = halloc_put_uv(p, 0); /* time */
	p = halloc_put_sv(p, (int64_t)(addr - b->addr));
	b->addr = addr;
	p = halloc_put_uv(p, size);
	p = halloc_put_uv(p, stack);
	p = halloc_put_uv(p, id);
	p = halloc_put_uv(p, n);
	lb_raw(b, rec, (size_t)(p - rec));
}

static struct ha_analysis *analyze(struct lb *b)
{
	struct ha_analysis *a = NULL;
	struct ha_diag d;

	lb_end(b);
	cr_assert_eq(lb_analyze(b, &a, &d), HA_OK, "%s", d.message);
	cr_assert_eq(a->nprocs, 1);
	return a;
}

static void start(struct lb *b)
{
	const uint64_t frames[] = {0x401001};

	lb_init(b, 100, prog_argv);
	lb_chunk(b, 1, 100, 100);
	lb_process(b, 1, 100, 1, 0, 0, 0, 10, "/src/prog", prog_argv);
	lb_module(b, 2, 1, 0, "/src/prog", "", 0, 0x400000, 0x10000);
	lb_stack(b, 3, 1, 1, frames);
}

Test(types, by_type_and_size_class)
{
	const struct ha_types_result *r;
	struct ha_analysis *a;
	struct lb b;

	start(&b);
	/* thread 100: ALLOCs naming site 1 before its TYPE is in the file */
	lb_typed(&b, 10, 0x1000, 160, 1, 1, 10);
	lb_typed(&b, 11, 0x2000, 48, 1, 2, 3);
	lb_alloc(&b, 12, HALLOC_FN_MALLOC, 0x3000, 100, 1);
	lb_free_rec(&b, 13, HALLOC_FREE_FREE, 0x1000);
	lb_free_rec(&b, 14, HALLOC_FREE_FREE, 0x3000);
	lb_typed(&b, 15, 0x4000, 32, 1, 1, 2);
	/* thread 101 announced the sites, earlier in seq order */
	lb_chunk(&b, 1, 100, 101);
	lb_type(&b, 5, 1, 16, "struct point", "/src/a.c", 12);
	lb_type(&b, 6, 2, 16, "struct point", "/src/b.c", 7);
	lb_type(&b, 7, 2, 16, "struct point", "/src/b.c", 7); /* twice */
	lb_exit(&b, 100, HALLOC_EXIT_CODE, 0);
	a = analyze(&b);
	r = &a->procs[0].types;
	cr_assert_eq(r->ntypes, 1);
	cr_assert_str_eq(r->types[0].name, "struct point");
	cr_assert_eq(r->types[0].object_size, 16);
	cr_assert_eq(r->types[0].allocations, 3);
	cr_assert_eq(r->types[0].objects, 15);
	cr_assert_eq(r->types[0].bytes, 240);
	cr_assert_eq(r->types[0].peak_bytes, 208);
	cr_assert_eq(r->types[0].leaked_bytes, 80);
	cr_assert_eq(r->types[0].leaked_blocks, 2);
	cr_assert_eq(r->types[0].nsites, 2);
	cr_assert_str_eq(r->types[0].sites[0].file, "/src/a.c");
	cr_assert_eq(r->types[0].sites[0].line, 12);
	cr_assert_eq(r->types[0].sites[0].allocations, 2);
	cr_assert_eq(r->types[0].sites[0].bytes, 192);
	cr_assert_str_eq(r->types[0].sites[1].file, "/src/b.c");
	cr_assert_eq(r->types[0].sites[1].objects, 3);
	cr_assert_eq(r->nclasses, 1);
	cr_assert_eq(r->classes[0].bucket, ha_size_bucket(100));
	cr_assert_eq(r->classes[0].allocations, 1);
	cr_assert_eq(r->classes[0].bytes, 100);
	cr_assert_eq(r->classes[0].leaked_bytes, 0);
	cr_assert_eq(a->procs[0].summary.allocations, 4);
	cr_assert_eq(a->procs[0].summary.leaked_bytes, 80);
	ha_analysis_free(a);
	lb_free(&b);
}

/* A TYPE record that never came (its chunk lost): the block has no type. */
Test(types, unknown_site_has_no_type)
{
	const struct ha_types_result *r;
	struct ha_analysis *a;
	struct lb b;

	start(&b);
	lb_typed(&b, 10, 0x1000, 64, 1, 9, 4);
	lb_exit(&b, 100, HALLOC_EXIT_CODE, 0);
	a = analyze(&b);
	r = &a->procs[0].types;
	cr_assert_eq(r->ntypes, 0);
	cr_assert_eq(r->nclasses, 1);
	cr_assert_eq(r->classes[0].leaked_bytes, 64);
	ha_analysis_free(a);
	lb_free(&b);
}

/* An ALLOC of fn HALLOC_FN_HALLOC without its two fields is corrupt. */
Test(types, short_typed_alloc_is_corrupt)
{
	unsigned char rec[16], *p = rec;
	struct ha_analysis *a = NULL;
	struct ha_diag d;
	struct lb b;

	start(&b);
	*p++ = HALLOC_RECORD_TAG(HALLOC_REC_ALLOC, HALLOC_FN_HALLOC);
	p = halloc_put_uv(p, 7); /* seq 10 */
	p = halloc_put_uv(p, 0);
	p = halloc_put_sv(p, 0x1000);
	p = halloc_put_uv(p, 64);
	p = halloc_put_uv(p, 1); /* stack; then nothing */
	lb_raw(&b, rec, (size_t)(p - rec));
	lb_chunk_end(&b);
	lb_end(&b);
	lb_analyze(&b, &a, &d);
	cr_assert_not_null(a);
	cr_assert(!ha_analysis_complete(a));
	cr_assert(strstr(ha_analysis_incomplete_reason(a), "typed") != NULL,
		  "%s", ha_analysis_incomplete_reason(a));
	ha_analysis_free(a);
	lb_free(&b);
}
