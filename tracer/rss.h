/*
 * tracer/rss.h - the resident memory of the traced processes, sampled from
 * outside (/proc/PID/statm and VmHWM) while they run, written to the log as
 * HALLOC_FRAME_RSS frames (include/halloc/log.h). Internal to tracer/.
 *
 * collect.c's loop calls ht_rss_poll() before each poll(2): it samples what
 * is due and shortens poll's timeout to the next sample. Every process is
 * sampled every 10 ms at first; its interval doubles every 256 samples, so
 * a run of an hour keeps about 3,000 samples per process.
 */
#ifndef HALLOC_TRACER_RSS_H
#define HALLOC_TRACER_RSS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Processes sampled at once; more (with follow_children) go unsampled. */
#define HT_RSS_PROCESSES 64

struct ht_rss_process {
	pid_t pid;	  /* 0: free */
	uint32_t samples; /* taken so far */
	long long next_ms; /* CLOCK_MONOTONIC ms of the next sample */
	bool seen;	  /* found in the latest scan */
};

struct ht_rss {
	struct ht_rss_process procs[HT_RSS_PROCESSES];
	long long next_scan_ms; /* when to look for new processes */
};

struct ht_session;

/*
 * Samples the processes that are due; returns the poll(2) timeout to use:
 * `timeout` (-1: none) or less, so that the next sample is on time.
 */
int ht_rss_poll(struct ht_session *session, int timeout);

#endif /* HALLOC_TRACER_RSS_H */
