/*
 * tracer/tracer.h - libhalloc-tracer: run a program with the agent, record
 * its log, finish the log. What `halloc-trace` calls; the command itself
 * only parses options, prints and maps results to exit statuses.
 *
 * One recording is one session, used in this order:
 *
 *	ht_start()    checks the program, creates the log, starts the program
 *	ht_collect()  copies the agent's frames into the log until the traced
 *	              processes have ended
 *	ht_finish()   appends what shared memory still holds, the exit of every
 *	              process, the symbols, and the END frame
 *	ht_session_free()
 *
 * Invariants:
 *  - Nothing here prints. A failure (and a warning from ht_finish) is one
 *    line in struct ht_diag, without the command's name.
 *  - Every check that can fail without running the program (it does not
 *    exist, cannot be executed, is statically linked, the agent or the log
 *    cannot be found or created) fails in ht_start before the program runs.
 *  - Between ht_start and the end of ht_collect, the tracer keeps SIGINT,
 *    SIGQUIT, SIGTERM, SIGHUP, SIGCHLD and SIGPIPE blocked and reads them
 *    from a signalfd: a terminal's Ctrl-C reaches the program, not the
 *    tracer, so an interrupted program still gets its log; SIGTERM and
 *    SIGHUP are forwarded to the program. The program starts with the
 *    caller's signal mask and dispositions.
 */
#ifndef HALLOC_TRACER_H
#define HALLOC_TRACER_H

#include <stdbool.h>
#include <stdint.h>

enum ht_result {
	HT_OK = 0,
	HT_ERR_NOT_FOUND,   /* the program does not exist (exit 127) */
	HT_ERR_CANNOT_RUN,  /* it exists but cannot be executed (126) */
	HT_ERR_UNTRACEABLE, /* the agent cannot be injected into it (125) */
	HT_ERR_AGENT,	    /* libhalloc.so cannot be found (125) */
	HT_ERR_LOG,	    /* the log cannot be created or written (125) */
	HT_ERR_SYSTEM,	    /* pipe, memfd, fork, ... failed (125) */
	HT_ERR_NOMEM,	    /* (125) */
	HT_ERR_USAGE,	    /* a --fail-at line not in the program (2) */
};

struct ht_diag {
	char message[512];
};

/* The exit status halloc-trace uses for a failure, as env(1) does. */
int ht_result_exit_status(enum ht_result result);

/* Writes the message into diag and returns result, for `return ht_fail(...)`. */
enum ht_result ht_fail(struct ht_diag *diag, enum ht_result result,
		       const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Fault injection (agent/faults.h): allocation calls the agent refuses.
 * Zero values ask for nothing.
 */
struct ht_faults {
	uint64_t fail_after;    /* the N-th call and later ones fail */
	bool fail_rate_set;     /* each call fails with a probability ... */
	uint64_t fail_rate_ppb; /* ... of this many billionths, */
	uint64_t seed;          /* drawn from this seed */
	const char *fail_at_file; /* calls whose site is FILE:LINE fail */
	unsigned fail_at_line;
};

struct ht_config {
	char *const *argv;    /* the program and its arguments, NULL-ended */
	const char *output;   /* the log; NULL: halloc.PROG.PID.hlog */
	unsigned depth;	      /* call stack frames, 1..HALLOC_DEPTH_MAX */
	bool follow_children; /* record forked and exec'd processes too */
	uint64_t sample;      /* sampled: mean bytes between samples; 0: all */
	bool no_symbols;      /* leave symbolizing to the report */
	uint64_t limit;	      /* live heap budget in bytes (--limit); 0: none */
	struct ht_faults faults;
};

struct ht_session;

enum ht_result ht_start(const struct ht_config *config, struct ht_session **out,
			struct ht_diag *diag);

/*
 * Returns when the program has ended (and, with follow_children, every
 * process it started), or when a signal told the tracer to stop waiting
 * for descendants that outlive the program.
 */
enum ht_result ht_collect(struct ht_session *session, struct ht_diag *diag);

/*
 * Completes the log. HT_OK with a non-empty diag->message is a warning
 * (e.g. symbols could not be added): the log is still complete.
 */
enum ht_result ht_finish(struct ht_session *session, struct ht_diag *diag);

const char *ht_log_path(const struct ht_session *session);

/* The program's status as a shell reports it: its exit code, or 128+N. */
int ht_exit_status(const struct ht_session *session);

void ht_session_free(struct ht_session *session);

#endif /* HALLOC_TRACER_H */
