/*
 * analyzer/symcache_file.c - one symbol cache file: reading it whole and
 * checking every byte of it before any answer is taken, and writing a
 * new one beside it that replaces it in one rename (layout: symcache.h).
 *
 * Whatever is wrong with a file (cut short by a crash, damaged, written
 * by another version or for another key) makes it absent: the addresses
 * are symbolized again and a good file replaces it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "analyzer/decode.h"
#include "analyzer/debuginfo.h"
#include "analyzer/symcache.h"

#define MAGIC	"HASYMC\r\n"
#define VERSION 1u
#define HEADER	32u
#define ENTRY	16u
#define FRAME	16u

static uint32_t file_crc(const unsigned char *p, size_t len)
{
	uLong crc = crc32(0L, Z_NULL, 0);

	/* Every byte but the CRC's own; files are under 4 GiB. */
	crc = crc32(crc, p, 28);
	crc = crc32(crc, p + HEADER, (uInt)(len - HEADER));
	return (uint32_t)crc;
}

/* All len bytes read into p, or written from it; false on an error or
 * an early end of file. */
static bool transfer(int fd, unsigned char *p, size_t len, bool writing)
{
	while (len > 0) {
		ssize_t n = writing ? write(fd, p, len) : read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* Every count against the size, every reference against its table. */
static bool check(struct ha_symfile *f, const char *key)
{
	const unsigned char *p = f->data;
	uint32_t key_len;
	uint64_t want, prev = 0;

	if (f->len < HEADER || memcmp(p, MAGIC, 8) != 0 ||
	    ha_le32(p + 8) != VERSION)
		return false;
	key_len = ha_le32(p + 12);
	f->strings_len = ha_le32(p + 16);
	f->nentries = ha_le32(p + 20);
	f->nframes = ha_le32(p + 24);
	want = (uint64_t)HEADER + key_len + f->strings_len +
	       (uint64_t)ENTRY * f->nentries + (uint64_t)FRAME * f->nframes;
	if (want != f->len || ha_le32(p + 28) != file_crc(p, f->len))
		return false;
	if (key_len != strlen(key) || memcmp(p + HEADER, key, key_len) != 0)
		return false;
	f->strings = (const char *)p + HEADER + key_len;
	if (f->strings_len == 0 || f->strings[f->strings_len - 1] != '\0')
		return false;
	f->entries = p + HEADER + key_len + f->strings_len;
	f->frames = f->entries + (size_t)ENTRY * f->nentries;
	for (uint32_t i = 0; i < f->nentries; i++) {
		const unsigned char *e = f->entries + (size_t)ENTRY * i;
		uint64_t offset = ha_le64(e);
		uint32_t first = ha_le32(e + 8), n = ha_le32(e + 12);

		if ((i > 0 && offset <= prev) || n > HALLOC_DEPTH_MAX ||
		    first > f->nframes || n > f->nframes - first)
			return false;
		prev = offset;
	}
	for (uint32_t i = 0; i < f->nframes; i++) {
		const unsigned char *fr = f->frames + (size_t)FRAME * i;

		if (ha_le32(fr) >= f->strings_len ||
		    ha_le32(fr + 4) >= f->strings_len)
			return false;
	}
	return true;
}

bool ha_symfile_load(struct ha_symfile *f, const char *path, const char *key)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool ok = false;

	memset(f, 0, sizeof(*f));
	if (fd < 0)
		return false;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    st.st_size >= (off_t)HEADER &&
	    st.st_size <= (off_t)HA_SYMFILE_MAX &&
	    (f->data = malloc((size_t)st.st_size))) {
		f->len = (size_t)st.st_size;
		ok = transfer(fd, f->data, f->len, false) && check(f, key);
		if (ok)
			ha_cache_used(fd, &st);
	}
	close(fd);
	if (!ok)
		ha_symfile_free(f);
	return ok;
}

static void decode_frames(const struct ha_symfile *f, const unsigned char *e,
			  struct ha_sym *out, uint32_t *n)
{
	uint32_t first = ha_le32(e + 8);

	*n = ha_le32(e + 12);
	for (uint32_t i = 0; i < *n; i++) {
		const unsigned char *fr =
		    f->frames + (size_t)FRAME * (first + i);

		out[i].function = f->strings + ha_le32(fr);
		out[i].file = f->strings + ha_le32(fr + 4);
		out[i].line = ha_le32(fr + 8);
		out[i].column = ha_le32(fr + 12);
	}
}

bool ha_symfile_find(const struct ha_symfile *f, uint64_t offset,
		     struct ha_sym out[HALLOC_DEPTH_MAX], uint32_t *n)
{
	uint32_t lo = 0, hi = f->nentries;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const unsigned char *e = f->entries + (size_t)ENTRY * mid;
		uint64_t at = ha_le64(e);

		if (at == offset) {
			decode_frames(f, e, out, n);
			return true;
		}
		if (at < offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

void ha_symfile_free(struct ha_symfile *f)
{
	free(f->data);
	memset(f, 0, sizeof(*f));
}

bool ha_symlist_add(struct ha_symlist *l, uint64_t offset,
		    const struct ha_sym *syms, uint32_t n)
{
	if (n > HALLOC_DEPTH_MAX || l->n >= UINT32_MAX ||
	    l->nsyms + n >= UINT32_MAX ||
	    !HA_RESERVE(l->entries, l->cap, l->n + 1) ||
	    !HA_RESERVE(l->syms, l->syms_cap, l->nsyms + n))
		return false;
	l->entries[l->n].offset = offset;
	l->entries[l->n].first = (uint32_t)l->nsyms;
	l->entries[l->n].n = n;
	l->n++;
	memcpy(l->syms + l->nsyms, syms, n * sizeof(*syms));
	l->nsyms += n;
	return true;
}

void ha_symlist_free(struct ha_symlist *l)
{
	free(l->entries);
	free(l->syms);
	memset(l, 0, sizeof(*l));
}

/* ---- writing ------------------------------------------------------------- */

struct bytes {
	unsigned char *p;
	size_t len, cap;
};

static bool put(struct bytes *b, const void *data, size_t n)
{
	if (!HA_RESERVE(b->p, b->cap, b->len + n))
		return false;
	memcpy(b->p + b->len, data, n);
	b->len += n;
	return true;
}

static bool put32(struct bytes *b, uint32_t v)
{
	unsigned char le[4] = {(unsigned char)v, (unsigned char)(v >> 8),
			       (unsigned char)(v >> 16),
			       (unsigned char)(v >> 24)};

	return put(b, le, sizeof(le));
}

static bool put64(struct bytes *b, uint64_t v)
{
	return put32(b, (uint32_t)v) && put32(b, (uint32_t)(v >> 32));
}

struct writer {
	struct bytes strings, entries, frames;
	struct ha_map index; /* hash of a string -> its offset in strings */
	uint32_t nentries, nframes;
};

/* The bytes a string adds to the table: 0 when it is there already. */
static size_t string_cost(const struct writer *w, const char *s)
{
	uint32_t at = ha_map_get(&w->index, ha_hash_bytes(s, strlen(s)));

	if (at != HA_NONE && strcmp((const char *)w->strings.p + at, s) == 0)
		return 0;
	return strlen(s) + 1;
}

static bool string_offset(struct writer *w, const char *s, uint32_t *out)
{
	uint64_t h = ha_hash_bytes(s, strlen(s));
	uint32_t at = ha_map_get(&w->index, h);

	if (at != HA_NONE && strcmp((const char *)w->strings.p + at, s) == 0) {
		*out = at;
		return true;
	}
	/* A string whose hash another holds is stored again, unindexed. */
	*out = (uint32_t)w->strings.len;
	return put(&w->strings, s, strlen(s) + 1) &&
	       (at != HA_NONE || ha_map_put(&w->index, h, *out));
}

static bool add_entry(struct writer *w, uint64_t offset,
		      const struct ha_sym *syms, uint32_t n)
{
	if (!put64(&w->entries, offset) || !put32(&w->entries, w->nframes) ||
	    !put32(&w->entries, n))
		return false;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t fn, file;

		if (!string_offset(w, syms[i].function, &fn) ||
		    !string_offset(w, syms[i].file, &file) ||
		    !put32(&w->frames, fn) || !put32(&w->frames, file) ||
		    !put32(&w->frames, syms[i].line) ||
		    !put32(&w->frames, syms[i].column))
			return false;
	}
	w->nentries++;
	w->nframes += n;
	return true;
}

/* Indices into a list, by offset, and the earlier index first. */
static int by_offset(const void *a, const void *b, void *list)
{
	const struct ha_symlist *l = list;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;

	if (l->entries[i].offset != l->entries[j].offset)
		return l->entries[i].offset < l->entries[j].offset ? -1 : 1;
	return i < j ? -1 : i > j;
}

/* Which entries of `all` go in the file: one per offset (the first
 * added), in the order added until the file would pass its bound. */
static bool choose(const struct ha_symlist *all, size_t *order, bool *keep,
		   size_t key_len)
{
	struct writer dry = {0};
	size_t size = HEADER + key_len + 1;
	bool ok = true;

	for (size_t i = 0; i < all->n; i++)
		order[i] = i;
	qsort_r(order, all->n, sizeof(*order), by_offset, (void *)all);
	for (size_t i = 0; i < all->n; i++)
		keep[order[i]] =
		    i == 0 || all->entries[order[i]].offset !=
				  all->entries[order[i - 1]].offset;
	for (size_t i = 0; ok && i < all->n; i++) {
		const struct ha_symlist_entry *e = &all->entries[i];
		size_t cost = ENTRY + (size_t)FRAME * e->n;

		if (!keep[i])
			continue;
		for (uint32_t k = 0; k < e->n; k++)
			cost += string_cost(&dry,
					    all->syms[e->first + k].function) +
				string_cost(&dry, all->syms[e->first + k].file);
		if (size + cost > HA_SYMFILE_MAX) {
			for (size_t j = i; j < all->n; j++)
				keep[j] = false;
			break;
		}
		size += cost;
		for (uint32_t k = 0; ok && k < e->n; k++) {
			uint32_t unused;

			ok = string_offset(&dry,
					   all->syms[e->first + k].function,
					   &unused) &&
			     string_offset(&dry, all->syms[e->first + k].file,
					   &unused);
		}
	}
	free(dry.strings.p);
	ha_map_free(&dry.index);
	return ok;
}

static bool encode(const struct ha_symlist *all, const size_t *order,
		   const bool *keep, const char *key, struct bytes *out)
{
	struct writer w = {0};
	uint32_t empty;
	bool ok = string_offset(&w, "", &empty);

	for (size_t i = 0; ok && i < all->n; i++) {
		const struct ha_symlist_entry *e = &all->entries[order[i]];

		if (keep[order[i]])
			ok = add_entry(&w, e->offset, all->syms + e->first,
				       e->n);
	}
	ok = ok && put(out, MAGIC, 8) && put32(out, VERSION) &&
	     put32(out, (uint32_t)strlen(key)) &&
	     put32(out, (uint32_t)w.strings.len) && put32(out, w.nentries) &&
	     put32(out, w.nframes) && put32(out, 0) &&
	     put(out, key, strlen(key)) &&
	     put(out, w.strings.p, w.strings.len) &&
	     put(out, w.entries.p, w.entries.len) &&
	     put(out, w.frames.p, w.frames.len);
	if (ok) {
		uint32_t crc = file_crc(out->p, out->len);

		for (int i = 0; i < 4; i++)
			out->p[28 + i] = (unsigned char)(crc >> (8 * i));
	}
	free(w.strings.p);
	free(w.entries.p);
	free(w.frames.p);
	ha_map_free(&w.index);
	return ok;
}

static bool replace_file(const char *path, const struct bytes *b)
{
	size_t n = strlen(path);
	char *tmp = malloc(n + sizeof(".XXXXXX.tmp"));
	bool ok;
	int fd;

	if (!tmp)
		return false;
	memcpy(tmp, path, n);
	memcpy(tmp + n, ".XXXXXX.tmp", sizeof(".XXXXXX.tmp"));
	fd = mkostemps(tmp, 4, O_CLOEXEC);
	if (fd < 0) {
		free(tmp);
		return false;
	}
	ok = transfer(fd, b->p, b->len, true);
	ok = close(fd) == 0 && ok && rename(tmp, path) == 0;
	if (!ok)
		unlink(tmp);
	free(tmp);
	return ok;
}

bool ha_symfile_save(const char *path, const char *key,
		     const struct ha_symfile *old,
		     const struct ha_symlist *fresh)
{
	struct ha_symlist all = {0};
	struct ha_sym syms[HALLOC_DEPTH_MAX];
	struct bytes out = {0};
	size_t *order = NULL;
	bool *keep = NULL, ok = true;

	for (size_t i = 0; ok && i < fresh->n; i++)
		ok = ha_symlist_add(&all, fresh->entries[i].offset,
				    fresh->syms + fresh->entries[i].first,
				    fresh->entries[i].n);
	for (uint32_t i = 0; ok && old && i < old->nentries; i++) {
		const unsigned char *e = old->entries + (size_t)ENTRY * i;
		uint32_t n;

		decode_frames(old, e, syms, &n);
		ok = ha_symlist_add(&all, ha_le64(e), syms, n);
	}
	ok = ok && all.n > 0 && (order = malloc(all.n * sizeof(*order))) &&
	     (keep = malloc(all.n * sizeof(*keep))) &&
	     choose(&all, order, keep, strlen(key)) &&
	     encode(&all, order, keep, key, &out) && replace_file(path, &out);
	free(out.p);
	free(order);
	free(keep);
	ha_symlist_free(&all);
	return ok;
}
