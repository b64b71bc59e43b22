"""The SYMBOLS frames halloc-trace appends when a run ends (tracer/symbols.c,
analyzer/symbols_feed.c): they must say what halloc-report finds in the
binaries on disk for the same log, for programs with threads, a fork, an
exec and shared libraries; with the plain copies of compressed debug files
(analyzer/debuginfo.c) made, reused, or not kept at all."""
import os

from harness import REPORT, case, check, expect_rc, log_bytes, program, report_json, trace
from cases_programs import plugin_copies

SYMBOLS = 4


def without_symbols(c, log):
    """A plain copy of log without its SYMBOLS frames: halloc-report then
    symbolizes it from the binaries, as before the tracer did it."""
    data = log_bytes(log)
    out, at = [data[:16]], 16
    while at + 8 <= len(data):
        length = int.from_bytes(data[at:at + 4], "little")
        kind = int.from_bytes(data[at + 4:at + 6], "little")
        if kind != SYMBOLS:
            out.append(data[at:at + 8 + length])
        at += 8 + length
    path = c.fresh("nosym", ".hlog")
    with open(path, "wb") as f:
        f.write(b"".join(out))
    return path


def symbol_frames(log):
    data, at, n = log_bytes(log), 16, 0
    while at + 8 <= len(data):
        n += int.from_bytes(data[at + 4:at + 6], "little") == SYMBOLS
        at += 8 + int.from_bytes(data[at:at + 4], "little")
    return n


def same_as_from_binaries(c, argv, opts=(), env=None):
    t = trace(c, argv, ("-q", *opts), env=env)
    expect_rc(t, 0)
    check(symbol_frames(t.log) > 0, "no SYMBOLS frame")
    got, want = report_json(c, t.log), report_json(c, without_symbols(c, t.log))
    check(got == want, "the log's symbols differ from the binaries': "
          f"{str(got)[:300]} != {str(want)[:300]}")
    frames = [f for p in got["processes"] for leak in p["leaks"] for f in leak["stack"]]
    check(any(f["file"] and f["line"] for f in frames), "no frame has a file and line")
    return got


@case("symbols-threads-fork-exec-dlopen")
def symbols_threads_fork_exec_dlopen(c):
    cache = c.path("cache")
    env = c.env(HALLOC_CACHE_DIR=cache)
    same_as_from_binaries(c, [program("threads")], env=env)
    a, b = plugin_copies(c)
    doc = same_as_from_binaries(c, [program("forker"), "exec", program("dlhost"), a, b],
                                ("-f",), env=env)
    check(len(doc["processes"]) >= 2, f"{len(doc['processes'])} processes, want the "
          "forker and dlhost")
    # Again with the debug files' plain copies made above, and with none kept.
    same_as_from_binaries(c, [program("forker"), "exec", program("dlhost"), a, b],
                          ("-f",), env=env)
    same_as_from_binaries(c, [program("threads")], env=c.env(HALLOC_CACHE_DIR=""))


@case("symbols-libc-lines")
def symbols_libc_lines(c):
    """libc's frames get file and line from its separate debug file (libc6-dbg)
    whether or not a plain copy is kept, and that copy is what a second run
    reads."""
    libc_debug = "/usr/lib/debug/.build-id"
    if not os.path.isdir(libc_debug):
        from harness import Skip
        raise Skip("no separate debug files installed (libc6-dbg)")
    cache = c.path("cache")
    for env in (c.env(HALLOC_CACHE_DIR=""), c.env(HALLOC_CACHE_DIR=cache),
                c.env(HALLOC_CACHE_DIR=cache)):
        t = trace(c, [program("threads")], ("-q",), env=env)
        expect_rc(t, 0)
        doc = report_json(c, t.log)
        libc = [f for p in doc["processes"] for leak in p["leaks"] for f in leak["stack"]
                if "libc.so" in f["module"]]
        check(libc, "no libc frame in the leaks' stacks")
        check(any(f["line"] > 0 for f in libc),
              f"no libc frame has a line: {libc[:3]}")
    copies = os.listdir(os.path.join(cache, "debug")) if os.path.isdir(cache) else []
    check(any(n.endswith(".debug") for n in copies), f"no plain copy in the cache: {copies}")


def cache_stats(path):
    """The lines HALLOC_SYMCACHE_STATS appended: [{opened, answered, symbolized}]."""
    lines = open(path).read().split("\n") if os.path.exists(path) else []
    os.path.exists(path) and os.unlink(path)
    out = []
    for line in filter(None, lines):
        w = line.split()
        out.append(dict(zip(w[0::2], map(int, w[1::2]))))
    return out


def report_text(c, log, env):
    p = c.run([REPORT, "--no-color", log], env=env)
    check(p.returncode == 0, f"halloc-report exited {p.returncode}")
    return p.stdout


@case("symbols-cache-cold-warm")
def symbols_cache_cold_warm(c):
    """The symbol cache (analyzer/symcache.c): a log reported with it off,
    cold and warm gives the same text byte for byte; the warm run opens no
    module file; a damaged cache file is not read, and is replaced; halloc-trace
    run twice appends the same symbols as the binaries give, the second time
    from the cache alone."""
    cache, stats = c.path("cache"), c.path("stats")
    on = c.env(HALLOC_CACHE_DIR=cache, HALLOC_SYMCACHE_STATS=stats)
    t = trace(c, [program("threads")], ("-q", "--no-symbols"), env=c.env(HALLOC_CACHE_DIR=""))
    expect_rc(t, 0)
    off = report_text(c, t.log, c.env(HALLOC_CACHE_DIR=""))
    check(b"threads.c:" in off, "no line of threads.c in the report")
    cold = report_text(c, t.log, on)
    s = cache_stats(stats)
    check(len(s) == 1 and s[0]["symbolized"] > 0 and s[0]["opened"] > 0,
          f"the cold run symbolized nothing: {s}")
    warm = report_text(c, t.log, on)
    s = cache_stats(stats)
    check(len(s) == 1 and s[0]["opened"] == 0 and s[0]["symbolized"] == 0
          and s[0]["answered"] > 0, f"the warm run opened module files: {s}")
    check(cold == off, "cold cache: the report differs from no cache")
    check(warm == off, "warm cache: the report differs from no cache")

    # Damaged cache files: not read (the modules are opened again), same
    # report, and replaced (the next run opens none).
    files = [os.path.join(d, n) for d, _, ns in os.walk(os.path.join(cache, "symbols"))
             for n in ns]
    check(files and all(n.endswith(".sym") for n in files), f"cache files: {files}")
    for i, path in enumerate(files):
        data = bytearray(open(path, "rb").read())
        if i % 2:
            data = data[:len(data) // 2]
        else:
            data[len(data) // 2] ^= 0x20
        with open(path, "wb") as f:
            f.write(data)
    damaged = report_text(c, t.log, on)
    s = cache_stats(stats)
    check(len(s) == 1 and s[0]["opened"] > 0 and s[0]["answered"] == 0,
          f"damaged cache files were read: {s}")
    check(damaged == off, "damaged cache: the report differs from no cache")
    check(report_text(c, t.log, on) == off, "the replaced cache's report differs")
    s = cache_stats(stats)
    check(len(s) == 1 and s[0]["opened"] == 0, f"the cache was not replaced: {s}")

    # halloc-trace, cold then warm: its SYMBOLS are the binaries' (read with
    # no cache), and the warm run opened no module file.
    for run in ("cold", "warm"):
        got = same_as_from_binaries(c, [program("threads")], env=on)
        s = cache_stats(stats)
        check(s, f"{run}: no statistics")
        if run == "warm":
            check(s[-1]["opened"] == 0 and s[-1]["answered"] > 0,
                  f"the warm trace opened module files: {s}")
    check(got["processes"], "no process")
