/*
 * bpf_spawn: every allocation entry point once, and leaks at the marked
 * lines, for `halloc-trace --bpf` from the first instruction; also built
 * -static, where malloc is inside the executable. No stdio, so the C
 * library allocates nothing of its own. Exits with status 4.
 *
 * Known truth (tests/e2e/bpf_run checks it; valgrind agrees for the
 * dynamic build): allocations 110, frees 107, bytes allocated 7230, one
 * failed allocation (not counted); leaked 3 blocks, 190 bytes: 40 at
 * SPAWN_A, 150 at SPAWN_B, 0 at SPAWN_D.
 */
#include <malloc.h>
#include <stdlib.h>

static void *keep[4];

int main(void)
{
	volatile size_t huge = (size_t)-1 / 2;
	void *p, *q = NULL;

	keep[0] = malloc(40);	 /* SPAWN_A */
	keep[1] = calloc(3, 50); /* SPAWN_B */
	p = malloc(20);
	p = realloc(p, 200); /* SPAWN_C */
	for (int i = 0; i < 100; i++)
		free(malloc(16 + (size_t)i));
	free(p);
	if (posix_memalign(&q, 32, 64) == 0)
		free(q);
	free(memalign(64, 100));
	free(valloc(10));
	q = reallocarray(NULL, 4, 8);
	q = reallocarray(q, 8, 8);
	free(q);
	keep[2] = malloc(0);	/* SPAWN_D */
	keep[3] = malloc(huge); /* fails: not an allocation */
	return keep[3] ? 1 : 4;
}
