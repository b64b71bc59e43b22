/*
 * agent/bpf/modules.c - the target's modules from /proc/PID/maps and
 * their ELF headers. See modules.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "agent/bpf/modules.h"
#include "halloc/log.h"

/* Order: enum halloc_alloc_fn, then free. */
const char *const hb_alloc_functions[HB_NFUNCS] = {
    "malloc",	     "calloc",	 "realloc", "reallocarray", "posix_memalign",
    "aligned_alloc", "memalign", "valloc",  "pvalloc",	    "free",
};

void hb_modules_init(struct hb_modules *m, pid_t pid)
{
	memset(m, 0, sizeof(*m));
	m->pid = pid;
	if (pid)
		snprintf(m->root, sizeof(m->root), "/proc/%d/root", (int)pid);
}

static void module_close(struct hb_module *mod)
{
	if (mod->cfi)
		dwarf_cfi_end(mod->cfi);
	if (mod->elf)
		elf_end(mod->elf);
	if (mod->fd >= 0)
		close(mod->fd);
	mod->elf = NULL;
	mod->cfi = NULL;
	mod->fd = -1;
}

void hb_modules_free(struct hb_modules *m)
{
	for (size_t i = 0; i < m->nmods; i++) {
		module_close(&m->mods[i]);
		free(m->mods[i].path);
		free(m->mods[i].open_path);
	}
	free(m->mods);
	free(m->maps);
	memset(m, 0, sizeof(*m));
}

static Elf *open_elf(const char *path, int *fd)
{
	Elf *elf;

	elf_version(EV_CURRENT);
	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
		return NULL;
	elf = elf_begin(*fd, ELF_C_READ_MMAP, NULL);
	if (!elf || elf_kind(elf) != ELF_K_ELF) {
		if (elf)
			elf_end(elf);
		close(*fd);
		*fd = -1;
		return NULL;
	}
	return elf;
}

static void read_build_id(Elf *elf, struct hb_module *mod)
{
	Elf_Scn *scn = NULL;

	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *data;
		GElf_Nhdr nh;
		size_t off = 0, name_off, desc_off;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE ||
		    !(data = elf_getdata(scn, NULL)))
			continue;
		while ((off = gelf_getnote(data, off, &nh, &name_off,
					   &desc_off)) > 0) {
			if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
			    !memcmp((char *)data->d_buf + name_off, "GNU", 4) &&
			    nh.n_descsz <= sizeof(mod->build_id)) {
				memcpy(mod->build_id,
				       (char *)data->d_buf + desc_off,
				       nh.n_descsz);
				mod->build_id_len = nh.n_descsz;
				return;
			}
		}
	}
}

/*
 * Fills bias and segments from a mapping of file offset `offset` at
 * `start`: the PT_LOAD holding that offset maps p_offset at p_vaddr +
 * bias, so bias = start - offset + p_offset - p_vaddr (page offsets
 * cancel). False if no PT_LOAD covers the offset.
 */
static bool load_layout(Elf *elf, uint64_t start, uint64_t offset,
			struct hb_module *mod)
{
	size_t nph;
	bool found = false;

	if (elf_getphdrnum(elf, &nph))
		return false;
	for (size_t i = 0; i < nph && !found; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD)
			continue;
		if (offset >= (ph.p_offset & ~0xfffull) &&
		    offset < ph.p_offset + ph.p_filesz) {
			mod->bias = start - offset + ph.p_offset - ph.p_vaddr;
			found = true;
		}
	}
	if (!found)
		return false;
	mod->nsegments = 0;
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD ||
		    mod->nsegments ==
			sizeof(mod->segments) / sizeof(mod->segments[0]))
			continue;
		mod->segments[mod->nsegments].start = ph.p_vaddr + mod->bias;
		mod->segments[mod->nsegments].size = ph.p_memsz;
		mod->nsegments++;
	}
	return true;
}

struct map_line {
	uint64_t start, end, offset;
	char perms[8];
	dev_t dev;
	ino_t ino;
	const char *path;
};

static bool parse_line(char *line, struct map_line *l)
{
	unsigned long long start, end, offset, ino;
	unsigned maj, min;
	int path_at = 0;
	char *p;

	if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %n", &start, &end,
		   l->perms, &offset, &maj, &min, &ino, &path_at) < 7 ||
	    !path_at)
		return false;
	l->start = start;
	l->end = end;
	l->offset = offset;
	l->dev = makedev(maj, min);
	l->ino = (ino_t)ino;
	p = line + path_at;
	if (*p != '/' || ino == 0)
		return false; /* anonymous, [heap], [vdso], ... */
	l->path = p;
	return true;
}

static struct hb_module *module_for(struct hb_modules *m,
				    const struct map_line *l)
{
	for (size_t i = 0; i < m->nmods; i++) {
		struct hb_module *mod = &m->mods[i];

		if (mod->dev != l->dev || mod->ino != l->ino)
			continue;
		for (unsigned s = 0; s < mod->nsegments; s++)
			if (l->start >= (mod->segments[s].start & ~0xfffull) &&
			    l->start <
				mod->segments[s].start + mod->segments[s].size)
				return mod;
	}
	return NULL;
}

static int add_mapping(struct hb_modules *m, const struct map_line *l,
		       size_t module)
{
	size_t i;

	for (i = 0; i < m->nmaps; i++)
		if (m->maps[i].start == l->start)
			return 0;
	if (m->nmaps == m->maps_cap) {
		size_t cap = m->maps_cap ? m->maps_cap * 2 : 64;
		void *p = realloc(m->maps, cap * sizeof(*m->maps));

		if (!p)
			return -ENOMEM;
		m->maps = p;
		m->maps_cap = cap;
	}
	for (i = m->nmaps; i > 0 && m->maps[i - 1].start > l->start; i--)
		m->maps[i] = m->maps[i - 1];
	m->maps[i] = (struct hb_mapping){l->start, l->end, module};
	m->nmaps++;
	return 0;
}

static bool same_file(const char *path, const struct map_line *l)
{
	struct stat st;

	return !stat(path, &st) && st.st_dev == l->dev && st.st_ino == l->ino;
}

/*
 * The path the log names the module by: one that reaches the very file
 * from here, for symbolizing it later. The kernel writes maps' paths as
 * the reader sees them when it can (a chroot); a process in another mount
 * namespace may name a file we reach only through /proc/PID/root (while
 * it lives). Takes `path`; NULL on out of memory.
 */
static char *reachable_path(const struct hb_modules *m,
			    const struct map_line *l, char *path)
{
	char *rooted;

	if (!m->root[0] || same_file(path, l))
		return path;
	if (asprintf(&rooted, "%s%s", m->root, path) < 0) {
		free(path);
		return NULL;
	}
	if (same_file(rooted, l)) {
		free(path);
		return rooted;
	}
	free(rooted);
	return path; /* replaced since, or an overlay's inode: as it says */
}

/* A module for a mapping not seen before; 1 if added, 0 if not ELF. */
static int add_module(struct hb_modules *m, const struct map_line *l)
{
	char open_path[4200], *path;
	struct hb_module mod = {.fd = -1, .dev = l->dev, .ino = l->ino};
	size_t plen = strlen(l->path);
	Elf *elf;
	int fd;

	path = strndup(l->path, plen);
	if (!path)
		return -ENOMEM;
	if (plen > 10 && !strcmp(path + plen - 10, " (deleted)"))
		path[plen - 10] = 0;
	elf = NULL;
	if (m->pid) {
		snprintf(open_path, sizeof(open_path),
			 "/proc/%d/map_files/%llx-%llx", (int)m->pid,
			 (unsigned long long)l->start,
			 (unsigned long long)l->end);
		elf = open_elf(open_path, &fd);
	}
	if (!elf) {
		snprintf(open_path, sizeof(open_path), "%s", path);
		elf = open_elf(open_path, &fd);
	}
	if (!elf && m->root[0]) {
		snprintf(open_path, sizeof(open_path), "%s%s", m->root, path);
		elf = open_elf(open_path, &fd);
	}
	if (!elf || !load_layout(elf, l->start, l->offset, &mod)) {
		if (elf) {
			elf_end(elf);
			close(fd);
		}
		free(path);
		return 0;
	}
	read_build_id(elf, &mod);
	elf_end(elf);
	close(fd);
	mod.open_path = strdup(open_path);
	if (!(path = reachable_path(m, l, path))) {
		free(mod.open_path);
		return -ENOMEM;
	}
	mod.path = path;
	if (!mod.path || !mod.open_path) {
		free(mod.path);
		free(mod.open_path);
		return -ENOMEM;
	}
	if (m->nmods == m->mods_cap) {
		size_t cap = m->mods_cap ? m->mods_cap * 2 : 32;
		void *p = realloc(m->mods, cap * sizeof(*m->mods));

		if (!p) {
			free(mod.path);
			free(mod.open_path);
			return -ENOMEM;
		}
		m->mods = p;
		m->mods_cap = cap;
	}
	m->mods[m->nmods++] = mod;
	return 1;
}

int hb_modules_scan(struct hb_modules *m)
{
	char path[64], line[4400];
	int added = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps",
		 (int)(m->pid ? m->pid : getpid()));
	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? -ESRCH : -errno;
	while (fgets(line, sizeof(line), f)) {
		struct map_line l;
		struct hb_module *mod;
		size_t len = strlen(line);

		if (len && line[len - 1] == '\n')
			line[len - 1] = 0;
		if (!parse_line(line, &l))
			continue;
		mod = module_for(m, &l);
		if (!mod) {
			int r = add_module(m, &l);

			if (r < 0) {
				fclose(f);
				return r;
			}
			if (r == 0)
				continue;
			added++;
			mod = &m->mods[m->nmods - 1];
		}
		if (l.perms[2] == 'x' &&
		    add_mapping(m, &l, (size_t)(mod - m->mods)) < 0) {
			fclose(f);
			return -ENOMEM;
		}
	}
	fclose(f);
	return added;
}

struct hb_module *hb_modules_find(struct hb_modules *m, uint64_t addr)
{
	size_t lo = 0, hi = m->nmaps;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->maps[mid].start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0 || addr >= m->maps[lo - 1].end)
		return NULL;
	return &m->mods[m->maps[lo - 1].module];
}

Elf *hb_module_elf(struct hb_module *mod)
{
	if (!mod->elf_tried) {
		mod->elf_tried = true;
		mod->elf = open_elf(mod->open_path, &mod->fd);
	}
	return mod->elf;
}

/* Symbol value -> file offset, through the PT_LOAD that holds it. */
static uint64_t file_offset(Elf *elf, uint64_t value)
{
	size_t nph;

	if (elf_getphdrnum(elf, &nph))
		return 0;
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;

		if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_LOAD &&
		    (ph.p_flags & PF_X) && value >= ph.p_vaddr &&
		    value < ph.p_vaddr + ph.p_filesz)
			return value - ph.p_vaddr + ph.p_offset;
	}
	return 0;
}

static void scan_symbols(Elf *elf, Elf_Scn *scn, const GElf_Shdr *sh,
			 uint64_t values[HB_NFUNCS])
{
	Elf_Data *data = elf_getdata(scn, NULL);
	size_t n = sh->sh_entsize ? sh->sh_size / sh->sh_entsize : 0;

	for (size_t i = 0; data && i < n; i++) {
		GElf_Sym sym;
		const char *name;
		int type;

		if (!gelf_getsym(data, (int)i, &sym) ||
		    sym.st_shndx == SHN_UNDEF || !sym.st_value)
			continue;
		type = GELF_ST_TYPE(sym.st_info);
		if (type != STT_FUNC && type != STT_GNU_IFUNC)
			continue;
		name = elf_strptr(elf, sh->sh_link, sym.st_name);
		if (!name)
			continue;
		for (unsigned f = 0; f < HB_NFUNCS; f++)
			if (!values[f] && !strcmp(name, hb_alloc_functions[f]))
				values[f] = sym.st_value;
	}
}

/*
 * glibc's free starts with `test %rdi,%rdi; je`: an instruction the
 * kernel cannot emulate, so a probe there costs a second trap (single
 * step). The push that follows runs only for non-NULL pointers, with the
 * stack pointer and arguments of the entry, and is emulated: probe there.
 * Returns how far past the entry to probe (0: at the entry).
 */
static unsigned free_probe_skip(Elf *elf, uint64_t offset)
{
	unsigned char code[16];
	size_t size;
	const char *file = elf_rawfile(elf, &size);
	unsigned at;

	if (!file || offset + sizeof(code) > size)
		return 0;
	memcpy(code, file + offset, sizeof(code));
	if (code[0] != 0x48 || code[1] != 0x85 || code[2] != 0xff)
		return 0;
	if (code[3] == 0x74)
		at = 5;
	else if (code[3] == 0x0f && code[4] == 0x84)
		at = 9;
	else
		return 0;
	if ((code[at] >= 0x50 && code[at] <= 0x57) ||
	    (code[at] == 0x41 && code[at + 1] >= 0x50 && code[at + 1] <= 0x57))
		return at;
	return 0;
}

int hb_elf_alloc_offsets(const char *path, uint64_t offsets[HB_NFUNCS],
			 unsigned *free_skip)
{
	uint64_t values[HB_NFUNCS] = {0};
	Elf_Scn *scn = NULL;
	int fd, count = 0;
	Elf *elf = open_elf(path, &fd);

	if (!elf)
		return fd < 0 ? -errno : -ENOEXEC;
	/* .dynsym first: what the dynamic linker binds; .symtab adds the
	 * malloc of a static executable. */
	for (int pass = 0; pass < 2; pass++) {
		while ((scn = elf_nextscn(elf, scn))) {
			GElf_Shdr sh;

			if (gelf_getshdr(scn, &sh) &&
			    sh.sh_type == (pass ? SHT_SYMTAB : SHT_DYNSYM))
				scan_symbols(elf, scn, &sh, values);
		}
	}
	for (unsigned f = 0; f < HB_NFUNCS; f++) {
		offsets[f] = values[f] ? file_offset(elf, values[f]) : 0;
		for (unsigned g = 0; g < f && offsets[f]; g++)
			if (offsets[g] == offsets[f])
				offsets[f] = 0;
		count += offsets[f] != 0;
	}
	*free_skip = offsets[HB_FUNC_FREE]
			 ? free_probe_skip(elf, offsets[HB_FUNC_FREE])
			 : 0;
	elf_end(elf);
	close(fd);
	return count;
}

bool hb_elf_internal_free_range(const char *path, uint64_t range[2])
{
	Elf_Scn *scn = NULL;
	GElf_Ehdr eh;
	int fd;
	Elf *elf = open_elf(path, &fd);
	bool found = false;

	if (!elf)
		return false;
	while (gelf_getehdr(elf, &eh) && eh.e_type == ET_EXEC && !found &&
	       (scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *data;
		size_t n;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_SYMTAB ||
		    !sh.sh_entsize || !(data = elf_getdata(scn, NULL)))
			continue;
		n = sh.sh_size / sh.sh_entsize;
		for (size_t i = 0; i < n && !found; i++) {
			GElf_Sym sym;
			const char *name;

			if (gelf_getsym(data, (int)i, &sym) &&
			    GELF_ST_TYPE(sym.st_info) == STT_FUNC &&
			    (name = elf_strptr(elf, sh.sh_link, sym.st_name)) &&
			    !strcmp(name, "tcache_thread_shutdown")) {
				range[0] = sym.st_value;
				range[1] = sym.st_value + sym.st_size;
				found = true;
			}
		}
	}
	elf_end(elf);
	close(fd);
	return found;
}

int hb_elf_dynamic(const char *path)
{
	int fd, dynamic = 0;
	Elf *elf = open_elf(path, &fd);
	size_t nph;

	if (!elf)
		return -1;
	if (!elf_getphdrnum(elf, &nph))
		for (size_t i = 0; i < nph; i++) {
			GElf_Phdr ph;

			if (gelf_getphdr(elf, (int)i, &ph) &&
			    ph.p_type == PT_INTERP)
				dynamic = 1;
		}
	elf_end(elf);
	close(fd);
	return dynamic;
}
