/*
 * tests/unit/analyzer_bounded.c - the analyzer's memory grows with the live
 * blocks and the distinct stacks, not with the number of events: a log of
 * 20 million events, from two threads whose chunks interleave, reports
 * exact numbers within a stated peak RSS.
 *
 * The log is written chunk by chunk straight to a file (the log builder
 * holds a whole log in memory), and analyzed in a child process, so that
 * getrusage(RUSAGE_CHILDREN) measures the analysis alone.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/varint.h"
#include "analyzer/analyzer.h"
#include "halloc/log.h"
#include "log_builder.h"

#define EVENTS 20000000ull /* allocations and frees, both threads */
#define WINDOW 4096u	   /* blocks each thread keeps live */
/* What the analysis may take: the old analyzer held 32 bytes an event
 * (640 MB here); live blocks, stacks and the chunk index take a few. */
#define PEAK_LIMIT_KB (32u * 1024u)

struct gen_thread {
	uint32_t tid;
	unsigned char buf[HALLOC_FRAME_MAX];
	size_t len;
	uint64_t seq, addr; /* the chunk's previous values */
	uint32_t chunk_no;
	uint64_t allocs, frees;
	bool stack_sent;
};

static void put_le(unsigned char *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void flush(FILE *f, struct gen_thread *t)
{
	if (t->len <= HALLOC_FRAME_HEADER_SIZE + HALLOC_CHUNK_HEADER_SIZE)
		return;
	put_le(t->buf, t->len - HALLOC_FRAME_HEADER_SIZE, 4);
	cr_assert_eq(fwrite(t->buf, 1, t->len, f), t->len);
	t->len = 0;
}

/* Starts a record in t's chunk, flushing it first if it may not fit. */
static unsigned char *record(FILE *f, struct gen_thread *t, unsigned kind,
			     uint64_t seq)
{
	unsigned char *p;

	if (t->len + 64 > HALLOC_FRAME_MAX)
		flush(f, t);
	if (t->len == 0) {
		put_le(t->buf + 4, HALLOC_FRAME_CHUNK, 4);
		put_le(t->buf + 8, 7, 8); /* stream */
		put_le(t->buf + 16, 4242, 4);
		put_le(t->buf + 20, t->tid, 4);
		put_le(t->buf + 24, t->tid, 4); /* slot */
		put_le(t->buf + 28, t->chunk_no++, 4);
		t->len = HALLOC_FRAME_HEADER_SIZE + HALLOC_CHUNK_HEADER_SIZE;
		t->seq = t->addr = 0;
	}
	p = t->buf + t->len;
	*p++ = HALLOC_RECORD_TAG(kind, 0);
	p = halloc_put_uv(p, seq - t->seq);
	t->seq = seq;
	return p;
}

static uint64_t block_addr(const struct gen_thread *t, uint64_t i)
{
	return 0x10000000ull * t->tid + (i % (2 * WINDOW)) * 64;
}

static void gen_alloc(FILE *f, struct gen_thread *t, uint64_t seq)
{
	unsigned char *p;
	uint64_t a = block_addr(t, t->allocs);

	if (!t->stack_sent) {
		p = record(f, t, HALLOC_REC_STACK, seq++);
		p = halloc_put_uv(p, 1); /* id */
		p = halloc_put_uv(p, 1); /* one frame */
		p = halloc_put_sv(p, 0x401000);
		t->len = (size_t)(p - t->buf);
		t->stack_sent = true;
	}
	p = record(f, t, HALLOC_REC_ALLOC, seq);
	p = halloc_put_uv(p, 0); /* time delta */
	p = halloc_put_sv(p, (int64_t)(a - t->addr));
	p = halloc_put_uv(p, 16 + t->allocs % 100);
	p = halloc_put_uv(p, 1);
	t->addr = a;
	t->len = (size_t)(p - t->buf);
	t->allocs++;
}

static void gen_free(FILE *f, struct gen_thread *t, uint64_t seq)
{
	unsigned char *p = record(f, t, HALLOC_REC_FREE, seq);
	uint64_t a = block_addr(t, t->frees);

	p = halloc_put_uv(p, 0);
	p = halloc_put_sv(p, (int64_t)(a - t->addr));
	t->addr = a;
	t->len = (size_t)(p - t->buf);
	t->frees++;
}

/* Two threads take turns: each allocates, and frees its block WINDOW
 * allocations old; their chunks cover interleaved sequence numbers. */
static char *generate(uint64_t *allocs, uint64_t *frees, uint64_t *bytes)
{
	static struct gen_thread th[2];
	char *path = strdup("/tmp/halloc-unit-bounded-XXXXXX");
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "wb");
	unsigned char head[16] = "HALLOCLG";
	uint64_t seq = 1, events = 0;

	cr_assert(f);
	put_le(head + 8, HALLOC_LOG_VERSION, 4);
	fwrite(head, 1, sizeof(head), f);
	memset(th, 0, sizeof(th));
	th[0].tid = 1;
	th[1].tid = 2;
	*bytes = 0;
	while (events < EVENTS) {
		for (int k = 0; k < 2; k++) {
			struct gen_thread *t = &th[k];

			*bytes += 16 + t->allocs % 100;
			gen_alloc(f, t, seq);
			seq += t->allocs == 1 ? 2 : 1; /* the stack took one */
			events++;
			if (t->allocs > WINDOW) {
				gen_free(f, t, seq++);
				events++;
			}
		}
	}
	flush(f, &th[0]);
	flush(f, &th[1]);
	{
		unsigned char end[HALLOC_FRAME_HEADER_SIZE + 2] = {2, 0, 0, 0,
								   5, 0, 0, 0};
		fwrite(end, 1, sizeof(end), f);
	}
	cr_assert_eq(fclose(f), 0);
	*allocs = th[0].allocs + th[1].allocs;
	*frees = th[0].frees + th[1].frees;
	return path;
}

Test(analyzer_bounded, twenty_million_events_in_bounded_memory, .timeout = 120)
{
	uint64_t allocs, frees, bytes;
	char *path = generate(&allocs, &frees, &bytes);
	struct rusage ru;
	int status;
	pid_t pid;

	cr_assert_geq(allocs + frees, EVENTS);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct ha_analysis *a = NULL;
		struct ha_process_info p;
		struct ha_diag d;
		int bad = 0;

		if (ha_analyze_file(path, NULL, &a, &d) != HA_OK || !a ||
		    !ha_analysis_process(a, 0, &p))
			_exit(10);
		bad |= (p.summary.allocations != allocs) << 0;
		bad |= (p.summary.frees != frees) << 1;
		bad |= (p.summary.bytes_allocated != bytes) << 2;
		bad |= (p.summary.leaked_blocks != 2 * WINDOW) << 3;
		bad |= (p.summary.peak_blocks > 2 * WINDOW + 1) << 4;
		bad |= (p.summary.unmatched_frees != 0) << 5;
		ha_analysis_free(a);
		_exit(bad);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	unlink(path);
	free(path);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 0,
		     "analysis wrong: status %d (bits: allocations, frees, "
		     "bytes, leaked, peak, unmatched)",
		     WEXITSTATUS(status));
	cr_assert_eq(getrusage(RUSAGE_CHILDREN, &ru), 0);
	cr_assert_lt(ru.ru_maxrss, (long)PEAK_LIMIT_KB,
		     "the analysis of %llu events peaked at %ld KiB, over "
		     "the %u KiB bound",
		     (unsigned long long)(allocs + frees), ru.ru_maxrss,
		     PEAK_LIMIT_KB);
}

/* The merge from the file and the sort in memory (a stream, fmemopen) agree
 * on a log whose threads' chunks interleave and come out of order, with
 * reallocs, a fork, and (another process) a slot whose chunks overlap in
 * sequence numbers, which is read whole and sorted. */
Test(analyzer_bounded, merge_matches_sort)
{
	static const char *const argv[] = {"./prog", NULL};
	uint64_t frame = 0x401000;
	struct ha_analysis *mem = NULL, *file = NULL;
	struct ha_diag d;
	struct lb b;
	char *path, *a, *c;

	lb_init(&b, 10, argv);
	lb_chunk(&b, 1, 10, 1);
	lb_process(&b, 1, 10, 1, 0, 0, 0, 0, "/prog", argv);
	lb_stack(&b, 2, 1, 1, &frame);
	lb_alloc(&b, 3, 0, 0x1000, 10, 1);
	lb_alloc(&b, 6, 0, 0x2000, 20, 1);
	lb_chunk(&b, 1, 10, 2); /* thread 2, its second chunk first */
	lb_free_rec(&b, 9, 0, 0x1000);
	lb_alloc(&b, 11, 0, 0x1000, 40, 1);
	lb_chunk(&b, 1, 10, 1);
	lb_realloc(&b, 7, 10, 0x2000, 0x3000, 30, 1);
	lb_free_rec(&b, 12, 0, 0x3000);
	lb_chunk(&b, 1, 10, 2);
	lb_alloc(&b, 4, 0, 0x4000, 50, 1);
	lb_free_rec(&b, 5, 0, 0x4000);
	lb_chunk(&b, 2, 11, 11); /* a child forked at seq 6 */
	lb_process(&b, 1, 11, 10, 1, 6, 0, 0, "/prog", argv);
	lb_free_rec(&b, 2, 0, 0x2000);
	lb_alloc(&b, 3, 0, 0x5000, 60, 1);
	lb_chunk(&b, 3, 12, 3); /* another process: overlapping chunks */
	lb_stack(&b, 19, 1, 1, &frame);
	lb_alloc(&b, 20, 0, 0x6000, 70, 1);
	lb_alloc(&b, 22, 0, 0x7000, 80, 1);
	lb_chunk(&b, 3, 12, 3);
	lb_free_rec(&b, 21, 0, 0x6000);
	lb_exit(&b, 10, HALLOC_EXIT_CODE, 0);
	lb_exit(&b, 11, HALLOC_EXIT_CODE, 0);
	lb_exit(&b, 12, HALLOC_EXIT_CODE, 0);
	lb_end(&b);
	cr_assert_eq(lb_analyze(&b, &mem, &d), HA_OK, "%s", d.message);
	path = lb_write_temp(&b);
	cr_assert_eq(ha_analyze_file(path, NULL, &file, &d), HA_OK, "%s",
		     d.message);
	a = lb_report(mem, HA_FORMAT_JSON, 0);
	c = lb_report(file, HA_FORMAT_JSON, 0);
	cr_assert_str_eq(a, c);
	cr_assert(strstr(a, "\"allocations\": 5"), "%s", a);
	unlink(path);
	free(path);
	free(a);
	free(c);
	ha_analysis_free(mem);
	ha_analysis_free(file);
	lb_free(&b);
}
