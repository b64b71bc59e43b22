/*
 * outlive.c - keeps allocating after its tracer is killed, then says so.
 *
 * Usage: outlive DIR. Writes DIR/started once it has made a few thousand
 * allocations, then allocates and frees for about 1.5 s more, more than
 * the pipe to the tracer can hold (case "tracer-killed" kills the tracer
 * meanwhile), and writes DIR/done last. A program that died of SIGPIPE or
 * hung on the full pipe never writes it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void touch(const char *dir, const char *name)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (f)
		fclose(f);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct timespec nap = {0, 1000000};
	double end;

	if (argc != 2)
		return 2;
	for (int i = 0; i < 5000; i++)
		free(malloc(16 + (size_t)i % 512));
	touch(argv[1], "started");
	end = now() + 1.5;
	while (now() < end) {
		for (int i = 0; i < 2000; i++) {
			char *p = malloc(16 + (size_t)i % 512);

			memset(p, i, 16);
			free(p);
		}
		nanosleep(&nap, NULL);
	}
	touch(argv[1], "done");
	return 0;
}
