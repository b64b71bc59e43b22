/*
 * stats_off.c - the in-process API in a program that does not link
 * libhalloc (case "stats-off" in cases_api.py): statistics are off.
 *
 * Under halloc-trace the agent is preloaded, and its functions are found
 * with dlsym(RTLD_DEFAULT); without it, argv[1] (libhalloc.so) is loaded
 * with dlopen. Either way halloc_total_memory_usage() fails with ENOSYS
 * and main writes "off" to stdout (exit 0); anything else is exit 1.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

struct usage {
	int64_t v[6];
};

int main(int argc, char **argv)
{
	int (*total)(struct usage *);
	struct usage u;
	void *lib;

	total = (int (*)(struct usage *))dlsym(RTLD_DEFAULT,
					       "halloc_total_memory_usage");
	if (!total && argc > 1) {
		lib = dlopen(argv[1], RTLD_NOW);
		if (lib)
			total = (int (*)(struct usage *))dlsym(
			    lib, "halloc_total_memory_usage");
	}
	if (!total)
		return 2;
	free(malloc(10));
	errno = 0;
	if (total(&u) != -1 || errno != ENOSYS)
		return 1;
	return write(STDOUT_FILENO, "off\n", 4) == 4 ? 0 : 1;
}
