/*
 * tracer/faults.c - fault injection asked for on the command line, turned
 * into HALLOC_AGENT keys for the agent (agent/faults.c reads them).
 *
 * --fail-at FILE:LINE is resolved here, before the program runs, from the
 * program's line table (libdw; separate debug info is found as the
 * analyzer finds it): every row of that line starts a range of code that
 * runs to the next row's address. The agent gets those ranges as
 * link-time addresses of the main program and adds its load bias. Rows of
 * inlined code carry the inlined function's own line, which is also the
 * site the analyzer shows for them, so the two agree. The program's code
 * from system headers (C++ templates: std::vector's growth, ...) goes too,
 * for the agent to walk past, as the analyzer never makes it a site; such
 * code inlined into the line's own function is not told apart.
 * The libraries the program links are searched the same way (needed.c);
 * their ranges go to the agent under a key naming the library.
 */
#include "tracer/faults.h"

#include "agent/transport.h"
#include "analyzer/debuginfo.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What agent/faults.c keeps: the lines' ranges (more is an error), and
 * the system header code it passes over (more: none is sent). */
#define MAX_RANGES	64
#define MAX_SKIP_RANGES 1024
/* Ranges this close are one: the gap is padding, never a return address. */
#define PADDING 16

struct range {
	uint64_t lo, hi;
};

struct ranges {
	struct range *r;
	size_t n, cap;
	bool nomem;
};

/* "x.c" names /src/x.c; "src/x.c" too; "/src/x.c" only itself. */
static bool same_file(const char *path, const char *want)
{
	size_t lp, lw = strlen(want);

	if (!path)
		return false;
	lp = strlen(path);
	if (lp < lw || strcmp(path + lp - lw, want))
		return false;
	return lp == lw || path[lp - lw - 1] == '/';
}

static void add_range(struct ranges *rs, uint64_t lo, uint64_t hi)
{
	struct range *r;

	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? 2 * rs->cap : 64;

		r = realloc(rs->r, cap * sizeof(*r));
		if (!r) {
			rs->nomem = true;
			return;
		}
		rs->r = r;
		rs->cap = cap;
	}
	rs->r[rs->n].lo = lo;
	rs->r[rs->n].hi = hi;
	rs->n++;
}

static int range_compare(const void *pa, const void *pb)
{
	const struct range *a = pa, *b = pb;

	return a->lo < b->lo ? -1 : a->lo > b->lo;
}

/* Sorted, and ranges that overlap or lie within `gap` bytes merged. */
static void merge_ranges(struct ranges *rs, uint64_t gap)
{
	size_t out = 0;

	qsort(rs->r, rs->n, sizeof(*rs->r), range_compare);
	for (size_t i = 0; i < rs->n; i++) {
		if (out && rs->r[i].lo <= rs->r[out - 1].hi + gap) {
			if (rs->r[i].hi > rs->r[out - 1].hi)
				rs->r[out - 1].hi = rs->r[i].hi;
			continue;
		}
		rs->r[out++] = rs->r[i];
	}
	rs->n = out;
}

static bool system_header(const char *path)
{
	return path && !strncmp(path, "/usr/include/", 13);
}

/*
 * The rows of one CU's line table that are FILE:LINE go to `at`; those of
 * code from system headers (/usr/include/: C++ templates the program
 * instantiated) to `skip`: the analyzer never takes them for a site, so
 * the agent walks past them. Returns whether FILE is in the table.
 */
static bool scan_cu(Dwarf_Die *cu, const char *file, unsigned line,
		    struct ranges *at, struct ranges *skip)
{
	Dwarf_Lines *lines;
	size_t n;
	bool file_seen = false;

	if (dwarf_getsrclines(cu, &lines, &n) != 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		Dwarf_Line *row = dwarf_onesrcline(lines, i), *next;
		const char *src = dwarf_linesrc(row, NULL, NULL);
		bool match = same_file(src, file), end;
		Dwarf_Addr lo, hi;
		int no;

		file_seen |= match;
		if (dwarf_lineendsequence(row, &end) || end ||
		    dwarf_lineaddr(row, &lo))
			continue;
		if (match)
			match = !dwarf_lineno(row, &no) && (unsigned)no == line;
		if (!match && !system_header(src))
			continue;
		/* Rows are sorted by address within a sequence: the code of
		 * this row runs to the next row with a higher address. */
		for (size_t j = i + 1; j < n; j++) {
			next = dwarf_onesrcline(lines, j);
			if (!dwarf_lineaddr(next, &hi) && hi > lo) {
				add_range(match ? at : skip, lo, hi);
				break;
			}
		}
	}
	return file_seen;
}

/* One object searched: the program, or a library it links. */
struct object {
	const char *path;
	uint64_t key;	  /* the agent's name for a library (0: the program) */
	uint64_t exe_key; /* the program's, from its file name */
	struct ranges at, skip;
	bool dwarf; /* it has debug information */
};

/* Scans one object's line tables; whether FILE is in them. */
static bool scan_object(struct object *o, const char *file, unsigned line)
{
	Dwfl *dwfl = dwfl_begin(&ha_dwfl_offline_callbacks);
	Dwfl_Module *mod = NULL;
	Dwarf *dwarf = NULL;
	Dwarf_Addr bias;
	Dwarf_Off off = 0, next;
	size_t header;
	bool file_seen = false;

	if (dwfl) {
		dwfl_report_begin(dwfl);
		mod = dwfl_report_elf(dwfl, "object", o->path, -1, 0, true);
		dwfl_report_end(dwfl, NULL, NULL);
	}
	if (mod)
		dwarf = dwfl_module_getdwarf(mod, &bias);
	o->dwarf = dwarf != NULL;
	while (dwarf && dwarf_nextcu(dwarf, off, &next, &header, NULL, NULL,
				     NULL) == 0) {
		Dwarf_Die cu;

		if (dwarf_offdie(dwarf, off + header, &cu) &&
		    scan_cu(&cu, file, line, &o->at, &o->skip))
			file_seen = true;
		off = next;
	}
	merge_ranges(&o->at, 0);
	merge_ranges(&o->skip, PADDING);
	if (o->skip.n > MAX_SKIP_RANGES)
		o->skip.n =
		    0; /* C++ templates then hide their callers' lines */
	if (dwfl)
		dwfl_end(dwfl);
	return file_seen;
}

/*
 * FILE:LINE in the program and the libraries it links: objs[0] is the
 * program, then the libraries, *nobjs of them in all.
 */
static enum ht_result resolve_line(const char *program, const char *name,
				   const char *file, unsigned line,
				   struct object **objs, size_t *nobjs,
				   struct ht_diag *diag)
{
	char **libs;
	size_t nlibs, n, nat = 0;
	bool file_seen = false, nomem = false;
	struct object *o;

	libs = ht_needed_libraries(program, &nlibs);
	o = calloc(nlibs + 1, sizeof(*o));
	if (!o) {
		ht_needed_free(libs, nlibs);
		return ht_fail(diag, HT_ERR_NOMEM, "out of memory");
	}
	o[0].path = program;
	o[0].exe_key = halloc_library_key(program);
	for (size_t i = 0; i < nlibs; i++) {
		o[i + 1].path = libs[i];
		o[i + 1].key = halloc_library_key(libs[i]);
	}
	n = nlibs + 1;
	for (size_t i = 0; i < n; i++) {
		file_seen |= scan_object(&o[i], file, line);
		nomem |= o[i].at.nomem || o[i].skip.nomem;
		nat += o[i].at.n;
		/* The libraries' paths die with them: keep only the keys. */
		o[i].path = NULL;
	}
	ht_needed_free(libs, nlibs);
	*objs = o;
	*nobjs = n;
	if (nomem)
		return ht_fail(diag, HT_ERR_NOMEM, "out of memory");
	if (!file_seen && !o[0].dwarf && n == 1)
		return ht_fail(diag, HT_ERR_USAGE,
			    "cannot use --fail-at: '%s' has no debug "
			    "information (build it with -g)",
			    name);
	if (!file_seen)
		return ht_fail(diag, HT_ERR_USAGE,
			    "invalid --fail-at '%s:%u': no file '%s' in the "
			    "debug information of '%s'%s",
			    file, line, file, name,
			    n > 1 ? " or its libraries" : "");
	if (nat == 0)
		return ht_fail(diag, HT_ERR_USAGE,
			    "invalid --fail-at '%s:%u': line %u of '%s' has "
			    "no code in '%s'%s",
			    file, line, line, file, name,
			    n > 1 ? " or its libraries" : "");
	if (nat > MAX_RANGES)
		return ht_fail(diag, HT_ERR_USAGE,
			    "invalid --fail-at '%s:%u': its code is spread "
			    "over more than %d places",
			    file, line, MAX_RANGES);
	return HT_OK;
}

/* Appends to a malloc'ed string; false on no memory (*s freed). */
static bool append(char **s, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static bool append(char **s, const char *format, ...)
{
	char *more, *joined;
	va_list ap;
	int n;

	va_start(ap, format);
	n = vasprintf(&more, format, ap);
	va_end(ap);
	if (n < 0) {
		free(*s);
		*s = NULL;
		return false;
	}
	n = asprintf(&joined, "%s%s", *s ? *s : "", more);
	free(more);
	free(*s);
	*s = n < 0 ? NULL : joined;
	return *s != NULL;
}

/* An object's keys: its name (a library's), then its ranges. */
static bool append_object(char **s, const struct object *o)
{
	bool ok;

	/* Nothing fails there: its code need not be known. */
	if (!o->at.n)
		return true;
	/* The program's is named too: a program it execs (with -f) must not
	 * take them for its own. */
	ok = append(s, o->key ? ",fail_lib=%llu" : ",fail_exe=%llu",
		    (unsigned long long)(o->key ? o->key : o->exe_key));
	for (size_t i = 0; ok && i < o->at.n; i++)
		ok =
		    append(s, ",fail_at=%llu,fail_len=%llu",
			   (unsigned long long)o->at.r[i].lo,
			   (unsigned long long)(o->at.r[i].hi - o->at.r[i].lo));
	for (size_t i = 0; ok && i < o->skip.n; i++)
		ok = append(
		    s, ",fail_skip=%llu,fail_slen=%llu",
		    (unsigned long long)o->skip.r[i].lo,
		    (unsigned long long)(o->skip.r[i].hi - o->skip.r[i].lo));
	return ok;
}

enum ht_result ht_fault_keys(const struct ht_faults *f, const char *program,
			     const char *name, char **keys,
			     struct ht_diag *diag)
{
	struct object *objs = NULL;
	size_t nobjs = 0;
	char *s = NULL;
	bool ok = true;
	enum ht_result result = HT_OK;

	*keys = NULL;
	if (f->fail_at_file) {
		result = resolve_line(program, name, f->fail_at_file,
				      f->fail_at_line, &objs, &nobjs, diag);
		if (result)
			goto out;
	}
	if (f->fail_after)
		ok = append(&s, ",fail_after=%llu",
			    (unsigned long long)f->fail_after);
	if (ok && f->fail_rate_set)
		ok = append(&s, ",fail_rate=%llu,seed=%llu",
			    (unsigned long long)f->fail_rate_ppb,
			    (unsigned long long)f->seed);
	for (size_t i = 0; ok && i < nobjs; i++)
		ok = append_object(&s, &objs[i]);
	if (!ok)
		result = ht_fail(diag, HT_ERR_NOMEM, "out of memory");
	else
		*keys = s;
out:
	for (size_t i = 0; i < nobjs; i++) {
		free(objs[i].at.r);
		free(objs[i].skip.r);
	}
	free(objs);
	return result;
}
