/*
 * threads.c - four threads, every block freed by a thread other than the one
 * that allocated it: two producers malloc items and hand them through a
 * mutex-protected queue to two consumers, which free them.
 *
 * Truth (case "threads"):
 *   items: 2 producers x ITEMS, item i of a producer is item_size(i) bytes,
 *          allocated at LINE:item, all freed by consumers
 *   main:  one block of 50 bytes never freed (LEAK:banner)
 *   pthread_create: glibc callocs each new thread's DTV (dl-tls.c,
 *          allocate_dtv): 16 * (max TLS module id + 16) bytes, never freed
 *          while the stack is cached, so 4 blocks still live at exit, at
 *          LINE:create. The id is the untraced program's: the agent brings
 *          TLS modules of its own, and records the request the program
 *          makes without them (agent/self.c), as Valgrind sees it.
 * Output (stdout, written without stdio): "tls_modid=N\n", the largest TLS
 * module id, so the test can compute the DTV size of an untraced run.
 */
#define _GNU_SOURCE
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ITEMS 4000
#define QUEUE 64

static void *queue[QUEUE];
static unsigned head, count;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER;
static pthread_cond_t not_full = PTHREAD_COND_INITIALIZER;

static size_t item_size(unsigned i)
{
	return 8 + (i * 13) % 300;
}

static void push(void *item)
{
	pthread_mutex_lock(&lock);
	while (count == QUEUE)
		pthread_cond_wait(&not_full, &lock);
	queue[(head + count++) % QUEUE] = item;
	pthread_cond_signal(&not_empty);
	pthread_mutex_unlock(&lock);
}

static void *pop(void)
{
	pthread_mutex_lock(&lock);
	while (count == 0)
		pthread_cond_wait(&not_empty, &lock);
	void *item = queue[head];
	head = (head + 1) % QUEUE;
	count--;
	pthread_cond_signal(&not_full);
	pthread_mutex_unlock(&lock);
	return item;
}

static void *producer(void *arg)
{
	for (unsigned i = 0; i < ITEMS; i++) {
		char *item = malloc(item_size(i)); /* LINE:item */
		memset(item, (int)i, item_size(i));
		push(item);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	for (;;) {
		char *item = pop();
		if (!item)
			return NULL; /* the end marker */
		free(item);
	}
}

static int max_modid(struct dl_phdr_info *info, size_t size, void *data)
{
	size_t *max = data;
	if (info->dlpi_tls_modid > *max)
		*max = info->dlpi_tls_modid;
	return 0;
}

int main(void)
{
	pthread_t threads[4];
	char *banner = malloc(50); /* LEAK:banner */
	memcpy(banner, "producers and consumers", 24);

	for (int i = 0; i < 4; i++) {
		void *(*run)(void *) = i < 2 ? producer : consumer;
		pthread_create(&threads[i], NULL, run, NULL); /* LINE:create */
	}
	pthread_join(threads[0], NULL);
	pthread_join(threads[1], NULL);
	push(NULL);
	push(NULL);
	pthread_join(threads[2], NULL);
	pthread_join(threads[3], NULL);

	size_t modid = 0;
	char line[64];
	dl_iterate_phdr(max_modid, &modid);
	int n = snprintf(line, sizeof(line), "tls_modid=%zu\n", modid);
	if (write(1, line, (size_t)n) != n)
		return 1;
	return 0;
}
