/*
 * analyzer/modules.c - from a recorded return address to a location: the
 * module file it lies in and its offset in that file's ELF address space.
 *
 * A module is valid in a stream from its load to its unload (by sequence
 * number); a dlclose'd range can be reused by another library later, so a
 * stack's addresses are looked up among the modules valid at the stack's
 * sequence number. The address looked up is the return address minus 1:
 * the call instruction, which may be the last one of an inlined scope or
 * of a noreturn function's caller.
 */
#include <stdlib.h>

#include "analyzer/model.h"

/* Unloads name a module id; an id may be loaded again after its unload,
 * so each unload ends the latest load of that id before it. */
static void match_unloads(struct ha_stream *s)
{
	for (size_t u = 0; u < s->nunloads; u++) {
		struct ha_module *best = NULL;

		for (size_t i = 0; i < s->nmodules; i++) {
			struct ha_module *m = &s->modules[i];

			if (m->id != s->unloads[u].id ||
			    m->load_seq >= s->unloads[u].seq ||
			    m->unload_seq != UINT64_MAX)
				continue;
			if (!best || m->load_seq > best->load_seq)
				best = m;
		}
		if (best)
			best->unload_seq = s->unloads[u].seq;
	}
}

static int cmp_segment(const void *a, const void *b)
{
	const struct ha_segment *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->module < y->module ? -1 : x->module > y->module;
}

void ha_segments_index(struct ha_stream *s)
{
	uint64_t max_end = 0;

	if (s->nsegments > 1)
		qsort(s->segments, s->nsegments, sizeof(*s->segments),
		      cmp_segment);
	for (size_t i = 0; i < s->nsegments; i++) {
		if (s->segments[i].end > max_end)
			max_end = s->segments[i].end;
		s->segments[i].max_end = max_end;
	}
}

size_t ha_segments_above(const struct ha_stream *s, uint64_t addr)
{
	size_t lo = 0, hi = s->nsegments;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->segments[mid].start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * The module holding `addr` at `seq`. When none was valid then (a module
 * recorded late, or records lost), the one whose validity is nearest in
 * time: a wrong guess is unlikely, as ranges are reused only after unloads.
 */
static const struct ha_module *find_module(const struct ha_stream *s,
					   uint64_t addr, uint64_t seq)
{
	const struct ha_module *fallback = NULL;
	uint64_t fallback_dist = UINT64_MAX;

	for (size_t i = ha_segments_above(s, addr); i-- > 0;) {
		const struct ha_segment *seg = &s->segments[i];
		const struct ha_module *m;
		uint64_t dist;

		if (seg->max_end <= addr)
			break;
		if (addr >= seg->end)
			continue;
		m = &s->modules[seg->module];
		if (seq >= m->load_seq && seq < m->unload_seq)
			return m;
		dist =
		    seq < m->load_seq ? m->load_seq - seq : seq - m->unload_seq;
		if (dist < fallback_dist) {
			fallback = m;
			fallback_dist = dist;
		}
	}
	return fallback;
}

enum ha_result ha_log_resolve(struct ha_log *log)
{
	if (!HA_RESERVE(log->frame_locs, log->frame_locs_cap, log->nframes))
		return HA_ERR_NOMEM;
	for (size_t i = 0; i < log->nstreams; i++) {
		match_unloads(&log->streams[i]);
		ha_segments_index(&log->streams[i]);
	}
	for (size_t i = 0; i < log->nstacks; i++) {
		const struct ha_stack *st = &log->stacks[i];
		const struct ha_stream *s = &log->streams[st->stream];

		for (uint32_t f = 0; f < st->nframes; f++) {
			uint64_t addr = log->frame_addrs[st->first + f];
			const struct ha_module *m =
			    find_module(s, addr, st->seq);
			uint32_t modfile = m ? m->modfile : 0;
			uint64_t offset = addr ? addr - 1 : 0;
			uint32_t loc;

			if (m)
				offset -= m->bias;
			loc = ha_log_loc(log, modfile, offset, true);
			if (loc == HA_NONE)
				return HA_ERR_NOMEM;
			log->frame_locs[st->first + f] = loc;
		}
	}
	return HA_OK;
}
