/*
 * tracer/spawn.c - starting the program with the agent: the checks, the
 * log, the transport (pipe and shared memory), fork and exec.
 *
 * The log's default name holds the program's pid, so the child is forked
 * first and waits on a "go" pipe until the parent has created the log and
 * written its first frames; only then does it exec. If exec fails, the
 * child sends errno back through a close-on-exec pipe, so the parent can
 * tell "exec failed" (errno arrives) from "the program runs" (end of file).
 */
#include "tracer/session.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tracer/faults.h"
#include "tracer/program.h"

#define PIPE_SIZE      (1 << 20)  /* fewer stalls in the agent's write(2) */
#define READ_BUFFER    (1u << 20) /* one read(2) can empty the whole pipe */
#define AGENT_REL_PATH "/../lib/libhalloc.so"

/* What the child needs between fork and exec. */
struct child_args {
	const char *program;
	char *const *argv;
	const char *agent;
	const char *fault_keys; /* more HALLOC_AGENT keys, or NULL */
	int pipe_fd, shm_fd;
	unsigned depth;
	bool follow;
	uint64_t sample; /* --sample; 0: every event */
	uint64_t limit;
	int go_fd, error_fd;
	int parent_fds[2]; /* the parent's ends of those two pipes */
	const sigset_t *mask;
};

int ht_result_exit_status(enum ht_result result)
{
	switch (result) {
	case HT_OK:
		return 0;
	case HT_ERR_NOT_FOUND:
		return 127;
	case HT_ERR_CANNOT_RUN:
		return 126;
	case HT_ERR_USAGE:
		return 2;
	default:
		return 125;
	}
}

enum ht_result ht_fail(struct ht_diag *diag, enum ht_result result,
		       const char *format, ...)
{
	va_list ap;

	va_start(ap, format);
	vsnprintf(diag->message, sizeof(diag->message), format, ap);
	va_end(ap);
	return result;
}

/* libhalloc.so next to us (bin/../lib), or $HALLOC_AGENT_PATH. */
static enum ht_result find_agent(char **agent, struct ht_diag *diag)
{
	const char *env = getenv("HALLOC_AGENT_PATH");
	char exe[PATH_MAX], *candidate;
	struct stat st;
	ssize_t n;

	if (env && *env) {
		candidate = strdup(env);
	} else {
		n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n < 0)
			return ht_fail(diag, HT_ERR_AGENT,
				    "cannot find the agent: cannot read "
				    "'/proc/self/exe': %s",
				    strerror(errno));
		exe[n] = '\0';
		*strrchr(exe, '/') = '\0';
		if (asprintf(&candidate, "%s" AGENT_REL_PATH, exe) < 0)
			candidate = NULL;
	}
	if (!candidate)
		return ht_fail(diag, HT_ERR_NOMEM, "out of memory");

	/* The program may chdir before its loader reads LD_PRELOAD. */
	*agent = realpath(candidate, NULL);
	if (!*agent || stat(*agent, &st) < 0 || !S_ISREG(st.st_mode)) {
		int err = *agent ? EISDIR : errno;

		ht_fail(diag, HT_ERR_AGENT, "cannot find the agent '%s': %s",
		     candidate, strerror(err));
		free(candidate);
		free(*agent);
		*agent = NULL;
		return HT_ERR_AGENT;
	}
	free(candidate);
	/* The loader splits LD_PRELOAD at spaces and colons. */
	if (strpbrk(*agent, " :"))
		return ht_fail(diag, HT_ERR_AGENT,
			    "cannot use the agent '%s': LD_PRELOAD cannot "
			    "hold a path with a space or a colon",
			    *agent);
	return HT_OK;
}

static enum ht_result create_log(struct ht_session *s, const char *path,
				 struct ht_diag *diag)
{
	s->log_path = strdup(path);
	if (!s->log_path)
		return ht_fail(diag, HT_ERR_NOMEM, "out of memory");
	s->log_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (s->log_fd < 0)
		return ht_fail(diag, HT_ERR_LOG, "cannot create the log '%s': %s",
			    path, strerror(errno));
	return HT_OK;
}

static enum ht_result write_log_start(struct ht_session *s,
				      const struct ht_config *config,
				      uint64_t start_ns, struct ht_diag *diag)
{
	unsigned char header[HT_FILE_HEADER_SIZE], *info;
	struct ht_trace_info ti = {
	    .recorder = HALLOC_RECORDER_PRELOAD,
	    .flags = config->follow_children ? HALLOC_TRACE_FOLLOW_CHILDREN : 0,
	    .depth = config->depth,
	    .start_ns = start_ns,
	    .pid = (uint64_t)s->child,
	    .argv = config->argv,
	    .sample = config->sample,
	};
	size_t size;

	info = ht_frame_trace_info(&ti, &size);
	if (!info)
		return ht_fail(diag, HT_ERR_NOMEM, "out of memory");
	ht_put_file_header(header);
	ht_log_write(s, header, sizeof(header));
	ht_log_write(s, info, size);
	free(info);
	if (s->log_errno)
		return ht_fail(diag, HT_ERR_LOG, "cannot write the log '%s': %s",
			    s->log_path, strerror(s->log_errno));
	return HT_OK;
}

/* The program must not find our descriptors in 0..2 (where it expects its
 * standard streams) if the caller started us with some of those closed. */
static int above_stdio(int fd)
{
	int moved;

	if (fd < 0 || fd > 2)
		return fd;
	moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	close(fd);
	return moved;
}

/*
 * The slots the agents may take: HALLOC_SHM_SLOTS, or fewer when the
 * environment says HALLOC_TRACE_SHM_SLOTS=N (16 or more): the tests use it
 * to run out of slots without starting thousands of processes.
 */
static uint32_t shm_slots(void)
{
	const char *v = getenv("HALLOC_TRACE_SHM_SLOTS");
	char *end;
	unsigned long n;

	if (!v || !*v)
		return HALLOC_SHM_SLOTS;
	n = strtoul(v, &end, 10);
	if (*end || n < 16 || n > HALLOC_SHM_SLOTS)
		return HALLOC_SHM_SLOTS;
	return (uint32_t)n;
}

/* Creates the pipe and the shared memory. Returns the pipe's write end. */
static int open_transport(struct ht_session *s, struct ht_diag *diag)
{
	int fds[2];
	size_t size = HALLOC_SHM_SIZE(HALLOC_SHM_SLOTS);
	void *map;

	if (pipe2(fds, O_CLOEXEC) < 0) {
		ht_fail(diag, HT_ERR_SYSTEM, "cannot create a pipe: %s",
		     strerror(errno));
		return -1;
	}
	s->pipe_fd = above_stdio(fds[0]);
	fds[1] = above_stdio(fds[1]);
	if (s->pipe_fd < 0 || fds[1] < 0) {
		ht_fail(diag, HT_ERR_SYSTEM, "cannot create a pipe: %s",
		     strerror(errno));
		close(fds[1]);
		return -1;
	}
	/* Best effort: the limit may be lower for unprivileged users. */
	(void)fcntl(s->pipe_fd, F_SETPIPE_SZ, PIPE_SIZE);
	/* Only our end: the agent's writes must block when the pipe is full. */
	fcntl(s->pipe_fd, F_SETFL, fcntl(s->pipe_fd, F_GETFL) | O_NONBLOCK);

	s->shm_fd = above_stdio(memfd_create("halloc-shm", MFD_CLOEXEC));
	if (s->shm_fd < 0 || ftruncate(s->shm_fd, (off_t)size) < 0) {
		ht_fail(diag, HT_ERR_SYSTEM, "cannot create shared memory: %s",
		     strerror(errno));
		close(fds[1]);
		return -1;
	}
	map =
	    mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, s->shm_fd, 0);
	if (map == MAP_FAILED) {
		ht_fail(diag, HT_ERR_SYSTEM, "cannot map shared memory: %s",
		     strerror(errno));
		close(fds[1]);
		return -1;
	}
	s->shm = map;
	s->shm->magic = HALLOC_SHM_MAGIC;
	s->shm->version = HALLOC_SHM_VERSION;
	s->shm->nslots = shm_slots();
	s->shm->tracer_pid = (uint32_t)getpid();
	return fds[1];
}

static enum ht_result watch_signals(struct ht_session *s, struct ht_diag *diag)
{
	static const int signals[] = {SIGCHLD, SIGINT, SIGQUIT,
				      SIGTERM, SIGHUP, SIGPIPE};
	sigset_t set;

	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		sigaddset(&set, signals[i]);
	if (sigprocmask(SIG_BLOCK, &set, &s->saved_mask) < 0)
		return ht_fail(diag, HT_ERR_SYSTEM, "cannot block signals: %s",
			    strerror(errno));
	s->mask_saved = true;
	s->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s->signal_fd < 0)
		return ht_fail(diag, HT_ERR_SYSTEM, "cannot create a signalfd: %s",
			    strerror(errno));
	return HT_OK;
}

static int inherit_fd(int fd)
{
	return fcntl(fd, F_SETFD, 0);
}

/* execvp(3)'s fallback for a file exec(2) does not recognize: sh runs it. */
static void exec_as_script(const char *program, char *const *argv)
{
	size_t argc = 0;
	char **sh_argv;

	while (argv[argc])
		argc++;
	sh_argv = calloc(argc + 2, sizeof(*sh_argv));
	if (!sh_argv)
		return;
	sh_argv[0] = (char *)"/bin/sh";
	sh_argv[1] = (char *)program;
	for (size_t i = 1; i < argc; i++)
		sh_argv[i + 1] = argv[i];
	execv("/bin/sh", sh_argv);
	errno = ENOEXEC;
}

/* In the child, after fork: never returns. */
static void __attribute__((noreturn)) run_child(const struct child_args *a)
{
	char *agent_env = NULL, *preload = NULL, limit[40] = "";
	char sample_key[32] = "";
	const char *old_preload = getenv("LD_PRELOAD");
	char go;
	ssize_t n;
	int err;

	/* Else our own copy of the go pipe's write end would keep us from
	 * seeing the end of file that says "do not run". */
	close(a->parent_fds[0]);
	close(a->parent_fds[1]);
	sigprocmask(SIG_SETMASK, a->mask, NULL);
	do
		n = read(a->go_fd, &go, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		_exit(125); /* the tracer gave up before starting us */

	if (a->sample)
		snprintf(sample_key, sizeof(sample_key), ",sample=%llu",
			 (unsigned long long)a->sample);
	if (a->limit)
		snprintf(limit, sizeof(limit), ",limit=%llu",
			 (unsigned long long)a->limit);
	if (asprintf(&agent_env,
		     "fd=%d,shm=%d,pid=%d,depth=%u,follow=%d%s%s%s", a->pipe_fd,
		     a->shm_fd, a->follow ? 0 : (int)getpid(), a->depth,
		     a->follow ? 1 : 0, sample_key,
		     a->fault_keys ? a->fault_keys : "", limit) < 0)
		agent_env = NULL;
	if (old_preload && *old_preload) {
		if (asprintf(&preload, "%s:%s", a->agent, old_preload) < 0)
			preload = NULL;
	} else {
		preload = strdup(a->agent);
	}
	if (!preload || !agent_env || inherit_fd(a->pipe_fd) < 0 ||
	    inherit_fd(a->shm_fd) < 0 || setenv("LD_PRELOAD", preload, 1) < 0 ||
	    setenv(HALLOC_AGENT_ENV, agent_env, 1) < 0) {
		err = errno ? errno : ENOMEM;
	} else {
		execv(a->program, a->argv);
		if (errno == ENOEXEC)
			exec_as_script(a->program, a->argv);
		err = errno;
	}
	n = write(a->error_fd, &err, sizeof(err));
	(void)n;
	_exit(127);
}

static enum ht_result exec_failed(const char *name, int err,
				  struct ht_diag *diag)
{
	/* The file was found, so ENOENT is about its interpreter. */
	if (err == ENOENT)
		return ht_fail(diag, HT_ERR_CANNOT_RUN,
			    "cannot run '%s': its interpreter was not found",
			    name);
	return ht_fail(diag, HT_ERR_CANNOT_RUN, "cannot run '%s': %s", name,
		    strerror(err));
}

static struct ht_session *session_new(void)
{
	struct ht_session *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->log_fd = s->pipe_fd = s->shm_fd = s->signal_fd = -1;
	s->buffer_size = READ_BUFFER;
	s->buffer = malloc(s->buffer_size);
	if (!s->buffer) {
		free(s);
		return NULL;
	}
	ht_framer_init(&s->framer);
	ht_chunk_set_init(&s->seen);
	return s;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Reaps the child that was forked but must not run the program. */
static void abandon_child(struct ht_session *s, int *go_fd)
{
	close_fd(go_fd);
	while (waitpid(s->child, NULL, 0) < 0 && errno == EINTR)
		;
	s->child_ended = true;
}

static enum ht_result start_child(struct ht_session *s,
				  const struct ht_config *config,
				  const char *program, const char *agent,
				  const char *fault_keys, struct ht_diag *diag)
{
	int go[2] = {-1, -1}, error_pipe[2] = {-1, -1}, pipe_wr, err;
	struct child_args args;
	struct timespec now;
	enum ht_result result = HT_OK;
	ssize_t n;

	pipe_wr = open_transport(s, diag);
	if (pipe_wr < 0)
		return HT_ERR_SYSTEM;
	if (pipe2(go, O_CLOEXEC) < 0 || pipe2(error_pipe, O_CLOEXEC) < 0) {
		result = ht_fail(diag, HT_ERR_SYSTEM, "cannot create a pipe: %s",
			      strerror(errno));
		goto cleanup;
	}
	result = watch_signals(s, diag);
	if (result)
		goto cleanup;
	/* Orphaned descendants are reparented to us, so we see them end. */
	if (s->follow && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
		result = ht_fail(diag, HT_ERR_SYSTEM,
			      "cannot become a subreaper: %s", strerror(errno));
		goto cleanup;
	}

	args = (struct child_args){
	    .program = program,
	    .argv = config->argv,
	    .agent = agent,
	    .fault_keys = fault_keys,
	    .pipe_fd = pipe_wr,
	    .shm_fd = s->shm_fd,
	    .depth = config->depth,
	    .follow = s->follow,
	    .sample = config->sample,
	    .limit = config->limit,
	    .go_fd = go[0],
	    .error_fd = error_pipe[1],
	    .parent_fds = {go[1], error_pipe[0]},
	    .mask = &s->saved_mask,
	};
	clock_gettime(CLOCK_REALTIME, &now);
	s->child = fork();
	if (s->child < 0) {
		result = ht_fail(diag, HT_ERR_SYSTEM, "cannot fork: %s",
			      strerror(errno));
		goto cleanup;
	}
	if (s->child == 0)
		run_child(&args);
	close_fd(&go[0]);
	close_fd(&error_pipe[1]);
	close_fd(&pipe_wr);

	if (!config->output) {
		char *path;

		if (asprintf(&path, "halloc.%s.%d.hlog",
			     basename(config->argv[0]), (int)s->child) < 0) {
			abandon_child(s, &go[1]);
			result = ht_fail(diag, HT_ERR_NOMEM, "out of memory");
			goto cleanup;
		}
		result = create_log(s, path, diag);
		free(path);
		if (result) {
			abandon_child(s, &go[1]);
			goto cleanup;
		}
	}
	result = write_log_start(
	    s, config,
	    (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec, diag);
	if (result) {
		abandon_child(s, &go[1]);
		unlink(s->log_path);
		goto cleanup;
	}

	n = write(go[1], "g", 1);
	(void)n;
	close_fd(&go[1]);
	do
		n = read(error_pipe[0], &err, sizeof(err));
	while (n < 0 && errno == EINTR);
	if (n == sizeof(err)) {
		abandon_child(s, &go[1]);
		unlink(s->log_path);
		result = exec_failed(config->argv[0], err, diag);
	}

cleanup:
	close_fd(&go[0]);
	close_fd(&go[1]);
	close_fd(&error_pipe[0]);
	close_fd(&error_pipe[1]);
	close_fd(&pipe_wr);
	return result;
}

enum ht_result ht_start(const struct ht_config *config, struct ht_session **out,
			struct ht_diag *diag)
{
	const char *name = config->argv[0];
	char *program = NULL, *agent = NULL, *fault_keys = NULL;
	struct ht_session *s = NULL;
	enum ht_result result;
	int err;

	*out = NULL;
	diag->message[0] = '\0';

	err = ht_resolve_program(name, getenv("PATH"), &program);
	if (err == ENOMEM) {
		result = ht_fail(diag, HT_ERR_NOMEM, "out of memory");
		goto cleanup;
	}
	if (err) {
		result = ht_fail(
		    diag, err == ENOENT ? HT_ERR_NOT_FOUND : HT_ERR_CANNOT_RUN,
		    "cannot run '%s': %s", name, strerror(err));
		goto cleanup;
	}
	result = ht_check_program(name, program, diag);
	if (result)
		goto cleanup;
	result = find_agent(&agent, diag);
	if (result)
		goto cleanup;
	result = ht_fault_keys(&config->faults, program, name, &fault_keys,
			       diag);
	if (result)
		goto cleanup;

	s = session_new();
	if (!s) {
		result = ht_fail(diag, HT_ERR_NOMEM, "out of memory");
		goto cleanup;
	}
	s->follow = config->follow_children;
	s->no_symbols = config->no_symbols;
	if (config->output) {
		result = create_log(s, config->output, diag);
		if (result)
			goto cleanup;
	}
	result = start_child(s, config, program, agent, fault_keys, diag);
	if (result && config->output && s->log_fd >= 0 && !s->child)
		unlink(s->log_path); /* created above, nothing ran */

cleanup:
	free(program);
	free(agent);
	free(fault_keys);
	if (result) {
		ht_session_free(s);
		return result;
	}
	*out = s;
	return HT_OK;
}

const char *ht_log_path(const struct ht_session *s)
{
	return s->log_path;
}

void ht_session_free(struct ht_session *s)
{
	if (!s)
		return;
	ht_symbols_free(s);
	ht_log_file_free(s);
	close_fd(&s->log_fd);
	close_fd(&s->pipe_fd);
	close_fd(&s->shm_fd);
	close_fd(&s->signal_fd);
	if (s->mask_saved)
		sigprocmask(SIG_SETMASK, &s->saved_mask, NULL);
	if (s->shm)
		munmap(s->shm, HALLOC_SHM_SIZE(HALLOC_SHM_SLOTS));
	ht_chunk_set_free(&s->seen);
	free(s->exits);
	free(s->buffer);
	free(s->log_path);
	free(s);
}
