/*
 * agent/bpf/proc.c - reading the target's /proc entries. See proc.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "agent/bpf/proc.h"

uint64_t hb_boot_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t hb_real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Reads a whole small /proc file; NUL-terminated; NULL and errno. */
static char *slurp(const char *path, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || !buf) {
		int e = fd < 0 ? errno : ENOMEM;

		if (fd >= 0)
			close(fd);
		free(buf);
		errno = e;
		return NULL;
	}
	for (;;) {
		ssize_t r;

		if (n + 1 >= cap) {
			char *b = realloc(buf, cap * 2);

			if (!b) {
				free(buf);
				close(fd);
				errno = ENOMEM;
				return NULL;
			}
			buf = b;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;

			free(buf);
			close(fd);
			errno = e;
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = 0;
	if (len)
		*len = n;
	return buf;
}

/* /proc/PID/stat: "pid (comm) S ppid ...", comm may hold spaces and ')'. */
static int read_stat(struct hb_proc *p)
{
	char path[64], *s, *close_paren;
	unsigned long long start_ticks = 0;
	long tck = sysconf(_SC_CLK_TCK);
	int ppid = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)p->pid);
	s = slurp(path, NULL);
	if (!s)
		return errno == ENOENT ? ESRCH : errno;
	close_paren = strrchr(s, ')');
	if (!close_paren || !strchr(s, '(')) {
		free(s);
		return EINVAL;
	}
	*close_paren = 0;
	p->comm = strdup(strchr(s, '(') + 1);
	/* After ") ": state, ppid, then 17 fields up to starttime (22nd). */
	if (sscanf(close_paren + 2,
		   "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d "
		   "%*d %*d %*d %*d %llu",
		   &p->state, &ppid, &start_ticks) != 3) {
		free(s);
		return EINVAL;
	}
	free(s);
	p->ppid = ppid;
	if (tck <= 0)
		tck = 100;
	p->start_boot_ns = start_ticks * (1000000000ull / (uint64_t)tck);
	return p->comm ? 0 : ENOMEM;
}

static int read_cmdline(struct hb_proc *p)
{
	char path[64], *s;
	size_t len, n = 0;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)p->pid);
	s = slurp(path, &len);
	if (!s)
		return errno == ENOENT ? ESRCH : errno;
	for (size_t i = 0; i < len; i++)
		n += !s[i];
	if (len && s[len - 1])
		n++; /* a last argument without its NUL (rewritten argv) */
	p->argv = calloc(n + 1, sizeof(*p->argv));
	if (!p->argv) {
		free(s);
		return ENOMEM;
	}
	for (size_t i = 0; i < len && p->argc < n;) {
		size_t l = strlen(s + i);

		if (!(p->argv[p->argc++] = strdup(s + i))) {
			free(s);
			return ENOMEM;
		}
		i += l + 1;
	}
	free(s);
	return 0;
}

int hb_proc_read(pid_t pid, struct hb_proc *p)
{
	char path[64], exe[PATH_MAX];
	ssize_t n;
	int err;

	memset(p, 0, sizeof(*p));
	p->pid = pid;
	if ((err = read_stat(p)) || (err = read_cmdline(p)))
		return err;
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	n = readlink(path, exe, sizeof(exe) - 1);
	if (n < 0)
		n = 0;
	exe[n] = 0;
	/* The link of an executable that was replaced says so; the path is
	 * what the log wants. */
	if (n > 10 && !strcmp(exe + n - 10, " (deleted)"))
		exe[n - 10] = 0;
	p->exe = strdup(exe);
	return p->exe ? 0 : ENOMEM;
}

void hb_proc_free(struct hb_proc *p)
{
	for (unsigned i = 0; p->argv && i < p->argc; i++)
		free(p->argv[i]);
	free(p->argv);
	free(p->exe);
	free(p->comm);
	memset(p, 0, sizeof(*p));
}

int hb_proc_may_trace(pid_t pid)
{
	char path[64], *maps, *line;
	unsigned long long start = 0;
	int err = EPERM;

	/* Any readable mapping will do: the check is the ptrace rule, made
	 * by the kernel with our real credentials. */
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	maps = slurp(path, NULL);
	if (!maps)
		return errno == ENOENT ? ESRCH : EPERM;
	for (line = maps; line && *line; line = strchr(line, '\n')) {
		char perms[8];

		if (*line == '\n')
			line++;
		if (sscanf(line, "%llx-%*x %7s", &start, perms) == 2 &&
		    perms[0] == 'r')
			break;
		start = 0;
	}
	free(maps);
	if (start) {
		uint64_t word;
		struct iovec local = {&word, sizeof(word)};
		struct iovec remote = {(void *)(uintptr_t)start, sizeof(word)};

		if (process_vm_readv(pid, &local, 1, &remote, 1, 0) ==
		    (ssize_t)sizeof(word))
			return 0;
		err = errno == ESRCH ? ESRCH : EPERM;
	}
	return err;
}
