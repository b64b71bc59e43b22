/*
 * static.c - a statically linked program (see the e2e-cflags line): there
 * is no dynamic loader to preload the agent with, so halloc-trace must
 * refuse it with exit status 125 and say why (case "trace-static").
 */
/* e2e-cflags: -static */
#include <stdlib.h>

int main(void)
{
	free(malloc(10));
	return 0;
}
