/*
 * agent/bpf/events.c - the ring buffer's events into log records: call
 * stacks (checked against the target's modules, or unwound from the
 * copied stack), the modules they need, thread and process ends, exec.
 *
 * Sequence numbers: an event's BPF seq E becomes E << HB_SEQ_SHIFT | max;
 * the records this file adds for it (MODULE_LOAD, STACK) take the numbers
 * just below, so they come before the event in the stream's order while
 * the thread's numbers keep increasing.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "agent/bpf/halloc.h"
#include "agent/bpf/session.h"

#define RESCAN_INTERVAL_NS (20 * 1000 * 1000ull)

/* ---- modules ------------------------------------------------------------ */

void hb_write_new_modules(struct hb_session *s, uint32_t tid)
{
	for (size_t i = 0; i < s->modules.nmods; i++) {
		struct hb_module *mod = &s->modules.mods[i];
		struct hb_module_info info;

		if (mod->log_id || s->sub_seq >= HB_SUB_SEQ_MAX)
			continue;
		info = (struct hb_module_info){
		    .bias = mod->bias,
		    .path = mod->path,
		    .build_id = mod->build_id,
		    .build_id_len = mod->build_id_len,
		    .nsegments = mod->nsegments,
		    .segments = mod->segments,
		};
		mod->log_id = hb_rec_module(
		    s->stream, tid, HB_SUB_SEQ(s->event_seq, s->sub_seq++),
		    &info);
	}
}

void hb_rescan(struct hb_session *s)
{
	int added = hb_modules_scan(&s->modules);

	s->last_rescan_ns = hb_boot_ns();
	s->rescanned = true;
	if (added > 0)
		hb_table_free(&s->unknown_pages); /* they may be known now */
}

/*
 * A miss rescans the maps: code mapped since (dlopen) becomes known. An
 * address still unknown after a rescan (JIT code, or a frame-pointer
 * "frame" that is garbage) is remembered by page, so it costs no more
 * rescans; and an unreliable address rescans at most every 20 ms.
 */
struct hb_module *hb_find_module(void *session, uint64_t addr)
{
	struct hb_session *s = session;
	struct hb_module *mod = hb_modules_find(&s->modules, addr);
	uint64_t page = (addr >> 12) + 1;

	if (mod || s->rescanned || hb_table_find(&s->unknown_pages, page))
		return mod;
	if (!s->find_reliable &&
	    hb_boot_ns() - s->last_rescan_ns < RESCAN_INTERVAL_NS)
		return NULL;
	hb_rescan(s);
	mod = hb_modules_find(&s->modules, addr);
	if (!mod)
		hb_table_put(&s->unknown_pages, page, 1);
	return mod;
}

/* ---- stacks -------------------------------------------------------------- */

/* The kernel followed rbp through code that may not keep it: a "frame"
 * outside every module is garbage, and ends the stack. */
unsigned hb_fp_frames(struct hb_session *s, const uint64_t *frames, unsigned n)
{
	if (n > s->depth)
		n = s->depth;
	for (unsigned i = 0; i < n; i++) {
		/* The first frame is the caller's return address: real. */
		s->find_reliable = i == 0;
		if (!hb_find_module(s, frames[i] - (i > 0)) && i > 0)
			return i;
		s->frames[i] = frames[i];
	}
	return n;
}

static unsigned fp_stack(struct hb_session *s, const struct hb_event *ev,
			 size_t size)
{
	unsigned n = ev->nframes;

	if (n > (size - sizeof(*ev)) / sizeof(uint64_t))
		n = (unsigned)((size - sizeof(*ev)) / sizeof(uint64_t));
	return hb_fp_frames(s, (const uint64_t *)(ev + 1), n);
}

static unsigned dwarf_stack(struct hb_session *s, const struct hb_event *ev,
			    size_t size)
{
	const struct hb_regs *regs = (const struct hb_regs *)(ev + 1);
	const unsigned char *stack = (const unsigned char *)(regs + 1);
	size_t have = size - sizeof(*ev);
	enum hb_unwind_end end;
	unsigned n = 0;

	if (have < sizeof(*regs))
		return 0;
	have -= sizeof(*regs);
	if (have > ev->stack_size)
		have = ev->stack_size;
	s->find_reliable = true;
	end = hb_unwind(&s->unwinder, regs, stack, have, hb_find_module, s,
			s->frames, s->depth, &n);
	if (end == HB_UNWIND_TRUNCATED)
		s->out->stacks_truncated++;
	return n;
}

static uint64_t event_stack(struct hb_session *s, const struct hb_event *ev,
			    size_t size)
{
	unsigned n = s->stack_mode == HB_STACK_DWARF ? dwarf_stack(s, ev, size)
						     : fp_stack(s, ev, size);
	bool wrote;

	hb_write_new_modules(s, ev->tid);
	return hb_stack_id(s->stream, ev->tid, HB_STACK_SEQ(ev->seq), s->frames,
			   n, &wrote);
}

/* ---- the process --------------------------------------------------------- */

bool hb_begin_stream(struct hb_session *s, uint64_t seq, uint64_t start_boot_ns,
		     const char *exe, unsigned argc, char *const *argv,
		     uint32_t ppid, uint64_t flags)
{
	struct hb_process_info pi = {
	    .pid = (uint32_t)s->pid,
	    .ppid = ppid,
	    .flags = flags,
	    .start_ns = hb_real_ns() - (hb_boot_ns() - start_boot_ns),
	    .exe = exe,
	    .argc = argc,
	    .argv = argv,
	};

	s->stream = hb_stream_new(&s->log, (uint32_t)s->pid, start_boot_ns);
	if (!s->stream)
		return false;
	s->event_seq = seq;
	s->sub_seq = 0;
	if (!hb_rec_process(s->stream, (uint32_t)s->pid,
			    HB_SUB_SEQ(seq, s->sub_seq++), &pi))
		return false;
	hb_write_new_modules(s, (uint32_t)s->pid);
	return true;
}

/* The image was replaced (-p): the old stream ends, a new one starts. */
static void on_exec(struct hb_session *s, const struct hb_event *ev)
{
	struct hb_proc p;

	if (s->config->aggregate) {
		s->stop = true; /* the kernel stopped counting at the exec */
		return;
	}
	hb_stream_free(s->stream);
	s->stream = NULL;
	hb_modules_free(&s->modules);
	hb_modules_init(&s->modules, s->pid);
	hb_unwinder_reset(&s->unwinder);
	hb_table_free(&s->unknown_pages);
	hb_rescan(s);
	if (hb_proc_read(s->pid, &p) == 0) {
		hb_begin_stream(s, ev->seq, ev->time_ns, p.exe, p.argc, p.argv,
				(uint32_t)p.ppid, 1);
		hb_proc_free(&p);
	} else {
		char *none[] = {NULL};

		hb_begin_stream(s, ev->seq, ev->time_ns, "", 0, none, 0, 1);
	}
}

static void on_exit_event(struct hb_session *s, const struct hb_event *ev)
{
	hb_stream_flush_thread(s->stream, ev->tid);
	if (ev->flags & HB_EXIT_GROUP_DEAD) {
		s->exit_seen = true;
		s->exit_code = ev->err;
	}
}

int hb_on_event(void *ctx, void *data, size_t size)
{
	struct hb_session *s = ctx;
	const struct hb_event *ev = data;
	uint64_t time_us, stack;

	if (size < sizeof(*ev))
		return 0;
	s->out->events++;
	s->rescanned = false;
	s->event_seq = ev->seq;
	s->sub_seq = 0;
	if (ev->kind == HB_EV_EXIT) {
		on_exit_event(s, ev);
		return 0;
	}
	if (ev->kind == HB_EV_EXEC) {
		on_exec(s, ev);
		return 0;
	}
	if (!s->stream)
		return 0;
	time_us = hb_stream_time_us(s->stream, ev->time_ns);
	switch (ev->kind) {
	case HB_EV_FREE:
		hb_rec_free(s->stream, ev->tid, HB_EVENT_SEQ(ev->seq), ev->fn,
			    time_us, ev->addr);
		break;
	case HB_EV_ALLOC:
		stack = event_stack(s, ev, size);
		hb_rec_alloc(s->stream, ev->tid, HB_EVENT_SEQ(ev->seq), ev->fn,
			     time_us, ev->addr, ev->size, stack);
		break;
	case HB_EV_REALLOC:
		stack = event_stack(s, ev, size);
		hb_rec_realloc(s->stream, ev->tid, HB_EVENT_SEQ(ev->seq),
			       HB_EVENT_SEQ(ev->seq2), ev->fn, time_us,
			       ev->old_addr, ev->addr, ev->size, stack);
		break;
	case HB_EV_FAILED:
		stack = event_stack(s, ev, size);
		hb_rec_failed(s->stream, ev->tid, HB_EVENT_SEQ(ev->seq), ev->fn,
			      time_us, ev->size, stack, (uint64_t)ev->err);
		break;
	}
	return 0;
}
