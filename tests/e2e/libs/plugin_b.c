/* plugin_b.c - a plugin that leaks one block and stays loaded. */
#include <stdlib.h>
#include <string.h>

static char *table;

void plugin_b_init(void)
{
	table = calloc(2048, 1); /* LEAK:plugin_b */
	char *tmp = malloc(10);
	free(tmp);
}
