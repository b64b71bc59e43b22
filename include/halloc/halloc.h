/*
 * halloc/halloc.h - the in-process API of libhalloc.
 *
 * The same libhalloc.so is the agent halloc-trace injects and a library a
 * program links (-lhalloc). Linked, a program can count its own memory,
 * allocate typed objects, watch every allocation and bound its own heap,
 * with or without halloc-trace. Under halloc-trace, typed allocations also
 * carry their type name, file and line into the log.
 *
 * Invariants:
 *  - Every figure counts what the interposed allocation family did in this
 *    process (malloc, calloc, realloc, reallocarray, free, posix_memalign,
 *    aligned_alloc, memalign, valloc, pvalloc, C++ new/delete through them),
 *    in requested bytes, the way Valgrind counts: a realloc is a free and an
 *    allocation; a failed or refused allocation is not counted.
 *  - Every function here may be called from any thread.
 *  - Nothing here allocates from the heap it measures.
 *  - Statistics are kept (a table of live blocks' sizes) when the program
 *    links libhalloc itself (libhalloc is among the main executable's
 *    DT_NEEDED), or runs under halloc-trace --limit, from its first
 *    allocation on. In a process where libhalloc is only injected by
 *    halloc-trace, or was loaded by dlopen, they are off: the statistics
 *    functions fail with ENOSYS, until setting a callback or a monitor
 *    switches them on (counting from then on).
 */
#ifndef HALLOC_HALLOC_H
#define HALLOC_HALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Typed allocation ----------------------------------------------------- */

/*
 * halloc(type, n): n zeroed objects of type (like calloc), recorded with the
 * type's name as written (#type), and the file and line of the call. NULL on
 * failure, on a refusal, or when n * sizeof(type) overflows (errno ENOMEM).
 * Free with hfree() (or free()).
 */
#define halloc(type, n)                                                      \
	((type *)halloc_typed(#type, sizeof(type), (n), __FILE__, __LINE__))

void *halloc_typed(const char *type_name, size_t object_size, size_t n,
		   const char *file, unsigned line);

/* Frees what halloc() (or any allocation function) returned; NULL is fine. */
void hfree(void *ptr);

/* ---- Statistics ------------------------------------------------------------ */

struct halloc_usage {
	int64_t current_bytes;  /* live bytes now */
	int64_t current_blocks; /* live blocks now */
	int64_t peak_bytes;     /* the most current_bytes has been */
	int64_t total_blocks;   /* allocations made so far */
	int64_t total_bytes;    /* bytes allocated so far */
	int64_t frees;          /* blocks freed so far */
};

/* The whole process. 0 on success, -1 with errno ENOSYS when statistics
 * are off (see the top of this file). */
int halloc_total_memory_usage(struct halloc_usage *out);

/*
 * The objects allocated by halloc(type, n) with this type name (as
 * written: "struct point"), in blocks: one halloc() is one block. A type
 * never allocated has all zeros. Returns as halloc_total_memory_usage.
 */
int halloc_type_memory_usage_by_name(const char *type_name,
				     struct halloc_usage *out);
#define halloc_type_memory_usage(type, out)                                  \
	halloc_type_memory_usage_by_name(#type, (out))

/* The same figures, printed to stderr as one line:
 *   halloc: total: 160 bytes in 1 block in use, peak 160 bytes; ... */
void halloc_print_total_memory_usage(void);
void halloc_print_type_memory_usage_by_name(const char *type_name);
#define halloc_print_type_memory_usage(type)                                 \
	halloc_print_type_memory_usage_by_name(#type)

/* ---- Page items ------------------------------------------------------------ */

enum halloc_page_kind {
	HALLOC_PAGE_ITEM_HEAP = 1, /* a heap block the allocator served by mmap */
	HALLOC_PAGE_ITEM_MMAP = 2, /* anonymous memory the program mapped itself */
};

/* Page-backed memory that is mapped now. */
struct halloc_page_item {
	void *address;        /* start of the block or the mapping */
	size_t bytes;         /* requested bytes (heap) or mapping length */
	size_t pages;         /* pages it spans */
	int kind;             /* enum halloc_page_kind */
	const char *file;     /* the caller's file when known, else NULL */
	unsigned line;        /* the caller's line when known, else 0 */
};

/*
 * Fills up to max items, returns how many there are (may exceed max:
 * call again with more room).
 */
size_t halloc_saved_page_items(struct halloc_page_item *items, size_t max);
void halloc_print_saved_page_items(void);

/* ---- Allocation callback --------------------------------------------------- */

/*
 * Called after every allocation event of the process, on the thread that
 * made it: action is "malloc" (a call that only allocated: malloc, calloc,
 * the aligned ones, halloc(), realloc(NULL, n)), "free" (free, realloc(p,
 * 0)) or "realloc" (a realloc that freed one block and allocated
 * another, or the same one resized); current_bytes is the change
 * (positive taken, negative given back); total_blocks and total_bytes are
 * the blocks and bytes in use after the event. file and line are the
 * caller's when known (always for halloc()), else NULL and 0. The
 * callback may allocate: its own allocations are counted but do not call
 * it again. Failed and refused allocations call nothing.
 */
typedef void (*halloc_alloc_callback_fn)(const char *file, unsigned line,
					 const char *action,
					 int64_t current_bytes,
					 int64_t total_blocks,
					 int64_t total_bytes);

/* NULL removes the callback. */
void halloc_set_alloc_callback_func(halloc_alloc_callback_fn fn);

/* ---- Memory monitor -------------------------------------------------------- */

/*
 * Called before each allocation (post false, bytes the size requested,
 * 0 for malloc(0); a realloc asks for its new size): returning false
 * refuses it (the caller gets NULL and errno ENOMEM, posix_memalign
 * returns ENOMEM; a refused realloc leaves the old block as it was;
 * nothing is counted). Called after each free (post true, bytes < 0, the
 * freed block's size; after a realloc, for its old block): the return
 * value is ignored. Called from any thread at once, never recursively:
 * allocations the monitor makes are not shown to it. Under halloc-trace
 * a refusal is in the log (a REFUSED record).
 */
typedef bool (*halloc_memory_monitor_fn)(void *user_ptr, ssize_t bytes,
					 bool post);

/*
 * One per process: a new one replaces the old; NULL removes it. The
 * function and user_ptr change together (a caller never sees one with
 * the other's partner); a call that began before may still finish with
 * the old pair.
 */
void halloc_set_memory_monitor(halloc_memory_monitor_fn fn, void *user_ptr);

#ifdef __cplusplus
}
#endif

#endif /* HALLOC_HALLOC_H */
