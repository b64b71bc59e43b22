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
 */
#include "analyzer/debuginfo.h"

#include <fcntl.h>
#include <gelf.h>
#include <elfutils/libdwelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* NULL: libdw's default search path. */
static char *debuginfo_path;

static bool same_build_id(int fd, const unsigned char *want, int want_len)
{
	Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	const void *bits = NULL;
	ssize_t n = elf ? dwelf_elf_gnu_build_id(elf, &bits) : -1;
	bool same = n == want_len && n > 0 && memcmp(bits, want, (size_t)n) == 0;

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
			 const unsigned char *bits, int bits_len,
			 GElf_Word crc, char **found)
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

static int find_by_debuglink(const char *file_name, const char *debuglink,
			     const unsigned char *bits, int bits_len,
			     GElf_Word crc, char **found)
{
	const char *slash = file_name ? strrchr(file_name, '/') : NULL;
	char name[4096], dir[4096], path[8192 + 64];
	int fd = -1;

	if (!slash)
		return -1;
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - file_name),
		 file_name);
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

static int find_debuginfo(Dwfl_Module *mod, void **userdata,
			  const char *modname, Dwarf_Addr base,
			  const char *file_name, const char *debuglink_file,
			  GElf_Word debuglink_crc, char **debuginfo_file_name)
{
	const char *urls = getenv("DEBUGINFOD_URLS");
	const unsigned char *bits = NULL;
	GElf_Addr vaddr;
	int bits_len, fd;

	if (urls && *urls)
		return dwfl_standard_find_debuginfo(
		    mod, userdata, modname, base, file_name, debuglink_file,
		    debuglink_crc, debuginfo_file_name);
	bits_len = dwfl_module_build_id(mod, &bits, &vaddr);
	if (bits_len > 0) {
		fd = dwfl_build_id_find_debuginfo(mod, userdata, modname, base,
						  file_name, debuglink_file,
						  debuglink_crc,
						  debuginfo_file_name);
		if (fd >= 0)
			return fd;
	}
	return find_by_debuglink(file_name, debuglink_file, bits, bits_len,
				 debuglink_crc, debuginfo_file_name);
}

const Dwfl_Callbacks ha_dwfl_offline_callbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = find_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = &debuginfo_path,
};
