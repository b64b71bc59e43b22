/*
 * agent/bpf/halloc.h - what the eBPF side (halloc.bpf.c) and the user side
 * (halloc.c and friends) share: the ring buffer's events, the aggregate
 * maps' values, the counters. Included by both; so only fixed-size types,
 * and no libc headers.
 *
 * Invariants:
 *  - Events come out of one ring buffer, in the order the kernel reserved
 *    them. Their `seq` comes from one counter in the BPF program, taken
 *    before the target frees (free, the old block of a realloc) and after
 *    it allocated, so ordering events by seq orders them validly on every
 *    address, across threads. Events of one thread come in program order.
 *  - Stacks are captured when the allocation function returns, in the
 *    caller: the first frame is the return address into the code that
 *    called the allocation function, like the preload agent's.
 *  - Only the outermost call of the allocation family on a thread makes
 *    an event: realloc(p, 0) calling free, reallocarray tail-calling
 *    realloc, memalign calling malloc are one call each.
 */
#ifndef HALLOC_AGENT_BPF_HALLOC_H
#define HALLOC_AGENT_BPF_HALLOC_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Frame-pointer stacks: bpf_get_stack stops at perf_event_max_stack (127). */
#define HB_FP_DEPTH_MAX 127
/* DWARF mode: bytes of user stack copied per allocation, largest. */
#define HB_STACK_BYTES_MAX 65536
/* Log sequence number of an event: its BPF seq shifted, so the records the
 * user side adds before an event (a new stack, new modules) get the numbers
 * just below it. */
#define HB_SEQ_SHIFT 12

enum hb_stack_mode {
	HB_STACK_FP = 1,    /* the kernel walks frame pointers */
	HB_STACK_DWARF = 2, /* the stack is copied; user space unwinds (CFI) */
};

/* The attach cookie of free's probe: bit 0, the allocator is a shared
 * library (its callers come through the PLT); bits 8-15, how many bytes
 * past free's entry the probe is (past a NULL test, see modules.c). */
#define HB_COOKIE_SHARED     1
#define HB_COOKIE_SKIP_SHIFT 8

enum hb_event_kind {
	HB_EV_ALLOC = 1,   /* addr, size, fn, stack */
	HB_EV_FREE = 2,	   /* addr, fn (enum halloc_free_fn) */
	HB_EV_REALLOC = 3, /* old_addr freed at seq, addr allocated at seq2 */
	HB_EV_FAILED = 4,  /* size, fn, err, stack */
	HB_EV_EXIT = 5,	   /* a thread ended: err = its wait status,
			      flags & HB_EXIT_GROUP_DEAD: the last one */
	HB_EV_EXEC = 6,	   /* the process image was replaced */
};

#define HB_EXIT_GROUP_DEAD 1u

/* Registers the DWARF unwinder needs for the first frame. */
struct hb_regs {
	__u64 ip, sp, bp, bx, r12, r13, r14, r15;
};

struct hb_event {
	__u8 kind;     /* enum hb_event_kind */
	__u8 fn;       /* enum halloc_alloc_fn or enum halloc_free_fn */
	__u16 nframes; /* frame-pointer mode: __u64 frames[nframes] follow */
	__u32 tid;
	__u32 pid;	  /* the thread group */
	__u32 stack_size; /* DWARF mode: struct hb_regs, then this many
			     bytes of stack from regs.sp, follow */
	__u64 seq, seq2;
	__u64 time_ns; /* CLOCK_BOOTTIME */
	__u64 addr;
	__u64 old_addr;
	__u64 size; /* requested; ~0 when n * size overflowed */
	__s32 err;  /* FAILED: errno; EXIT: wait status */
	__u32 flags;
};

/* ---- --aggregate: totals kept in the kernel -------------------------- */

/* Per call site: key is a hash of the stack and the function. Its frees
 * are its allocations less its blocks still in `live` at the end. */
struct hb_site {
	__u64 allocs, bytes; /* allocations made, bytes requested */
	__u64 failed;	     /* allocations that returned NULL */
};

struct hb_stack {
	__u32 nframes;
	__u32 fn;
	__u64 frames[HB_FP_DEPTH_MAX];
};

/* A block allocated while attached and not freed yet. */
struct hb_live {
	__u64 size;
	__u64 site;    /* key of its site */
	__u64 time_ns; /* CLOCK_BOOTTIME */
};

/* Per-CPU counters (map `counters`). */
enum hb_counter {
	HB_CNT_LOST = 0,      /* ring buffer full: event dropped */
	HB_CNT_NO_STATE,      /* no per-thread state: call not recorded */
	HB_CNT_LIVE_FULL,     /* aggregate: block not tracked */
	HB_CNT_SITES_FULL,    /* aggregate: site not tracked */
	HB_CNT_UNKNOWN_FREES, /* aggregate: frees of blocks from before */
	HB_CNT_NR,
};

#endif /* HALLOC_AGENT_BPF_HALLOC_H */
