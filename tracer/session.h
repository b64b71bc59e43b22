/*
 * tracer/session.h - the state of one recording, shared by spawn.c (which
 * creates it), collect.c and finish.c. Internal to tracer/.
 */
#ifndef HALLOC_TRACER_SESSION_H
#define HALLOC_TRACER_SESSION_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/transport.h"
#include "tracer/chunks.h"
#include "tracer/frames.h"
#include "tracer/rss.h"
#include "tracer/tracer.h"

/* A traced process that ended, as waitpid(2) reported it. */
struct ht_exit {
	pid_t pid;
	int status;
};

struct ht_session {
	bool follow; /* follow_children */

	char *log_path;
	int log_fd;
	int log_errno; /* first error writing the log; 0 if none */

	/* The transport (agent/transport.h). */
	int pipe_fd; /* read end, non-blocking; -1 once at end of file */
	int shm_fd;
	struct halloc_shm *shm;

	/* Signals are read here while the program runs (see tracer.h). */
	int signal_fd;
	sigset_t saved_mask; /* the caller's, restored after collecting */
	bool mask_saved;

	/* The traced processes. */
	pid_t child; /* the program */
	bool child_ended;
	int child_status;
	bool no_children;  /* waitpid said ECHILD */
	bool stop_waiting; /* a signal said: do not wait for descendants */
	bool gave_up;	   /* descendants were left running */
	struct ht_exit *exits;
	size_t nexits, exits_capacity;

	/* The stream from the pipe. */
	struct ht_framer framer;
	struct ht_chunk_set seen;
	bool seen_incomplete; /* out of memory: the set misses chunks */
	unsigned char *buffer;
	size_t buffer_size;
	uint64_t frames_dropped; /* could not be delimited: lost */

	struct ht_rss rss; /* resident memory samples (rss.c) */
};

/* Appends to the log; the first error sticks in log_errno. */
void ht_log_write(struct ht_session *session, const void *data, size_t size);

#endif /* HALLOC_TRACER_SESSION_H */
