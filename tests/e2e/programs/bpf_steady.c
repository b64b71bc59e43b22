/*
 * bpf_steady: a heap in a steady state, to attach to for a while. Keeps a
 * ring of 1000 blocks, replacing them one after the other (malloc, or a
 * realloc of a fresh block) for SECONDS (default 4), printing "ready PID"
 * first. Whatever window a tracer records, 1000 blocks are live at its
 * end, blocks allocated before it are freed as the ring turns, and no
 * block is freed twice: a free missed or seen at the wrong moment shows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define RING 1000

static void *ring[RING];

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 4;
	struct timespec start, now;
	unsigned long i = 0;

	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		for (int k = 0; k < RING; k++, i++) {
			free(ring[i % RING]);
			if (i % 3)
				ring[i % RING] = malloc(16 + i % 500);
			else
				ring[i % RING] =
				    realloc(malloc(8), 100 + i % 300);
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec - start.tv_sec < seconds);
	return 0;
}
