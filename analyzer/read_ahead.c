/*
 * analyzer/read_ahead.c - a thread that reads and decodes a stream's chunks
 * ahead of the merge. See read_ahead.h.
 *
 * Each group has a ring of decoded chunks. The thread fills,
 * of the groups with a free slot, the one whose next chunk starts at the
 * smallest sequence number (the merge needs chunks about in that order),
 * and sleeps when every ring is full; the merge takes a group's chunks in
 * order, and holds the one it reads until it takes the next. Counters and
 * flags are under one lock; a slot's contents are the thread's until it
 * counts it made, then the merge's until it takes the next one.
 */
#include <pthread.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "analyzer/decode.h"
#include "analyzer/event_merge.h"
#include "analyzer/read_ahead.h"
#include "halloc/log.h"

/*
 * Decoded chunks the groups' rings hold together (a chunk is ~400 events,
 * 13 KiB: 3.3 MiB), at least AHEAD_RING_MIN a group. Ahead by this many,
 * the merge (~13 us a chunk on churn) does not run dry while the thread
 * decompresses a 2 MiB zstd frame (~2 ms); 32 a group measured waits.
 */
#define AHEAD_CHUNKS   256
#define AHEAD_RING_MIN 8
/* The merge, waiting, is woken when this many chunks are ready. */
#define AHEAD_WAKE_MERGE 4
/*
 * How long either side spins, yielding the processor, before it sleeps:
 * a wake-up from sleep takes milliseconds on some virtual machines (a
 * halted vCPU waits for the host), longer than the other side needs to
 * make a chunk or free a slot. Yielding, a spinning side gives way to any
 * other work on a busy machine; it sleeps only when the other side has
 * truly stopped (a paused process, a machine far busier than its cores).
 */
#define AHEAD_SPIN_NS (20 * 1000 * 1000)

uint64_t ha_ahead_min_bytes = HA_AHEAD_MIN_BYTES;

struct slot {
	struct ha_event *ev;
	size_t nev, cap;
	uint64_t at;
	enum ha_result res;
};

struct group {
	const uint32_t *chunks;
	size_t nchunks;
	/* Chunks decoded, chunks the merge took; it holds the one before
	 * `taken` while it reads it. After a chunk that did not read,
	 * `failed`: none more are made. */
	size_t made, taken;
	bool failed;
	struct slot *ring;
};

struct ha_read_ahead {
	struct ha_log *log;
	struct ha_fetch *fetch; /* the thread's own */
	unsigned char *buf;	/* a chunk spanning frames */
	struct group *groups;
	size_t ngroups;
	size_t ring; /* slots a group */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t made; /* the merge waits for a chunk of waits_for */
	pthread_cond_t room; /* the thread waits for a free slot */
	size_t waits_for;    /* SIZE_MAX: the merge does not wait */
	bool thread_waits, stop;
};

/* The thread may fill one more slot of g (it leaves the held one be). */
static bool has_room(const struct ha_read_ahead *ra, const struct group *g)
{
	return !g->failed && g->made < g->nchunks &&
	       g->made - g->taken < ra->ring - 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spins (unlocked) until ready(ra, arg) or AHEAD_SPIN_NS pass; whether it
 * got ready. ready() reads the counters racily: the caller checks again
 * under the lock. */
static bool spin_until(struct ha_read_ahead *ra, const void *arg,
		       bool (*ready)(struct ha_read_ahead *, const void *))
{
	uint64_t until = 0;

	for (unsigned i = 0;; i++) {
		if (ready(ra, arg))
			return true;
		if (i % 256 == 255) {
			uint64_t t = now_ns();

			if (!until)
				until = t + AHEAD_SPIN_NS;
			else if (t >= until)
				return false;
			sched_yield();
		} else {
			__builtin_ia32_pause();
		}
	}
}

static bool finished(const struct group *g)
{
	return g->failed || g->made == g->nchunks;
}

/* For spin_until(), unlocked: some group may have room (the thread's). */
static bool room_somewhere(struct ha_read_ahead *ra, const void *unused)
{
	for (size_t i = 0; i < ra->ngroups; i++) {
		const struct group *g = &ra->groups[i];

		if (!g->failed && g->made < g->nchunks &&
		    g->made - __atomic_load_n(&g->taken, __ATOMIC_RELAXED) <
			ra->ring - 1)
			return true;
	}
	return __atomic_load_n(&ra->stop, __ATOMIC_RELAXED);
}

/* For spin_until(), unlocked: group g has a chunk for the merge, or none
 * will come. */
static bool group_ready(struct ha_read_ahead *ra, const void *arg)
{
	const struct group *g = arg;

	size_t made = __atomic_load_n(&g->made, __ATOMIC_ACQUIRE);

	return made != g->taken || made == g->nchunks ||
	       __atomic_load_n(&g->failed, __ATOMIC_RELAXED);
}

/* The group to fill next, NULL when none has room. Under the lock. */
static struct group *next_group(struct ha_read_ahead *ra)
{
	struct group *best = NULL;
	uint64_t best_seq = 0;

	for (size_t i = 0; i < ra->ngroups; i++) {
		struct group *g = &ra->groups[i];
		uint64_t seq;

		if (!has_room(ra, g))
			continue;
		seq = ra->log->chunks[g->chunks[g->made]].first_seq;
		if (!best || seq < best_seq) {
			best = g;
			best_seq = seq;
		}
	}
	return best;
}

static bool all_finished(const struct ha_read_ahead *ra)
{
	for (size_t i = 0; i < ra->ngroups; i++)
		if (!finished(&ra->groups[i]))
			return false;
	return true;
}

static void *run(void *arg)
{
	struct ha_read_ahead *ra = arg;

	pthread_mutex_lock(&ra->lock);
	while (!ra->stop) {
		struct group *g = next_group(ra);
		struct slot *s;
		uint32_t chunk;

		if (!g) {
			if (all_finished(ra))
				break;
			pthread_mutex_unlock(&ra->lock);
			bool room = spin_until(ra, NULL, room_somewhere);
			pthread_mutex_lock(&ra->lock);
			if (room || ra->stop)
				continue;
			ra->thread_waits = true;
			pthread_cond_wait(&ra->room, &ra->lock);
			ra->thread_waits = false;
			continue;
		}
		s = &g->ring[g->made % ra->ring];
		chunk = g->chunks[g->made];
		pthread_mutex_unlock(&ra->lock);
		s->nev = 0;
		s->at = ra->log->chunks[chunk].at;
		s->res = ha_merge_read_chunk(ra->log, ra->fetch, chunk, ra->buf,
					     &s->ev, &s->nev, &s->cap);
		pthread_mutex_lock(&ra->lock);
		if (s->res != HA_OK)
			g->failed = true;
		/* (The merge may read it unlocked: ha_ahead_take.) */
		__atomic_store_n(&g->made, g->made + 1, __ATOMIC_RELEASE);
		/* Wake the merge when a few chunks are ready, not for each:
		 * where decoding is the slower side (small working sets:
		 * sqlite), a wake-up per chunk cost more than it hid. */
		if (ra->waits_for == (size_t)(g - ra->groups) &&
		    (g->made - g->taken >= AHEAD_WAKE_MERGE || finished(g)))
			pthread_cond_signal(&ra->made);
	}
	pthread_mutex_unlock(&ra->lock);
	return NULL;
}

static void free_all(struct ha_read_ahead *ra)
{
	for (size_t i = 0; ra->groups && i < ra->ngroups; i++) {
		for (size_t k = 0; ra->groups[i].ring && k < ra->ring; k++)
			free(ra->groups[i].ring[k].ev);
		free(ra->groups[i].ring);
	}
	free(ra->groups);
	free(ra->buf);
	ha_fetch_free(ra->fetch);
	free(ra);
}

struct ha_read_ahead *ha_ahead_start(struct ha_log *log,
				     const struct ha_fetch *fetch,
				     const struct ha_ahead_group *groups,
				     size_t ngroups)
{
	struct ha_read_ahead *ra = calloc(1, sizeof(*ra));
	bool locks = false;

	if (!ra)
		return NULL;
	ra->log = log;
	ra->ngroups = ngroups;
	ra->waits_for = SIZE_MAX;
	ra->groups = calloc(ngroups ? ngroups : 1, sizeof(*ra->groups));
	ra->buf = malloc(HALLOC_FRAME_MAX + HA_SLACK);
	ra->fetch = ha_fetch_twin(fetch);
	if (!ra->groups || !ra->buf || !ra->fetch)
		goto fail;
	ra->ring = AHEAD_CHUNKS / (ngroups ? ngroups : 1);
	if (ra->ring < AHEAD_RING_MIN)
		ra->ring = AHEAD_RING_MIN;
	for (size_t i = 0; i < ngroups; i++) {
		ra->groups[i].chunks = groups[i].chunks;
		ra->groups[i].nchunks = groups[i].nchunks;
		ra->groups[i].ring = calloc(ra->ring, sizeof(struct slot));
		if (!ra->groups[i].ring)
			goto fail;
	}
	if (pthread_mutex_init(&ra->lock, NULL) != 0)
		goto fail;
	if (pthread_cond_init(&ra->made, NULL) != 0) {
		pthread_mutex_destroy(&ra->lock);
		goto fail;
	}
	if (pthread_cond_init(&ra->room, NULL) != 0) {
		pthread_cond_destroy(&ra->made);
		pthread_mutex_destroy(&ra->lock);
		goto fail;
	}
	locks = true;
	if (pthread_create(&ra->thread, NULL, run, ra) != 0)
		goto fail;
	return ra;
fail:
	if (locks) {
		pthread_cond_destroy(&ra->room);
		pthread_cond_destroy(&ra->made);
		pthread_mutex_destroy(&ra->lock);
	}
	free_all(ra);
	return NULL;
}

enum ha_result ha_ahead_take(struct ha_read_ahead *ra, size_t gi,
			     struct ha_event **ev, size_t *nev, uint64_t *at)
{
	struct group *g = &ra->groups[gi];
	struct slot *s;

	/* The thread is likely at work on the next chunk: a wake-up from
	 * sleep takes milliseconds on some virtual machines (a halted vCPU
	 * waits for the host), far more than a chunk takes to decode. */
	spin_until(ra, g, group_ready);
	pthread_mutex_lock(&ra->lock);
	while (g->taken == g->made) {
		if (finished(g)) {
			pthread_mutex_unlock(&ra->lock);
			*ev = NULL;
			*nev = 0;
			return HA_OK;
		}
		/* (It fills this group before it sleeps again.) */
		if (ra->thread_waits)
			pthread_cond_signal(&ra->room);
		ra->waits_for = gi;
		pthread_cond_wait(&ra->made, &ra->lock);
		ra->waits_for = SIZE_MAX;
	}
	s = &g->ring[g->taken % ra->ring];
	__atomic_store_n(&g->taken, g->taken + 1, __ATOMIC_RELAXED);
	/* Wake the thread when a quarter of the ring is free, not for each
	 * slot, and early: on a busy machine it may take a while to run. */
	if (ra->thread_waits && has_room(ra, g) &&
	    g->made - g->taken <= ra->ring * 3 / 4)
		pthread_cond_signal(&ra->room);
	pthread_mutex_unlock(&ra->lock);
	*ev = s->ev;
	*nev = s->nev;
	*at = s->at;
	return s->res;
}

void ha_ahead_stop(struct ha_read_ahead *ra)
{
	if (!ra)
		return;
	pthread_mutex_lock(&ra->lock);
	__atomic_store_n(&ra->stop, true, __ATOMIC_RELAXED);
	pthread_cond_signal(&ra->room);
	pthread_mutex_unlock(&ra->lock);
	pthread_join(ra->thread, NULL);
	pthread_cond_destroy(&ra->room);
	pthread_cond_destroy(&ra->made);
	pthread_mutex_destroy(&ra->lock);
	free_all(ra);
}
