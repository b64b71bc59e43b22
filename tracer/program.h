/*
 * tracer/program.h - which file will run, and whether the agent can be
 * injected into it. Internal to tracer/; everything is checked before the
 * program starts, so a program that cannot be traced never runs untraced.
 */
#ifndef HALLOC_TRACER_PROGRAM_H
#define HALLOC_TRACER_PROGRAM_H

#include <stddef.h>

#include "tracer/tracer.h"

/*
 * Finds the file to execute for `name` as execvp(3) does: a name with a
 * slash is used as it is; otherwise each directory of `path_env` (colon-
 * separated, an empty entry is the working directory; NULL means the C
 * library's default "/bin:/usr/bin") is tried in order, skipping
 * directories and files that are not executable.
 * Returns 0 and a malloc'd path, or an errno value: ENOENT (nothing found;
 * halloc-trace exits 127), EACCES or EISDIR (found, cannot be executed;
 * 126), ENOMEM.
 */
int ht_resolve_program(const char *name, const char *path_env, char **resolved);

enum ht_program_kind {
	HT_PROGRAM_DYNAMIC, /* ELF with PT_INTERP: the loader honours LD_PRELOAD
			     */
	HT_PROGRAM_STATIC,  /* ELF without PT_INTERP: no loader, no agent */
	HT_PROGRAM_FOREIGN, /* ELF for another class or machine than ours */
	HT_PROGRAM_SCRIPT,  /* starts with "#!" */
	HT_PROGRAM_OTHER,   /* not ELF: execvp(3) would hand it to /bin/sh */
	HT_PROGRAM_UNKNOWN, /* unreadable or truncated: exec(2) will decide */
};

/* Reads the ELF header and program headers (or the "#!") of an open file. */
enum ht_program_kind ht_program_kind(int fd);

/*
 * The interpreter of a "#!" script, as the kernel reads it: the first word
 * after "#!" on the first line. Returns 0, or -1 if there is none or it
 * does not fit in `size`.
 */
int ht_script_interpreter(int fd, char *out, size_t size);

/*
 * Fails with HT_ERR_UNTRACEABLE if the loader will not inject the agent
 * into `path` (what the user named `name`): statically linked, built for
 * another machine, set-user-ID; for a script, its interpreter is checked.
 */
enum ht_result ht_check_program(const char *name, const char *path,
				struct ht_diag *diag);

#endif /* HALLOC_TRACER_PROGRAM_H */
