/*
 * agent/faults.c - fault injection: which allocation calls to refuse on
 * purpose (agent/faults.h says what one call is).
 *
 * The keys of HALLOC_AGENT (agent/transport.h), all plain numbers so that
 * any reader of the variable can skip them:
 *   fail_after=N   the process's N-th allocation call and every later one
 *                  fail; calls are numbered from 1 across all threads, in
 *                  the order they reach the agent
 *   fail_rate=PPB  each call fails with probability PPB / 1e9 ...
 *   seed=S         ... drawn from S: a thread's k-th call fails or not by
 *                  a hash of (S, the thread's number, k), threads numbered
 *                  in the order of their first allocation call. The same
 *                  seed gives the same failures to a thread that makes the
 *                  same calls and comes in the same place, whatever the
 *                  other threads do meanwhile.
 *   fail_at=A,fail_len=L  (repeated, sorted) calls whose site lies in
 *                  the object's code at link-time addresses [A, A + L)
 *                  fail: the tracer found those ranges for FILE:LINE in
 *                  its line table.
 *   fail_skip=A,fail_slen=L  (repeated, sorted) the object's code from
 *                  system headers (C++ templates): never a site.
 *   fail_exe=K     the ranges that follow are the program's, whose file
 *                  name hashes to K (FNV-1a, 62 bits, low bit set): an
 *                  image with another name (AT_EXECFN), one the program
 *                  started with exec (-f), ignores them.
 *   fail_lib=K     the ranges that follow are a library's: the one whose
 *                  file name hashes to K.
 * The site is found as the analyzer finds it: the innermost frame outside
 * the agent, the C/C++ runtime (libc, libstdc++, libgcc_s, ld.so, libm)
 * and system header code; a site in an object with no ranges never
 * matches.
 * A forked child goes on from its parent's counts at the fork; an image
 * started by exec starts again from 1.
 *
 * Everything here runs under the thread's guard and allocates nothing:
 * counters are atomics and initial-exec TLS, the object lookup is glibc's
 * lock-free _dl_find_object.
 */
#include <dlfcn.h>
#include <link.h>
#include <string.h>
#include <sys/auxv.h>

#include "agent/faults.h"

#define MAX_RANGES  64
#define MAX_SKIP    1024
#define MAX_OBJECTS 16
#define PPB	    1000000000ull
/* Agent frames at the top of a walk (as in stack.c). */
#define SKIP_MAX 8

struct range {
	uintptr_t lo, hi; /* link-time addresses, [lo, hi) */
};

unsigned ha_agent_faults_on;

static uint64_t fail_after; /* 0: off */
static bool rate_on;
static uint64_t rate_threshold; /* a draw below it fails; UINT64_MAX: all */
static bool rate_always;
static uint64_t seed;
/* The program (objects[0], key 0) and libraries with ranges; each has
 * its slices of ranges[] and skips[]. */
struct object {
	uint64_t key;
	unsigned at, nat;     /* ranges[at, at + nat) */
	unsigned skip, nskip; /* skips[skip, skip + nskip) */
};

static struct range ranges[MAX_RANGES];
static unsigned nranges;
static struct range skips[MAX_SKIP];
static unsigned nskips;
static struct object objects[MAX_OBJECTS];
static unsigned nobjects = 1;
static struct link_map *main_map;

/* Allocation calls of the process so far, alone on its cache line. */
static uint64_t calls __attribute__((aligned(64)));
static uint32_t threads; /* threads numbered so far */

static __thread uint64_t thread_calls;
static __thread uint32_t thread_no; /* 0: not numbered yet */

static bool key_is(const char *key, size_t len, const char *name)
{
	return len == strlen(name) && !strncmp(key, name, len);
}

static void set_rate(uint64_t ppb)
{
	rate_on = true;
	if (ppb >= PPB)
		rate_always = true;
	else
		rate_threshold =
		    (uint64_t)(((unsigned __int128)ppb << 64) / PPB);
}

/* Whether this image runs the program the tracer looked the line up in. */
static bool same_program(uint64_t key)
{
	const char *path = (const char *)getauxval(AT_EXECFN);

	return path && halloc_library_key(path) == key;
}

/* Another program's lines: keep the libraries' ranges only. */
static void forget_program(void)
{
	struct object *p = &objects[0];

	memmove(ranges, ranges + p->nat, (nranges - p->nat) * sizeof(*ranges));
	memmove(skips, skips + p->nskip, (nskips - p->nskip) * sizeof(*skips));
	for (unsigned i = 1; i < nobjects; i++) {
		objects[i].at -= p->nat;
		objects[i].skip -= p->nskip;
	}
	nranges -= p->nat;
	nskips -= p->nskip;
	p->nat = p->nskip = 0;
}

void ha_agent_faults_init(const char *value)
{
	const char *p = value;
	/* keep: the current object has a place (else its ranges are lost) */
	bool have_at = false, have_skip = false, keep = true;
	uint64_t at = 0, skip = 0, exe_key = 0;

	const char *key;
	size_t klen;
	uint64_t v;

	/* A malformed value: agent.c refuses the whole of it. */
	while (halloc_agent_next_key(&p, &key, &klen, &v) > 0) {
		if (key_is(key, klen, "fail_after") && v)
			fail_after = v;
		else if (key_is(key, klen, "fail_rate"))
			set_rate(v);
		else if (key_is(key, klen, "seed"))
			seed = v;
		else if (key_is(key, klen, "fail_at")) {
			at = v;
			have_at = true;
		} else if (key_is(key, klen, "fail_len") && have_at && v &&
			   keep && nranges < MAX_RANGES) {
			ranges[nranges].lo = at;
			ranges[nranges].hi = at + v;
			nranges++;
			objects[nobjects - 1].nat++;
			have_at = false;
		} else if (key_is(key, klen, "fail_skip")) {
			skip = v;
			have_skip = true;
		} else if (key_is(key, klen, "fail_slen") && have_skip &&
			   keep && nskips < MAX_SKIP) {
			skips[nskips].lo = skip;
			skips[nskips].hi = skip + v;
			nskips++;
			objects[nobjects - 1].nskip++;
			have_skip = false;
		} else if (key_is(key, klen, "fail_exe")) {
			exe_key = v;
		} else if (key_is(key, klen, "fail_lib")) {
			keep = v && nobjects < MAX_OBJECTS;
			if (keep) {
				objects[nobjects].key = v;
				objects[nobjects].at = nranges;
				objects[nobjects].skip = nskips;
				nobjects++;
			}
		}
	}
	if (exe_key && !same_program(exe_key))
		forget_program();
	if (nranges)
		main_map = _r_debug.r_map; /* the program comes first */
	ha_agent_faults_on = fail_after || rate_on || (nranges && main_map);
}

/* libc, libstdc++, libgcc_s, ld.so, libm: as analyzer/model.c says. */
static bool runtime_object(const char *path)
{
	static const char *const names[] = {
	    "libc.so", "libstdc++.so", "libgcc_s.so", "ld-linux", "libm.so"};
	const char *base = strrchr(path, '/');

	base = base ? base + 1 : path;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strncmp(base, names[i], strlen(names[i])))
			return true;
	return false;
}

/* Binary search: the tracer sends ranges sorted and apart. */
static bool in_ranges(const struct range *r, unsigned n, uintptr_t addr)
{
	unsigned lo = 0, hi = n;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (addr < r[mid].lo)
			hi = mid;
		else if (addr >= r[mid].hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

/* The object with ranges that map is, or NULL. */
static const struct object *object_of(const struct link_map *map)
{
	uint64_t key;

	if (map == main_map)
		return &objects[0];
	if (nobjects == 1 || !map->l_name)
		return NULL;
	key = halloc_library_key(map->l_name);
	for (unsigned i = 1; i < nobjects; i++)
		if (objects[i].key == key)
			return &objects[i];
	return NULL;
}

/* Whether the call's site is one of the lines asked for. */
static bool site_matches(struct ha_agent_thread *t)
{
	uintptr_t frames[HALLOC_DEPTH_MAX + SKIP_MAX];
	unsigned n, i;

	n = ha_agent_unwind(t->here.rip ? &t->here : NULL, frames,
			    ha_agent.cfg.depth + SKIP_MAX, NULL, NULL);
	for (i = 0; i < n; i++) {
		/* A return address: the call is the byte before it. */
		uintptr_t pc = frames[i] - 1;
		struct dl_find_object o;

		if (ha_agent_self_frame(frames[i]))
			continue;
		if (_dl_find_object((void *)pc, &o) || !o.dlfo_link_map)
			return false;
		if (!runtime_object(o.dlfo_link_map->l_name)) {
			const struct object *ob = object_of(o.dlfo_link_map);
			uintptr_t addr = pc - o.dlfo_link_map->l_addr;

			if (!ob)
				return false;
			if (in_ranges(ranges + ob->at, ob->nat, addr))
				return true;
			if (in_ranges(skips + ob->skip, ob->nskip, addr))
				continue;
			return false;
		}
	}
	return false;
}

static bool rate_fails(void)
{
	uint64_t draw;

	if (!thread_no)
		thread_no = __atomic_add_fetch(&threads, 1, __ATOMIC_RELAXED);
	draw = ha_agent_mix64(ha_agent_mix64(seed ^ ((uint64_t)thread_no << 32)) ^ ++thread_calls);
	return rate_always || draw < rate_threshold;
}

unsigned ha_agent_fault_decide(struct ha_agent_thread *t, unsigned fn,
			       size_t size)
{
	unsigned why = 0;

	/* calloc's n * size overflowed: it fails in glibc, not a call. */
	if (fn == HALLOC_FN_CALLOC && size == SIZE_MAX)
		return 0;
	if (fail_after &&
	    __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED) >= fail_after)
		why = HALLOC_REFUSED_FAIL_AFTER;
	/* Every option counts the call, whichever refuses it. */
	if (rate_on && rate_fails() && !why)
		why = HALLOC_REFUSED_FAIL_RATE;
	if (!why && nranges && main_map && site_matches(t))
		why = HALLOC_REFUSED_FAIL_AT;
	return why;
}
