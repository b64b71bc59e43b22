/*
 * bpf_attach: a process to attach to (halloc-trace -p). It allocates one
 * block, starts two threads, prints "ready PID" and waits for a line on
 * stdin: the tracer is attached then. The threads allocate and leak at the
 * marked lines, main frees the block from before the attach, prints
 * "done", and then either exits with status 3 ("exit") or waits for
 * another line ("wait").
 *
 * Known truth while attached (tests/e2e/bpf_run checks it):
 *   allocations 1011, bytes allocated 50433, frees 1003 of blocks
 *   allocated while attached + 1 of a block from before;
 *   leaked 8 blocks, 2039 bytes: 3 x 100 at LEAK_A, 2 x 200 at LEAK_B,
 *   1000 at LEAK_C (a realloc), 333 at LEAK_D, 6 at LEAK_E (strdup).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int go[2];
static void *kept[16];

static void wait_go(void)
{
	char c;

	while (read(go[0], &c, 1) < 0)
		;
}

static void *thread_a(void *arg)
{
	void *p;

	wait_go();
	for (int i = 0; i < 3; i++)
		kept[i] = malloc(100); /* LEAK_A */
	for (int i = 0; i < 2; i++)
		kept[3 + i] = calloc(10, 20); /* LEAK_B */
	p = malloc(10);
	kept[5] = realloc(p, 1000); /* LEAK_C */
	for (int i = 0; i < 500; i++) {
		p = malloc(64);
		*(volatile char *)p = 1;
		free(p);
	}
	return NULL;
}

static void *thread_b(void *arg)
{
	void *p;

	wait_go();
	kept[6] = malloc(333); /* LEAK_D */
	for (int i = 0; i < 500; i++) {
		p = malloc(32);
		*(volatile char *)p = 1;
		free(p);
	}
	if (posix_memalign(&p, 64, 128) == 0)
		free(p);
	p = aligned_alloc(64, 256);
	free(p);
	kept[7] = strdup("hello"); /* LEAK_E */
	return NULL;
}

int main(int argc, char **argv)
{
	int wait_at_end = argc > 1 && !strcmp(argv[1], "wait");
	char line[64];
	pthread_t a, b;
	void *before = malloc(77);

	if (pipe(go) < 0 || pthread_create(&a, NULL, thread_a, NULL) ||
	    pthread_create(&b, NULL, thread_b, NULL))
		return 1;
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	/* Attached: let both threads run. */
	if (write(go[1], "ab", 2) != 2)
		return 1;
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	free(before);
	printf("done\n");
	fflush(stdout);
	if (wait_at_end && !fgets(line, sizeof(line), stdin))
		return 1;
	return wait_at_end ? 0 : 3;
}
