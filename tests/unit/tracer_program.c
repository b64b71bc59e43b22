/*
 * tests/unit/tracer_program.c - finding the program like execvp(3), and
 * telling from its ELF headers whether the agent can be injected.
 */
#include <criterion/criterion.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tracer/program.h"
#include "tracer/tracer.h"

/* Each test runs in its own process: a fresh directory, then cd into it. */
static char dir[64];

static void make_dir(void)
{
	strcpy(dir, "/tmp/halloc-unit-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(chdir(dir), 0);
}

static void remove_dir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(tracer_program, .init = make_dir, .fini = remove_dir);

static void write_file(const char *path, const void *data, size_t size,
		       mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, data, size), (ssize_t)size);
	close(fd);
	cr_assert_eq(chmod(path, mode), 0);
}

static void write_text(const char *path, const char *text, mode_t mode)
{
	write_file(path, text, strlen(text), mode);
}

Test(tracer_program, slash_name_is_used_as_is)
{
	char *resolved;

	write_text("prog", "#!/bin/sh\n", 0755);
	cr_assert_eq(ht_resolve_program("./prog", "/nonexistent", &resolved),
		     0);
	cr_assert_str_eq(resolved, "./prog");
	free(resolved);
}

Test(tracer_program, slash_name_errors)
{
	char *resolved;

	mkdir("adir", 0755);
	write_text("noexec", "#!/bin/sh\n", 0644);
	cr_assert_eq(ht_resolve_program("./missing", NULL, &resolved), ENOENT);
	cr_assert_null(resolved);
	cr_assert_eq(ht_resolve_program("./adir", NULL, &resolved), EISDIR);
	cr_assert_eq(ht_resolve_program("./noexec", NULL, &resolved), EACCES);
	cr_assert_eq(ht_resolve_program("", NULL, &resolved), ENOENT);
}

Test(tracer_program, path_is_searched_in_order)
{
	char *resolved, path[256], expected[128];

	mkdir("a", 0755);
	mkdir("b", 0755);
	mkdir("c", 0755);
	write_text("a/tool", "#!/bin/sh\n", 0644); /* not executable */
	mkdir("b/tool", 0755);			   /* a directory */
	write_text("c/tool", "#!/bin/sh\n", 0755);
	snprintf(path, sizeof(path), "%s/a:%s/b:%s/c", dir, dir, dir);
	cr_assert_eq(ht_resolve_program("tool", path, &resolved), 0);
	snprintf(expected, sizeof(expected), "%s/c/tool", dir);
	cr_assert_str_eq(resolved, expected);
	free(resolved);
}

Test(tracer_program, path_not_found_or_not_executable)
{
	char *resolved, path[256];

	mkdir("a", 0755);
	mkdir("b", 0755);
	write_text("a/tool", "#!/bin/sh\n", 0644);
	mkdir("b/dironly", 0755);
	snprintf(path, sizeof(path), "%s/a:%s/b", dir, dir);
	/* Found only as a file that cannot be executed: 126. */
	cr_assert_eq(ht_resolve_program("tool", path, &resolved), EACCES);
	/* A directory is not a command: 127. */
	cr_assert_eq(ht_resolve_program("dironly", path, &resolved), ENOENT);
	cr_assert_eq(ht_resolve_program("nothing", path, &resolved), ENOENT);
}

Test(tracer_program, empty_path_entry_is_the_working_directory)
{
	char *resolved;

	write_text("here", "#!/bin/sh\n", 0755);
	cr_assert_eq(
	    ht_resolve_program("here", "/nonexistent::/bin", &resolved), 0);
	cr_assert_str_eq(resolved, "here");
	free(resolved);
	cr_assert_eq(ht_resolve_program("here", "/nonexistent:/bin", &resolved),
		     ENOENT);
}

Test(tracer_program, unset_path_uses_the_default)
{
	char *resolved;

	cr_assert_eq(ht_resolve_program("sh", NULL, &resolved), 0);
	cr_assert(strcmp(resolved, "/bin/sh") == 0 ||
		  strcmp(resolved, "/usr/bin/sh") == 0);
	free(resolved);
}

/* A minimal ELF file: the header, then program headers at `phoff`. */
static void write_elf(const char *path, unsigned char class, uint16_t machine,
		      uint16_t type, bool interp, uint64_t phoff)
{
	static unsigned char image[8192];
	Elf64_Ehdr eh = {0};
	Elf64_Phdr ph[3] = {{0}};
	size_t nph = 0;

	memset(image, 0, sizeof(image));
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = class;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = type;
	eh.e_machine = machine;
	eh.e_version = EV_CURRENT;
	eh.e_phoff = phoff;
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(Elf64_Phdr);
	ph[nph++].p_type = PT_PHDR;
	if (interp)
		ph[nph++].p_type = PT_INTERP;
	ph[nph++].p_type = PT_LOAD;
	eh.e_phnum = (uint16_t)nph;
	memcpy(image, &eh, sizeof(eh));
	memcpy(image + phoff, ph, nph * sizeof(ph[0]));
	write_file(path, image, phoff + nph * sizeof(ph[0]), 0755);
}

static enum ht_program_kind kind_of(const char *path)
{
	int fd = open(path, O_RDONLY);
	enum ht_program_kind kind;

	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	kind = ht_program_kind(fd);
	close(fd);
	return kind;
}

Test(tracer_program, elf_kinds)
{
	write_elf("dynamic", ELFCLASS64, EM_X86_64, ET_EXEC, true, 64);
	write_elf("static", ELFCLASS64, EM_X86_64, ET_EXEC, false, 64);
	write_elf("static-pie", ELFCLASS64, EM_X86_64, ET_DYN, false, 64);
	write_elf("pie", ELFCLASS64, EM_X86_64, ET_DYN, true, 64);
	write_elf("far-headers", ELFCLASS64, EM_X86_64, ET_DYN, true, 5000);
	write_elf("far-static", ELFCLASS64, EM_X86_64, ET_DYN, false, 5000);
	write_elf("object", ELFCLASS64, EM_X86_64, ET_REL, false, 64);
	write_elf("elf32", ELFCLASS32, EM_386, ET_EXEC, true, 64);

	cr_assert_eq(kind_of("dynamic"), HT_PROGRAM_DYNAMIC);
	cr_assert_eq(kind_of("static"), HT_PROGRAM_STATIC);
	cr_assert_eq(kind_of("static-pie"), HT_PROGRAM_STATIC);
	cr_assert_eq(kind_of("pie"), HT_PROGRAM_DYNAMIC);
	cr_assert_eq(kind_of("far-headers"), HT_PROGRAM_DYNAMIC);
	cr_assert_eq(kind_of("far-static"), HT_PROGRAM_STATIC);
	cr_assert_eq(kind_of("object"), HT_PROGRAM_OTHER);
	cr_assert_eq(kind_of("elf32"), HT_PROGRAM_FOREIGN);
}

#if defined(__x86_64__)
Test(tracer_program, elf_for_another_machine)
{
	write_elf("arm", ELFCLASS64, EM_AARCH64, ET_DYN, true, 64);
	cr_assert_eq(kind_of("arm"), HT_PROGRAM_FOREIGN);
}
#endif

Test(tracer_program, real_programs_are_dynamic)
{
	cr_assert_eq(kind_of("/bin/sh"), HT_PROGRAM_DYNAMIC);
	cr_assert_eq(kind_of("/proc/self/exe"), HT_PROGRAM_DYNAMIC);
}

Test(tracer_program, not_elf)
{
	write_text("script", "#!/bin/sh\necho hi\n", 0755);
	write_text("text", "echo hi\n", 0755);
	write_text("empty", "", 0755);
	write_file("truncated", ELFMAG "\2\1", 6, 0755);
	cr_assert_eq(kind_of("script"), HT_PROGRAM_SCRIPT);
	cr_assert_eq(kind_of("text"), HT_PROGRAM_OTHER);
	cr_assert_eq(kind_of("empty"), HT_PROGRAM_OTHER);
	cr_assert_eq(kind_of("truncated"), HT_PROGRAM_UNKNOWN);
}

static int interpreter_of(const char *text, char *out, size_t size)
{
	int fd, ret;

	write_text("s", text, 0755);
	fd = open("s", O_RDONLY);
	ret = ht_script_interpreter(fd, out, size);
	close(fd);
	return ret;
}

Test(tracer_program, script_interpreter)
{
	char out[256];

	cr_assert_eq(interpreter_of("#!/bin/sh\n", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "/bin/sh");
	cr_assert_eq(interpreter_of("#! \t/usr/bin/env  python3 -u\nx\n", out,
				    sizeof(out)),
		     0);
	cr_assert_str_eq(out, "/usr/bin/env");
	cr_assert_eq(interpreter_of("#!/bin/sh", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "/bin/sh");
	cr_assert_eq(interpreter_of("#!\n/bin/sh\n", out, sizeof(out)), -1);
	cr_assert_eq(interpreter_of("#!   \n", out, sizeof(out)), -1);
	cr_assert_eq(interpreter_of("echo\n", out, sizeof(out)), -1);
	cr_assert_eq(interpreter_of("#!/bin/sh\n", out, 7), -1);
}

Test(tracer_program, check_refuses_static_programs)
{
	struct ht_diag diag = {{0}};

	write_elf("static", ELFCLASS64, EM_X86_64, ET_EXEC, false, 64);
	cr_assert_eq(ht_check_program("st", "static", &diag),
		     HT_ERR_UNTRACEABLE);
	cr_assert_str_eq(diag.message,
			 "cannot trace 'st': the agent cannot be injected "
			 "into a statically linked program (try --bpf)");
}

Test(tracer_program, check_follows_script_interpreters)
{
	struct ht_diag diag = {{0}};
	char text[128];

	write_elf("static", ELFCLASS64, EM_X86_64, ET_EXEC, false, 64);
	snprintf(text, sizeof(text), "#!%s/static -x\n", dir);
	write_text("via-static", text, 0755);
	snprintf(text, sizeof(text), "#!%s/via-static\n", dir);
	write_text("via-script", text, 0755);
	write_text("via-sh", "#!/bin/sh\n", 0755);

	cr_assert_eq(ht_check_program("via-sh", "via-sh", &diag), HT_OK);
	cr_assert_eq(ht_check_program("v", "via-static", &diag),
		     HT_ERR_UNTRACEABLE);
	cr_assert(strstr(diag.message, "its interpreter") != NULL, "%s",
		  diag.message);
	cr_assert_eq(ht_check_program("v", "via-script", &diag),
		     HT_ERR_UNTRACEABLE);
}

Test(tracer_program, check_accepts_what_exec_decides)
{
	struct ht_diag diag = {{0}};

	write_text("text", "echo hi\n", 0755);
	write_elf("dynamic", ELFCLASS64, EM_X86_64, ET_DYN, true, 64);
	cr_assert_eq(ht_check_program("t", "text", &diag), HT_OK);
	cr_assert_eq(ht_check_program("d", "dynamic", &diag), HT_OK);
	cr_assert_eq(ht_check_program("s", "/bin/sh", &diag), HT_OK);
}

Test(tracer_program, check_refuses_foreign_programs)
{
	struct ht_diag diag = {{0}};

	write_elf("elf32", ELFCLASS32, EM_386, ET_EXEC, true, 64);
	cr_assert_eq(ht_check_program("e", "elf32", &diag), HT_ERR_UNTRACEABLE);
}

Test(tracer_program, check_refuses_set_user_id_programs)
{
	struct ht_diag diag = {{0}};

	/* Secure mode needs a set-user-ID file owned by someone else. */
	if (geteuid() != 0)
		cr_skip_test("needs root to give a file away");
	write_elf("suid", ELFCLASS64, EM_X86_64, ET_DYN, true, 64);
	cr_assert_eq(chown("suid", 65534, 65534), 0);
	cr_assert_eq(chmod("suid", 04755), 0);
	cr_assert_eq(ht_check_program("u", "suid", &diag), HT_ERR_UNTRACEABLE);
	cr_assert(strstr(diag.message, "set-user-ID") != NULL);
}

Test(tracer_program, exit_statuses)
{
	cr_assert_eq(ht_result_exit_status(HT_OK), 0);
	cr_assert_eq(ht_result_exit_status(HT_ERR_NOT_FOUND), 127);
	cr_assert_eq(ht_result_exit_status(HT_ERR_CANNOT_RUN), 126);
	cr_assert_eq(ht_result_exit_status(HT_ERR_UNTRACEABLE), 125);
	cr_assert_eq(ht_result_exit_status(HT_ERR_AGENT), 125);
	cr_assert_eq(ht_result_exit_status(HT_ERR_LOG), 125);
	cr_assert_eq(ht_result_exit_status(HT_ERR_SYSTEM), 125);
}
