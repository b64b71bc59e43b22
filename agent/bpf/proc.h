/*
 * agent/bpf/proc.h - what the eBPF attach learns about its target from
 * /proc: whether it exists and may be traced, its command line, its start
 * time. Internal to agent/bpf/.
 */
#ifndef HALLOC_AGENT_BPF_PROC_H
#define HALLOC_AGENT_BPF_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct hb_proc {
	pid_t pid, ppid;
	char state;		/* from /proc/PID/stat: R, S, Z, ... */
	uint64_t start_boot_ns; /* CLOCK_BOOTTIME when it started */
	char *exe;		/* its executable as it sees it; "" unknown */
	char *comm;
	char **argv; /* NULL-ended */
	unsigned argc;
};

/* Reads /proc/PID/{stat,exe,cmdline}. Returns 0, or ESRCH when there is
 * no such process, or another errno. */
int hb_proc_read(pid_t pid, struct hb_proc *out);
void hb_proc_free(struct hb_proc *p);

/* The ptrace rule, as the kernel applies it to process_vm_readv: 0 when
 * the caller may read the target's memory, else EPERM or ESRCH. */
int hb_proc_may_trace(pid_t pid);

/* CLOCK_BOOTTIME and CLOCK_REALTIME now, in ns. */
uint64_t hb_boot_ns(void);
uint64_t hb_real_ns(void);

#endif /* HALLOC_AGENT_BPF_PROC_H */
