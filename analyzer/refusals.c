/*
 * analyzer/refusals.c - allocations refused before they reached the
 * allocator (HALLOC_REC_REFUSED: halloc-trace's fault injection, --limit,
 * the memory monitor), and how the program took it.
 *
 * A refusal is not an allocation: no count of the summary includes it.
 * The report groups them by (site, reason), most first, and says how the
 * process ended; when a signal killed it after a refusal, it names the
 * last refused call (by sequence number) and its stack, since a program
 * that does not check for NULL usually dies right after.
 *
 *   REFUSED ALLOCATIONS (made to fail; not counted above), by site:
 *     16 calls, 1,024 B, at main (oom.c:12): --fail-after
 *     then it was killed by SIGSEGV (signal 11); the last refused call was
 *     malloc(32) at take (oom.c:20):
 *     #0 take /src/oom.c:20 (/src/oom)
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "analyzer/json.h"
#include "analyzer/refusals.h"
#include "halloc/log.h"

struct group {
	uint32_t site;
	uint8_t reason;
	uint64_t calls, bytes;
};

static const char *reason_key(unsigned reason)
{
	switch (reason) {
	case HALLOC_REFUSED_MONITOR:
		return "monitor";
	case HALLOC_REFUSED_LIMIT:
		return "limit";
	case HALLOC_REFUSED_FAIL_AFTER:
		return "fail-after";
	case HALLOC_REFUSED_FAIL_RATE:
		return "fail-rate";
	case HALLOC_REFUSED_FAIL_AT:
		return "fail-at";
	default:
		return "unknown";
	}
}

static const char *reason_text(unsigned reason)
{
	switch (reason) {
	case HALLOC_REFUSED_MONITOR:
		return "the memory monitor";
	case HALLOC_REFUSED_LIMIT:
		return "--limit";
	case HALLOC_REFUSED_FAIL_AFTER:
		return "--fail-after";
	case HALLOC_REFUSED_FAIL_RATE:
		return "--fail-rate";
	case HALLOC_REFUSED_FAIL_AT:
		return "--fail-at";
	default:
		return "an unknown reason";
	}
}

static const char *fn_name(unsigned fn)
{
	static const char *const names[] = {
	    [HALLOC_FN_MALLOC] = "malloc",
	    [HALLOC_FN_CALLOC] = "calloc",
	    [HALLOC_FN_REALLOC] = "realloc",
	    [HALLOC_FN_REALLOCARRAY] = "reallocarray",
	    [HALLOC_FN_POSIX_MEMALIGN] = "posix_memalign",
	    [HALLOC_FN_ALIGNED_ALLOC] = "aligned_alloc",
	    [HALLOC_FN_MEMALIGN] = "memalign",
	    [HALLOC_FN_VALLOC] = "valloc",
	    [HALLOC_FN_PVALLOC] = "pvalloc",
	    [HALLOC_FN_HALLOC] = "halloc",
	};

	return fn < sizeof(names) / sizeof(names[0]) && names[fn] ? names[fn]
								  : "?";
}

static int group_compare(const void *pa, const void *pb)
{
	const struct group *a = pa, *b = pb;

	if (a->calls != b->calls)
		return a->calls > b->calls ? -1 : 1;
	if (a->bytes != b->bytes)
		return a->bytes > b->bytes ? -1 : 1;
	if (a->site != b->site)
		return a->site < b->site ? -1 : 1;
	return (int)a->reason - (int)b->reason;
}

/* The refusals of a stream by (site, reason), most first; *out is
 * malloc'ed. The groups are few: a linear search per refusal is cheap
 * next to the replay. */
static enum ha_result group_refusals(const struct ha_log *log,
				     const struct ha_stream *s,
				     struct group **out, size_t *n)
{
	struct group *g = NULL;
	size_t ng = 0, cap = 0;

	for (size_t i = 0; i < s->nrefusals; i++) {
		const struct ha_refusal *r = &s->refusals[i];
		uint32_t site = log->stacks[r->stack].site;
		size_t k;

		for (k = 0; k < ng; k++)
			if (g[k].site == site && g[k].reason == r->reason)
				break;
		if (k == ng) {
			if (!HA_RESERVE(g, cap, ng + 1)) {
				free(g);
				return HA_ERR_NOMEM;
			}
			g[ng++] =
			    (struct group){.site = site, .reason = r->reason};
		}
		g[k].calls++;
		g[k].bytes += r->size;
	}
	if (ng > 1)
		qsort(g, ng, sizeof(*g), group_compare);
	*out = g;
	*n = ng;
	return HA_OK;
}

/* The refusal made last, in sequence order; NULL if none. */
static const struct ha_refusal *last_refusal(const struct ha_stream *s)
{
	const struct ha_refusal *last = NULL;

	for (size_t i = 0; i < s->nrefusals; i++)
		if (!last || s->refusals[i].seq > last->seq)
			last = &s->refusals[i];
	return last;
}

/* ---- text ------------------------------------------------------------- */

static enum ha_result print_last(FILE *out, const struct ha_log *log,
				 const struct ha_refusal *r,
				 const struct ha_report_options *o,
				 const struct ha_text_style *st)
{
	struct ha_frame *frames;
	long n = ha_stack_frames(log, r->stack, &frames);
	long shown;

	if (n < 0)
		return HA_ERR_NOMEM;
	fprintf(out, "; the last refused call was\n  %s(%" PRIu64 ") at %s",
		fn_name(r->fn), r->size, st->head);
	ha_text_site(out, log, &log->sites[log->stacks[r->stack].site]);
	fprintf(out, "%s%s\n", st->reset, o->no_stacks ? "" : ":");
	shown = o->no_stacks ? 0 : n;
	if (o->stack_frames && (long)o->stack_frames < shown)
		shown = (long)o->stack_frames;
	for (long i = 0; i < shown; i++)
		ha_text_frame(out, (unsigned)i, &frames[i], o, st);
	if (shown < n)
		fprintf(
		    out, "  ... %ld more %s\n", n - shown,
		    ha_text_plural((uint64_t)(n - shown), "frame", "frames"));
	free(frames);
	return HA_OK;
}

enum ha_result ha_text_refused(FILE *out, const struct ha_log *log,
			       const struct ha_process *p,
			       const struct ha_report_options *o,
			       const struct ha_text_style *st)
{
	const struct ha_stream *s = &log->streams[p->stream];
	const struct ha_refusal *last = last_refusal(s);
	struct group *g;
	size_t n;
	char c1[32], s1[64];

	if (!last)
		return HA_OK;
	if (group_refusals(log, s, &g, &n) != HA_OK)
		return HA_ERR_NOMEM;
	fprintf(out,
		"\n%sREFUSED ALLOCATIONS%s (made to fail: not counted "
		"above), by site:\n",
		st->head, st->reset);
	for (size_t i = 0; i < n; i++) {
		fprintf(out, "  %s %s, %s, at ", ha_text_count(c1, g[i].calls),
			ha_text_plural(g[i].calls, "call", "calls"),
			ha_text_size(s1, g[i].bytes));
		ha_text_site(out, log, &log->sites[g[i].site]);
		fprintf(out, ": %s\n", reason_text(g[i].reason));
	}
	free(g);
	fputs("  then it ", out);
	ha_text_ending(out, s);
	if (s->end != HA_END_SIGNAL) {
		fputs("\n", out);
		return HA_OK;
	}
	return print_last(out, log, last, o, st);
}

/* ---- JSON ------------------------------------------------------------- */

enum ha_result ha_json_refused(struct ha_json *j, const struct ha_log *log,
			       const struct ha_process *p,
			       const struct ha_report_options *o)
{
	const struct ha_stream *s = &log->streams[p->stream];
	const struct ha_refusal *last = last_refusal(s);
	struct group *g;
	size_t n;

	if (group_refusals(log, s, &g, &n) != HA_OK)
		return HA_ERR_NOMEM;
	ha_json_key(j, "refused");
	ha_json_array(j, false);
	for (size_t i = 0; i < n; i++) {
		ha_json_object(j, false);
		ha_json_key(j, "site");
		ha_json_site(j, log, &log->sites[g[i].site]);
		ha_json_key(j, "reason");
		ha_json_string(j, reason_key(g[i].reason));
		ha_json_counter(j, "allocations", g[i].calls);
		ha_json_counter(j, "bytes", g[i].bytes);
		ha_json_end(j);
	}
	ha_json_end(j);
	free(g);
	/* the process died of a signal after an allocation was refused */
	ha_json_key(j, "killed_after_refusal");
	ha_json_bool(j, last && s->end == HA_END_SIGNAL);
	ha_json_key(j, "last_refused");
	if (!last) {
		ha_json_null(j);
		return HA_OK;
	}
	ha_json_object(j, false);
	ha_json_key(j, "function");
	ha_json_string(j, fn_name(last->fn));
	ha_json_counter(j, "size", last->size);
	ha_json_key(j, "reason");
	ha_json_string(j, reason_key(last->reason));
	ha_json_counter(j, "time_us", last->time);
	ha_json_key(j, "site");
	ha_json_site(j, log, &log->sites[log->stacks[last->stack].site]);
	ha_json_key(j, "stack");
	if (o->no_stacks) {
		ha_json_array(j, true);
		ha_json_end(j);
	} else if (ha_json_stack(j, log, last->stack) != HA_OK) {
		return HA_ERR_NOMEM;
	}
	ha_json_end(j);
	return HA_OK;
}
