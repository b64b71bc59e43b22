/*
 * agent/bpf/spawn.c - `halloc-trace --bpf PROG`: the program is forked
 * and waits on a pipe before exec, so the probes (filtered by its pid)
 * are in place for its first instruction; then it is let go.
 *
 * The child is traced with PTRACE_SEIZE and PTRACE_O_TRACEEXIT only: it
 * stops once, in its exit, while its memory map is still readable, so
 * the modules its last events name are still known. Every other stop
 * passes its signal on at once; a group stop is left stopped
 * (PTRACE_LISTEN), as without a tracer.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/bpf/session.h"

/* 0 if `path` can be executed, else why not, as an errno value. */
static int executable(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return errno;
	if (!S_ISREG(st.st_mode))
		return EACCES;
	if (faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) < 0)
		return errno;
	return 0;
}

static enum hb_result not_runnable(struct hb_diag *diag, const char *name,
				   int err)
{
	if (err == ENOENT || err == ENOTDIR)
		return hb_diag_set(diag, HB_ERR_NOT_FOUND,
				   "cannot run '%s': No such file or directory",
				   name);
	return hb_diag_set(diag, HB_ERR_CANNOT_RUN, "cannot run '%s': %s", name,
			   strerror(err));
}

enum hb_result hb_spawn_resolve(const char *name, char **path,
				struct hb_diag *diag)
{
	const char *dirs = getenv("PATH"), *dir, *end;
	int first_err = ENOENT;

	*path = NULL;
	if (!*name)
		return not_runnable(diag, name, ENOENT);
	if (strchr(name, '/')) {
		int err = executable(name);

		if (err)
			return not_runnable(diag, name, err);
		*path = strdup(name);
		return *path ? HB_OK
			     : hb_diag_set(diag, HB_ERR_NOMEM, "out of memory");
	}
	if (!dirs)
		dirs = "/bin:/usr/bin";
	for (dir = dirs;; dir = end + 1) {
		char *candidate;
		int err;

		end = strchrnul(dir, ':');
		if (asprintf(&candidate, "%.*s%s%s", (int)(end - dir), dir,
			     end == dir ? "" : "/", name) < 0)
			return hb_diag_set(diag, HB_ERR_NOMEM, "out of memory");
		err = executable(candidate);
		if (!err) {
			*path = candidate;
			return HB_OK;
		}
		free(candidate);
		if (err != ENOENT && err != ENOTDIR && first_err == ENOENT)
			first_err = err; /* found, but not runnable */
		if (!*end)
			break;
	}
	return not_runnable(diag, name, first_err);
}

enum hb_result hb_spawn_start(struct hb_session *s, struct hb_diag *diag)
{
	int release[2], error[2];
	pid_t pid;

	if (pipe2(release, O_CLOEXEC) < 0)
		return hb_diag_set(diag, HB_ERR_SYSTEM,
				   "cannot create a pipe: %s", strerror(errno));
	if (pipe2(error, O_CLOEXEC) < 0) {
		close(release[0]);
		close(release[1]);
		return hb_diag_set(diag, HB_ERR_SYSTEM,
				   "cannot create a pipe: %s", strerror(errno));
	}
	pid = fork();
	if (pid < 0) {
		int e = errno;

		close(release[0]);
		close(release[1]);
		close(error[0]);
		close(error[1]);
		return hb_diag_set(diag, HB_ERR_SYSTEM, "cannot fork: %s",
				   strerror(e));
	}
	if (pid == 0) {
		/* Only async-signal-safe calls from here to exec. */
		char go = 0;
		ssize_t r;
		int e;

		close(release[1]);
		close(error[0]);
		if (s->mask_saved)
			sigprocmask(SIG_SETMASK, &s->saved_mask, NULL);
		while ((r = read(release[0], &go, 1)) < 0 && errno == EINTR)
			;
		if (r != 1 || go != 'g')
			_exit(125); /* the tracer gave up */
		execv(s->program, s->config->argv);
		e = errno;
		if (write(error[1], &e, sizeof(e)) < 0)
			_exit(127);
		_exit(127);
	}
	close(release[0]);
	close(error[1]);
	s->pid = pid;
	s->spawned = true;
	s->release_fd = release[1];
	s->exec_error_fd = error[0];
	if (ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_TRACEEXIT) < 0) {
		int e = errno;

		hb_spawn_abort(s);
		return hb_diag_set(diag, HB_ERR_SYSTEM,
				   "cannot trace the program: %s", strerror(e));
	}
	return HB_OK;
}

enum hb_result hb_spawn_release(struct hb_session *s, struct hb_diag *diag)
{
	char go = 'g';
	int err = 0;
	ssize_t n;

	if (write(s->release_fd, &go, 1) != 1) {
		hb_spawn_abort(s);
		return hb_diag_set(diag, HB_ERR_SYSTEM, "cannot start '%s'",
				   s->config->argv[0]);
	}
	close(s->release_fd);
	s->release_fd = -1;
	/* EOF: exec closed the pipe (close-on-exec); data: exec failed. */
	while ((n = read(s->exec_error_fd, &err, sizeof(err))) < 0 &&
	       errno == EINTR)
		;
	close(s->exec_error_fd);
	s->exec_error_fd = -1;
	if (n == (ssize_t)sizeof(err)) {
		hb_spawn_abort(s);
		return err == ENOENT
			   ? hb_diag_set(diag, HB_ERR_NOT_FOUND,
					 "cannot run '%s': %s",
					 s->config->argv[0], strerror(err))
			   : hb_diag_set(diag, HB_ERR_CANNOT_RUN,
					 "cannot run '%s': %s",
					 s->config->argv[0], strerror(err));
	}
	return HB_OK;
}

void hb_spawn_wait(struct hb_session *s)
{
	int status;
	pid_t r;

	while (!s->child_reaped &&
	       (r = waitpid(s->pid, &status, WNOHANG | __WALL)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			s->child_reaped = true; /* ECHILD: someone reaped it */
			break;
		}
		if (WIFEXITED(status) || WIFSIGNALED(status)) {
			s->child_reaped = true;
			s->out->ended = true;
			s->out->status_known = true;
			s->out->wait_status = status;
			break;
		}
		if (!WIFSTOPPED(status))
			continue;
		if (status >> 8 == (SIGTRAP | (PTRACE_EVENT_EXIT << 8))) {
			s->ptrace_exit_stop =
			    true; /* continued after a drain */
			break;
		}
		if (status >> 16 == PTRACE_EVENT_STOP)
			ptrace(PTRACE_LISTEN, s->pid, 0, 0);
		else
			ptrace(PTRACE_CONT, s->pid, 0,
			       (void *)(long)WSTOPSIG(status));
	}
}

void hb_spawn_continue(struct hb_session *s)
{
	if (s->ptrace_exit_stop) {
		s->ptrace_exit_stop = false;
		ptrace(PTRACE_DETACH, s->pid, 0, 0);
	}
}

void hb_spawn_wait_end(struct hb_session *s)
{
	int status;

	while (!s->child_reaped) {
		pid_t r = waitpid(s->pid, &status, __WALL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			s->child_reaped = true;
			break;
		}
		if (WIFEXITED(status) || WIFSIGNALED(status)) {
			s->child_reaped = true;
			s->out->ended = s->out->status_known = true;
			s->out->wait_status = status;
		} else if (status >> 8 ==
			   (SIGTRAP | (PTRACE_EVENT_EXIT << 8))) {
			ptrace(PTRACE_DETACH, s->pid, 0, 0);
		} else if (status >> 16 == PTRACE_EVENT_STOP) {
			ptrace(PTRACE_LISTEN, s->pid, 0, 0);
		} else if (WIFSTOPPED(status)) {
			ptrace(PTRACE_CONT, s->pid, 0,
			       (void *)(long)WSTOPSIG(status));
		}
	}
}

void hb_spawn_abort(struct hb_session *s)
{
	if (s->release_fd >= 0)
		close(s->release_fd); /* EOF: it exits 125 without exec */
	if (s->exec_error_fd >= 0)
		close(s->exec_error_fd);
	s->release_fd = s->exec_error_fd = -1;
	if (s->pid > 0 && !s->child_reaped) {
		int status;

		kill(s->pid, SIGKILL);
		for (;;) {
			pid_t r = waitpid(s->pid, &status, __WALL);

			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0 || WIFEXITED(status) || WIFSIGNALED(status))
				break;
			if (WIFSTOPPED(status)) /* in its exit stop */
				ptrace(PTRACE_DETACH, s->pid, 0, 0);
		}
		s->child_reaped = true;
	}
}
