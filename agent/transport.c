/*
 * agent/transport.c - the agent's end of agent/transport.h: finding, and
 * finding again, the tracer's pipe and shared memory.
 *
 * HALLOC_AGENT names two descriptors, but programs close descriptors they
 * did not open: daemons close everything, and Python's subprocess closes
 * everything but stdio between fork and exec. So:
 *
 *  - The agent writes through its own close-on-exec duplicate of the pipe,
 *    high in the descriptor table: when the program closes it, the next
 *    write fails cleanly, and the program's own files (which get the low
 *    numbers) are never written to.
 *  - A write that finds the duplicate gone reconnects: the tracer, an
 *    ancestor of every traced process, still holds the pipe, and opening
 *    /proc/PID/fd/N of a pipe opens that same pipe. The pipe is recognized
 *    by its inode.
 *  - An image started with the descriptors already closed (closed, then
 *    exec) finds them where the HALLOC_AGENT numbers are still valid: in
 *    the nearest ancestor that has them (its traced parent). The shared
 *    memory is recognized by its magic.
 *  - If the pipe cannot be found, the shared memory still can be written:
 *    full frames stay in their slots for the tracer to collect (buffer.c).
 *
 * None of this allocates: paths are built by hand, directories read with
 * getdents64 into a stack buffer.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"

/* How many ancestors to look through for the tracer's descriptors. */
#define MAX_ANCESTORS 64

static dev_t shm_dev;
static ino_t shm_ino;
static pthread_mutex_t reconnect_lock = PTHREAD_MUTEX_INITIALIZER;

static char *put_num(char *p, unsigned long v)
{
	char digits[24];
	int n = 0;

	do
		digits[n++] = (char)('0' + v % 10);
	while (v /= 10);
	while (n)
		*p++ = digits[--n];
	return p;
}

/* "/proc/PID/fd" or "/proc/PID/fd/FD" (fd < 0: the directory). */
static void proc_fd_path(char *buf, pid_t pid, int fd)
{
	char *p = buf;

	memcpy(p, "/proc/", 6);
	p = put_num(p + 6, (unsigned long)pid);
	memcpy(p, "/fd", 3);
	p += 3;
	if (fd >= 0) {
		*p++ = '/';
		p = put_num(p, (unsigned long)fd);
	}
	*p = 0;
}

/* The parent of pid, from /proc/PID/stat ("pid (comm) state ppid ..."). */
static pid_t parent_of(pid_t pid)
{
	char path[48], buf[512], *p;
	long ppid = 0;
	ssize_t n;
	int fd;

	memcpy(path, "/proc/", 6);
	p = put_num(path + 6, (unsigned long)pid);
	memcpy(p, "/stat", 6);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	p = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
	if (!p || p[1] != ' ' || !p[2] || p[3] != ' ')
		return 0;
	for (p += 4; *p >= '0' && *p <= '9'; p++)
		ppid = ppid * 10 + (*p - '0');
	return (pid_t)ppid;
}

static void set_cloexec(int fd)
{
	int flags = fcntl(fd, F_GETFD);

	if (flags >= 0)
		fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

/*
 * A close-on-exec duplicate of fd high in the table (see above). With
 * `replace`, fd itself is closed: it was ours only for the moment.
 */
static int high_fd(int fd, bool replace)
{
	struct rlimit rl;
	long want = 1000;
	int hi;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY &&
	    (long)rl.rlim_cur - 32 < want)
		want = (long)rl.rlim_cur - 32;
	if (want <= fd)
		return fd;
	hi = fcntl(fd, F_DUPFD_CLOEXEC, (int)want);
	if (hi < 0)
		return fd;
	if (replace)
		close(fd);
	return hi;
}

/* Validate and map the shared memory behind fd. */
static bool map_shm(int fd)
{
	struct halloc_shm *shm;
	struct stat st;
	size_t size;

	if (fstat(fd, &st) || !S_ISREG(st.st_mode) ||
	    (size_t)st.st_size < sizeof(struct halloc_shm))
		return false;
	shm = mmap(NULL, sizeof(*shm), PROT_READ, MAP_SHARED, fd, 0);
	if (shm == MAP_FAILED)
		return false;
	size = HALLOC_SHM_SIZE(shm->nslots);
	if (shm->magic != HALLOC_SHM_MAGIC ||
	    shm->version != HALLOC_SHM_VERSION || !shm->nslots ||
	    shm->nslots > (1u << 20) || (size_t)st.st_size < size) {
		munmap(shm, sizeof(*shm));
		return false;
	}
	munmap(shm, sizeof(*shm));
	shm = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (shm == MAP_FAILED)
		return false;
	ha_agent.shm = shm;
	shm_dev = st.st_dev;
	shm_ino = st.st_ino;
	return true;
}

static bool is_pipe(int fd, struct stat *st)
{
	return !fstat(fd, st) && S_ISFIFO(st->st_mode);
}

/* A write end of the pipe that pid's descriptor fd is an end of. */
static int open_pipe_of(pid_t pid, int fd, struct stat *st)
{
	char path[64];
	int p;

	proc_fd_path(path, pid, fd);
	/* Non-blocking: an open for writing would wait for a reader. */
	p = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (p < 0)
		return -1;
	if (!is_pipe(p, st)) {
		close(p);
		return -1;
	}
	fcntl(p, F_SETFL, fcntl(p, F_GETFL) & ~O_NONBLOCK);
	return p;
}

/*
 * A read end of the pipe fd is a write end of, held so that no write of
 * ours ever finds the pipe without a reader (transport.h: pipe_state).
 * It sits below the write end in the table: a program that closes every
 * descriptor from some number on closes the write end with it, and a
 * write then fails with EBADF instead of raising SIGPIPE.
 */
static void hold_reader(int fd, const struct stat *st)
{
	char path[64];
	struct stat rst;
	int r;

	proc_fd_path(path, getpid(), fd);
	r = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (r >= 0 && (fstat(r, &rst) || rst.st_dev != st->st_dev ||
		       rst.st_ino != st->st_ino)) {
		close(r);
		r = -1;
	}
	ha_agent.reader = r;
}

/*
 * Use the write end fd (closing it, when `replace`, once it has a high
 * duplicate). Without a read end of our own, writes block SIGPIPE
 * instead (buffer.c).
 */
static void use_pipe(int fd, bool replace, const struct stat *st)
{
	int flags;

	ha_agent.reader = -1;
	if (fd >= 0) {
		hold_reader(fd, st);
		if (ha_agent.reader >= 0)
			ha_agent.reader = high_fd(ha_agent.reader, true);
		fd = high_fd(fd, replace);
		if (ha_agent.reader > fd) {
			close(ha_agent.reader);
			ha_agent.reader = -1;
		}
		/* A full pipe must not block us for good (buffer.c). */
		flags = fcntl(fd, F_GETFL);
		if (ha_agent.reader >= 0 &&
		    (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)) {
			close(ha_agent.reader);
			ha_agent.reader = -1;
		}
	}
	ha_agent.pipe_dev = st->st_dev;
	ha_agent.pipe_ino = st->st_ino;
	__atomic_store_n(&ha_agent.fd, fd, __ATOMIC_RELEASE);
}

/* In an ancestor, the descriptors HALLOC_AGENT names. */
static bool open_from_ancestor(void)
{
	const struct ha_agent_config *c = &ha_agent.cfg;
	pid_t pid = getppid();
	char path[64];
	struct stat st;
	int n, fd;

	for (n = 0; pid > 1 && n < MAX_ANCESTORS; n++, pid = parent_of(pid)) {
		proc_fd_path(path, pid, c->shm_fd);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (!map_shm(fd)) {
			close(fd);
			continue;
		}
		close(fd); /* the mapping stays */
		fd = open_pipe_of(pid, c->fd, &st);
		if (fd >= 0)
			use_pipe(fd, true, &st);
		else /* only the shared memory: frames stay in slots */
			__atomic_store_n(&ha_agent.fd, -1, __ATOMIC_RELEASE);
		return true;
	}
	return false;
}

bool ha_agent_transport_open(void)
{
	const struct ha_agent_config *c = &ha_agent.cfg;
	struct stat st;

	if (!is_pipe(c->fd, &st) || !map_shm(c->shm_fd)) {
		/*
		 * Closed before this image started: never touch what now has
		 * those numbers, it is the program's.
		 */
		return open_from_ancestor();
	}
	if (!c->follow) {
		/* Nothing this program starts is traced. */
		set_cloexec(c->fd);
		set_cloexec(c->shm_fd);
	}
	use_pipe(c->fd, false, &st);
	return true;
}

/* A pipe end in pid with the inode of ours, opened for writing. */
static int find_pipe_in(pid_t pid)
{
	char path[64], buf[2048];
	struct stat st;
	int dir, fd = -1;
	ssize_t n;

	proc_fd_path(path, pid, -1);
	dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return -1;
	while (fd < 0 && (n = getdents64(dir, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < n && fd < 0;) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);
			int num = 0;
			const char *s;

			off += d->d_reclen;
			for (s = d->d_name; *s >= '0' && *s <= '9'; s++)
				num = num * 10 + (*s - '0');
			if (*s || s == d->d_name)
				continue;
			proc_fd_path(path, pid, num);
			if (stat(path, &st) || !S_ISFIFO(st.st_mode) ||
			    st.st_ino != ha_agent.pipe_ino ||
			    st.st_dev != ha_agent.pipe_dev)
				continue;
			fd = open_pipe_of(pid, num, &st);
			if (fd >= 0 && st.st_ino != ha_agent.pipe_ino) {
				close(fd);
				fd = -1;
			}
		}
	}
	close(dir);
	return fd;
}

/* Closes fd only if it is still the file we were given. */
static void close_ours(int fd, dev_t dev, ino_t ino)
{
	struct stat st;

	if (fd >= 0 && !fstat(fd, &st) && st.st_dev == dev && st.st_ino == ino)
		close(fd);
}

int ha_agent_transport_reconnect(int broken)
{
	pid_t pid = getppid();
	int fd = -1, n;

	pthread_mutex_lock(&reconnect_lock);
	/* Another thread may have done it already. */
	if (__atomic_load_n(&ha_agent.fd, __ATOMIC_ACQUIRE) != broken) {
		pthread_mutex_unlock(&reconnect_lock);
		return __atomic_load_n(&ha_agent.fd, __ATOMIC_ACQUIRE);
	}
	for (n = 0; fd < 0 && pid > 1 && n < MAX_ANCESTORS;
	     n++, pid = parent_of(pid))
		fd = find_pipe_in(pid);
	if (fd >= 0) {
		struct stat st = {.st_dev = ha_agent.pipe_dev,
				  .st_ino = ha_agent.pipe_ino};
		int old_reader = ha_agent.reader;

		use_pipe(fd, true, &st);
		/* The old read end, if the program left it open, is ours. */
		if (old_reader >= 0 && old_reader != ha_agent.reader)
			close_ours(old_reader, st.st_dev, st.st_ino);
		fd = __atomic_load_n(&ha_agent.fd, __ATOMIC_RELAXED);
	} else {
		__atomic_store_n(&ha_agent.fd, -1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&reconnect_lock);
	return fd;
}

void ha_agent_transport_close(void)
{
	const struct ha_agent_config *c = &ha_agent.cfg;

	close_ours(c->fd, ha_agent.pipe_dev, ha_agent.pipe_ino);
	if (ha_agent.fd != c->fd)
		close_ours(ha_agent.fd, ha_agent.pipe_dev, ha_agent.pipe_ino);
	close_ours(c->shm_fd, shm_dev, shm_ino);
	close_ours(ha_agent.reader, ha_agent.pipe_dev, ha_agent.pipe_ino);
	ha_agent.reader = -1;
}

void ha_agent_transport_fork_child(void)
{
	pthread_mutex_init(&reconnect_lock, NULL);
}
