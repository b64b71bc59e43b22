/*
 * analyzer/model.c - the containers of the log model (see model.h): growable
 * arrays, interned strings, and get-or-create for streams, stacks, module
 * files and locations.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "analyzer/model.h"
#include "analyzer/types.h"

#define STRBLOCK_SIZE 65536u

void *ha_grow_array(void *arr, size_t *cap, size_t need, size_t elem)
{
	size_t n = *cap ? *cap : 16;
	void *p;

	while (n < need) {
		if (n > SIZE_MAX / 2)
			return NULL;
		n *= 2;
	}
	if (n > SIZE_MAX / elem)
		return NULL;
	p = realloc(arr, n * elem);
	if (p)
		*cap = n;
	return p;
}

/* ---- strings ----------------------------------------------------------- */

/* Copies s[0..len) and a NUL into the pool's blocks. */
static char *pool_store(struct ha_strpool *pool, const char *s, size_t len)
{
	bool own_block = len + 1 > STRBLOCK_SIZE / 4;
	char *dst;

	if (own_block || len + 1 > pool->block_left) {
		size_t size = own_block ? len + 1 : STRBLOCK_SIZE;
		char *block;

		if (!HA_RESERVE(pool->blocks, pool->blocks_cap,
				pool->nblocks + 1))
			return NULL;
		block = malloc(size);
		if (!block)
			return NULL;
		pool->blocks[pool->nblocks++] = block;
		if (own_block) {
			dst = block;
			goto copy;
		}
		pool->cursor = block;
		pool->block_left = size;
	}
	dst = pool->cursor;
	pool->cursor += len + 1;
	pool->block_left -= len + 1;
copy:
	memcpy(dst, s, len);
	dst[len] = '\0';
	return dst;
}

const char *ha_intern(struct ha_strpool *pool, const char *s, size_t len)
{
	uint64_t h = ha_hash_bytes(s, len);
	uint32_t first = ha_map_get(&pool->index, h);
	char *copy;

	for (uint32_t i = first; i != HA_NONE; i = pool->next[i]) {
		if (strncmp(pool->strs[i], s, len) == 0 &&
		    pool->strs[i][len] == '\0')
			return pool->strs[i];
	}
	if (pool->n >= HA_NONE - 1 ||
	    !HA_RESERVE(pool->strs, pool->cap, pool->n + 1))
		return NULL;
	{
		/* strs and next share one capacity. */
		size_t cap = pool->cap;
		uint32_t *next = realloc(pool->next, cap * sizeof(*next));

		if (!next)
			return NULL;
		pool->next = next;
	}
	copy = pool_store(pool, s, len);
	if (!copy || !ha_map_put(&pool->index, h, (uint32_t)pool->n))
		return NULL;
	pool->strs[pool->n] = copy;
	pool->next[pool->n] = first;
	pool->n++;
	return copy;
}

const char *ha_intern_str(struct ha_strpool *pool, const char *s)
{
	return ha_intern(pool, s, strlen(s));
}

void ha_strpool_free(struct ha_strpool *pool)
{
	for (size_t i = 0; i < pool->nblocks; i++)
		free(pool->blocks[i]);
	free(pool->blocks);
	free(pool->strs);
	free(pool->next);
	ha_map_free(&pool->index);
	memset(pool, 0, sizeof(*pool));
}

/* ---- the log ------------------------------------------------------------- */

struct ha_log *ha_log_new(void)
{
	struct ha_log *log = calloc(1, sizeof(*log));

	if (!log)
		return NULL;
	/* Module file 0: addresses outside every recorded module. */
	if (ha_log_modfile(log, "", "") != 0) {
		ha_log_free(log);
		return NULL;
	}
	return log;
}

static void stream_free(struct ha_stream *s)
{
	free(s->argv);
	free(s->events);
	free(s->refusals);
	free(s->modules);
	free(s->segments);
	free(s->unloads);
	ha_map_free(&s->stack_ids);
	free(s->page_events);
}

void ha_log_free(struct ha_log *log)
{
	if (!log)
		return;
	for (size_t i = 0; i < log->nstreams; i++)
		stream_free(&log->streams[i]);
	for (size_t i = 0; i < log->nmodfiles; i++)
		ha_map_free(&log->modfiles[i].offsets);
	free(log->streams);
	ha_map_free(&log->stream_ids);
	free(log->argv);
	free(log->exits);
	free(log->rss);
	free(log->stacks);
	free(log->chunks);
	if (log->kept)
		munmap(log->kept, log->kept_size);
	free(log->zframes);
	free(log->frame_addrs);
	free(log->frame_locs);
	free(log->modfiles);
	ha_map_free(&log->modfile_index);
	free(log->locs);
	free(log->syms);
	free(log->sites);
	ha_map_free(&log->site_index);
	ha_types_free(log);
	ha_strpool_free(&log->strings);
	free(log);
}

struct ha_stream *ha_log_stream(struct ha_log *log, uint64_t id, uint32_t pid)
{
	uint32_t i = ha_map_get(&log->stream_ids, id);
	struct ha_stream *s;

	if (i != HA_NONE)
		return &log->streams[i];
	if (log->frozen || log->nstreams >= HA_NONE - 1 ||
	    !HA_RESERVE(log->streams, log->streams_cap, log->nstreams + 1) ||
	    !ha_map_put(&log->stream_ids, id, (uint32_t)log->nstreams))
		return NULL;
	s = &log->streams[log->nstreams];
	memset(s, 0, sizeof(*s));
	s->id = id;
	s->pid = pid;
	s->exe = "";
	s->appearance = (uint32_t)log->nstreams;
	log->nstreams++;
	return s;
}

uint32_t ha_log_stack_ref(struct ha_log *log, struct ha_stream *stream,
			  uint64_t id)
{
	uint32_t i = ha_map_get(&stream->stack_ids, id);
	struct ha_stack *st;

	if (i != HA_NONE)
		return i;
	if (log->frozen || log->nstacks >= HA_NONE - 1 ||
	    !HA_RESERVE(log->stacks, log->stacks_cap, log->nstacks + 1) ||
	    !ha_map_put(&stream->stack_ids, id, (uint32_t)log->nstacks))
		return HA_NONE;
	st = &log->stacks[log->nstacks];
	memset(st, 0, sizeof(*st));
	st->stream = (uint32_t)(stream - log->streams);
	st->site = HA_NONE;
	return (uint32_t)log->nstacks++;
}

const char *ha_basename(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

static bool has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The C and C++ runtime: its frames are allocation wrappers, never a site. */
static bool is_runtime_module(const char *base)
{
	return has_prefix(base, "libc.so") ||
	       has_prefix(base, "libstdc++.so") ||
	       has_prefix(base, "libgcc_s.so") ||
	       has_prefix(base, "ld-linux") || has_prefix(base, "libm.so");
}

uint32_t ha_log_modfile(struct ha_log *log, const char *path,
			const char *build_id)
{
	uint64_t h;
	uint32_t first, i;
	struct ha_modfile *m;

	path = ha_intern_str(&log->strings, path);
	build_id = ha_intern_str(&log->strings, build_id);
	if (!path || !build_id)
		return HA_NONE;
	h = ha_hash64((uint64_t)(uintptr_t)path ^
		      ha_hash64((uint64_t)(uintptr_t)build_id));
	first = ha_map_get(&log->modfile_index, h);
	for (i = first; i != HA_NONE; i = log->modfiles[i].next)
		if (log->modfiles[i].path == path &&
		    log->modfiles[i].build_id == build_id)
			return i;
	if (log->nmodfiles >= HA_NONE - 1 ||
	    !HA_RESERVE(log->modfiles, log->modfiles_cap, log->nmodfiles + 1) ||
	    !ha_map_put(&log->modfile_index, h, (uint32_t)log->nmodfiles))
		return HA_NONE;
	m = &log->modfiles[log->nmodfiles];
	memset(m, 0, sizeof(*m));
	m->path = path;
	m->build_id = build_id;
	m->next = first;
	m->agent = strcmp(ha_basename(path), "libhalloc.so") == 0;
	m->runtime = is_runtime_module(ha_basename(path));
	return (uint32_t)log->nmodfiles++;
}

uint32_t ha_log_loc(struct ha_log *log, uint32_t modfile, uint64_t offset,
		    bool create)
{
	struct ha_modfile *m = &log->modfiles[modfile];
	uint32_t i = ha_map_get(&m->offsets, offset);
	struct ha_loc *loc;

	if (i != HA_NONE || !create)
		return i;
	if (log->nlocs >= HA_NONE - 1 ||
	    !HA_RESERVE(log->locs, log->locs_cap, log->nlocs + 1) ||
	    !ha_map_put(&m->offsets, offset, (uint32_t)log->nlocs))
		return HA_NONE;
	loc = &log->locs[log->nlocs];
	memset(loc, 0, sizeof(*loc));
	loc->modfile = modfile;
	loc->offset = offset;
	loc->state = HA_LOC_PENDING;
	return (uint32_t)log->nlocs++;
}

bool ha_log_set_syms(struct ha_log *log, uint32_t loc,
		     const struct ha_sym *syms, uint32_t nsyms,
		     enum ha_loc_state state)
{
	struct ha_loc *l = &log->locs[loc];

	if (log->nsyms + nsyms >= HA_NONE ||
	    !HA_RESERVE(log->syms, log->syms_cap, log->nsyms + nsyms))
		return false;
	memcpy(log->syms + log->nsyms, syms, nsyms * sizeof(*syms));
	l->first_sym = (uint32_t)log->nsyms;
	l->nsyms = nsyms;
	l->state = (uint8_t)state;
	log->nsyms += nsyms;
	return true;
}

const char *ha_log_build_id_hex(struct ha_log *log, const unsigned char *id,
				size_t len)
{
	static const char digits[] = "0123456789abcdef";
	char buf[2 * 64 + 1] = "";

	/* A GNU build-id is 20 bytes; anything past 64 says nothing more. */
	if (len > 64)
		len = 64;
	for (size_t i = 0; i < len; i++) {
		buf[2 * i] = digits[id[i] >> 4];
		buf[2 * i + 1] = digits[id[i] & 15];
	}
	return ha_intern(&log->strings, buf, 2 * len);
}
