/*
 * leaks.c - four leaks at known lines, one per allocation function.
 *
 * Truth (checked by tests/e2e/run, case "leaks"):
 *   allocations 8: malloc 100, calloc 10x4, malloc 16 then realloc to 32,
 *                  64, 128, strdup of 14 bytes, malloc 200
 *   frees 4: three reallocs free their old block, one free
 *   bytes allocated 594; peak 482 bytes in 5 blocks
 *   leaked 282 bytes in 4 blocks, one at each LEAK: line
 *   exit status 7 (so the test sees the status pass through)
 * Nothing here uses stdio: its buffer would be one more block in use.
 */
#include <stdlib.h>
#include <string.h>

static char *keep[4]; /* what a real program would forget about */

static char *make_name(void)
{
	return strdup("hello, halloc"); /* LEAK:strdup */
}

static char *grow(void)
{
	char *buf = malloc(16);
	memset(buf, 'a', 16);
	buf = realloc(buf, 32);
	buf = realloc(buf, 64);
	buf = realloc(buf, 128); /* LEAK:realloc */
	memset(buf, 'b', 128);
	return buf;
}

int main(void)
{
	keep[0] = malloc(100); /* LEAK:malloc */
	memset(keep[0], 0, 100);
	keep[1] = calloc(10, sizeof(int)); /* LEAK:calloc */
	keep[2] = grow();
	keep[3] = make_name();

	char *scratch = malloc(200);
	memset(scratch, 'c', 200);
	free(scratch);
	return 7;
}
