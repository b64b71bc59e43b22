/*
 * analyzer/symbols_frame.c - SYMBOLS frames: decoding them into locations,
 * and encoding the locations symbolized from the binaries so that a log
 * can be reported after the binaries change or on another machine.
 *
 * A location is keyed by (module path, build-id, offset). The first
 * SYMBOLS entry for a key holds; later ones are ignored.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyzer/decode.h"
#include "analyzer/model.h"
#include "halloc/log.h"

/* A frame is written once its payload passes this: a few MiB at most. */
#define SYMBOLS_FRAME_TARGET (2u << 20)

/* ---- reading --------------------------------------------------------------
 */

static enum ha_result read_entries(struct ha_log *log, struct ha_cursor *c,
				   const char **strs, uint32_t nstrs,
				   const char **why)
{
	uint32_t nentries;
	struct ha_sym syms[HALLOC_DEPTH_MAX];

	if (!ha_get_count(c, 4, &nentries)) {
		*why = "bad symbols entry count";
		return HA_ERR_CORRUPT;
	}
	for (uint32_t e = 0; e < nentries; e++) {
		uint32_t path, bid, nframes, modfile, loc;
		uint64_t offset;

		if (!ha_get_u32(c, &path) || !ha_get_u32(c, &bid) ||
		    !ha_get_uv(c, &offset) || !ha_get_count(c, 4, &nframes) ||
		    path >= nstrs || bid >= nstrs) {
			*why = "bad symbols entry";
			return HA_ERR_CORRUPT;
		}
		/* More inline levels than this are not real; refuse them. */
		if (nframes > HALLOC_DEPTH_MAX) {
			*why = "symbols entry with too many frames";
			return HA_ERR_CORRUPT;
		}
		for (uint32_t i = 0; i < nframes; i++) {
			uint32_t fn, file;

			if (!ha_get_u32(c, &fn) || !ha_get_u32(c, &file) ||
			    !ha_get_u32(c, &syms[i].line) ||
			    !ha_get_u32(c, &syms[i].column) || fn >= nstrs ||
			    file >= nstrs) {
				*why = "bad symbols frame";
				return HA_ERR_CORRUPT;
			}
			syms[i].function = strs[fn];
			syms[i].file = strs[file];
		}
		modfile = ha_log_modfile(log, strs[path], strs[bid]);
		if (modfile == HA_NONE)
			return HA_ERR_NOMEM;
		loc = ha_log_loc(log, modfile, offset, true);
		if (loc == HA_NONE)
			return HA_ERR_NOMEM;
		if (log->locs[loc].state != HA_LOC_PENDING)
			continue;
		if (!ha_log_set_syms(log, loc, syms, nframes, HA_LOC_FROM_LOG))
			return HA_ERR_NOMEM;
	}
	return HA_OK;
}

enum ha_result ha_symbols_read(struct ha_log *log, const unsigned char *p,
			       size_t len, size_t *bad, const char **why)
{
	struct ha_cursor c = {p, p + len};
	uint32_t nstrs;
	const char **strs;
	enum ha_result res;

	/* Positions inside a SYMBOLS frame help no one: report the frame. */
	*bad = 0;
	if (!ha_get_count(&c, 1, &nstrs)) {
		*why = "bad symbols string count";
		return HA_ERR_CORRUPT;
	}
	strs = malloc((nstrs ? nstrs : 1) * sizeof(*strs));
	if (!strs)
		return HA_ERR_NOMEM;
	for (uint32_t i = 0; i < nstrs; i++) {
		const char *s;
		size_t n;

		if (!ha_get_str(&c, &s, &n)) {
			free(strs);
			*why = "bad symbols string";
			return HA_ERR_CORRUPT;
		}
		if (!(strs[i] = ha_intern(&log->strings, s, n))) {
			free(strs);
			return HA_ERR_NOMEM;
		}
	}
	res = read_entries(log, &c, strs, nstrs, why);
	free(strs);
	return res;
}

/* ---- writing ----------------------------------------------------------------
 */

struct buf {
	unsigned char *p;
	size_t len, cap;
};

static bool buf_room(struct buf *b, size_t n)
{
	return HA_RESERVE(b->p, b->cap, b->len + n);
}

static bool put_uv(struct buf *b, uint64_t v)
{
	if (!buf_room(b, HALLOC_VARINT_MAX))
		return false;
	b->len = (size_t)(halloc_put_uv(b->p + b->len, v) - b->p);
	return true;
}

static bool put_str(struct buf *b, const char *s)
{
	size_t n = strlen(s);

	if (!put_uv(b, n) || !buf_room(b, n))
		return false;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	return true;
}

/* One SYMBOLS frame being built: its string table and its entries. */
struct frame {
	struct buf strings, entries;
	struct ha_map index; /* interned string pointer -> string index */
	uint32_t nstrings, nentries;
};

static bool string_index(struct frame *f, const char *s, uint32_t *out)
{
	uint32_t i = ha_map_get(&f->index, (uint64_t)(uintptr_t)s);

	if (i == HA_NONE) {
		i = f->nstrings;
		if (!ha_map_put(&f->index, (uint64_t)(uintptr_t)s, i) ||
		    !put_str(&f->strings, s))
			return false;
		f->nstrings++;
	}
	*out = i;
	return true;
}

static bool frame_reset(struct frame *f, struct ha_log *log)
{
	uint32_t zero;

	f->strings.len = 0;
	f->entries.len = 0;
	f->nstrings = 0;
	f->nentries = 0;
	ha_map_free(&f->index);
	/* Index 0 is the empty string, as the format says. */
	return string_index(f, ha_intern_str(&log->strings, ""), &zero);
}

static bool write_all(int fd, const void *data, size_t len)
{
	const unsigned char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static bool frame_flush(struct frame *f, int fd)
{
	unsigned char header[HALLOC_FRAME_HEADER_SIZE];
	unsigned char nstr[HALLOC_VARINT_MAX], nent[HALLOC_VARINT_MAX];
	size_t nstr_len, nent_len, payload;
	bool ok;

	nstr_len = (size_t)(halloc_put_uv(nstr, f->nstrings) - nstr);
	nent_len = (size_t)(halloc_put_uv(nent, f->nentries) - nent);
	payload = nstr_len + f->strings.len + nent_len + f->entries.len;
	header[0] = (unsigned char)payload;
	header[1] = (unsigned char)(payload >> 8);
	header[2] = (unsigned char)(payload >> 16);
	header[3] = (unsigned char)(payload >> 24);
	header[4] = HALLOC_FRAME_SYMBOLS;
	header[5] = 0;
	header[6] = 0;
	header[7] = 0;
	ok = write_all(fd, header, sizeof(header)) &&
	     write_all(fd, nstr, nstr_len) &&
	     write_all(fd, f->strings.p, f->strings.len) &&
	     write_all(fd, nent, nent_len) &&
	     write_all(fd, f->entries.p, f->entries.len);
	return ok;
}

static bool add_entry(struct frame *f, const struct ha_log *log,
		      const struct ha_loc *loc)
{
	const struct ha_modfile *m = &log->modfiles[loc->modfile];
	uint32_t path, bid;

	if (!string_index(f, m->path, &path) ||
	    !string_index(f, m->build_id, &bid) || !put_uv(&f->entries, path) ||
	    !put_uv(&f->entries, bid) || !put_uv(&f->entries, loc->offset) ||
	    !put_uv(&f->entries, loc->nsyms))
		return false;
	for (uint32_t i = 0; i < loc->nsyms; i++) {
		const struct ha_sym *s = &log->syms[loc->first_sym + i];
		uint32_t fn, file;

		if (!string_index(f, s->function, &fn) ||
		    !string_index(f, s->file, &file) ||
		    !put_uv(&f->entries, fn) || !put_uv(&f->entries, file) ||
		    !put_uv(&f->entries, s->line) ||
		    !put_uv(&f->entries, s->column))
			return false;
	}
	f->nentries++;
	return true;
}

enum ha_result ha_symbols_write(struct ha_log *log, int fd)
{
	struct frame f = {0};
	enum ha_result res = HA_OK;

	if (!frame_reset(&f, log)) {
		res = HA_ERR_NOMEM;
		goto out;
	}
	for (size_t i = 0; i < log->nlocs; i++) {
		const struct ha_loc *loc = &log->locs[i];

		/* Only what the binaries told us: the rest is in the log
		 * already, or unknown, and then the binaries may still
		 * tell a later reader. */
		if (loc->state != HA_LOC_FROM_FILE || loc->modfile == 0)
			continue;
		if (!add_entry(&f, log, loc)) {
			res = HA_ERR_NOMEM;
			goto out;
		}
		if (f.strings.len + f.entries.len >= SYMBOLS_FRAME_TARGET) {
			if (!frame_flush(&f, fd)) {
				res = HA_ERR_IO;
				goto out;
			}
			if (!frame_reset(&f, log)) {
				res = HA_ERR_NOMEM;
				goto out;
			}
		}
	}
	if (f.nentries > 0 && !frame_flush(&f, fd))
		res = HA_ERR_IO;
out:
	free(f.strings.p);
	free(f.entries.p);
	ha_map_free(&f.index);
	return res;
}
