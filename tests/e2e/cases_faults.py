"""Fault injection (issue 4): --fail-after, --fail-rate/--seed, --fail-at on
programs/oom_handled.c (checks every allocation, exits 0) and
programs/oom_crash.c (writes through NULL, dies of SIGSEGV); their headers
hold the truth. The report lists the refused allocations by site and says
how the program took them; bad values are usage errors (exit 2).
"""
import os
import re

from harness import (TRACE, case, check, expect_rc, line_of, only_process, program,
                     report_json, same_file, source, trace)

ROUNDS = 10
CALLS = 10  # allocation calls per round of oom_handled
HANDLED_MARKERS = ("malloc", "calloc", "realloc-null", "realloc-grow", "reallocarray",
                   "posix_memalign", "aligned_alloc", "memalign", "valloc", "pvalloc")
SIGSEGV = 11


def handled(c, opts):
    """oom_handled ROUNDS under opts: (traced, its process, the '.'/'x' pattern)."""
    t = trace(c, [program("oom_handled"), str(ROUNDS)], opts)
    expect_rc(t, 0)
    pattern = t.out.strip()
    check(len(pattern) == ROUNDS * CALLS and set(pattern) <= set(".x"),
          f"oom_handled printed {pattern!r}")
    proc = only_process(report_json(c, t.log))
    check(proc["status"] == {"exit": 0}, f"status {proc['status']}, want exit 0")
    check(proc["killed_after_refusal"] is False, "killed_after_refusal is not false")
    return t, proc, pattern


def refused_total(proc, reason):
    for r in proc["refused"]:
        check(r["reason"] == reason, f"refused for {r['reason']!r}, want {reason!r}")
    return sum(r["allocations"] for r in proc["refused"])


def expect_refusals(proc, pattern, reason):
    """As many refusals as the program saw NULLs, none of them counted."""
    failed = pattern.count("x")
    got = refused_total(proc, reason)
    check(got == failed, f"{got} refusals in the report, the program saw {failed} NULLs")
    allocs = proc["summary"]["allocations"]
    check(allocs == ROUNDS * CALLS - failed,
          f"{allocs} allocations counted, want {ROUNDS * CALLS - failed}")
    check(proc["summary"]["leaked_blocks"] == 0, "a refused allocation leaked")
    return failed


def by_line(proc, src):
    """{line: allocations refused there}."""
    out = {}
    for r in proc["refused"]:
        check(same_file(r["site"]["file"], src), f"refused at {r['site']}")
        out[r["site"]["line"]] = out.get(r["site"]["line"], 0) + r["allocations"]
    return out


def crashed(c, opts, marker):
    """oom_crash under opts dies of SIGSEGV after a refusal at marker."""
    src = source("oom_crash")
    line = line_of(src, f"CRASH:{marker}")
    t = trace(c, [program("oom_crash")], opts)
    expect_rc(t, 128 + SIGSEGV)
    proc = only_process(report_json(c, t.log))
    check(proc["status"] == {"signal": SIGSEGV}, f"status {proc['status']}")
    check(proc["killed_after_refusal"] is True, "killed_after_refusal is not true")
    last = proc["last_refused"]
    check(last and last["site"]["line"] == line and same_file(last["site"]["file"], src),
          f"last refused {last and last['site']}, want oom_crash.c:{line}")
    check(last["function"] == "malloc" and last["size"] == 32, f"last refused {last}")
    check(last["stack"] and last["stack"][0]["function"] == "take",
          f"last refused stack {last['stack'][:1]}")
    # the text report says it died after the refusal, and where
    check("REFUSED ALLOCATIONS" in t.err, "no REFUSED ALLOCATIONS section in the text report")
    # (", core dumped" may come between, where cores are dumped)
    check(re.search(r"then it was killed by SIGSEGV \(signal 11\)[^;\n]*; the last refused "
                    rf"call was\n  malloc\(32\) at take \(oom_crash\.c:{line}\):\n  #0 take ",
                    t.err),
          "the text report does not name the refused call")
    return proc


@case("fail-after-handled")
def fail_after_handled(c):
    n = 37
    _, proc, pattern = handled(c, ["--fail-after", str(n)])
    check(pattern == "." * (n - 1) + "x" * (ROUNDS * CALLS - n + 1),
          f"--fail-after {n}: pattern {pattern}")
    expect_refusals(proc, pattern, "fail-after")
    lines = by_line(proc, source("oom_handled"))
    want = {line_of(source("oom_handled"), f"FAIL:{m}"): 0 for m in HANDLED_MARKERS}
    for i in range(n - 1, ROUNDS * CALLS):
        want[line_of(source("oom_handled"), f"FAIL:{HANDLED_MARKERS[i % CALLS]}")] += 1
    check(lines == {k: v for k, v in want.items() if v}, f"refused by line {lines}, want {want}")


@case("fail-after-crash")
def fail_after_crash(c):
    proc = crashed(c, ["--fail-after", "5"], "fifth")
    check(proc["summary"]["allocations"] == 4, f"{proc['summary']['allocations']} allocations")
    check(refused_total(proc, "fail-after") == 1, "want one refusal")


@case("fail-rate")
def fail_rate(c):
    runs = {}
    for seed in ("7", "7", "8"):
        _, proc, pattern = handled(c, ["--fail-rate", "0.3", "--seed", seed])
        expect_refusals(proc, pattern, "fail-rate")
        runs.setdefault(seed, []).append(pattern)
    a, b = runs["7"]
    check(a == b, f"seed 7 twice: {a} then {b}")
    check(runs["8"][0] != a, f"seeds 7 and 8 failed the same calls: {a}")
    # 0.3 of 100 calls: far from none and from all, for either seed
    for p in (a, runs["8"][0]):
        check(10 <= p.count("x") <= 55, f"--fail-rate 0.3 failed {p.count('x')} of 100")
    _, proc, pattern = handled(c, ["--fail-rate", "0"])
    check(pattern == "." * 100 and proc["refused"] == [] and proc["last_refused"] is None,
          f"--fail-rate 0: {pattern}")
    _, proc, pattern = handled(c, ["--fail-rate", "1"])
    check(pattern == "x" * 100, f"--fail-rate 1: {pattern}")
    expect_refusals(proc, pattern, "fail-rate")


@case("fail-rate-crash")
def fail_rate_crash(c):
    proc = crashed(c, ["--fail-rate", "1", "--seed", "3"], "first")
    check(proc["summary"]["allocations"] == 0, f"{proc['summary']['allocations']} allocations")


@case("fail-at-handled")
def fail_at_handled(c):
    src = source("oom_handled")
    for marker, slot in (("calloc", 1), ("posix_memalign", 5)):
        line = line_of(src, f"FAIL:{marker}")
        # by file name, and by a longer path ending in it
        name = os.path.basename(src) if slot == 1 else "e2e/programs/" + os.path.basename(src)
        _, proc, pattern = handled(c, ["--fail-at", f"{name}:{line}"])
        want = "".join("x" if i % CALLS == slot else "." for i in range(ROUNDS * CALLS))
        check(pattern == want, f"--fail-at {marker}: pattern {pattern}")
        expect_refusals(proc, pattern, "fail-at")
        check(by_line(proc, src) == {line: ROUNDS}, f"refused by line {by_line(proc, src)}")


@case("fail-at-crash")
def fail_at_crash(c):
    line = line_of(source("oom_crash"), "CRASH:fifth")
    proc = crashed(c, ["--fail-at", f"oom_crash.c:{line}"], "fifth")
    check(proc["summary"]["allocations"] == 4, f"{proc['summary']['allocations']} allocations")
    check(refused_total(proc, "fail-at") == 1, "want one refusal")


@case("fail-bad-values")
def fail_bad_values(c):
    prog = program("oom_handled")
    no_code = 1  # the header comment: no code on line 1
    bad = [(["--fail-after", "many"], "'many'"), (["--fail-after", "0"], "'0'"),
           (["--fail-after", "-3"], "'-3'"), (["--fail-rate", "1.5"], "'1.5'"),
           (["--fail-rate", "-0.1"], "'-0.1'"), (["--fail-rate", "half"], "'half'"),
           (["--fail-rate", "0.5", "--seed", "x"], "'x'"), (["--seed", "4"], "--seed"),
           (["--fail-at", "oom_handled.c"], "'oom_handled.c'"),
           (["--fail-at", "oom_handled.c:"], "'oom_handled.c:'"),
           (["--fail-at", "oom_handled.c:x"], "'oom_handled.c:x'"),
           (["--fail-at", f"oom_handled.c:{no_code}"], f"'oom_handled.c:{no_code}'"),
           (["--fail-at", "nosuch.c:3"], "'nosuch.c:3'"),
           (["--bpf", "--fail-after", "3"], "--fail-after")]
    for opts, says in bad:
        what = " ".join(opts)
        log = c.fresh("bad", ".hlog")
        p = c.run([TRACE, "-o", log, *opts, "--", prog])
        err = p.stderr.decode(errors="replace").splitlines()
        check(p.returncode == 2, f"{what}: exit {p.returncode}, want 2")
        check(err and err[0].startswith("halloc-trace: ") and says in err[0],
              f"{what}: first line {err[:1]}, want it to name {says}")
        # one line saying what is wrong; usage errors add the --help hint
        check(len(err) == 1 or (len(err) == 2 and "--help" in err[1]),
              f"{what}: {len(err)} lines on stderr")
        check(not p.stdout and not os.path.exists(log), f"{what}: the program ran anyway")


@case("fail-threads")
def fail_threads(c):
    """Four threads: --fail-after counts every thread's calls; with one seed
    each thread fails the same calls on every run (oom_threads.c starts
    them in a fixed order, the one the agent numbers them in)."""
    prog, src = program("oom_threads"), source("oom_threads")
    line = line_of(src, "FAIL:thread")

    def run(opts):
        """(the threads' patterns joined, "-" for one not started; the process)"""
        t = trace(c, [prog], opts)
        expect_rc(t, 0)
        lines = t.out.split()
        check(len(lines) == 4 and all(p == "-" or (len(p) == 200 and set(p) <= set(".x"))
                                      for p in lines),
              f"oom_threads printed {t.out[:300]!r}")
        proc = only_process(report_json(c, t.log))
        return "".join(lines), proc

    pattern, proc = run([])
    total = proc["summary"]["allocations"]  # 800 + the threads' DTVs
    check(total >= 800 and "x" not in pattern and proc["refused"] == [],
          f"no faults: {total} allocations, refused {proc['refused']}")
    pattern, proc = run(["--fail-after", "700"])
    check(proc["summary"]["allocations"] == 699, f"{proc['summary']['allocations']} allocations")
    check(refused_total(proc, "fail-after") == total - 699 == pattern.count("x"),
          f"refused {refused_total(proc, 'fail-after')}, want {total - 699} "
          f"({pattern.count('x')} NULLs seen)")
    check(by_line(proc, src) == {line: total - 699}, f"refused by line {by_line(proc, src)}")
    seen = {}
    for seed in ("5", "5", "6"):
        pattern, proc = run(["--fail-rate", "0.2", "--seed", seed])
        got = refused_total(proc, "fail-rate")
        # a refused pthread_create (its DTV) leaves a thread's 200 unmade
        calls = total - 200 * pattern.count("-")
        check(by_line(proc, src).get(line, 0) == pattern.count("x") and
              proc["summary"]["allocations"] == calls - got,
              f"seed {seed}: {got} refused, {pattern.count('x')} NULLs seen, "
              f"{proc['summary']['allocations']} allocations of {calls}")
        check(60 <= got <= 260, f"--fail-rate 0.2 failed {got} of {total}")
        seen.setdefault(seed, []).append(pattern)
    check(seen["5"][0] == seen["5"][1], "seed 5 failed other calls the second time")
    check(seen["6"][0] != seen["5"][0], "seeds 5 and 6 failed the same calls")


@case("fail-at-cxx")
def fail_at_cxx(c):
    """C++: the vector's growth goes through std::vector's code from the
    system headers, which is never a site: --fail-at the push_back line
    refuses the operator new under it; the bad_alloc nobody catches aborts."""
    src = source("cxx")
    line = line_of(src, "SITE:vector")
    t = trace(c, [program("cxx")], ["--fail-at", f"cxx.cc:{line}"])
    expect_rc(t, 128 + 6)
    proc = only_process(report_json(c, t.log))
    check(proc["status"] == {"signal": 6} and proc["killed_after_refusal"] is True,
          f"status {proc['status']}, killed_after_refusal {proc['killed_after_refusal']}")
    check(proc["refused"] and by_line(proc, src) == {line: refused_total(proc, "fail-at")},
          f"refused {by_line(proc, src)}, want all at cxx.cc:{line}")
    # the first refusal is the vector's first block: what main made before stays
    check(proc["summary"]["allocations"] <= 4, f"{proc['summary']['allocations']} allocations")


@case("fail-at-library")
def fail_at_library(c):
    """--fail-at a line of a library the program links: the tracer finds
    it through DT_NEEDED; the program's own line still fails alone."""
    prog, lib = program("oom_lib"), source("oomlib")
    line = line_of(lib, "CRASH:lib")
    t = trace(c, [prog], ["--fail-at", f"oomlib.c:{line}"])
    expect_rc(t, 128 + SIGSEGV)
    proc = only_process(report_json(c, t.log))
    check(proc["killed_after_refusal"] is True, "killed_after_refusal is not true")
    last = proc["last_refused"]
    check(last["site"]["line"] == line and same_file(last["site"]["file"], lib)
          and last["size"] == 7, f"last refused {last}")
    check(proc["summary"]["allocations"] == 3, f"{proc['summary']['allocations']} allocations")
    main_src = source("oom_lib")
    main_line = line_of(main_src, "SITE:main")
    t = trace(c, [prog], ["--fail-at", f"oom_lib.c:{main_line}"])
    expect_rc(t, 0)
    proc = only_process(report_json(c, t.log))
    check(by_line(proc, main_src) == {main_line: 3}, f"refused {by_line(proc, main_src)}")
    check(proc["summary"]["allocations"] == 1, f"{proc['summary']['allocations']} allocations")
