/*
 * entry.c - every allocation entry point, once, plus the edge cases.
 *
 *   entry               everything
 *   entry --no-pvalloc  without pvalloc: Valgrind 3.19 aborts the program
 *                       when it calls pvalloc, so this is the variant the
 *                       Valgrind comparison runs
 *
 * Truth (case "entry-points"), with pvalloc:
 *   allocations 13: malloc 10, calloc 3x7=21, malloc 5 + realloc to 50,
 *     malloc 6 + reallocarray 4x25=100, posix_memalign 100, aligned_alloc
 *     128, memalign 70, valloc 300, pvalloc 300 (the size asked for, not
 *     the page it rounds to), malloc(0), realloc(NULL, 40)
 *   frees 12: every block but the memalign one; the reallocs free 2; the
 *     malloc(0) block and the realloc(NULL, 40) block are freed by
 *     realloc(p, 0); free(NULL) is not a free
 *   bytes allocated 10+21+5+50+6+100+100+128+70+300+300+0+40 = 1130
 *   leaked 70 bytes in 1 block (LEAK:memalign)
 *   not counted: malloc(1 << 62) and calloc(SIZE_MAX / 2, 4) return NULL
 *   each SITE: line allocates once, the size above (failed ones: nothing)
 * Without pvalloc: 12 allocations, 11 frees, 830 bytes, the same leak.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* volatile: keep the compiler from reasoning about the huge sizes */
static volatile size_t huge = (size_t)1 << 62;
static volatile size_t half = SIZE_MAX / 2;

int main(int argc, char **argv)
{
	int with_pvalloc = !(argc > 1 && strcmp(argv[1], "--no-pvalloc") == 0);
	void *p;

	p = malloc(10); /* SITE:malloc */
	free(p);

	p = calloc(3, 7); /* SITE:calloc */
	free(p);

	p = malloc(5);	    /* SITE:malloc5 */
	p = realloc(p, 50); /* SITE:realloc */
	free(p);

	p = malloc(6);		    /* SITE:malloc6 */
	p = reallocarray(p, 4, 25); /* SITE:reallocarray */
	free(p);

	if (posix_memalign(&p, 64, 100) != 0) /* SITE:posix_memalign */
		return 1;
	free(p);

	p = aligned_alloc(64, 128); /* SITE:aligned_alloc */
	free(p);

	void *kept = memalign(32, 70); /* LEAK:memalign */

	p = valloc(300); /* SITE:valloc */
	free(p);

	if (with_pvalloc) {
		p = pvalloc(300); /* SITE:pvalloc */
		free(p);
	}

	p = malloc(0); /* SITE:malloc0 */
	if (realloc(p, 0) != NULL)
		return 2;

	free(NULL);

	p = realloc(NULL, 40); /* SITE:realloc-null */
	if (realloc(p, 0) != NULL)
		return 3;

	if (malloc(huge) != NULL) /* SITE:failed-malloc */
		return 4;
	if (calloc(half, 4) != NULL) /* SITE:failed-calloc */
		return 5;

	return kept == NULL;
}
