/*
 * unwindmemo.c - stacks that change under the agent's unwind memo
 * (agent/unwind.c): recursion to varying depths, one function reached from
 * two call sites at the same stack depth, longjmp out of a recursion,
 * signal handlers on the thread's stack and on an alternate one, threads.
 * Run with HALLOC_UNWIND_CHECK set, the agent checks every walk the memo
 * shortened against a full walk and aborts on a difference.
 *
 * Truth (case "unwind-memo"): exit 0; 300 bytes in 2 blocks leaked at
 * leaf, allocated through keep_a (LINE:keep_a) and keep_b (LINE:keep_b);
 * per thread, 4 allocations a round and one a signal, at least.
 */
/* e2e-cflags: -O2 -fomit-frame-pointer -pthread */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define ROUNDS 3000

static void *volatile sink_a, *volatile sink_b;
static __thread jmp_buf jump_back;

__attribute__((noinline)) static void *leaf(size_t n)
{
	void *p = malloc(n);

	__asm__ volatile("" ::: "memory");
	return p;
}

__attribute__((noinline)) static void *rec(int d, size_t n)
{
	void *p;

	if (!d)
		return leaf(n);
	p = rec(d - 1, n);
	__asm__ volatile("" ::: "memory");
	return p;
}

/* Same frame, two callers: the walks meet the same (ra, CFA) in rec. */
__attribute__((noinline)) static void via_a(int d)
{
	free(rec(d, 16));
	__asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void via_b(int d)
{
	free(rec(d, 16));
	__asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void jump(int d)
{
	if (!d) {
		free(leaf(8));
		longjmp(jump_back, 1);
	}
	jump(d - 1);
	__asm__ volatile("" ::: "memory");
}

static void on_signal(int sig)
{
	free(rec(sig % 4, 24));
}

__attribute__((noinline)) static void *keep_a(void)
{
	void *p = rec(4, 100); /* LINE:keep_a */

	__asm__ volatile("" ::: "memory");
	return p;
}

__attribute__((noinline)) static void *keep_b(void)
{
	void *p = rec(4, 200); /* LINE:keep_b */

	__asm__ volatile("" ::: "memory");
	return p;
}

static void *rounds(void *arg)
{
	int i;

	for (i = 0; i < ROUNDS; i++) {
		if (i & 1)
			via_a(i % 9);
		else
			via_b(i % 7);
		via_a(i % 5);
		if (!setjmp(jump_back))
			jump(i % 6);
		/* Deep, at depths in no order: with a depth limit the walks stop
		 * short of the stack's end, and memos of walks from other
		 * depths (two contexts may share one) are met part way. */
		free(rec(20 + (i * 37) % 60, 32));
		if (i % 50 == 0)
			raise(i % 100 ? SIGUSR1 : SIGUSR2);
	}
	return arg;
}

int main(void)
{
	static char alt[1 << 16];
	stack_t ss = {.ss_sp = alt, .ss_size = sizeof(alt)};
	struct sigaction sa;
	pthread_t t[2];
	int i;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGUSR1, &sa, NULL);
	sigaltstack(&ss, NULL);
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGUSR2, &sa, NULL);
	for (i = 0; i < 2; i++)
		if (pthread_create(&t[i], NULL, rounds, NULL))
			return 1;
	rounds(NULL);
	for (i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	sink_a = keep_a();
	sink_b = keep_b();
	return 0;
}
