/*
 * analyzer/report_sections.c - the text report's sections beyond totals
 * and leaks: the sites table (--sort, --top), the heap over time as a
 * sparkline, peak contributors, temporary allocations and the size
 * histogram. report_text.c puts them in order.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "analyzer/analysis.h"
#include "analyzer/report_text.h"
#include "halloc/log.h"

static const char *sort_name(enum ha_sort sort)
{
	switch (sort) {
	case HA_SORT_LEAKED:
		return "bytes leaked";
	case HA_SORT_PEAK:
		return "peak bytes";
	case HA_SORT_CALLS:
		return "allocations";
	case HA_SORT_TEMPORARY:
		return "temporary allocations";
	case HA_SORT_ALLOCATED:
	case HA_SORT_DEFAULT:
		break;
	}
	return "bytes allocated";
}

/* The sites table, with --sort or --top: the top sites by that key. */
enum ha_result ha_text_sites(FILE *out, const struct ha_log *log,
			     const struct ha_process *p,
			     const struct ha_report_options *o,
			     const struct ha_text_style *st)
{
	uint32_t *idx;
	size_t n;
	char s1[32], s2[32], s3[32], n1[32];

	if (ha_select_sites(p, o, o->top, &idx, &n) != HA_OK)
		return HA_ERR_NOMEM;
	fprintf(out, "\n%sSITES by %s%s", st->head, sort_name(o->sort),
		st->reset);
	if (n < p->nsites)
		fprintf(out, " (top %zu of %zu)", n, p->nsites);
	fputs(":\n", out);
	for (size_t i = 0; i < n; i++) {
		const struct ha_site_stats *ss = &p->sites[idx[i]];

		fprintf(out, "  %zu. ", i + 1);
		ha_text_site(out, log, &log->sites[ss->site]);
		fprintf(out,
			"\n     peak %s, allocated %s in %s %s, leaked %s\n",
			ha_text_bytes(s1, ss->peak_bytes),
			ha_text_bytes(s2, ss->bytes_allocated),
			ha_text_count(n1, ss->allocations),
			ha_text_plural(ss->allocations, "call", "calls"),
			ha_text_bytes(s3, ss->leaked_bytes));
	}
	free(idx);
	return HA_OK;
}

/* Columns of the heap's sparkline without a width; with one, it fills the
 * line, within these bounds. */
#define SPARK_WIDTH 50
#define SPARK_MIN   10
#define SPARK_MAX   200
#define SPARK_LABEL "  heap over time:  "

static uint64_t heap_top(const struct ha_timeline *tl)
{
	uint64_t top = 0;

	for (size_t i = 0; i < tl->n; i++)
		if (tl->bytes[i] > top)
			top = tl->bytes[i];
	return top;
}

/* What follows the heap's sparkline; returns its length. */
static int spark_after(char after[96], const struct ha_timeline *tl)
{
	char s1[32], t1[32];

	return snprintf(after, 96, "  (max %s over %s)",
			ha_text_bytes(s1, heap_top(tl)),
			ha_text_duration(t1, tl->end_us));
}

size_t ha_text_sparkline_cols(const struct ha_process *p,
			      const struct ha_report_options *o)
{
	const struct ha_timeline *tl = &p->timeline;
	size_t cols = SPARK_WIDTH;
	char after[96];

	if (o->width) {
		int room = (int)o->width - (int)strlen(SPARK_LABEL) -
			   spark_after(after, tl);

		cols = room < SPARK_MIN	  ? SPARK_MIN
		       : room > SPARK_MAX ? SPARK_MAX
					  : (size_t)room;
	}
	return cols > tl->n ? tl->n : cols;
}

/* The heap over time on one line: each column the most the heap held in
 * its share of the run, in eight levels of the peak. */
void ha_text_sparkline(FILE *out, const struct ha_log *log,
		       const struct ha_process *p,
		       const struct ha_report_options *o)
{
	static const char *const blocks[] = {"▁", "▂", "▃", "▄",
					     "▅", "▆", "▇", "█"};
	static const char ascii[] = "_.-:=+*#";
	const struct ha_timeline *tl = &p->timeline;
	size_t cols;
	uint64_t top = heap_top(tl);
	char after[96];

	if (tl->n < 2 || (log->trace_flags & HALLOC_TRACE_AGGREGATE) || !top)
		return;
	spark_after(after, tl);
	cols = ha_text_sparkline_cols(p, o);
	fputs(SPARK_LABEL, out);
	for (size_t c = 0; c < cols; c++) {
		uint64_t v = 0;
		unsigned level;

		for (size_t i = c * tl->n / cols; i < (c + 1) * tl->n / cols;
		     i++)
			if (tl->bytes[i] > v)
				v = tl->bytes[i];
		level = (unsigned)((double)v * 7.0 / (double)top + 0.5);
		if (o->utf8)
			fputs(blocks[level], out);
		else
			fputc(ascii[level], out);
	}
	fprintf(out, "%s\n", after);
}

/* Peak contributors shown in text unless --top says how many. */
#define PEAK_SITES_SHOWN 5

/* The sites holding the heap at the moment of its peak. */
void ha_text_peak_sites(FILE *out, const struct ha_log *log,
			const struct ha_process *p,
			const struct ha_report_options *o,
			const struct ha_text_style *st)
{
	size_t n = o->top ? o->top : PEAK_SITES_SHOWN;
	char s1[64], n1[32];

	if (!p->npeak_sites || (log->trace_flags & HALLOC_TRACE_AGGREGATE))
		return;
	if (n > p->npeak_sites)
		n = p->npeak_sites;
	fprintf(out, "\n%sPEAK CONTRIBUTORS%s (what the heap held at its peak",
		st->head, st->reset);
	if (n < p->npeak_sites)
		fprintf(out, ", top %zu of %zu sites", n, p->npeak_sites);
	fputs("):\n", out);
	for (size_t i = 0; i < n; i++) {
		const struct ha_peak_site *ps = &p->peak_sites[i];

		fprintf(out, "  %s in %s %s at ", ha_text_bytes(s1, ps->bytes),
			ha_text_count(n1, ps->blocks),
			ha_text_plural(ps->blocks, "block", "blocks"));
		ha_text_site(out, log, &log->sites[ps->site]);
		fputc('\n', out);
	}
}

/* 2^k bytes, short: "512 B", "4 KiB", "1 MiB". */
static const char *pow2(char buf[32], unsigned k)
{
	static const char *const units[] = {"B",   "KiB", "MiB", "GiB",
					    "TiB", "PiB", "EiB"};

	snprintf(buf, 32, "%llu %s", 1ull << (k % 10), units[k / 10]);
	return buf;
}

/* Temporary allocations by site, then the size histogram. */
enum ha_result ha_text_temporary(FILE *out, const struct ha_log *log,
				 const struct ha_process *p,
				 const struct ha_report_options *o,
				 const struct ha_text_style *st)
{
	struct ha_report_options by = *o;
	uint32_t *idx;
	size_t n;
	char n1[32], n2[32], b1[32], b2[32];

	if (!p->summary.temporary ||
	    (log->trace_flags & HALLOC_TRACE_AGGREGATE))
		return HA_OK;
	by.sort = HA_SORT_TEMPORARY;
	if (ha_select_sites(p, &by, o->top ? o->top : PEAK_SITES_SHOWN, &idx,
			    &n) != HA_OK)
		return HA_ERR_NOMEM;
	fprintf(out,
		"\n%sTEMPORARY ALLOCATIONS%s (freed before the next "
		"allocation), by site:\n",
		st->head, st->reset);
	for (size_t i = 0; i < n && p->sites[idx[i]].temporary; i++) {
		const struct ha_site_stats *ss = &p->sites[idx[i]];

		fprintf(out, "  %s of %s at ", ha_text_count(n1, ss->temporary),
			ha_text_count(n2, ss->allocations));
		ha_text_site(out, log, &log->sites[ss->site]);
		fputc('\n', out);
	}
	free(idx);
	fprintf(out, "\n%sALLOCATION SIZES%s (allocations, temporary):\n",
		st->head, st->reset);
	for (unsigned k = 0; k < HA_SIZE_BUCKETS; k++) {
		if (!p->sizes[k])
			continue;
		if (k == 0)
			fprintf(out, "  %-20s", "0 B");
		else {
			char range[80];

			snprintf(range, sizeof(range), "%s - <%s",
				 pow2(b1, k - 1),
				 k < 64 ? pow2(b2, k) : "16 EiB");
			fprintf(out, "  %-20s", range);
		}
		fprintf(out, " %12s %12s\n", ha_text_count(n1, p->sizes[k]),
			ha_text_count(n2, p->temporary_sizes[k]));
	}
	return HA_OK;
}
