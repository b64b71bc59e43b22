/*
 * exec_chain.c N - execs itself N times (argv[1], default COUNT); each
 * image makes one allocation of 4321 bytes and keeps it (LEAK:image), then
 * execs the next; the last one kills itself with SIGKILL, so nothing
 * flushes after it.
 *
 * Truth (case "exec-chain", with -f): N + 1 images of one pid, each with 1
 * allocation of 4321 bytes; only the last leaks it (an image replaced by
 * exec leaks nothing); halloc-trace exits 137. With N above the tracer's
 * shared-memory slots (the case makes them 32), an image that could not
 * get a slot would build its frames in private memory, which exec throws
 * away: every image must find the slots of the image before it free.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define COUNT 4200

int main(int argc, char **argv)
{
	long left = argc > 1 ? atol(argv[1]) : COUNT;
	char next[24];
	volatile char *block = malloc(4321); /* LEAK:image */

	if (!block)
		return 1;
	block[0] = 1;
	if (left <= 0) {
		raise(SIGKILL);
		return 2;
	}
	snprintf(next, sizeof(next), "%ld", left - 1);
	execl("/proc/self/exe", argv[0], next, (char *)NULL);
	return 3;
}
