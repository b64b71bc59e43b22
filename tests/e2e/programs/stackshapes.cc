/*
 * stackshapes.cc - allocations under every kind of frame the unwinder
 * meets, each block leaked so that its whole stack is in the report:
 * C++ exceptions (the exception object itself, allocations in a catch
 * block and in a destructor run during unwinding), a signal handler on
 * the thread's stack and one on an alternate signal stack, threads,
 * recursion 200 frames deep (deeper than the default depth), a function
 * called from two sites at the same depth, and longjmp out of a frame.
 * Deterministic: the same run gives the same stacks every time.
 *
 * tests/e2e/compare_stacks runs it (and others) under two builds of
 * halloc and compares their reports: the same stacks, frame for frame.
 */
#include <csetjmp>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <pthread.h>
#include <stdexcept>
#include <unistd.h>

static void *volatile sink;

/* Inline: each use is a site of its own (the report groups leaks by site). */
#define keep(n) (sink = malloc(n))

struct Guard {
	~Guard() { keep(11); } /* runs while the exception unwinds */
};

__attribute__((noinline)) static void thrower(int n)
{
	Guard g;

	if (n == 0)
		throw std::runtime_error("a message long enough to be on the heap");
	thrower(n - 1);
	__asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void exceptions(void)
{
	try {
		thrower(3);
	} catch (const std::exception &e) {
		keep(13 + strlen(e.what()) % 2);
	}
}

static void on_signal(int sig)
{
	keep(17 + (size_t)sig % 2); /* malloc in a handler: fine for glibc here */
}

__attribute__((noinline)) static void signals(void)
{
	static char alt[64 << 10];
	stack_t ss;
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGUSR1, &sa, nullptr);
	raise(SIGUSR1); /* on this stack */
	ss.ss_sp = alt;
	ss.ss_size = sizeof(alt);
	ss.ss_flags = 0;
	sigaltstack(&ss, nullptr);
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGUSR2, &sa, nullptr);
	raise(SIGUSR2); /* on the alternate stack */
	ss.ss_flags = SS_DISABLE;
	sigaltstack(&ss, nullptr);
}

__attribute__((noinline)) static void recurse(int depth)
{
	if (depth == 0) {
		keep(19);
		return;
	}
	recurse(depth - 1);
	__asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void shared(size_t n)
{
	keep(n);
}

__attribute__((noinline)) static void site_a(void)
{
	shared(23);
}

__attribute__((noinline)) static void site_b(void)
{
	shared(29);
}

static jmp_buf jump;

__attribute__((noinline)) static void jumper(void)
{
	keep(31);
	longjmp(jump, 1);
}

__attribute__((noinline)) static void jumps(void)
{
	if (!setjmp(jump))
		jumper();
	keep(37);
}

static void *thread_main(void *arg)
{
	recurse((int)(long)arg);
	site_a();
	exceptions();
	return nullptr;
}

int main()
{
	pthread_t t[2];
	int i;

	exceptions();
	signals();
	recurse(200);
	recurse(5);
	site_a();
	site_b();
	jumps();
	for (i = 0; i < 2; i++) {
		pthread_create(&t[i], nullptr, thread_main, (void *)(long)(i + 3));
		pthread_join(t[i], nullptr); /* one at a time: same order each run */
	}
	return 0;
}
