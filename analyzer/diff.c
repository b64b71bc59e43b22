/*
 * analyzer/diff.c - `halloc-report --diff OLD NEW`: how two logs of the same
 * program differ, site by site and type by type (halloc(type, n)), largest
 * change first.
 *
 * Sites are matched across the logs by what a developer reads: function,
 * source file and line (module and offset when there is no source file),
 * never by address, so two builds of the program compare. A site's numbers
 * are summed over the processes of a log (its peak: the highest of them).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyzer/analysis.h"
#include "analyzer/json.h"
#include "analyzer/report_text.h"

enum { D_LEAKED, D_PEAK, D_ALLOCATED, D_CALLS, D_N };

static const char *const d_keys[D_N] = {"leaked_bytes", "peak_bytes",
					"bytes_allocated", "allocations"};

struct row {
	char *key;
	const struct ha_log *log; /* the site as the newest log has it */
	const struct ha_site *site; /* NULL: a type's row */
	const char *type;	    /* the type's name, for a type's row */
	uint64_t v[2][D_N]; /* [old, new] */
};

static int cmp_key(const void *a, const void *b)
{
	const struct row *x = a, *y = b;

	return strcmp(x->key, y->key);
}

static char *site_key(const struct ha_log *log, const struct ha_site *s)
{
	const char *module = log->modfiles[s->modfile].path;
	char *k = NULL;
	int n;

	if (*s->file)
		n = asprintf(&k, "%s\x1f%s\x1f%" PRIu32, s->function, s->file,
			     s->line);
	else
		n = asprintf(&k,
			     "%s\x1f%s\x1f"
			     "0x%" PRIx64,
			     s->function, module,
			     s->loc != HA_NONE ? log->locs[s->loc].offset : 0);
	return n < 0 ? NULL : k;
}

/* Types match by name: the name as written in halloc(type, n). */
static bool collect_types(const struct ha_types_result *t, int side,
			  struct row **rows, size_t *n, size_t *cap)
{
	for (size_t k = 0; k < t->ntypes; k++) {
		const struct ha_type_usage *u = &t->types[k];
		struct row *r;

		if (!HA_RESERVE(*rows, *cap, *n + 1))
			return false;
		r = &(*rows)[(*n)++];
		memset(r, 0, sizeof(*r));
		r->type = u->name;
		/* \x1e sorts type keys apart from every site key. */
		if (asprintf(&r->key, "\x1e%s", u->name) < 0) {
			r->key = NULL;
			return false;
		}
		r->v[side][D_LEAKED] = u->leaked_bytes;
		r->v[side][D_PEAK] = u->peak_bytes;
		r->v[side][D_ALLOCATED] = u->bytes;
		r->v[side][D_CALLS] = u->allocations;
	}
	return true;
}

/* Appends one row per site (and per type) of every process of `a`, as side
 * `side`. */
static bool collect(const struct ha_analysis *a, int side, struct row **rows,
		    size_t *n, size_t *cap)
{
	for (size_t i = 0; i < a->nprocs; i++) {
		const struct ha_process *p = &a->procs[i];

		for (size_t k = 0; k < p->nsites; k++) {
			const struct ha_site_stats *st = &p->sites[k];
			struct row *r;

			if (!HA_RESERVE(*rows, *cap, *n + 1))
				return false;
			r = &(*rows)[(*n)++];
			memset(r, 0, sizeof(*r));
			r->log = a->log;
			r->site = &a->log->sites[st->site];
			r->key = site_key(a->log, r->site);
			if (!r->key)
				return false;
			r->v[side][D_LEAKED] = st->leaked_bytes;
			r->v[side][D_PEAK] = st->peak_bytes;
			r->v[side][D_ALLOCATED] = st->bytes_allocated;
			r->v[side][D_CALLS] = st->allocations;
		}
		if (!collect_types(&p->types, side, rows, n, cap))
			return false;
	}
	return true;
}

static uint64_t change_size(const struct row *r)
{
	uint64_t most = 0;

	for (int d = 0; d < D_N - 1; d++) {
		uint64_t c = r->v[1][d] > r->v[0][d] ? r->v[1][d] - r->v[0][d]
						     : r->v[0][d] - r->v[1][d];
		if (c > most)
			most = c;
	}
	return most;
}

static int cmp_change(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	uint64_t cx = change_size(x), cy = change_size(y);

	if (cx != cy)
		return cx > cy ? -1 : 1;
	return strcmp(x->key, y->key);
}

/* Merges rows of equal key (sum; peak: the highest) and drops those with
 * no change. Returns the new count. */
static size_t merge(struct row *rows, size_t n)
{
	size_t o = 0;

	qsort(rows, n, sizeof(*rows), cmp_key);
	for (size_t i = 0; i < n; i++) {
		if (o && strcmp(rows[o - 1].key, rows[i].key) == 0) {
			struct row *m = &rows[o - 1];

			for (int s = 0; s < 2; s++)
				for (int d = 0; d < D_N; d++) {
					uint64_t v = rows[i].v[s][d];

					if (d != D_PEAK)
						m->v[s][d] += v;
					else if (v > m->v[s][d])
						m->v[s][d] = v;
				}
			if (rows[i].v[1][D_CALLS]) { /* show it as NEW has it */
				m->log = rows[i].log;
				m->site = rows[i].site;
				m->type = rows[i].type;
			}
			free(rows[i].key);
			continue;
		}
		rows[o++] = rows[i];
	}
	n = o;
	o = 0;
	for (size_t i = 0; i < n; i++) {
		if (memcmp(rows[i].v[0], rows[i].v[1], sizeof(rows[i].v[0]))) {
			rows[o++] = rows[i];
			continue;
		}
		free(rows[i].key);
	}
	qsort(rows, o, sizeof(*rows), cmp_change);
	return o;
}

static void totals(const struct ha_analysis *a, uint64_t v[D_N])
{
	memset(v, 0, D_N * sizeof(*v));
	for (size_t i = 0; i < a->nprocs; i++) {
		const struct ha_summary *m = &a->procs[i].summary;

		v[D_LEAKED] += m->leaked_bytes;
		if (m->peak_bytes > v[D_PEAK])
			v[D_PEAK] = m->peak_bytes;
		v[D_ALLOCATED] += m->bytes_allocated;
		v[D_CALLS] += m->allocations;
	}
}

static void write_change_json(struct ha_json *j, const char *key, uint64_t o,
			      uint64_t n)
{
	ha_json_key(j, key);
	ha_json_object(j, true);
	ha_json_counter(j, "old", o);
	ha_json_counter(j, "new", n);
	ha_json_key(j, "change");
	ha_json_int(j, (int64_t)(n - o));
	ha_json_end(j);
}

static void write_json(FILE *out, const char *old_name, const char *new_name,
		       const uint64_t t[2][D_N], const struct row *rows,
		       size_t n)
{
	struct ha_json j;

	ha_json_init(&j, out);
	ha_json_object(&j, false);
	ha_json_key(&j, "format");
	ha_json_string(&j, "halloc-diff");
	ha_json_key(&j, "version");
	ha_json_uint(&j, 1);
	ha_json_key(&j, "old");
	ha_json_string(&j, old_name);
	ha_json_key(&j, "new");
	ha_json_string(&j, new_name);
	ha_json_key(&j, "summary");
	ha_json_object(&j, false);
	for (int d = 0; d < D_N; d++)
		write_change_json(&j, d_keys[d], t[0][d], t[1][d]);
	ha_json_end(&j);
	ha_json_key(&j, "sites");
	ha_json_array(&j, false);
	for (size_t i = 0; i < n; i++) {
		const struct ha_site *s = rows[i].site;

		if (!s)
			continue;
		ha_json_object(&j, false);
		ha_json_key(&j, "site");
		ha_json_object(&j, true);
		ha_json_key(&j, "function");
		ha_json_string(&j, s->function);
		ha_json_key(&j, "file");
		ha_json_string(&j, s->file);
		ha_json_key(&j, "line");
		ha_json_uint(&j, s->line);
		ha_json_key(&j, "module");
		ha_json_string(&j, rows[i].log->modfiles[s->modfile].path);
		ha_json_end(&j);
		for (int d = 0; d < D_N; d++)
			write_change_json(&j, d_keys[d], rows[i].v[0][d],
					  rows[i].v[1][d]);
		ha_json_end(&j);
	}
	ha_json_end(&j);
	ha_json_key(&j, "types");
	ha_json_array(&j, false);
	for (size_t i = 0; i < n; i++) {
		if (rows[i].site)
			continue;
		ha_json_object(&j, false);
		ha_json_key(&j, "type");
		ha_json_string(&j, rows[i].type);
		for (int d = 0; d < D_N; d++)
			write_change_json(&j, d_keys[d], rows[i].v[0][d],
					  rows[i].v[1][d]);
		ha_json_end(&j);
	}
	ha_json_end(&j);
	ha_json_end(&j);
}

/* The change from o to n, signed: "+1,234" / "-56" / "0" for counts,
 * "+4.88 KiB" / "-300 B" / "0 B" for bytes. */
static const char *signed_change(char buf[40], uint64_t o, uint64_t n,
				 bool bytes)
{
	uint64_t v = n >= o ? n - o : o - n;
	char num[32];

	if (bytes)
		ha_text_bytes(num, v);
	else
		ha_text_count(num, v);
	snprintf(buf, 40, "%s%s", !v ? "" : n >= o ? "+" : "-", num);
	return buf;
}

/* With colour, more memory is red and less green: a reader looks for red. */
static const char *paint(const struct ha_report_options *o, uint64_t old_v,
			 uint64_t new_v)
{
	if (!o->color || old_v == new_v)
		return "";
	return new_v > old_v ? "\033[1;31m" : "\033[32m";
}

static const char *unpaint(const struct ha_report_options *o, uint64_t old_v,
			   uint64_t new_v)
{
	return o->color && old_v != new_v ? "\033[0m" : "";
}

/* Old and new as people read them: bytes in human units, counts with
 * thousands separators. */
static const char *value(char buf[32], uint64_t v, int d)
{
	return d == D_CALLS ? ha_text_count(buf, v) : ha_text_bytes(buf, v);
}

/* A site's changes, in D_ order: "leaked -4.88 KiB, peak 0 B, ..." */
static const char *const diff_names[D_N] = {" leaked", ", peak", ", allocated",
					    ", calls"};

/* The rows of sites (types false) or of types, up to --top of them. */
static void write_text_rows(FILE *out, const struct row *rows, size_t n,
			    bool types, const struct ha_report_options *o)
{
	size_t count = 0, shown = 0;
	char b[D_N][40];

	for (size_t i = 0; i < n; i++)
		count += !rows[i].site == types;
	if (!count)
		return;
	fprintf(out, "\n%s that changed, largest change first",
		types ? "TYPES" : "SITES");
	if (o->top && o->top < count)
		fprintf(out, " (top %u of %zu)", o->top, count);
	fputs(":\n", out);
	for (size_t i = 0; i < n && (!o->top || shown < o->top); i++) {
		const struct row *r = &rows[i];

		if (!r->site != types)
			continue;
		shown++;
		fputs("  ", out);
		if (types)
			fputs(r->type, out);
		else
			ha_text_site(out, r->log, r->site);
		fputs("\n    ", out);
		for (int d = 0; d < D_N; d++)
			fprintf(out, "%s %s%s%s", diff_names[d],
				paint(o, r->v[0][d], r->v[1][d]),
				signed_change(b[d], r->v[0][d], r->v[1][d],
					      d != D_CALLS),
				unpaint(o, r->v[0][d], r->v[1][d]));
		fputc('\n', out);
	}
}

static void write_text(FILE *out, const char *old_name, const char *new_name,
		       const uint64_t t[2][D_N], const struct row *rows,
		       size_t n, const struct ha_report_options *o)
{
	static const char *const labels[D_N] = {
	    "leaked:         ", "peak heap:      ", "bytes allocated:",
	    "allocations:    "};
	char b[40], v[2][32];

	fprintf(out, "halloc: from %s to %s\n", old_name, new_name);
	for (int d = 0; d < D_N; d++)
		fprintf(out, "  %s %s -> %s (%s%s%s)\n", labels[d],
			value(v[0], t[0][d], d), value(v[1], t[1][d], d),
			paint(o, t[0][d], t[1][d]),
			signed_change(b, t[0][d], t[1][d], d != D_CALLS),
			unpaint(o, t[0][d], t[1][d]));
	if (!n) {
		fputs("\nNo site changed.\n", out);
		return;
	}
	write_text_rows(out, rows, n, false, o);
	write_text_rows(out, rows, n, true, o);
}

enum ha_result ha_diff_write(const struct ha_analysis *old_a,
			     const char *old_name,
			     const struct ha_analysis *new_a,
			     const char *new_name,
			     const struct ha_report_options *options, FILE *out,
			     struct ha_diag *diag)
{
	struct row *rows = NULL;
	size_t n = 0, cap = 0;
	uint64_t t[2][D_N];
	bool ok = collect(old_a, 0, &rows, &n, &cap) &&
		  collect(new_a, 1, &rows, &n, &cap);

	if (!ok) {
		for (size_t i = 0; i < n; i++)
			free(rows[i].key);
		free(rows);
		return ha_diag_set(diag, HA_ERR_NOMEM,
				   "out of memory comparing logs");
	}
	n = merge(rows, n);
	totals(old_a, t[0]);
	totals(new_a, t[1]);
	if (options->format == HA_FORMAT_JSON)
		write_json(out, old_name, new_name, (const uint64_t(*)[D_N])t,
			   rows, n);
	else
		write_text(out, old_name, new_name, (const uint64_t(*)[D_N])t,
			   rows, n, options);
	for (size_t i = 0; i < n; i++)
		free(rows[i].key);
	free(rows);
	if (fflush(out) != 0 || ferror(out))
		return ha_diag_set(diag, HA_ERR_IO,
				   "cannot write the report: %s",
				   strerror(errno ? errno : EIO));
	return HA_OK;
}
