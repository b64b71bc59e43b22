/*
 * agent/modules.c - which objects are mapped, for symbolizing stacks later.
 *
 * A MODULE_LOAD record (bias, path, build-id, PT_LOAD ranges) goes out for
 * every object dl_iterate_phdr lists - the program, the vDSO, ld.so,
 * libraries - when the stream starts, and for new ones later; MODULE_UNLOAD
 * when one is gone. Known modules live in a small mmap'd table keyed by
 * (bias, path).
 *
 * When to look again: after our dlclose() (an unload, detected at once so
 * that stack ids never outlive the addresses' meaning: the generation is
 * bumped), and whenever a new stack holds a frame in an object the table
 * does not know - checked with _dl_find_object, lock-free. That catches
 * every dlopen before any stack that points into the new object is
 * published, including allocations made by its constructors, without
 * wrapping dlopen (a wrapper would make glibc see libhalloc as the caller
 * and apply our RUNPATH and $ORIGIN instead of the caller's).
 *
 * Locking: scans are serialized by one mutex. From inside an allocation the
 * agent waits for it only a bounded time: the allocating thread may hold a
 * loader lock that the scanning thread needs inside dl_iterate_phdr.
 */
#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "agent/agent.h"

struct module {
	uintptr_t bias;
	const Elf64_Phdr *phdr;
	uint32_t phnum;
	uint32_t id;
	uint32_t name_off; /* our copy of the loader's name, in names[] */
	uint32_t name_len;
	bool loaded;
	bool seen;
	bool main; /* the program: its name is "", we write its path */
};

#define MAX_MODULES  4096
#define NAMES_SIZE   ((size_t)1 << 20)
#define MAX_SEGMENTS 16

static struct module *mods;
static uint32_t nmods; /* atomic: readers see whole entries below it */
static char *names;
static size_t names_used;
static uint32_t next_id = 1;
static uint32_t generation; /* atomic */
static uint64_t seen_adds;  /* dl_iterate_phdr's counters at the last scan */
static uint64_t seen_subs;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

struct scan {
	struct ha_agent_thread *t;
	bool first;
	uint64_t adds;
	uint64_t subs;
};

int ha_agent_modules_init(void)
{
	mods = mmap(NULL, MAX_MODULES * sizeof(*mods), PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	names = mmap(NULL, NAMES_SIZE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mods == MAP_FAILED || names == MAP_FAILED)
		return -1;
	return 0;
}

uint32_t ha_agent_modules_generation(void)
{
	return __atomic_load_n(&generation, __ATOMIC_RELAXED);
}

static size_t align_up(size_t n, size_t align)
{
	return (n + align - 1) & ~(align - 1);
}

/* The GNU build-id note, from the object's PT_NOTE segments in memory. */
static size_t build_id(uintptr_t bias, const Elf64_Phdr *phdr, unsigned phnum,
		       const unsigned char **out)
{
	unsigned i;

	for (i = 0; i < phnum; i++) {
		const unsigned char *p, *end;
		size_t align;

		if (phdr[i].p_type != PT_NOTE)
			continue;
		p = (const unsigned char *)(bias + phdr[i].p_vaddr);
		end = p + phdr[i].p_memsz;
		align = phdr[i].p_align == 8 ? 8 : 4;
		while ((size_t)(end - p) >= sizeof(Elf64_Nhdr)) {
			const Elf64_Nhdr *nh = (const Elf64_Nhdr *)p;
			size_t desc =
			    sizeof(*nh) + align_up(nh->n_namesz, align);
			size_t next = desc + align_up(nh->n_descsz, align);

			if (desc + nh->n_descsz > (size_t)(end - p))
				break;
			if (nh->n_type == NT_GNU_BUILD_ID &&
			    nh->n_namesz == 4 &&
			    !memcmp(p + sizeof(*nh), "GNU", 4)) {
				*out = p + desc;
				return nh->n_descsz;
			}
			if (next > (size_t)(end - p))
				break;
			p += next;
		}
	}
	*out = NULL;
	return 0;
}

static void emit_load(struct ha_agent_thread *t, const struct module *m)
{
	struct ha_agent_segment seg[MAX_SEGMENTS];
	const unsigned char *bid;
	const char *path = names + m->name_off;
	size_t bid_len, path_len = m->name_len;
	unsigned i, nseg = 0;

	for (i = 0; i < m->phnum && nseg < MAX_SEGMENTS; i++) {
		if (m->phdr[i].p_type != PT_LOAD)
			continue;
		seg[nseg].start = m->bias + m->phdr[i].p_vaddr;
		seg[nseg].size = m->phdr[i].p_memsz;
		nseg++;
	}
	bid_len = build_id(m->bias, m->phdr, m->phnum, &bid);
	if (m->main)
		path = ha_agent_exe_path(&path_len);
	ha_agent_put_module_load(t, m->id, m->bias, path, path_len, bid,
				 bid_len, seg, nseg);
}

static struct module *find_loaded(uintptr_t bias, const char *name)
{
	uint32_t i;

	for (i = 0; i < nmods; i++) {
		struct module *m = &mods[i];

		/*
		 * By name, not by the loader's name pointer: after a dlclose
		 * another library may get both the address and the pointer.
		 */
		if (m->loaded && m->bias == bias &&
		    !strcmp(names + m->name_off, name))
			return m;
	}
	return NULL;
}

static int scan_one(struct dl_phdr_info *info, size_t size, void *data)
{
	struct scan *sc = data;
	const char *name = info->dlpi_name ? info->dlpi_name : "";
	size_t len = strlen(name);
	bool first = sc->first;
	struct module *m;

	sc->first = false;
	if (first && size >= offsetof(struct dl_phdr_info, dlpi_subs) +
				 sizeof(info->dlpi_subs)) {
		sc->adds = info->dlpi_adds;
		sc->subs = info->dlpi_subs;
	}
	m = find_loaded(info->dlpi_addr, name);
	if (m) {
		m->seen = true;
		return 0;
	}
	/* Full: such a module cannot be tracked (its stacks stay unnamed). */
	if (nmods == MAX_MODULES || names_used + len + 1 > NAMES_SIZE)
		return 0;
	m = &mods[nmods];
	m->bias = info->dlpi_addr;
	m->phdr = info->dlpi_phdr;
	m->phnum = info->dlpi_phnum;
	m->id = next_id++;
	m->name_off = (uint32_t)names_used;
	m->name_len = (uint32_t)len;
	memcpy(names + names_used, name, len + 1);
	names_used += len + 1;
	m->loaded = true;
	m->seen = true;
	/* glibc lists the program first, with an empty name. */
	m->main = first && !len;
	__atomic_store_n(&nmods, nmods + 1, __ATOMIC_RELEASE);
	emit_load(sc->t, m);
	return 0;
}

static void rescan_locked(struct ha_agent_thread *t)
{
	struct scan sc = {.t = t, .first = true};
	uint32_t i;

	for (i = 0; i < nmods; i++)
		mods[i].seen = false;
	dl_iterate_phdr(scan_one, &sc);
	for (i = 0; i < nmods; i++) {
		if (!mods[i].loaded || mods[i].seen)
			continue;
		mods[i].loaded = false;
		__atomic_fetch_add(&generation, 1, __ATOMIC_RELAXED);
		ha_agent_put_module_unload(t, mods[i].id);
	}
	__atomic_store_n(&seen_adds, sc.adds, __ATOMIC_RELAXED);
	__atomic_store_n(&seen_subs, sc.subs, __ATOMIC_RELAXED);
}

void ha_agent_modules_closing(void)
{
	__atomic_fetch_add(&generation, 1, __ATOMIC_RELAXED);
}

void ha_agent_modules_rescan(struct ha_agent_thread *t)
{
	pthread_mutex_lock(&lock);
	rescan_locked(t);
	pthread_mutex_unlock(&lock);
}

static int counters(struct dl_phdr_info *info, size_t size, void *data)
{
	struct scan *sc = data;

	if (size >= offsetof(struct dl_phdr_info, dlpi_subs) +
			sizeof(info->dlpi_subs)) {
		sc->adds = info->dlpi_adds;
		sc->subs = info->dlpi_subs;
	}
	return 1; /* the first object is enough */
}

/* Did objects come or go since the last scan? */
static bool changed(struct scan *sc)
{
	dl_iterate_phdr(counters, sc);
	return sc->adds != __atomic_load_n(&seen_adds, __ATOMIC_RELAXED) ||
	       sc->subs != __atomic_load_n(&seen_subs, __ATOMIC_RELAXED);
}

static bool known(const struct link_map *lm)
{
	uint32_t i, n = __atomic_load_n(&nmods, __ATOMIC_ACQUIRE);

	for (i = 0; i < n; i++)
		if (mods[i].loaded && mods[i].bias == lm->l_addr &&
		    !strcmp(names + mods[i].name_off, lm->l_name))
			return true;
	return false;
}

void ha_agent_modules_cover(struct ha_agent_thread *t, const uintptr_t *frames,
			    unsigned n)
{
	const struct link_map *last = NULL;
	struct dl_find_object fo;
	struct scan sc = {.t = t};
	struct timespec until;
	unsigned i;

	for (i = 0; i < n; i++) {
		/* A return address: the call is the byte before it. */
		if (_dl_find_object((void *)(frames[i] - 1), &fo) == 0) {
			if (fo.dlfo_link_map == last)
				continue;
			if (known(fo.dlfo_link_map)) {
				last = fo.dlfo_link_map;
				continue;
			}
		}
		break;
	}
	if (i == n)
		return;
	/*
	 * An object we do not know, or code outside any object (JIT, or an
	 * object whose dlopen has not finished). Scan only if the loader's
	 * counters moved: cheap, the iteration stops at the first object.
	 */
	if (!changed(&sc))
		return;
	/*
	 * Another thread may be scanning: wait for it, so that its
	 * MODULE_LOAD records come before our stack. But only so long: this
	 * thread may hold the lock that the scan needs (a dl_iterate_phdr
	 * callback that allocates holds the loader's), and a late MODULE_LOAD
	 * beats a deadlock.
	 */
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += 20 * 1000 * 1000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	if (pthread_mutex_timedlock(&lock, &until))
		return;
	if (changed(&sc))
		rescan_locked(t);
	pthread_mutex_unlock(&lock);
}

void ha_agent_modules_fork_prepare(void)
{
	pthread_mutex_lock(&lock);
}

void ha_agent_modules_fork_parent(void)
{
	pthread_mutex_unlock(&lock);
}

void ha_agent_modules_fork_child(void)
{
	pthread_mutex_init(&lock, NULL);
}

/*
 * The first records of a forked child's stream: every module it inherited.
 * From the table, not dl_iterate_phdr: glibc does not reset the loader's
 * dl_iterate_phdr lock in a child, and another thread of the parent may
 * have held it at the fork.
 */
void ha_agent_modules_announce(struct ha_agent_thread *t)
{
	uint32_t i;

	pthread_mutex_lock(&lock);
	for (i = 0; i < nmods; i++)
		if (mods[i].loaded)
			emit_load(t, &mods[i]);
	pthread_mutex_unlock(&lock);
}
