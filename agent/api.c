/*
 * agent/api.c - the public functions of include/halloc/halloc.h (but the
 * page items) and the registry of typed sites.
 *
 * A typed site is one halloc(type, n) call: (type name, file, line,
 * object size). Sites are kept in a fixed table (its index, 1-based, is
 * the site's id in the log and in the accounting table's values) and
 * found by a lock-free hash of the caller's pointers: a halloc() call
 * passes string literals, so the same call passes the same pointers. The
 * first call of a site takes a lock to add it. Sites of the same type name
 * share one entry of the type table, which holds the type's counters.
 *
 * Under halloc-trace, a site is announced to a stream with a TYPE record
 * (include/halloc/log.h) the first time it allocates in it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/accounting.h"
#include "agent/pages.h"

#define EXPORT __attribute__((visibility("default")))

extern void *__libc_calloc(size_t nmemb, size_t size);

/* Site ids fit the 16 bits above a table value's size. */
#define MAX_SITES  4096u
#define MAX_TYPES  1024u
#define INDEX_SIZE (2 * MAX_SITES) /* open addressing, at most half full */

struct type {
	const char *name;
	int64_t live_bytes, live_blocks, peak_bytes;
	int64_t allocations, bytes_allocated, frees;
};

struct site {
	const char *name, *file;
	unsigned line;
	size_t object_size;
	unsigned type;	    /* index into types */
	uint64_t announced; /* stream the TYPE record went to; atomic */
};

static struct site sites[MAX_SITES]; /* [0] unused: id 0 is "untyped" */
static struct type types[MAX_TYPES];
static unsigned nsites = 1, ntypes;
static uint16_t site_index[INDEX_SIZE]; /* site id, 0: empty; atomic */
static int registry_lock;

static uint64_t site_hash(const char *name, const char *file, unsigned line)
{
	uint64_t h = (uintptr_t)name * 0x9e3779b97f4a7c15ull;

	h ^= (uintptr_t)file * 0xbf58476d1ce4e5b9ull;
	h ^= (uint64_t)line * 0x94d049bb133111ebull;
	return h ^ (h >> 29);
}

static bool same_site(const struct site *s, const char *name, const char *file,
		      unsigned line, size_t object_size)
{
	return s->name == name && s->file == file && s->line == line &&
	       s->object_size == object_size;
}

static unsigned find_type(const char *name)
{
	unsigned i;

	for (i = 0; i < ntypes; i++)
		if (!strcmp(types[i].name, name))
			return i;
	if (ntypes == MAX_TYPES)
		return MAX_TYPES;
	types[ntypes].name = name;
	/* Readers take the count without the lock. */
	__atomic_store_n(&ntypes, ntypes + 1, __ATOMIC_RELEASE);
	return ntypes - 1;
}

/* The site's id, added if new; 0 when the tables are full. */
static unsigned site_id(const char *name, const char *file, unsigned line,
			size_t object_size)
{
	size_t i = site_hash(name, file, line) % INDEX_SIZE;
	unsigned id, type;

	for (;;) {
		id = __atomic_load_n(&site_index[i], __ATOMIC_ACQUIRE);
		if (!id)
			break;
		if (same_site(&sites[id], name, file, line, object_size))
			return id;
		i = (i + 1) % INDEX_SIZE;
	}
	while (__atomic_exchange_n(&registry_lock, 1, __ATOMIC_ACQUIRE))
		__builtin_ia32_pause();
	/* Another thread may have added it, or others, meanwhile. */
	for (; (id = site_index[i]); i = (i + 1) % INDEX_SIZE)
		if (same_site(&sites[id], name, file, line, object_size))
			goto out;
	id = 0;
	type = find_type(name);
	if (nsites == MAX_SITES || type == MAX_TYPES)
		goto out;
	id = nsites++;
	sites[id] = (struct site){name, file, line, object_size, type, 0};
	__atomic_store_n(&site_index[i], (uint16_t)id, __ATOMIC_RELEASE);
out:
	__atomic_store_n(&registry_lock, 0, __ATOMIC_RELEASE);
	return id;
}

void ha_agent_type_change(unsigned site, uint64_t size, int dir)
{
	struct type *ty = &types[sites[site].type];
	int64_t live, peak;

	if (dir < 0) {
		__atomic_fetch_add(&ty->frees, 1, __ATOMIC_RELAXED);
		__atomic_sub_fetch(&ty->live_blocks, 1, __ATOMIC_RELAXED);
		__atomic_sub_fetch(&ty->live_bytes, (int64_t)size,
				   __ATOMIC_RELAXED);
		return;
	}
	__atomic_fetch_add(&ty->allocations, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&ty->bytes_allocated, (int64_t)size,
			   __ATOMIC_RELAXED);
	__atomic_add_fetch(&ty->live_blocks, 1, __ATOMIC_RELAXED);
	live = __atomic_add_fetch(&ty->live_bytes, (int64_t)size,
				  __ATOMIC_RELAXED);
	peak = __atomic_load_n(&ty->peak_bytes, __ATOMIC_RELAXED);
	while (live > peak &&
	       !__atomic_compare_exchange_n(&ty->peak_bytes, &peak, live, true,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

/* ---- typed allocation ---------------------------------------------------- */

/* Under the guard: the stream learns the site once (TYPE record). */
static void announce(struct ha_agent_thread *t, unsigned id)
{
	struct site *s = &sites[id];
	uint64_t seen = __atomic_load_n(&s->announced, __ATOMIC_ACQUIRE);

	if (seen == ha_agent.id || !__atomic_compare_exchange_n(
				       &s->announced, &seen, ha_agent.id, false,
				       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return;
	ha_agent_put_type(t, id, s->object_size, s->name, s->file, s->line);
}

static __attribute__((noinline)) void *
traced_typed(struct ha_agent_thread *t, unsigned id, size_t n, size_t size,
	     const char *name, const char *file, unsigned line)
{
	unsigned why;
	void *p;

	HA_AGENT_HERE(&t->here);
	why = ha_agent_admit(t, HALLOC_FN_HALLOC, size, 0);
	if (why) {
		ha_agent_record_refused(t, HALLOC_FN_HALLOC, size, why);
		ha_agent_leave(t);
		errno = ENOMEM;
		return NULL;
	}
	p = __libc_calloc(1, size);
	if (id && p) {
		announce(t, id);
		ha_agent_record_typed_alloc(t, p, size, id, n);
	} else {
		ha_agent_record_alloc(t, HALLOC_FN_CALLOC, p, size);
	}
	ha_agent_pages_alloc(t, p, size, __builtin_return_address(0));
	ha_agent_leave(t);
	return p;
}

EXPORT void *halloc_typed(const char *type_name, size_t object_size, size_t n,
			  const char *file, unsigned line)
{
	struct ha_agent_caller caller = {file, line};
	struct ha_agent_thread *t;
	unsigned id;
	size_t size;
	void *p;

	if (__builtin_mul_overflow(object_size, n, &size)) {
		t = ha_agent_enter();
		if (t) {
			ha_agent_record_failed(t, HALLOC_FN_HALLOC, SIZE_MAX,
					       ENOMEM);
			ha_agent_leave(t);
		}
		errno = ENOMEM;
		return NULL;
	}
	id =
	    type_name && file ? site_id(type_name, file, line, object_size) : 0;
	t = ha_agent_enter();
	if (t) {
		p = traced_typed(t, id, n, size, type_name, file, line);
	} else {
		if (ha_agent_admit(NULL, HALLOC_FN_HALLOC, size, 0)) {
			errno = ENOMEM;
			return NULL;
		}
		p = ha_agent_pages_alloc(NULL, __libc_calloc(1, size), size,
					 __builtin_return_address(0));
	}
	/* A block served by mmap is a page item: it gets our file:line. */
	if (p && ha_agent_pages_mmapped(p))
		ha_agent_pages_note_site(p, file, line);
	if (p && ha_agent_acct_on() && !ha_agent_self.guard)
		ha_agent_acct_alloc(p, size, id, &caller);
	return p;
}

EXPORT void hfree(void *ptr)
{
	free(ptr);
}

/* ---- statistics ---------------------------------------------------------- */

static bool stats_on(void)
{
	if (ha_agent_acct_on())
		return true;
	errno = ENOSYS;
	return false;
}

EXPORT int halloc_total_memory_usage(struct halloc_usage *out)
{
	if (!stats_on())
		return -1;
	ha_agent_acct_totals(out);
	return 0;
}

EXPORT int halloc_type_memory_usage_by_name(const char *type_name,
					    struct halloc_usage *out)
{
	unsigned i, n;

	if (!stats_on())
		return -1;
	memset(out, 0, sizeof(*out));
	n = __atomic_load_n(&ntypes, __ATOMIC_ACQUIRE);
	for (i = 0; type_name && i < n; i++) {
		struct type *ty = &types[i];

		if (strcmp(ty->name, type_name))
			continue;
		out->current_bytes =
		    __atomic_load_n(&ty->live_bytes, __ATOMIC_RELAXED);
		out->current_blocks =
		    __atomic_load_n(&ty->live_blocks, __ATOMIC_RELAXED);
		out->peak_bytes =
		    __atomic_load_n(&ty->peak_bytes, __ATOMIC_RELAXED);
		out->total_blocks =
		    __atomic_load_n(&ty->allocations, __ATOMIC_RELAXED);
		out->total_bytes =
		    __atomic_load_n(&ty->bytes_allocated, __ATOMIC_RELAXED);
		out->frees = __atomic_load_n(&ty->frees, __ATOMIC_RELAXED);
		break;
	}
	return 0;
}

static const char *plural(int64_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

/* One line to stderr; formatted on the stack, nothing allocated. */
static void print_usage(const char *what, const struct halloc_usage *u)
{
	char line[512];
	int n;

	n = snprintf(
	    line, sizeof(line),
	    "halloc: %s: %lld %s in %lld %s in use, peak %lld %s; "
	    "%lld %s (%lld %s), %lld %s\n",
	    what, (long long)u->current_bytes,
	    plural(u->current_bytes, "byte", "bytes"),
	    (long long)u->current_blocks,
	    plural(u->current_blocks, "block", "blocks"),
	    (long long)u->peak_bytes, plural(u->peak_bytes, "byte", "bytes"),
	    (long long)u->total_blocks,
	    plural(u->total_blocks, "allocation", "allocations"),
	    (long long)u->total_bytes, plural(u->total_bytes, "byte", "bytes"),
	    (long long)u->frees, plural(u->frees, "free", "frees"));
	if (n > (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 1;
	if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

static void print_off(void)
{
	static const char msg[] =
	    "halloc: memory usage unknown: statistics are off (the program "
	    "does not link libhalloc)\n";

	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
		return;
}

EXPORT void halloc_print_total_memory_usage(void)
{
	struct halloc_usage u;

	if (halloc_total_memory_usage(&u) < 0)
		print_off();
	else
		print_usage("total", &u);
}

EXPORT void halloc_print_type_memory_usage_by_name(const char *type_name)
{
	struct halloc_usage u;
	char what[256];

	if (halloc_type_memory_usage_by_name(type_name, &u) < 0) {
		print_off();
		return;
	}
	snprintf(what, sizeof(what), "type '%s'", type_name ? type_name : "");
	print_usage(what, &u);
}

/* ---- hooks ------------------------------------------------------------------
 */

/* The hooks need sizes at free: they switch accounting on if it is not. */
EXPORT void halloc_set_alloc_callback_func(halloc_alloc_callback_fn fn)
{
	if (fn)
		ha_agent_acct_enable();
	ha_agent_acct_set_callback(fn);
}

EXPORT void halloc_set_memory_monitor(halloc_memory_monitor_fn fn,
				      void *user_ptr)
{
	if (fn)
		ha_agent_acct_enable();
	ha_agent_set_monitor(fn, user_ptr);
}
