/*
 * closefds.c - closes every descriptor above 2, as daemons and programs
 * about to exec do, then opens files of its own (they get the lowest free
 * numbers: the ones it just closed), allocates, writes its files and checks
 * them. Whatever descriptors a tracer gave the program, they are gone after
 * the close; the program must run as it does untraced, and be recorded.
 *
 * Truth (case "close-fds"): exit status 0 (1 when a file of the program's
 * was closed or written behind its back: it says which on stderr);
 * 2000 allocations of 16 + i % 100 bytes, all after the close, all freed
 * but the last 10 (LEAK:closefds): 131000 bytes allocated, 1990 frees,
 * 1105 bytes leaked in 10 blocks.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILES 8
#define COUNT 2000
#define KEEP  10

static void *kept[KEEP];

static void allocate(int from, int to)
{
	for (int i = from; i < to; i++) {
		char *p = malloc(16 + (size_t)(i % 100)); /* LEAK:closefds */
		memset(p, i, 16);
		if (i >= COUNT - KEEP)
			kept[i - (COUNT - KEEP)] = p;
		else
			free(p);
	}
}

int main(int argc, char **argv)
{
	int fds[FILES];
	char name[FILES][32];
	int bad = 0;

	if (argc != 2 || chdir(argv[1]) != 0)
		return 2;
	close_range(3, ~0U, 0);
	for (int i = 0; i < FILES; i++) {
		snprintf(name[i], sizeof(name[i]), "file%d", i);
		fds[i] = open(name[i], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fds[i] < 0)
			return 3;
	}
	allocate(0, COUNT);
	for (int i = 0; i < FILES; i++) {
		if (write(fds[i], "hello\n", 6) != 6 || close(fds[i]) != 0) {
			fprintf(stderr, "closefds: fd %d (%s) was taken away\n",
				fds[i], name[i]);
			bad = 1;
		}
	}
	for (int i = 0; i < FILES; i++) {
		struct stat st;
		if (stat(name[i], &st) != 0 || st.st_size != 6) {
			fprintf(stderr, "closefds: %s has %lld bytes, not 6\n",
				name[i], (long long)st.st_size);
			bad = 1;
		}
	}
	return bad;
}
