/*
 * agent/agent.c - the agent's life: start, fork, thread end, process end.
 *
 * Start happens on the first call into the agent (often a malloc made while
 * the loader runs constructors, before ours) or from our constructor,
 * whichever comes first. It reads HALLOC_AGENT by walking environ (no
 * getenv-and-copy: nothing here may allocate), maps the tracer's shared
 * memory and writes the stream's first records: PROCESS, then one
 * MODULE_LOAD per mapped object. Without the variable, with a bad one, or
 * in a process the tracer did not ask for, the agent turns itself off and
 * every call goes straight to glibc after one load and one branch.
 *
 * fork: without follow, the child records nothing and closes our
 * descriptors (never touching the slot it inherited: the parent's thread
 * owns it). With follow, the child is a new stream: new id, its own clock,
 * sequence numbers and stack ids, no slot; it announces itself (PROCESS
 * naming the parent's stream and the parent's sequence number at the fork,
 * then its modules) on its first event, so that a child that only execs
 * costs nothing.
 *
 * exec: without follow, HALLOC_AGENT is removed from environ and our
 * descriptors are close-on-exec, so nothing we start is traced. With
 * follow, the first image rewrites "follow=1" to "follow=2" in place in its
 * environment: an image that finds 2 knows it was started by exec in a
 * traced process (PROCESS flags bit 0).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "agent/accounting.h"
#include "agent/agent.h"
#include "agent/faults.h"
#include "agent/unwind.h"

int ha_agent_status;
struct ha_agent_stream ha_agent = {.reader = -1};
struct ha_agent_seq ha_agent_seq = {.next = 1};
__thread struct ha_agent_thread ha_agent_self;

extern char **environ;

static pthread_key_t thread_key;
static bool fork_locked_here; /* this process's prepare handler took locks */

static char exe_path[PATH_MAX];
static size_t exe_len;
static char *args; /* /proc/self/cmdline, the part a PROCESS record holds */
static size_t args_len;

/* What a followed child says about itself once it records. */
static struct ha_agent_process pending;

static const char env_prefix[] = HALLOC_AGENT_ENV "=";

const char *ha_agent_exe_path(size_t *len)
{
	*len = exe_len;
	return exe_path;
}

void ha_agent_disable(void)
{
	__atomic_store_n(&ha_agent_status, HA_AGENT_OFF, __ATOMIC_RELEASE);
}

static uint64_t clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Unique across the run: the kernel's per-exec random bytes (AT_RANDOM),
 * which a forked child shares with its parent, so also the pid and time.
 */
static uint64_t new_stream_id(void)
{
	const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
	uint64_t a = 0, b = 0, id;

	if (r) {
		memcpy(&a, r, sizeof(a));
		memcpy(&b, r + sizeof(a), sizeof(b));
	}
	id = ha_agent_mix64(a ^ ha_agent_mix64(b ^ ((uint64_t)getpid() << 32) ^
			 clock_ns(CLOCK_MONOTONIC)));
	return id ? id : 1;
}

static void start_clock(void)
{
	ha_agent.base_us = clock_ns(CLOCK_MONOTONIC_COARSE) / 1000u;
}

/* ---- HALLOC_AGENT --------------------------------------------------- */

/* The value of the variable whose "NAME=" is prefix, or NULL. */
static char *find_env(const char *prefix)
{
	size_t len = strlen(prefix);
	char **e;

	if (!environ)
		return NULL;
	for (e = environ; *e; e++)
		if (!strncmp(*e, prefix, len))
			return *e + len;
	return NULL;
}

/* Shift the pointers down over our variable: no allocation. */
static void remove_env(void)
{
	char **r, **w;

	if (!environ)
		return;
	for (r = w = environ; *r; r++)
		if (strncmp(*r, env_prefix, sizeof(env_prefix) - 1))
			*w++ = *r;
	*w = NULL;
}

/*
 * "fd=N,shm=N,pid=N,depth=N,follow=0|1[,sample=N][,limit=N]"
 * (agent/transport.h); unknown keys are skipped. *follow_at points at
 * follow's digit, for the exec marker.
 */
static bool parse_config(char *value, long *pid, char **follow_at)
{
	struct ha_agent_config *c = &ha_agent.cfg;
	long fd = -1, shm = -1, depth = HALLOC_DEPTH_DEFAULT, follow = 0;
	long sample = 0;
	long limit = 0;
	const char *p = value, *key;
	size_t klen;
	uint64_t number;
	int more;

	*pid = 0;
	*follow_at = NULL;
	while ((more = halloc_agent_next_key(&p, &key, &klen, &number)) > 0) {
		long v = (long)number;

		if (number > LONG_MAX)
			return false;
		if (klen == 6 && !strncmp(key, "follow", 6))
			*follow_at = value + (key + klen + 1 - value);
		if (klen == 2 && !strncmp(key, "fd", 2))
			fd = v;
		else if (klen == 3 && !strncmp(key, "shm", 3))
			shm = v;
		else if (klen == 3 && !strncmp(key, "pid", 3))
			*pid = v;
		else if (klen == 5 && !strncmp(key, "depth", 5))
			depth = v;
		else if (klen == 6 && !strncmp(key, "follow", 6))
			follow = v;
		else if (klen == 6 && !strncmp(key, "sample", 6))
			sample = v;
		else if (klen == 5 && !strncmp(key, "limit", 5))
			limit = v;
	}
	if (more < 0)
		return false;
	if (fd < 0 || shm < 0 || fd > INT_MAX || shm > INT_MAX || follow > 2)
		return false;
	c->fd = (int)fd;
	c->shm_fd = (int)shm;
	if (depth < 1)
		depth = 1;
	if (depth > (long)HALLOC_DEPTH_MAX)
		depth = HALLOC_DEPTH_MAX;
	c->depth = (unsigned)depth;
	c->follow = follow != 0;
	c->sample = (uint64_t)sample;
	ha_agent_set_limit((uint64_t)limit);
	return true;
}

/* ---- who we are ---------------------------------------------------- */

static void read_identity(void)
{
	ssize_t n;
	int fd;

	n = readlink("/proc/self/exe", exe_path, sizeof(exe_path) - 1);
	exe_len = n > 0 ? (size_t)n : 0;
	exe_path[exe_len] = 0;

	/* A PROCESS record holds less than a frame: read that much. */
	args = mmap(NULL, HALLOC_FRAME_MAX, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (args == MAP_FAILED) {
		args = NULL;
		return;
	}
	fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	while (args_len < HALLOC_FRAME_MAX) {
		n = read(fd, args + args_len, HALLOC_FRAME_MAX - args_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		args_len += (size_t)n;
	}
	close(fd);
}

/* ---- start ------------------------------------------------------------ */

static void thread_exit(void *unused);
static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

static bool init(struct ha_agent_thread *t)
{
	struct ha_agent_process pr = {0};
	char *value = find_env(env_prefix), *follow_at;
	long pid;

	if (!value)
		return false;
	if (!parse_config(value, &pid, &follow_at)) {
		remove_env();
		return false;
	}
	ha_agent_faults_init(value);
	ha_agent_admit_faults();
	if (!ha_agent.cfg.follow) {
		/* Whatever happens next, nothing we start sees it. */
		remove_env();
		if (pid != (long)getpid())
			return false;
	} else if (follow_at) {
		pr.flags = *follow_at == '2';
		*follow_at = '2';
	}
	if (!ha_agent_transport_open())
		return false;
	ha_agent.id = new_stream_id();
	ha_agent.pid = (uint32_t)getpid();
	if (pr.flags)
		ha_agent_buf_reclaim_exec();
	start_clock();
	ha_agent_self_init();
	ha_agent_unwind_init(find_env("HALLOC_UNWIND_CHECK=") != NULL);
	if (ha_agent_stack_init() || ha_agent_modules_init())
		return false;
	if (pthread_key_create(&thread_key, thread_exit) ||
	    pthread_atfork(fork_prepare, fork_parent, fork_child))
		return false;
	read_identity();

	pr.pid = ha_agent.pid;
	pr.ppid = (uint32_t)getppid();
	pr.start_ns = clock_ns(CLOCK_REALTIME);
	pr.exe = exe_path;
	pr.exe_len = exe_len;
	pr.args = args;
	pr.args_len = args_len;
	ha_agent_put_process(t, &pr);
	ha_agent_modules_rescan(t);
	ha_agent_buf_send(t);
	return true;
}

static void start(struct ha_agent_thread *t)
{
	int expected = HA_AGENT_UNINIT, result;

	if (!__atomic_compare_exchange_n(&ha_agent_status, &expected,
					 HA_AGENT_STARTING, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return;
	t->guard++;
	ha_agent_acct_start();
	result = init(t) ? HA_AGENT_ON : HA_AGENT_OFF;
	t->guard--;
	/* An early failure (the tracer gone) may already have said OFF. */
	expected = HA_AGENT_STARTING;
	__atomic_compare_exchange_n(&ha_agent_status, &expected, result, false,
				    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* A followed child's first event: its stream starts now. */
static void start_pending(struct ha_agent_thread *t)
{
	int expected = HA_AGENT_PENDING;

	if (!__atomic_compare_exchange_n(&ha_agent_status, &expected,
					 HA_AGENT_STARTING, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return;
	t->guard++;
	ha_agent_put_process(t, &pending);
	ha_agent_modules_announce(t);
	ha_agent_buf_send(t);
	t->guard--;
	expected = HA_AGENT_STARTING;
	__atomic_compare_exchange_n(&ha_agent_status, &expected, HA_AGENT_ON,
				    false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

struct ha_agent_thread *ha_agent_enter_slow(void)
{
	struct ha_agent_thread *t = &ha_agent_self;

	if (t->guard)
		return NULL;
	for (;;) {
		switch (__atomic_load_n(&ha_agent_status, __ATOMIC_ACQUIRE)) {
		case HA_AGENT_ON:
			t->guard = 1;
			return t;
		case HA_AGENT_OFF:
			return NULL;
		case HA_AGENT_UNINIT:
			start(t);
			break;
		case HA_AGENT_PENDING:
			start_pending(t);
			break;
		default:
			/* Another thread is starting the agent: wait for it. */
			sched_yield();
			break;
		}
	}
}

/* Called by buffer.c when a thread gets its first buffer. */
void ha_agent_thread_attach(struct ha_agent_thread *t)
{
	if (t->keyed || t->exiting)
		return;
	t->keyed = true;
	/* Non-NULL so that the destructor runs when the thread ends. */
	pthread_setspecific(thread_key, t);
}

/*
 * A thread ends: send its frame, free its slot. Destructors that run
 * after this one and glibc's own thread cleanup still free memory: from
 * now on this thread flushes after each record (buffer.c).
 */
static void thread_exit(void *unused)
{
	struct ha_agent_thread *t = &ha_agent_self;

	t->guard++;
	ha_agent_buf_release(t);
	t->exiting = true;
	ha_agent_unwind_thread_end();
	t->guard--;
}

/* ---- fork ------------------------------------------------------------ */

/*
 * Runs last of the prepare handlers (we register first). The sequence
 * number taken here orders the fork among the parent's events: the child
 * starts with the blocks live before it.
 */
static void fork_prepare(void)
{
	struct ha_agent_thread *t = &ha_agent_self;

	if (t->guard)
		return; /* fork from a signal handler inside the agent */
	if (__atomic_load_n(&ha_agent_status, __ATOMIC_ACQUIRE) ==
	    HA_AGENT_PENDING)
		start_pending(t);
	if (__atomic_load_n(&ha_agent_status, __ATOMIC_ACQUIRE) != HA_AGENT_ON)
		return;
	t->fork_seq = ha_agent_next_seq();
	ha_agent_modules_fork_prepare();
	ha_agent_buf_fork_prepare();
	ha_agent_sample_fork_prepare();
	fork_locked_here = true;
}

static void fork_parent(void)
{
	if (!fork_locked_here)
		return;
	fork_locked_here = false;
	ha_agent_sample_fork_parent();
	ha_agent_buf_fork_parent();
	ha_agent_modules_fork_parent();
}

static void fork_child(void)
{
	struct ha_agent_thread *t = &ha_agent_self;

	if (!fork_locked_here) {
		/* Not recording, or the fork came from inside the agent. */
		if (__atomic_load_n(&ha_agent_status, __ATOMIC_ACQUIRE) !=
		    HA_AGENT_UNINIT)
			ha_agent_disable();
		return;
	}
	fork_locked_here = false;
	ha_agent_sample_fork_parent();
	ha_agent_modules_fork_child();
	ha_agent_buf_fork_child(t);
	ha_agent_transport_fork_child();
	if (!ha_agent.cfg.follow) {
		ha_agent_disable();
		ha_agent_transport_close();
		return;
	}
	pending.pid = (uint32_t)getpid();
	pending.ppid = ha_agent.pid;
	pending.parent_stream = ha_agent.id;
	pending.parent_seq = t->fork_seq;
	pending.flags = 0;
	pending.start_ns = clock_ns(CLOCK_REALTIME);
	pending.exe = exe_path;
	pending.exe_len = exe_len;
	pending.args = args;
	pending.args_len = args_len;

	ha_agent.id = new_stream_id();
	ha_agent.pid = pending.pid;
	start_clock();
	__atomic_store_n(&ha_agent_seq.next, 1, __ATOMIC_RELAXED);
	ha_agent_stack_fork_child();
	__atomic_store_n(&ha_agent_status, HA_AGENT_PENDING, __ATOMIC_RELEASE);
}

/* ---- constructor, process end ------------------------------------------ */

__attribute__((constructor)) static void agent_start(void)
{
	struct ha_agent_thread *t = &ha_agent_self;

	if (!t->guard && __atomic_load_n(&ha_agent_status, __ATOMIC_ACQUIRE) ==
			     HA_AGENT_UNINIT)
		start(t);
}

/*
 * Runs late in exit(): after the program's and its libraries' destructors
 * (we are initialized before them). The exiting thread sends its frame and
 * frees its slot, then flushes after each record. Other threads keep their
 * slots: the tracer collects what they hold. Private buffers are not in
 * shared memory: send them now.
 */
__attribute__((destructor)) static void agent_exit(void)
{
	struct ha_agent_thread *t = &ha_agent_self;

	if (t->guard)
		return;
	if (__atomic_load_n(&ha_agent_status, __ATOMIC_ACQUIRE) ==
	    HA_AGENT_PENDING)
		start_pending(t);
	if (__atomic_load_n(&ha_agent_status, __ATOMIC_ACQUIRE) != HA_AGENT_ON)
		return;
	t->guard++;
	ha_agent_buf_release(t);
	t->exiting = true;
	ha_agent_buf_flush_private();
	t->guard--;
}
