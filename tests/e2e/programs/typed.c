/*
 * typed.c - allocations through the in-process API, traced by halloc-trace
 * (case "types" in cases_api.py). e2e-link: halloc
 *
 * Truth:
 *   struct point (16 bytes): halloc(struct point, 10) at TYPED:points,
 *     freed; halloc(struct point, 3) at TYPED:more, leaked.
 *     allocations 2, objects 13, bytes 208, peak 208, leaked 48 in 1 block
 *   struct node (16 bytes): 4 x halloc(struct node, 1) at TYPED:nodes, a
 *     list, all freed: allocations 4, objects 4, bytes 64, peak 64
 *   untyped: malloc(100) at UNTYPED:, freed: size class 64 - 127 bytes,
 *     1 allocation, 100 bytes, peak 100, leaked 0
 *   In all: allocations 7, frees 6, bytes allocated 372, leaked 48.
 * Nothing here uses stdio: its buffer would be one more block.
 */
#include <halloc/halloc.h>
#include <stdlib.h>

struct point {
	double x, y;
};

struct node {
	struct node *next;
	long value;
};

int main(void)
{
	struct point *points = halloc(struct point, 10); /* TYPED:points */
	struct point *more = halloc(struct point, 3);	 /* TYPED:more */
	struct node *list = NULL, *n;
	char *buffer = malloc(100); /* UNTYPED: */

	for (int i = 0; i < 4; i++) {
		n = halloc(struct node, 1); /* TYPED:nodes */
		n->next = list;
		list = n;
	}
	while (list) {
		n = list->next;
		hfree(list);
		list = n;
	}
	hfree(points);
	free(buffer);
	return more ? 0 : 1;
}
