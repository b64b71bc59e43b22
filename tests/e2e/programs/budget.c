/*
 * budget.c - runs under halloc-trace --limit 8M (cases "limit-*" in
 * cases_api.py).
 *
 * Truth: main takes blocks of exactly 1 MiB (BUDGET:take) until one fails.
 * Under --limit 8M, 8 fit and the 9th is refused (ENOMEM).
 *   "careful": writes the count ("8") to stdout, frees them all, exit 0:
 *              allocations 8, frees 8, leaked 0.
 *   "careless": uses every block without checking: the 9th (NULL) is
 *              written to and the program dies of SIGSEGV, leaking
 *              8 MiB in 8 blocks.
 * Nothing here uses stdio: its buffer would be one more block.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK (1 << 20)

int main(int argc, char **argv)
{
	int careful = argc > 1 && !strcmp(argv[1], "careful");
	char *kept[64], digits[16];
	int n = 0, len;

	while (n < 64) {
		char *p = malloc(BLOCK); /* BUDGET:take */

		if (careful && !p) {
			if (errno != ENOMEM)
				return 3;
			break;
		}
		memset(p, 1, BLOCK);
		kept[n++] = p;
	}
	len = snprintf(digits, sizeof(digits), "%d\n", n);
	if (write(STDOUT_FILENO, digits, (size_t)len) != len)
		return 2;
	while (n > 0)
		free(kept[--n]);
	return 0;
}
