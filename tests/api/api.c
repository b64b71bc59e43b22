/*
 * tests/api/api.c - the in-process API (include/halloc/halloc.h), linked
 * directly against libhalloc as a program links it: no halloc-trace.
 *
 * The statistics are the whole process's, Criterion's own allocations
 * included, so every check compares against a baseline taken just before,
 * on the one thread that allocates; hooks only note the events of threads
 * the test marked (a thread-local flag).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <halloc/halloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct point {
	double x, y;
};

struct node {
	struct node *next;
	int value;
};

static struct halloc_usage total(void)
{
	struct halloc_usage u;

	cr_assert_eq(halloc_total_memory_usage(&u), 0);
	return u;
}

static struct halloc_usage of_type(const char *name)
{
	struct halloc_usage u;

	cr_assert_eq(halloc_type_memory_usage_by_name(name, &u), 0);
	return u;
}

/* ---- typed allocations and totals -----------------------------------------
 */

Test(api, typed_totals)
{
	struct halloc_usage before = total(), after, t;
	struct point *p = halloc(struct point, 10);

	cr_assert_not_null(p);
	for (int i = 0; i < 10; i++)
		cr_assert(p[i].x == 0 && p[i].y == 0, "halloc zeroes");
	after = total();
	cr_assert_eq(after.current_bytes - before.current_bytes,
		     10 * (int64_t)sizeof(struct point));
	cr_assert_eq(after.current_blocks - before.current_blocks, 1);
	cr_assert_eq(after.total_blocks - before.total_blocks, 1);
	cr_assert_eq(after.total_bytes - before.total_bytes, 160);
	cr_assert_eq(halloc_type_memory_usage(struct point, &t), 0);
	cr_assert_eq(t.current_bytes, 160);
	cr_assert_eq(t.current_blocks, 1);
	cr_assert_eq(t.total_blocks, 1);
	hfree(p);
	after = total();
	cr_assert_eq(after.current_bytes, before.current_bytes);
	cr_assert_eq(after.frees - before.frees, 1);
	cr_assert_geq(after.peak_bytes, before.current_bytes + 160);
	t = of_type("struct point");
	cr_assert_eq(t.current_bytes, 0);
	cr_assert_eq(t.current_blocks, 0);
	cr_assert_eq(t.peak_bytes, 160);
	cr_assert_eq(t.frees, 1);
	hfree(NULL);
}

Test(api, type_usage_after_frees)
{
	struct node *a = halloc(struct node, 1);
	struct node *b = halloc(struct node, 2);
	struct node *c = halloc(struct node, 4);
	struct halloc_usage t;
	int64_t size = (int64_t)sizeof(struct node);

	cr_assert(a && b && c);
	hfree(b);
	t = of_type("struct node");
	cr_assert_eq(t.current_bytes, 5 * size);
	cr_assert_eq(t.current_blocks, 2);
	cr_assert_eq(t.peak_bytes, 7 * size);
	cr_assert_eq(t.total_blocks, 3);
	cr_assert_eq(t.total_bytes, 7 * size);
	cr_assert_eq(t.frees, 1);
	/* free() of a typed block is the same as hfree() */
	free(a);
	hfree(c);
	t = of_type("struct node");
	cr_assert_eq(t.current_bytes, 0);
	cr_assert_eq(t.frees, 3);
	/* another type is untouched; an unknown one is all zeros */
	cr_assert_eq(of_type("struct point").total_blocks, 0);
	cr_assert_eq(of_type("no such type").total_blocks, 0);
}

Test(api, typed_overflow_is_not_counted)
{
	struct halloc_usage before = total(), after;
	struct point *p;

	errno = 0;
	p = halloc(struct point, SIZE_MAX / 8);
	cr_assert_null(p);
	cr_assert_eq(errno, ENOMEM);
	after = total();
	cr_assert_eq(after.total_blocks, before.total_blocks);
	cr_assert_eq(of_type("struct point").total_blocks, 0);
}

Test(api, realloc_moves_the_block_and_counts_twice)
{
	struct halloc_usage before = total(), after;
	char *p = malloc(10);

	p = realloc(p, 1000);
	cr_assert_not_null(p);
	after = total();
	cr_assert_eq(after.current_bytes - before.current_bytes, 1000);
	cr_assert_eq(after.current_blocks - before.current_blocks, 1);
	cr_assert_eq(after.total_blocks - before.total_blocks, 2);
	cr_assert_eq(after.frees - before.frees, 1);
	cr_assert_null(realloc(p, 0)); /* frees */
	after = total();
	cr_assert_eq(after.current_bytes, before.current_bytes);
	cr_assert_eq(after.frees - before.frees, 2);
}

/* ---- the callback
 * ------------------------------------------------------------- */

struct event {
	const char *file;
	unsigned line;
	char action[8];
	int64_t change, blocks, bytes;
};

static __thread bool watching;

/* GCC assumes malloc and free read no global of ours: without a barrier
 * it may move the stores to `watching` across them. */
static void watch(bool on)
{
	__asm__ volatile("" : : : "memory");
	watching = on;
	__asm__ volatile("" : : : "memory");
}
static struct event events[64];
static int nevents;

static void record(const char *file, unsigned line, const char *action,
		   int64_t change, int64_t blocks, int64_t bytes)
{
	struct event *e;

	if (!watching || nevents == 64)
		return;
	e = &events[nevents++];
	e->file = file;
	e->line = line;
	strncpy(e->action, action, sizeof(e->action) - 1);
	e->change = change;
	e->blocks = blocks;
	e->bytes = bytes;
}

Test(api, callback_actions_sizes_totals)
{
	struct halloc_usage base = total();
	struct point *q;
	unsigned line;
	char *p;

	halloc_set_alloc_callback_func(record);
	watch(true);
	p = malloc(100);
	p = realloc(p, 300);
	free(p);
	line = __LINE__ + 1;
	q = halloc(struct point, 2);
	hfree(q);
	watch(false);
	halloc_set_alloc_callback_func(NULL);

	cr_assert_eq(nevents, 5);
	cr_assert_str_eq(events[0].action, "malloc");
	cr_assert_eq(events[0].change, 100);
	cr_assert_eq(events[0].bytes, base.current_bytes + 100);
	cr_assert_eq(events[0].blocks, base.current_blocks + 1);
	cr_assert_null(events[0].file);
	cr_assert_eq(events[0].line, 0);
	cr_assert_str_eq(events[1].action, "realloc");
	cr_assert_eq(events[1].change, 200);
	cr_assert_eq(events[1].bytes, base.current_bytes + 300);
	cr_assert_eq(events[1].blocks, base.current_blocks + 1);
	cr_assert_str_eq(events[2].action, "free");
	cr_assert_eq(events[2].change, -300);
	cr_assert_eq(events[2].bytes, base.current_bytes);
	cr_assert_eq(events[2].blocks, base.current_blocks);
	cr_assert_str_eq(events[3].action, "malloc");
	cr_assert_eq(events[3].change, 32);
	cr_assert_str_eq(events[3].file, __FILE__);
	cr_assert_eq(events[3].line, line);
	cr_assert_str_eq(events[4].action, "free");
	cr_assert_eq(events[4].change, -32);
	cr_assert_eq(events[4].bytes, base.current_bytes);
}

/* A callback that allocates: counted, but it is not called again. */
static int depth, calls;

static void allocating(const char *file, unsigned line, const char *action,
		       int64_t change, int64_t blocks, int64_t bytes)
{
	void *p;

	if (!watching)
		return;
	calls++;
	cr_assert_eq(depth, 0, "the callback recursed");
	depth++;
	p = malloc(7);
	__asm__ volatile("" : : "r"(p) : "memory");
	free(p);
	depth--;
}

Test(api, callback_may_allocate)
{
	struct halloc_usage before = total(), after;
	void *volatile p; /* else the compiler drops the malloc/free pair */

	halloc_set_alloc_callback_func(allocating);
	watch(true);
	p = malloc(5);
	free(p);
	watch(false);
	halloc_set_alloc_callback_func(NULL);
	after = total();
	cr_assert_eq(calls, 2, "calls: %d", calls);
	/* the program's 1 + the callback's 2 */
	cr_assert_eq(after.total_blocks - before.total_blocks, 3);
	cr_assert_eq(after.current_bytes, before.current_bytes);
}

#define THREADS 4
#define ROUNDS	2000

static int64_t seen_events, seen_change, bad_totals;

static void counting(const char *file, unsigned line, const char *action,
		     int64_t change, int64_t blocks, int64_t bytes)
{
	if (!watching)
		return;
	__atomic_fetch_add(&seen_events, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&seen_change, change, __ATOMIC_RELAXED);
	if (blocks < 0 || bytes < 0 || (change > 0 && bytes < change))
		__atomic_fetch_add(&bad_totals, 1, __ATOMIC_RELAXED);
}

static pthread_barrier_t start;

static void *churn(void *arg)
{
	void *keep[16];

	watch(true);
	pthread_barrier_wait(&start);
	for (int i = 0; i < ROUNDS; i++) {
		keep[i % 16] = malloc(16 + (size_t)(i % 7) * 8);
		if (i % 16 == 15)
			for (int k = 0; k < 16; k++)
				free(keep[k]);
	}
	watch(false);
	return arg;
}

Test(api, callback_from_threads)
{
	pthread_t th[THREADS];
	struct halloc_usage before, after;

	pthread_barrier_init(&start, NULL, THREADS + 1);
	for (int i = 0; i < THREADS; i++)
		pthread_create(&th[i], NULL, churn, NULL);
	before = total();
	halloc_set_alloc_callback_func(counting);
	pthread_barrier_wait(&start);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	halloc_set_alloc_callback_func(NULL);
	after = total();
	cr_assert_eq(seen_events, 2 * THREADS * ROUNDS);
	cr_assert_eq(seen_change, 0, "every block was given back");
	cr_assert_eq(bad_totals, 0);
	cr_assert_eq(after.total_blocks - before.total_blocks,
		     THREADS * ROUNDS);
	cr_assert_eq(after.frees - before.frees, THREADS * ROUNDS);
}

/* ---- the monitor
 * ------------------------------------------------------------------ */

struct budget {
	int64_t limit, used; /* used: atomic */
	int64_t refused, posts;
};

static bool within(void *user, ssize_t bytes, bool post)
{
	struct budget *b = user;
	int64_t used;

	if (post) {
		__atomic_fetch_add(&b->used, bytes, __ATOMIC_RELAXED);
		__atomic_fetch_add(&b->posts, 1, __ATOMIC_RELAXED);
		return true;
	}
	used = __atomic_load_n(&b->used, __ATOMIC_RELAXED);
	do {
		if (used + bytes > b->limit) {
			__atomic_fetch_add(&b->refused, 1, __ATOMIC_RELAXED);
			return false;
		}
	} while (!__atomic_compare_exchange_n(&b->used, &used, used + bytes,
					      true, __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
	return true;
}

Test(api, monitor_refuses_over_budget)
{
	struct budget b = {.limit = 1000};
	struct halloc_usage before = total(), mid, after;
	void *p, *q, *r, *s;
	int err;

	halloc_set_memory_monitor(within, &b);
	p = malloc(600);
	mid = total();
	errno = 0;
	q = malloc(600); /* 1200 > 1000 */
	err = errno;
	r = realloc(p, 2000); /* refused: p is intact */
	after = total();
	free(r ? r : p);
	s = halloc(struct point, 40); /* 640, fits again */
	hfree(s);
	halloc_set_memory_monitor(NULL, NULL);

	cr_assert_not_null(p);
	cr_assert_null(q);
	cr_assert_eq(err, ENOMEM);
	cr_assert_null(r);
	cr_assert_not_null(s);
	cr_assert_eq(b.refused, 2);
	cr_assert_eq(b.posts, 2);
	cr_assert_eq(b.used, 0);
	/* refused allocations are never counted */
	cr_assert_eq(mid.total_blocks - before.total_blocks, 1);
	cr_assert_eq(after.total_blocks, mid.total_blocks);
	cr_assert_eq(after.current_bytes, mid.current_bytes);
	cr_assert_eq(total().current_bytes, before.current_bytes);
	cr_assert_eq(of_type("struct point").total_blocks, 1);
}

static struct budget shared = {.limit = 64 * ROUNDS};
static int64_t granted;

static void *hold(void *arg)
{
	void **keep = arg;

	pthread_barrier_wait(&start);
	for (int i = 0; i < ROUNDS; i++)
		if ((keep[i] = malloc(64)))
			__atomic_fetch_add(&granted, 1, __ATOMIC_RELAXED);
	return NULL;
}

Test(api, monitor_from_four_threads)
{
	static void *keep[THREADS][ROUNDS];
	struct halloc_usage before, after;
	pthread_t th[THREADS];

	pthread_barrier_init(&start, NULL, THREADS + 1);
	for (int i = 0; i < THREADS; i++)
		pthread_create(&th[i], NULL, hold, keep[i]);
	before = total();
	halloc_set_memory_monitor(within, &shared);
	pthread_barrier_wait(&start);
	/* Replaced while they call it: the same monitor, set again. */
	for (int i = 0; i < 100; i++)
		halloc_set_memory_monitor(within, &shared);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	halloc_set_memory_monitor(NULL, NULL);
	after = total();

	/* The budget holds exactly ROUNDS blocks of 64 bytes. */
	cr_assert_eq(granted, ROUNDS);
	cr_assert_eq(shared.refused, (THREADS - 1) * ROUNDS);
	cr_assert_eq(after.total_blocks - before.total_blocks, ROUNDS);
	cr_assert_eq(after.current_bytes - before.current_bytes, 64 * ROUNDS);
	for (int i = 0; i < THREADS; i++)
		for (int k = 0; k < ROUNDS; k++)
			free(keep[i][k]);
	cr_assert_eq(total().current_bytes, before.current_bytes);
}

/* ---- fork
 * -------------------------------------------------------------------- */

static bool stop;

static void *busy(void *arg)
{
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		void *volatile p = malloc(48);

		free(p);
	}
	return arg;
}

/* The table survives fork while other threads use it: the child allocates,
 * frees and counts (an inherited locked shard would hang it). */
Test(api, fork_while_threads_allocate)
{
	pthread_t th[2];
	int status;

	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, busy, NULL);
	for (int round = 0; round < 50; round++) {
		pid_t pid = fork();

		if (pid == 0) {
			struct halloc_usage a, b;
			void *volatile p;

			alarm(10);
			halloc_total_memory_usage(&a);
			p = halloc(struct point, 4);
			halloc_total_memory_usage(&b);
			if (!p || b.current_bytes - a.current_bytes != 64)
				_exit(1);
			hfree(p);
			halloc_total_memory_usage(&b);
			_exit(b.current_bytes == a.current_bytes ? 0 : 2);
		}
		cr_assert_gt(pid, 0);
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			  "child %d: status %#x", round, status);
	}
	__atomic_store_n(&stop, true, __ATOMIC_RELAXED);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
}
