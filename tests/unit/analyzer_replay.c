/*
 * tests/unit/analyzer_replay.c - counting as Valgrind does: malloc/free,
 * realloc in its forms, failed allocations, peaks, ordering by sequence
 * number across threads, fork inheritance, exec, and how processes ended.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "halloc/log.h"
#include "log_builder.h"

static const char *const prog_argv[] = {"./prog", NULL};

static struct ha_process_info process(const struct ha_analysis *a, unsigned i)
{
	struct ha_process_info info;

	cr_assert(ha_analysis_process(a, i, &info), "no process %u", i);
	return info;
}

/* Header of a stream's first chunk: PROCESS, a module and stack 1. */
static void start_stream(struct lb *b, uint64_t stream, uint32_t pid,
			 uint32_t ppid, uint64_t parent_stream,
			 uint64_t parent_seq, uint64_t flags, uint64_t start)
{
	const uint64_t frames[] = {0x401001, 0x402001};

	lb_chunk(b, stream, pid, pid);
	lb_process(b, 1, pid, ppid, parent_stream, parent_seq, flags, start,
		   "/src/prog", prog_argv);
	lb_module(b, 2, 1, 0, "/src/prog", "", 0, 0x400000, 0x10000);
	lb_stack(b, 3, 1, 2, frames);
}

static struct ha_analysis *analyze(struct lb *b)
{
	struct ha_analysis *a = NULL;
	struct ha_diag d;

	lb_end(b);
	cr_assert_eq(lb_analyze(b, &a, &d), HA_OK, "%s", d.message);
	return a;
}

Test(replay, malloc_free_counts)
{
	struct lb b;
	struct ha_analysis *a;
	struct ha_summary s;

	lb_init(&b, 100, prog_argv);
	start_stream(&b, 1, 100, 1, 0, 0, 0, 10);
	lb_alloc(&b, 10, HALLOC_FN_MALLOC, 0x1000, 100, 1);
	lb_alloc(&b, 11, HALLOC_FN_MALLOC, 0x2000, 0, 1); /* malloc(0) counts */
	lb_alloc(&b, 12, HALLOC_FN_POSIX_MEMALIGN, 0x3000, 64, 1);
	lb_free_rec(&b, 13, HALLOC_FREE_FREE, 0x1000);
	lb_free_rec(&b, 14, HALLOC_FREE_FREE, 0x2000);
	lb_exit(&b, 100, HALLOC_EXIT_CODE, 0);
	a = analyze(&b);
	s = process(a, 0).summary;
	cr_assert_eq(s.allocations, 3);
	cr_assert_eq(s.frees, 2);
	cr_assert_eq(s.bytes_allocated, 164);
	cr_assert_eq(s.leaked_bytes, 64);
	cr_assert_eq(s.leaked_blocks, 1);
	cr_assert_eq(s.unmatched_frees, 0);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(replay, realloc_forms)
{
	struct lb b;
	struct ha_analysis *a;
	struct ha_summary s;

	lb_init(&b, 100, prog_argv);
	start_stream(&b, 1, 100, 1, 0, 0, 0, 10);
	/* realloc(NULL, 10) is recorded as an ALLOC */
	lb_alloc(&b, 10, HALLOC_FN_REALLOC, 0x1000, 10, 1);
	/* moves: one free + one allocation */
	lb_realloc(&b, 11, 13, 0x1000, 0x2000, 20, 1);
	/* in place: still one free + one allocation */
	lb_realloc(&b, 14, 15, 0x2000, 0x2000, 30, 1);
	/* realloc(p, 0) that frees is a FREE */
	lb_alloc(&b, 16, HALLOC_FN_MALLOC, 0x3000, 5, 1);
	lb_free_rec(&b, 17, HALLOC_FREE_REALLOC, 0x3000);
	/* a failed allocation is no allocation */
	lb_failed(&b, 18, HALLOC_FN_MALLOC, 1ull << 60, 1);
	lb_exit(&b, 100, HALLOC_EXIT_CODE, 0);
	a = analyze(&b);
	s = process(a, 0).summary;
	cr_assert_eq(s.allocations, 4);
	cr_assert_eq(s.frees, 3);
	cr_assert_eq(s.bytes_allocated, 65);
	cr_assert_eq(s.failed_allocations, 1);
	cr_assert_eq(s.leaked_bytes, 30);
	cr_assert_eq(s.leaked_blocks, 1);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(replay, peak_is_the_most_live_bytes_in_seq_order)
{
	struct lb b;
	struct ha_analysis *a;
	struct ha_summary s;

	lb_init(&b, 100, prog_argv);
	start_stream(&b, 1, 100, 1, 0, 0, 0, 10);
	lb_alloc(&b, 10, HALLOC_FN_MALLOC, 0x1000, 100, 1);
	lb_alloc(&b, 11, HALLOC_FN_MALLOC, 0x2000, 200, 1);
	lb_alloc(&b, 12, HALLOC_FN_MALLOC, 0x2100, 0, 1);
	lb_free_rec(&b, 13, HALLOC_FREE_FREE, 0x1000);
	lb_free_rec(&b, 14, HALLOC_FREE_FREE, 0x2100);
	lb_alloc(&b, 15, HALLOC_FN_MALLOC, 0x3000, 50, 1);
	lb_alloc(&b, 16, HALLOC_FN_MALLOC, 0x4000, 40, 1);
	a = analyze(&b);
	s = process(a, 0).summary;
	cr_assert_eq(s.peak_bytes, 300);
	cr_assert_eq(s.peak_blocks, 2,
		     "blocks live when the peak was first reached");
	ha_analysis_free(a);
	lb_free(&b);
}

/* Thread 2 frees a block between two allocations of the same address by
 * thread 1; its chunk reaches the log last. Sequence order, not file
 * order, says the second block is the live one. */
Test(replay, order_by_seq_across_threads)
{
	struct lb b;
	struct ha_analysis *a;
	struct ha_summary s;

	lb_init(&b, 100, prog_argv);
	start_stream(&b, 1, 100, 1, 0, 0, 0, 10);
	lb_alloc(&b, 10, HALLOC_FN_MALLOC, 0xa000, 10, 1);
	lb_alloc(&b, 30, HALLOC_FN_MALLOC, 0xa000, 20, 1);
	lb_chunk(&b, 1, 100, 101); /* thread 101 */
	lb_free_rec(&b, 20, HALLOC_FREE_FREE, 0xa000);
	a = analyze(&b);
	s = process(a, 0).summary;
	cr_assert_eq(s.allocations, 2);
	cr_assert_eq(s.frees, 1);
	cr_assert_eq(s.unmatched_frees, 0);
	cr_assert_eq(s.leaked_bytes, 20);
	cr_assert_eq(s.leaked_blocks, 1);
	cr_assert_eq(s.peak_bytes, 20);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(replay, invalid_free_counts_as_valgrind_does)
{
	struct lb b;
	struct ha_analysis *a;
	struct ha_summary s;

	lb_init(&b, 100, prog_argv);
	start_stream(&b, 1, 100, 1, 0, 0, 0, 10);
	lb_alloc(&b, 10, HALLOC_FN_MALLOC, 0x1000, 10, 1);
	lb_free_rec(&b, 11, HALLOC_FREE_FREE, 0x1000);
	lb_free_rec(&b, 12, HALLOC_FREE_FREE, 0x1000); /* double free */
	a = analyze(&b);
	s = process(a, 0).summary;
	cr_assert_eq(s.frees, 2);
	cr_assert_eq(s.unmatched_frees, 1);
	cr_assert_eq(s.leaked_blocks, 0);
	ha_analysis_free(a);
	lb_free(&b);
}

/*
 * Parent (stream 1, pid 100): A, B, free A, fork at seq 14, C, free B.
 * Child (stream 2, pid 101): free B (inherited), D.
 * As Valgrind: the child's counters and live blocks are the parent's at
 * the fork plus its own; what the parent does after the fork is not its.
 */
Test(replay, fork_child_inherits_the_heap_at_the_fork)
{
	struct lb b;
	struct ha_analysis *a;
	struct ha_process_info parent, child;

	lb_init(&b, 100, prog_argv);
	start_stream(&b, 1, 100, 1, 0, 0, 0, 10);
	lb_alloc(&b, 10, HALLOC_FN_MALLOC, 0x1000, 100, 1);
	lb_alloc(&b, 11, HALLOC_FN_MALLOC, 0x2000, 200, 1);
	lb_free_rec(&b, 12, HALLOC_FREE_FREE, 0x1000);
	lb_alloc(&b, 15, HALLOC_FN_MALLOC, 0x3000, 300, 1);
	lb_free_rec(&b, 16, HALLOC_FREE_FREE, 0x2000);
	/* the child's chunk is in the log before the parent's end */
	start_stream(&b, 2, 101, 100, 1, 14, 0, 20);
	lb_free_rec(&b, 10, HALLOC_FREE_FREE, 0x2000);
	lb_alloc(&b, 11, HALLOC_FN_MALLOC, 0x4000, 7, 1);
	lb_exit(&b, 101, HALLOC_EXIT_CODE, 0);
	lb_exit(&b, 100, HALLOC_EXIT_CODE, 0);
	a = analyze(&b);
	cr_assert_eq(ha_analysis_process_count(a), 2);
	parent = process(a, 0);
	child = process(a, 1);
	cr_assert_eq(parent.pid, 100);
	cr_assert_eq(parent.parent, -1);
	cr_assert_eq(parent.summary.allocations, 3);
	cr_assert_eq(parent.summary.frees, 2);
	cr_assert_eq(parent.summary.bytes_allocated, 600);
	cr_assert_eq(parent.summary.leaked_bytes, 300);

	cr_assert_eq(child.pid, 101);
	cr_assert_eq(child.parent, 100);
	cr_assert_eq(child.inherited.allocations, 2);
	cr_assert_eq(child.inherited.frees, 1);
	cr_assert_eq(child.summary.allocations, 3);
	cr_assert_eq(child.summary.frees, 2);
	cr_assert_eq(child.summary.bytes_allocated, 307);
	cr_assert_eq(child.summary.unmatched_frees, 0, "B was inherited");
	cr_assert_eq(child.summary.leaked_bytes, 7);
	cr_assert_eq(child.summary.leaked_blocks, 1);
	cr_assert_eq(child.summary.peak_bytes, 200,
		     "the inherited B was live at start");
	ha_analysis_free(a);
	lb_free(&b);
}

Test(replay, inherited_blocks_can_leak_in_the_child)
{
	struct lb b;
	struct ha_analysis *a;
	struct ha_process_info child;
	struct ha_leak_info leak;

	lb_init(&b, 100, prog_argv);
	start_stream(&b, 1, 100, 1, 0, 0, 0, 10);
	lb_alloc(&b, 10, HALLOC_FN_MALLOC, 0x1000, 100, 1);
	lb_free_rec(&b, 20, HALLOC_FREE_FREE, 0x1000);
	start_stream(&b, 2, 101, 100, 1, 15, 0, 20);
	a = analyze(&b);
	child = process(a, 1);
	cr_assert_eq(child.summary.leaked_bytes, 100);
	cr_assert_eq(child.nleaks, 1);
	cr_assert(ha_analysis_leak(a, 1, 0, &leak));
	cr_assert_eq(leak.bytes, 100);
	cr_assert_eq(process(a, 0).summary.leaked_bytes, 0);
	ha_analysis_free(a);
	lb_free(&b);
}

/* pid 100 runs ./prog, which execs: its first image leaks nothing; the
 * exit belongs to the last image. Stream order in the file is reversed. */
Test(replay, exec_ends_an_image_without_leaks)
{
	struct lb b;
	struct ha_analysis *a;
	struct ha_process_info first, second;

	lb_init(&b, 100, prog_argv);
	start_stream(&b, 7, 100, 1, 0, 0, 1, 50); /* started by exec */
	lb_alloc(&b, 10, HALLOC_FN_MALLOC, 0x1000, 10, 1);
	start_stream(&b, 6, 100, 1, 0, 0, 0, 40);
	lb_alloc(&b, 10, HALLOC_FN_MALLOC, 0x1000, 99, 1);
	lb_exit(&b, 100, HALLOC_EXIT_CODE, 3);
	a = analyze(&b);
	cr_assert_eq(ha_analysis_process_count(a), 2);
	first = process(a, 0);
	second = process(a, 1);
	cr_assert_eq(first.summary.bytes_allocated, 99,
		     "ordered by start time");
	cr_assert_eq(first.end, HA_END_EXEC);
	cr_assert_eq(first.summary.leaked_bytes, 0);
	cr_assert_eq(first.summary.end_bytes, 99);
	cr_assert_eq(first.nleaks, 0);
	cr_assert_eq(second.end, HA_END_EXIT);
	cr_assert_eq(second.end_value, 3);
	cr_assert_eq(second.summary.allocations, 1,
		     "an exec'd image starts afresh");
	cr_assert_eq(second.summary.leaked_bytes, 10);
	cr_assert_eq(ha_analysis_leaked_bytes(a), 10);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(replay, signal_and_unknown_endings)
{
	struct lb b;
	struct ha_analysis *a;

	lb_init(&b, 100, prog_argv);
	start_stream(&b, 1, 100, 1, 0, 0, 0, 10);
	start_stream(&b, 2, 101, 100, 1, 3, 0, 20);
	start_stream(&b, 3, 102, 100, 1, 3, 0, 30);
	lb_exit(&b, 100, HALLOC_EXIT_SIGNAL, 6);
	lb_exit(&b, 101, HALLOC_EXIT_CODE, 1);
	a = analyze(&b);
	cr_assert_eq(process(a, 0).end, HA_END_SIGNAL);
	cr_assert_eq(process(a, 0).end_value, 6);
	cr_assert_eq(process(a, 1).end, HA_END_EXIT);
	cr_assert_eq(process(a, 1).end_value, 1);
	cr_assert_eq(process(a, 2).end, HA_END_UNKNOWN);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(replay, command_from_trace_info_without_process_record)
{
	static const char *const argv[] = {"./main", "--flag", NULL};
	struct lb b;
	struct ha_analysis *a;
	struct ha_process_info p;

	lb_init(&b, 100, argv);
	lb_chunk(&b, 1, 100, 100); /* no PROCESS record */
	lb_alloc(&b, 10, HALLOC_FN_MALLOC, 0x1000, 10, 1);
	lb_exit(&b, 100, HALLOC_EXIT_CODE, 0);
	a = analyze(&b);
	p = process(a, 0);
	cr_assert_eq(p.pid, 100);
	cr_assert_eq(p.argc, 2);
	cr_assert_str_eq(p.argv[0], "./main");
	cr_assert_str_eq(p.argv[1], "--flag");
	cr_assert_eq(p.parent, -1);
	ha_analysis_free(a);
	lb_free(&b);
}

Test(replay, process_seen_ending_without_events_is_reported)
{
	struct lb b;
	struct ha_analysis *a;
	struct ha_process_info p;

	lb_init(&b, 100, prog_argv);
	lb_exit(&b, 100, HALLOC_EXIT_CODE, 0);
	a = analyze(&b);
	cr_assert_eq(ha_analysis_process_count(a), 1);
	p = process(a, 0);
	cr_assert_not(p.recorded);
	cr_assert_eq(p.end, HA_END_EXIT);
	cr_assert_str_eq(p.argv[0], "./prog");
	ha_analysis_free(a);
	lb_free(&b);
}

/* Many events from two threads, interleaved by seq and written chunk by
 * chunk: the radix sort must give the same result as the truth. */
Test(replay, many_events_two_threads)
{
	struct lb b;
	struct ha_analysis *a;
	struct ha_summary s;
	const unsigned n = 20000;

	lb_init(&b, 100, prog_argv);
	start_stream(&b, 1, 100, 1, 0, 0, 0, 10);
	/* thread 100 allocates at even seqs, thread 101 frees at odd ones */
	for (unsigned i = 0; i < n; i++) {
		if (i % 100 == 0)
			lb_chunk(&b, 1, 100, 100);
		lb_alloc(&b, 1000 + 2 * i, HALLOC_FN_MALLOC,
			 0x100000 + 16 * (i % 7), 8, 1);
	}
	for (unsigned i = 0; i < n; i++) {
		if (i % 100 == 0)
			lb_chunk(&b, 1, 100, 101);
		lb_free_rec(&b, 1001 + 2 * i, HALLOC_FREE_FREE,
			    0x100000 + 16 * (i % 7));
	}
	a = analyze(&b);
	s = process(a, 0).summary;
	cr_assert_eq(s.allocations, n);
	cr_assert_eq(s.frees, n);
	cr_assert_eq(s.unmatched_frees, 0);
	cr_assert_eq(s.leaked_blocks, 0);
	cr_assert_eq(s.peak_blocks, 1);
	ha_analysis_free(a);
	lb_free(&b);
}
