/*
 * exit_thread.c - exit() called from one thread while three others are
 * still allocating and freeing as fast as they can.
 *
 *   exit_thread STATS_FILE   (a file of at least STATS_SIZE bytes)
 *
 * Where each worker is when the process ends is a race, so the program
 * keeps its own books in STATS_FILE (a shared mapping, so they survive
 * it): per worker, its allocations, frees, bytes, live blocks and bytes,
 * and the call it is in the middle of, if any (a malloc or a free of a
 * known size, which a tracer may or may not have recorded when the thread
 * is stopped). A worker publishes its books by writing a whole new copy
 * and then switching one index, so the copy the test reads is never half
 * written.
 *
 * Truth (case "exit-thread"): the main thread leaks 123 bytes (LEAK:main),
 * the exiting thread 99 (LEAK:last), pthread_create callocs one DTV per
 * thread (4, at LINE:create, 16 * (tls_modid + 16) bytes each, tls_modid
 * as in an untraced run: see threads.c), plus the workers' books, each
 * in-flight call counted or not.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define WORKERS 3
#define SLOTS	32
#define WARMUP	2000 /* allocations each worker makes before the exit */

enum { NONE = 0, IN_MALLOC = 1, IN_FREE = 2 };

struct books {
	uint64_t allocs, frees, bytes, live_blocks, live_bytes;
	uint64_t inflight, inflight_size;
};

struct worker {
	uint64_t current; /* which of books[] is published */
	struct books books[2];
};

/* The layout tests/e2e/run reads: 64-bit little-endian words. */
struct shared {
	uint64_t magic; /* "HALLOCX1" once set up */
	uint64_t tls_modid;
	struct worker workers[WORKERS];
};

#define STATS_SIZE sizeof(struct shared)

static struct shared *shared;

static void publish(struct worker *w, const struct books *b)
{
	uint64_t next = 1 - w->current;
	w->books[next] = *b;
	__atomic_store_n(&w->current, next, __ATOMIC_RELEASE);
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct books b = {0};
	void *slot[SLOTS] = {0};
	size_t size[SLOTS] = {0};
	unsigned id = (unsigned)(w - shared->workers);

	for (uint64_t k = 0;; k++) {
		unsigned j = (unsigned)(k % SLOTS);
		if (slot[j]) {
			b.inflight = IN_FREE;
			b.inflight_size = size[j];
			publish(w, &b);
			free(slot[j]);
			b.frees++;
			b.live_blocks--;
			b.live_bytes -= size[j];
			b.inflight = NONE;
			publish(w, &b);
		}
		size[j] = 1 + (k * 31 + id * 7) % 700;
		b.inflight = IN_MALLOC;
		b.inflight_size = size[j];
		publish(w, &b);
		slot[j] = malloc(size[j]); /* LINE:work */
		b.allocs++;
		b.bytes += size[j];
		b.live_blocks++;
		b.live_bytes += size[j];
		b.inflight = NONE;
		publish(w, &b);
		memset(slot[j], (int)k, size[j]);
	}
	return NULL;
}

static void *finish(void *arg)
{
	for (unsigned i = 0; i < WORKERS; i++) {
		struct worker *w = &shared->workers[i];
		for (;;) {
			uint64_t cur =
			    __atomic_load_n(&w->current, __ATOMIC_ACQUIRE);
			if (w->books[cur].allocs >= WARMUP)
				break;
			sched_yield();
		}
	}
	char *last = malloc(99); /* LEAK:last */
	memset(last, 0, 99);
	exit(0);
}

static int max_modid(struct dl_phdr_info *info, size_t size, void *data)
{
	uint64_t *max = data;
	if (info->dlpi_tls_modid > *max)
		*max = info->dlpi_tls_modid;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	int fd = open(argv[1], O_RDWR);
	if (fd < 0)
		return 3;
	shared =
	    mmap(NULL, STATS_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (shared == MAP_FAILED)
		return 4;
	dl_iterate_phdr(max_modid, &shared->tls_modid);
	memcpy(&shared->magic, "HALLOCX1", 8);

	char *name = malloc(123); /* LEAK:main */
	memset(name, 0, 123);

	pthread_t threads[WORKERS + 1];
	for (unsigned i = 0; i <= WORKERS; i++) {
		void *(*run)(void *) = i < WORKERS ? work : finish;
		void *arg = i < WORKERS ? &shared->workers[i] : NULL;
		pthread_create(&threads[i], NULL, run, arg); /* LINE:create */
	}
	pthread_join(threads[WORKERS], NULL); /* never returns: finish exits */
	return 5;
}
