/*
 * agent/self.c - what the agent itself adds to the traced process, so the
 * record can leave it out.
 *
 *  - Code: frames inside libhalloc.so lead every captured stack; stack.c
 *    drops them.
 *  - A TLS module: libhalloc.so has a TLS segment (its per-thread state),
 *    and glibc sizes every new thread's DTV by the number of TLS modules:
 *    ld.so's allocate_dtv() does calloc(max_modid + 16, sizeof(dtv_t)).
 *    With the agent that request is one 16-byte entry larger than without
 *    it. The record says what the program would have asked for, so that
 *    totals match an untraced run (and Valgrind's).
 */
#include <link.h>
#include <stdint.h>
#include <sys/auxv.h>

#include "agent/agent.h"

struct object {
	uintptr_t want; /* an address inside the object, or its bias */
	bool by_bias;
	uintptr_t lo, hi;
	bool tls;
};

static struct object self, loader;
static unsigned tls_added;

/* sizeof(dtv_t) in glibc: a pointer and a flag, 16 bytes on x86_64. */
#define DTV_ENTRY   16u
#define DTV_SURPLUS 14u

static int find_object(struct dl_phdr_info *info, size_t size, void *data)
{
	struct object *o = data;
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	bool tls = false;
	int i;

	for (i = 0; i < info->dlpi_phnum; i++) {
		const Elf64_Phdr *ph = &info->dlpi_phdr[i];
		uintptr_t start = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type == PT_TLS)
			tls = true;
		if (ph->p_type != PT_LOAD)
			continue;
		if (start < lo)
			lo = start;
		if (start + ph->p_memsz > hi)
			hi = start + ph->p_memsz;
	}
	if (o->by_bias ? info->dlpi_addr != o->want
		       : o->want < lo || o->want >= hi)
		return 0;
	o->lo = lo;
	o->hi = hi;
	o->tls = tls;
	return 1;
}

static void locate(struct object *o, uintptr_t want, bool by_bias)
{
	o->want = want;
	o->by_bias = by_bias;
	if (!want || !dl_iterate_phdr(find_object, o))
		o->lo = o->hi = 0;
}

void ha_agent_self_init(void)
{
	locate(&self, (uintptr_t)ha_agent_self_init, false);
	locate(&loader, getauxval(AT_BASE), true);
	tls_added = self.tls;
}

static bool inside(const struct object *o, uintptr_t pc)
{
	return pc >= o->lo && pc < o->hi;
}

bool ha_agent_self_frame(uintptr_t pc)
{
	return inside(&self, pc);
}

size_t ha_agent_calloc_size(size_t nmemb, size_t size, const void *caller)
{
	size_t total;

	if (__builtin_mul_overflow(nmemb, size, &total))
		return SIZE_MAX;
	if (size == DTV_ENTRY && tls_added &&
	    nmemb > tls_added + DTV_SURPLUS + 2 &&
	    inside(&loader, (uintptr_t)caller))
		total -= (size_t)tls_added * DTV_ENTRY;
	return total;
}
