/*
 * deep.c - a leak at the bottom of a 300-frame recursion, built without
 * frame pointers (see the e2e-cflags line), so only unwind tables can walk
 * it.
 *
 * Truth (case "deep-stack"): one leak of 77 bytes at LEAK:deep in descend;
 * its stack holds as many frames as the depth asked for (64 by default),
 * the first at LEAK:deep and every other one at LINE:recurse in descend.
 */
/* e2e-cflags: -fomit-frame-pointer */
#include <stdlib.h>

#define DEPTH 300

static void *volatile sink;

__attribute__((noinline)) static void *descend(int depth)
{
	if (depth == 1)
		return malloc(77);    /* LEAK:deep */
	void *p = descend(depth - 1); /* LINE:recurse */
	return p;
}

int main(void)
{
	sink = descend(DEPTH);
	return 0;
}
