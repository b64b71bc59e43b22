/*
 * analyzer/analysis.c - the library's entry points (analyzer.h): from a log
 * file to an analysis, its accessors, writing reports, and appending
 * SYMBOLS frames to a finished recording.
 *
 * The steps, each in the file named for it: read (log_reader.c), map
 * frames to locations (modules.c), symbolize (symbols_frame.c for what the
 * log holds, symbolize.c for the binaries), choose sites (sites.c), settle
 * who each process is (processes.c), replay (replay.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analyzer/analysis.h"
#include "analyzer/event_merge.h"
#include "analyzer/log_source.h"
#include "analyzer/symbolize.h"

const char *ha_result_name(enum ha_result result)
{
	switch (result) {
	case HA_OK:
		return "ok";
	case HA_ERR_IO:
		return "input/output error";
	case HA_ERR_NOT_LOG:
		return "not a halloc log";
	case HA_ERR_VERSION:
		return "unsupported log version";
	case HA_ERR_CORRUPT:
		return "corrupt log";
	case HA_ERR_NOMEM:
		return "out of memory";
	}
	return "unknown error";
}

void ha_analysis_free(struct ha_analysis *analysis)
{
	if (!analysis)
		return;
	for (size_t i = 0; i < analysis->nprocs; i++) {
		free(analysis->procs[i].leaks);
		free(analysis->procs[i].sites);
		free(analysis->procs[i].stack_leaks);
		free(analysis->procs[i].peak_sites);
		ha_timeline_free(&analysis->procs[i].timeline);
		ha_pages_free(&analysis->procs[i].pages);
		free(analysis->procs[i].suppressed);
		ha_types_result_free(&analysis->procs[i].types);
	}
	free(analysis->procs);
	ha_log_free(analysis->log);
	free(analysis);
}

static void set_completeness(struct ha_analysis *a)
{
	const struct ha_log *log = a->log;
	char *r = a->incomplete_reason;
	size_t n = sizeof(a->incomplete_reason);

	if (log->corrupt)
		snprintf(r, n, "%s", log->corrupt_reason);
	else if (log->truncated)
		snprintf(
		    r, n,
		    "the log ends inside a frame: recording was cut short");
	else if (!log->has_end)
		snprintf(r, n,
			 "the log has no end mark: recording was cut short");
	else if (log->events_lost)
		snprintf(
		    r, n,
		    "%llu events were lost: the recorder's buffer was full",
		    (unsigned long long)log->events_lost);
	else if ((log->end_flags & 1) || log->chunks_lost)
		snprintf(r, n, "events were lost (%llu buffers)",
			 (unsigned long long)log->chunks_lost);
	else
		r[0] = '\0';
	a->complete = r[0] == '\0';
}

/* Everything after reading; the log belongs to `a` already. `f` is the
 * log's file when its events are to be read again (skip_events). */
static enum ha_result build(struct ha_analysis *a, FILE *f,
			    const struct ha_analyze_options *options)
{
	struct ha_merge_plan plan = {0};
	struct ha_fetch *fetch = NULL;
	struct ha_log *log = a->log;
	size_t n;
	struct ha_process *ordered = NULL;
	uint32_t *order = NULL;
	enum ha_result res;

	set_completeness(a);
	res = ha_log_resolve(log);
	if (res == HA_OK && options && options->symbolize_from_files)
		res = ha_symbolize_from_files(log);
	if (res == HA_OK)
		res = ha_sites_assign(log);
	if (res == HA_OK)
		res = ha_processes_settle(log, &order);
	if (res != HA_OK)
		return res;
	/* Settling may add streams; from here on their number holds. The
	 * analysis owns the results as they are made, so it frees them. */
	n = log->nstreams;
	a->procs = calloc(n ? n : 1, sizeof(*a->procs));
	ordered = malloc((n ? n : 1) * sizeof(*ordered));
	if (!a->procs || !ordered) {
		free(ordered);
		free(order);
		return HA_ERR_NOMEM;
	}
	a->nprocs = n;
	res = ha_pages_analyze(log, a->procs); /* pages.c, rss.c */
	if (res == HA_OK && log->skip_events && !(fetch = ha_fetch_new(f, log)))
		res = HA_ERR_NOMEM;
	if (res == HA_OK)
		res = ha_merge_plan(log, fetch, &plan);
	if (res == HA_OK) {
		log->frozen = true; /* model.h */
		res = ha_replay(log, a->procs, &plan);
		log->frozen = false;
	}
	ha_merge_plan_free(&plan);
	ha_fetch_free(fetch);
	if (res == HA_OK)
		res = ha_rss_analyze(log, a->procs);
	if (res == HA_OK) {
		for (size_t i = 0; i < n; i++) {
			struct ha_process *p = &ordered[i];
			bool root = log->has_trace_info ? false : i == 0;

			*p = a->procs[order[i]];
			p->stream = order[i];
			ha_process_identity(log, order[i], root, &p->parent,
					    &p->argv, &p->argc);
		}
		free(a->procs);
		a->procs = ordered;
		ordered = NULL;
	}
	free(ordered);
	free(order);
	return res;
}

/* A regular file read from its start can be read again at any offset:
 * the replay then reads the events from it instead of holding them all
 * (event_merge.h). */
static bool can_read_again(FILE *f)
{
	struct stat st;

	return fileno(f) >= 0 && fstat(fileno(f), &st) == 0 &&
	       S_ISREG(st.st_mode) && ftello(f) == 0;
}

enum ha_result ha_analyze_stream(FILE *f, const char *name,
				 const struct ha_analyze_options *options,
				 struct ha_analysis **out, struct ha_diag *diag)
{
	struct ha_analysis *a;
	struct ha_log *log;
	enum ha_result read_res, res;

	*out = NULL;
	read_res = ha_log_read(f, name, can_read_again(f), &log, diag);
	if (!log)
		return read_res;
	a = calloc(1, sizeof(*a));
	if (!a) {
		ha_log_free(log);
		return ha_diag_set(diag, HA_ERR_NOMEM,
				   "out of memory analyzing '%s'", name);
	}
	a->log = log;
	res = build(a, f, options);
	if (res != HA_OK) {
		ha_analysis_free(a);
		return ha_diag_set(diag, res, "out of memory analyzing '%s'",
				   name);
	}
	*out = a;
	return read_res;
}

enum ha_result ha_analyze_file(const char *path,
			       const struct ha_analyze_options *options,
			       struct ha_analysis **out, struct ha_diag *diag)
{
	FILE *f = fopen(path, "rb");
	enum ha_result res;

	*out = NULL;
	if (!f)
		return ha_diag_set(diag, HA_ERR_IO, "cannot open '%s': %s",
				   path, strerror(errno));
	res = ha_analyze_stream(f, path, options, out, diag);
	fclose(f);
	return res;
}

/* ---- accessors --------------------------------------------------------------
 */

bool ha_analysis_complete(const struct ha_analysis *analysis)
{
	return analysis->complete;
}

bool ha_analysis_corrupt(const struct ha_analysis *analysis)
{
	return analysis->log->corrupt;
}

const char *ha_analysis_incomplete_reason(const struct ha_analysis *analysis)
{
	return analysis->incomplete_reason;
}

unsigned ha_analysis_process_count(const struct ha_analysis *analysis)
{
	return (unsigned)analysis->nprocs;
}

uint64_t ha_analysis_leaked_bytes(const struct ha_analysis *analysis)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < analysis->nprocs; i++)
		sum += analysis->procs[i].summary.leaked_bytes;
	return sum;
}

uint64_t ha_analysis_leaked_blocks(const struct ha_analysis *analysis)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < analysis->nprocs; i++)
		sum += analysis->procs[i].summary.leaked_blocks;
	return sum;
}

bool ha_analysis_process(const struct ha_analysis *analysis, unsigned index,
			 struct ha_process_info *out)
{
	const struct ha_process *p;
	const struct ha_stream *s;

	if (index >= analysis->nprocs)
		return false;
	p = &analysis->procs[index];
	s = &analysis->log->streams[p->stream];
	memset(out, 0, sizeof(*out));
	out->pid = s->pid;
	out->parent = p->parent;
	out->argv = p->argv;
	out->argc = p->argc;
	out->end = s->end;
	out->end_value = s->end_value;
	out->core_dumped = s->core_dumped;
	out->complete = analysis->complete;
	out->recorded = !s->synthetic;
	out->summary = p->summary;
	out->inherited = p->inherited;
	out->nleaks = (unsigned)p->nleaks;
	return true;
}

bool ha_analysis_leak(const struct ha_analysis *analysis, unsigned process,
		      unsigned index, struct ha_leak_info *out)
{
	const struct ha_leak *l;
	const struct ha_site *site;

	if (process >= analysis->nprocs ||
	    index >= analysis->procs[process].nleaks)
		return false;
	l = &analysis->procs[process].leaks[index];
	site = &analysis->log->sites[l->site];
	out->bytes = l->bytes;
	out->blocks = l->blocks;
	out->function = site->function;
	out->file = site->file;
	out->line = site->line;
	return true;
}

/* ---- reports ---------------------------------------------------------------
 */

enum ha_result ha_report_write(const struct ha_analysis *analysis,
			       const struct ha_report_options *options,
			       FILE *out, struct ha_diag *diag)
{
	static const struct ha_report_options defaults = {
	    .format = HA_FORMAT_TEXT};
	enum ha_result res;

	if (!options)
		options = &defaults;
	errno = 0;
	res = options->format == HA_FORMAT_JSON
		  ? ha_report_json(analysis, options, out)
		  : ha_report_text(analysis, options, out);
	if (res == HA_OK && (fflush(out) != 0 || ferror(out)))
		res = HA_ERR_IO;
	if (res == HA_ERR_IO)
		return ha_diag_set(diag, res, "cannot write the report: %s",
				   strerror(errno ? errno : EIO));
	if (res != HA_OK)
		return ha_diag_set(diag, res, "cannot write the report: %s",
				   ha_result_name(res));
	return HA_OK;
}

/* ---- symbols for a finished recording
 * ------------------------------------------ */

/* A compressed log gets its SYMBOLS frames as one zstd frame of their own:
 * built in memory (a memfd), then compressed and appended. */
static enum ha_result append_compressed_symbols(struct ha_log *log, int fd)
{
	int mem = memfd_create("halloc-symbols", MFD_CLOEXEC);
	enum ha_result res;
	struct stat st;
	void *data;

	if (mem < 0)
		return HA_ERR_IO;
	res = ha_symbols_write(log, mem);
	if (res == HA_OK && fstat(mem, &st) != 0)
		res = HA_ERR_IO;
	if (res == HA_OK && st.st_size > 0) {
		data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE,
			    mem, 0);
		if (data == MAP_FAILED) {
			res = HA_ERR_IO;
		} else {
			if (!ha_append_compressed(fd, data, (size_t)st.st_size))
				res = errno == ENOMEM ? HA_ERR_NOMEM
						      : HA_ERR_IO;
			munmap(data, (size_t)st.st_size);
		}
	}
	close(mem);
	return res;
}

enum ha_result ha_symbols_append_file(struct ha_log *log, const char *path,
				      struct ha_diag *diag)
{
	enum ha_result res;
	int fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);

	if (fd < 0)
		return ha_diag_set(diag, HA_ERR_IO, "cannot open '%s': %s",
				   path, strerror(errno));
	errno = 0;
	res = ha_fd_is_compressed(fd) ? append_compressed_symbols(log, fd)
				      : ha_symbols_write(log, fd);
	if (close(fd) != 0 && res == HA_OK)
		res = HA_ERR_IO;
	if (res == HA_ERR_IO)
		return ha_diag_set(diag, res, "cannot write to '%s': %s", path,
				   strerror(errno ? errno : EIO));
	if (res != HA_OK)
		return ha_diag_set(diag, res, "out of memory symbolizing '%s'",
				   path);
	return HA_OK;
}

enum ha_result ha_append_symbols(const char *path, struct ha_diag *diag)
{
	FILE *f = fopen(path, "rb");
	struct ha_log *log;
	enum ha_result read_res, res;

	if (!f)
		return ha_diag_set(diag, HA_ERR_IO, "cannot open '%s': %s",
				   path, strerror(errno));
	/* No replay follows: keep no decompressed frames for one. */
	read_res = ha_log_read_keeping(f, path, true, 0, &log, diag);
	fclose(f);
	if (!log)
		return read_res;
	res = ha_log_resolve(log);
	if (res == HA_OK)
		res = ha_symbolize_from_files(log);
	if (res != HA_OK) {
		ha_log_free(log);
		return ha_diag_set(diag, res, "out of memory symbolizing '%s'",
				   path);
	}
	/* A zstd frame appended after a cut-short one could not be read. */
	if (log->truncated && log->compressed) {
		ha_log_free(log);
		return ha_diag_set(diag, HA_ERR_CORRUPT,
				   "cannot add symbols to '%s': the compressed "
				   "log is cut short",
				   path);
	}
	/* Frames appended after a partial one could not be read back. */
	if (log->truncated && truncate(path, (off_t)log->valid_end) != 0) {
		res = ha_diag_set(diag, HA_ERR_IO, "cannot truncate '%s': %s",
				  path, strerror(errno));
		ha_log_free(log);
		return res;
	}
	res = ha_symbols_append_file(log, path, diag);
	ha_log_free(log);
	return res != HA_OK ? res : read_res;
}
