/*
 * analyzer/report_pages.h - the reports' page items and resident memory
 * (report_pages.c), called from report_text.c and report_json.c.
 */
#ifndef HALLOC_ANALYZER_REPORT_PAGES_H
#define HALLOC_ANALYZER_REPORT_PAGES_H

#include <stdio.h>

#include "analyzer/analysis.h"
#include "analyzer/json.h"
#include "analyzer/report_text.h"

/* text: a line of the totals, a line under the heap's sparkline, a section */
void ha_text_peak_rss(FILE *out, const struct ha_process *p);
void ha_text_rss_sparkline(FILE *out, const struct ha_process *p,
			   const struct ha_report_options *o);
void ha_text_page_items(FILE *out, const struct ha_log *log,
			const struct ha_process *p,
			const struct ha_report_options *o,
			const struct ha_text_style *st);

/* JSON: "peak_rss_bytes" in "summary", "rss" in a timeline point, and
 * "page_items" in a process */
void ha_json_peak_rss(struct ha_json *j, const struct ha_process *p);
void ha_json_rss_point(struct ha_json *j, const struct ha_process *p,
		       size_t i);
void ha_json_page_items(struct ha_json *j, const struct ha_log *log,
			const struct ha_process *p);

#endif /* HALLOC_ANALYZER_REPORT_PAGES_H */
