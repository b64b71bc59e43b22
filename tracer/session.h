/*
 * tracer/session.h - the state of one recording, shared by spawn.c (which
 * creates it), collect.c and finish.c. Internal to tracer/.
 */
#ifndef HALLOC_TRACER_SESSION_H
#define HALLOC_TRACER_SESSION_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/transport.h"
#include "analyzer/analyzer.h"
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
	bool no_symbols;

	char *log_path;
	int log_fd;
	int log_errno; /* first error writing the log; 0 if none */
	/* Compression of what goes to the log (log_file.c). */
	void *zstd;		/* ZSTD_CCtx, NULL until the first write */
	unsigned char *zbuf;	/* compressed bytes on their way out */
	uint64_t frame_input;	/* bytes in the current zstd frame */
	long long flushed_ms;	/* when ht_log_flush last ran (collect.c) */

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

	/* The symbols pass, prepared while the program runs (symbols.c). */
	struct ha_symbols_feed *symbols; /* NULL: read the log at the end */
	pthread_t symbols_thread;
	bool symbols_thread_running, symbols_sync, symbols_stop;
	pthread_mutex_t symbols_lock; /* guards symbols_stop */
	pthread_cond_t symbols_wake;
};

/*
 * log_file.c. The log file is a sequence of zstd frames (see
 * analyzer/log_source.h). ht_log_write appends to the current frame, which
 * ends by itself every HT_ZSTD_FRAME_INPUT bytes (so a tracer killed mid-way
 * leaves a readable log, minus the last frame); ht_log_flush puts all
 * written so far in the file (zstd holds up to a block otherwise), so a
 * reader of a log cut short there sees it; ht_log_seal ends the frame,
 * before someone else appends to the file. The first error sticks in
 * log_errno.
 */
void ht_log_write(struct ht_session *session, const void *data, size_t size);
void ht_log_flush(struct ht_session *session);
void ht_log_seal(struct ht_session *session);
void ht_log_file_free(struct ht_session *session);

/*
 * symbols.c. ht_symbols_start (before the first frame is copied) starts
 * the thread that opens module files while the program runs; every frame
 * written to the log goes to ht_symbols_frame too, in log order;
 * ht_symbols_append stops the thread and appends the SYMBOLS frames
 * (without --no-symbols); ht_symbols_free at any point.
 */
void ht_symbols_start(struct ht_session *session);
void ht_symbols_frame(struct ht_session *session, const unsigned char *frame,
		      size_t size);
enum ha_result ht_symbols_append(struct ht_session *session,
				 struct ha_diag *diag);
void ht_symbols_free(struct ht_session *session);

#endif /* HALLOC_TRACER_SESSION_H */
