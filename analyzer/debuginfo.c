/*
 * analyzer/debuginfo.c - finding a module file's separate debug info
 * without libdebuginfod when no server is configured (debuginfo.h).
 *
 * The local searches are libdw's (dwfl_standard_find_debuginfo, default
 * path ":.debug:/usr/lib/debug"): the build-id under
 * /usr/lib/debug/.build-id, then the .gnu_debuglink name (or the file's
 * name + ".debug") in the file's directory, its .debug/ and
 * /usr/lib/debug/DIR. A candidate is used only if it is the module's
 * debug file: same build-id when the module has one, else the debuglink's
 * CRC32 of its contents.
 *
 * Debug files are often zlib-compressed (libc6-dbg's are): libdw then
 * inflates every debug section each time it opens one, ~80 ms of CPU for
 * libc's. So a compressed debug file found is replaced by a plain copy of
 * it, made once and kept in the cache directory (HALLOC_CACHE_DIR; else
 * $XDG_CACHE_HOME/halloc, else ~/.cache/halloc; HALLOC_CACHE_DIR="" keeps
 * none), named by its build-id, size and time of change. The copy is made
 * in a temporary file renamed into place, and used only if its build-id
 * is the original's; whatever fails, the original is used.
 */
#include "analyzer/debuginfo.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <elfutils/libdwelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* NULL: libdw's default search path. */
static char *debuginfo_path;

static bool same_build_id(int fd, const unsigned char *want, int want_len)
{
	Elf *elf = elf_begin(fd, ELF_C_READ, NULL);
	const void *bits = NULL;
	ssize_t n = elf ? dwelf_elf_gnu_build_id(elf, &bits) : -1;
	bool same =
	    n == want_len && n > 0 && memcmp(bits, want, (size_t)n) == 0;

	if (elf)
		elf_end(elf);
	return same;
}

static bool same_crc(int fd, GElf_Word want)
{
	struct stat st;
	void *data;
	uLong crc;

	if (fstat(fd, &st) != 0 || st.st_size <= 0)
		return false;
	data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (data == MAP_FAILED)
		return false;
	crc = crc32(0L, Z_NULL, 0);
	/* zlib's length is a uInt: feed it in pieces. */
	for (off_t at = 0; at < st.st_size;) {
		size_t n = (size_t)(st.st_size - at) > (1u << 30)
			       ? (1u << 30)
			       : (size_t)(st.st_size - at);

		crc = crc32(crc, (const Bytef *)data + at, (uInt)n);
		at += (off_t)n;
	}
	munmap(data, (size_t)st.st_size);
	return (GElf_Word)crc == want;
}

/* The debug file at `path` if it is this module's; -1 otherwise. */
static int try_candidate(const char *path, const char *file_name,
			 const unsigned char *bits, int bits_len, GElf_Word crc,
			 char **found)
{
	int fd;
	bool ok;

	/* The module file itself is not its own debug file. */
	if (file_name && strcmp(path, file_name) == 0)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ok = bits_len > 0 ? same_build_id(fd, bits, bits_len)
			  : same_crc(fd, crc);
	if (!ok || !(*found = strdup(path))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* /usr/lib/debug/.build-id/ab/cdef....debug */
static int find_by_build_id(const char *file_name, const unsigned char *bits,
			    int bits_len, char **found)
{
	char path[64 + 2 * 256];
	size_t n = (size_t)snprintf(path, sizeof(path),
				    "/usr/lib/debug/.build-id/%02x/", bits[0]);

	if (bits_len > 255)
		return -1;
	for (int i = 1; i < bits_len; i++)
		n += (size_t)snprintf(path + n, sizeof(path) - n, "%02x",
				      bits[i]);
	snprintf(path + n, sizeof(path) - n, ".debug");
	return try_candidate(path, file_name, bits, bits_len, 0, found);
}

static int find_by_debuglink(const char *file_name, const char *debuglink,
			     const unsigned char *bits, int bits_len,
			     GElf_Word crc, char **found)
{
	const char *slash = file_name ? strrchr(file_name, '/') : NULL;
	char name[4096], dir[4096], path[8192 + 64];
	int fd = -1;

	if (!slash)
		return -1;
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - file_name), file_name);
	if (debuglink && *debuglink)
		snprintf(name, sizeof(name), "%s", debuglink);
	else
		snprintf(name, sizeof(name), "%s.debug", slash + 1);
	/* A debuglink with a directory is taken as it is, relative or not. */
	if (strchr(name, '/')) {
		if (name[0] == '/')
			return try_candidate(name, file_name, bits, bits_len,
					     crc, found);
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		return try_candidate(path, file_name, bits, bits_len, crc,
				     found);
	}
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = try_candidate(path, file_name, bits, bits_len, crc, found);
	if (fd < 0) {
		snprintf(path, sizeof(path), "%s/.debug/%s", dir, name);
		fd = try_candidate(path, file_name, bits, bits_len, crc, found);
	}
	if (fd < 0) {
		snprintf(path, sizeof(path), "/usr/lib/debug%s/%s", dir, name);
		fd = try_candidate(path, file_name, bits, bits_len, crc, found);
	}
	return fd;
}

int ha_debuginfo_find_local(const char *file_name, const char *debuglink,
			    const unsigned char *bits, int bits_len,
			    GElf_Word crc, char **found)
{
	int fd = -1;

	/* Not dwfl_build_id_find_debuginfo: it keeps the file it found
	 * open in the module, so a plain copy returned would go unused. */
	if (bits_len > 1)
		fd = find_by_build_id(file_name, bits, bits_len, found);
	if (fd < 0)
		fd = find_by_debuglink(file_name, debuglink, bits, bits_len,
				       crc, found);
	return fd;
}

/* Debug files smaller than this inflate fast enough. */
#define PLAIN_COPY_MIN (64u << 10)

bool ha_cache_dir(char *out, size_t n)
{
	const char *dir = getenv("HALLOC_CACHE_DIR");

	if (dir)
		return *dir && snprintf(out, n, "%s", dir) < (int)n;
	if ((dir = getenv("XDG_CACHE_HOME")) && *dir == '/')
		return snprintf(out, n, "%s/halloc", dir) < (int)n;
	if ((dir = getenv("HOME")) && *dir == '/')
		return snprintf(out, n, "%s/.cache/halloc", dir) < (int)n;
	return false;
}

bool ha_ends_with(const char *name, const char *suffix)
{
	size_t n = strlen(name), k = strlen(suffix);

	return n > k && strcmp(name + n - k, suffix) == 0;
}

bool ha_make_dirs(char *path)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) != 0 && errno != EEXIST) {
			*p = '/';
			return false;
		}
		*p = '/';
	}
	return mkdir(path, 0700) == 0 || errno == EEXIST;
}

bool ha_elf_sections(Elf *elf, bool *compressed, bool *altlink)
{
	Elf_Scn *scn = NULL;
	size_t shstrndx;

	if (compressed)
		*compressed = false;
	*altlink = false;
	if (!elf || elf_getshdrstrndx(elf, &shstrndx) != 0)
		return false;
	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr shdr;
		const char *name;

		if (!gelf_getshdr(scn, &shdr))
			continue;
		name = elf_strptr(elf, shstrndx, shdr.sh_name);
		if (compressed && (shdr.sh_flags & SHF_COMPRESSED))
			*compressed = true;
		if (name && strcmp(name, ".gnu_debugaltlink") == 0)
			*altlink = true;
	}
	return true;
}

bool ha_build_id_is(const void *bits, ssize_t n, const char *hex)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *b = bits;

	if (n <= 0 || strlen(hex) != 2 * (size_t)n)
		return false;
	for (ssize_t i = 0; i < n; i++)
		if (hex[2 * i] != digits[b[i] >> 4] ||
		    hex[2 * i + 1] != digits[b[i] & 15])
			return false;
	return true;
}

/* Whether the debug file is worth a plain copy; its build-id if so. */
static bool wants_plain_copy(int fd, unsigned char bits[64], ssize_t *nbits)
{
	Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	bool compressed, altlink, known;
	const void *raw = NULL;

	if (!elf)
		return false;
	*nbits = dwelf_elf_gnu_build_id(elf, &raw);
	if (*nbits > 64)
		*nbits = -1;
	if (*nbits > 0)
		memcpy(bits, raw, (size_t)*nbits);
	/* dwz's file is found next to this one: keep it. */
	known = ha_elf_sections(elf, &compressed, &altlink);
	elf_end(elf);
	return known && compressed && !altlink && *nbits > 0;
}

/* Writes a plain copy of debug file `fd` to `path`; false on failure. */
static bool make_plain_copy(int fd, off_t size, const char *path,
			    const unsigned char *bits, int nbits)
{
	char tmp[8192 + 128];
	off_t at = 0;
	Elf *elf;
	Elf_Scn *scn = NULL;
	bool ok = false;
	int out;

	snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
	out = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0)
		return false;
	while (at < size) {
		ssize_t n = sendfile(out, fd, &at, (size_t)(size - at));

		if (n <= 0)
			goto out;
	}
	elf = elf_begin(out, ELF_C_RDWR, NULL);
	if (!elf)
		goto out;
	ok = true;
	while (ok && (scn = elf_nextscn(elf, scn))) {
		GElf_Shdr shdr;

		if (gelf_getshdr(scn, &shdr) &&
		    (shdr.sh_flags & SHF_COMPRESSED))
			ok = elf_compress(scn, 0, 0) >= 0;
	}
	ok = ok && elf_update(elf, ELF_C_WRITE) >= 0;
	elf_end(elf);
	ok = ok && same_build_id(out, bits, nbits) && rename(tmp, path) == 0;
out:
	close(out);
	if (!ok)
		unlink(tmp);
	return ok;
}

/* The plain copy of compressed debug file `fd` (made if need be), or fd. */
static int plain_debug_file(int fd, char **name)
{
	char dir[4096], path[8192], hex[2 * 64 + 1];
	unsigned char bits[64];
	ssize_t nbits;
	struct stat st;
	int plain;
	char *copy;

	if (fstat(fd, &st) != 0 || st.st_size < (off_t)PLAIN_COPY_MIN ||
	    !ha_cache_dir(dir, sizeof(dir)))
		return fd;
	if (!wants_plain_copy(fd, bits, &nbits))
		return fd;
	for (ssize_t i = 0; i < nbits; i++)
		snprintf(hex + 2 * i, 3, "%02x", bits[i]);
	snprintf(dir + strlen(dir), sizeof(dir) - strlen(dir), "/debug");
	snprintf(path, sizeof(path), "%s/%s-%lld-%lld.%09ld.debug", dir, hex,
		 (long long)st.st_size, (long long)st.st_mtim.tv_sec,
		 st.st_mtim.tv_nsec);
	plain = open(path, O_RDONLY | O_CLOEXEC);
	if (plain < 0 && ha_make_dirs(dir) &&
	    make_plain_copy(fd, st.st_size, path, bits, (int)nbits))
		plain = open(path, O_RDONLY | O_CLOEXEC);
	if (plain < 0)
		return fd;
	if (!same_build_id(plain, bits, (int)nbits) || !(copy = strdup(path))) {
		close(plain);
		return fd;
	}
	if (fstat(plain, &st) == 0)
		ha_cache_used(plain, &st);
	close(fd);
	free(*name);
	*name = copy;
	return plain;
}

static int find_debuginfo(Dwfl_Module *mod, void **userdata,
			  const char *modname, Dwarf_Addr base,
			  const char *file_name, const char *debuglink_file,
			  GElf_Word debuglink_crc, char **debuginfo_file_name)
{
	const char *urls = getenv("DEBUGINFOD_URLS");
	const unsigned char *bits = NULL;
	GElf_Addr vaddr;
	int bits_len, fd;

	if (urls && *urls) {
		fd = dwfl_standard_find_debuginfo(
		    mod, userdata, modname, base, file_name, debuglink_file,
		    debuglink_crc, debuginfo_file_name);
		return fd >= 0 ? plain_debug_file(fd, debuginfo_file_name) : fd;
	}
	bits_len = dwfl_module_build_id(mod, &bits, &vaddr);
	fd = ha_debuginfo_find_local(file_name, debuglink_file, bits, bits_len,
				     debuglink_crc, debuginfo_file_name);
	return fd >= 0 ? plain_debug_file(fd, debuginfo_file_name) : fd;
}

const Dwfl_Callbacks ha_dwfl_offline_callbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = find_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = &debuginfo_path,
};
