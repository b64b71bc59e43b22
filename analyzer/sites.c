/*
 * analyzer/sites.c - the allocation site of each stack, and stacks as
 * reports show them.
 *
 * The site is the line a developer would change: the innermost frame
 * (inlined frames expanded) that is neither in the agent nor in the C/C++
 * runtime's allocation wrappers (libc, libstdc++, libgcc, ld.so, libm:
 * strdup, asprintf, operator new, ...) nor in code from system headers
 * under /usr/include/ (STL templates, inlined or not, that allocate on the
 * user's behalf). When no frame qualifies, the innermost one not in the
 * agent. The agent's own frames never show.
 */
#include <stdlib.h>
#include <string.h>

#include "analyzer/model.h"

static const struct ha_sym unknown_sym = {"", "", 0, 0};

/* The frames of a location: its symbols, or one unknown frame. */
static const struct ha_sym *loc_syms(const struct ha_log *log,
				     const struct ha_loc *loc, uint32_t *n)
{
	if (loc->nsyms == 0) {
		*n = 1;
		return &unknown_sym;
	}
	*n = loc->nsyms;
	return &log->syms[loc->first_sym];
}

static bool is_system_header(const char *file)
{
	return strncmp(file, "/usr/include/", 13) == 0;
}

/* The site of (function, file, line); an unknown place is told apart by
 * its location so unrelated unknown code is not lumped together. */
static uint32_t site_of(struct ha_log *log, const struct ha_sym *s,
			uint32_t loc)
{
	uint32_t key_loc = (*s->function || *s->file) ? HA_NONE : loc;
	uint32_t modfile = loc == HA_NONE ? 0 : log->locs[loc].modfile;
	uint64_t h =
	    ha_hash64((uint64_t)(uintptr_t)s->function ^
		      ha_hash64((uint64_t)(uintptr_t)s->file ^
				ha_hash64(((uint64_t)s->line << 32 | modfile) ^
					  ha_hash64(key_loc))));
	uint32_t first = ha_map_get(&log->site_index, h);
	struct ha_site *site;

	for (uint32_t i = first; i != HA_NONE; i = log->sites[i].next) {
		site = &log->sites[i];
		if (site->function == s->function && site->file == s->file &&
		    site->line == s->line && site->modfile == modfile &&
		    site->loc == key_loc)
			return i;
	}
	if (log->nsites >= HA_NONE - 1 ||
	    !HA_RESERVE(log->sites, log->sites_cap, log->nsites + 1) ||
	    !ha_map_put(&log->site_index, h, (uint32_t)log->nsites))
		return HA_NONE;
	site = &log->sites[log->nsites];
	site->function = s->function;
	site->file = s->file;
	site->line = s->line;
	site->modfile = modfile;
	site->loc = key_loc;
	site->next = first;
	return (uint32_t)log->nsites++;
}

static uint32_t choose_site(struct ha_log *log, const struct ha_stack *st)
{
	const struct ha_sym *fallback = NULL;
	uint32_t fallback_loc = HA_NONE;

	for (uint32_t f = 0; f < st->nframes; f++) {
		uint32_t loc_index = log->frame_locs[st->first + f];
		const struct ha_loc *loc = &log->locs[loc_index];
		const struct ha_modfile *m = &log->modfiles[loc->modfile];
		const struct ha_sym *syms;
		uint32_t n;

		if (m->agent)
			continue;
		syms = loc_syms(log, loc, &n);
		for (uint32_t i = 0; i < n; i++) {
			if (!fallback) {
				fallback = &syms[i];
				fallback_loc = loc_index;
			}
			if (!m->runtime && !is_system_header(syms[i].file))
				return site_of(log, &syms[i], loc_index);
		}
	}
	/* No frame at all: one site for every empty stack. */
	return site_of(log, fallback ? fallback : &unknown_sym, fallback_loc);
}

enum ha_result ha_sites_assign(struct ha_log *log)
{
	for (size_t i = 0; i < log->nstacks; i++) {
		uint32_t site = choose_site(log, &log->stacks[i]);

		if (site == HA_NONE)
			return HA_ERR_NOMEM;
		log->stacks[i].site = site;
	}
	return HA_OK;
}

long ha_stack_frames(const struct ha_log *log, uint32_t stack,
		     struct ha_frame **out)
{
	const struct ha_stack *st = &log->stacks[stack];
	struct ha_frame *frames = NULL;
	size_t n = 0, cap = 0;

	for (uint32_t f = 0; f < st->nframes; f++) {
		const struct ha_loc *loc =
		    &log->locs[log->frame_locs[st->first + f]];
		const struct ha_modfile *m = &log->modfiles[loc->modfile];
		const struct ha_sym *syms;
		uint32_t nsyms;

		if (m->agent)
			continue;
		syms = loc_syms(log, loc, &nsyms);
		if (!HA_RESERVE(frames, cap, n + nsyms)) {
			free(frames);
			return -1;
		}
		for (uint32_t i = 0; i < nsyms; i++) {
			struct ha_frame *fr = &frames[n++];

			fr->function = syms[i].function;
			fr->file = syms[i].file;
			fr->line = syms[i].line;
			fr->module = m->path;
			fr->address = log->frame_addrs[st->first + f];
			fr->offset = loc->offset;
		}
	}
	*out = frames;
	return (long)n;
}
