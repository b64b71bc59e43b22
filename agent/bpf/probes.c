/*
 * agent/bpf/probes.c - what the eBPF attach probes and how: the files of
 * the target that define the allocator (the libraries it maps for -p; the
 * program itself if static, and the C library for --bpf), the kernel and
 * privilege checks, loading the CO-RE object through its skeleton with
 * its settings, and the uprobes. See session.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "halloc.skel.h" /* generated: build/bpf/ */
#include "agent/bpf/session.h"

/* libbpf explains failures on stderr; we say one line instead. */
static int quiet_libbpf(enum libbpf_print_level level, const char *fmt,
			va_list ap)
{
	return 0;
}

/* ---- what to probe ------------------------------------------------------- */

/* Adds the file if it defines malloc and free. */
static void consider(struct hb_targets *t, const char *path, bool program)
{
	struct hb_target_file *f = &t->files[t->n];

	if (t->n == sizeof(t->files) / sizeof(t->files[0]))
		return;
	if (hb_elf_alloc_offsets(path, f->offsets, &f->free_skip) <= 0 ||
	    !f->offsets[HALLOC_FN_MALLOC] || !f->offsets[HB_FUNC_FREE])
		return;
	f->shared = !program;
	if (program)
		hb_elf_internal_free_range(path, t->internal_free);
	if ((f->path = strdup(path)))
		t->n++;
}

void hb_targets_free(struct hb_targets *t)
{
	for (unsigned i = 0; i < t->n; i++)
		free(t->files[i].path);
	t->n = 0;
}

/* Our own C library: the one a program we start will load (the probes
 * are on the file, whoever maps it). */
static void consider_own_libc(struct hb_targets *t)
{
	struct hb_modules self;

	hb_modules_init(&self, 0);
	if (hb_modules_scan(&self) > 0)
		for (size_t i = 0; i < self.nmods; i++)
			if (strstr(self.mods[i].path, "/libc.so") ||
			    strstr(self.mods[i].path, "/libc-"))
				consider(t, self.mods[i].path, false);
	hb_modules_free(&self);
}

static enum hb_result find_pid_targets(struct hb_session *s,
				       struct hb_targets *t,
				       struct hb_diag *diag)
{
	pid_t pid = s->config->pid;
	int err = hb_proc_read(pid, &s->proc);
	struct stat st;
	char exe[64];

	if (err == ESRCH)
		return hb_diag_set(diag, HB_ERR_NO_PROCESS,
				   "no process with pid '%d'", (int)pid);
	if (err)
		return hb_diag_set(diag, HB_ERR_NO_PROCESS,
				   "cannot read process '%d': %s", (int)pid,
				   strerror(err));
	if (s->proc.state == 'Z' || s->proc.state == 'X')
		return hb_diag_set(diag, HB_ERR_NO_PROCESS,
				   "process '%d' has exited (it is a zombie)",
				   (int)pid);
	if (pid == getpid())
		return hb_diag_set(diag, HB_ERR_USAGE,
				   "cannot trace halloc-trace itself");
	err = hb_proc_may_trace(pid);
	if (err == ESRCH)
		return hb_diag_set(diag, HB_ERR_NO_PROCESS,
				   "no process with pid '%d'", (int)pid);
	if (err)
		return hb_diag_set(diag, HB_ERR_PERMISSION,
				   "not permitted to trace process '%d' "
				   "(it needs the same user or CAP_SYS_PTRACE)",
				   (int)pid);
	s->pid = pid;
	hb_modules_init(&s->modules, pid);
	err = hb_modules_scan(&s->modules);
	if (err < 0)
		return hb_diag_set(
		    diag, HB_ERR_NO_PROCESS,
		    "cannot read the memory map of process '%d': %s", (int)pid,
		    strerror(-err));
	snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)pid);
	if (stat(exe, &st))
		memset(&st, 0, sizeof(st));
	for (size_t i = 0; i < s->modules.nmods; i++) {
		const struct hb_module *mod = &s->modules.mods[i];

		consider(t, mod->open_path,
			 mod->dev == st.st_dev && mod->ino == st.st_ino);
	}
	if (!t->n)
		return hb_diag_set(diag, HB_ERR_NO_ALLOCATOR,
				   "no allocator in process '%d': none of the "
				   "files it maps defines malloc and free",
				   (int)pid);
	return HB_OK;
}

static enum hb_result find_program_targets(struct hb_session *s,
					   struct hb_targets *t,
					   struct hb_diag *diag)
{
	enum hb_result r =
	    hb_spawn_resolve(s->config->argv[0], &s->program, diag);

	if (r)
		return r;
	consider(t, s->program, true);	     /* static, or its own malloc */
	if (hb_elf_dynamic(s->program) != 0) /* or a script */
		consider_own_libc(t);
	if (!t->n)
		return hb_diag_set(diag, HB_ERR_NO_ALLOCATOR,
				   "no allocator to probe for '%s': it is "
				   "statically linked without malloc symbols",
				   s->config->argv[0]);
	return HB_OK;
}

enum hb_result hb_find_targets(struct hb_session *s, struct hb_targets *t,
			       struct hb_diag *diag)
{
	return s->config->pid ? find_pid_targets(s, t, diag)
			      : find_program_targets(s, t, diag);
}

/* ---- eBPF ---------------------------------------------------------------- */

enum hb_result hb_check_kernel(struct hb_diag *diag)
{
	if (access("/sys/kernel/btf/vmlinux", R_OK))
		return hb_diag_set(
		    diag, HB_ERR_KERNEL,
		    "this kernel has no BTF ('/sys/kernel/btf/vmlinux'): "
		    "the eBPF attach needs CONFIG_DEBUG_INFO_BTF");
	if (access("/sys/bus/event_source/devices/uprobe/type", R_OK))
		return hb_diag_set(
		    diag, HB_ERR_KERNEL,
		    "this kernel has no uprobes (CONFIG_UPROBE_EVENTS)");
	return HB_OK;
}

enum hb_result hb_bpf_error(struct hb_diag *diag, const char *what, int err)
{
	if (err < 0)
		err = -err;
	if (err == EPERM || err == EACCES)
		return hb_diag_set(diag, HB_ERR_PRIVILEGE,
				   "%s: %s (eBPF needs root, or CAP_BPF and "
				   "CAP_PERFMON)",
				   what, strerror(err));
	return hb_diag_set(diag, HB_ERR_BPF, "%s: %s", what, strerror(err));
}

static unsigned ring_bytes(const struct hb_session *s)
{
	unsigned mib = s->config->ring_mib;

	if (!mib)
		mib = s->config->aggregate		? 1
		      : s->stack_mode == HB_STACK_DWARF ? 64
							: 16;
	/* A power of two, as the ring buffer wants. */
	for (unsigned p = 1; p <= 1024; p *= 2)
		if (p >= mib)
			return p << 20;
	return 1024u << 20;
}

/* Events between two wakeups of the reader, less one: about a sixteenth of
 * the ring, at the average event size of the stack mode (an allocation in
 * DWARF mode carries its stack copy; frees are small). */
static uint64_t wakeup_mask(const struct hb_session *s)
{
	uint64_t avg =
	    s->stack_mode == HB_STACK_DWARF ? s->stack_bytes / 2 + 128 : 256;
	uint64_t n = ring_bytes(s) / 16 / avg, p = 1;

	while (p * 2 <= n)
		p *= 2;
	return p - 1;
}

enum hb_result hb_load(struct hb_session *s, const struct hb_targets *t,
		       struct hb_diag *diag)
{
	struct halloc_bpf *skel;
	int err;

	libbpf_set_print(quiet_libbpf);
	skel = halloc_bpf__open();
	if (!skel)
		return hb_bpf_error(diag, "cannot open the eBPF object", errno);
	s->skel = skel;
	skel->rodata->target_tgid = (__u32)s->pid;
	skel->rodata->stack_mode = (__u32)s->stack_mode;
	skel->rodata->stack_depth = s->depth;
	skel->rodata->stack_bytes = s->stack_bytes;
	skel->rodata->aggregate = s->config->aggregate;
	skel->rodata->probes_only = s->config->probes_only;
	skel->rodata->wakeup_mask = wakeup_mask(s);
	skel->rodata->internal_free_lo = t->internal_free[0];
	skel->rodata->internal_free_hi = t->internal_free[1];
	bpf_map__set_max_entries(skel->maps.events, ring_bytes(s));
	if (!s->config->aggregate) { /* keep the unused maps small */
		bpf_map__set_max_entries(skel->maps.live, 1);
		bpf_map__set_max_entries(skel->maps.sites, 1);
		bpf_map__set_max_entries(skel->maps.stacks, 1);
	}
	err = halloc_bpf__load(skel);
	if (err)
		return hb_bpf_error(diag, "cannot load the eBPF programs", err);
	return HB_OK;
}

static enum hb_result add_link(struct hb_session *s, struct bpf_link *link,
			       struct hb_diag *diag, const char *what)
{
	if (!link)
		return hb_bpf_error(diag, what, errno);
	if (s->nlinks == s->links_cap) {
		size_t cap = s->links_cap ? 2 * s->links_cap : 32;
		void *p = realloc(s->links, cap * sizeof(*s->links));

		if (!p) {
			bpf_link__destroy(link);
			return hb_diag_set(diag, HB_ERR_NOMEM, "out of memory");
		}
		s->links = p;
		s->links_cap = cap;
	}
	s->links[s->nlinks++] = link;
	return HB_OK;
}

static struct bpf_program *entry_prog(struct halloc_bpf *skel, unsigned f)
{
	struct bpf_program *progs[HB_NFUNCS] = {
	    skel->progs.malloc_enter,	      skel->progs.calloc_enter,
	    skel->progs.realloc_enter,	      skel->progs.reallocarray_enter,
	    skel->progs.posix_memalign_enter, skel->progs.aligned_alloc_enter,
	    skel->progs.memalign_enter,	      skel->progs.valloc_enter,
	    skel->progs.pvalloc_enter,	      skel->progs.free_enter,
	};

	return progs[f];
}

/*
 * Return probes first (and, in hb_detach, away last): an entry probe
 * without its return probe would leave its thread's call marked active,
 * and its next calls look nested (see halloc.bpf.c). Nothing is recorded
 * while attaching: the BPF side's `stopped` starts all probes at once.
 */
enum hb_result hb_attach(struct hb_session *s, const struct hb_targets *t,
			 struct hb_diag *diag)
{
	LIBBPF_OPTS(bpf_uprobe_opts, opts);
	enum hb_result r = HB_OK;
	unsigned skip;
	char what[600];

	for (int pass = 0; pass < 2 && !r; pass++)
		for (unsigned i = 0; i < t->n && !r; i++)
			for (unsigned f = 0; f < HB_NFUNCS && !r; f++) {
				const struct hb_target_file *tf = &t->files[i];
				bool ret = pass == 0;

				if (!tf->offsets[f] ||
				    (ret && f == HB_FUNC_FREE))
					continue;
				snprintf(what, sizeof(what),
					 "cannot probe %s in '%s'",
					 hb_alloc_functions[f], tf->path);
				skip = f == HB_FUNC_FREE ? tf->free_skip : 0;
				opts.retprobe = ret;
				opts.bpf_cookie =
				    (tf->shared ? HB_COOKIE_SHARED : 0) |
				    (uint64_t)skip << HB_COOKIE_SKIP_SHIFT;
				r = add_link(s,
					     bpf_program__attach_uprobe_opts(
						 ret ? s->skel->progs.alloc_exit
						     : entry_prog(s->skel, f),
						 s->pid, tf->path,
						 tf->offsets[f] + skip, &opts),
					     diag, what);
			}
	if (!r)
		r = add_link(s,
			     bpf_program__attach(s->skel->progs.process_exit),
			     diag, "cannot watch process exits");
	if (!r)
		r = add_link(s,
			     bpf_program__attach(s->skel->progs.process_exec),
			     diag, "cannot watch exec");
	return r;
}

/* In the reverse order (see hb_attach); recording has stopped by then. */
void hb_detach(struct hb_session *s)
{
	while (s->nlinks > 0)
		bpf_link__destroy(s->links[--s->nlinks]);
}

uint64_t hb_counter(struct hb_session *s, uint32_t which)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *v, sum = 0;

	if (ncpu <= 0 || !(v = calloc((size_t)ncpu, sizeof(*v))))
		return 0;
	if (!bpf_map_lookup_elem(bpf_map__fd(s->skel->maps.counters), &which,
				 v))
		for (int i = 0; i < ncpu; i++)
			sum += v[i];
	free(v);
	return sum;
}
