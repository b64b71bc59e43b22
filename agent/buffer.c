/*
 * agent/buffer.c - each thread's frame, and the pipe it goes to.
 *
 * A thread owns one slot of the tracer's shared memory (agent/transport.h)
 * and builds its frame right there: frame header, chunk header, records.
 * `used` is stored with release after each whole record, so the tracer can
 * recover the frame of a process that died in any way. When the next record
 * might not fit, the frame goes to the pipe in one write(2) (at most
 * PIPE_BUF bytes: atomic) and a new chunk starts in the same slot.
 *
 * When every slot is taken, the thread builds its frames in a private
 * mmap'd buffer instead (counted in shm->slots_full). Those frames are
 * lost if the process is killed, so they are flushed at exit, and the
 * thread keeps trying to get a slot back.
 *
 * A thread that is ending (its thread-exit destructor ran, or the process
 * is exiting) still allocates and frees a little (glibc's thread cleanup,
 * destructors that run after ours); such a thread flushes after every
 * record and gives its slot back at once, so no slot stays owned by a dead
 * thread of a live process.
 *
 * The program must not die of SIGPIPE if the tracer is gone: the agent
 * holds a read end of the pipe itself, and the tracer says in shared
 * memory when it stops reading (transport.h); without a read end of its
 * own, the write blocks SIGPIPE.
 *
 * Without a pipe (the tracer stopped reading, or the program closed our
 * descriptor and it cannot be found again), full frames stay in
 * their slots, owned, for the tracer's leftover pass; when no slot is left,
 * recording stops.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"

/* A frame built outside shared memory, when no slot was free. */
struct ha_agent_private {
	struct ha_agent_private *next;
	struct ha_agent_private *prev;
	uint32_t lock;	 /* owner vs. the exit-time flush; atomic */
	uint32_t number; /* chunk headers say slot nslots + number */
	uint32_t chunk_no;
	uint32_t used;
	unsigned char frame[HALLOC_FRAME_MAX];
};

/* Flushes of a private buffer between two tries to get a slot. */
#define SLOT_RETRY 16

/* Protects the lists of private buffers (rare path). */
static uint32_t private_lock;
static struct ha_agent_private *private_busy; /* owned by a thread */
static struct ha_agent_private *private_idle; /* ready for reuse */
static uint32_t private_count;

static void spin_lock(uint32_t *lock)
{
	while (__atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE))
		sched_yield();
}

static bool spin_trylock(uint32_t *lock)
{
	return !__atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE);
}

static void spin_unlock(uint32_t *lock)
{
	__atomic_store_n(lock, 0, __ATOMIC_RELEASE);
}

enum sent {
	SENT,	 /* the frame went to the pipe */
	NO_PIPE, /* there is no pipe (any more): keep frames in slots */
	FAILED,	 /* the tracer is gone: recording is off */
};

/* How long a writer to a full pipe waits before it asks whether the
 * tracer is still there. */
#define FULL_PIPE_WAIT_MS 100

static bool tracer_gone(void)
{
	pid_t pid = (pid_t)ha_agent.shm->tracer_pid;

	return pid > 0 && kill(pid, 0) < 0 && errno == ESRCH;
}

/*
 * One frame into a pipe we hold a read end of (transport.c): it never
 * raises SIGPIPE, so no signal mask is needed. fd is non-blocking and a
 * frame is at most PIPE_BUF bytes: it goes in whole or not at all. 0, or
 * EPIPE when the tracer stopped reading or is gone, or errno.
 */
static int write_held(int fd, const unsigned char *buf, size_t len)
{
	struct halloc_shm *shm = ha_agent.shm;

	for (;;) {
		ssize_t n;
		int err;

		/* Counted before the check: the tracer, which sets the state
		 * and then waits for writers to be 0, sees this write, or
		 * this write sees the state (transport.h). */
		__atomic_fetch_add(&shm->writers, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&shm->pipe_state, __ATOMIC_SEQ_CST) !=
		    HALLOC_PIPE_READING) {
			__atomic_fetch_sub(&shm->writers, 1, __ATOMIC_RELEASE);
			return EPIPE;
		}
		n = write(fd, buf, len);
		err = n == (ssize_t)len ? 0 : n < 0 ? errno : EIO;
		__atomic_fetch_sub(&shm->writers, 1, __ATOMIC_RELEASE);
		if (err == EAGAIN) {
			/* Full: wait for the tracer to read, if it is there. */
			struct pollfd pfd = {.fd = fd, .events = POLLOUT};

			if (poll(&pfd, 1, FULL_PIPE_WAIT_MS) == 0 &&
			    tracer_gone())
				return EPIPE;
		} else if (err != EINTR) {
			return err;
		}
	}
}

/* One write(2) with SIGPIPE blocked; 0 or errno. */
static int write_all(int fd, const unsigned char *buf, size_t len)
{
	sigset_t pipe_set, old;
	int err = 0;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno == EAGAIN) {
			/* Someone made the pipe non-blocking: wait for room. */
			struct pollfd pfd = {.fd = fd, .events = POLLOUT};

			poll(&pfd, 1, -1);
		} else {
			err = n < 0 ? errno : EIO;
			break;
		}
	}
	if (err == EPIPE && !sigismember(&old, SIGPIPE)) {
		/* Consume our SIGPIPE before the old mask lets it through. */
		struct timespec zero = {0, 0};

		sigtimedwait(&pipe_set, NULL, &zero);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return err;
}

/*
 * One frame to the pipe. If the program closed our descriptor, find the
 * pipe again (transport.c); if the tracer is gone, stop recording: the
 * program must not notice either way.
 */
static enum sent write_frame(const unsigned char *buf, size_t len)
{
	int fd = __atomic_load_n(&ha_agent.fd, __ATOMIC_ACQUIRE), err;

	for (;;) {
		if (__atomic_load_n(&ha_agent_status, __ATOMIC_RELAXED) ==
		    HA_AGENT_OFF)
			return FAILED;
		if (fd < 0)
			return NO_PIPE;
		err = ha_agent.reader >= 0 ? write_held(fd, buf, len)
					   : write_all(fd, buf, len);
		if (!err)
			return SENT;
		if (err == EPIPE) {
			/*
			 * No reader: the tracer stopped reading (it does at end
			 * of file) or is gone. Frames stay in slots from now
			 * on: a live tracer collects them at the end.
			 */
			__atomic_store_n(&ha_agent.fd, -1, __ATOMIC_RELEASE);
			return NO_PIPE;
		}
		if (err != EBADF)
			break;
		fd = ha_agent_transport_reconnect(fd);
	}
	ha_agent_disable();
	return FAILED;
}

/*
 * While a frame is built, its header's flags say whether a record that is
 * not an event went in (so this survives moving the frame to a slot, and
 * the exit-time flush of another thread's private buffer); flush() turns
 * that into HALLOC_FRAME_EVENTS_ONLY. A frame the tracer or an exec'd image
 * sends for a dead thread goes without the flag, which is always correct.
 */
#define DEFS_SEEN 0x8000u

static uint32_t *used_word(struct ha_agent_thread *t)
{
	return t->slot ? &t->slot->used : &t->priv->used;
}

static uint32_t *chunk_word(struct ha_agent_thread *t)
{
	return t->slot ? &t->slot->chunk_no : &t->priv->chunk_no;
}

static int slot_take(uint32_t tid);

/*
 * No pipe: a full frame stays in its slot, which stays owned, and the
 * tracer collects it with the leftovers; the thread needs another slot
 * (t->frame becomes NULL). A private frame is moved into a slot first.
 */
static bool park(struct ha_agent_thread *t)
{
	struct halloc_chunk_header ch;
	struct halloc_slot *s;
	int k;

	if (t->slot) {
		t->slot = NULL;
		t->frame = NULL;
		t->used = 0;
		return true;
	}
	k = slot_take(t->tid);
	if (k < 0) {
		/* Nowhere left to put events: stop recording. */
		ha_agent_disable();
		return false;
	}
	s = &ha_agent.shm->slots[k];
	memcpy(s->frame, t->frame, t->used);
	memcpy(&ch, s->frame + HALLOC_FRAME_HEADER_SIZE, sizeof(ch));
	ch.slot = (uint32_t)k;
	ch.chunk_no = s->chunk_no;
	memcpy(s->frame + HALLOC_FRAME_HEADER_SIZE, &ch, sizeof(ch));
	__atomic_store_n(&s->used, t->used, __ATOMIC_RELEASE);
	t->used = 0;
	__atomic_store_n(&t->priv->used, 0, __ATOMIC_RELEASE);
	t->priv->chunk_no++;
	return true;
}

/*
 * Send the frame (or park it) and start the next chunk: used 0, chunk_no
 * + 1. False if the frame is still there, unsent, and recording is off.
 */
static bool flush(struct ha_agent_thread *t)
{
	struct halloc_frame_header fh;

	if (!t->used)
		return true;
	memcpy(&fh, t->frame, sizeof(fh));
	fh.flags = fh.flags & DEFS_SEEN ? 0 : HALLOC_FRAME_EVENTS_ONLY;
	fh.length = t->used - HALLOC_FRAME_HEADER_SIZE;
	fh.type = HALLOC_FRAME_CHUNK;
	memcpy(t->frame, &fh, sizeof(fh));
	switch (write_frame(t->frame, t->used)) {
	case SENT:
		break;
	case NO_PIPE:
		return park(t);
	default:
		/* The frame stays where it is: the tracer may collect it. */
		return false;
	}
	t->used = 0;
	__atomic_store_n(used_word(t), 0, __ATOMIC_RELEASE);
	__atomic_store_n(chunk_word(t), *chunk_word(t) + 1, __ATOMIC_RELEASE);
	return true;
}

/* A free slot, now owned by tid; -1 if none. */
static int slot_take(uint32_t tid)
{
	struct halloc_shm *shm = ha_agent.shm;
	uint32_t n = shm->nslots, start, i;

	start = __atomic_fetch_add(&shm->slot_hint, 1, __ATOMIC_RELAXED) % n;
	for (i = 0; i < n; i++) {
		uint32_t k = (start + i) % n, free_state = 0;
		struct halloc_slot *s = &shm->slots[k];

		if (__atomic_load_n(&s->state, __ATOMIC_RELAXED) ||
		    !__atomic_compare_exchange_n(&s->state, &free_state, tid,
						 false, __ATOMIC_ACQUIRE,
						 __ATOMIC_RELAXED))
			continue;
		s->stream = ha_agent.id;
		/* A free slot holds nothing: its last owner flushed it. */
		__atomic_store_n(&s->used, 0, __ATOMIC_RELEASE);
		return (int)k;
	}
	__atomic_fetch_add(&shm->slots_full, 1, __ATOMIC_RELAXED);
	return -1;
}

static bool slot_acquire(struct ha_agent_thread *t)
{
	int k = slot_take(t->tid);

	if (k < 0)
		return false;
	t->slot = &ha_agent.shm->slots[k];
	t->slot_no = (uint32_t)k;
	t->frame = t->slot->frame;
	t->used = 0;
	return true;
}

static void slot_release(struct ha_agent_thread *t)
{
	__atomic_store_n(&t->slot->state, 0, __ATOMIC_RELEASE);
	t->slot = NULL;
	t->frame = NULL;
}

/*
 * An image started by exec: the threads of the image before it are gone,
 * and the slots they owned would stay owned until the run ends (after
 * about nslots execs every image would build its frames privately, which
 * SIGKILL loses). Their unsent frames go to the pipe now, and the slots
 * are free again. Such a slot is known by its chunk header: our pid, in a
 * stream that is not ours (no live process can share our pid). A frame
 * that cannot be sent stays, owned, for the tracer's leftover pass; one
 * the tracer has appended already is dropped by the reader as a
 * duplicate (slot, chunk_no).
 */
void ha_agent_buf_reclaim_exec(void)
{
	struct halloc_shm *shm = ha_agent.shm;
	uint32_t taken, n;

	if (!shm)
		return;
	/*
	 * Reading a slot's page maps it into the tracer's memfd for good
	 * (16 MiB for all of them): look only where a slot may have been
	 * taken. Until slot_hint reaches nslots, take number j found slot j
	 * free (all earlier takes got lower slots), so slots from slot_hint
	 * on were never owned. (Should the counter wrap after 2^32 takes,
	 * the slots missed stay owned until the run ends, as without this.)
	 */
	taken = __atomic_load_n(&shm->slot_hint, __ATOMIC_RELAXED);
	n = taken < shm->nslots ? taken : shm->nslots;
	for (uint32_t k = 0; k < n; k++) {
		struct halloc_slot *s = &shm->slots[k];
		uint32_t state = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
		struct halloc_chunk_header ch;
		struct halloc_frame_header fh;
		uint32_t used;

		if (!state || s->stream == ha_agent.id)
			continue;
		memcpy(&ch, s->frame + HALLOC_FRAME_HEADER_SIZE, sizeof(ch));
		if (ch.pid != ha_agent.pid || ch.stream != s->stream ||
		    ch.slot != k)
			continue;
		used = __atomic_load_n(&s->used, __ATOMIC_ACQUIRE);
		if (used > HALLOC_FRAME_HEADER_SIZE + HALLOC_CHUNK_HEADER_SIZE &&
		    used <= HALLOC_FRAME_MAX) {
			fh.length = used - HALLOC_FRAME_HEADER_SIZE;
			fh.type = HALLOC_FRAME_CHUNK;
			fh.flags = 0;
			memcpy(s->frame, &fh, sizeof(fh));
			if (write_frame(s->frame, used) != SENT)
				continue;
			/* Sent: the slot's next owner starts the next chunk. */
			__atomic_store_n(&s->chunk_no, s->chunk_no + 1,
					 __ATOMIC_RELEASE);
		}
		__atomic_store_n(&s->used, 0, __ATOMIC_RELEASE);
		__atomic_compare_exchange_n(&s->state, &state, 0, false,
					    __ATOMIC_RELEASE, __ATOMIC_RELAXED);
	}
}

static struct ha_agent_private *private_get(void)
{
	struct ha_agent_private *b;

	spin_lock(&private_lock);
	b = private_idle;
	if (b) {
		private_idle = b->next;
	} else {
		b = mmap(NULL, sizeof(*b), PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (b == MAP_FAILED) {
			spin_unlock(&private_lock);
			return NULL;
		}
		b->number = private_count++;
	}
	b->prev = NULL;
	b->next = private_busy;
	if (private_busy)
		private_busy->prev = b;
	private_busy = b;
	spin_unlock(&private_lock);
	return b;
}

static void private_put(struct ha_agent_private *b)
{
	spin_lock(&private_lock);
	if (b->prev)
		b->prev->next = b->next;
	else
		private_busy = b->next;
	if (b->next)
		b->next->prev = b->prev;
	b->next = private_idle;
	private_idle = b;
	spin_unlock(&private_lock);
}

/* Give the thread somewhere to build frames: a slot, else a private one. */
static bool attach(struct ha_agent_thread *t)
{
	if (!t->tid)
		t->tid = (uint32_t)gettid();
	ha_agent_thread_attach(t);
	if (slot_acquire(t))
		return true;
	t->priv = private_get();
	if (!t->priv)
		return false;
	t->slot_no = ha_agent.shm->nslots + t->priv->number;
	t->frame = t->priv->frame;
	t->used = 0;
	t->retry = SLOT_RETRY;
	return true;
}

/* A private buffer just flushed: time to try for a slot again? */
static void private_retry(struct ha_agent_thread *t)
{
	struct ha_agent_private *b = t->priv;

	if (--t->retry)
		return;
	t->retry = SLOT_RETRY;
	t->priv = NULL;
	if (slot_acquire(t)) {
		spin_unlock(&b->lock);
		private_put(b);
	} else {
		t->priv = b;
		t->frame = b->frame;
	}
}

/* The thread's buffer, ready for writing (a private one locked). */
static bool ready(struct ha_agent_thread *t)
{
	if (!t->frame && !attach(t))
		return false;
	if (t->priv) {
		/* The exit-time flush may have sent our frame meanwhile. */
		spin_lock(&t->priv->lock);
		t->used = t->priv->used;
	}
	return true;
}

unsigned char *ha_agent_buf_begin_slow(struct ha_agent_thread *t, size_t max)
{
	struct halloc_chunk_header ch;

	if (__atomic_load_n(&ha_agent_status, __ATOMIC_RELAXED) ==
		HA_AGENT_OFF ||
	    !ready(t))
		return NULL;
	if (t->used + max > HALLOC_FRAME_MAX) {
		if (!flush(t))
			goto off;
		if (!t->frame) { /* parked: on to another slot */
			if (!ready(t))
				return NULL;
		} else if (t->priv) {
			private_retry(t);
		}
	}
	if (__atomic_load_n(&ha_agent_status, __ATOMIC_RELAXED) == HA_AGENT_OFF)
		goto off;
	if (!t->used) {
		ch.stream = ha_agent.id;
		ch.pid = ha_agent.pid;
		ch.tid = t->tid;
		ch.slot = t->slot_no;
		ch.chunk_no = *chunk_word(t);
		memset(t->frame, 0, HALLOC_FRAME_HEADER_SIZE);
		memcpy(t->frame + HALLOC_FRAME_HEADER_SIZE, &ch, sizeof(ch));
		t->used = HALLOC_FRAME_HEADER_SIZE + HALLOC_CHUNK_HEADER_SIZE;
		t->last_seq = 0;
		t->last_time = 0;
		t->last_addr = 0;
	}
	return t->frame + t->used;
off:
	if (t->priv)
		spin_unlock(&t->priv->lock);
	return NULL;
}

unsigned char *ha_agent_buf_begin_defs(struct ha_agent_thread *t, size_t max)
{
	unsigned char *p = ha_agent_buf_begin(t, max);
	struct halloc_frame_header fh;

	if (p) {
		memcpy(&fh, t->frame, sizeof(fh));
		fh.flags |= DEFS_SEEN;
		memcpy(t->frame, &fh, sizeof(fh));
	}
	return p;
}

void ha_agent_buf_commit_slow(struct ha_agent_thread *t, unsigned char *end)
{
	t->used = (uint32_t)(end - t->frame);
	/* The record is whole: now the tracer may see it. */
	__atomic_store_n(used_word(t), t->used, __ATOMIC_RELEASE);
	if (t->priv)
		spin_unlock(&t->priv->lock);
	/* Without a pipe the slot stays ours anyway: no need to let it go. */
	if (t->exiting && __atomic_load_n(&ha_agent.fd, __ATOMIC_RELAXED) >= 0)
		ha_agent_buf_release(t);
}

/* Flush a private buffer under its lock (the exit-time flush may have
 * sent its frame meanwhile). */
static void flush_private(struct ha_agent_thread *t)
{
	struct ha_agent_private *b = t->priv;

	spin_lock(&b->lock);
	t->used = b->used;
	flush(t);
	spin_unlock(&b->lock);
}

void ha_agent_buf_send(struct ha_agent_thread *t)
{
	if (!t->frame)
		return;
	if (t->priv)
		flush_private(t);
	else
		flush(t);
}

void ha_agent_buf_release(struct ha_agent_thread *t)
{
	if (!t->frame)
		return;
	if (t->priv) {
		flush_private(t);
		private_put(t->priv);
		t->priv = NULL;
		t->frame = NULL;
		return;
	}
	if (flush(t)) {
		if (t->slot) /* else parked */
			slot_release(t);
		return;
	}
	/* An unsent frame keeps its slot: the tracer collects it there. */
	t->slot = NULL;
	t->frame = NULL;
}

void ha_agent_buf_flush_private(void)
{
	struct ha_agent_private *b;
	struct ha_agent_thread tmp;

	spin_lock(&private_lock);
	for (b = private_busy; b; b = b->next) {
		/* Busy means its owner is writing it right now: leave it. */
		if (!spin_trylock(&b->lock))
			continue;
		memset(&tmp, 0, sizeof(tmp));
		tmp.priv = b;
		tmp.frame = b->frame;
		tmp.used = b->used;
		flush(&tmp);
		spin_unlock(&b->lock);
	}
	spin_unlock(&private_lock);
}

void ha_agent_buf_fork_prepare(void)
{
	spin_lock(&private_lock);
}

void ha_agent_buf_fork_parent(void)
{
	spin_unlock(&private_lock);
}

/*
 * In a followed child. The slot is the parent's (its thread lives on
 * there): forget it without touching it. The parent's private buffers are
 * copies of frames the parent will send itself: forget them too.
 */
void ha_agent_buf_fork_child(struct ha_agent_thread *t)
{
	t->slot = NULL;
	t->priv = NULL;
	t->frame = NULL;
	t->used = 0;
	t->tid = (uint32_t)gettid();
	private_busy = NULL;
	private_idle = NULL;
	spin_unlock(&private_lock);
}
