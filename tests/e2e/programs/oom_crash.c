/*
 * oom_crash.c - a program that trusts malloc: when an allocation fails it
 * writes through NULL and dies of SIGSEGV.
 *
 * Truth (checked by tests/e2e/run, cases "fail-*"):
 *   main makes 8 allocation calls of 32 bytes, one at a time, each written
 *   to at once; the first is at CRASH:first, the fifth at CRASH:fifth. No
 *   allocation before main (no stdio). If all succeed it frees them and
 *   exits 0.
 */
#include <stdlib.h>
#include <string.h>

static char *take(int i)
{
	char *p;

	if (i == 0)
		p = malloc(32); /* CRASH:first */
	else if (i == 4)
		p = malloc(32); /* CRASH:fifth */
	else
		p = malloc(32); /* CRASH:other */
	memset(p, 'a' + i, 32); /* no NULL check: SIGSEGV when it failed */
	return p;
}

int main(void)
{
	char *keep[8];

	for (int i = 0; i < 8; i++)
		keep[i] = take(i);
	for (int i = 0; i < 8; i++)
		free(keep[i]);
	return 0;
}
