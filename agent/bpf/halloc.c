/*
 * agent/bpf/halloc.c - the user side of the eBPF attach: one recording
 * (hb_record) from the checks to the END frame: the target found and
 * probed (probes.c), the loop that drains the ring buffer into the log
 * (events.c), the end of the log. See attach.h for the API and halloc.h
 * for the events.
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
#define POLL_MS		    50
#define AGGREGATE_RESCAN_NS 1000000000ull

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

/* ---- the loop ------------------------------------------------------------ */

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
			/* Its last events, while its maps can be read; with
			 * --aggregate no event asked for the modules yet. */
			drain(s);
			hb_rescan(s);
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
	struct epoll_event ev = {.events = EPOLLIN};
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
			if ((s->deadline_ns - now) / 1000000 <
			    (uint64_t)timeout)
				timeout =
				    (int)((s->deadline_ns - now) / 1000000) + 1;
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
		/* --aggregate sends no events that would ask for new
		 * modules (dlopen): look now and then, while it lives. */
		if (s->config->aggregate &&
		    hb_boot_ns() - s->last_rescan_ns > AGGREGATE_RESCAN_NS)
			hb_rescan(s);
	}
	drain(s);
}

/* ---- the log ------------------------------------------------------------- */

static enum hb_result open_log(struct hb_session *s, struct hb_diag *diag)
{
	const char *path = s->config->output;
	char def[PATH_MAX];
	int err;

	if (!path) {
		char name[PATH_MAX]; /* whole: its basename is at the end */

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
	struct ht_trace_info info = {
	    .recorder = HALLOC_RECORDER_BPF,
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
		info.argv = s->proc.argv; /* NULL-ended */
	}
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

/* Records what is left, the exit, the symbols, and the END frame. */
static enum hb_result finish(struct hb_session *s, struct hb_diag *diag)
{
	enum hb_result r = HB_OK;
	struct ha_diag hdiag;
	struct hb_log end = {.fd = -1};
	int err;

	/* Stop every probe at once, then take them away (which is slow). */
	s->skel->data->stopped = 1;
	drain(s);
	hb_detach(s);
	drain(s);
	if (s->config->aggregate)
		r = hb_aggregate_dump(s, diag);
	s->out->events_lost +=
	    hb_counter(s, HB_CNT_LOST) + hb_counter(s, HB_CNT_NO_STATE);
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
	hb_log_end(&end,
		   &(struct ht_end){
		       .flags = s->out->events_lost ? HT_END_EVENTS_LOST : 0,
		       .bpf_counts = true,
		       .events_lost = s->out->events_lost,
		       .stacks_truncated = s->out->stacks_truncated});
	if ((err = hb_log_close(&end)))
		return hb_diag_set(diag, HB_ERR_LOG, "cannot write '%s': %s",
				   s->out->log_path, strerror(err));
	return r;
}

/* ---- the whole ----------------------------------------------------------- */

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
	s->stack_mode = c->aggregate || c->stacks == HB_STACKS_FP
			    ? HB_STACK_FP
			    : HB_STACK_DWARF;
	s->depth = c->depth ? c->depth : HALLOC_DEPTH_DEFAULT;
	if (s->stack_mode == HB_STACK_FP && s->depth > HB_FP_DEPTH_MAX)
		s->depth =
		    HB_FP_DEPTH_MAX; /* the kernel's perf_event_max_stack */
	s->stack_bytes = c->stack_bytes ? c->stack_bytes : DEFAULT_STACK_BYTES;
	if (s->stack_bytes < 4096 || s->stack_bytes > HB_STACK_BYTES_MAX ||
	    s->stack_bytes % 8)
		return hb_diag_set(diag, HB_ERR_USAGE,
				   "stack size '%u' is out of range (4096..%u, "
				   "a multiple of 8)",
				   s->stack_bytes, HB_STACK_BYTES_MAX);
	if (c->duration < 0)
		return hb_diag_set(diag, HB_ERR_USAGE,
				   "duration must not be negative");
	s->frames = calloc(s->depth, sizeof(*s->frames));
	return s->frames ? HB_OK
			 : hb_diag_set(diag, HB_ERR_NOMEM, "out of memory");
}

static void cleanup(struct hb_session *s)
{
	hb_detach(s);
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
	    .config = config,
	    .out = outcome,
	    .release_fd = -1,
	    .exec_error_fd = -1,
	    .epoll_fd = -1,
	    .signal_fd = -1,
	    .pid_fd = -1,
	    .log = {.fd = -1},
	};
	struct hb_targets t = {.n = 0};
	enum hb_result r;
	sigset_t block;

	memset(outcome, 0, sizeof(*outcome));
	diag->message[0] = 0;
	hb_unwinder_init(&s.unwinder);
	r = configure(&s, diag);
	if (!r)
		r = hb_find_targets(&s, &t, diag);
	if (!r)
		r = hb_check_kernel(diag);
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
	if ((r = hb_load(&s, &t, diag)) || (r = hb_attach(&s, &t, diag)))
		goto fail;
	s.rb = ring_buffer__new(bpf_map__fd(s.skel->maps.events), hb_on_event,
				&s, NULL);
	if (!s.rb) {
		r = hb_bpf_error(diag, "cannot read the ring buffer", errno);
		goto fail;
	}
	if ((r = open_log(&s, diag)) || (r = setup_loop(&s, diag)))
		goto fail;
	write_header(&s);
	if (config->duration > 0)
		s.deadline_ns =
		    hb_boot_ns() + (uint64_t)(config->duration * 1e9);
	s.skel->data->stopped = 0; /* every probe is in place: go */
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
	hb_targets_free(&t);
	cleanup(&s);
	return r;
}
