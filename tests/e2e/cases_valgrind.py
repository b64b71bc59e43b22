"""Case 12: halloc's totals equal Valgrind's HEAP SUMMARY for the same run
(same argv, stdin and environment), for the test programs and three real
Debian programs.
"""
import os

from harness import (DATA, Skip, case, check, only_process, process_by, program,
                     report_json, summary_of, trace, valgrind)
from cases_programs import example_leaky, fork_pids, plugin_copies


# ---- 12. agreement with Valgrind ------------------------------------------------------

def agree(what, halloc, vg):
    bad = [f"{k} {halloc[k]} vs {vg[k]}" for k in vg if halloc[k] != vg[k]]
    check(not bad, f"{what}: halloc vs valgrind: " + ", ".join(bad))


def single_agree(c, argv, stdin=None, env=None):
    """Trace argv and run it under Valgrind, same argv, stdin and environment;
    the one process's totals must be equal."""
    env = env or c.env()
    t = trace(c, argv, stdin=stdin, env=env, timeout=300)
    proc = only_process(report_json(c, t.log))
    vp, found = valgrind(c, argv, stdin=stdin, env=env)
    check(len(found) == 1, f"valgrind printed {len(found)} heap summaries")
    vg = next(iter(found.values()))
    # Valgrind ends with the program's fatal signal itself; the shell's 128+n
    vrc = vp.returncode if vp.returncode >= 0 else 128 - vp.returncode
    check(t.rc == vrc, f"exit {t.rc} traced, {vrc} under valgrind")
    agree(os.path.basename(argv[0]), summary_of(proc), vg)


for _name in ("leaks", "threads", "cxx", "deep", "abort"):
    case(f"valgrind-{_name}")(lambda c, n=_name: single_agree(c, [program(n)]))


@case("valgrind-entry")
def valgrind_entry(c):
    single_agree(c, [program("entry"), "--no-pvalloc"])


def fork_agree(c, argv):
    env = c.env()
    t = trace(c, argv, ["-f"], env=env)
    doc = report_json(c, t.log)
    vp, found = valgrind(c, argv, env=env, children=True)
    roles_t, roles_v = fork_pids(t.out), fork_pids(vp.stdout.decode())
    for role, tp, vpid, cmd in (("parent", roles_t[0], roles_v[0], None),
                                ("child", roles_t[1], roles_v[1], argv[2:] or None)):
        check(vpid in found, f"valgrind printed no summary for the {role}")
        agree(role, summary_of(process_by(doc, tp, cmd)), found[vpid])


@case("valgrind-fork")
def valgrind_fork(c):
    fork_agree(c, [program("forker")])


@case("valgrind-fork-exec")
def valgrind_fork_exec(c):
    fork_agree(c, [program("forker"), "exec", program("leaks")])


@case("valgrind-dlopen")
def valgrind_dlopen(c):
    single_agree(c, [program("dlhost"), *plugin_copies(c)])


@case("valgrind-leaky")
def valgrind_leaky(c):
    single_agree(c, [example_leaky()])


@case("valgrind-sqlite3")
def valgrind_sqlite3(c):
    if not os.path.exists("/usr/bin/sqlite3"):
        raise Skip("sqlite3 is not installed")
    single_agree(c, ["/usr/bin/sqlite3", ":memory:"], stdin=os.path.join(DATA, "sqlite.sql"))


@case("valgrind-jq")
def valgrind_jq(c):
    if not os.path.exists("/usr/bin/jq"):
        raise Skip("jq is not installed")
    single_agree(c, ["/usr/bin/jq", "-c", "[.items[] | {name, total: (.n * 2)}]",
                     os.path.join(DATA, "input.json")])


PYTHON_SCRIPT = "d = {str(i): [i] * 3 for i in range(200)}\nprint(len(d), sum(map(len, d)))"


@case("valgrind-python3")
def valgrind_python3(c):
    if not os.path.exists("/usr/bin/python3"):
        raise Skip("/usr/bin/python3 is not installed")
    single_agree(c, ["/usr/bin/python3", "-c", PYTHON_SCRIPT], env=c.env(PYTHONHASHSEED="0"))
