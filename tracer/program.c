/*
 * tracer/program.c - finding the program on PATH and reading enough of it
 * to know whether LD_PRELOAD will reach it. See program.h.
 */
#include "tracer/program.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The ELF machine the agent is built for; 0 skips the check. */
#if defined(__x86_64__)
#define HOST_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define HOST_MACHINE EM_AARCH64
#else
#define HOST_MACHINE 0
#endif

/* The kernel follows "#!" this many levels deep. */
#define MAX_INTERPRETER_DEPTH 4
/* The kernel reads this much of a script's first line (BINPRM_BUF_SIZE). */
#define SCRIPT_LINE_MAX 256

/* 0 if `path` can be executed, else why not, as an errno value. */
static int executable(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return errno;
	if (S_ISDIR(st.st_mode))
		return EISDIR;
	if (!S_ISREG(st.st_mode))
		return EACCES;
	if (faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) < 0)
		return errno;
	return 0;
}

int ht_resolve_program(const char *name, const char *path_env, char **resolved)
{
	bool denied = false;
	const char *dir, *end;

	*resolved = NULL;
	if (!*name)
		return ENOENT;
	if (strchr(name, '/')) {
		int err = executable(name);

		if (err)
			return err;
		*resolved = strdup(name);
		return *resolved ? 0 : ENOMEM;
	}

	if (!path_env)
		path_env = "/bin:/usr/bin";
	for (dir = path_env;; dir = end + 1) {
		char *candidate;
		int err, n;

		end = strchrnul(dir, ':');
		if (end == dir)
			n = asprintf(&candidate, "%s", name);
		else
			n = asprintf(&candidate, "%.*s/%s", (int)(end - dir),
				     dir, name);
		if (n < 0)
			return ENOMEM;
		err = executable(candidate);
		if (!err) {
			*resolved = candidate;
			return 0;
		}
		free(candidate);
		/* A directory of that name is not a command (as in sh). */
		if (err == EACCES)
			denied = true;
		if (!*end)
			break;
	}
	return denied ? EACCES : ENOENT;
}

static bool read_at(int fd, void *buf, size_t size, off_t offset)
{
	return pread(fd, buf, size, offset) == (ssize_t)size;
}

enum ht_program_kind ht_program_kind(int fd)
{
	unsigned char ident[EI_NIDENT];
	Elf64_Ehdr eh;
	Elf64_Phdr *ph;
	enum ht_program_kind kind = HT_PROGRAM_STATIC;
	ssize_t n;

	n = pread(fd, ident, sizeof(ident), 0);
	if (n >= 2 && ident[0] == '#' && ident[1] == '!')
		return HT_PROGRAM_SCRIPT;
	if (n < SELFMAG)
		return n < 0 ? HT_PROGRAM_UNKNOWN : HT_PROGRAM_OTHER;
	if (memcmp(ident, ELFMAG, SELFMAG) != 0)
		return HT_PROGRAM_OTHER;
	if (n < EI_NIDENT)
		return HT_PROGRAM_UNKNOWN;

	/* The agent is a 64-bit little-endian library of our machine. */
	if (ident[EI_CLASS] != ELFCLASS64 || ident[EI_DATA] != ELFDATA2LSB)
		return HT_PROGRAM_FOREIGN;
	if (!read_at(fd, &eh, sizeof(eh), 0))
		return HT_PROGRAM_UNKNOWN;
	if (HOST_MACHINE && eh.e_machine != HOST_MACHINE)
		return HT_PROGRAM_FOREIGN;
	if (eh.e_type != ET_EXEC && eh.e_type != ET_DYN)
		return HT_PROGRAM_OTHER;
	/* PN_XNUM (more headers than fit in e_phnum) never occurs in
	 * programs; leave such a file to exec. */
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
	    eh.e_phnum == PN_XNUM)
		return HT_PROGRAM_UNKNOWN;

	ph = calloc(eh.e_phnum, sizeof(*ph));
	if (!ph)
		return HT_PROGRAM_UNKNOWN;
	if (!read_at(fd, ph, eh.e_phnum * sizeof(*ph), (off_t)eh.e_phoff)) {
		kind = HT_PROGRAM_UNKNOWN;
	} else {
		for (unsigned i = 0; i < eh.e_phnum; i++)
			if (ph[i].p_type == PT_INTERP)
				kind = HT_PROGRAM_DYNAMIC;
	}
	free(ph);
	return kind;
}

int ht_script_interpreter(int fd, char *out, size_t size)
{
	char line[SCRIPT_LINE_MAX + 1];
	ssize_t n = pread(fd, line, SCRIPT_LINE_MAX, 0);
	size_t start, end;

	if (n < 2 || line[0] != '#' || line[1] != '!')
		return -1;
	line[n] = '\0';
	start = 2 + strspn(line + 2, " \t");
	end = start + strcspn(line + start, " \t\n");
	if (end == start || end - start >= size)
		return -1;
	memcpy(out, line + start, end - start);
	out[end - start] = '\0';
	return 0;
}

/* The loader runs set-ID programs in secure mode and ignores LD_PRELOAD
 * for a library outside the system directories. */
static bool secure_exec(const struct stat *st)
{
	return (st->st_mode & S_ISUID && st->st_uid != geteuid()) ||
	       (st->st_mode & S_ISGID && st->st_gid != getegid());
}

enum ht_result ht_check_program(const char *name, const char *path,
				struct ht_diag *diag)
{
	char interpreter[SCRIPT_LINE_MAX];
	const char *current = path;
	const char *what = "program";

	for (int depth = 0; depth <= MAX_INTERPRETER_DEPTH; depth++) {
		enum ht_program_kind kind;
		struct stat st;
		int fd = open(current, O_RDONLY | O_CLOEXEC);

		/* Unreadable (execute-only) files still run: exec decides. */
		if (fd < 0)
			return HT_OK;
		if (fstat(fd, &st) == 0 && secure_exec(&st)) {
			close(fd);
			snprintf(
			    diag->message, sizeof(diag->message),
			    "cannot trace '%s': the loader ignores "
			    "LD_PRELOAD in a set-user-ID or set-group-ID %s",
			    name, what);
			return HT_ERR_UNTRACEABLE;
		}
		kind = ht_program_kind(fd);
		if (kind == HT_PROGRAM_SCRIPT &&
		    ht_script_interpreter(fd, interpreter, sizeof(interpreter)))
			kind = HT_PROGRAM_UNKNOWN;
		close(fd);

		switch (kind) {
		case HT_PROGRAM_STATIC:
			if (depth == 0)
				snprintf(diag->message, sizeof(diag->message),
					 "cannot trace '%s': the agent cannot "
					 "be injected into a statically linked "
					 "program (try --bpf)",
					 name);
			else
				snprintf(diag->message, sizeof(diag->message),
					 "cannot trace '%s': the agent cannot "
					 "be injected into its interpreter "
					 "'%s', a statically linked program "
					 "(try --bpf)",
					 name, current);
			return HT_ERR_UNTRACEABLE;
		case HT_PROGRAM_FOREIGN:
			snprintf(diag->message, sizeof(diag->message),
				 "cannot trace '%s': the %s is built for "
				 "another machine or word size than the agent",
				 name, what);
			return HT_ERR_UNTRACEABLE;
		case HT_PROGRAM_SCRIPT:
			current = interpreter;
			what = "interpreter";
			break;
		default:
			return HT_OK;
		}
	}
	return HT_OK;
}
