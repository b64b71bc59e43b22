/*
 * tracer/collect.c - copying frames from the pipe into the log while the
 * traced processes run, and noticing when they end.
 *
 * One poll(2) loop over two descriptors: the pipe, and a signalfd that
 * delivers SIGCHLD (reap), SIGTERM/SIGHUP (forward to the program) and
 * SIGINT/SIGQUIT (the terminal sent them to the program as well; only once
 * the program itself has ended do they mean "stop waiting").
 *
 * When recording ends: without follow_children, when the program has been
 * reaped; its descendants may still hold the pipe's write end, so the pipe
 * is read until it is empty, not until end of file. With follow_children,
 * when waitpid reports no child left (we are their subreaper, so that means
 * no descendant left); then the pipe is read to end of file.
 */
#include "tracer/session.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* After a stop signal, how long descendants get to end (they usually got
 * the same signal from the terminal). */
#define STOP_GRACE_MS 300
/* Reads per wake-up, so that signals are not starved by a busy pipe. */
#define READS_PER_WAKE 16
/* How long to let the pipe fill after reading from it (see ht_collect). */
#define BATCH_US 1000
/* Reads when draining at the end, in case a writer never stops. */
#define READS_TO_DRAIN 256
/* How much recording time a tracer killed mid-way can lose from the log
 * (what the compressor holds until a block is full). */
#define FLUSH_EVERY_MS 500

/* Copies whole frames to the log, in as few write(2) calls as possible:
 * consecutive frames of the input go out together. */
static void copy_frames(struct ht_session *s, const unsigned char *data,
			size_t len)
{
	const unsigned char *frame, *span = NULL;
	size_t size, span_len = 0;

	while ((frame = ht_framer_next(&s->framer, &data, &len, &size))) {
		uint32_t slot, chunk_no;

		ht_chunk_key(frame, &slot, &chunk_no);
		if (ht_chunk_set_add(&s->seen, slot, chunk_no) < 0)
			s->seen_incomplete = true;
		ht_symbols_frame(s, frame, size);
		if (span && frame == span + span_len) {
			span_len += size;
			continue;
		}
		ht_log_write(s, span, span_len);
		span = NULL;
		span_len = 0;
		/* partial[] is reused by the next call: write it now. */
		if (frame == s->framer.partial) {
			ht_log_write(s, frame, size);
		} else {
			span = frame;
			span_len = size;
		}
	}
	ht_log_write(s, span, span_len);
}

/* How long to wait for agents inside a write(2) when we stop reading. */
#define WRITERS_WAIT_MS 200

/*
 * From now on agents keep their frames in their slots (agent/transport.h:
 * they hold a read end of the pipe, so closing ours would not tell them).
 * Returns once no agent is inside a write; what they wrote is then in the
 * pipe for the last reads. A writer killed inside its write is waited for
 * WRITERS_WAIT_MS at most.
 */
static void stop_writers(struct ht_session *s)
{
	struct timespec ms = {0, 1000000};

	if (!s->shm || __atomic_exchange_n(&s->shm->pipe_state,
					   HALLOC_PIPE_STOPPED,
					   __ATOMIC_SEQ_CST) == HALLOC_PIPE_STOPPED)
		return;
	for (int i = 0; i < WRITERS_WAIT_MS &&
			__atomic_load_n(&s->shm->writers, __ATOMIC_SEQ_CST);
	     i++)
		nanosleep(&ms, NULL);
}

static void end_of_pipe(struct ht_session *s)
{
	stop_writers(s);
	if (ht_framer_end(&s->framer))
		s->frames_dropped++;
	close(s->pipe_fd);
	s->pipe_fd = -1;
}

/* Bytes read, or 0 when the pipe was empty. */
static size_t read_pipe(struct ht_session *s, unsigned max_reads)
{
	size_t total = 0;

	for (unsigned i = 0; s->pipe_fd >= 0 && i < max_reads; i++) {
		ssize_t n = read(s->pipe_fd, s->buffer, s->buffer_size);

		if (n > 0) {
			copy_frames(s, s->buffer, (size_t)n);
			total += (size_t)n;
		} else if (n == 0) {
			end_of_pipe(s);
		} else if (errno == EAGAIN) {
			break;
		} else if (errno != EINTR) {
			end_of_pipe(s);
		}
	}
	return total;
}

static void add_exit(struct ht_session *s, pid_t pid, int status)
{
	if (s->nexits == s->exits_capacity) {
		size_t capacity =
		    s->exits_capacity ? 2 * s->exits_capacity : 16;
		struct ht_exit *exits =
		    realloc(s->exits, capacity * sizeof(*exits));

		if (!exits)
			return; /* that process's status stays unknown */
		s->exits = exits;
		s->exits_capacity = capacity;
	}
	s->exits[s->nexits++] = (struct ht_exit){pid, status};
}

static void reap(struct ht_session *s)
{
	while (s->follow || !s->child_ended) {
		int status;
		pid_t pid =
		    waitpid(s->follow ? -1 : s->child, &status, WNOHANG);

		if (pid == 0)
			return;
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ECHILD)
				s->no_children = true;
			return;
		}
		add_exit(s, pid, status);
		if (pid == s->child) {
			s->child_ended = true;
			s->child_status = status;
		}
	}
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void handle_signals(struct ht_session *s, long long *deadline)
{
	struct signalfd_siginfo si;

	while (read(s->signal_fd, &si, sizeof(si)) == sizeof(si)) {
		int signo = (int)si.ssi_signo;

		if (signo == SIGCHLD) {
			reap(s);
		} else if (signo == SIGPIPE) {
			/* a write to the log failed: log_errno says so */
		} else if (!s->child_ended) {
			if (signo == SIGTERM || signo == SIGHUP)
				kill(s->child, signo);
		} else if (!s->stop_waiting) {
			/* Only descendants of the program are left. */
			s->stop_waiting = true;
			*deadline = now_ms() + STOP_GRACE_MS;
		}
	}
}

static bool recording_ended(const struct ht_session *s)
{
	return s->follow ? s->no_children : s->child_ended;
}

/* Gives the caller back its signals, minus those meant for the program. */
static void restore_signals(struct ht_session *s)
{
	struct signalfd_siginfo si;

	while (read(s->signal_fd, &si, sizeof(si)) == sizeof(si))
		;
	close(s->signal_fd);
	s->signal_fd = -1;
	sigprocmask(SIG_SETMASK, &s->saved_mask, NULL);
	s->mask_saved = false;
}

enum ht_result ht_collect(struct ht_session *s, struct ht_diag *diag)
{
	/*
	 * After reading, let frames gather in the (1 MiB) pipe for a while:
	 * each write(2) that finds us waiting in poll(2) pays for waking us
	 * (about 4 us a frame in a VM), a write to a pipe nobody waits on
	 * does not.
	 */
	const struct timespec batch = {0, BATCH_US * 1000};
	long long deadline = 0;

	diag->message[0] = '\0';
	ht_symbols_start(s);
	ht_log_flush(s); /* the header and TRACE_INFO are on disk */
	s->flushed_ms = now_ms();
	while (!recording_ended(s)) {
		struct pollfd fds[2] = {
		    {.fd = s->signal_fd, .events = POLLIN},
		    {.fd = s->pipe_fd, .events = POLLIN},
		};
		/* Wakes to flush the log even when the pipe is quiet. */
		int timeout = FLUSH_EVERY_MS;

		if (s->stop_waiting) {
			long long left = deadline - now_ms();

			if (left <= 0) {
				s->gave_up = true;
				break;
			}
			timeout = (int)left;
		}
		timeout = ht_rss_poll(s, timeout);
		if (poll(fds, s->pipe_fd >= 0 ? 2 : 1, timeout) < 0 &&
		    errno != EINTR) {
			snprintf(diag->message, sizeof(diag->message),
				 "cannot wait for the program: %s",
				 strerror(errno));
			return HT_ERR_SYSTEM;
		}
		if (fds[0].revents)
			handle_signals(s, &deadline);
		if (s->pipe_fd >= 0 && fds[1].revents &&
		    read_pipe(s, READS_PER_WAKE) > 0)
			nanosleep(&batch, NULL);
		if (now_ms() - s->flushed_ms >= FLUSH_EVERY_MS) {
			ht_log_flush(s);
			s->flushed_ms = now_ms();
		}
	}
	reap(s); /* those that ended while we gave up on the others */
	stop_writers(s);
	read_pipe(s, READS_TO_DRAIN);
	restore_signals(s);

	if (s->log_errno) {
		snprintf(diag->message, sizeof(diag->message),
			 "cannot write the log '%s': %s", s->log_path,
			 strerror(s->log_errno));
		return HT_ERR_LOG;
	}
	return HT_OK;
}
