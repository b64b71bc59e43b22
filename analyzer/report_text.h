/*
 * analyzer/report_text.h - what the text report's files share
 * (report_text.c, report_sections.c): its style and number formats.
 */
#ifndef HALLOC_ANALYZER_REPORT_TEXT_H
#define HALLOC_ANALYZER_REPORT_TEXT_H

#include <stdio.h>

#include "analyzer/analysis.h"

struct ha_text_style {
	const char *head, *leak, *place, *dim, *reset;
};

/* 1234567 -> "1,234,567" */
const char *ha_text_count(char buf[32], uint64_t v);
const char *ha_text_plural(uint64_t n, const char *one, const char *many);
/* "413 B", "4.88 KiB", "97.7 KiB": three significant digits */
const char *ha_text_bytes(char buf[32], uint64_t bytes);
/* "413 B", or "4.88 KiB (5,000 bytes)" from 1 KiB up: for totals */
const char *ha_text_size(char buf[64], uint64_t bytes);
/* "850 us", "12.3 ms", "4.56 s" */
const char *ha_text_duration(char buf[32], uint64_t us);
/* "  #0 main /src/x.c:12 (/src/prog)", fitted to o->width. */
void ha_text_frame(FILE *out, unsigned i, const struct ha_frame *f,
		   const struct ha_report_options *o,
		   const struct ha_text_style *st);
/* How a process ended: "exited with status 0", "was killed by SIGSEGV
 * (signal 11)", ... */
void ha_text_ending(FILE *out, const struct ha_stream *s);
/* "main (leaky.c:12)", "foo (libfoo.so)", "??? (libfoo.so+0x1a2b)" */
void ha_text_site(FILE *out, const struct ha_log *log,
		  const struct ha_site *site);

/* report_sections.c */
enum ha_result ha_text_sites(FILE *out, const struct ha_log *log,
			     const struct ha_process *p,
			     const struct ha_report_options *o,
			     const struct ha_text_style *st);
/* The columns the heap's sparkline takes (the RSS line takes as many). */
size_t ha_text_sparkline_cols(const struct ha_process *p,
			      const struct ha_report_options *o);
void ha_text_sparkline(FILE *out, const struct ha_log *log,
		       const struct ha_process *p,
		       const struct ha_report_options *o);
void ha_text_peak_sites(FILE *out, const struct ha_log *log,
			const struct ha_process *p,
			const struct ha_report_options *o,
			const struct ha_text_style *st);
enum ha_result ha_text_temporary(FILE *out, const struct ha_log *log,
				 const struct ha_process *p,
				 const struct ha_report_options *o,
				 const struct ha_text_style *st);

/* report_types.c: MEMORY USAGE BY TYPE, for a process with typed
 * allocations */
void ha_text_types(FILE *out, const struct ha_process *p,
		   const struct ha_text_style *st);

#endif /* HALLOC_ANALYZER_REPORT_TEXT_H */
