/*
 * oom_handled.c - a program that checks every allocation for NULL: under
 * halloc-trace's fault injection it loses nothing and exits 0.
 *
 * Truth (checked by tests/e2e/run, cases "fail-*"):
 *   ROUNDS rounds (argv[1], default 10) of ten allocation calls, one per
 *   function, in this order: malloc, calloc, realloc(NULL), realloc to a
 *   bigger block, reallocarray, posix_memalign, aligned_alloc, memalign,
 *   valloc, pvalloc; every block is freed at the end of its round.
 *   Nothing allocates before main or between the calls (no stdio), so the
 *   program's allocation calls are numbered 1 to 10 * ROUNDS.
 *   It writes one character per call to stdout, '.' when the call
 *   succeeded and 'x' when it returned NULL (posix_memalign: ENOMEM), then
 *   a newline; exit status 0, or 1 if a failure did not set errno to
 *   ENOMEM.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <unistd.h>

#define CALLS 10

static char seen[4096];
static size_t nseen;
static int bad_errno;

static void *note(void *p)
{
	if (!p && errno != ENOMEM)
		bad_errno = 1;
	seen[nseen++] = p ? '.' : 'x';
	return p;
}

static void round_of_calls(void)
{
	void *b[CALLS] = {0}, *q;
	int i;

	b[0] = note(malloc(24));	/* FAIL:malloc */
	b[1] = note(calloc(4, 8));	/* FAIL:calloc */
	b[2] = note(realloc(NULL, 40)); /* FAIL:realloc-null */
	/* realloc(NULL, n) when the first failed: a call either way */
	q = note(realloc(b[2], 4000)); /* FAIL:realloc-grow */
	if (q)
		b[2] = q; /* else the old block is still ours */
	b[3] = note(reallocarray(NULL, 6, 8)); /* FAIL:reallocarray */
	errno = posix_memalign(&b[4], 64, 56); /* FAIL:posix_memalign */
	note(errno ? NULL : b[4]);
	b[5] = note(aligned_alloc(32, 64)); /* FAIL:aligned_alloc */
	b[6] = note(memalign(128, 72));	    /* FAIL:memalign */
	b[7] = note(valloc(80));	    /* FAIL:valloc */
	b[8] = note(pvalloc(88));	    /* FAIL:pvalloc */
	for (i = 0; i < CALLS; i++)
		free(b[i]);
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 10;

	if (rounds < 0 || rounds * CALLS > (int)sizeof(seen) - 1)
		return 2;
	for (int r = 0; r < rounds; r++)
		round_of_calls();
	seen[nseen++] = '\n';
	if (write(1, seen, nseen) != (ssize_t)nseen)
		return 3;
	return bad_errno;
}
