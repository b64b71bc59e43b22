/*
 * analyzer/types.c - memory by type (see types.h): the typed sites and
 * typed allocations read from the log, and their replay beside the
 * replay of every block.
 */
#include <stdlib.h>
#include <string.h>

#include "analyzer/analysis.h"
#include "analyzer/types.h"
#include "halloc/log.h"

/* A typed site: one halloc(type, n) call of the program. */
struct tsite {
	const char *name, *file; /* interned */
	uint64_t object_size;
	uint32_t line;
	uint32_t type; /* index into names */
	bool defined;  /* its TYPE record was read */
};

/* One typed ALLOC of a stream. */
struct typed {
	uint64_t seq, count;
	uint32_t site;
};

struct stream_types {
	struct ha_map ids; /* the stream's site id -> index into sites */
	struct typed *allocs;
	size_t n, cap;
};

struct ha_types {
	struct tsite *sites;
	size_t nsites, sites_cap;
	struct stream_types *streams; /* by stream index */
	size_t nstreams, streams_cap;
	const char **names; /* distinct type names */
	size_t nnames, names_cap;
	struct ha_map name_ids; /* interned name pointer -> index */
};

/* Per type name (the first nnames), then per site. */
struct ha_type_acc {
	uint64_t allocations, objects, bytes, live, live_blocks, peak;
};

static struct ha_types *types_of(struct ha_log *log)
{
	if (!log->types)
		log->types = calloc(1, sizeof(*log->types));
	return log->types;
}

static struct stream_types *stream_of(struct ha_log *log,
				      const struct ha_stream *s)
{
	struct ha_types *ty = types_of(log);
	size_t i = (size_t)(s - log->streams);

	if (!ty || !HA_RESERVE(ty->streams, ty->streams_cap, i + 1))
		return NULL;
	if (i >= ty->nstreams) {
		memset(ty->streams + ty->nstreams, 0,
		       (i + 1 - ty->nstreams) * sizeof(*ty->streams));
		ty->nstreams = i + 1;
	}
	return &ty->streams[i];
}

/* The global index of a stream's site id, created undefined if new. */
static uint32_t site_ref(struct ha_types *ty, struct stream_types *st,
			 uint64_t id)
{
	uint32_t i = ha_map_get(&st->ids, id);

	if (i != HA_NONE)
		return i;
	if (!HA_RESERVE(ty->sites, ty->sites_cap, ty->nsites + 1))
		return HA_NONE;
	i = (uint32_t)ty->nsites;
	if (!ha_map_put(&st->ids, id, i))
		return HA_NONE;
	memset(&ty->sites[i], 0, sizeof(ty->sites[i]));
	ty->nsites++;
	return i;
}

static uint32_t name_ref(struct ha_types *ty, const char *name)
{
	uint32_t i = ha_map_get(&ty->name_ids, (uintptr_t)name);

	if (i != HA_NONE)
		return i;
	if (!HA_RESERVE(ty->names, ty->names_cap, ty->nnames + 1))
		return HA_NONE;
	i = (uint32_t)ty->nnames;
	if (!ha_map_put(&ty->name_ids, (uintptr_t)name, i))
		return HA_NONE;
	ty->names[ty->nnames++] = name;
	return i;
}

enum ha_result ha_types_read_type(struct ha_log *log, struct ha_stream *s,
				  struct ha_cursor *c, bool keep)
{
	uint64_t id, object_size, line;
	const char *name, *file;
	size_t name_len, file_len;
	struct stream_types *st;
	struct tsite *site;
	uint32_t i, type;

	if (!ha_get_uv(c, &id) || !ha_get_uv(c, &object_size) ||
	    !ha_get_str(c, &name, &name_len) ||
	    !ha_get_str(c, &file, &file_len) || !ha_get_uv(c, &line) ||
	    line > UINT32_MAX)
		return HA_ERR_CORRUPT;
	if (!keep)
		return HA_OK;
	st = stream_of(log, s);
	if (!st || (i = site_ref(log->types, st, id)) == HA_NONE)
		return HA_ERR_NOMEM;
	site = &log->types->sites[i];
	if (site->defined)
		return HA_OK; /* sent twice by racing threads: the same */
	name = ha_intern(&log->strings, name, name_len);
	file = ha_intern(&log->strings, file, file_len);
	if (!name || !file || (type = name_ref(log->types, name)) == HA_NONE)
		return HA_ERR_NOMEM;
	*site =
	    (struct tsite){name, file, object_size, (uint32_t)line, type, true};
	return HA_OK;
}

enum ha_result ha_types_read_alloc(struct ha_log *log, struct ha_stream *s,
				   uint64_t seq, struct ha_cursor *c, bool keep)
{
	struct stream_types *st;
	uint64_t id, count;
	uint32_t i;

	if (!ha_get_uv(c, &id) || !ha_get_uv(c, &count))
		return HA_ERR_CORRUPT;
	if (!keep)
		return HA_OK;
	st = stream_of(log, s);
	if (!st || (i = site_ref(log->types, st, id)) == HA_NONE ||
	    !HA_RESERVE(st->allocs, st->cap, st->n + 1))
		return HA_ERR_NOMEM;
	st->allocs[st->n++] = (struct typed){seq, count, i};
	return HA_OK;
}

void ha_types_free(struct ha_log *log)
{
	struct ha_types *ty = log->types;

	if (!ty)
		return;
	for (size_t i = 0; i < ty->nstreams; i++) {
		ha_map_free(&ty->streams[i].ids);
		free(ty->streams[i].allocs);
	}
	free(ty->streams);
	free(ty->sites);
	free(ty->names);
	ha_map_free(&ty->name_ids);
	free(ty);
	log->types = NULL;
}

/* ---- replay
 * ------------------------------------------------------------------ */

static int cmp_typed(const void *a, const void *b)
{
	const struct typed *x = a, *y = b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static size_t nacc(const struct ha_types *ty)
{
	return ty ? ty->nnames + ty->nsites : 0;
}

bool ha_types_begin(struct ha_type_state *ts, const struct ha_log *log,
		    uint32_t stream, const struct ha_type_state *parent)
{
	struct ha_types *ty = log->types;
	size_t n = nacc(ty);

	memset(ts, 0, sizeof(*ts));
	ts->log = log;
	ts->stream = stream;
	if (ty && stream < ty->nstreams)
		/* Threads' chunks interleave in the file: order by seq. */
		qsort(ty->streams[stream].allocs, ty->streams[stream].n,
		      sizeof(struct typed), cmp_typed);
	if (n) {
		ts->acc = calloc(n, sizeof(*ts->acc));
		if (!ts->acc)
			return false;
	}
	if (!parent)
		return true;
	if (n)
		memcpy(ts->acc, parent->acc, n * sizeof(*ts->acc));
	memcpy(ts->classes, parent->classes, sizeof(ts->classes));
	return ha_live_copy(&ts->typed, &parent->typed) &&
	       ha_live_copy(&ts->classed, &parent->classed);
}

/* The typed site of the ALLOC at e, or HA_NONE. */
static uint32_t typed_site(struct ha_type_state *ts, const struct ha_event *e,
			   uint64_t *count)
{
	const struct ha_types *ty = ts->log->types;
	const struct stream_types *st;

	if (e->fn != HALLOC_FN_HALLOC || !ty || ts->stream >= ty->nstreams)
		return HA_NONE;
	st = &ty->streams[ts->stream];
	while (ts->cursor < st->n && st->allocs[ts->cursor].seq < e->seq)
		ts->cursor++;
	if (ts->cursor == st->n || st->allocs[ts->cursor].seq != e->seq ||
	    !ty->sites[st->allocs[ts->cursor].site].defined)
		return HA_NONE;
	*count = st->allocs[ts->cursor].count;
	return st->allocs[ts->cursor].site;
}

static void acc_add(struct ha_type_acc *a, uint64_t size, uint64_t count,
		    uint64_t blocks)
{
	a->allocations += blocks;
	a->objects += count * blocks;
	a->bytes += size;
	a->live += size;
	a->live_blocks += blocks;
	if (a->live > a->peak)
		a->peak = a->live;
}

bool ha_types_on_alloc(struct ha_type_state *ts, const struct ha_event *e,
		       uint64_t blocks, uint64_t bytes)
{
	const struct ha_types *ty = ts->log->types;
	uint64_t count = 0;
	uint32_t site = typed_site(ts, e, &count);
	unsigned bucket = ha_size_bucket(e->size);
	struct ha_class_acc *c;

	if (site != HA_NONE) {
		acc_add(&ts->acc[ty->sites[site].type], bytes, count, blocks);
		acc_add(&ts->acc[ty->nnames + site], bytes, count, blocks);
		return ha_live_insert(&ts->typed, e->addr, bytes,
				      (uint32_t)blocks, site, e->time);
	}
	c = &ts->classes[bucket];
	c->allocations += blocks;
	c->bytes += bytes;
	c->live += bytes;
	c->live_blocks += blocks;
	if (c->live > c->peak)
		c->peak = c->live;
	if (ts->log->sample_interval)
		return ha_live_insert(&ts->classed, e->addr, bytes,
				      (uint32_t)blocks, bucket, e->time);
	return true;
}

void ha_types_on_free(struct ha_type_state *ts, uint64_t addr, uint64_t size,
		      uint32_t blocks)
{
	const struct ha_types *ty = ts->log->types;
	unsigned bucket = ha_size_bucket(size);
	struct ha_class_acc *c;
	size_t i;

	if (ts->typed.count &&
	    (i = ha_live_find(&ts->typed, addr)) != SIZE_MAX) {
		uint32_t site = ts->typed.slots[i].stack;
		struct ha_type_acc *a = &ts->acc[ty->sites[site].type];
		struct ha_type_acc *b = &ts->acc[ty->nnames + site];

		a->live -= size;
		a->live_blocks -= blocks;
		b->live -= size;
		b->live_blocks -= blocks;
		ha_live_remove(&ts->typed, i);
		return;
	}
	if (ts->classed.count &&
	    (i = ha_live_find(&ts->classed, addr)) != SIZE_MAX) {
		bucket = ts->classed.slots[i].stack;
		ha_live_remove(&ts->classed, i);
	}
	c = &ts->classes[bucket];
	c->live -= size;
	c->live_blocks -= blocks;
}

static int cmp_type_usage(const void *a, const void *b)
{
	const struct ha_type_usage *x = a, *y = b;

	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int cmp_site_usage(const void *a, const void *b)
{
	const struct ha_type_site_usage *x = a, *y = b;
	int r;

	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	if ((r = strcmp(x->file, y->file)))
		return r;
	return x->line < y->line ? -1 : x->line > y->line;
}

/* The sites of type t that allocated, most bytes first. */
static bool type_sites(const struct ha_type_state *ts, uint32_t t,
		       struct ha_type_usage *u)
{
	const struct ha_types *ty = ts->log->types;

	u->sites = calloc(ty->nsites ? ty->nsites : 1, sizeof(*u->sites));
	if (!u->sites)
		return false;
	for (size_t s = 0; s < ty->nsites; s++) {
		const struct ha_type_acc *a = &ts->acc[ty->nnames + s];

		if (ty->sites[s].type != t || !ty->sites[s].defined ||
		    !a->allocations)
			continue;
		u->object_size = ty->sites[s].object_size;
		u->sites[u->nsites++] = (struct ha_type_site_usage){
		    ty->sites[s].file, ty->sites[s].line, a->allocations,
		    a->objects, a->bytes};
	}
	qsort(u->sites, u->nsites, sizeof(*u->sites), cmp_site_usage);
	return true;
}

bool ha_types_finish(struct ha_type_state *ts, bool exec,
		     struct ha_types_result *out)
{
	const struct ha_types *ty = ts->log->types;
	size_t nnames = ty ? ty->nnames : 0;

	memset(out, 0, sizeof(*out));
	out->types = calloc(nnames ? nnames : 1, sizeof(*out->types));
	out->classes = calloc(HA_SIZE_BUCKETS, sizeof(*out->classes));
	if (!out->types || !out->classes)
		return false;
	for (uint32_t t = 0; t < nnames; t++) {
		const struct ha_type_acc *a = &ts->acc[t];
		struct ha_type_usage *u = &out->types[out->ntypes];

		if (!a->allocations && !a->live_blocks)
			continue;
		*u = (struct ha_type_usage){.name = ty->names[t],
					    .allocations = a->allocations,
					    .objects = a->objects,
					    .bytes = a->bytes,
					    .peak_bytes = a->peak};
		if (!exec) {
			u->leaked_bytes = a->live;
			u->leaked_blocks = a->live_blocks;
		}
		out->ntypes++;
		if (!type_sites(ts, t, u))
			return false;
	}
	qsort(out->types, out->ntypes, sizeof(*out->types), cmp_type_usage);
	for (unsigned k = 0; k < HA_SIZE_BUCKETS; k++) {
		const struct ha_class_acc *c = &ts->classes[k];

		if (!c->allocations && !c->live_blocks)
			continue;
		out->classes[out->nclasses++] = (struct ha_size_class){
		    k,	     c->allocations,	 c->bytes,
		    c->peak, exec ? 0 : c->live, exec ? 0 : c->live_blocks};
	}
	return true;
}

void ha_types_end(struct ha_type_state *ts)
{
	free(ts->acc);
	free(ts->typed.slots);
	free(ts->classed.slots);
	ts->acc = NULL;
	ts->typed.slots = NULL;
	ts->classed.slots = NULL;
}

void ha_types_result_free(struct ha_types_result *r)
{
	for (size_t i = 0; i < r->ntypes; i++)
		free(r->types[i].sites);
	free(r->types);
	free(r->classes);
	memset(r, 0, sizeof(*r));
}
