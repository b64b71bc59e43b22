/*
 * sampled.c - churn for halloc-trace --sample (cases_sample.py): two
 * threads, 100000 allocations each of 16 to 4111 bytes (malloc, and every
 * eighth a realloc of the slot), a working set of 1024 slots per thread,
 * all freed at the end; then BIG_BLOCKS blocks of 1 MiB leaked at
 * LEAK:big. The exact run is the truth the sampled run's estimates are
 * held to.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define OPS	   100000
#define SLOTS	   1024
#define BIG_BLOCKS 4

static unsigned long long next(unsigned long long *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void *churn(void *arg)
{
	unsigned long long seed = (unsigned long long)(size_t)arg;
	void *slot[SLOTS] = {0};

	for (int i = 0; i < OPS; i++) {
		unsigned long long r = next(&seed);
		int k = (int)(r % SLOTS);
		size_t n = 16 + (r >> 20) % 4096;

		if (slot[k] && i % 8 == 0) {
			void *p = realloc(slot[k], n);

			if (p)
				slot[k] = p;
			continue;
		}
		free(slot[k]);
		slot[k] = malloc(n);
		if (slot[k])
			memset(slot[k], 1, 16);
	}
	for (int k = 0; k < SLOTS; k++)
		free(slot[k]);
	return NULL;
}

static void *leak_big(void)
{
	void *p = malloc(1 << 20); /* LEAK:big */

	if (p)
		memset(p, 2, 64);
	return p;
}

int main(void)
{
	pthread_t t[2];

	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, churn,
			       (void *)(size_t)(88172645463325252ull + i));
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < BIG_BLOCKS; i++)
		leak_big();
	return 0;
}
