/*
 * agent/bpf/halloc.c - the user side of the eBPF attach: checks, loading
 * the CO-RE object through its skeleton, uprobes on the allocators the
 * target maps, the loop that turns ring buffer events into the log, and
 * the end of the log. See attach.h for the API and halloc.h for the
 * events.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "halloc.skel.h" /* generated: build/bpf/ */
#include "agent/bpf/session.h"
#include "analyzer/analyzer.h"

#define DEFAULT_STACK_BYTES 8192u
#define POLL_MS 50

enum hb_result hb_diag_set(struct hb_diag *diag, enum hb_result result,
			   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(diag->message, sizeof(diag->message), fmt, ap);
	va_end(ap);
	return result;
}

int hb_result_exit_status(enum hb_result result)
{
	switch (result) {
	case HB_OK:
		return 0;
	case HB_ERR_USAGE:
		return 2;
	case HB_ERR_NOT_FOUND:
		return 127;
	case HB_ERR_CANNOT_RUN:
		return 126;
	default:
		return 125;
	}
}

int hb_exit_status(const struct hb_config *config,
		   const struct hb_outcome *outcome)
{
	int st = outcome->wait_status;

	if (config->pid || !outcome->status_known)
		return 0;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 0;
}

/* libbpf explains failures on stderr; we say one line instead. */
static int quiet_libbpf(enum libbpf_print_level level, const char *fmt,
			va_list ap)
{
	return 0;
}

/* ---- what to probe ------------------------------------------------------- */

struct target_file {
	char *path;  /* as we reach it: the probe is set on its inode */
	bool shared; /* a library, not the program (see internal_free) */
	uint64_t offsets[HB_NFUNCS];
};

struct targets {
	struct target_file files[8];
	unsigned n;
	uint64_t internal_free[2]; /* a static program's, see halloc.bpf.c */
};

/* Adds the file if it defines malloc and free. */
static void consider(struct targets *t, const char *path, bool program)
{
	struct target_file *f = &t->files[t->n];

	if (t->n == sizeof(t->files) / sizeof(t->files[0]))
		return;
	if (hb_elf_alloc_offsets(path, f->offsets) <= 0 ||
	    !f->offsets[HALLOC_FN_MALLOC] || !f->offsets[HB_FUNC_FREE])
		return;
	f->shared = !program;
	if (program)
		hb_elf_internal_free_range(path, t->internal_free);
	if ((f->path = strdup(path)))
		t->n++;
}

static void targets_free(struct targets *t)
{
	for (unsigned i = 0; i < t->n; i++)
		free(t->files[i].path);
	t->n = 0;
}

/* Our own C library: the one a program we start will load (the probes
 * are on the file, whoever maps it). */
static void consider_own_libc(struct targets *t)
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
				       struct targets *t, struct hb_diag *diag)
{
	pid_t pid = s->config->pid;
	int err = hb_proc_read(pid, &s->proc);

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
		return hb_diag_set(diag, HB_ERR_NO_PROCESS,
				   "cannot read the memory map of process '%d': %s",
				   (int)pid, strerror(-err));
	for (size_t i = 0; i < s->modules.nmods; i++)
		consider(t, s->modules.mods[i].open_path,
			 !strcmp(s->modules.mods[i].path, s->proc.exe));
	if (!t->n)
		return hb_diag_set(diag, HB_ERR_NO_ALLOCATOR,
				   "no allocator in process '%d': none of the "
				   "files it maps defines malloc and free",
				   (int)pid);
	return HB_OK;
}

static enum hb_result find_program_targets(struct hb_session *s,
					   struct targets *t,
					   struct hb_diag *diag)
{
	enum hb_result r = hb_spawn_resolve(s->config->argv[0], &s->program,
					    diag);

	if (r)
		return r;
	consider(t, s->program, true); /* static, or its own malloc */
	if (hb_elf_dynamic(s->program) != 0) /* or a script */
		consider_own_libc(t);
	if (!t->n)
		return hb_diag_set(diag, HB_ERR_NO_ALLOCATOR,
				   "no allocator to probe for '%s': it is "
				   "statically linked without malloc symbols",
				   s->config->argv[0]);
	return HB_OK;
}

/* ---- eBPF ------------------------------------------------------------------- */

static enum hb_result check_kernel(struct hb_diag *diag)
{
	if (access("/sys/kernel/btf/vmlinux", R_OK))
		return hb_diag_set(diag, HB_ERR_KERNEL,
				   "this kernel has no BTF (/sys/kernel/btf/vmlinux): "
				   "the eBPF attach needs CONFIG_DEBUG_INFO_BTF");
	if (access("/sys/bus/event_source/devices/uprobe/type", R_OK))
		return hb_diag_set(diag, HB_ERR_KERNEL,
				   "this kernel has no uprobes (CONFIG_UPROBE_EVENTS)");
	return HB_OK;
}

static enum hb_result bpf_error(struct hb_diag *diag, const char *what, int err)
{
	if (err < 0)
		err = -err;
	if (err == EPERM || err == EACCES)
		return hb_diag_set(diag, HB_ERR_PRIVILEGE,
				   "%s: %s (eBPF needs root, or CAP_BPF and "
				   "CAP_PERFMON)", what, strerror(err));
	return hb_diag_set(diag, HB_ERR_BPF, "%s: %s", what, strerror(err));
}

static unsigned ring_bytes(const struct hb_session *s)
{
	unsigned mib = s->config->ring_mib;

	if (!mib)
		mib = s->config->aggregate ? 1
		      : s->stack_mode == HB_STACK_DWARF ? 64 : 16;
	/* A power of two, as the ring buffer wants. */
	for (unsigned p = 1; p <= 1024; p *= 2)
		if (p >= mib)
			return p << 20;
	return 1024u << 20;
}

static enum hb_result load(struct hb_session *s, const struct targets *t,
			   struct hb_diag *diag)
{
	struct halloc_bpf *skel;
	int err;

	libbpf_set_print(quiet_libbpf);
	skel = halloc_bpf__open();
	if (!skel)
		return bpf_error(diag, "cannot open the eBPF object", errno);
	s->skel = skel;
	skel->rodata->target_tgid = (__u32)s->pid;
	skel->rodata->stack_mode = (__u32)s->stack_mode;
	skel->rodata->stack_depth = s->depth;
	skel->rodata->stack_bytes = s->stack_bytes;
	skel->rodata->aggregate = s->config->aggregate;
	skel->rodata->wakeup_bytes = ring_bytes(s) / 4;
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
		return bpf_error(diag, "cannot load the eBPF programs", err);
	return HB_OK;
}

static enum hb_result add_link(struct hb_session *s, struct bpf_link *link,
			       struct hb_diag *diag, const char *what)
{
	if (!link)
		return bpf_error(diag, what, errno);
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
		skel->progs.malloc_enter,	 skel->progs.calloc_enter,
		skel->progs.realloc_enter,	 skel->progs.reallocarray_enter,
		skel->progs.posix_memalign_enter, skel->progs.aligned_alloc_enter,
		skel->progs.memalign_enter,	 skel->progs.valloc_enter,
		skel->progs.pvalloc_enter,	 skel->progs.free_enter,
	};

	return progs[f];
}

/*
 * Return probes first: an entry probe whose return is not yet probed
 * would leave its thread's call marked active, and its next calls look
 * nested (see halloc.bpf.c).
 */
static enum hb_result attach(struct hb_session *s, const struct targets *t,
			     struct hb_diag *diag)
{
	LIBBPF_OPTS(bpf_uprobe_opts, opts);
	enum hb_result r = HB_OK;
	char what[600];

	for (int pass = 0; pass < 2 && !r; pass++)
		for (unsigned i = 0; i < t->n && !r; i++)
			for (unsigned f = 0; f < HB_NFUNCS && !r; f++) {
				const struct target_file *tf = &t->files[i];
				bool ret = pass == 0;

				if (!tf->offsets[f] || (ret && f == HB_FUNC_FREE))
					continue;
				snprintf(what, sizeof(what),
					 "cannot probe %s in '%s'",
					 hb_alloc_functions[f], tf->path);
				opts.retprobe = ret;
				opts.bpf_cookie = tf->shared ? HB_COOKIE_SHARED : 0;
				r = add_link(s,
					     bpf_program__attach_uprobe_opts(
						     ret ? s->skel->progs.alloc_exit
							 : entry_prog(s->skel, f),
						     s->pid, tf->path,
						     tf->offsets[f], &opts),
					     diag, what);
			}
	if (!r)
		r = add_link(s, bpf_program__attach(s->skel->progs.process_exit),
			     diag, "cannot watch process exits");
	if (!r)
		r = add_link(s, bpf_program__attach(s->skel->progs.process_exec),
			     diag, "cannot watch exec");
	return r;
}

static void detach(struct hb_session *s)
{
	for (size_t i = 0; i < s->nlinks; i++)
		bpf_link__destroy(s->links[i]);
	s->nlinks = 0;
}

/* ---- the loop ------------------------------------------------------------------- */

static void drain(struct hb_session *s)
{
	if (s->rb)
		while (ring_buffer__consume(s->rb) > 0)
			;
}

static void on_signal(struct hb_session *s, int sig)
{
	if (sig == SIGCHLD) {
		if (!s->spawned)
			return;
		hb_spawn_wait(s);
		if (s->ptrace_exit_stop) {
			/* Its last events, while its maps can be read. */
			drain(s);
			hb_spawn_continue(s);
			hb_spawn_wait(s);
		}
		return;
	}
	if (!s->spawned)
		s->stop = true; /* -p: any of them ends the recording */
	else if (sig == SIGTERM || sig == SIGHUP)
		kill(s->pid, sig);
}

static bool target_gone(struct hb_session *s)
{
	if (s->spawned)
		return s->child_reaped;
	return s->pid_exited || (kill(s->pid, 0) < 0 && errno == ESRCH);
}

static enum hb_result setup_loop(struct hb_session *s, struct hb_diag *diag)
{
	struct epoll_event ev = { .events = EPOLLIN };
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGCHLD);
	s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	s->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (s->epoll_fd < 0 || s->signal_fd < 0)
		return hb_diag_set(diag, HB_ERR_SYSTEM, "cannot poll: %s",
				   strerror(errno));
	ev.data.fd = s->signal_fd;
	epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->signal_fd, &ev);
	ev.data.fd = ring_buffer__epoll_fd(s->rb);
	epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, ev.data.fd, &ev);
	if (!s->spawned) {
		s->pid_fd = (int)syscall(SYS_pidfd_open, s->pid, 0);
		if (s->pid_fd >= 0) {
			ev.data.fd = s->pid_fd;
			epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->pid_fd, &ev);
		}
	}
	return HB_OK;
}

static void run_loop(struct hb_session *s)
{
	while (!s->stop) {
		struct epoll_event evs[4];
		struct signalfd_siginfo si;
		int timeout = POLL_MS;
		int n;

		if (s->deadline_ns) {
			uint64_t now = hb_boot_ns();

			if (now >= s->deadline_ns)
				break;
			if ((s->deadline_ns - now) / 1000000 < (uint64_t)timeout)
				timeout = (int)((s->deadline_ns - now) / 1000000) + 1;
		}
		n = epoll_wait(s->epoll_fd, evs, 4, timeout);
		drain(s);
		while (read(s->signal_fd, &si, sizeof(si)) == sizeof(si))
			on_signal(s, (int)si.ssi_signo);
		for (int i = 0; i < n; i++)
			if (evs[i].data.fd == s->pid_fd && s->pid_fd >= 0)
				s->pid_exited = s->stop = true; /* -p */
		if (target_gone(s))
			break;
	}
	drain(s);
}

/* ---- the log -------------------------------------------------------------------- */

static enum hb_result open_log(struct hb_session *s, struct hb_diag *diag)
{
	const char *path = s->config->output;
	char def[PATH_MAX];
	int err;

	if (!path) {
		char name[256];

		snprintf(name, sizeof(name), "%s",
			 s->spawned ? s->config->argv[0] : s->proc.exe);
		snprintf(def, sizeof(def), "halloc.%s.%d.hlog",
			 *name ? basename(name) : s->proc.comm, (int)s->pid);
		path = def;
	}
	snprintf(s->out->log_path, sizeof(s->out->log_path), "%s", path);
	err = hb_log_open(&s->log, path);
	if (err)
		return hb_diag_set(diag, HB_ERR_LOG, "cannot create '%s': %s",
				   path, strerror(err));
	s->log_open = true;
	return HB_OK;
}

static void write_header(struct hb_session *s)
{
	struct hb_trace_info info = {
		.flags = (s->stack_mode == HB_STACK_DWARF ? HALLOC_TRACE_STACK_DWARF
							  : HALLOC_TRACE_STACK_FP) |
			 (s->spawned ? 0 : HALLOC_TRACE_ATTACHED) |
			 (s->config->aggregate ? HALLOC_TRACE_AGGREGATE : 0),
		.depth = s->depth,
		.start_ns = hb_real_ns(),
		.pid = (uint64_t)s->pid,
	};
	unsigned argc = 0;

	if (s->spawned) {
		while (s->config->argv[argc])
			argc++;
		info.argv = s->config->argv;
	} else {
		argc = s->proc.argc;
		info.argv = s->proc.argv;
	}
	info.argc = argc;
	hb_log_trace_info(&s->log, &info);
	/* On disk now: a log with its header says the probes are in place. */
	hb_log_flush(&s->log);
	if (s->spawned) {
		char exe[PATH_MAX];

		if (!realpath(s->program, exe))
			snprintf(exe, sizeof(exe), "%s", s->program);
		hb_modules_init(&s->modules, s->pid);
		hb_begin_stream(s, 0, hb_boot_ns(), exe, argc, s->config->argv,
				(uint32_t)getpid(), 0);
	} else {
		hb_begin_stream(s, 0, s->proc.start_boot_ns, s->proc.exe,
				s->proc.argc, s->proc.argv,
				(uint32_t)s->proc.ppid, 0);
	}
}

static void write_exit(struct hb_session *s)
{
	int st = s->out->wait_status;

	if (!s->spawned && s->exit_seen) {
		s->out->ended = s->out->status_known = true;
		s->out->wait_status = st = s->exit_code;
	} else if (!s->spawned && target_gone(s)) {
		s->out->ended = true;
	}
	if (!s->out->ended)
		hb_log_process_exit(&s->log, (uint32_t)s->pid,
				    HALLOC_EXIT_DETACHED, 0, 0);
	else if (!s->out->status_known)
		hb_log_process_exit(&s->log, (uint32_t)s->pid,
				    HALLOC_EXIT_UNKNOWN, 0, 0);
	else if (WIFSIGNALED(st))
		hb_log_process_exit(&s->log, (uint32_t)s->pid,
				    HALLOC_EXIT_SIGNAL, (uint64_t)WTERMSIG(st),
				    WCOREDUMP(st) ? 1 : 0);
	else
		hb_log_process_exit(&s->log, (uint32_t)s->pid, HALLOC_EXIT_CODE,
				    (uint64_t)WEXITSTATUS(st), 0);
}

static uint64_t counter(struct hb_session *s, uint32_t which)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *v, sum = 0;

	if (ncpu <= 0 || !(v = calloc((size_t)ncpu, sizeof(*v))))
		return 0;
	if (!bpf_map_lookup_elem(bpf_map__fd(s->skel->maps.counters), &which, v))
		for (int i = 0; i < ncpu; i++)
			sum += v[i];
	free(v);
	return sum;
}

/* Records what is left, the exit, the symbols, and the END frame. */
static enum hb_result finish(struct hb_session *s, struct hb_diag *diag)
{
	enum hb_result r = HB_OK;
	struct ha_diag hdiag;
	struct hb_log end = { .fd = -1 };
	int err;

	detach(s);
	drain(s);
	if (s->config->aggregate)
		r = hb_aggregate_dump(s, diag);
	s->out->events_lost += counter(s, HB_CNT_LOST) +
			       counter(s, HB_CNT_NO_STATE);
	hb_stream_free(s->stream);
	s->stream = NULL;
	write_exit(s);
	err = hb_log_close(&s->log);
	s->log_open = false;
	if (err)
		return hb_diag_set(diag, HB_ERR_LOG, "cannot write '%s': %s",
				   s->out->log_path, strerror(err));
	if (ha_append_symbols(s->out->log_path, &hdiag) != HA_OK)
		hb_diag_set(diag, HB_OK, "%s", hdiag.message); /* a warning */
	end.fd = open(s->out->log_path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (end.fd < 0)
		return hb_diag_set(diag, HB_ERR_LOG, "cannot write '%s': %s",
				   s->out->log_path, strerror(errno));
	hb_log_end(&end, s->out->events_lost ? 1 : 0, 0, s->out->events_lost,
		   s->out->stacks_truncated);
	if ((err = hb_log_close(&end)))
		return hb_diag_set(diag, HB_ERR_LOG, "cannot write '%s': %s",
				   s->out->log_path, strerror(err));
	return r;
}

/* ---- the whole ------------------------------------------------------------------- */

static enum hb_result configure(struct hb_session *s, struct hb_diag *diag)
{
	const struct hb_config *c = s->config;

	if ((c->pid > 0) == (c->argv && c->argv[0]))
		return hb_diag_set(diag, HB_ERR_USAGE,
				   "give either a pid or a program to run");
	if (c->depth > HALLOC_DEPTH_MAX)
		return hb_diag_set(diag, HB_ERR_USAGE,
				   "depth '%u' is out of range (1..%u)",
				   c->depth, HALLOC_DEPTH_MAX);
	if (c->aggregate && c->stacks == HB_STACKS_DWARF)
		return hb_diag_set(diag, HB_ERR_USAGE,
				   "--aggregate keeps stacks in the kernel: it "
				   "needs frame-pointer stacks");
	s->stack_mode = c->aggregate || c->stacks == HB_STACKS_FP ? HB_STACK_FP
								: HB_STACK_DWARF;
	s->depth = c->depth ? c->depth : HALLOC_DEPTH_DEFAULT;
	if (s->stack_mode == HB_STACK_FP && s->depth > HB_FP_DEPTH_MAX)
		s->depth = HB_FP_DEPTH_MAX; /* the kernel's perf_event_max_stack */
	s->stack_bytes = c->stack_bytes ? c->stack_bytes : DEFAULT_STACK_BYTES;
	if (s->stack_bytes < 4096 || s->stack_bytes > HB_STACK_BYTES_MAX ||
	    s->stack_bytes % 8)
		return hb_diag_set(diag, HB_ERR_USAGE,
				   "stack size '%u' is out of range (4096..%u, "
				   "a multiple of 8)", s->stack_bytes,
				   HB_STACK_BYTES_MAX);
	if (c->duration < 0)
		return hb_diag_set(diag, HB_ERR_USAGE, "duration must not be negative");
	s->frames = calloc(s->depth, sizeof(*s->frames));
	return s->frames ? HB_OK : hb_diag_set(diag, HB_ERR_NOMEM, "out of memory");
}

static void cleanup(struct hb_session *s)
{
	detach(s);
	free(s->links);
	ring_buffer__free(s->rb);
	halloc_bpf__destroy(s->skel);
	hb_stream_free(s->stream);
	if (s->log_open)
		hb_log_close(&s->log);
	hb_modules_free(&s->modules);
	hb_unwinder_free(&s->unwinder);
	hb_table_free(&s->unknown_pages);
	hb_proc_free(&s->proc);
	free(s->program);
	free(s->frames);
	if (s->epoll_fd >= 0)
		close(s->epoll_fd);
	if (s->signal_fd >= 0)
		close(s->signal_fd);
	if (s->pid_fd >= 0)
		close(s->pid_fd);
	if (s->mask_saved)
		sigprocmask(SIG_SETMASK, &s->saved_mask, NULL);
}

enum hb_result hb_record(const struct hb_config *config,
			 struct hb_outcome *outcome, struct hb_diag *diag)
{
	struct hb_session s = {
		.config = config, .out = outcome, .release_fd = -1,
		.exec_error_fd = -1, .epoll_fd = -1, .signal_fd = -1,
		.pid_fd = -1, .log = { .fd = -1 },
	};
	struct targets t = { .n = 0 };
	enum hb_result r;
	sigset_t block;

	memset(outcome, 0, sizeof(*outcome));
	diag->message[0] = 0;
	hb_unwinder_init(&s.unwinder);
	r = configure(&s, diag);
	if (!r)
		r = config->pid ? find_pid_targets(&s, &t, diag)
				: find_program_targets(&s, &t, diag);
	if (!r)
		r = check_kernel(diag);
	if (r)
		goto out;

	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGQUIT);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &s.saved_mask);
	s.mask_saved = true;

	if (!config->pid && (r = hb_spawn_start(&s, diag)))
		goto out;
	if ((r = load(&s, &t, diag)) || (r = attach(&s, &t, diag)))
		goto fail;
	s.rb = ring_buffer__new(bpf_map__fd(s.skel->maps.events), hb_on_event,
				&s, NULL);
	if (!s.rb) {
		r = bpf_error(diag, "cannot read the ring buffer", errno);
		goto fail;
	}
	if ((r = open_log(&s, diag)) || (r = setup_loop(&s, diag)))
		goto fail;
	write_header(&s);
	if (config->duration > 0)
		s.deadline_ns = hb_boot_ns() + (uint64_t)(config->duration * 1e9);
	if (s.spawned) {
		s.skel->bss->execs_to_ignore = 1;
		if ((r = hb_spawn_release(&s, diag)))
			goto fail;
	}
	run_loop(&s);
	r = finish(&s, diag);
	if (s.spawned && !s.child_reaped)
		hb_spawn_wait_end(&s); /* --duration ended: it runs on */
	goto out;
fail:
	if (s.spawned)
		hb_spawn_abort(&s);
	if (s.log_open) {
		hb_log_close(&s.log);
		s.log_open = false;
		unlink(outcome->log_path);
	}
out:
	targets_free(&t);
	cleanup(&s);
	return r;
}
