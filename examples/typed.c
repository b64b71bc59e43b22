/*
 * typed.c - the in-process API: a program that counts its own memory.
 *
 *   cc typed.c -lhalloc && ./a.out
 *
 * Linked with -lhalloc, the program allocates typed objects with
 * halloc(type, n) and asks for its own statistics: the page items (memory
 * served by whole pages: none here, the block is small), the totals and
 * the type's usage, with or without halloc-trace (which also gets the
 * type, file and line of each halloc()).
 */
#include <halloc/halloc.h>

struct particle {
	double position[3];
	double velocity[3];
	int id;
};

int main(void)
{
	struct particle *particles = halloc(struct particle, 10);

	if (!particles)
		return 1;
	for (int i = 0; i < 10; i++)
		particles[i].id = i;

	halloc_print_saved_page_items();
	halloc_print_total_memory_usage();
	halloc_print_type_memory_usage(struct particle);

	hfree(particles);
	halloc_print_total_memory_usage();
	return 0;
}
