/*
 * sigkill.c - allocates, frees half, then kills itself with SIGKILL: no
 * handler, no exit path, no flush runs after the kill.
 *
 * Truth (case "sigkill"): COUNT allocations, block i of 16 * (i % 100 + 1)
 * bytes; the blocks with an even i are freed; so COUNT / 2 frees, and the
 * odd ones (LEAK:kill) are still live when the process dies; SIGKILL (9),
 * so halloc-trace exits 137.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COUNT 3000

static void *blocks[COUNT];

int main(void)
{
	for (int i = 0; i < COUNT; i++) {
		size_t size = 16 * (size_t)(i % 100 + 1);
		blocks[i] = malloc(size); /* LEAK:kill */
		memset(blocks[i], i, size);
	}
	for (int i = 0; i < COUNT; i += 2)
		free(blocks[i]);
	kill(getpid(), SIGKILL);
	pause();
	return 1;
}
