/*
 * agent/sample.c - sampled recording (halloc-trace --sample BYTES).
 *
 * Which allocations are recorded: a Poisson process over the bytes the
 * program allocates, with mean interval ha_agent.cfg.sample bytes, as
 * jemalloc's and Go's heap profilers do it. Each thread counts down a
 * distance drawn from an exponential distribution; an allocation of s bytes
 * that reaches the end of the distance is sampled, and a new distance is
 * drawn. The process being memoryless, an allocation of s bytes is sampled
 * with probability 1 - exp(-s / interval), whatever came before, which is
 * what the analyzer scales by (a size-0 allocation counts as 1 byte, so
 * that it can be sampled at all).
 *
 * Which frees are recorded: those of sampled blocks only. Sampled addresses
 * sit in a set made of STRIPES open-addressing tables (linear probing,
 * backward-shift deletion), each behind its own spinlock: two threads meet
 * on a lock only when their blocks hash to the same stripe. A block leaves
 * the set before it goes back to glibc, so an address reused at once by
 * another thread is never confused with the old block. Tables grow by mmap
 * (the agent never allocates); a stripe that cannot grow (no memory)
 * stops taking addresses: the frees of the blocks it refused go unrecorded.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "agent/agent.h"

#define STRIPES	   64u
#define STRIPE_MIN 512u /* slots of a stripe's first table */

struct stripe {
	int lock; /* 0 free, 1 held */
	uint32_t count;
	size_t mask;	  /* slots - 1; 0 with no table */
	uintptr_t *slots; /* 0: empty */
	char pad[64 - 2 * sizeof(int) - sizeof(size_t) - sizeof(void *)];
};

static struct stripe stripes[STRIPES] __attribute__((aligned(64)));

/*
 * How many sampled addresses have each hash (other bits than the tables
 * use; ha_agent_sample_count): a free whose count is zero was not sampled,
 * known without the stripe's lock (ha_agent_free_seq asks, inline). Almost every free is of such a block, and the lock (an
 * atomic exchange) and the probe cost more than the rest of the free
 * path. No false "not sampled": a block's count went up before malloc
 * returned it, so before the program could hand it to the thread that
 * frees it, and only the removal of an address with the same count takes
 * it down again. Counts change under their stripe's lock (so a fork sees
 * them consistent with the tables).
 */
uint32_t ha_agent_sample_filter[1u << HA_AGENT_SAMPLE_FILTER_BITS];

static void lock(struct stripe *s)
{
	while (__atomic_exchange_n(&s->lock, 1, __ATOMIC_ACQUIRE))
		while (__atomic_load_n(&s->lock, __ATOMIC_RELAXED))
			__builtin_ia32_pause();
}

static void unlock(struct stripe *s)
{
	__atomic_store_n(&s->lock, 0, __ATOMIC_RELEASE);
}

/* The top bits pick the stripe, the low ones the home slot in it. */
static struct stripe *stripe_of(uintptr_t addr, uint64_t *h)
{
	*h = ha_agent_mix64(addr);
	return &stripes[*h >> 58];
}

static size_t find(const struct stripe *s, uint64_t h, uintptr_t addr)
{
	size_t i;

	if (!s->slots)
		return SIZE_MAX;
	for (i = h & s->mask; s->slots[i]; i = (i + 1) & s->mask)
		if (s->slots[i] == addr)
			return i;
	return SIZE_MAX;
}

static void place(uintptr_t *slots, size_t mask, uintptr_t addr)
{
	size_t i;

	for (i = ha_agent_mix64(addr) & mask; slots[i]; i = (i + 1) & mask)
		;
	slots[i] = addr;
}

static bool grow(struct stripe *s)
{
	size_t n = s->slots ? (s->mask + 1) * 2 : STRIPE_MIN;
	uintptr_t *t = mmap(NULL, n * sizeof(*t), PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (t == MAP_FAILED)
		return false;
	for (size_t i = 0; s->slots && i <= s->mask; i++)
		if (s->slots[i])
			place(t, n - 1, s->slots[i]);
	if (s->slots)
		munmap(s->slots, (s->mask + 1) * sizeof(*t));
	s->slots = t;
	s->mask = n - 1;
	return true;
}

static bool insert(uintptr_t addr)
{
	uint64_t h;
	struct stripe *s = stripe_of(addr, &h);
	bool ok = true;

	lock(s);
	if (find(s, h, addr) == SIZE_MAX) {
		if ((!s->slots || (s->count + 1) * 2 > s->mask + 1) && !grow(s))
			ok = false;
		else {
			place(s->slots, s->mask, addr);
			s->count++;
			__atomic_fetch_add(ha_agent_sample_count(h), 1,
					   __ATOMIC_RELAXED);
		}
	}
	unlock(s);
	return ok;
}

/* Backward-shift deletion: no tombstones, so a miss stays short. Asked
 * only when addr's count is not zero (ha_agent_free_seq). */
static bool take(uintptr_t addr)
{
	uint64_t h;
	struct stripe *s = stripe_of(addr, &h);
	size_t i, j, k;

	lock(s);
	i = find(s, h, addr);
	if (i == SIZE_MAX) {
		unlock(s);
		return false;
	}
	for (j = i;;) {
		j = (j + 1) & s->mask;
		if (!s->slots[j])
			break;
		k = ha_agent_mix64(s->slots[j]) & s->mask;
		/* slots[j] may move to i unless its home lies in (i, j]. */
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		s->slots[i] = s->slots[j];
		i = j;
	}
	s->slots[i] = 0;
	s->count--;
	__atomic_fetch_sub(ha_agent_sample_count(h), 1, __ATOMIC_RELAXED);
	unlock(s);
	return true;
}

/* ---- the countdown -------------------------------------------------- */

/* xorshift64*: cheap, per thread, never 0 once seeded. */
static uint64_t next_random(struct ha_agent_thread *t)
{
	uint64_t x = t->sample_rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	t->sample_rng = x;
	return x * 0x2545f4914f6cdd1dull;
}

/*
 * ln(x) for x in (0, 1]: x = m * 2^e with m in [1, 2), ln m by the atanh
 * series (u <= 1/3: five terms are good to 1e-6). No libm in the agent.
 */
static double ln(double x)
{
	uint64_t bits;
	int e;
	double m, u, u2;

	memcpy(&bits, &x, sizeof(bits));
	e = (int)((bits >> 52) & 0x7ff) - 1023;
	bits = (bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
	memcpy(&m, &bits, sizeof(m));
	u = (m - 1) / (m + 1);
	u2 = u * u;
	return e * 0.69314718055994530942 +
	       2 * u *
		   (1 +
		    u2 * (1.0 / 3 + u2 * (1.0 / 5 + u2 * (1.0 / 7 + u2 / 9))));
}

/* A distance to the next sample: exponential, mean the interval. */
static int64_t draw(struct ha_agent_thread *t)
{
	/* 53 random bits, in (0, 1]. */
	double u = (double)((next_random(t) >> 11) + 1) * 0x1p-53;
	double d = -ln(u) * (double)ha_agent.cfg.sample;

	return d >= 0x1p62 ? INT64_MAX / 2 : (int64_t)d + 1;
}

bool ha_agent_sample_slow(struct ha_agent_thread *t, uint64_t size)
{
	if (!t->sample_rng) {
		struct timespec ts;

		/* Any nonzero seed will do; threads must not share one. */
		clock_gettime(CLOCK_MONOTONIC, &ts);
		t->sample_rng = ha_agent_mix64((uintptr_t)t ^ (uint64_t)ts.tv_nsec) | 1;
		t->sample_left = draw(t);
		if (t->sample_left > (int64_t)size) {
			t->sample_left -= (int64_t)size;
			return false;
		}
	}
	t->sample_left = draw(t);
	return true;
}

uint64_t ha_agent_sampled_free_seq(void *p)
{
	return take((uintptr_t)p) ? ha_agent_next_seq() : HA_AGENT_NO_SEQ;
}

void ha_agent_sample_insert(void *p)
{
	insert((uintptr_t)p);
}

/* fork(): the child must not inherit a stripe in the middle of a change. */
void ha_agent_sample_fork_prepare(void)
{
	for (unsigned i = 0; ha_agent.cfg.sample && i < STRIPES; i++)
		lock(&stripes[i]);
}

void ha_agent_sample_fork_parent(void)
{
	for (unsigned i = 0; ha_agent.cfg.sample && i < STRIPES; i++)
		unlock(&stripes[i]);
}
