/*
 * agent/agent.h - what the files of libhalloc.so share. Internal.
 *
 * One allocation, followed through the agent:
 *   interpose.c  malloc() & co: enter the agent, call glibc, hand the result on
 *   events.c     sequence number, time, the record's bytes
 *   stack.c      the call stack, captured (unwind.c, cfi.c) and given an id
 *   modules.c    which objects are mapped, so stacks can be symbolized later
 *   buffer.c     the thread's frame in shared memory, flushed to the pipe
 *   agent.c      start (HALLOC_AGENT), fork, thread and process end
 *
 * Invariants:
 *  - Reentrancy: an entry point records only through ha_agent_enter(), which
 *    sets the thread's guard until ha_agent_leave(). While the guard is set,
 *    every allocation of that thread (by the loader, glibc, or a
 *    signal handler that interrupted the agent) goes straight to glibc,
 *    unrecorded. So the agent may call anything that allocates, but only
 *    with the guard set; and it never allocates itself (mmap only).
 *  - No lock shared by threads on the allocation path: a thread owns its
 *    buffer, sequence numbers come from one atomic counter, stack ids from a
 *    lock-free table. Locks exist only on rare paths (module rescans, the
 *    fallback buffers used when shared memory has no free slot).
 *  - Per-thread state is initial-exec TLS (the Makefile forces the model):
 *    reaching it never calls __tls_get_addr, which may allocate.
 */
#ifndef HALLOC_AGENT_AGENT_H
#define HALLOC_AGENT_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/transport.h"
#include "agent/unwind.h"
#include "halloc/log.h"

#pragma GCC visibility push(hidden)

/* ---- process-wide state (agent.c) ------------------------------------- */

/*
 * UNINIT: nothing decided yet, the next call starts the agent. STARTING:
 * one thread is starting it. PENDING: a followed child that has not
 * announced its stream yet. OFF: not traced, tracer gone, or a child that
 * is not followed.
 */
enum ha_agent_status {
	HA_AGENT_UNINIT = 0,
	HA_AGENT_STARTING,
	HA_AGENT_ON,
	HA_AGENT_PENDING,
	HA_AGENT_OFF,
};

/* Read on every call; written rarely. */
extern int ha_agent_status;

struct ha_agent_config {
	int fd;		/* pipe to the tracer */
	int shm_fd;	/* struct halloc_shm */
	unsigned depth; /* frames per stack, 1..HALLOC_DEPTH_MAX */
	bool follow;	/* record forked and exec'd processes too */
	uint64_t sample; /* mean bytes between samples; 0: record all */
};

struct ha_agent_stream {
	struct ha_agent_config cfg;
	struct halloc_shm *shm;
	uint64_t id; /* the stream (process image) id, never 0 */
	uint32_t pid;
	uint64_t base_us; /* CLOCK_MONOTONIC_COARSE at the stream's start */
	int fd;		  /* where frames go: a high duplicate of cfg.fd */
	int reader;	  /* our read end of the pipe (no SIGPIPE); -1: none */
	dev_t pipe_dev;	  /* identity of the pipe */
	ino_t pipe_ino;
};

extern struct ha_agent_stream ha_agent;

/*
 * The stream's sequence counter, alone on its cache line: every event of
 * every thread takes a number, so the line moves between cores all the
 * time, and anything else on it (ha_agent, read on every event) would
 * move with it. Aligned is not enough: the padding keeps the linker from
 * putting the next variable after it on the same line.
 */
struct ha_agent_seq {
	uint64_t next;
	unsigned char pad[64 - sizeof(uint64_t)];
} __attribute__((aligned(64)));

extern struct ha_agent_seq ha_agent_seq;

static inline uint64_t ha_agent_next_seq(void)
{
	return __atomic_fetch_add(&ha_agent_seq.next, 1, __ATOMIC_RELAXED);
}

/* Recording failed for good (the tracer is gone): stop, quietly. */
void ha_agent_disable(void);

/* ---- per-thread state --------------------------------------------------- */

struct ha_agent_private;

struct ha_agent_thread {
	unsigned guard; /* nonzero while the agent runs on this thread */
	bool keyed;	/* thread-exit destructor registered */
	bool exiting;	/* thread or process ending: flush after every record */
	uint32_t tid;	/* 0 until the thread's first record */

	/* The frame being built (buffer.c). frame == NULL: none yet. */
	unsigned char *frame;
	struct halloc_slot *slot;      /* the shm slot we own, or NULL */
	struct ha_agent_private *priv; /* fallback buffer when no slot */
	uint32_t slot_no;	       /* chunk header's slot number */
	uint32_t used;		       /* bytes of frame in use */
	unsigned retry; /* private: flushes before a slot retry */

	/* Delta bases inside the current chunk (all restart at 0). */
	uint64_t last_seq;
	uint64_t last_time;
	uint64_t last_addr;

	/*
	 * Where the stack walk of the current call starts (interpose.c sets
	 * it; rip == 0: from the walk itself, through the agent's frames).
	 */
	struct ha_agent_regs here;

	/* sample.c: bytes to the next sample, and the thread's generator
	 * (0: not seeded yet) */
	int64_t sample_left;
	uint64_t sample_rng;

	uint64_t fork_seq;  /* taken in the parent just before fork() */
	uintptr_t stack_lo; /* the thread's stack, for the unwinder's loads */
	uintptr_t stack_hi; /* 0: not known yet */
	/* Its aligned words as unwind.c's walks check them: the first, and
	 * how many (0: not worked out yet, or none). */
	uintptr_t stack_first;
	uint64_t stack_words;
};

extern __thread struct ha_agent_thread ha_agent_self;

struct ha_agent_thread *ha_agent_enter_slow(void);

/*
 * Start recording one call on this thread, or return NULL: the agent is
 * off, or this thread is already inside the agent. The OFF check comes
 * first so that an untraced program pays one load and one branch.
 */
static inline struct ha_agent_thread *ha_agent_enter(void)
{
	int s = __atomic_load_n(&ha_agent_status, __ATOMIC_ACQUIRE);
	struct ha_agent_thread *t;

	if (__builtin_expect(s != HA_AGENT_ON, 0)) {
		if (s == HA_AGENT_OFF)
			return NULL;
		return ha_agent_enter_slow();
	}
	t = &ha_agent_self;
	if (t->guard)
		return NULL;
	t->guard = 1;
	return t;
}

static inline void ha_agent_leave(struct ha_agent_thread *t)
{
	t->here.rip = 0;
	t->guard = 0;
}

/* The program's path, for its MODULE_LOAD (agent.c). */
const char *ha_agent_exe_path(size_t *len);
/* A thread got its first buffer: have its end noticed (agent.c). */
void ha_agent_thread_attach(struct ha_agent_thread *t);

/*
 * SplitMix64's finalizer: every bit of x moves every bit of the result.
 * The agent's hashes, stream ids and pseudo-random draws all use it
 * (--fail-rate's draws are reproducible only while it stays the same).
 */
static inline uint64_t ha_agent_mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/*
 * glibc's allocator under the names it exports for interposers (no dlsym:
 * they work before the loader has resolved anything). interpose.c and
 * interpose_pages.c call these. They are glibc's: not hidden.
 */
#pragma GCC visibility push(default)
extern void *__libc_malloc(size_t size);
extern void __libc_free(void *ptr);
extern void *__libc_calloc(size_t nmemb, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);
#pragma GCC visibility pop

/* ---- sample.c: sampled recording (--sample) --------------------------- */

/* A free or a realloc's old block that is not recorded; no stack. */
#define HA_AGENT_NO_SEQ	  UINT64_MAX
#define HA_AGENT_NO_STACK UINT64_MAX

bool ha_agent_sample_slow(struct ha_agent_thread *t, uint64_t size);

/*
 * Is a new block of `size` bytes recorded? Always when not sampling; else
 * when the thread's countdown runs out. A recorded block then joins the
 * sampled set (ha_agent_sample_keep). Inline: the common answer is a
 * subtraction.
 */
static inline bool ha_agent_sampled(struct ha_agent_thread *t, size_t size)
{
	int64_t s = size ? (int64_t)size : 1;

	if (!ha_agent.cfg.sample)
		return true;
	if (t->sample_left > s) {
		t->sample_left -= s;
		return false;
	}
	return ha_agent_sample_slow(t, (uint64_t)s);
}

/*
 * ha_agent_free_seq() of a p whose count (below) is not zero: p leaves the
 * sampled set, or was not in it (HA_AGENT_NO_SEQ).
 */
uint64_t ha_agent_sampled_free_seq(void *p);

/* sample.c: how many sampled addresses have each hash (see there). */
#define HA_AGENT_SAMPLE_FILTER_BITS 14
extern uint32_t ha_agent_sample_filter[1u << HA_AGENT_SAMPLE_FILTER_BITS];

static inline uint32_t *ha_agent_sample_count(uint64_t hash)
{
	return &ha_agent_sample_filter[(hash >> 32) &
				       ((1u << HA_AGENT_SAMPLE_FILTER_BITS) -
					1)];
}

/*
 * The sequence number of a free of p, taken before p goes back to glibc;
 * HA_AGENT_NO_SEQ when sampling and p was not sampled.
 */
static inline uint64_t ha_agent_free_seq(void *p)
{
	if (!ha_agent.cfg.sample)
		return ha_agent_next_seq();
	/* Most blocks were not sampled: known here, without a call. */
	if (!__atomic_load_n(ha_agent_sample_count(ha_agent_mix64((uintptr_t)p)),
			     __ATOMIC_RELAXED))
		return HA_AGENT_NO_SEQ;
	return ha_agent_sampled_free_seq(p);
}
void ha_agent_sample_insert(void *p);

/* p is a recorded block: when sampling, its free is to be recorded. */
static inline void ha_agent_sample_keep(void *p)
{
	if (ha_agent.cfg.sample)
		ha_agent_sample_insert(p);
}
void ha_agent_sample_fork_prepare(void);
void ha_agent_sample_fork_parent(void); /* and in the child */

/* ---- events.c: records ----------------------------------------------------
 */

void ha_agent_record_alloc_now(struct ha_agent_thread *t, unsigned fn,
			       void *p, size_t size);

/*
 * After the allocator returned p (NULL: failure, errno says why). Not
 * sampled (--sample): no stack walk, no record (sample.c); decided here,
 * inline, since it is almost every call.
 */
static inline void ha_agent_record_alloc(struct ha_agent_thread *t,
					 unsigned fn, void *p, size_t size)
{
	if (p && !ha_agent_sampled(t, size))
		return;
	ha_agent_record_alloc_now(t, fn, p, size);
}

/* A call that failed before reaching the allocator (bad arguments). */
void ha_agent_record_failed(struct ha_agent_thread *t, unsigned fn, size_t size,
			    int err);
/*
 * An allocation refused before reaching the allocator (enum halloc_refusal):
 * the caller sets errno = ENOMEM and returns NULL; nothing is counted.
 */
void ha_agent_record_refused(struct ha_agent_thread *t, unsigned fn,
			     size_t size, unsigned reason);
/* seq was taken before the block was released. */
void ha_agent_record_free(struct ha_agent_thread *t, unsigned free_fn,
			  uint64_t seq, void *p);
/*
 * realloc of old (non-NULL) to size > 0: stack and seq taken before the
 * call; result is what the allocator returned (NULL: failed, old intact).
 */
void ha_agent_record_realloc(struct ha_agent_thread *t, unsigned fn,
			     uint64_t stack, uint64_t seq, void *old,
			     void *result, size_t size);
/*
 * realloc's stack, taken before the call: HA_AGENT_NO_STACK when sampling
 * and the new block is not sampled (the decision is made here, on size).
 */
uint64_t ha_agent_realloc_stack(struct ha_agent_thread *t, size_t size);

void ha_agent_put_stack(struct ha_agent_thread *t, uint64_t seq, uint64_t id,
			const uintptr_t *frames, unsigned n);

struct ha_agent_segment {
	uintptr_t start;
	uintptr_t size;
};

void ha_agent_put_module_load(struct ha_agent_thread *t, uint32_t id,
			      uintptr_t bias, const char *path, size_t path_len,
			      const unsigned char *build_id,
			      size_t build_id_len,
			      const struct ha_agent_segment *seg,
			      unsigned nseg);
void ha_agent_put_module_unload(struct ha_agent_thread *t, uint32_t id);

struct ha_agent_process {
	uint32_t pid;
	uint32_t ppid;
	uint64_t parent_stream;
	uint64_t parent_seq;
	uint32_t flags;	   /* bit 0: started by exec in a traced process */
	uint64_t start_ns; /* CLOCK_REALTIME */
	const char *exe;
	size_t exe_len;
	const char *args; /* argv as in /proc/self/cmdline: NUL-terminated */
	size_t args_len;
};

void ha_agent_put_process(struct ha_agent_thread *t,
			  const struct ha_agent_process *p);

/* ---- transport.c: the pipe and the shared memory ------------------------ */

/* Map the shared memory, find the pipe (ha_agent.fd, shm, pipe identity). */
bool ha_agent_transport_open(void);
/*
 * The pipe `broken` is gone (the program closed it): find it again. The
 * new descriptor, or -1 if there is none (frames then stay in slots).
 */
int ha_agent_transport_reconnect(int broken);
/* A forked child that is not recorded: let go of the tracer's files. */
void ha_agent_transport_close(void);
void ha_agent_transport_fork_child(void);

/* ---- self.c: what the agent adds to the process ------------------------ */

void ha_agent_self_init(void);
/* pc lies in libhalloc.so: not the program's frame. */
bool ha_agent_self_frame(uintptr_t pc);
/* calloc's size as the program asked for it (SIZE_MAX on overflow). */
size_t ha_agent_calloc_size(size_t nmemb, size_t size, const void *caller);

/* ---- stack.c: call stacks ----------------------------------------------- */

int ha_agent_stack_init(void);
void ha_agent_stack_fork_child(void);
/* Capture the caller's stack; its id (a STACK record is written if new). */
uint64_t ha_agent_stack_id(struct ha_agent_thread *t);

/* ---- modules.c: mapped objects ------------------------------------------ */

int ha_agent_modules_init(void);
/* Emit MODULE_LOAD/UNLOAD for what changed since the last scan. */
void ha_agent_modules_rescan(struct ha_agent_thread *t);
/* Before a new stack is published: make sure its frames' modules are known. */
void ha_agent_modules_cover(struct ha_agent_thread *t, const uintptr_t *frames,
			    unsigned n);
/* Bumped on every unload: mixed into stack hashes. */
uint32_t ha_agent_modules_generation(void);
/*
 * A dlclose is about to run: from now on no stack may reuse an id whose
 * addresses may soon mean another library (not even before the unload is
 * seen by a rescan).
 */
void ha_agent_modules_closing(void);
void ha_agent_modules_fork_prepare(void);
void ha_agent_modules_fork_parent(void);
/* The child's new stream: MODULE_LOAD again for every known module. */
void ha_agent_modules_fork_child(void);
void ha_agent_modules_announce(struct ha_agent_thread *t);

/* ---- buffer.c: the thread's frame and the pipe -----------------------------
 */

/*
 * Room for a record of at most max bytes (max <= HALLOC_FRAME_MAX - the
 * headers); NULL when recording stopped. Every begin is followed by one
 * commit with the end of what was written.
 */
unsigned char *ha_agent_buf_begin_slow(struct ha_agent_thread *t, size_t max);
void ha_agent_buf_commit_slow(struct ha_agent_thread *t, unsigned char *end);

/* Inline, the common case: a chunk under way in a slot, with room. (A
 * thread with a slot has no private buffer, and frame is the slot's.) */
static inline unsigned char *ha_agent_buf_begin(struct ha_agent_thread *t,
						size_t max)
{
	if (__builtin_expect(t->slot && t->used &&
				 t->used + max <= HALLOC_FRAME_MAX &&
				 __atomic_load_n(&ha_agent_status,
						 __ATOMIC_RELAXED) !=
				     HA_AGENT_OFF,
			     1))
		return t->frame + t->used;
	return ha_agent_buf_begin_slow(t, max);
}

static inline void ha_agent_buf_commit(struct ha_agent_thread *t,
				       unsigned char *end)
{
	if (__builtin_expect(t->slot && !t->exiting, 1)) {
		t->used = (uint32_t)(end - t->frame);
		/* The record is whole: now the tracer may see it. */
		__atomic_store_n(&t->slot->used, t->used, __ATOMIC_RELEASE);
		return;
	}
	ha_agent_buf_commit_slow(t, end);
}
/* The same for a record that is not an event (PROCESS, MODULE_*, STACK,
 * TYPE): its chunk is sent without HALLOC_FRAME_EVENTS_ONLY. */
unsigned char *ha_agent_buf_begin_defs(struct ha_agent_thread *t, size_t max);
/*
 * Send what the thread holds now, keeping its slot: the start of a stream
 * (PROCESS, MODULE_LOAD), so that the tracer knows the modules while the
 * program runs (it opens their debug information meanwhile) even when the
 * thread that started the stream makes no more records until the end.
 */
void ha_agent_buf_send(struct ha_agent_thread *t);
/* Flush what the thread holds and give its slot or buffer back. */
void ha_agent_buf_release(struct ha_agent_thread *t);
/* At exit: flush other threads' private buffers (they are not in shm). */
void ha_agent_buf_flush_private(void);
/* An exec'd image frees the slots of the image before it. */
void ha_agent_buf_reclaim_exec(void);
void ha_agent_buf_fork_prepare(void);
void ha_agent_buf_fork_parent(void);
void ha_agent_buf_fork_child(struct ha_agent_thread *t);

/* Largest record payload a frame holds. */
#define HA_AGENT_RECORD_MAX                                                    \
	(HALLOC_FRAME_MAX - HALLOC_FRAME_HEADER_SIZE - HALLOC_CHUNK_HEADER_SIZE)

#pragma GCC visibility pop

#endif /* HALLOC_AGENT_AGENT_H */
