"""Cases 1-10 and 14: test programs whose heap is known, traced, their reports
compared with that truth (see each program's header comment).
"""
import os
import re
import shutil
import signal
import struct
import subprocess
import time

from harness import (EXAMPLES, ROOT, case, check, compare, expect_leak, expect_rc,
                     expect_status, leaks_at, line_of, only_process, process_by, program,
                     report_json, same_file, site_at, source, summary_of, trace, TRACE)


# ---- 1. leaks at known lines --------------------------------------------------

LEAKS_TRUTH = {"allocations": 8, "frees": 4, "bytes_allocated": 594, "peak_bytes": 482,
               "peak_blocks": 5, "leaked_bytes": 282, "leaked_blocks": 4}
LEAKS_SITES = (("LEAK:malloc", 100, "main"), ("LEAK:calloc", 40, "main"),
               ("LEAK:realloc", 128, "grow"), ("LEAK:strdup", 14, "make_name"))


def check_leaks_process(proc, reaped_by_parent=False):
    src = source("leaks")
    compare(f"leaks (pid {proc['pid']}) summary", proc["summary"], LEAKS_TRUTH)
    for marker, nbytes, function in LEAKS_SITES:
        expect_leak(proc, src, marker, nbytes, 1, function)
    check(len(proc["leaks"]) == 4, f"{len(proc['leaks'])} leaks, want 4")
    expect_status(proc, {"exit": 7}, reaped_by_parent)


@case("leaks")
def leaks(c):
    prog = program("leaks")
    t = trace(c, [prog])
    expect_rc(t, 7)
    proc = only_process(report_json(c, t.log))
    check(proc["command"] == [prog], f"command {proc['command']}, want {[prog]}")
    check(proc["parent"] is None, f"parent {proc['parent']}, want null")
    check_leaks_process(proc)
    for marker, _, _ in LEAKS_SITES:
        where = f"leaks.c:{line_of(source('leaks'), marker)}"
        check(where in t.err, f"the text report does not mention {where}")


# ---- 2. threads, cross-thread frees -------------------------------------------

def tls_modid(out):
    m = re.search(r"tls_modid=(\d+)", out)
    check(m is not None, f"the program printed no tls_modid: {out!r}")
    return int(m.group(1))


def dtv_bytes(modid):
    """glibc 2.36 allocate_dtv: calloc(max modid + DTV_SURPLUS (14) + 2, 16)."""
    return 16 * (modid + 16)


def untraced(c, argv):
    """Run argv without halloc: the DTV size to expect is an untraced run's
    (the agent leaves its own TLS modules out of the DTV requests it
    records, as Valgrind never sees them)."""
    p = c.run(argv)
    check(p.returncode == 0, f"{' '.join(argv)} exited {p.returncode} untraced")
    return p.stdout.decode(errors="replace")


@case("threads")
def threads(c):
    prog, src = program("threads"), source("threads")
    dtv = dtv_bytes(tls_modid(untraced(c, [prog])))
    t = trace(c, [prog])
    expect_rc(t, 0)
    items = 2 * sum(8 + (i * 13) % 300 for i in range(4000))
    proc = only_process(report_json(c, t.log))
    compare("summary", proc["summary"], {
        "allocations": 8000 + 1 + 4, "frees": 8000,
        "bytes_allocated": items + 50 + 4 * dtv,
        "leaked_bytes": 50 + 4 * dtv, "leaked_blocks": 5})
    expect_leak(proc, src, "LEAK:banner", 50, 1, "main")
    expect_leak(proc, src, "LINE:create", 4 * dtv, 4, "main")
    compare("site of the items", site_at(proc, src, line_of(src, "LINE:item")),
            {"allocations": 8000, "bytes_allocated": items, "leaked_blocks": 0})
    expect_status(proc, {"exit": 0})


# ---- 3. fork, with and without -f, and fork+exec ------------------------------

PARENT = {"allocations": 4, "frees": 3, "bytes_allocated": 1332, "peak_bytes": 1110,
          "peak_blocks": 3, "leaked_bytes": 333, "leaked_blocks": 1}
# As Valgrind counts: the child's counters start with the parent's at the fork.
CHILD = {"allocations": 5, "frees": 3, "bytes_allocated": 1665, "leaked_bytes": 777,
         "leaked_blocks": 2}


def fork_pids(out):
    m = re.search(r"parent=(\d+) child=(\d+)", out)
    check(m is not None, f"forker printed no pids: {out!r}")
    return int(m.group(1)), int(m.group(2))


def check_parent(doc, pid, rc):
    src = source("forker")
    proc = process_by(doc, pid)
    check(proc["parent"] is None, f"parent process: parent {proc['parent']}, want null")
    compare(f"parent (pid {pid}) summary", proc["summary"], PARENT)
    expect_leak(proc, src, "LEAK:parent", 333, 1, "main")
    check(len(proc["leaks"]) == 1, f"parent: {len(proc['leaks'])} leaks, want 1")
    expect_status(proc, {"exit": rc})


@case("fork-nofollow")
def fork_nofollow(c):
    prog = program("forker")
    t = trace(c, [prog])
    expect_rc(t, 0)
    parent, child = fork_pids(t.out)
    doc = report_json(c, t.log)
    proc = only_process(doc)
    check(proc["pid"] == parent, f"pid {proc['pid']}, want the parent's {parent}")
    check_parent(doc, parent, 0)
    line = line_of(source("forker"), "LEAK:child")
    check(leaks_at(proc, source("forker"), line)[1] == 0, "the child's leak is in the report")


@case("fork-follow")
def fork_follow(c):
    prog, src = program("forker"), source("forker")
    t = trace(c, [prog], ["-f"])
    expect_rc(t, 0)
    parent, child = fork_pids(t.out)
    doc = report_json(c, t.log)
    check(len(doc["processes"]) == 2, f"{len(doc['processes'])} processes, want 2")
    check_parent(doc, parent, 0)
    proc = process_by(doc, child)
    check(proc["parent"] == parent, f"child: parent {proc['parent']}, want {parent}")
    compare(f"child (pid {child}) summary", proc["summary"], CHILD)
    expect_leak(proc, src, "LEAK:parent", 333, 1, "main")
    expect_leak(proc, src, "LEAK:child", 444, 1, "main")
    expect_status(proc, {"exit": 0}, reaped_by_parent=True)


@case("exec-chain")
def exec_chain(c):
    """An image started by exec frees the slots of the image before it."""
    env = dict(os.environ, HALLOC_TRACE_SHM_SLOTS="32")
    t = trace(c, [program("exec_chain"), "100"], ["-f"], env=env)
    expect_rc(t, 137)
    doc = report_json(c, t.log)
    procs = doc["processes"]
    check(len(procs) == 101, f"{len(procs)} images recorded, want 101")
    for p in procs:
        check(p["summary"]["allocations"] == 1 and p["summary"]["bytes_allocated"] == 4321,
              f"image {p['command']}: {p['summary']}")
    last = [p for p in procs if p["command"][1:] == ["0"]]
    check(len(last) == 1 and last[0]["summary"]["leaked_bytes"] == 4321
          and last[0]["status"] == {"signal": 9}, f"the killed image: {last}")
    check(sum(p["summary"]["leaked_blocks"] for p in procs) == 1, "only the last image leaks")


def check_fork_exec(c, mode):
    prog, leaks_prog = program("forker"), program("leaks")
    t = trace(c, [prog, mode, leaks_prog], ["-f"])
    expect_rc(t, 7)
    parent, child = fork_pids(t.out)
    doc = report_json(c, t.log)
    check_parent(doc, parent, 7)
    proc = process_by(doc, child, [leaks_prog])
    check(proc["parent"] == parent, f"exec'd image: parent {proc['parent']}, want {parent}")
    check_leaks_process(proc, reaped_by_parent=True)
    # The child before its exec may be listed; an image replaced by exec leaks nothing.
    others = [p for p in doc["processes"] if p is not proc and p["pid"] == child]
    for p in others:
        check(p["summary"]["leaked_blocks"] == 0,
              f"pre-exec image of {child}: {p['summary']['leaked_blocks']} blocks leaked, want 0")
    check(len(doc["processes"]) == 2 + len(others), f"{len(doc['processes'])} processes")


@case("fork-exec")
def fork_exec(c):
    check_fork_exec(c, "exec")


@case("fork-exec-closefds")
def fork_exec_closefds(c):
    """The child closes the descriptors it inherited before it execs (as
    Python's subprocess does): the program it starts is recorded all the same."""
    check_fork_exec(c, "exec-closefds")


# ---- 4. dlopen'ed, then unloaded, library ---------------------------------------

def plugin_copies(c):
    """Copies of the plugins in the case's directory (so they can be deleted)."""
    paths = []
    for name in ("libplugin_a", "libplugin_b"):
        dst = c.path(name + ".so")
        shutil.copy(program(name), dst)
        paths.append(dst)
    return paths


@case("dlopen")
def dlopen(c):
    a, b = plugin_copies(c)
    t = trace(c, [program("dlhost"), a, b])
    expect_rc(t, 0)
    src_a, src_b = source("plugin_a"), source("plugin_b")
    for src, marker in ((src_a, "LEAK:plugin_a"), (src_b, "LEAK:plugin_b")):
        where = f"{os.path.basename(src)}:{line_of(src, marker)}"
        check(where in t.err, f"the text report does not mention {where}")
    # The log carries its symbols: the report must not need the libraries.
    os.remove(a)
    os.remove(b)
    proc = only_process(report_json(c, t.log))
    line_a = expect_leak(proc, src_a, "LEAK:plugin_a", 4096, 1, "plugin_a_init")
    expect_leak(proc, src_b, "LEAK:plugin_b", 2048, 1, "plugin_b_init")
    leak = next(lk for lk in proc["leaks"] if lk["site"]["line"] == line_a
                and same_file(lk["site"]["file"], src_a))
    module = leak["stack"][0]["module"] if leak["stack"] else None
    check(module == a, f"plugin_a leak: innermost module {module!r}, want {a!r}")
    expect_status(proc, {"exit": 0})


# ---- 5. C++ -----------------------------------------------------------------------

@case("cxx")
def cxx(c):
    src = source("cxx")
    t = trace(c, [program("cxx")])
    expect_rc(t, 0)
    proc = only_process(report_json(c, t.log))
    line = line_of(src, "LEAK:new")
    nbytes, blocks, functions = leaks_at(proc, src, line)
    check((nbytes, blocks) == (24, 1),
          f"leak at cxx.cc:{line}: {nbytes} bytes in {blocks} blocks, want 24 in 1; leaks: "
          + ", ".join(f"{lk['site']['function']} {lk['site']['file']}:{lk['site']['line']}"
                      for lk in proc["leaks"]))
    check(all(f.startswith("make_widget") for f in functions), f"site function {functions}")
    for name, count, nbytes in (("new", 1, 4), ("new[]", 1, 40), ("vector", 8, 1020),
                                ("string", 1, None), ("append", 1, None)):
        line = line_of(src, "SITE:" + name)
        got = site_at(proc, src, line)
        want = {"allocations": count, "leaked_blocks": 0}
        if nbytes is not None:
            want["bytes_allocated"] = nbytes
        compare(f"site {name} (cxx.cc:{line})", got, want)
    for lk in proc["leaks"]:
        check(not lk["site"]["function"].startswith("operator new"),
              f"a leak's site is operator new: {lk['site']}")
    expect_status(proc, {"exit": 0})


# ---- 6. every entry point --------------------------------------------------------

ENTRY_SITES = {"malloc": 10, "calloc": 21, "malloc5": 5, "realloc": 50, "malloc6": 6,
               "reallocarray": 100, "posix_memalign": 100, "aligned_alloc": 128,
               "valloc": 300, "pvalloc": 300, "malloc0": 0, "realloc-null": 40,
               "failed-malloc": None, "failed-calloc": None}


@case("entry-points")
def entry_points(c):
    src = source("entry")
    t = trace(c, [program("entry")])
    expect_rc(t, 0)
    proc = only_process(report_json(c, t.log))
    compare("summary", proc["summary"], {
        "allocations": 13, "frees": 12, "bytes_allocated": 1130, "peak_bytes": 370,
        "peak_blocks": 2, "leaked_bytes": 70, "leaked_blocks": 1})
    expect_leak(proc, src, "LEAK:memalign", 70, 1, "main")
    for name, size in ENTRY_SITES.items():
        want = {"allocations": 0, "bytes_allocated": 0} if size is None else \
               {"allocations": 1, "bytes_allocated": size}
        compare(f"site {name} (entry.c:{line_of(src, 'SITE:' + name)})",
                site_at(proc, src, line_of(src, "SITE:" + name)), want)
    expect_status(proc, {"exit": 0})


# ---- 7. deep recursion --------------------------------------------------------------

@case("deep-stack")
def deep_stack(c):
    prog, src = program("deep"), source("deep")
    leak_line, recurse_line = line_of(src, "LEAK:deep"), line_of(src, "LINE:recurse")
    for opts, depth in (((), 64), (("-d", "10"), 10), (("-d", "256"), 256)):
        t = trace(c, [prog], opts)
        expect_rc(t, 0)
        proc = only_process(report_json(c, t.log))
        expect_leak(proc, src, "LEAK:deep", 77, 1, "descend")
        stack = proc["leaks"][0]["stack"]
        what = f"depth {depth}: stack"
        check(len(stack) == depth, f"{what} has {len(stack)} frames, want {depth}")
        for i, f in enumerate(stack):
            want = leak_line if i == 0 else recurse_line
            got = f"{f['function'] or '?'} {f['file'] or f['module']}:{f['line']}"
            check(f["function"] == "descend" and f["line"] == want and same_file(f["file"], src),
                  f"{what} frame {i}: {got}, want descend deep.c:{want}")


# ---- 8. abort --------------------------------------------------------------------

@case("abort")
def abort(c):
    t = trace(c, [program("abort")])
    expect_rc(t, 134)
    proc = only_process(report_json(c, t.log))
    expect_status(proc, {"signal": 6})
    compare("summary", proc["summary"], {
        "allocations": 2, "frees": 1, "bytes_allocated": 1010, "peak_bytes": 1010,
        "peak_blocks": 2, "leaked_bytes": 1000, "leaked_blocks": 1})
    expect_leak(proc, source("abort"), "LEAK:abort", 1000, 1, "main")


# ---- 9. exit() from a thread while others allocate ---------------------------------

WORKERS = 3
BOOKS = ("allocs", "frees", "bytes", "live_blocks", "live_bytes", "inflight", "inflight_size")


def read_books(path):
    """The workers' books exit_thread.c left in its shared file."""
    with open(path, "rb") as f:
        data = f.read()
    check(data[:8] == b"HALLOCX1", "exit_thread did not set up its books")
    modid = struct.unpack_from("<Q", data, 8)[0]
    workers = []
    for i in range(WORKERS):
        off = 16 + i * 8 * 15
        cur = struct.unpack_from("<Q", data, off)[0]
        workers.append(dict(zip(BOOKS, struct.unpack_from("<7Q", data, off + 8 + cur * 56))))
    return modid, workers


@case("exit-thread")
def exit_thread(c):
    src = source("exit_thread")
    books = [c.path("books-untraced"), c.path("books")]
    for path in books:
        with open(path, "wb") as f:
            f.write(bytes(4096))
    untraced(c, [program("exit_thread"), books[0]])
    dtv = dtv_bytes(read_books(books[0])[0])
    t = trace(c, [program("exit_thread"), books[1]])
    expect_rc(t, 0)
    _, workers = read_books(books[1])
    base = {"allocations": 1 + 1 + 4, "frees": 0, "bytes_allocated": 123 + 99 + 4 * dtv,
            "leaked_bytes": 123 + 99 + 4 * dtv, "leaked_blocks": 6}
    for w in workers:
        check(w["allocs"] >= 2000, f"a worker made only {w['allocs']} allocations")
        base["allocations"] += w["allocs"]
        base["frees"] += w["frees"]
        base["bytes_allocated"] += w["bytes"]
        base["leaked_bytes"] += w["live_bytes"]
        base["leaked_blocks"] += w["live_blocks"]
    # A call a worker was in when the process ended may or may not have been
    # recorded: every combination of those is a right answer, nothing else.
    truths = [base]
    for w in workers:
        n = w["inflight_size"]
        if w["inflight"] == 1:    # in malloc
            step = {"allocations": 1, "bytes_allocated": n, "leaked_blocks": 1, "leaked_bytes": n}
        elif w["inflight"] == 2:  # in free
            step = {"frees": 1, "leaked_blocks": -1, "leaked_bytes": -n}
        else:
            continue
        truths += [{k: t0[k] + step.get(k, 0) for k in t0} for t0 in truths]
    c.note(f"  books: {workers}; acceptable summaries: {truths}")
    proc = only_process(report_json(c, t.log))
    got = summary_of(proc)
    check(got in truths, f"summary {got}; the program's books allow only {truths}")
    expect_leak(proc, src, "LEAK:main", 123, 1, "main")
    expect_leak(proc, src, "LEAK:last", 99, 1, "finish")
    expect_leak(proc, src, "LINE:create", 4 * dtv, 4, "main")
    expect_status(proc, {"exit": 0})


# ---- 10. SIGKILL -------------------------------------------------------------------

@case("sigkill")
def sigkill(c):
    t = trace(c, [program("sigkill")])
    expect_rc(t, 137)
    proc = only_process(report_json(c, t.log))
    expect_status(proc, {"signal": 9})
    sizes = [16 * (i % 100 + 1) for i in range(3000)]
    live = sum(sizes[1::2])
    compare("summary", proc["summary"], {
        "allocations": 3000, "frees": 1500, "bytes_allocated": sum(sizes),
        "peak_bytes": sum(sizes), "peak_blocks": 3000,
        "leaked_bytes": live, "leaked_blocks": 1500})
    expect_leak(proc, source("sigkill"), "LEAK:kill", live, 1500, "main")


# ---- the tracer dies while the program runs ---------------------------------------

@case("tracer-killed")
def tracer_killed(c):
    """The agent holds a read end of the pipe, so a dead tracer neither kills
    the program with SIGPIPE nor leaves it blocked on a full pipe."""
    d = c.path("marks")
    os.mkdir(d)
    log = c.fresh("trace", ".hlog")
    argv = [TRACE, "-q", "-o", log, "--", program("outlive"), d]
    c.note("$ " + " ".join(argv))
    tracer = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=c.env())
    try:
        for _ in range(200):
            if os.path.exists(os.path.join(d, "started")):
                break
            time.sleep(0.05)
        check(os.path.exists(os.path.join(d, "started")), "the program did not start")
        tracer.send_signal(signal.SIGKILL)
        tracer.wait(timeout=10)
        # Reaped: from here the agent can tell that the tracer is gone.
        for _ in range(300):
            if os.path.exists(os.path.join(d, "done")):
                break
            time.sleep(0.05)
        check(os.path.exists(os.path.join(d, "done")),
              "the program did not finish after its tracer was killed "
              "(killed by SIGPIPE, or blocked on the full pipe)")
    finally:
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait()


# ---- the program closes the descriptors it was given -----------------------------

@case("close-fds")
def close_fds(c):
    prog, src = program("closefds"), source("closefds")
    for d in ("untraced", "traced"):
        os.mkdir(c.path(d))
    untraced(c, [prog, c.path("untraced")])
    t = trace(c, [prog, c.path("traced")])
    expect_rc(t, 0)
    proc = only_process(report_json(c, t.log))
    sizes = [16 + i % 100 for i in range(2000)]
    compare("summary", proc["summary"], {
        "allocations": 2000, "frees": 1990, "bytes_allocated": sum(sizes),
        "leaked_bytes": sum(sizes[-10:]), "leaked_blocks": 10})
    expect_leak(proc, src, "LEAK:closefds", sum(sizes[-10:]), 10, "allocate")


# ---- 14. the README example --------------------------------------------------------

EXAMPLE_SRC = os.path.join(ROOT, "examples", "leaky.c")
EXAMPLE_OUT = ("6 settings: name=demo port=8080 workers=4 log=demo.log\n"
               "include routes.conf\ninclude users.conf\n")


def example_leaky():
    path = os.path.join(EXAMPLES, "leaky")
    check(os.path.exists(path), "build/examples/leaky is not built (run make)")
    return path


@case("example-leaky")
def example(c):
    t = trace(c, [example_leaky()])
    expect_rc(t, 0)
    check(t.out == EXAMPLE_OUT, f"the example printed {t.out!r}")
    # leaky.c numbers its leaks in the order the report lists them
    at = []
    for n in (1, 2, 3):
        where = f"leaky.c:{line_of(EXAMPLE_SRC, f'/* leak {n}:')}"
        check(where in t.err, f"the text report does not mention {where}")
        at.append(t.err.index(where))
    check(at == sorted(at), "the text report does not list the leaks in leaky.c's order")
    proc = only_process(report_json(c, t.log))
    compare("summary", proc["summary"], {"allocations": 36, "frees": 27, "bytes_allocated": 813,
                                          "leaked_bytes": 225, "leaked_blocks": 9})
    expect_leak(proc, EXAMPLE_SRC, "/* leak 1:", 144, 2, "add_include")
    expect_leak(proc, EXAMPLE_SRC, "/* leak 2:", 43, 1, "append")
    expect_leak(proc, EXAMPLE_SRC, "/* leak 3:", 38, 6, "parse_setting")
    check(len(proc["leaks"]) == 3, f"{len(proc['leaks'])} leaks, want 3")
