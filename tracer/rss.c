/*
 * tracer/rss.c - sampling the traced processes' resident memory from
 * outside while they run (see rss.h), one HALLOC_FRAME_RSS frame a sample.
 *
 * Which processes: the program; with follow_children, every process under
 * the tracer (we are their subreaper, so orphans stay under us), found in
 * /proc/PID/task/TID/children. A process whose resident size reads 0 (a
 * zombie, or gone) is not sampled. Times are CLOCK_REALTIME, the clock of
 * the agent's PROCESS records, so the analyzer can put each sample on the
 * timeline of the process image that was running then.
 */
#include "tracer/session.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/varint.h"

#define FIRST_INTERVAL_MS 10
#define DOUBLE_EVERY 256
/* Looking for new processes (follow_children). */
#define SCAN_MS 10
/* Deeper process trees than this are not searched. */
#define SCAN_DEPTH 16

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A small /proc file, NUL-terminated; false if it cannot be read. */
static bool read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return true;
}

/* Resident bytes now, and the peak so far (0 when unknown). */
static bool sample(pid_t pid, uint64_t *rss, uint64_t *hwm)
{
	char path[64], buf[2048];
	unsigned long long size, resident, kb;
	const char *at;

	snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
	if (!read_small(path, buf, sizeof(buf)) ||
	    sscanf(buf, "%llu %llu", &size, &resident) != 2 || !resident)
		return false;
	*rss = (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
	*hwm = 0;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (read_small(path, buf, sizeof(buf)) &&
	    (at = strstr(buf, "\nVmHWM:")) && sscanf(at + 7, "%llu", &kb) == 1)
		*hwm = (uint64_t)kb * 1024;
	return true;
}

static void write_sample(struct ht_session *s, pid_t pid, uint64_t rss,
			 uint64_t hwm)
{
	unsigned char frame[HALLOC_FRAME_HEADER_SIZE + 4 * HALLOC_VARINT_MAX];
	unsigned char *p = frame + HALLOC_FRAME_HEADER_SIZE;

	p = halloc_put_uv(p, (uint64_t)pid);
	p = halloc_put_uv(p, realtime_ns());
	p = halloc_put_uv(p, rss);
	if (hwm)
		p = halloc_put_uv(p, hwm);
	ht_put_frame_header(
	    frame, (uint32_t)(p - frame - HALLOC_FRAME_HEADER_SIZE),
	    HALLOC_FRAME_RSS);
	ht_log_write(s, frame, (size_t)(p - frame));
}

static void track(struct ht_rss *r, pid_t pid, long long now)
{
	struct ht_rss_process *free_slot = NULL;

	for (int i = 0; i < HT_RSS_PROCESSES; i++) {
		struct ht_rss_process *p = &r->procs[i];

		if (p->pid == pid) {
			p->seen = true;
			return;
		}
		if (!p->pid && !free_slot)
			free_slot = p;
	}
	if (free_slot)
		*free_slot = (struct ht_rss_process){pid, 0, now, true};
}

/* Every process under `parent`, from each of its threads' children. */
static void scan_children(struct ht_rss *r, pid_t parent, long long now,
			  int depth)
{
	char path[64], buf[4096];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)parent);
	if (depth >= SCAN_DEPTH || !(d = opendir(path)))
		return;
	while ((e = readdir(d))) {
		char *p, *end;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%.20s/children",
			 (int)parent, e->d_name);
		if (!read_small(path, buf, sizeof(buf)))
			continue;
		for (p = buf;; p = end) {
			long pid = strtol(p, &end, 10);

			if (end == p || pid <= 0 || pid > INT_MAX)
				break;
			track(r, (pid_t)pid, now);
			scan_children(r, (pid_t)pid, now, depth + 1);
		}
	}
	closedir(d);
}

static void scan(struct ht_session *s, long long now)
{
	struct ht_rss *r = &s->rss;

	for (int i = 0; i < HT_RSS_PROCESSES; i++)
		r->procs[i].seen = false;
	if (!s->child_ended && s->child > 0)
		track(r, s->child, now);
	if (s->follow)
		scan_children(r, getpid(), now, 0);
	for (int i = 0; i < HT_RSS_PROCESSES; i++)
		if (!r->procs[i].seen)
			r->procs[i].pid = 0;
}

int ht_rss_poll(struct ht_session *s, int timeout)
{
	struct ht_rss *r = &s->rss;
	long long now = now_ms(), next = LLONG_MAX, wait;

	if (now >= r->next_scan_ms) {
		scan(s, now);
		r->next_scan_ms = now + SCAN_MS;
	}
	for (int i = 0; i < HT_RSS_PROCESSES; i++) {
		struct ht_rss_process *p = &r->procs[i];
		uint64_t rss, hwm;
		unsigned shift;

		if (!p->pid)
			continue;
		if (now >= p->next_ms) {
			if (sample(p->pid, &rss, &hwm))
				write_sample(s, p->pid, rss, hwm);
			p->samples++;
			shift = p->samples / DOUBLE_EVERY;
			p->next_ms = now + ((long long)FIRST_INTERVAL_MS
					    << (shift < 20 ? shift : 20));
		}
		if (p->next_ms < next)
			next = p->next_ms;
	}
	if (next == LLONG_MAX)
		return timeout;
	if (s->follow && r->next_scan_ms < next)
		next = r->next_scan_ms;
	wait = next > now ? next - now : 0;
	return timeout < 0 || wait < timeout ? (int)wait : timeout;
}
