/*
 * analyzer/report_text.c - the report a developer reads: per process, how
 * it ended, its totals, then its leaks by site, largest first, each with
 * the line that allocated it and the stack that led there.
 *
 *   halloc: process 1234 (./leaky 3) exited with status 0
 *     allocations:     3
 *     ...
 *
 *   LEAK 1: 4,096 bytes in 2 blocks at main (leaky.c:12)
 *     #0 main /src/leaky.c:12 (/src/leaky)
 *     #1 __libc_start_call_main ... (/usr/lib/x86_64-linux-gnu/libc.so.6)
 */
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "analyzer/analysis.h"
#include "analyzer/refusals.h"
#include "analyzer/report_pages.h"
#include "analyzer/report_text.h"
#include "halloc/log.h"


static const struct ha_text_style plain = {"", "", "", "", ""};
static const struct ha_text_style ansi = {"\033[1m", "\033[1;31m", "\033[1;36m",
				  "\033[2m", "\033[0m"};

/* 1234567 -> "1,234,567" */
const char *ha_text_count(char buf[32], uint64_t v)
{
	char digits[24];
	int n = snprintf(digits, sizeof(digits), "%" PRIu64, v), o = 0;

	for (int i = 0; i < n; i++) {
		if (i > 0 && (n - i) % 3 == 0)
			buf[o++] = ',';
		buf[o++] = digits[i];
	}
	buf[o] = '\0';
	return buf;
}

const char *ha_text_plural(uint64_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

/* Bytes in the largest binary unit that keeps the number under 1024, to
 * three significant digits: "413 B", "4.88 KiB", "97.7 KiB", "512 MiB". */
const char *ha_text_bytes(char buf[32], uint64_t bytes)
{
	static const char *const units[] = {"KiB", "MiB", "GiB",
					    "TiB", "PiB", "EiB"};
	double v = (double)bytes;
	unsigned u = 0;

	if (bytes < 1024) {
		snprintf(buf, 32, "%" PRIu64 " B", bytes);
		return buf;
	}
	v /= 1024;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	/* 9.996 would print as "10.00": pick the precision after rounding */
	if (v < 9.995)
		snprintf(buf, 32, "%.2f %s", v, units[u]);
	else if (v < 99.95)
		snprintf(buf, 32, "%.1f %s", v, units[u]);
	else
		snprintf(buf, 32, "%.0f %s", v, units[u]);
	return buf;
}

/* ha_text_bytes, and the exact count from 1 KiB up, for totals a reader
 * compares with other tools: "413 B", "4.88 KiB (5,000 bytes)". */
const char *ha_text_size(char buf[64], uint64_t bytes)
{
	char human[32], exact[32];

	if (bytes < 1024)
		return ha_text_bytes(buf, bytes);
	snprintf(buf, 64, "%s (%s bytes)", ha_text_bytes(human, bytes),
		 ha_text_count(exact, bytes));
	return buf;
}

/* Microseconds as people read them: "850 us", "12.3 ms", "4.56 s". */
const char *ha_text_duration(char buf[32], uint64_t us)
{
	if (us < 1000)
		snprintf(buf, 32, "%" PRIu64 " us", us);
	else if (us < 1000000)
		snprintf(buf, 32, "%.1f ms", (double)us / 1e3);
	else
		snprintf(buf, 32, "%.2f s", (double)us / 1e6);
	return buf;
}

/* An argument as a shell would need it, control characters escaped so the
 * header stays one line. */
static void print_arg(FILE *out, const char *arg)
{
	bool plain_word = *arg != '\0';

	for (const char *p = arg; *p; p++)
		if (!strchr(
			"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			"0123456789_./=:,+@%-",
			*p))
			plain_word = false;
	if (plain_word) {
		fputs(arg, out);
		return;
	}
	fputc('\'', out);
	for (const unsigned char *p = (const unsigned char *)arg; *p; p++) {
		if (*p == '\'')
			fputs("'\\''", out);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(out, "\\x%02x", *p);
		else
			fputc(*p, out);
	}
	fputc('\'', out);
}

static void print_ending(FILE *out, const struct ha_stream *s)
{
	const char *name;

	switch (s->end) {
	case HA_END_EXIT:
		fprintf(out, "exited with status %" PRIu64, s->end_value);
		break;
	case HA_END_SIGNAL:
		name = s->end_value < 1000 ? sigabbrev_np((int)s->end_value)
					   : NULL;
		if (name)
			fprintf(out, "was killed by SIG%s (signal %" PRIu64 ")",
				name, s->end_value);
		else
			fprintf(out, "was killed by signal %" PRIu64,
				s->end_value);
		if (s->core_dumped)
			fputs(", core dumped", out);
		break;
	case HA_END_EXEC:
		fputs("was replaced by exec", out);
		break;
	case HA_END_DETACHED:
		fputs("was still running when recording stopped", out);
		break;
	default:
		fputs("ended; how was not recorded", out);
		break;
	}
}

void ha_text_ending(FILE *out, const struct ha_stream *s)
{
	print_ending(out, s);
}

/* "  recorded by eBPF uprobes (attached), DWARF stacks": an eBPF log's
 * leaks and stacks read differently from the agent's, so say how it was
 * recorded. The agent's logs need no such line. */
static void print_recorder(FILE *out, const struct ha_log *log)
{
	uint64_t f = log->trace_flags;
	const char *how = "";

	if (!log->has_trace_info || log->recorder != HALLOC_RECORDER_BPF)
		return;
	if ((f & HALLOC_TRACE_ATTACHED) && (f & HALLOC_TRACE_AGGREGATE))
		how = " (attached, aggregated)";
	else if (f & HALLOC_TRACE_ATTACHED)
		how = " (attached)";
	else if (f & HALLOC_TRACE_AGGREGATE)
		how = " (aggregated)";
	fprintf(out, "  recorded by eBPF uprobes%s", how);
	if (f & HALLOC_TRACE_STACK_DWARF)
		fputs(", DWARF stacks", out);
	else if (f & HALLOC_TRACE_STACK_FP)
		fputs(", frame-pointer stacks", out);
	fputc('\n', out);
}

/* --sample: every count and size below is an estimate; say so first. */
static void print_sampled(FILE *out, const struct ha_log *log)
{
	char buf[32];

	if (!log->sample_interval)
		return;
	fprintf(out,
		"  sampled: one allocation per %s on average; counts and "
		"sizes are estimates\n",
		ha_text_bytes(buf, log->sample_interval));
}

static void print_header(FILE *out, const struct ha_analysis *a,
			 const struct ha_process *p, const struct ha_text_style *st)
{
	const struct ha_stream *s = &a->log->streams[p->stream];

	fprintf(out, "%shalloc: process %" PRIu32 " (", st->head, s->pid);
	if (p->argc == 0)
		fputs("command unknown", out);
	for (uint32_t i = 0; i < p->argc; i++) {
		if (i)
			fputc(' ', out);
		print_arg(out, p->argv[i]);
	}
	fputs(") ", out);
	print_ending(out, s);
	if (!a->complete)
		fprintf(out, "; incomplete: %s", a->incomplete_reason);
	fprintf(out, "%s\n", st->reset);
	if (s->synthetic)
		fputs("  no events were recorded: halloc's agent was not "
		      "loaded in it "
		      "(a static binary?)\n",
		      out);
	print_recorder(out, a->log);
	print_sampled(out, a->log);
}

static void print_summary(FILE *out, const struct ha_analysis *a,
			  const struct ha_process *p)
{
	const struct ha_summary *m = &p->summary;
	uint64_t flags = a->log->trace_flags;
	bool exec = a->log->streams[p->stream].end == HA_END_EXEC;
	char n1[32], n2[32], s1[64], t1[32];

	fprintf(out, "  allocations:     %s", ha_text_count(n1, m->allocations));
	if (p->inherited.allocations)
		fprintf(out, " (%s made by the parent before the fork)",
			ha_text_count(n2, p->inherited.allocations));
	fprintf(out, "\n  frees:           %s", ha_text_count(n1, m->frees));
	if (m->unmatched_frees && (flags & HALLOC_TRACE_ATTACHED))
		fprintf(out,
			" (and %s of blocks allocated before recording began)",
			ha_text_count(n2, m->unmatched_frees));
	else if (m->unmatched_frees)
		fprintf(
		    out,
		    " (%s of addresses not allocated: invalid or double frees)",
		    ha_text_count(n2, m->unmatched_frees));
	fputc('\n', out);
	if (m->failed_allocations)
		fprintf(
		    out, "  failed:          %s %s returned NULL\n",
		    ha_text_count(n1, m->failed_allocations),
		    ha_text_plural(m->failed_allocations, "allocation", "allocations"));
	fprintf(out, "  bytes allocated: %s\n", ha_text_size(s1, m->bytes_allocated));
	if (flags & HALLOC_TRACE_AGGREGATE)
		fputs(
		    "  peak heap:       not known: recorded with --aggregate\n",
		    out);
	else
		fprintf(out, "  peak heap:       %s in %s %s\n",
			ha_text_size(s1, m->peak_bytes), ha_text_count(n1, m->peak_blocks),
			ha_text_plural(m->peak_blocks, "block", "blocks"));
	if (m->allocations && !(flags & HALLOC_TRACE_AGGREGATE))
		fprintf(out,
			"  temporary:       %s %s freed before the next "
			"allocation (%.1f%%)\n",
			ha_text_count(n1, m->temporary),
			ha_text_plural(m->temporary, "allocation", "allocations"),
			100.0 * (double)m->temporary / (double)m->allocations);
	if (!(flags & HALLOC_TRACE_AGGREGATE) && m->peak_bytes)
		fprintf(out, "  peak reached:    %s after start\n",
			ha_text_duration(t1, m->peak_time_us));
	if (m->duration_us)
		fprintf(out,
			"  allocation rate: %s allocations/s over %s\n",
			ha_text_count(n1, ha_rate_per_second(m->allocations,
						     m->duration_us)),
			ha_text_duration(t1, m->duration_us));
	if (exec)
		fprintf(out,
			"  leaked:          nothing, exec released it all "
			"(%s in %s %s were in use)\n",
			ha_text_size(s1, m->end_bytes), ha_text_count(n1, m->end_blocks),
			ha_text_plural(m->end_blocks, "block", "blocks"));
	else
		fprintf(out, "  leaked:          %s in %s %s\n",
			ha_text_size(s1, m->leaked_bytes), ha_text_count(n1, m->leaked_blocks),
			ha_text_plural(m->leaked_blocks, "block", "blocks"));
	if (m->suppressed_blocks)
		fprintf(out, "  suppressed:      %s in %s %s of those\n",
			ha_text_size(s1, m->suppressed_bytes),
			ha_text_count(n1, m->suppressed_blocks),
			ha_text_plural(m->suppressed_blocks, "block", "blocks"));
}

/* Which suppression entries took which leaks, in file order. */
static void print_suppressed(FILE *out, const struct ha_analysis *a,
			     const struct ha_process *p,
			     const struct ha_text_style *st)
{
	char s1[64], n1[32];

	for (size_t i = 0; i < p->nsuppressed; i++) {
		const struct ha_suppressed *u = &p->suppressed[i];
		const struct ha_suppression_entry *e =
		    ha_suppressions_entry(a->suppressions, u->entry);

		fprintf(out, "%s%sSUPPRESSED:%s %s in %s %s by %s (line %u)\n",
			i ? "" : "\n", st->dim, st->reset, ha_text_size(s1, u->bytes),
			ha_text_count(n1, u->blocks),
			ha_text_plural(u->blocks, "block", "blocks"),
			e ? e->pattern : "?", e ? e->line : 0);
	}
}

/* "main (leaky.c:12)", "foo (libfoo.so)", "??? (libfoo.so+0x1a2b)" */
void ha_text_site(FILE *out, const struct ha_log *log,
		       const struct ha_site *site)
{
	const char *module = log->modfiles[site->modfile].path;

	fputs(*site->function ? site->function : "???", out);
	if (*site->file && site->line)
		fprintf(out, " (%s:%" PRIu32 ")", ha_basename(site->file),
			site->line);
	else if (*site->file)
		fprintf(out, " (%s)", ha_basename(site->file));
	else if (site->loc != HA_NONE && *module)
		fprintf(out, " (%s+0x%" PRIx64 ")", ha_basename(module),
			log->locs[site->loc].offset);
	else if (*module)
		fprintf(out, " (%s)", ha_basename(module));
	else if (site->loc == HA_NONE && !*site->function)
		fputs(" (no stack recorded)", out);
}

/* A frame's line without colour, to measure it: "  #0 main x.c:12 (m)". */
static int frame_length(unsigned i, const struct ha_frame *f,
			const char *file, const char *module)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "  #%u ", i);

	n += (int)strlen(*f->function ? f->function : "???");
	if (*file)
		n += 1 + (int)strlen(file) +
		     (f->line ? snprintf(buf, sizeof(buf), ":%" PRIu32, f->line)
			      : 0);
	if (*module && !*file && !*f->function)
		n += snprintf(buf, sizeof(buf), " (+0x%" PRIx64 ")", f->offset);
	return n + (*module ? 3 + (int)strlen(module) : 20);
}

/* Shortest a function name is cut to, and what stands for the cut. */
#define FUNCTION_KEPT 24
#define FUNCTION_CUT  "..."

/* A function name `over` characters shorter when it is long enough (C++
 * templates): its start and its end, which name the class and the
 * function, around "...". */
static void print_function(FILE *out, const char *function, int over)
{
	int len = (int)strlen(function), keep, head;

	if (!*function) {
		fputs("???", out);
		return;
	}
	keep = len - over - (int)strlen(FUNCTION_CUT);
	if (over <= 0 || keep < FUNCTION_KEPT) {
		if (over > 0 && len > FUNCTION_KEPT + (int)strlen(FUNCTION_CUT))
			keep = FUNCTION_KEPT;
		else {
			fputs(function, out);
			return;
		}
	}
	head = keep / 2;
	fprintf(out, "%.*s%s%s", head, function, FUNCTION_CUT,
		function + len - (keep - head));
}

/* With a width, a line that would not fit names the module, then the
 * file, by basename, then cuts the middle of a long function name: the
 * function and line are what a reader needs. */
static void print_frame(FILE *out, unsigned i, const struct ha_frame *f,
			const struct ha_report_options *o,
			const struct ha_text_style *st)
{
	const char *file = f->file, *module = f->module;

	if (o->width && frame_length(i, f, file, module) > (int)o->width)
		module = ha_basename(module);
	if (o->width && frame_length(i, f, file, module) > (int)o->width)
		file = ha_basename(file);
	fprintf(out, "  #%u ", i);
	print_function(out, f->function,
		       o->width ? frame_length(i, f, file, module) -
				      (int)o->width
				: 0);
	if (*file) {
		fprintf(out, " %s%s", st->place, file);
		if (f->line)
			fprintf(out, ":%" PRIu32, f->line);
		fputs(st->reset, out);
	}
	if (*module && !*file && !*f->function)
		fprintf(out, " %s(%s+0x%" PRIx64 ")%s\n", st->dim, module,
			f->offset, st->reset);
	else if (*module)
		fprintf(out, " %s(%s)%s\n", st->dim, module, st->reset);
	else
		fprintf(out, " %s(0x%" PRIx64 ")%s\n", st->dim, f->address,
			st->reset);
}

void ha_text_frame(FILE *out, unsigned i, const struct ha_frame *f,
		   const struct ha_report_options *o,
		   const struct ha_text_style *st)
{
	print_frame(out, i, f, o, st);
}

static enum ha_result print_leak(FILE *out, const struct ha_log *log,
				 const struct ha_process *p, unsigned n,
				 const struct ha_leak *leak,
				 const struct ha_report_options *o,
				 const struct ha_text_style *st)
{
	struct ha_frame *frames;
	long nframes = ha_stack_frames(log, leak->stack, &frames);
	unsigned shown;
	char b[64], c[32], t1[32], t2[32];

	if (nframes < 0)
		return HA_ERR_NOMEM;
	fprintf(out, "\n%sLEAK %u:%s %s in %s %s at %s", st->leak, n,
		st->reset, ha_text_size(b, leak->bytes),
		ha_text_count(c, leak->blocks),
		ha_text_plural(leak->blocks, "block", "blocks"), st->head);
	ha_text_site(out, log, &log->sites[leak->site]);
	fprintf(out, "%s\n", st->reset);
	shown = (unsigned)nframes;
	if (o->stack_frames && o->stack_frames < shown)
		shown = o->stack_frames;
	if (o->no_stacks)
		nframes = shown = 0;
	for (unsigned i = 0; i < shown; i++)
		print_frame(out, i, &frames[i], o, st);
	if (shown < (unsigned)nframes)
		fprintf(out, "  ... %u more %s\n", (unsigned)nframes - shown,
			ha_text_plural((unsigned)nframes - shown, "frame", "frames"));
	if (leak->blocks == 1)
		fprintf(out, "  %sage at exit: %s%s\n", st->dim,
			ha_text_duration(t1, ha_age_at_end(p, leak->first_time)),
			st->reset);
	else
		fprintf(out, "  %sage at exit: %s (oldest) to %s (youngest)%s\n",
			st->dim,
			ha_text_duration(t1, ha_age_at_end(p, leak->first_time)),
			ha_text_duration(t2, ha_age_at_end(p, leak->last_time)),
			st->reset);
	free(frames);
	return HA_OK;
}

static enum ha_result print_leaks(FILE *out, const struct ha_analysis *a,
				  const struct ha_process *p,
				  const struct ha_report_options *o,
				  const struct ha_text_style *st)
{
	struct ha_omitted omitted;
	uint32_t *idx;
	size_t n;
	char s1[64], n1[32], n2[32];

	if (ha_select_leaks(a, p, o, &idx, &n, &omitted) != HA_OK)
		return HA_ERR_NOMEM;
	for (size_t k = 0; k < n; k++) {
		enum ha_result res = print_leak(out, a->log, p, (unsigned)k + 1,
						&p->leaks[idx[k]], o, st);

		if (res != HA_OK) {
			free(idx);
			return res;
		}
	}
	free(idx);
	if (omitted.leaks)
		fprintf(out,
			"\n... %s more %s not shown (%s in %s %s): see --top "
			"and --min-bytes\n",
			ha_text_count(n1, omitted.leaks),
			ha_text_plural(omitted.leaks, "leak", "leaks"),
			ha_text_bytes(s1, omitted.bytes), ha_text_count(n2, omitted.blocks),
			ha_text_plural(omitted.blocks, "block", "blocks"));
	return HA_OK;
}

enum ha_result ha_report_text(const struct ha_analysis *a,
			      const struct ha_report_options *o, FILE *out)
{
	const struct ha_text_style *st = o->color ? &ansi : &plain;
	uint64_t leaked = 0, blocks = 0;
	size_t shown = 0;
	char s1[64], n1[32];

	if (a->nprocs == 0) {
		fprintf(
		    out, "halloc: no process was recorded%s%s\n",
		    a->complete ? "" : "; incomplete: ", a->incomplete_reason);
		return HA_OK;
	}
	for (size_t i = 0; i < a->nprocs; i++) {
		const struct ha_process *p = &a->procs[i];
		enum ha_result res;

		if (!ha_report_shows(a, p, o))
			continue;
		if (shown++)
			fputc('\n', out);
		print_header(out, a, p, st);
		print_summary(out, a, p);
		ha_text_peak_rss(out, p);
		ha_text_sparkline(out, a->log, p, o);
		ha_text_rss_sparkline(out, p, o);
		if ((res = ha_text_refused(out, a->log, p, o, st)) != HA_OK)
			return res;
		ha_text_peak_sites(out, a->log, p, o, st);
		ha_text_page_items(out, a->log, p, o, st);
		if ((res = ha_text_temporary(out, a->log, p, o, st)) != HA_OK)
			return res;
		ha_text_types(out, p, st);
		if ((o->sort != HA_SORT_DEFAULT || o->top) &&
		    (res = ha_text_sites(out, a->log, p, o, st)) != HA_OK)
			return res;
		res = print_leaks(out, a, p, o, st);
		if (res != HA_OK)
			return res;
		if (p->nleaks == 0 &&
		    a->log->streams[p->stream].end != HA_END_EXEC)
			fputs(p->nsuppressed ? "\nNo leaks but suppressed "
					       "ones.\n"
					     : "\nNo leaks.\n",
			      out);
		print_suppressed(out, a, p, st);
		leaked += p->summary.leaked_bytes;
		blocks += p->summary.leaked_blocks;
	}
	if (shown > 1)
		fprintf(
		    out, "\n%shalloc: %zu processes, %s leaked in %s %s%s\n",
		    st->head, shown, ha_text_size(s1, leaked), ha_text_count(n1, blocks),
		    ha_text_plural(blocks, "block", "blocks"), st->reset);
	if (a->log->stacks_truncated)
		fprintf(
		    out,
		    "\nhalloc: %s %s cut short while unwinding: their outer "
		    "frames are missing\n",
		    ha_text_count(n1, a->log->stacks_truncated),
		    ha_text_plural(a->log->stacks_truncated, "stack was",
			   "stacks were"));
	return HA_OK;
}
