/*
 * analyzer/suppressions.c - LeakSanitizer-style suppressions: a file of
 * `leak:PATTERN` lines (blank lines and `#` comments allowed), and taking
 * the leaks they match out of an analysis.
 *
 * A PATTERN matches a string as LeakSanitizer's do: as a substring, `*`
 * standing for any run of characters, a leading `^` anchoring it at the
 * start and a trailing `$` at the end. A leak (the blocks of one stack) is
 * suppressed when the pattern matches the function, the source file or the
 * module of any frame of its stack; the first entry of the file that
 * matches takes it. Suppressed leaks stay in the summary's leaked numbers
 * (they are Valgrind's) and are counted apart, per process and per entry.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "analyzer/analysis.h"

struct ha_suppressions {
	struct ha_suppression_entry *entries;
	size_t n;
};

void ha_suppressions_free(struct ha_suppressions *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free(s->entries[i].pattern);
		free(s->entries[i].glob);
	}
	free(s->entries);
	free(s);
}

size_t ha_suppressions_count(const struct ha_suppressions *s)
{
	return s ? s->n : 0;
}

const struct ha_suppression_entry *
ha_suppressions_entry(const struct ha_suppressions *s, size_t index)
{
	return s && index < s->n ? &s->entries[index] : NULL;
}

static char *to_glob(const char *pattern);

/* One line without its newline; returns false on a syntax error. */
static bool parse_line(struct ha_suppressions *s, char *line, unsigned lineno,
		       bool *nomem)
{
	char *end, *pattern, *glob_;
	struct ha_suppression_entry *grown;

	while (isspace((unsigned char)*line))
		line++;
	end = line + strlen(line);
	while (end > line && isspace((unsigned char)end[-1]))
		*--end = '\0';
	if (!*line || *line == '#')
		return true;
	if (strncmp(line, "leak:", 5) != 0 || !line[5])
		return false;
	pattern = strdup(line);
	glob_ = to_glob(line + 5);
	grown = realloc(s->entries, (s->n + 1) * sizeof(*s->entries));
	if (!pattern || !glob_ || !grown) {
		free(pattern);
		free(glob_);
		if (grown)
			s->entries = grown;
		*nomem = true;
		return true;
	}
	s->entries = grown;
	s->entries[s->n++] =
	    (struct ha_suppression_entry){pattern, lineno, glob_};
	return true;
}

enum ha_result ha_suppressions_load(const char *path,
				    struct ha_suppressions **out,
				    struct ha_diag *diag)
{
	struct ha_suppressions *s;
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	bool nomem = false;
	enum ha_result res = HA_OK;

	*out = NULL;
	f = fopen(path, "r");
	if (!f)
		return ha_diag_set(diag, HA_ERR_IO, "cannot open '%s': %s",
				   path, strerror(errno));
	s = calloc(1, sizeof(*s));
	if (!s) {
		fclose(f);
		return ha_diag_set(diag, HA_ERR_NOMEM,
				   "out of memory reading '%s'", path);
	}
	errno = 0;
	while (getline(&line, &cap, f) >= 0 && !nomem) {
		lineno++;
		line[strcspn(line, "\n")] = '\0';
		if (!parse_line(s, line, lineno, &nomem)) {
			res = ha_diag_set(diag, HA_ERR_CORRUPT,
					  "'%s' line %u: expected "
					  "'leak:PATTERN', a '#' comment or "
					  "a blank line",
					  path, lineno);
			break;
		}
	}
	if (res == HA_OK && ferror(f))
		res = ha_diag_set(diag, HA_ERR_IO, "cannot read '%s': %s", path,
				  strerror(errno ? errno : EIO));
	if (res == HA_OK && nomem)
		res = ha_diag_set(diag, HA_ERR_NOMEM,
				  "out of memory reading '%s'", path);
	free(line);
	fclose(f);
	if (res != HA_OK) {
		ha_suppressions_free(s);
		return res;
	}
	*out = s;
	return HA_OK;
}

/* `*` matches any run of characters, everything else itself, over all
 * of s (iterative: backtracks to the last star only). */
static bool glob(const char *p, const char *s)
{
	const char *star = NULL, *resume = NULL;

	while (*s) {
		if (*p == '*') {
			star = ++p;
			resume = s;
		} else if (*p && *p == *s) {
			p++;
			s++;
		} else if (star) {
			p = star;
			s = ++resume;
		} else {
			return false;
		}
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

/* LeakSanitizer's template as a whole-string glob: a substring unless
 * `^` anchors the start or `$` the end. Malloc'ed. */
static char *to_glob(const char *pattern)
{
	size_t len = strlen(pattern);
	bool start = pattern[0] == '^', end;
	char *g, *o;

	pattern += start;
	len -= start;
	end = len && pattern[len - 1] == '$';
	len -= end;
	g = malloc(len + 3);
	if (!g)
		return NULL;
	o = g;
	if (!start)
		*o++ = '*';
	memcpy(o, pattern, len);
	o += len;
	if (!end)
		*o++ = '*';
	*o = '\0';
	return g;
}

bool ha_suppression_match(const char *pattern, const char *s)
{
	char *g = to_glob(pattern);
	bool ok = g && *s && glob(g, s);

	free(g);
	return ok;
}

/* The entry that suppresses this stack, or -1. */
static long match_stack(const struct ha_suppressions *s,
			const struct ha_frame *frames, long nframes)
{
	for (size_t e = 0; e < s->n; e++) {
		const char *g = s->entries[e].glob;

		for (long i = 0; i < nframes; i++) {
			const struct ha_frame *f = &frames[i];

			if ((*f->function && glob(g, f->function)) ||
			    (*f->file && glob(g, f->file)) ||
			    (*f->module && glob(g, f->module)))
				return (long)e;
		}
	}
	return -1;
}

/* Adds an unsuppressed stack's blocks to its site's leak, keeping as the
 * stack shown the one with the most bytes (the lower id on a tie), as
 * replay.c picks it. */
static void add_to_site(struct ha_process *p, const struct ha_leak *sl)
{
	size_t k;

	for (k = 0; k < p->nleaks && p->leaks[k].site != sl->site; k++)
		;
	if (k == p->nleaks)
		p->leaks[p->nleaks++] =
		    (struct ha_leak){0, 0, sl->site, HA_NONE, UINT64_MAX, 0};
	if (sl->first_time < p->leaks[k].first_time)
		p->leaks[k].first_time = sl->first_time;
	if (sl->last_time > p->leaks[k].last_time)
		p->leaks[k].last_time = sl->last_time;
	p->leaks[k].bytes += sl->bytes;
	p->leaks[k].blocks += sl->blocks;
	if (p->leaks[k].stack == HA_NONE)
		p->leaks[k].stack = sl->stack;
	else {
		const struct ha_leak *best = NULL;

		for (size_t i = 0; i < p->nstack_leaks; i++)
			if (p->stack_leaks[i].stack == p->leaks[k].stack)
				best = &p->stack_leaks[i];
		if (best &&
		    (sl->bytes > best->bytes ||
		     (sl->bytes == best->bytes && sl->stack < best->stack)))
			p->leaks[k].stack = sl->stack;
	}
}

static enum ha_result suppress_process(const struct ha_log *log,
				       const struct ha_suppressions *s,
				       struct ha_process *p)
{
	long *entry_of =
	    calloc(p->nstack_leaks ? p->nstack_leaks : 1, sizeof(*entry_of));
	size_t *slot = calloc(s->n ? s->n : 1, sizeof(*slot));

	if (!entry_of || !slot) {
		free(entry_of);
		free(slot);
		return HA_ERR_NOMEM;
	}
	for (size_t i = 0; i < p->nstack_leaks; i++) {
		struct ha_frame *frames;
		long n = ha_stack_frames(log, p->stack_leaks[i].stack, &frames);

		if (n < 0) {
			free(entry_of);
			free(slot);
			return HA_ERR_NOMEM;
		}
		entry_of[i] = match_stack(s, frames, n);
		free(frames);
	}
	free(p->suppressed);
	p->suppressed = calloc(s->n ? s->n : 1, sizeof(*p->suppressed));
	if (!p->suppressed) {
		free(entry_of);
		free(slot);
		return HA_ERR_NOMEM;
	}
	p->nsuppressed = 0;
	p->summary.suppressed_bytes = p->summary.suppressed_blocks = 0;
	p->nleaks = 0; /* rebuilt from the stacks no entry took */
	for (size_t i = 0; i < p->nstack_leaks; i++) {
		const struct ha_leak *sl = &p->stack_leaks[i];

		if (entry_of[i] < 0) {
			add_to_site(p, sl);
			continue;
		}
		p->summary.suppressed_bytes += sl->bytes;
		p->summary.suppressed_blocks += sl->blocks;
		slot[entry_of[i]]++;
	}
	/* entries in file order, those that took something */
	for (size_t e = 0; e < s->n; e++) {
		if (!slot[e])
			continue;
		slot[e] = p->nsuppressed;
		p->suppressed[p->nsuppressed++] =
		    (struct ha_suppressed){(uint32_t)e, 0, 0, 0};
	}
	for (size_t i = 0; i < p->nstack_leaks; i++) {
		struct ha_suppressed *u;

		if (entry_of[i] < 0)
			continue;
		u = &p->suppressed[slot[entry_of[i]]];
		u->stacks++;
		u->bytes += p->stack_leaks[i].bytes;
		u->blocks += p->stack_leaks[i].blocks;
	}
	qsort(p->leaks, p->nleaks, sizeof(*p->leaks), ha_leak_compare);
	free(entry_of);
	free(slot);
	return HA_OK;
}

enum ha_result ha_analysis_suppress(struct ha_analysis *analysis,
				    const struct ha_suppressions *s)
{
	analysis->suppressions = s;
	for (size_t i = 0; i < analysis->nprocs; i++) {
		enum ha_result res =
		    suppress_process(analysis->log, s, &analysis->procs[i]);

		if (res != HA_OK)
			return res;
	}
	return HA_OK;
}
