/*
 * oom_lib.c - allocates in its own code and through liboomlib.so (see
 * the e2e-cflags line).
 *
 * Truth (checked by tests/e2e/run, case "fail-at-library"): main makes 3
 * allocations of 16 bytes at SITE:main, then copies "halloc" (7 bytes)
 * with oomlib_copy, whose malloc is at CRASH:lib in libs/oomlib.c; then
 * frees all and exits 0. No stdio.
 */
/* e2e-cflags: -L$OUT -loomlib -Wl,-rpath,$OUT */
#include <stdlib.h>

char *oomlib_copy(const char *s);

int main(void)
{
	char *own[3], *copy;

	for (int i = 0; i < 3; i++)
		own[i] = malloc(16); /* SITE:main */
	copy = oomlib_copy("halloc");
	for (int i = 0; i < 3; i++)
		free(own[i]);
	free(copy);
	return 0;
}
