/*
 * analyzer/report_select.c - what a report shows and in which order, from
 * the report options (--process, --sort, --top, --min-bytes): shared by
 * the text and JSON writers so both show the same things.
 */
#include <stdlib.h>

#include "analyzer/analysis.h"

bool ha_analysis_has_pid(const struct ha_analysis *analysis, uint32_t pid)
{
	for (size_t i = 0; i < analysis->nprocs; i++)
		if (analysis->log->streams[analysis->procs[i].stream].pid ==
		    pid)
			return true;
	return false;
}

bool ha_report_shows(const struct ha_analysis *a, const struct ha_process *p,
		     const struct ha_report_options *o)
{
	return !o->pid_set || a->log->streams[p->stream].pid == o->pid;
}

static uint64_t site_key(const struct ha_site_stats *st, enum ha_sort sort)
{
	switch (sort) {
	case HA_SORT_LEAKED:
		return st->leaked_bytes;
	case HA_SORT_PEAK:
		return st->peak_bytes;
	case HA_SORT_CALLS:
		return st->allocations;
	case HA_SORT_TEMPORARY:
		return st->temporary;
	case HA_SORT_ALLOCATED:
	case HA_SORT_DEFAULT:
		break;
	}
	return st->bytes_allocated;
}

/* qsort has no context argument: keys are computed first, then sorted. */
struct keyed {
	uint64_t key, tie; /* both descending */
	uint32_t id;	   /* ascending; also the index returned */
};

static int cmp_keyed(const void *a, const void *b)
{
	const struct keyed *x = a, *y = b;

	if (x->key != y->key)
		return x->key > y->key ? -1 : 1;
	if (x->tie != y->tie)
		return x->tie > y->tie ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

enum ha_result ha_select_leaks(const struct ha_analysis *a,
			       const struct ha_process *p,
			       const struct ha_report_options *o,
			       uint32_t **out, size_t *n,
			       struct ha_omitted *omitted)
{
	struct keyed *k = calloc(p->nleaks ? p->nleaks : 1, sizeof(*k));
	uint32_t *by_site = NULL, *idx;
	size_t m = 0;

	*omitted = (struct ha_omitted){0, 0, 0};
	*out = NULL;
	*n = 0;
	if (o->sort != HA_SORT_DEFAULT && o->sort != HA_SORT_LEAKED)
		by_site = malloc((a->log->nsites ? a->log->nsites : 1) *
				 sizeof(*by_site));
	idx = malloc((p->nleaks ? p->nleaks : 1) * sizeof(*idx));
	if (!k || !idx ||
	    (o->sort != HA_SORT_DEFAULT && o->sort != HA_SORT_LEAKED &&
	     !by_site)) {
		free(k);
		free(idx);
		free(by_site);
		return HA_ERR_NOMEM;
	}
	for (size_t i = 0; by_site && i < p->nsites; i++)
		by_site[p->sites[i].site] = (uint32_t)i;
	for (size_t i = 0; i < p->nleaks; i++) {
		const struct ha_leak *l = &p->leaks[i];

		if (l->bytes < o->min_bytes) {
			omitted->leaks++;
			omitted->bytes += l->bytes;
			omitted->blocks += l->blocks;
			continue;
		}
		k[m++] = (struct keyed){
		    by_site ? site_key(&p->sites[by_site[l->site]], o->sort)
			    : l->bytes,
		    l->bytes, (uint32_t)i};
	}
	qsort(k, m, sizeof(*k), cmp_keyed);
	for (size_t i = 0; i < m; i++) {
		const struct ha_leak *l = &p->leaks[k[i].id];

		if (o->top && *n >= o->top) {
			omitted->leaks++;
			omitted->bytes += l->bytes;
			omitted->blocks += l->blocks;
			continue;
		}
		idx[(*n)++] = k[i].id;
	}
	free(k);
	free(by_site);
	*out = idx;
	return HA_OK;
}

enum ha_result ha_select_sites(const struct ha_process *p,
			       const struct ha_report_options *o, unsigned top,
			       uint32_t **out, size_t *n)
{
	struct keyed *k = calloc(p->nsites ? p->nsites : 1, sizeof(*k));
	uint32_t *idx = malloc((p->nsites ? p->nsites : 1) * sizeof(*idx));

	*out = NULL;
	*n = 0;
	if (!k || !idx) {
		free(k);
		free(idx);
		return HA_ERR_NOMEM;
	}
	/* the id is the site's place in p->sites: the default order */
	for (size_t i = 0; i < p->nsites; i++)
		k[i] = (struct keyed){o->sort == HA_SORT_DEFAULT
					  ? 0
					  : site_key(&p->sites[i], o->sort),
				      0, (uint32_t)i};
	qsort(k, p->nsites, sizeof(*k), cmp_keyed);
	for (size_t i = 0; i < p->nsites && (!top || *n < top); i++)
		idx[(*n)++] = k[i].id;
	free(k);
	*out = idx;
	return HA_OK;
}

uint64_t ha_rate_per_second(uint64_t n, uint64_t us)
{
	return us ? (uint64_t)((double)n * 1e6 / (double)us + 0.5) : 0;
}
