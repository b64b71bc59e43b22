/*
 * tracer/symbols.c - the symbols pass at the end of a run, prepared while
 * the program runs (tracer/symbols.h).
 *
 * Every frame copied to the log that may define a module or a stack goes
 * to the analyzer's symbols feed as well (analyzer.h); a thread of ours
 * decodes them every few milliseconds and opens the module files their
 * stacks lie in, inflating their debug info while the program runs. At
 * the end the feed appends the SYMBOLS frames without reading the log.
 *
 * The thread only does work the end of the run would do anyway (a module
 * file no stack refers to is not opened), and it is joined before the
 * final pass: at worst the end waits for the file being opened, which
 * that pass would have opened itself.
 */
#include "tracer/session.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "analyzer/analyzer.h"

/* How often the thread looks at what was fed. */
#define WORK_EVERY_NS (10 * 1000 * 1000)

static void *prewarm(void *arg)
{
	struct ht_session *s = arg;
	struct timespec until;

	pthread_mutex_lock(&s->symbols_lock);
	while (!s->symbols_stop) {
		pthread_mutex_unlock(&s->symbols_lock);
		ha_symbols_feed_work(s->symbols);
		pthread_mutex_lock(&s->symbols_lock);
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += WORK_EVERY_NS;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		while (!s->symbols_stop &&
		       pthread_cond_timedwait(&s->symbols_wake,
					      &s->symbols_lock, &until) == 0)
			;
	}
	pthread_mutex_unlock(&s->symbols_lock);
	return NULL;
}

void ht_symbols_start(struct ht_session *s)
{
	pthread_condattr_t attr;
	sigset_t all, old;

	if (s->no_symbols || !(s->symbols = ha_symbols_feed_new()))
		return; /* without a feed, the pass reads the log */
	if (pthread_condattr_init(&attr) != 0)
		return;
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (pthread_mutex_init(&s->symbols_lock, NULL) != 0) {
		pthread_condattr_destroy(&attr);
		return;
	}
	if (pthread_cond_init(&s->symbols_wake, &attr) != 0) {
		pthread_condattr_destroy(&attr);
		pthread_mutex_destroy(&s->symbols_lock);
		return;
	}
	pthread_condattr_destroy(&attr);
	s->symbols_sync = true;
	/* Signals are read from a signalfd: none may land on this thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	s->symbols_thread_running =
	    pthread_create(&s->symbols_thread, NULL, prewarm, s) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void ht_symbols_frame(struct ht_session *s, const unsigned char *frame,
		      size_t size)
{
	uint16_t type, flags;

	if (!s->symbols || size < HALLOC_FRAME_HEADER_SIZE)
		return;
	memcpy(&type, frame + 4, sizeof(type));
	memcpy(&flags, frame + 6, sizeof(flags));
	if (type == HALLOC_FRAME_CHUNK && (flags & HALLOC_FRAME_EVENTS_ONLY))
		return;
	ha_symbols_feed_frame(s->symbols, frame, size);
}

static void stop_thread(struct ht_session *s)
{
	if (!s->symbols_thread_running)
		return;
	pthread_mutex_lock(&s->symbols_lock);
	s->symbols_stop = true;
	pthread_cond_signal(&s->symbols_wake);
	pthread_mutex_unlock(&s->symbols_lock);
	pthread_join(s->symbols_thread, NULL);
	s->symbols_thread_running = false;
}

enum ha_result ht_symbols_append(struct ht_session *s, struct ha_diag *diag)
{
	stop_thread(s);
	if (!s->symbols)
		return ha_append_symbols(s->log_path, diag);
	return ha_symbols_feed_append(s->symbols, s->log_path, diag);
}

void ht_symbols_free(struct ht_session *s)
{
	stop_thread(s);
	if (s->symbols_sync) {
		pthread_cond_destroy(&s->symbols_wake);
		pthread_mutex_destroy(&s->symbols_lock);
		s->symbols_sync = false;
	}
	ha_symbols_feed_free(s->symbols);
	s->symbols = NULL;
}
