/*
 * abort.c - leaks, then aborts.
 *
 * Truth (case "abort"): 2 allocations (1000, 10), 1 free, 1010 bytes;
 * leaked 1000 bytes in 1 block at LEAK:abort; ends by SIGABRT (6), so
 * halloc-trace exits 134; the log is complete (the tracer was not killed).
 */
#include <stdlib.h>
#include <string.h>

int main(void)
{
	char *buffer = malloc(1000); /* LEAK:abort */
	memset(buffer, 'x', 1000);
	char *tmp = malloc(10);
	free(tmp);
	abort();
}
