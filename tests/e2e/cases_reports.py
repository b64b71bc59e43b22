"""Report features of issue 3, on programs/peak.c (its header holds the
truth): CI gates, suppressions, what the report shows (--top, --sort, ...),
memory usage and peak time, peak contributors, leak ages, temporary
allocations and sizes, the heap over time, --diff.
"""
import os
import re

from harness import (REPORT, TRACE, Fail, case, check, compare, expect_rc, one_line,
                     only_process, program, report_json, trace)

PEAK_TRUTH = {"allocations": 1012, "frees": 1010, "bytes_allocated": 1105300,
              "peak_bytes": 105300, "peak_blocks": 12, "leaked_bytes": 5300,
              "leaked_blocks": 2}


def traced_peak(c, *args, opts=()):
    t = trace(c, [program("peak"), *args], opts)
    return t


def report_rc(c, *argv):
    p = c.run([REPORT, *argv])
    return p.returncode, p.stderr.decode(errors="replace")


# ---- CI gates ----------------------------------------------------------------

@case("gates-report")
def gates_report(c):
    t = traced_peak(c)
    expect_rc(t, 0)
    compare("peak summary", only_process(report_json(c, t.log))["summary"], PEAK_TRUTH)
    want = [(("--error-exitcode", "42"), 42, "5300 bytes leaked in 2 blocks"),
            (("--max-leaked", "5300"), 0, ""),
            (("--max-leaked", "5299"), 1, "more than the 5299 allowed"),
            (("--max-leaked", "5K", "--error-exitcode", "3"), 3, "5300 bytes leaked"),
            (("--max-peak", "105300"), 0, ""),
            (("--max-peak", "105299", "--format", "json"), 1, "peak heap of 105300 bytes"),
            ((), 0, "")]
    for opts, rc, says in want:
        got, err = report_rc(c, *opts, t.log)
        check(got == rc, f"halloc-report {' '.join(opts)}: exit {got}, want {rc}: {err!r}")
        check(says in err and (rc or "gate" not in err),
              f"halloc-report {' '.join(opts)}: stderr {err!r}, want {says!r}")
    fixed = traced_peak(c, "fixed")
    got, err = report_rc(c, "--error-exitcode", "42", fixed.log)
    check(got == 0, f"a log without leaks: exit {got}, want 0: {err!r}")
    for bad in (("--error-exitcode", "0"), ("--error-exitcode", "256"),
                ("--max-leaked", "-1"), ("--max-peak", "1X")):
        got, err = report_rc(c, *bad, t.log)
        check(got == 2, f"halloc-report {' '.join(bad)}: exit {got}, want 2")


@case("gates-trace")
def gates_trace(c):
    expect_rc(traced_peak(c, opts=("--error-exitcode", "42")), 42)
    t = traced_peak(c, opts=("-q", "--error-exitcode", "42"))
    expect_rc(t, 42)
    check("gate failed: 5300 bytes leaked in 2 blocks" in t.err, f"stderr {t.err!r}")
    expect_rc(traced_peak(c, "fixed", opts=("--error-exitcode", "42")), 0)
    expect_rc(traced_peak(c, opts=("--max-peak", "100K")), 1)
    expect_rc(traced_peak(c, opts=("--max-peak", "200K", "--max-leaked", "5300")), 0)
    # The program's own failure wins over a gate (leaks.c exits 7 and leaks).
    expect_rc(trace(c, [program("leaks")], ("--error-exitcode", "42")), 7)


# ---- suppressions -------------------------------------------------------------

def write(c, name, text):
    path = c.path(name)
    with open(path, "w") as f:
        f.write(text)
    return path


@case("suppressions")
def suppressions(c):
    from harness import parse_report, source, line_of, leaks_at
    t = traced_peak(c)
    expect_rc(t, 0)
    src = source("peak")
    # one of the two leaks, by function name; a comment, a blank line, an
    # entry that matches nothing, and one that would match too but comes
    # later (the first matching entry takes a leak)
    supp = write(c, "one.supp", "# the big one is known\n\nleak:nothing_matches\n"
                 "leak:leak_big\nleak:leak_b\n")
    p = c.run([REPORT, "--format", "json", "--suppressions", supp, t.log])
    check(p.returncode == 0, f"exit {p.returncode}: {p.stderr!r}")
    proc = only_process(parse_report(p.stdout))
    compare("summary", proc["summary"], {"leaked_bytes": 5300, "leaked_blocks": 2,
                                         "suppressed_bytes": 5000, "suppressed_blocks": 1})
    check(len(proc["leaks"]) == 1 and leaks_at(proc, src, line_of(src, "LEAK:small")),
          f"leaks {proc['leaks']}, want only leak_small's")
    check(proc["suppressed"] == [{"suppression": "leak:leak_big", "line": 4, "stacks": 1,
                                  "bytes": 5000, "blocks": 1}],
          f"suppressed {proc['suppressed']}")
    # text says it too; the gate counts only what is left
    p = c.run([REPORT, "--suppressions", supp, "--error-exitcode", "9", t.log])
    out = p.stdout.decode()
    check(p.returncode == 9, f"exit {p.returncode}, want 9")
    check("suppressed:      4.88 KiB (5,000 bytes) in 1 block of those" in out, out)
    check("SUPPRESSED: 4.88 KiB (5,000 bytes) in 1 block by leak:leak_big (line 4)" in out, out)
    check("300 bytes leaked in 1 block" in p.stderr.decode(), p.stderr.decode())
    # anchors and wildcards: both leaks, then nothing, then everything
    for text, rc in (("leak:^leak_*$\n", 0), ("leak:^eak_big\n", 9), ("leak:leak_smal$\n", 9),
                     ("leak:*/programs/pe*k.c\n", 0)):
        supp = write(c, "x.supp", text)
        p = c.run([REPORT, "--suppressions", supp, "--error-exitcode", "9", t.log])
        check(p.returncode == rc, f"{text.strip()}: exit {p.returncode}, want {rc}")
    # halloc-trace takes them too
    t2 = traced_peak(c, opts=("--suppressions", write(c, "both.supp", "leak:leak_\n"),
                              "--error-exitcode", "9"))
    expect_rc(t2, 0)
    check("SUPPRESSED:" in t2.err, t2.err)
    # a bad file: one line, exit 2, and nothing run
    bad = write(c, "bad.supp", "leak:ok\nfun:malloc\n")
    for cmd in ([REPORT, "--suppressions", bad, t.log],
                [REPORT, "--suppressions", c.path("missing.supp"), t.log],
                [TRACE, "--suppressions", bad, "--", program("peak")]):
        p = c.run(cmd)
        check(p.returncode == 2, f"{' '.join(cmd)}: exit {p.returncode}, want 2")
        err = one_line(p, " ".join(cmd))
        check("line 2" in err or "missing.supp" in err, err)


# ---- what the report shows: --top, --sort, --min-bytes, --no-stacks, --process

@case("report-controls")
def report_controls(c):
    from harness import parse_report, source, line_of
    t = traced_peak(c)
    expect_rc(t, 0)
    src = source("peak")

    def doc(*opts):
        p = c.run([REPORT, "--format", "json", *opts, t.log])
        check(p.returncode == 0, f"{' '.join(opts)}: exit {p.returncode}: {p.stderr!r}")
        return only_process(parse_report(p.stdout))

    def text(*opts):
        p = c.run([REPORT, *opts, t.log])
        check(p.returncode == 0, f"{' '.join(opts)}: exit {p.returncode}: {p.stderr!r}")
        return p.stdout.decode()

    def lines(proc, key):
        return [x["site"]["line"] for x in proc[key]]

    big, small = line_of(src, "LEAK:big"), line_of(src, "LEAK:small")
    peak, churn = line_of(src, "PEAK:"), line_of(src, "CHURN:")
    check(lines(doc(), "leaks") == [big, small], "default leak order")
    proc = doc("--top", "1")
    check(lines(proc, "leaks") == [big], f"--top 1: {lines(proc, 'leaks')}")
    check(proc["leaks_omitted"] == {"leaks": 1, "bytes": 300, "blocks": 1},
          f"--top 1: {proc['leaks_omitted']}")
    proc = doc("--min-bytes", "301")
    check(lines(proc, "leaks") == [big], f"--min-bytes: {lines(proc, 'leaks')}")
    # sites: the peak is build_peak's, churn allocated most and made most calls
    check(lines(doc("--sort", "peak"), "sites")[0] == peak, "--sort peak")
    check(lines(doc("--sort", "allocated"), "sites")[0] == churn, "--sort allocated")
    check(lines(doc("--sort", "calls"), "sites")[0] == churn, "--sort calls")
    check(lines(doc("--sort", "leaked"), "sites")[:2] == [big, small], "--sort leaked")
    check(all(l["stack"] == [] for l in doc("--no-stacks")["leaks"]), "--no-stacks json")
    out = text("--sort", "peak", "--top", "1", "--no-stacks")
    check(f"SITES by peak bytes (top 1 of 4):\n  1. build_peak (peak.c:{peak})" in out, out)
    check("#0" not in out and "1 more leak not shown (300 B in 1 block)" in out, out)
    check(f"#0 leak_big" in text(), "stacks shown by default")
    pid = doc()["pid"]
    check(doc("--process", str(pid))["pid"] == pid, "--process")
    for bad in (("--process", "999999999"), ("--sort", "size"), ("--top", "0"),
                ("--min-bytes", "x")):
        p = c.run([REPORT, *bad, t.log])
        check(p.returncode == 2, f"{' '.join(bad)}: exit {p.returncode}, want 2")
        one_line(p, " ".join(bad)) if bad[0] == "--process" else None


# ---- total memory usage: when the peak was, the allocation rate --------------

@case("memory-usage")
def memory_usage(c):
    t = traced_peak(c)
    expect_rc(t, 0)
    s = only_process(report_json(c, t.log))["summary"]
    compare("summary", s, PEAK_TRUTH)
    check(45000 <= s["peak_time_us"] < s["duration_us"], f"peak at {s['peak_time_us']} us "
          f"of {s['duration_us']} us: want after the first 50 ms pause, before the end")
    check(90000 <= s["duration_us"] < 10000000, f"duration {s['duration_us']} us")
    check(s["allocation_rate"] == round(1012 * 1e6 / s["duration_us"]),
          f"allocation_rate {s['allocation_rate']} for 1012 in {s['duration_us']} us")
    check(s["in_use_at_end_bytes"] == 5300 and s["in_use_at_end_blocks"] == 2, f"{s}")
    check("  peak reached:    " in t.err and " ms after start\n" in t.err, t.err)
    check(f"  allocation rate: " in t.err and " allocations/s over " in t.err, t.err)


# ---- peak contributors: who held the heap at its peak ------------------------

@case("peak-contributors")
def peak_contributors(c):
    from harness import source, line_of
    t = traced_peak(c)
    expect_rc(t, 0)
    src = source("peak")
    proc = only_process(report_json(c, t.log))
    got = [(x["site"]["line"], x["bytes"], x["blocks"]) for x in proc["peak_contributors"]]
    want = [(line_of(src, "PEAK:"), 100000, 10), (line_of(src, "LEAK:big"), 5000, 1),
            (line_of(src, "LEAK:small"), 300, 1)]
    check(got == want, f"peak_contributors {got}, want {want}")
    check(sum(b for _, b, _ in got) == proc["summary"]["peak_bytes"], "they add up to the peak")
    # churn's site held 1000 bytes at its own peak, but none at the heap's
    churn = [s for s in proc["sites"] if s["site"]["line"] == line_of(src, "CHURN:")]
    check(churn and churn[0]["peak_bytes"] == 1000, f"churn site {churn}")
    want_text = (f"PEAK CONTRIBUTORS (what the heap held at its peak):\n"
                 f"  97.7 KiB in 10 blocks at build_peak (peak.c:{want[0][0]})\n")
    check(want_text in t.err, t.err)


# ---- leaks: the age of their blocks at exit ----------------------------------

@case("leak-ages")
def leak_ages(c):
    t = traced_peak(c)
    expect_rc(t, 0)
    proc = only_process(report_json(c, t.log))
    end = proc["summary"]["duration_us"]
    for leak in proc["leaks"]:
        # both allocated before the two 50 ms pauses, one block each (the
        # agent's coarse clock may read a few ms short)
        check(90000 <= leak["oldest_age_us"] <= end and
              leak["youngest_age_us"] == leak["oldest_age_us"],
              f"leak at line {leak['site']['line']}: ages {leak['oldest_age_us']}, "
              f"{leak['youngest_age_us']} us; the run lasted {end} us")
    check(t.err.count("  age at exit: ") == 2 and " ms\n" in t.err, t.err)


# ---- temporary allocations and the size histogram ----------------------------

@case("temporary")
def temporary(c):
    from harness import parse_report, source, line_of
    t = traced_peak(c)
    expect_rc(t, 0)
    src = source("peak")
    proc = only_process(report_json(c, t.log))
    # churn's 1000 are each freed before the next allocation; build_peak's
    # ten are not (the last one is followed by the free of the first)
    check(proc["summary"]["temporary_allocations"] == 1000, f"{proc['summary']}")
    temp = {s["site"]["line"]: s["temporary"] for s in proc["sites"]}
    check(temp == {line_of(src, "CHURN:"): 1000, line_of(src, "PEAK:"): 0,
                   line_of(src, "LEAK:big"): 0, line_of(src, "LEAK:small"): 0}, f"{temp}")
    hist = [(h["min"], h["max"], h["allocations"], h["temporary"]) for h in proc["size_histogram"]]
    want = [(256, 511, 1, 0), (512, 1023, 1000, 1000), (4096, 8191, 1, 0), (8192, 16383, 10, 0)]
    check(hist == want, f"size_histogram {hist}, want {want}")
    check(f"  1,000 of 1,000 at churn (peak.c:{line_of(src, 'CHURN:')})" in t.err, t.err)
    check("  512 B - <1 KiB              1,000        1,000\n" in t.err, t.err)
    p = c.run([REPORT, "--format", "json", "--sort", "temporary", t.log])
    check(p.returncode == 0, f"--sort temporary: exit {p.returncode}")
    first = only_process(parse_report(p.stdout))["sites"][0]["site"]["line"]
    check(first == line_of(src, "CHURN:"), f"--sort temporary: first site at line {first}")


# ---- memory over time --------------------------------------------------------

@case("timeline")
def timeline(c):
    t = traced_peak(c)
    expect_rc(t, 0)
    proc = only_process(report_json(c, t.log))
    s, tl = proc["summary"], proc["timeline"]
    check(len(tl) == 200, f"{len(tl)} points, want 200")
    times = [p["time_us"] for p in tl]
    check(times == sorted(times) and times[-1] == s["duration_us"], f"times {times[:3]}..{times[-3:]}")
    top = max(tl, key=lambda p: p["bytes"])
    check(top["bytes"] == s["peak_bytes"], f"timeline max {top['bytes']}, peak {s['peak_bytes']}")
    # the peak lies between the two 50 ms pauses; before and after, the
    # heap holds the leaks (5300 bytes) and at most one churn block of
    check(45000 <= top["time_us"] <= s["duration_us"] - 40000, f"peak point at {top['time_us']} us")
    # heap (0 before the first allocation, the clock stepping a few ms;
    # a point may end between the two leak allocations: 300 bytes)
    first = next(i for i, p in enumerate(tl) if p["bytes"] >= 5300)
    check(all(p["bytes"] in (0, 300) for p in tl[:first]), f"before the leaks: {tl[:first]}")
    check(all(p["bytes"] in (5300, 6300) for p in tl[first:]
              if abs(p["time_us"] - top["time_us"]) > 15000),
          f"points away from the peak: {sorted(set(p['bytes'] for p in tl))}, "
          f"first non-zero: {first}")
    # one line in text: block characters in a UTF-8 locale, ASCII otherwise
    check(re.search(r"  heap over time:  [▁▂▃▄▅▆▇█]{50}  \(max ", t.err), t.err)
    p = c.run([REPORT, t.log], env=c.env(LANG="C"))
    out = p.stdout.decode()
    check(re.search(r"  heap over time:  [_.\-:=+*#]{50}  \(max ", out), out)


# ---- --diff: a leaking and a fixed build -------------------------------------

@case("diff")
def diff(c):
    from harness import parse_report, source, line_of
    import json
    src = source("peak")
    old, new = traced_peak(c), traced_peak(c, "fixed")
    expect_rc(old, 0)
    expect_rc(new, 0)
    p = c.run([REPORT, "--diff", old.log, new.log, "--format", "json"])
    check(p.returncode == 0, f"--diff: exit {p.returncode}: {p.stderr!r}")
    try:
        d = json.loads(p.stdout)
    except ValueError as e:
        raise Fail(f"--diff output is not JSON: {e}")
    check(d["format"] == "halloc-diff" and d["version"] == 1, f"{d['format']}")
    check(d["summary"]["leaked_bytes"] == {"old": 5300, "new": 0, "change": -5300},
          f"{d['summary']['leaked_bytes']}")
    check(d["summary"]["peak_bytes"]["change"] == 0, f"{d['summary']}")
    got = [(s["site"]["line"], s["leaked_bytes"]["change"], s["peak_bytes"]["change"],
            s["bytes_allocated"]["change"]) for s in d["sites"]]
    want = [(line_of(src, "LEAK:big"), -5000, 0, 0), (line_of(src, "LEAK:small"), -300, 0, 0)]
    check(got == want, f"sites {got}, want {want}")
    p = c.run([REPORT, "--diff", old.log, new.log])
    out = p.stdout.decode()
    check(p.returncode == 0 and "  leaked:          5.18 KiB -> 0 B (-5.18 KiB)\n" in out, out)
    check(f"  leak_big (peak.c:{want[0][0]})\n     leaked -4.88 KiB, peak 0 B, allocated 0 B, "
          "calls 0\n" in out, out)
    # with colour, less is green and more is red
    out = c.run([REPORT, "--diff", old.log, new.log, "--color", "always"]).stdout.decode()
    check("leaked \033[32m-4.88 KiB\033[0m, peak 0 B," in out, out)
    out = c.run([REPORT, "--diff", new.log, old.log, "--color", "always"]).stdout.decode()
    check("(\033[1;31m+5.18 KiB\033[0m)" in out, out)
    # the same log twice: nothing changed
    p = c.run([REPORT, "--diff", old.log, old.log])
    check("No site changed." in p.stdout.decode(), p.stdout.decode())
    p = c.run([REPORT, "--diff", c.path("missing.hlog"), new.log])
    check(p.returncode == 1, f"--diff of a missing log: exit {p.returncode}, want 1")
    one_line(p, "--diff of a missing log")


# ---- halloc-trace takes halloc-report's display options ----------------------

@case("trace-display")
def trace_display(c):
    from harness import parse_report, source, line_of
    src = source("peak")
    big, peak = line_of(src, "LEAK:big"), line_of(src, "PEAK:")
    # JSON on stderr: one document, nothing after it
    t = traced_peak(c, opts=("--format", "json", "--top", "1", "--no-stacks"))
    expect_rc(t, 0)
    proc = only_process(parse_report(t.err))
    check([x["site"]["line"] for x in proc["leaks"]] == [big], f"leaks {proc['leaks']}")
    check(proc["leaks"][0]["stack"] == [] and proc["leaks_omitted"]["leaks"] == 1, f"{proc}")
    t = traced_peak(c, opts=("--sort", "peak", "--top", "1", "--stacks", "1",
                             "--min-bytes", "1K"))
    expect_rc(t, 0)
    check(f"SITES by peak bytes (top 1 of 4):\n  1. build_peak (peak.c:{peak})" in t.err, t.err)
    check(re.search(r"\n  #0 leak_big [^\n]*\n  \.\.\. \d+ more frames\n", t.err), t.err)
    check("#1 " not in t.err and "log written to" in t.err, t.err)
    t = traced_peak(c, opts=("--process", "1"))
    check("warning: no process '1' in " in t.err and "LEAK" not in t.err, t.err)
    # a bad value is a usage error before the program runs
    for bad in (("--top", "0"), ("--format", "xml"), ("--stacks", "-1"), ("--color", "blue"),
                ("--sort", "size")):
        p = c.run([TRACE, "-o", c.path("bad.hlog"), *bad, "--", program("peak")])
        check(p.returncode == 2, f"{' '.join(bad)}: exit {p.returncode}, want 2")
        check(not os.path.exists(c.path("bad.hlog")), f"{' '.join(bad)}: the program ran")


# ---- colour on a terminal, and a width that fits it --------------------------

def on_terminal(c, argv, columns=None, env=None):
    """Runs argv with stdout and stderr on a pseudo-terminal of `columns`
    columns; returns (exit status, what it printed)."""
    import fcntl, pty, struct, subprocess, termios
    master, slave = pty.openpty()
    if columns:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    c.note("$ (on a terminal) " + " ".join(argv))
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                         env=env if env is not None else c.env())
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return p.wait(timeout=60), out.decode(errors="replace").replace("\r\n", "\n")


@case("color-width")
def color_width(c):
    t = traced_peak(c)
    expect_rc(t, 0)
    check("\033[" not in t.err, "colour on a pipe")
    rc, out = on_terminal(c, [REPORT, t.log])
    check(rc == 0 and "\033[1;31mLEAK 1:\033[0m" in out, out)
    for env in (c.env(NO_COLOR="1"),):
        rc, out = on_terminal(c, [REPORT, t.log], env=env)
        check(rc == 0 and "\033[" not in out, f"NO_COLOR: {out}")
    rc, out = on_terminal(c, [REPORT, "--color", "never", t.log])
    check("\033[" not in out, f"--color never: {out}")
    check("\033[" not in c.run([REPORT, "--no-color", t.log]).stdout.decode(), "--no-color")
    p = c.run([REPORT, "--color=always", t.log])
    check("\033[1;31mLEAK 1:\033[0m" in p.stdout.decode(), "--color=always on a pipe")
    check("\033[" not in c.run([REPORT, "--color=always", "--format", "json", t.log])
          .stdout.decode(), "colour in JSON")
    # halloc-trace colours its stderr when that is a terminal
    rc, out = on_terminal(c, [TRACE, "-o", c.path("tty.hlog"), "--", program("peak")])
    check(rc == 0 and "\033[1;31mLEAK 1:\033[0m" in out, out)

    # the sparkline fills the terminal's width; stack lines fit it
    spark = re.compile(r"\n(  heap over time:  )(\S+)(  \(max [^\n]*\))\n")
    for columns in (70, 120):
        rc, out = on_terminal(c, [REPORT, "--no-color", t.log], columns=columns)
        m = spark.search(out)
        check(m and sum(len(g) for g in m.groups()) == columns,
              f"{columns} columns: sparkline {m and m.group(0)!r}")
        frames = [l for l in out.splitlines() if l.startswith("  #")]
        check(frames and all(len(l) <= columns or "/" not in l for l in frames),
              f"{columns} columns: frames {frames}")
    # COLUMNS wins, also on a pipe; without either the layout is fixed
    out = c.run([REPORT, t.log], env=c.env(COLUMNS="60")).stdout.decode()
    m = spark.search(out)
    check(m and sum(len(g) for g in m.groups()) == 60, f"COLUMNS=60: {m and m.group(0)!r}")
    m = spark.search(c.run([REPORT, t.log]).stdout.decode())
    check(m and len(m.group(2)) == 50, "50 columns without a width")
