/*
 * agent/transport.h - how the agent (libhalloc.so) and the tracer
 * (halloc-trace) talk. Internal: shared by agent/ and tracer/ only.
 *
 * The tracer creates a pipe and a shared memory file (memfd), starts the
 * program with LD_PRELOAD=libhalloc.so and HALLOC_AGENT_ENV set, and reads
 * the pipe into the log.
 *
 * Each thread of a traced process owns one slot of the shared memory and
 * builds its current frame (frame header + chunk header + records) right in
 * it. When the next record does not fit, the thread writes the frame to the
 * pipe with one write(2) (atomic: a frame is at most PIPE_BUF bytes) and
 * starts a new one in the same slot. Because the slot lives in memory the
 * tracer can read, a process that ends in any way - exit, _exit, abort, a
 * fatal signal, even SIGKILL - loses nothing: after the traced processes
 * have ended, the tracer appends every slot's unflushed frame to the log
 * (skipping a frame whose (slot, chunk_no) already came through the pipe).
 *
 * Invariants:
 *  - `used` counts whole records only: the writer stores it (release) after
 *    a record is complete, so a reader never sees half a record.
 *  - A slot is owned by at most one thread at a time (state != 0). A thread
 *    that ends flushes its frame and frees its slot; chunk_no keeps counting
 *    across owners, so (slot, chunk_no) names one frame for the whole run.
 *  - The frame header's `length` is only meaningful once the frame is
 *    written to the pipe; the tracer computes it from `used` for leftovers.
 */
#ifndef HALLOC_AGENT_TRANSPORT_H
#define HALLOC_AGENT_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "halloc/log.h"

/*
 * Environment variable the tracer sets for the agent. Value, with no
 * spaces: "fd=N,shm=N,pid=N,depth=N,follow=0|1[,sample=N][,limit=N]"
 *   fd     the pipe's write end
 *   shm    the shared memory file (struct halloc_shm)
 *   pid    the only process to record (0 with follow=1: every process)
 *   depth  call stack frames to capture (1..HALLOC_DEPTH_MAX)
 *   follow 1: record forked and exec'd processes too
 *   sample mean bytes between sampled allocations (agent/sample.c);
 *          absent or 0: record every event
 *   limit  optional: the live heap's budget in bytes (halloc-trace
 *          --limit): an allocation that would take it over fails with
 *          ENOMEM (a REFUSED record, reason HALLOC_REFUSED_LIMIT)
 * then, optionally, fault injection's keys (agent/faults.c): fail_after=N,
 * fail_rate=PPB, seed=S, and repeated fail_at=A,fail_len=L,
 * fail_skip=A,fail_slen=L, fail_exe=K and fail_lib=K. Every value is a plain number,
 * so a reader skips the keys it does not know.
 * Without follow, the agent removes the variable from its environment so
 * that programs it starts do not see it. With follow, the first traced
 * image rewrites "follow=1" to "follow=2" in place: an image that reads 2
 * was started by exec in a traced process (PROCESS flags bit 0). The
 * tracer only ever writes 0 or 1.
 */
#define HALLOC_AGENT_ENV "HALLOC_AGENT"

/*
 * One step through HALLOC_AGENT's value, "key=N,key=N,...": the next key
 * (*key, *key_len) and its number (*value), *s moved past them. 1 for a
 * pair, 0 at the end, -1 when the value is malformed (no '=', no digits,
 * a number over 64 bits, something else than ',' after it). The agent
 * reads the value before anything else of it is set up: no libc here.
 */
static inline int halloc_agent_next_key(const char **s, const char **key,
					size_t *key_len, uint64_t *value)
{
	const char *p = *s;
	uint64_t v = 0;

	if (!*p)
		return 0;
	*key = p;
	while (*p && *p != '=' && *p != ',')
		p++;
	*key_len = (size_t)(p - *key);
	if (*p++ != '=' || *p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (*p == ',')
		p++;
	else if (*p)
		return -1;
	*s = p;
	*value = v;
	return 1;
}

/*
 * fail_exe and fail_lib name an object by this key: FNV-1a of its file
 * name (the part after the last '/'), in 62 bits so that every value fits
 * a signed long, never 0. The tracer computes it from the path it found,
 * the agent from the loader's name: the directories may differ.
 */
static inline uint64_t halloc_library_key(const char *path)
{
	const char *base = path;
	uint64_t h = 0xcbf29ce484222325ull;

	for (const char *c = path; *c; c++)
		if (*c == '/')
			base = c + 1;
	for (; *base; base++)
		h = (h ^ (unsigned char)*base) * 0x100000001b3ull;
	return (h & 0x3fffffffffffffffull) | 1;
}

#define HALLOC_SHM_MAGIC 0x4d48534f4c4c4148ull /* "HALLOSHM" */
#define HALLOC_SHM_VERSION 1u
#define HALLOC_SHM_SLOTS 4096u

enum halloc_pipe_state {
	HALLOC_PIPE_READING = 0, /* the memfd starts zeroed */
	HALLOC_PIPE_STOPPED = 1,
};

struct halloc_slot {
	uint32_t state;    /* 0 free, else owned (the owner's tid); atomic */
	uint32_t used;     /* bytes of frame[] filled, whole records; atomic */
	uint32_t chunk_no; /* number of the frame being built in this slot */
	uint32_t reserved;
	uint64_t stream;   /* stream of the owner, 0 if never owned */
	uint64_t reserved2;
	/* frame header, chunk header, records */
	unsigned char frame[HALLOC_FRAME_MAX];
};

struct halloc_shm {
	uint64_t magic;      /* HALLOC_SHM_MAGIC */
	uint32_t version;    /* HALLOC_SHM_VERSION */
	uint32_t nslots;     /* HALLOC_SHM_SLOTS */
	uint32_t slot_hint;  /* where to start looking for a free slot; atomic */
	uint32_t slots_full; /* times a thread found no free slot; atomic */
	/*
	 * The pipe. Agents hold a read end of it themselves, so a write never
	 * raises SIGPIPE (blocking it around every write cost two system
	 * calls a frame); instead the tracer says here when it stops reading:
	 * it sets pipe_state to HALLOC_PIPE_STOPPED, waits until no agent is
	 * inside a write (writers, counted around each), then reads what is
	 * left. An agent that finds it stopped keeps its frames in their
	 * slots, as it did on EPIPE. tracer_pid: for an agent whose pipe is
	 * full to find out that the tracer is gone.
	 */
	uint32_t tracer_pid;
	uint32_t pipe_state; /* enum halloc_pipe_state; atomic */
	uint32_t writers;    /* agents inside a write(2) to the pipe; atomic */
	uint32_t reserved32;
	uint64_t reserved[3];
	struct halloc_slot slots[]; /* nslots of them */
};

#define HALLOC_SHM_SIZE(nslots)                                                \
	(sizeof(struct halloc_shm) + (size_t)(nslots) * sizeof(struct halloc_slot))

#endif /* HALLOC_AGENT_TRANSPORT_H */
