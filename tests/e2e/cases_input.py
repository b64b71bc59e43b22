"""Cases 11 and 13: what halloc-trace and halloc-report do with bad input, and
the JSON report itself.
"""
import os
import random
import re
import struct

from harness import (Fail, REPORT, SUMMARY_KEYS, TRACE, ZSTD_MAGIC, case, check, compare,
                     expect_rc, line_of, log_bytes, one_line, only_process, parse_report,
                     program, report_json, source, trace)
from cases_programs import LEAKS_SITES, LEAKS_TRUTH


# ---- 11. bad input ---------------------------------------------------------------

@case("trace-missing-program")
def trace_missing(c):
    for name in ("/nonexistent/halloc-e2e/prog", "no-such-command-halloc-e2e"):
        p = c.run([TRACE, "-o", c.path("x.hlog"), "--", name])
        check(p.returncode == 127, f"'{name}': exit {p.returncode}, want 127")
        check(name in one_line(p, name), f"'{name}': the message does not name it")


@case("trace-not-executable")
def trace_not_executable(c):
    script = c.path("script.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(script, 0o644)
    p = c.run([TRACE, "-o", c.path("x.hlog"), "--", script])
    check(p.returncode == 126, f"exit {p.returncode}, want 126")
    check(script in one_line(p, "not executable"), "the message does not name the file")


@case("trace-static")
def trace_static(c):
    p = c.run([TRACE, "-o", c.path("x.hlog"), "--", program("static")])
    check(p.returncode == 125, f"exit {p.returncode}, want 125")
    check("static" in one_line(p, "static").lower(), "the message does not say static")


@case("trace-bad-option")
def trace_bad_option(c):
    ran = c.path("ran")
    touch = ["--", "/usr/bin/touch", ran]
    for args in (["--no-such-option", *touch], ["-Z", *touch], ["-d", "many", *touch],
                 ["-o"], []):
        what = " ".join(args) or "(no arguments)"
        p = c.run([TRACE, *args])
        check(p.returncode == 2, f"{what}: exit {p.returncode}, want 2")
        check(p.stderr.strip(), f"{what}: nothing on stderr")
        check(not os.path.exists(ran), f"{what}: the program ran anyway")


@case("trace-options")
def trace_options(c):
    """-q prints nothing but errors; without -o the log is
    halloc.PROG.PID.hlog in the working directory (halloc-trace(1))."""
    prog = program("leaks")
    p = c.run([TRACE, "-q", prog], cwd=c.tmp)
    check(p.returncode == 7, f"-q: exit {p.returncode}, want 7")
    check(not p.stderr.strip(), f"-q: stderr has {p.stderr.decode(errors='replace')[:200]!r}")
    logs = [n for n in os.listdir(c.tmp) if re.fullmatch(r"halloc\.leaks\.\d+\.hlog", n)]
    check(len(logs) == 1, f"want one halloc.leaks.PID.hlog in the working directory: {logs}")
    proc = only_process(report_json(c, os.path.join(c.tmp, logs[0])))
    check(logs[0] == f"halloc.leaks.{proc['pid']}.hlog",
          f"log {logs[0]} for pid {proc['pid']}")
    compare("summary", proc["summary"], LEAKS_TRUTH)


def report_fails(c, path, want_rc, what):
    p = c.run([REPORT, "--format", "json", path])
    check(p.returncode == want_rc, f"{what}: exit {p.returncode}, want {want_rc}")
    return one_line(p, what), p


@case("report-not-log")
def report_not_log(c):
    path = c.path("notes.txt")
    with open(path, "w") as f:
        f.write("this is not a halloc log\n" * 20)
    _, p = report_fails(c, path, 1, "a text file")
    check(not p.stdout.strip(), "a report on stdout for a text file")


@case("report-empty")
def report_empty(c):
    path = c.path("empty.hlog")
    open(path, "w").close()
    report_fails(c, path, 1, "an empty file")


@case("report-missing")
def report_missing(c):
    path = c.path("missing.hlog")
    message, _ = report_fails(c, path, 1, "a missing file")
    check(path in message, f"the message does not name the file: {message!r}")


@case("report-usage")
def report_usage(c):
    t = trace(c, [program("abort")])
    for args in ([], ["--format", "xml", t.log], ["--no-such-option", t.log]):
        what = " ".join(args) or "(no arguments)"
        p = c.run([REPORT, *args])
        check(p.returncode == 2, f"{what}: exit {p.returncode}, want 2")
        check(p.stderr.strip(), f"{what}: nothing on stderr")


def frames(data):
    """(offset, type, length) of each whole frame after the file header."""
    out, off = [], 16
    while off + 8 <= len(data):
        length, ftype, _ = struct.unpack_from("<IHH", data, off)
        if off + 8 + length > len(data):
            break
        out.append((off, ftype, length))
        off += 8 + length
    return out


def full_log(c):
    """A complete multi-chunk log (threads), its bytes (decompressed), frames and
    report."""
    t = trace(c, [program("threads")])
    expect_rc(t, 0)
    data = log_bytes(t.log)
    fr = frames(data)
    check(fr and fr[0][1] == 1, "the log does not start with a TRACE_INFO frame")
    check(fr[-1][1] == 5 and fr[-1][0] + 8 + fr[-1][2] == len(data),
          "the log does not end with an END frame")
    return data, fr, only_process(report_json(c, t.log))


@case("report-truncated")
def report_truncated(c):
    data, fr, full = full_log(c)
    chunks = [f for f in fr if f[1] == 2]
    end = fr[-1][0]
    offsets = sorted({16, 20, fr[0][0] + 8 + fr[0][2], chunks[0][0] + 8 + chunks[0][2] // 2,
                      chunks[len(chunks) // 2][0], len(data) // 3, len(data) // 2,
                      2 * len(data) // 3, end, len(data) - 1})
    last = 0
    for off in offsets:
        path = c.path(f"cut-{off}.hlog")
        with open(path, "wb") as f:
            f.write(data[:off])
        doc = report_json(c, path)
        what = f"cut at {off} of {len(data)}"
        for p in doc["processes"]:
            check(p["complete"] is False, f"{what}: pid {p['pid']} complete is {p['complete']}")
        got = {k: sum(p["summary"][k] for p in doc["processes"]) for k in SUMMARY_KEYS}
        for k in ("allocations", "frees", "bytes_allocated"):
            check(got[k] <= full["summary"][k], f"{what}: {k} {got[k]} > {full['summary'][k]}")
        check(got["allocations"] >= last, f"{what}: fewer allocations than a shorter cut")
        last = got["allocations"]
        if off >= end:
            compare(f"{what} (only END missing)", got,
                    {k: full["summary"][k] for k in SUMMARY_KEYS})
            check(doc["processes"][0]["leaks"] == full["leaks"], f"{what}: other leaks")


@case("report-compressed-cut")
def report_compressed_cut(c):
    """halloc-trace compresses the log; a compressed log cut anywhere still
    reports what it holds, says it is incomplete, and never more than the whole."""
    t = trace(c, [program("threads")])
    expect_rc(t, 0)
    with open(t.log, "rb") as f:
        data = f.read()
    check(data.startswith(ZSTD_MAGIC), "halloc-trace did not compress the log")
    full = only_process(report_json(c, t.log))
    raw = c.path("raw.hlog")
    with open(raw, "wb") as f:
        f.write(log_bytes(t.log))
    check(only_process(report_json(c, raw))["summary"] == full["summary"],
          "the decompressed log reports other numbers")
    last = 0
    for off in sorted({2, 4, 40, len(data) // 4, len(data) // 2, 3 * len(data) // 4,
                       len(data) - 30, len(data) - 1}):
        path = c.path(f"zcut-{off}.hlog")
        with open(path, "wb") as f:
            f.write(data[:off])
        p = c.run([REPORT, "--format", "json", path], timeout=60)
        what = f"compressed log cut at {off} of {len(data)}"
        check(p.returncode in (0, 1), f"{what}: exit {p.returncode}, want 0 or 1")
        if p.returncode == 1:  # too short to hold the log's header
            check(off < 64, f"{what}: not reported: {p.stderr.decode(errors='replace')}")
            continue
        doc = parse_report(p.stdout)
        for proc in doc["processes"]:
            check(proc["complete"] is False, f"{what}: pid {proc['pid']} complete")
        got = sum(proc["summary"]["allocations"] for proc in doc["processes"])
        check(got <= full["summary"]["allocations"], f"{what}: {got} allocations, more than all")
        check(got >= last, f"{what}: fewer allocations than a shorter cut")
        last = got


def mutations(data, fr):
    """(name, bytes) of damaged copies of a log, beyond its file header."""
    rng = random.Random(20240521)
    chunks = [f for f in fr if f[1] == 2]
    chunk = chunks[len(chunks) // 4]
    symbols = [f for f in fr if f[1] == 4]
    out = []
    for i in range(24):
        d = bytearray(data)
        pos = rng.randrange(16, len(d))
        for k in range(rng.choice((1, 3, 16))):
            if pos + k < len(d):
                d[pos + k] = rng.randrange(256) if i % 2 else d[pos + k] ^ 0xFF
        out.append((f"random-{i}@{pos}", bytes(d)))

    def patched(name, off, new):
        d = bytearray(data)
        d[off:off + len(new)] = new
        out.append((name, bytes(d)))

    patched("huge-frame-length", chunk[0], struct.pack("<I", 0xFFFFFFF0))
    patched("unknown-frame-type", chunk[0] + 4, struct.pack("<H", 0x7777))
    patched("overlong-varints", chunk[0] + 8 + 24, b"\xff" * 12)
    patched("zero-stream", chunk[0] + 8, bytes(8))
    patched("records-zeroed", chunk[0] + 8 + 24, bytes(min(64, chunk[2] - 24)))
    if symbols:
        patched("symbols-huge-count", symbols[0][0] + 8, b"\xff" * 9 + b"\x01")
    return out


@case("report-corrupt")
def report_corrupt(c):
    data, fr, _ = full_log(c)
    for name, damaged in mutations(data, fr):
        path = c.path(name + ".hlog")
        with open(path, "wb") as f:
            f.write(damaged)
        for fmt in (["--format", "json"], []):
            p = c.run([REPORT, *fmt, path], timeout=60)
            what = f"{name} ({'json' if fmt else 'text'})"
            check(p.returncode >= 0, f"{what}: killed by signal {-p.returncode}")
            check(p.returncode in (0, 1), f"{what}: exit {p.returncode}, want 0 or 1")
            lines = p.stderr.decode(errors="replace").splitlines()
            check(len(lines) == 1 if p.returncode == 1 else len(lines) <= 1,
                  f"{what}: {len(lines)} lines on stderr (exit {p.returncode})")
            if fmt and (p.returncode == 0 or p.stdout.strip()):
                try:
                    parse_report(p.stdout)
                except Fail as e:
                    raise Fail(f"{what}: {e}")


# ---- 13. the JSON report ------------------------------------------------------------

@case("json-report")
def json_report(c):
    forker, leaks_prog = program("forker"), program("leaks")
    t = trace(c, [forker, "exec", leaks_prog], ["-f"])
    outs = [c.run([REPORT, "--format", "json", t.log]) for _ in range(2)]
    for p in outs:
        check(p.returncode == 0, f"halloc-report --format json exited {p.returncode}")
    check(outs[0].stdout == outs[1].stdout, "two reports of the same log differ")
    doc = parse_report(outs[0].stdout)   # every key, type, and the sums they imply
    check(len(doc["processes"]) >= 2, f"{len(doc['processes'])} processes, want at least 2")
    text = c.run([REPORT, t.log])
    check(text.returncode == 0, f"halloc-report (text) exited {text.returncode}")
    out = text.stdout.decode(errors="replace")
    for src, marker in [(source("leaks"), m) for m, _, _ in LEAKS_SITES] + \
                       [(source("forker"), "LEAK:parent")]:
        where = f"{os.path.basename(src)}:{line_of(src, marker)}"
        check(where in out, f"the text report does not mention {where}")
