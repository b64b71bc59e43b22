/*
 * forker.c - a parent and a forked child, each with its own leak.
 *
 *   forker              the child allocates, frees and leaks, then exits
 *   forker exec PROG... the child execs PROG (nothing allocated in between)
 *   forker exec-closefds PROG...
 *                       the same, but the child first closes every file
 *                       descriptor above 2, as Python's subprocess (its
 *                       default close_fds=True) and many daemons do
 *
 * Truth (cases "fork-*"), sizes chosen so every sum is unambiguous:
 *   parent: allocations 111, 222, 333, 666; frees 222, 666, 111
 *           -> 4 allocations, 3 frees, 1332 bytes, leaked 333 (LEAK:parent)
 *   child (forker, no exec): it starts with the parent's heap as of the
 *           fork, counters included (as Valgrind counts: 3 allocations,
 *           1 free, 666 bytes), then allocates 444 and 555, frees 555 and
 *           the inherited 111
 *           -> 5 allocations, 3 frees, 1665 bytes,
 *              leaked 333 (LEAK:parent) + 444 (LEAK:child) = 777 in 2 blocks
 *   exit status: the parent returns 0 when the child exited 0
 * Output (stdout, without stdio): "parent=PID child=PID\n" from the parent.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char *kept = malloc(111);
	char *gone = malloc(222);
	free(gone);
	char *leak = malloc(333); /* LEAK:parent */
	memset(leak, 1, 333);

	pid_t child = fork();
	if (child < 0)
		return 3;
	if (child == 0) {
		if (argc > 2 && strncmp(argv[1], "exec", 4) == 0) {
			if (strcmp(argv[1], "exec-closefds") == 0)
				close_range(3, ~0U, 0);
			execv(argv[2], argv + 2);
			_exit(127);
		}
		char *mine = malloc(444); /* LEAK:child */
		memset(mine, 2, 444);
		char *tmp = malloc(555);
		free(tmp);
		free(kept);
		exit(0);
	}

	int status;
	if (waitpid(child, &status, 0) != child)
		return 4;
	char *late = malloc(666);
	free(late);
	free(kept);

	char line[64];
	int n = snprintf(line, sizeof(line), "parent=%d child=%d\n",
			 (int)getpid(), (int)child);
	if (write(1, line, (size_t)n) != n)
		return 5;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 6;
}
