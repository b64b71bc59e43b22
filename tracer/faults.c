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
 * site the analyzer shows for them, so the two agree.
 * Shared libraries are not searched.
 */
#include "tracer/faults.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What agent/faults.c keeps; a line spread wider is refused here. */
#define MAX_RANGES 64

struct range {
	uint64_t lo, hi;
};

struct ranges {
	struct range r[MAX_RANGES];
	unsigned n;
	bool full;
};

static char *debuginfo_path;

static const Dwfl_Callbacks offline_callbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = &debuginfo_path,
};

static enum ht_result fail(struct ht_diag *diag, enum ht_result result,
			   const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static enum ht_result fail(struct ht_diag *diag, enum ht_result result,
			   const char *format, ...)
{
	va_list ap;

	va_start(ap, format);
	vsnprintf(diag->message, sizeof(diag->message), format, ap);
	va_end(ap);
	return result;
}

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

/* Adds [lo, hi), merged with a range it touches. */
static void add_range(struct ranges *rs, uint64_t lo, uint64_t hi)
{
	for (unsigned i = 0; i < rs->n; i++) {
		struct range *r = &rs->r[i];

		if (lo <= r->hi && hi >= r->lo) {
			r->lo = lo < r->lo ? lo : r->lo;
			r->hi = hi > r->hi ? hi : r->hi;
			return;
		}
	}
	if (rs->n == MAX_RANGES) {
		rs->full = true;
		return;
	}
	rs->r[rs->n].lo = lo;
	rs->r[rs->n].hi = hi;
	rs->n++;
}

/* The rows of one CU's line table that are FILE:LINE. */
static bool scan_cu(Dwarf_Die *cu, const char *file, unsigned line,
		    struct ranges *rs)
{
	Dwarf_Lines *lines;
	size_t n;
	bool file_seen = false;

	if (dwarf_getsrclines(cu, &lines, &n) != 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		Dwarf_Line *row = dwarf_onesrcline(lines, i), *next;
		Dwarf_Addr lo, hi;
		bool end;
		int no;

		if (!same_file(dwarf_linesrc(row, NULL, NULL), file))
			continue;
		file_seen = true;
		if (dwarf_lineno(row, &no) || (unsigned)no != line ||
		    dwarf_lineendsequence(row, &end) || end ||
		    dwarf_lineaddr(row, &lo))
			continue;
		/* Rows are sorted by address within a sequence: the code of
		 * this row runs to the next row with a higher address. */
		for (size_t j = i + 1; j < n; j++) {
			next = dwarf_onesrcline(lines, j);
			if (!dwarf_lineaddr(next, &hi) && hi > lo) {
				add_range(rs, lo, hi);
				break;
			}
		}
	}
	return file_seen;
}

static enum ht_result resolve_line(const char *program, const char *name,
				   const char *file, unsigned line,
				   struct ranges *rs, struct ht_diag *diag)
{
	Dwfl *dwfl = dwfl_begin(&offline_callbacks);
	Dwfl_Module *mod = NULL;
	Dwarf *dwarf = NULL;
	Dwarf_Addr bias;
	Dwarf_Off off = 0, next;
	size_t header;
	bool file_seen = false;
	enum ht_result result = HT_OK;

	if (dwfl) {
		dwfl_report_begin(dwfl);
		mod = dwfl_report_elf(dwfl, name, program, -1, 0, true);
		dwfl_report_end(dwfl, NULL, NULL);
	}
	if (mod)
		dwarf = dwfl_module_getdwarf(mod, &bias);
	if (!dwarf) {
		result = fail(diag, HT_ERR_USAGE,
			      "cannot use --fail-at: '%s' has no debug "
			      "information (build it with -g)",
			      name);
		goto out;
	}
	while (dwarf_nextcu(dwarf, off, &next, &header, NULL, NULL, NULL) ==
	       0) {
		Dwarf_Die cu;

		if (dwarf_offdie(dwarf, off + header, &cu) &&
		    scan_cu(&cu, file, line, rs))
			file_seen = true;
		off = next;
	}
	if (!file_seen)
		result = fail(diag, HT_ERR_USAGE,
			      "invalid --fail-at '%s:%u': no file '%s' in "
			      "the debug information of '%s'",
			      file, line, file, name);
	else if (rs->n == 0)
		result = fail(diag, HT_ERR_USAGE,
			      "invalid --fail-at '%s:%u': line %u of '%s' "
			      "has no code in '%s'",
			      file, line, line, file, name);
	else if (rs->full)
		result = fail(diag, HT_ERR_USAGE,
			      "invalid --fail-at '%s:%u': its code is spread "
			      "over more than %d places",
			      file, line, MAX_RANGES);
out:
	if (dwfl)
		dwfl_end(dwfl);
	return result;
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

enum ht_result ht_fault_keys(const struct ht_faults *f, const char *program,
			     const char *name, char **keys,
			     struct ht_diag *diag)
{
	struct ranges rs = {.n = 0};
	char *s = NULL;
	bool ok = true;
	enum ht_result result;

	*keys = NULL;
	if (f->fail_at_file) {
		result = resolve_line(program, name, f->fail_at_file,
				      f->fail_at_line, &rs, diag);
		if (result)
			return result;
	}
	if (f->fail_after)
		ok = append(&s, ",fail_after=%llu",
			    (unsigned long long)f->fail_after);
	if (ok && f->fail_rate_set)
		ok = append(&s, ",fail_rate=%llu,seed=%llu",
			    (unsigned long long)f->fail_rate_ppb,
			    (unsigned long long)f->seed);
	for (unsigned i = 0; ok && i < rs.n; i++)
		ok = append(&s, ",fail_at=%llu,fail_len=%llu",
			    (unsigned long long)rs.r[i].lo,
			    (unsigned long long)(rs.r[i].hi - rs.r[i].lo));
	if (!ok)
		return fail(diag, HT_ERR_NOMEM, "out of memory");
	*keys = s;
	return HT_OK;
}
