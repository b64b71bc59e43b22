/*
 * pages.c - page items of known sizes at known sites: the program's own
 * anonymous mappings and heap blocks glibc serves by mmap (>= 128 KiB).
 *
 * Truth (checked by tests/e2e/run, cases "pages-*" in cases_pages.py):
 *   MMAP:gone   mmap 65,536 bytes, unmapped whole
 *   MMAP:kept   mmap 40,960 bytes (10 pages), left mapped, every page touched
 *   MMAP:grown  mmap 16,384 bytes, mremap'd to 81,920 (20 pages), left mapped
 *   MMAP:split  mmap 131,072 bytes (32 pages), its pages 8..15 unmapped:
 *               98,304 bytes in two pieces left mapped
 *   a private mapping of /proc/self/exe: a file, not a page item
 *   HEAP:big1   malloc 300,000, freed        (mmap'd by glibc: 74 pages)
 *   HEAP:big2   malloc 1,048,576, leaked     (257 pages)
 *   HEAP:big3   calloc 400,000, then realloc'd (98 pages)
 *   HEAP:grow   big3 realloc'd to 500,000, freed (123 pages)
 *   heap: allocations 4, frees 3, bytes allocated 2,248,576, leaked
 *   1,048,576 bytes in 1 block
 *   peak of page-backed memory, all of the above at once (MMAP:grown after
 *   its mremap, MMAP:split before its cut): 65,536 + 40,960 + 81,920 +
 *   131,072 + 300,000 + 1,048,576 + 400,000 = 2,068,064 bytes
 *   mapped at exit: 40,960 + 81,920 + 98,304 = 221,184 bytes of mmaps in
 *   4 pieces at 3 sites; 1,048,576 bytes in 1 heap block
 *   every page of MMAP:kept, grown and big2 is touched: RSS >= 1,171,456
 *   (and held 80 ms, so that halloc-trace samples it)
 *
 * Built with -DHALLOC_LINKED and -lhalloc (case "pages-api"), it asks
 * halloc_saved_page_items() itself and exits 0 only if the answer is the
 * truth above (it prints what differs, and halloc_print_saved_page_items).
 */
#define _GNU_SOURCE /* mremap */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifdef HALLOC_LINKED
#include "halloc/halloc.h"
#endif

#define ANON (MAP_PRIVATE | MAP_ANONYMOUS)
#define RW (PROT_READ | PROT_WRITE)

static char *big1, *big2, *big3;

static char *map_gone(void)
{
	return mmap(NULL, 65536, RW, ANON, -1, 0); /* MMAP:gone */
}

static char *map_kept(void)
{
	return mmap(NULL, 40960, RW, ANON, -1, 0); /* MMAP:kept */
}

static char *map_grown(void)
{
	return mmap(NULL, 16384, RW, ANON, -1, 0); /* MMAP:grown */
}

static char *map_split(void)
{
	return mmap(NULL, 131072, RW, ANON, -1, 0); /* MMAP:split */
}

static void heap_blocks(void)
{
	big1 = malloc(300000);     /* HEAP:big1 */
	big2 = malloc(1048576);    /* HEAP:big2 */
	big3 = calloc(1, 400000);  /* HEAP:big3 */
}

static int check(void);

int main(void)
{
	char *gone = map_gone(), *kept = map_kept(), *grown = map_grown();
	char *split = map_split(), *file;
	int fd = open("/proc/self/exe", O_RDONLY);

	if (gone == MAP_FAILED || kept == MAP_FAILED || grown == MAP_FAILED ||
	    split == MAP_FAILED || fd < 0)
		return 2;
	file = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (file == MAP_FAILED)
		return 2;
	grown = mremap(grown, 16384, 81920, MREMAP_MAYMOVE);
	if (grown == MAP_FAILED)
		return 2;
	memset(kept, 1, 40960);
	memset(grown, 2, 81920);
	heap_blocks();
	if (!big1 || !big2 || !big3)
		return 2;
	memset(big2, 3, 1048576);
	/* the peak: everything mapped at once, long enough for RSS samples */
	nanosleep(&(struct timespec){0, 80 * 1000 * 1000}, NULL);
	if (munmap(gone, 65536) || munmap(split + 8 * 4096, 8 * 4096) ||
	    munmap(file, 4096))
		return 2;
	free(big1);
	big3 = realloc(big3, 500000); /* HEAP:grow */
	if (!big3)
		return 2;
	free(big3);
	return check();
}

#ifndef HALLOC_LINKED
static int check(void)
{
	return 0;
}
#else
static int check(void)
{
	struct halloc_page_item items[16];
	size_t n = halloc_saved_page_items(items, 16), mmaps = 0, heap = 0;
	size_t mmap_bytes = 0, mmap_pages = 0;
	int bad = 0;

	halloc_print_saved_page_items();
	for (size_t i = 0; i < n && i < 16; i++) {
		if (items[i].kind == HALLOC_PAGE_ITEM_MMAP) {
			mmaps++;
			mmap_bytes += items[i].bytes;
			mmap_pages += items[i].pages;
		} else if (items[i].kind == HALLOC_PAGE_ITEM_HEAP) {
			heap++;
			if (items[i].address != big2 ||
			    items[i].bytes != 1048576 ||
			    items[i].pages != 257) {
				fprintf(stderr, "pages: heap item %p %zu "
						"bytes %zu pages\n",
					items[i].address, items[i].bytes,
					items[i].pages);
				bad = 1;
			}
		}
	}
	if (n != 5 || mmaps != 4 || heap != 1 || mmap_bytes != 221184 ||
	    mmap_pages != 54) {
		fprintf(stderr,
			"pages: %zu items, %zu mmaps of %zu bytes in %zu "
			"pages, %zu heap blocks\n",
			n, mmaps, mmap_bytes, mmap_pages, heap);
		bad = 1;
	}
	return bad;
}
#endif
