/*
 * analyzer/report_pages.c - page items and resident memory in the reports
 * (pages.h has the numbers): peak RSS in the totals, RSS over time under
 * the heap's sparkline and in the JSON timeline, and the "Page items"
 * section, text and JSON ("page_items").
 */
#include <inttypes.h>
#include <stdlib.h>

#include "analyzer/analysis.h"
#include "analyzer/json.h"
#include "analyzer/report_pages.h"
#include "analyzer/report_text.h"

/* Page item sites shown in text unless --top says how many. */
#define PAGE_SITES_SHOWN 10

static const char *kind_name(uint8_t kind)
{
	return kind == HA_PAGE_KIND_HEAP ? "heap block by mmap" : "mmap";
}

void ha_text_peak_rss(FILE *out, const struct ha_process *p)
{
	char s1[64], n1[32];

	if (!p->pages.rss_samples)
		return;
	fprintf(out, "  peak RSS:        %s (%s %s from outside)\n",
		ha_text_size(s1, p->pages.peak_rss),
		ha_text_count(n1, p->pages.rss_samples),
		ha_text_plural(p->pages.rss_samples, "sample", "samples"));
}

/* Under the heap's: each column the most resident memory in its share of
 * the run, in eight levels of its own peak. */
void ha_text_rss_sparkline(FILE *out, const struct ha_process *p,
			   const struct ha_report_options *o)
{
	static const char *const blocks[] = {"▁", "▂", "▃", "▄",
					     "▅", "▆", "▇", "█"};
	static const char ascii[] = "_.-:=+*#";
	const struct ha_timeline *tl = &p->timeline;
	const uint64_t *rss = p->pages.rss;
	size_t cols = ha_text_sparkline_cols(p, o);
	uint64_t top = 0;
	char s1[32];

	if (!rss || tl->n < 2 || !cols)
		return;
	for (size_t i = 0; i < tl->n; i++)
		if (rss[i] != HA_RSS_NONE && rss[i] > top)
			top = rss[i];
	if (!top)
		return;
	fputs("  RSS over time:   ", out);
	for (size_t c = 0; c < cols; c++) {
		uint64_t v = HA_RSS_NONE;
		unsigned level;

		for (size_t i = c * tl->n / cols; i < (c + 1) * tl->n / cols;
		     i++)
			if (rss[i] != HA_RSS_NONE && (v == HA_RSS_NONE || rss[i] > v))
				v = rss[i];
		if (v == HA_RSS_NONE) { /* before the first sample */
			fputc(' ', out);
			continue;
		}
		level = (unsigned)((double)v * 7.0 / (double)top + 0.5);
		if (o->utf8)
			fputs(blocks[level], out);
		else
			fputc(ascii[level], out);
	}
	fprintf(out, "  (max %s)\n", ha_text_bytes(s1, top));
}

void ha_text_page_items(FILE *out, const struct ha_log *log,
			const struct ha_process *p,
			const struct ha_report_options *o,
			const struct ha_text_style *st)
{
	const struct ha_page_report *r = &p->pages;
	size_t n = o->top ? o->top : PAGE_SITES_SHOWN;
	char s1[32], s2[32], b1[32], b2[32], b3[32], n1[32], n2[32], n3[32],
	    t1[32];

	if (!r->recorded || !r->nsites)
		return;
	if (n > r->nsites)
		n = r->nsites;
	fprintf(out, "\n%sPAGE ITEMS%s (peak %s after %s; mapped at exit %s "
		     "in %s %s",
		st->head, st->reset, ha_text_bytes(s1, r->peak_bytes),
		ha_text_duration(t1, r->peak_time_us),
		ha_text_bytes(s2, r->end_bytes), ha_text_count(n1, r->end_items),
		ha_text_plural(r->end_items, "item", "items"));
	if (n < r->nsites)
		fprintf(out, "; top %zu of %zu sites", n, r->nsites);
	fputs("):\n", out);
	for (size_t i = 0; i < n; i++) {
		const struct ha_page_site *ps = &r->sites[i];
		bool heap = ps->kind == HA_PAGE_KIND_HEAP;

		fprintf(out, "  %zu. %s at ", i + 1, kind_name(ps->kind));
		ha_text_site(out, log, &log->sites[ps->site]);
		fprintf(out, "\n     %s %s, %s in %s %s, peak %s",
			ha_text_count(n1, ps->count),
			heap ? ha_text_plural(ps->count, "block", "blocks")
			     : ha_text_plural(ps->count, "mapping", "mappings"),
			ha_text_bytes(b1, ps->bytes),
			ha_text_count(n2, ps->pages),
			ha_text_plural(ps->pages, "page", "pages"),
			ha_text_bytes(b2, ps->peak));
		if (ps->end_items)
			fprintf(out, ", still mapped at exit: %s in %s %s",
				ha_text_bytes(b3, ps->end_bytes),
				ha_text_count(n3, ps->end_items),
				heap ? ha_text_plural(ps->end_items, "block",
						      "blocks")
				     : ha_text_plural(ps->end_items, "piece",
						      "pieces"));
		fputc('\n', out);
	}
}

/* ---- JSON ------------------------------------------------------------------ */

void ha_json_peak_rss(struct ha_json *j, const struct ha_process *p)
{
	/* null: no sample (not recorded by halloc-trace, or too short) */
	ha_json_key(j, "peak_rss_bytes");
	if (p->pages.rss_samples)
		ha_json_uint(j, p->pages.peak_rss);
	else
		ha_json_null(j);
}

void ha_json_rss_point(struct ha_json *j, const struct ha_process *p,
		       size_t i)
{
	ha_json_key(j, "rss");
	if (p->pages.rss && p->pages.rss[i] != HA_RSS_NONE)
		ha_json_uint(j, p->pages.rss[i]);
	else
		ha_json_null(j);
}

/*
 * "page_items": {"peak_bytes", "peak_time_us", "mapped_at_exit_bytes",
 *   "mapped_at_exit_items", "sites": [{"kind": "heap"|"mmap", "site",
 *   "count", "bytes", "pages", "peak_bytes", "mapped_at_exit_bytes",
 *   "mapped_at_exit_pages", "mapped_at_exit_items"}]}, most bytes first.
 */
void ha_json_page_items(struct ha_json *j, const struct ha_log *log,
			const struct ha_process *p)
{
	const struct ha_page_report *r = &p->pages;

	ha_json_key(j, "page_items");
	ha_json_object(j, false);
	ha_json_counter(j, "peak_bytes", r->peak_bytes);
	ha_json_counter(j, "peak_time_us", r->peak_time_us);
	ha_json_counter(j, "mapped_at_exit_bytes", r->end_bytes);
	ha_json_counter(j, "mapped_at_exit_items", r->end_items);
	ha_json_key(j, "sites");
	ha_json_array(j, false);
	for (size_t i = 0; i < r->nsites; i++) {
		const struct ha_page_site *ps = &r->sites[i];

		ha_json_object(j, false);
		ha_json_key(j, "kind");
		ha_json_string(j, ps->kind == HA_PAGE_KIND_HEAP ? "heap"
								: "mmap");
		ha_json_key(j, "site");
		ha_json_site(j, log, &log->sites[ps->site]);
		ha_json_counter(j, "count", ps->count);
		ha_json_counter(j, "bytes", ps->bytes);
		ha_json_counter(j, "pages", ps->pages);
		ha_json_counter(j, "peak_bytes", ps->peak);
		ha_json_counter(j, "mapped_at_exit_bytes", ps->end_bytes);
		ha_json_counter(j, "mapped_at_exit_pages", ps->end_pages);
		ha_json_counter(j, "mapped_at_exit_items", ps->end_items);
		ha_json_end(j);
	}
	ha_json_end(j);
	ha_json_end(j);
}
