/*
 * agent/bpf/session.h - the state of one eBPF recording, shared by
 * halloc.c (setup, attach, the loop), events.c (ring buffer events into
 * records), aggregate.c (--aggregate totals into records) and spawn.c
 * (--bpf: the program started under the probes). Internal to agent/bpf/.
 */
#ifndef HALLOC_AGENT_BPF_SESSION_H
#define HALLOC_AGENT_BPF_SESSION_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/bpf/attach.h"
#include "agent/bpf/log_writer.h"
#include "agent/bpf/modules.h"
#include "agent/bpf/proc.h"
#include "agent/bpf/unwind.h"

struct halloc_bpf;
struct bpf_link;
struct ring_buffer;

struct hb_session {
	const struct hb_config *config;
	struct hb_outcome *out;
	unsigned depth;
	int stack_mode;	      /* enum hb_stack_mode */
	unsigned stack_bytes; /* DWARF */

	/* The target. */
	pid_t pid;
	bool spawned;	     /* --bpf: our child, traced with PTRACE_SEIZE */
	struct hb_proc proc; /* -p: what /proc said at attach */
	char *program;	     /* --bpf: the program's path */
	int release_fd;	     /* --bpf: closing it lets the child exec */
	int exec_error_fd;   /* --bpf: the child writes errno if exec fails */
	bool child_reaped;

	/* eBPF. */
	struct halloc_bpf *skel;
	struct bpf_link **links;
	size_t nlinks, links_cap;
	struct ring_buffer *rb;

	/* The log. */
	struct hb_log log;
	bool log_open;
	struct hb_stream *stream;  /* the current process image */
	struct hb_modules modules; /* of the current image */
	struct hb_unwinder unwinder;
	uint64_t last_rescan_ns;
	bool rescanned;	    /* during the current event */
	bool find_reliable; /* the address looked up is a real return address */
	struct hb_table unknown_pages; /* pages in no module at the last scan */
	uint64_t event_seq;	       /* BPF seq of the event being written */
	unsigned sub_seq; /* next number below it for added records */
	uint64_t *frames; /* scratch, depth entries */

	/* How the target ended, from the kernel's exit events (-p). */
	bool exit_seen;
	int exit_code;

	/* The loop. */
	int epoll_fd, signal_fd, pid_fd;
	sigset_t saved_mask;
	bool mask_saved;
	uint64_t deadline_ns; /* CLOCK_BOOTTIME; 0: none */
	bool stop;
	bool pid_exited;       /* -p: its pidfd said so */
	bool ptrace_exit_stop; /* --bpf: the child waits in its exit */
};

/* ---- probes.c ---------------------------------------------------------- */

/* A file whose allocator is probed. */
struct hb_target_file {
	char *path;  /* as we reach it: the probe is set on its inode */
	bool shared; /* a library, not the program (see internal_free) */
	uint64_t offsets[HB_NFUNCS]; /* file offsets, 0: not defined */
	unsigned free_skip; /* free's probe is this far past its entry */
};

struct hb_targets {
	struct hb_target_file files[8];
	unsigned n;
	uint64_t internal_free[2]; /* a static program's, see halloc.bpf.c */
};

/* The files to probe; for -p also the checks on the process (it exists,
 * is not a zombie, may be traced) and its first module scan. */
enum hb_result hb_find_targets(struct hb_session *s, struct hb_targets *t,
			       struct hb_diag *diag);
void hb_targets_free(struct hb_targets *t);
/* BTF and uprobes. */
enum hb_result hb_check_kernel(struct hb_diag *diag);
/* Opens and loads the object with the session's settings. */
enum hb_result hb_load(struct hb_session *s, const struct hb_targets *t,
		       struct hb_diag *diag);
/* The uprobes (return probes first), and the exit and exec tracepoints. */
enum hb_result hb_attach(struct hb_session *s, const struct hb_targets *t,
			 struct hb_diag *diag);
void hb_detach(struct hb_session *s);
/* A libbpf failure as one line: EPERM means no privileges. */
enum hb_result hb_bpf_error(struct hb_diag *diag, const char *what, int err);
/* A per-CPU counter of the BPF side, summed (enum hb_counter). */
uint64_t hb_counter(struct hb_session *s, uint32_t which);

/* ---- events.c ---------------------------------------------------------- */

/* Log sequence numbers: an event's, and those of records added before it. */
#define HB_EVENT_SEQ(e)                                                        \
	(((uint64_t)(e) << HB_SEQ_SHIFT) | ((1u << HB_SEQ_SHIFT) - 1))
#define HB_STACK_SEQ(e)                                                        \
	(((uint64_t)(e) << HB_SEQ_SHIFT) | ((1u << HB_SEQ_SHIFT) - 2))
#define HB_SUB_SEQ(e, k) (((uint64_t)(e) << HB_SEQ_SHIFT) | (k))
#define HB_SUB_SEQ_MAX	 ((1u << HB_SEQ_SHIFT) - 2)

/* The ring buffer's callback. */
int hb_on_event(void *ctx, void *data, size_t size);

/* Starts a stream for the current image: its PROCESS record and the
 * modules known so far, numbered below BPF seq `seq`. */
bool hb_begin_stream(struct hb_session *s, uint64_t seq, uint64_t start_boot_ns,
		     const char *exe, unsigned argc, char *const *argv,
		     uint32_t ppid, uint64_t flags);

/* MODULE_LOAD records for the modules not written yet, on thread `tid`. */
void hb_write_new_modules(struct hb_session *s, uint32_t tid);

/* The module holding addr; rescans the target's maps when not known
 * (at most once per event and per 20 ms). */
struct hb_module *hb_find_module(void *session, uint64_t addr);

/* Rescans the target's maps now. */
void hb_rescan(struct hb_session *s);

/* Frame-pointer frames checked against the modules, into s->frames: a
 * frame outside every module ends the stack. Returns how many. */
unsigned hb_fp_frames(struct hb_session *s, const uint64_t *frames, unsigned n);

/* ---- aggregate.c --------------------------------------------------------- */

/* Turns the kernel's totals into records of the current stream. */
enum hb_result hb_aggregate_dump(struct hb_session *s, struct hb_diag *diag);

/* ---- spawn.c ------------------------------------------------------------- */

/* Finds the program (PATH search) and checks it can run. */
enum hb_result hb_spawn_resolve(const char *name, char **path,
				struct hb_diag *diag);
/* Forks the child, which waits before exec; traces it (PTRACE_SEIZE)
 * to hold it at its exit while its maps are still readable. */
enum hb_result hb_spawn_start(struct hb_session *s, struct hb_diag *diag);
/* Lets the child exec; fails if the exec did. */
enum hb_result hb_spawn_release(struct hb_session *s, struct hb_diag *diag);
/* Handles a SIGCHLD: stops (signals are passed on, the exit stop is
 * reported in ptrace_exit_stop) and the end. */
void hb_spawn_wait(struct hb_session *s);
/* Lets a child held at its exit go on. */
void hb_spawn_continue(struct hb_session *s);
/* Waits until the child has ended (recording is over). */
void hb_spawn_wait_end(struct hb_session *s);
/* The child could not be started: kill and reap it. */
void hb_spawn_abort(struct hb_session *s);

/* ---- halloc.c ------------------------------------------------------------ */

enum hb_result hb_diag_set(struct hb_diag *diag, enum hb_result result,
			   const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* HALLOC_AGENT_BPF_SESSION_H */
