/*
 * oomlib.c - a library that trusts malloc, linked by programs/oom_lib.c
 * (DT_NEEDED): for --fail-at at a line of a shared library.
 */
#include <stdlib.h>
#include <string.h>

char *oomlib_copy(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = malloc(n); /* CRASH:lib */

	memcpy(p, s, n); /* no NULL check: SIGSEGV when it failed */
	return p;
}
