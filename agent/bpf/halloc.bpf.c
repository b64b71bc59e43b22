/*
 * agent/bpf/halloc.bpf.c - the kernel side of `halloc-trace -p` and
 * `--bpf`: uprobes on the allocation functions of one process, events to
 * user space through one ring buffer (or, with --aggregate, totals per
 * call site kept here). See halloc.h for the invariants.
 *
 * Pairing an entry with its return: one struct call per thread (task
 * local storage, so it dies with the thread). The outermost call of the
 * family owns it; a call made while it is active with a lower stack
 * pointer is nested inside it (realloc calling free, posix_memalign
 * calling malloc) and is ignored. Its return is recognized by the stack
 * pointer: after `ret`, sp is the entry's sp + 8. A call at the same sp
 * is a tail call (reallocarray jumps to realloc): it takes over the
 * arguments but keeps the function the program called.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

/* vmlinux.h has the fixed-width types already; libc's stdint.h is not
 * there for the bpf target. */
#define __CLANG_STDINT_H
#include "halloc/log.h"
#include "halloc.h"

#ifndef SEC /* cppcheck, which does not read libbpf's headers */
#define SEC(name)
#define BPF_KPROBE(name, ...)	 int name(struct pt_regs *ctx)
#define BPF_KRETPROBE(name, ...) int name(struct pt_regs *ctx)
#define BPF_PROG(name, ...)	 int name(void *ctx)
#endif

/* bpf_probe_read_user and bpf_get_stack are GPL-only helpers. */
char LICENSE[] SEC("license") = "GPL";

/* Set by user space before load. */
const volatile __u32 target_tgid = 0;
const volatile __u32 stack_mode = HB_STACK_FP;
const volatile __u32 stack_depth = 64;	 /* FP frames, <= HB_FP_DEPTH_MAX */
const volatile __u32 stack_bytes = 8192; /* DWARF copy, <= HB_STACK_BYTES_MAX */
const volatile bool aggregate = false;
const volatile bool probes_only = false; /* benchmarking: the floor */
const volatile __u64 wakeup_mask = 1023; /* 2^n - 1, see rb_flags */

/* Set by user space after load (mmap'ed .data/.bss). */
__u64 next_seq = 1;
__u32 execs_to_ignore = 0; /* --bpf: the exec that starts the program */
/* Probes record only while this is 0. User space holds it at 1 while it
 * attaches them one by one and sets it again when recording ends, so all
 * of them start and stop at one instant: a malloc recorded while free is
 * not yet (or no longer) would look like a leak. --aggregate also stops
 * at an exec: the totals are of the image that is gone. */
__u32 stopped = 1;

#define ENOMEM	  12
#define NEST_SPAN (64 * 1024)

struct call {
	__u64 sp;   /* at entry: the return address is at *sp */
	__u64 seq;  /* realloc of a block: when the old one is freed */
	__u64 size; /* requested; ~0 on overflow */
	__u64 ptr;  /* realloc: the old block; posix_memalign: memptr */
	/* DWARF mode: the mapping the thread's stack was in at the last
	 * copy; the copy stops at its end (stack_in_vma). */
	__u64 stack_lo, stack_hi;
	__u8 fn;    /* enum halloc_alloc_fn */
	__u8 active;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct call);
} calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24); /* resized by user space */
} events SEC(".maps");

struct scratch {
	struct hb_event ev;
	__u64 frames[HB_FP_DEPTH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hb_stack);
} stack_scratch SEC(".maps");

static const struct hb_site empty_site;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HB_CNT_NR);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* --aggregate. Sizes are set by user space; entries allocated on demand. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 20);
	__type(key, __u64); /* block address */
	__type(value, struct hb_live);
} live SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 16);
	__type(key, __u64); /* hash of stack and function */
	__type(value, struct hb_site);
} sites SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 16);
	__type(key, __u64);
	__type(value, struct hb_stack);
} stacks SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &which);

	if (v)
		*v += 1;
}

static __always_inline __u64 take_seq(void)
{
	return __sync_fetch_and_add(&next_seq, 1);
}

static __always_inline bool is_target(void)
{
	if (probes_only)
		return false;
	return (bpf_get_current_pid_tgid() >> 32) == target_tgid && !stopped;
}

/* Wake the reader only once every wakeup_mask + 1 sequence numbers (user
 * space sets it to about a sixteenth of the ring): a wakeup per event would
 * cost more than the event, and asking the ring how full it is costs a
 * helper call per event. The reader also polls. */
static __always_inline __u64 rb_flags(const struct hb_event *ev)
{
	return !(ev->seq & wakeup_mask) ||
		       (ev->seq2 && !(ev->seq2 & wakeup_mask))
		   ? BPF_RB_FORCE_WAKEUP
		   : BPF_RB_NO_WAKEUP;
}

static __always_inline void fill(struct hb_event *ev, __u8 kind, __u8 fn)
{
	__u64 id = bpf_get_current_pid_tgid();

	ev->kind = kind;
	ev->fn = fn;
	ev->nframes = 0;
	ev->tid = (__u32)id;
	ev->pid = id >> 32;
	ev->stack_size = 0;
	ev->seq = 0;
	ev->seq2 = 0;
	ev->time_ns = bpf_ktime_get_boot_ns();
	ev->addr = 0;
	ev->old_addr = 0;
	ev->size = 0;
	ev->err = 0;
	ev->flags = 0;
}

/* ---- entry ------------------------------------------------------------- */

static __always_inline int enter(struct pt_regs *ctx, __u8 fn, __u64 size,
				 __u64 ptr)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 sp = PT_REGS_SP(ctx);
	struct call *c;

	if (!is_target())
		return 0;
	c = bpf_task_storage_get(&calls, task, 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!c) {
		count(HB_CNT_NO_STATE);
		return 0;
	}
	if (c->active && sp < c->sp && c->sp - sp < NEST_SPAN)
		return 0; /* nested in the outer call */
	if (!(c->active && sp == c->sp))
		c->fn = fn; /* not a tail call: a call of its own */
	c->active = 1;
	c->sp = sp;
	c->size = size;
	c->ptr = ptr;
	c->seq = 0;
	if ((fn == HALLOC_FN_REALLOC || fn == HALLOC_FN_REALLOCARRAY) && ptr)
		c->seq = take_seq();
	return 0;
}

static __always_inline __u64 mul_size(__u64 n, __u64 size)
{
	__u64 limit;

	if (!size)
		return 0;
	/* Keep clang from turning the test into a 128-bit multiply, which
	 * the bpf target does not have. */
	limit = ~0ULL / size;
	barrier_var(limit);
	if (n > limit)
		return ~0ULL;
	return n * size;
}

SEC("uprobe")
int BPF_KPROBE(malloc_enter, __u64 size)
{
	return enter(ctx, HALLOC_FN_MALLOC, size, 0);
}

SEC("uprobe")
int BPF_KPROBE(calloc_enter, __u64 n, __u64 size)
{
	return enter(ctx, HALLOC_FN_CALLOC, mul_size(n, size), 0);
}

SEC("uprobe")
int BPF_KPROBE(realloc_enter, __u64 ptr, __u64 size)
{
	return enter(ctx, HALLOC_FN_REALLOC, size, ptr);
}

SEC("uprobe")
int BPF_KPROBE(reallocarray_enter, __u64 ptr, __u64 n, __u64 size)
{
	return enter(ctx, HALLOC_FN_REALLOCARRAY, mul_size(n, size), ptr);
}

SEC("uprobe")
int BPF_KPROBE(posix_memalign_enter, __u64 memptr, __u64 align, __u64 size)
{
	return enter(ctx, HALLOC_FN_POSIX_MEMALIGN, size, memptr);
}

SEC("uprobe")
int BPF_KPROBE(aligned_alloc_enter, __u64 align, __u64 size)
{
	return enter(ctx, HALLOC_FN_ALIGNED_ALLOC, size, 0);
}

SEC("uprobe")
int BPF_KPROBE(memalign_enter, __u64 align, __u64 size)
{
	return enter(ctx, HALLOC_FN_MEMALIGN, size, 0);
}

SEC("uprobe")
int BPF_KPROBE(valloc_enter, __u64 size)
{
	return enter(ctx, HALLOC_FN_VALLOC, size, 0);
}

SEC("uprobe")
int BPF_KPROBE(pvalloc_enter, __u64 size)
{
	return enter(ctx, HALLOC_FN_PVALLOC, size, 0);
}

/* ---- --aggregate --------------------------------------------------------- */

/* The least work a free can do: its block leaves `live`. Frees per site
 * are not counted here: user space derives them at the end (a site's
 * allocations less its blocks still live). */
static __always_inline void agg_free(__u64 addr)
{
	if (bpf_map_delete_elem(&live, &addr))
		count(HB_CNT_UNKNOWN_FREES);
}

/* The site of the current stack, created on first sight. */
static __always_inline struct hb_site *agg_site(struct pt_regs *ctx, __u8 fn,
						__u64 *key_out)
{
	__u32 zero = 0;
	struct hb_stack *st = bpf_map_lookup_elem(&stack_scratch, &zero);
	struct hb_site *site;
	__u64 h = 0xcbf29ce484222325ULL ^ fn;
	long n;

	if (!st)
		return 0;
	n = bpf_get_stack(ctx, st->frames, stack_depth * 8, BPF_F_USER_STACK);
	if (n < 0)
		n = 0;
	n = (__u64)n >> 3;
	for (int i = 0; i < HB_FP_DEPTH_MAX; i++) {
		if (i >= n)
			break;
		h = (h ^ st->frames[i]) * 0x100000001b3ULL;
		h ^= h >> 29;
	}
	h = (h ^ (__u64)n) * 0x100000001b3ULL;
	*key_out = h;
	site = bpf_map_lookup_elem(&sites, &h);
	if (site)
		return site;

	/* First sight: the stack for user space, then the site. */
	st->nframes = (__u32)n;
	st->fn = fn;
	bpf_map_update_elem(&stacks, &h, st, BPF_NOEXIST);
	bpf_map_update_elem(&sites, &h, &empty_site, BPF_NOEXIST);
	site = bpf_map_lookup_elem(&sites, &h);
	if (!site)
		count(HB_CNT_SITES_FULL);
	return site;
}

static __always_inline void agg_alloc(struct pt_regs *ctx, __u8 fn, __u64 addr,
				      __u64 size)
{
	struct hb_live b = {.size = size};
	struct hb_site *site = agg_site(ctx, fn, &b.site);

	if (!site)
		return;
	__sync_fetch_and_add(&site->allocs, 1);
	__sync_fetch_and_add(&site->bytes, size);
	b.time_ns = bpf_ktime_get_boot_ns();
	/* Not tracked: it counts as freed (see agg_free), totals hold. */
	if (bpf_map_update_elem(&live, &addr, &b, BPF_ANY))
		count(HB_CNT_LIVE_FULL);
}

static __always_inline void agg_failed(struct pt_regs *ctx, __u8 fn)
{
	__u64 key;
	struct hb_site *site = agg_site(ctx, fn, &key);

	if (site)
		__sync_fetch_and_add(&site->failed, 1);
}

/* ---- streaming ----------------------------------------------------------- */

struct vma_bounds {
	__u64 lo, hi;
};

static long vma_bounds_of(struct task_struct *task, struct vm_area_struct *vma,
			  void *data)
{
	struct vma_bounds *b = data;

	b->lo = vma->vm_start;
	b->hi = vma->vm_end;
	return 0;
}

/*
 * How much of the stack above sp to copy: stack_bytes, or less when the
 * stack's mapping ends sooner. Nothing is above a thread's outermost
 * frame but its start-up data, so most copies are a few hundred bytes
 * instead of 8 KiB of cold ring memory. The mapping is looked up once per
 * thread (again when sp leaves it); when it cannot be (mmap_lock busy),
 * the whole stack_bytes are copied, as before.
 */
static __always_inline __u32 stack_in_vma(struct call *c, __u64 sp)
{
	__u64 left;

	if (sp < c->stack_lo || sp >= c->stack_hi) {
		struct vma_bounds b = {0, 0};

		if (bpf_find_vma(bpf_get_current_task_btf(), sp, vma_bounds_of,
				 &b, 0) || sp < b.lo || sp >= b.hi)
			b.lo = b.hi = 0;
		c->stack_lo = b.lo;
		c->stack_hi = b.hi;
		if (!b.hi)
			return stack_bytes;
	}
	left = c->stack_hi - sp;
	return left < stack_bytes ? (__u32)left : stack_bytes;
}

/* Sends an event with the caller's stack. */
static __always_inline void emit_with_stack(struct pt_regs *ctx,
					    struct call *c,
					    struct hb_event *proto)
{
	if (stack_mode == HB_STACK_DWARF) {
		__u32 size = sizeof(struct hb_event) + sizeof(struct hb_regs) +
			     stack_bytes;
		struct hb_event *ev = bpf_ringbuf_reserve(&events, size, 0);
		struct hb_regs *r;
		__u8 *stk;
		__u64 sp = PT_REGS_SP(ctx);
		__u32 want = stack_in_vma(c, sp);

		if (!ev) {
			count(HB_CNT_LOST);
			return;
		}
		*ev = *proto;
		r = (struct hb_regs *)(ev + 1);
		r->ip = PT_REGS_IP(ctx);
		r->sp = sp;
		r->bp = PT_REGS_FP(ctx);
		r->bx = ctx->bx;
		r->r12 = ctx->r12;
		r->r13 = ctx->r13;
		r->r14 = ctx->r14;
		r->r15 = ctx->r15;
		stk = (__u8 *)(r + 1);
		if (want > stack_bytes)
			want = stack_bytes;
		barrier_var(want); /* the verifier must see the bound */
		ev->stack_size = want;
		if (bpf_probe_read_user(stk, want, (void *)sp)) {
			/* The stack ends before stack_bytes: copy what is
			 * mapped, page by page (stack_bytes >= 4096). */
			__u32 got = 0;

			for (int i = 0; i < HB_STACK_BYTES_MAX / 4096; i++) {
				__u32 chunk = 4096 - ((sp + got) & 4095);

				if (got > stack_bytes - 4096 || chunk > 4096)
					break;
				if (bpf_probe_read_user(stk + got, chunk,
							(void *)(sp + got)))
					break;
				got += chunk;
			}
			ev->stack_size = got;
		}
		bpf_ringbuf_submit(ev, rb_flags(ev));
		return;
	}

	{
		__u32 zero = 0;
		struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
		__u64 size;
		long n;

		if (!s)
			return;
		s->ev = *proto;
		n = bpf_get_stack(ctx, s->frames, stack_depth * 8,
				  BPF_F_USER_STACK);
		size = n > 0 ? (__u64)n : 0;
		if (size > sizeof(s->frames))
			size = 0;
		barrier_var(size); /* the verifier must see the bound */
		size &= ~7ULL;
		s->ev.nframes = size / 8;
		if (bpf_ringbuf_output(&events, s,
				       sizeof(struct hb_event) + size,
				       rb_flags(&s->ev)))
			count(HB_CNT_LOST);
	}
}

static __always_inline void emit(struct hb_event *ev)
{
	if (bpf_ringbuf_output(&events, ev, sizeof(*ev), rb_flags(ev)))
		count(HB_CNT_LOST);
}

/* ---- return ------------------------------------------------------------- */

SEC("uretprobe")
int BPF_KRETPROBE(alloc_exit, __u64 ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct hb_event ev;
	struct call *c;
	__u64 addr = ret;
	__s32 err = ENOMEM;
	__u8 fn;

	if (!is_target())
		return 0;
	c = bpf_task_storage_get(&calls, task, 0, 0);
	if (!c || !c->active || PT_REGS_SP(ctx) != c->sp + 8)
		return 0; /* not the outermost call's return */
	c->active = 0;
	fn = c->fn;

	if (fn == HALLOC_FN_POSIX_MEMALIGN) {
		err = (__s32)ret;
		addr = 0;
		if (err == 0 &&
		    bpf_probe_read_user(&addr, sizeof(addr), (void *)c->ptr))
			addr = 0;
	}

	if ((fn == HALLOC_FN_REALLOC || fn == HALLOC_FN_REALLOCARRAY) &&
	    c->ptr) {
		if (aggregate) {
			if (!addr && c->size) {
				agg_failed(ctx, fn);
				return 0;
			}
			agg_free(c->ptr);
			if (addr)
				agg_alloc(ctx, fn, addr, c->size);
			return 0;
		}
		if (!addr && c->size == 0) { /* realloc(p, 0) freed p */
			fill(&ev, HB_EV_FREE, HALLOC_FREE_REALLOC);
			ev.seq = c->seq;
			ev.addr = c->ptr;
			emit(&ev);
			return 0;
		}
		if (addr) {
			fill(&ev, HB_EV_REALLOC, fn);
			ev.seq = c->seq;
			ev.seq2 = take_seq();
			ev.old_addr = c->ptr;
			ev.addr = addr;
			ev.size = c->size;
			emit_with_stack(ctx, c, &ev);
			return 0;
		}
	}

	if (aggregate) {
		if (addr)
			agg_alloc(ctx, fn, addr, c->size);
		else
			agg_failed(ctx, fn);
		return 0;
	}
	fill(&ev, addr ? HB_EV_ALLOC : HB_EV_FAILED, fn);
	ev.seq = take_seq();
	ev.addr = addr;
	ev.size = c->size;
	if (!addr)
		ev.err = err;
	emit_with_stack(ctx, c, &ev);
	return 0;
}

/*
 * The allocator's own frees are not the program's: when a thread ends,
 * glibc's tcache_thread_shutdown hands the chunks cached in the thread's
 * tcache (blocks the program freed long ago) back to the arena with direct
 * calls to __libc_free, which is free's address. In a shared library the
 * program's frees come through the PLT (or the GOT), so a direct `call
 * free` from inside it is the library's own. In a static program every
 * call is direct: there the caller's address is checked against
 * tcache_thread_shutdown's, from its symbol table (user space sets it).
 */
const volatile __u64 internal_free_lo = 0, internal_free_hi = 0;

static __always_inline bool internal_free(struct pt_regs *ctx, __u64 sp)
{
	__u64 ret = 0;
	struct {
		__u8 op;
		__s32 rel;
	} __attribute__((packed)) call;

	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u64 entry =
	    PT_REGS_IP(ctx) - ((cookie >> HB_COOKIE_SKIP_SHIFT) & 0xff);

	if (bpf_probe_read_user(&ret, sizeof(ret), (void *)sp))
		return false;
	if (!(cookie & HB_COOKIE_SHARED))
		return ret >= internal_free_lo && ret < internal_free_hi;
	if (bpf_probe_read_user(&call, sizeof(call), (void *)(ret - 5)))
		return false;
	return call.op == 0xe8 && ret + (__s64)call.rel == entry;
}

SEC("uprobe")
int BPF_KPROBE(free_enter, __u64 ptr)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 sp = PT_REGS_SP(ctx);
	struct hb_event ev;
	struct call *c;

	if (!ptr || !is_target())
		return 0;
	c = bpf_task_storage_get(&calls, task, 0, 0);
	/* <=: a free tail-called by realloc is still inside it. */
	if (c && c->active && sp <= c->sp && c->sp - sp < NEST_SPAN)
		return 0;
	if (internal_free(ctx, sp))
		return 0;
	if (aggregate) {
		agg_free(ptr);
		return 0;
	}
	fill(&ev, HB_EV_FREE, HALLOC_FREE_FREE);
	ev.seq = take_seq();
	ev.addr = ptr;
	emit(&ev);
	return 0;
}

/* ---- the process --------------------------------------------------------- */

SEC("tp_btf/sched_process_exit")
int BPF_PROG(process_exit, struct task_struct *p)
{
	struct hb_event ev;

	if (BPF_CORE_READ(p, tgid) != target_tgid)
		return 0;
	fill(&ev, HB_EV_EXIT, 0);
	ev.tid = BPF_CORE_READ(p, pid);
	ev.pid = BPF_CORE_READ(p, tgid);
	ev.err = BPF_CORE_READ(p, exit_code);
	if (BPF_CORE_READ(p, signal, live.counter) == 0)
		ev.flags = HB_EXIT_GROUP_DEAD;
	ev.seq = take_seq();
	bpf_ringbuf_output(&events, &ev, sizeof(ev), BPF_RB_FORCE_WAKEUP);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(process_exec, struct task_struct *p)
{
	struct hb_event ev;

	if (BPF_CORE_READ(p, tgid) != target_tgid)
		return 0;
	if (execs_to_ignore) {
		execs_to_ignore = 0;
		return 0;
	}
	if (aggregate)
		stopped = 1; /* the totals are of the image that is gone */
	fill(&ev, HB_EV_EXEC, 0);
	ev.seq = take_seq();
	bpf_ringbuf_output(&events, &ev, sizeof(ev), BPF_RB_FORCE_WAKEUP);
	return 0;
}
