/*
 * analyzer/processes.c - which process each stream is, and how it ended.
 *
 * Streams are reported in the order the processes started (the PROCESS
 * record's start time), not in file order: a short-lived child's chunks
 * often reach the log before its parent's first full buffer does.
 * PROCESS_EXIT frames name a pid; the kernel may reuse a pid and one pid
 * runs one image after another through exec, so an image ended by exec
 * when the next image of its pid was started by exec, and the exits of a
 * pid go to its other images, the last exit to the last image.
 */
#include <stdlib.h>
#include <string.h>

#include "analyzer/analysis.h"
#include "halloc/log.h"

struct order_key {
	uint64_t time;
	uint32_t appearance, stream;
};

static int cmp_order(const void *a, const void *b)
{
	const struct order_key *x = a, *y = b;

	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	return x->appearance < y->appearance ? -1
					     : x->appearance > y->appearance;
}

/* (pid, position): the images an exit can belong to, or the exits. */
struct by_pid {
	uint32_t pid, pos;
};

static int cmp_by_pid(const void *a, const void *b)
{
	const struct by_pid *x = a, *y = b;

	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static bool has_stream_of(const struct ha_log *log, uint32_t pid)
{
	for (size_t i = 0; i < log->nstreams; i++)
		if (log->streams[i].pid == pid)
			return true;
	return false;
}

/* A process the tracer saw end but that sent no event (the agent was not
 * in it: a static binary, say) still gets reported. */
static bool add_synthetic(struct ha_log *log, uint32_t pid)
{
	struct ha_stream *s;

	if (!HA_RESERVE(log->streams, log->streams_cap, log->nstreams + 1))
		return false;
	s = &log->streams[log->nstreams];
	memset(s, 0, sizeof(*s));
	s->pid = pid;
	s->exe = "";
	s->synthetic = true;
	s->appearance = (uint32_t)log->nstreams++;
	return true;
}

static void set_end(struct ha_stream *s, const struct ha_exit *e)
{
	switch (e->how) {
	case HALLOC_EXIT_CODE:
		s->end = HA_END_EXIT;
		break;
	case HALLOC_EXIT_SIGNAL:
		s->end = HA_END_SIGNAL;
		break;
	case HALLOC_EXIT_DETACHED:
		s->end = HA_END_DETACHED;
		break;
	default:
		s->end = HA_END_UNKNOWN;
		break;
	}
	s->end_value = e->value;
	s->core_dumped = e->flags & 1;
}

/* Gives exits to the images that did not end by exec, pid by pid, from
 * the last of each backwards. */
static bool assign_exits(struct ha_log *log, const uint32_t *order)
{
	size_t n = log->nstreams, nc = 0;
	struct by_pid *cand = malloc((n ? n : 1) * sizeof(*cand));
	struct by_pid *ex =
	    malloc((log->nexits ? log->nexits : 1) * sizeof(*ex));

	if (!cand || !ex) {
		free(cand);
		free(ex);
		return false;
	}
	for (size_t pos = 0; pos < n; pos++)
		if (log->streams[order[pos]].end != HA_END_EXEC)
			cand[nc++] = (struct by_pid){
			    log->streams[order[pos]].pid, (uint32_t)pos};
	for (size_t i = 0; i < log->nexits; i++)
		ex[i] = (struct by_pid){log->exits[i].pid, (uint32_t)i};
	qsort(cand, nc, sizeof(*cand), cmp_by_pid);
	qsort(ex, log->nexits, sizeof(*ex), cmp_by_pid);
	for (size_t c = nc, e = log->nexits; c > 0 && e > 0;) {
		if (cand[c - 1].pid > ex[e - 1].pid) {
			c--;
		} else if (cand[c - 1].pid < ex[e - 1].pid) {
			e--;
		} else {
			set_end(&log->streams[order[cand[c - 1].pos]],
				&log->exits[ex[e - 1].pos]);
			c--;
			e--;
		}
	}
	free(cand);
	free(ex);
	return true;
}

enum ha_result ha_processes_settle(struct ha_log *log, uint32_t **order_out)
{
	struct order_key *keys;
	uint32_t *order;
	size_t n;

	*order_out = NULL;
	for (size_t i = 0; i < log->nexits; i++)
		if (!has_stream_of(log, log->exits[i].pid) &&
		    !add_synthetic(log, log->exits[i].pid))
			return HA_ERR_NOMEM;
	n = log->nstreams;
	keys = malloc((n ? n : 1) * sizeof(*keys));
	order = malloc((n ? n : 1) * sizeof(*order));
	if (!keys || !order) {
		free(keys);
		free(order);
		return HA_ERR_NOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		const struct ha_stream *s = &log->streams[i];
		uint64_t t = UINT64_MAX; /* unknown: after the known ones */

		if (s->has_process)
			t = s->start_time;
		else if (s->synthetic && log->has_trace_info &&
			 s->pid == log->pid)
			t = log->start_time;
		keys[i] = (struct order_key){t, s->appearance, (uint32_t)i};
	}
	qsort(keys, n, sizeof(*keys), cmp_order);
	for (size_t i = 0; i < n; i++)
		order[i] = keys[i].stream;
	free(keys);

	/* An image ended by exec when the next image of its pid came from one.
	 */
	for (size_t i = 0; i < n; i++) {
		struct ha_stream *s = &log->streams[order[i]];

		s->end = HA_END_UNKNOWN;
		for (size_t j = i + 1; j < n; j++) {
			const struct ha_stream *next = &log->streams[order[j]];

			if (next->pid != s->pid)
				continue;
			if (!next->has_process || (next->flags & 1))
				s->end = HA_END_EXEC;
			break;
		}
	}
	if (!assign_exits(log, order)) {
		free(order);
		return HA_ERR_NOMEM;
	}
	*order_out = order;
	return HA_OK;
}

void ha_process_identity(const struct ha_log *log, uint32_t stream, bool root,
			 int64_t *parent, const char *const **argv,
			 uint32_t *argc)
{
	const struct ha_stream *s = &log->streams[stream];
	bool traced = log->has_trace_info && s->pid == log->pid;

	*parent = -1;
	if (!root && !traced) {
		uint32_t p = s->parent_stream ? ha_map_get(&log->stream_ids,
							   s->parent_stream)
					      : HA_NONE;

		if (s->has_process)
			*parent = s->ppid;
		else if (p != HA_NONE)
			*parent = log->streams[p].pid;
	}
	if (s->has_process && s->argc > 0) {
		*argv = s->argv;
		*argc = s->argc;
	} else if (traced) {
		*argv = log->argv;
		*argc = log->argc;
	} else if (*s->exe) {
		*argv = &s->exe;
		*argc = 1;
	} else {
		*argv = NULL;
		*argc = 0;
	}
}
