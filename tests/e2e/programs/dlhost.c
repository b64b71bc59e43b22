/*
 * dlhost.c - loads two plugins, each of which leaks one block.
 *
 *   dlhost LIB_A LIB_B
 *
 * plugin_a is dlclose'd (unloaded) before plugin_b is loaded, so plugin_b
 * may well be mapped where plugin_a was: a report must symbolize plugin_a's
 * leak with the modules mapped when it was allocated, not those at exit.
 * Truth (case "dlopen"): a leak of 4096 bytes at plugin_a.c LEAK:plugin_a
 * and one of 2048 bytes at plugin_b.c LEAK:plugin_b; the rest of the totals
 * are the loader's own allocations, compared with Valgrind.
 */
#include <dlfcn.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *what)
{
	const char *msg = dlerror();
	if (write(2, what, strlen(what)) < 0 || !msg ||
	    write(2, msg, strlen(msg)) < 0 || write(2, "\n", 1) < 0)
		return 2;
	return 2;
}

static int run_plugin(const char *path, const char *symbol, int keep)
{
	void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!handle)
		return fail("dlhost: dlopen: ");
	void (*init)(void) = (void (*)(void))dlsym(handle, symbol);
	if (!init)
		return fail("dlhost: dlsym: ");
	init();
	if (!keep && dlclose(handle) != 0)
		return fail("dlhost: dlclose: ");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	int rc = run_plugin(argv[1], "plugin_a_init", 0);
	if (rc == 0)
		rc = run_plugin(argv[2], "plugin_b_init", 1);
	return rc;
}
