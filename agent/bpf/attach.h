/*
 * agent/bpf/attach.h - the eBPF attach (libhalloc-bpf.a), as halloc-trace
 * calls it:
 *
 *	halloc-trace -p PID [--duration S] [--aggregate] [--stack fp|dwarf]
 *	halloc-trace --bpf [...] -- PROG ARGS
 *
 * hb_record() records one process with uprobes on its allocation
 * functions into a complete log (header, TRACE_INFO with recorder
 * HALLOC_RECORDER_BPF, chunks, PROCESS_EXIT, SYMBOLS, END), the same
 * format the preload agent's recordings have, and returns how it went;
 * the caller then reports it like any log (ha_analyze_file, ...).
 *
 * Invariants:
 *  - Nothing here prints. A failure is one line in struct hb_diag, without
 *    the command's name; hb_result_exit_status() maps it to a status.
 *  - Every check that can fail before recording (no such process, a
 *    zombie, not allowed to ptrace it, no allocator in it, no BTF, no
 *    privileges, a missing program) fails before the log is left behind
 *    and, for --bpf, before the program runs.
 *  - It never attaches to a process the caller could not ptrace.
 *  - While recording, SIGINT, SIGTERM, SIGHUP and SIGQUIT are blocked and
 *    read from a signalfd. With a pid they stop the recording; with a
 *    program, SIGINT and SIGQUIT are left to it (the terminal sends them
 *    to it too), SIGTERM and SIGHUP are forwarded to it.
 */
#ifndef HALLOC_AGENT_BPF_ATTACH_H
#define HALLOC_AGENT_BPF_ATTACH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum hb_result {
	HB_OK = 0,
	HB_ERR_USAGE,	     /* a bad hb_config (exit 2) */
	HB_ERR_NO_PROCESS,   /* no such pid, or a zombie (125) */
	HB_ERR_PERMISSION,   /* the caller may not ptrace it (125) */
	HB_ERR_NO_ALLOCATOR, /* no malloc in what it maps (125) */
	HB_ERR_KERNEL,	     /* no BTF or no uprobes in this kernel (125) */
	HB_ERR_PRIVILEGE,    /* no privileges for eBPF (125) */
	HB_ERR_BPF,	     /* loading or attaching failed otherwise (125) */
	HB_ERR_NOT_FOUND,    /* --bpf: the program does not exist (127) */
	HB_ERR_CANNOT_RUN,   /* --bpf: it cannot be executed (126) */
	HB_ERR_LOG,	     /* the log cannot be created or written (125) */
	HB_ERR_SYSTEM,	     /* fork, epoll, ... failed (125) */
	HB_ERR_NOMEM,	     /* (125) */
};

struct hb_diag {
	char message[512];
};

/* How call stacks are captured. */
enum hb_stacks {
	HB_STACKS_DEFAULT = 0, /* DWARF */
	HB_STACKS_FP = 1,      /* frame pointers, walked by the kernel:
				  cheapest, but code built without them
				  (Debian's libc, most -O2 programs) loses
				  its callers */
	HB_STACKS_DWARF = 2,   /* the top of the stack copied, unwound
				  with the modules' CFI, like perf
				  --call-graph dwarf */
};

struct hb_config {
	pid_t pid;	    /* -p: record this running process, or 0 */
	char *const *argv;  /* else --bpf: run this, NULL-ended */
	const char *output; /* the log; NULL: halloc.PROG.PID.hlog */
	unsigned depth;	    /* frames, 1..HALLOC_DEPTH_MAX (FP: <= 127);
			       0: HALLOC_DEPTH_DEFAULT */
	enum hb_stacks stacks;
	unsigned stack_bytes; /* DWARF: bytes copied per allocation,
				 4096..65536; 0: 8192 */
	bool aggregate;	      /* totals per stack in the kernel (FP stacks) */
	double duration;      /* seconds; 0: until a signal or the end */
	unsigned ring_mib;    /* ring buffer size; 0: by stack mode */
	bool probes_only;     /* benchmarking: every probe fires and its
				 program returns at once (the uprobes'
				 own cost); the log has no events */
};

struct hb_outcome {
	char log_path[4096];
	bool ended;		   /* the target ended while recorded */
	bool status_known;	   /* and wait_status says how */
	int wait_status;	   /* as waitpid(2) gives it */
	uint64_t events;	   /* events received */
	uint64_t events_lost;	   /* the ring buffer was full */
	uint64_t stacks_truncated; /* DWARF: deeper than the copy */
	uint64_t unknown_frees;	   /* --aggregate: of blocks from before */
};

enum hb_result hb_record(const struct hb_config *config,
			 struct hb_outcome *outcome, struct hb_diag *diag);

/* The exit status halloc-trace uses for a failure. */
int hb_result_exit_status(enum hb_result result);

/* halloc-trace's status after a recording: for --bpf the program's, as a
 * shell reports it (its code, or 128+N); for -p 0. */
int hb_exit_status(const struct hb_config *config,
		   const struct hb_outcome *outcome);

#endif /* HALLOC_AGENT_BPF_ATTACH_H */
