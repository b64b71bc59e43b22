/*
 * agent/pages_print.c - halloc_print_saved_page_items (include/halloc/
 * halloc.h): the page items mapped now, on stderr, one line each:
 *
 *   halloc: page items: 2 mapped: 1,089,536 bytes in 267 pages (...)
 *     heap block  0x7f3a72d3d010     1,048,576 bytes    257 pages  at typed.c:21
 *     mmap        0x7f3a72ebc000        40,960 bytes     10 pages  at prog+0x123c
 *
 * The site is the halloc() call's file and line, else the calling module
 * and offset (addr2line -e MODULE OFFSET names the line), with the dynamic
 * symbol around it when there is one. Lines are built in a buffer on the
 * stack and written with write(2): no stdio, no malloc.
 */
#include <dlfcn.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "agent/pages.h"
#include "halloc/halloc.h"

#define EXPORT __attribute__((visibility("default")))

struct line {
	char buf[512];
	size_t len;
};

static void add(struct line *l, const char *s)
{
	while (*s && l->len < sizeof(l->buf) - 1)
		l->buf[l->len++] = *s++;
}

static void add_count(struct line *l, uint64_t v, int width)
{
	char d[32], o[40];
	int n = 0, k = 0;

	do {
		d[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (int pad = width - (n + (n - 1) / 3); pad > 0; pad--)
		o[k++] = ' ';
	for (int i = n - 1; i >= 0; i--) {
		o[k++] = d[i];
		if (i && i % 3 == 0)
			o[k++] = ',';
	}
	o[k] = '\0';
	add(l, o);
}

static void add_hex(struct line *l, uint64_t v)
{
	char o[20];
	int k = 19;

	o[k] = '\0';
	do {
		o[--k] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	add(l, "0x");
	add(l, o + k);
}

static void flush(struct line *l)
{
	const char *p = l->buf;
	size_t left;

	add(l, "\n");
	left = l->len;
	while (left) {
		ssize_t n = write(STDERR_FILENO, p, left);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		p += n;
		left -= (size_t)n;
	}
	l->len = 0;
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

/* "file.c:12", or "prog+0x11a9 (function)": where the call is. */
static void add_site(struct line *l, const struct ha_agent_page *e)
{
	Dl_info info;

	if (e->file) {
		add(l, base_name(e->file));
		if (e->line) {
			add(l, ":");
			add_count(l, e->line, 0);
		}
		return;
	}
	if (!e->caller || !dladdr((void *)(e->caller - 1), &info)) {
		add(l, "caller unknown");
		return;
	}
	/* module+offset of the call, as addr2line -e module takes it */
	add(l, info.dli_fname && *info.dli_fname ? base_name(info.dli_fname)
						 : "?");
	add(l, "+");
	add_hex(l, e->caller - 1 - (uintptr_t)info.dli_fbase);
	if (info.dli_sname && info.dli_saddr) {
		add(l, " (");
		add(l, info.dli_sname);
		add(l, ")");
	}
}

/* Items printed one by one; more than this are summed up only. */
#define PRINT_MAX 64

EXPORT void halloc_print_saved_page_items(void)
{
	struct ha_agent_page shown[PRINT_MAX];
	uint64_t t[3][3];
	size_t n, k;
	struct line l = {.len = 0};
	int saved = errno;

	n = ha_agent_pages_copy(shown, PRINT_MAX, t);
	add(&l, "halloc: page items: ");
	if (!n) {
		add(&l, "none mapped (heap blocks the allocator served by "
			"mmap and the program's anonymous mmaps show here)");
		flush(&l);
		errno = saved;
		return;
	}
	add_count(&l, n, 0);
	add(&l, " mapped: ");
	add_count(&l, t[1][1] + t[2][1], 0);
	add(&l, " bytes in ");
	add_count(&l, t[1][2] + t[2][2], 0);
	add(&l, " pages (heap blocks by mmap: ");
	add_count(&l, t[HALLOC_PAGE_ITEM_HEAP][0], 0);
	add(&l, ", ");
	add_count(&l, t[HALLOC_PAGE_ITEM_HEAP][1], 0);
	add(&l, " bytes; program mmaps: ");
	add_count(&l, t[HALLOC_PAGE_ITEM_MMAP][0], 0);
	add(&l, ", ");
	add_count(&l, t[HALLOC_PAGE_ITEM_MMAP][1], 0);
	add(&l, " bytes)");
	flush(&l);
	for (k = 0; k < n && k < PRINT_MAX; k++) {
		const struct ha_agent_page *e = &shown[k];
		size_t pages = ha_agent_pages_count(e->len);

		add(&l, e->kind == HALLOC_PAGE_ITEM_HEAP ? "  heap block  "
							 : "  mmap        ");
		add_hex(&l, e->start);
		add_count(&l, e->bytes, 14);
		add(&l, " bytes");
		add_count(&l, pages, 7);
		add(&l, pages == 1 ? " page   at " : " pages  at ");
		add_site(&l, e);
		flush(&l);
	}
	if (n > k) {
		add(&l, "  ... and ");
		add_count(&l, n - k, 0);
		add(&l, " more");
		flush(&l);
	}
	errno = saved;
}
