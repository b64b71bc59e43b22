/* plugin_a.c - a plugin that leaks one block; it is unloaded before exit. */
#include <stdlib.h>
#include <string.h>

static char *registry;

void plugin_a_init(void)
{
	char *tmp = strdup("a temporary name");
	free(tmp);
	registry = malloc(4096); /* LEAK:plugin_a */
	memset(registry, 0, 4096);
}
