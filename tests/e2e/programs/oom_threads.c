/*
 * oom_threads.c - four threads that check every allocation for NULL, for
 * fault injection in a threaded program.
 *
 * Truth (checked by tests/e2e/run, case "fail-threads"):
 *   Main starts the threads one at a time: each makes its first allocation
 *   call before main starts the next (so the threads reach the agent first
 *   in the order 1 to 4), then they all run at once. Each thread makes
 *   CALLS malloc calls (FAIL:thread), freeing each block at once.
 *   Output (stdout, written without stdio): one line per thread, in thread
 *   order: '.' for each call that succeeded, 'x' for each that returned
 *   NULL; "-" instead when pthread_create failed. Exit status 0.
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define THREADS 4
#define CALLS	200

static sem_t started;
static char seen[THREADS][CALLS + 1];

static void *work(void *arg)
{
	int id = (int)(intptr_t)arg;

	for (int i = 0; i < CALLS; i++) {
		void *p = malloc(16 + (size_t)i); /* FAIL:thread */

		seen[id][i] = p ? '.' : 'x';
		if (i == 0)
			sem_post(&started);
		free(p);
	}
	seen[id][CALLS] = '\n';
	return NULL;
}

int main(void)
{
	pthread_t t[THREADS];
	int ok[THREADS];

	sem_init(&started, 0, 0);
	for (int i = 0; i < THREADS; i++) {
		ok[i] =
		    pthread_create(&t[i], NULL, work, (void *)(intptr_t)i) == 0;
		if (ok[i])
			sem_wait(&started);
	}
	for (int i = 0; i < THREADS; i++) {
		if (ok[i]) {
			pthread_join(t[i], NULL);
			if (write(1, seen[i], CALLS + 1) != CALLS + 1)
				return 3;
		} else if (write(1, "-\n", 2) != 2) {
			return 3;
		}
	}
	return 0;
}
