/*
 * analyzer/refusals.h - the report's section on refused allocations
 * (refusals.c), and the JSON pieces it shares with report_json.c.
 * Internal to the analyzer.
 */
#ifndef HALLOC_ANALYZER_REFUSALS_H
#define HALLOC_ANALYZER_REFUSALS_H

#include <stdio.h>

#include "analyzer/analysis.h"
#include "analyzer/json.h"
#include "analyzer/report_text.h"

/* "REFUSED ALLOCATIONS" by site and how the process ended; nothing when
 * no allocation of p was refused. */
enum ha_result ha_text_refused(FILE *out, const struct ha_log *log,
			       const struct ha_process *p,
			       const struct ha_report_options *o,
			       const struct ha_text_style *st);

/* The keys "refused": [{"site", "reason", "allocations", "bytes"}],
 * "killed_after_refusal": bool, "last_refused": null or {"function",
 * "size", "reason", "time_us", "site", "stack"} of a process object. */
enum ha_result ha_json_refused(struct ha_json *j, const struct ha_log *log,
			       const struct ha_process *p,
			       const struct ha_report_options *o);

/* report_json.c: a stack array. */
enum ha_result ha_json_stack(struct ha_json *j, const struct ha_log *log,
			     uint32_t stack);

#endif /* HALLOC_ANALYZER_REFUSALS_H */
