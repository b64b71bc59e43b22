"""What halloc's reports must agree with outside the tool: heaptrack's
numbers for the same runs, and the report of the bundled example that
README.md shows.

heaptrack (1.4) counts like halloc with two differences, both from
libstdc++'s emergency exception pool (72,704 bytes on gcc 12 / x86_64,
allocated by libstdc++'s static initialisation):
  - heaptrack's own preload library is C++, so libstdc++ is loaded, and
    allocates its pool, in every program it traces, C programs too: one
    allocation and 72,704 bytes of peak more than halloc sees in a C program;
  - at exit heaptrack calls __gnu_cxx::__freeres(), which frees the pool,
    so a C++ program's pool is not leaked for heaptrack, while halloc (like
    `valgrind --run-cxx-freeres=no`) reports what the program left.
heaptrack does not count its own allocations. heaptrack_print rounds: sizes
above 1000 bytes are divided by 1000 (not 1024) while above 1000, and
printed with two decimals and K, M, G ("178.00K"); 1000 bytes or fewer print
exact ("225B"). Numbers are compared within half the printed last digit.
"""
import glob
import os
import re
import shutil

from harness import (EXAMPLES, ROOT, TRACE, Fail, Skip, case, check, expect_rc, only_process,
                     program, report_json, trace)

POOL_BYTES = 72704

_UNITS = {"B": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def heaptrack_size(text):
    """heaptrack_print's "178.00K" -> (bytes, tolerance)."""
    m = re.fullmatch(r"(-?\d+(?:\.(\d+))?)([BKMGT])", text)
    if not m:
        raise Fail(f"heaptrack_print size {text!r} not understood")
    scale = _UNITS[m.group(3)]
    if scale == 1:
        return int(m.group(1)), 0
    decimals = len(m.group(2) or "")
    return float(m.group(1)) * scale, scale / 10**decimals / 2


def heaptrack_run(c, argv):
    """Runs argv under heaptrack; returns heaptrack_print's numbers."""
    if not shutil.which("heaptrack") or not shutil.which("heaptrack_print"):
        raise Skip("heaptrack is not installed (scripts/install-deps.sh installs it)")
    out = c.path("heaptrack." + os.path.basename(argv[0]))
    p = c.run(["heaptrack", "-o", out, *argv])
    files = glob.glob(out + ".*")
    check(p.returncode == 0 and files, f"heaptrack: exit {p.returncode}, files {files}: "
          + p.stderr.decode(errors="replace")[-300:])
    p = c.run(["heaptrack_print", files[0]])
    check(p.returncode == 0, f"heaptrack_print: exit {p.returncode}")
    text = p.stdout.decode(errors="replace")

    def field(label, pattern=r"(\S+)"):
        m = re.search(r"^" + label + r": " + pattern, text, re.M)
        check(m, f"heaptrack_print says no {label!r}:\n{text[-600:]}")
        return m.group(1)

    # the pool, among the peak's largest contributors (libstdc++'s init)
    pool = re.search(r"^(\S+) peak memory consumed over (\d+) calls from\n[^\n]*\n"
                     r"(?:  at [^\n]*\n)?  in [^\n]*/libstdc\+\+\.so[^\n]*\n", text, re.M)
    return {"calls": int(field("calls to allocation functions", r"(\d+)")),
            "peak": heaptrack_size(field("peak heap memory consumption")),
            "leaked": heaptrack_size(field("total memory leaked")),
            "pool": heaptrack_size(pool.group(1)) if pool else None,
            "pool_calls": int(pool.group(2)) if pool else 0,
            "text": text}


def near(what, got, want):
    value, tolerance = got
    check(abs(value - want) <= tolerance,
          f"{what}: heaptrack says {value:g} (+-{tolerance:g}), halloc implies {want}")


def halloc_pool(proc):
    """Bytes of libstdc++'s emergency pool halloc saw leak (0 in C)."""
    return sum(l["bytes"] for l in proc["leaks"]
               if l["site"]["module"].split("/")[-1].startswith("libstdc++.so")
               and any(f["function"] == "_dl_init" for f in l["stack"]))


def agree(c, argv):
    t = trace(c, argv)
    expect_rc(t, 0)
    proc = only_process(report_json(c, t.log))
    s = proc["summary"]
    h = heaptrack_run(c, argv)
    c.note(f"halloc {s['allocations']} / {s['peak_bytes']} / {s['leaked_bytes']}; heaptrack "
           f"{h['calls']} / {h['peak']} / {h['leaked']}; pool {h['pool']}")
    check(h["pool"] is not None and h["pool_calls"] == 1,
          "heaptrack shows no libstdc++ pool among the peak's contributors:\n"
          + h["text"][:1500])
    near("libstdc++'s pool", h["pool"], POOL_BYTES)
    cxx_pool = halloc_pool(proc)
    check(cxx_pool in (0, POOL_BYTES), f"halloc's libstdc++ pool leak is {cxx_pool} bytes")
    extra = 0 if cxx_pool else POOL_BYTES  # a C program: only heaptrack has the pool
    check(h["calls"] == s["allocations"] + (1 if extra else 0),
          f"heaptrack counts {h['calls']} calls, halloc {s['allocations']} allocations")
    near("peak heap", h["peak"], s["peak_bytes"] + extra)
    near("leaked", h["leaked"], s["leaked_bytes"] - cxx_pool)


@case("heaptrack-peak")
def heaptrack_peak(c):
    agree(c, [program("peak")])


@case("heaptrack-leaky")
def heaptrack_leaky(c):
    agree(c, [os.path.join(EXAMPLES, "leaky")])


@case("heaptrack-cxx")
def heaptrack_cxx(c):
    agree(c, [program("cxx")])



# ---- README.md's report of the bundled example -------------------------------

README = os.path.join(ROOT, "README.md")
README_INTRO = "Its report, on stderr:"

# What changes from run to run, in both texts.
_VOLATILE = [
    (re.compile(r"process \d+ "), "process PID "),
    (re.compile(r"\b\d+(?:\.\d+)? (?:us|ms|s)\b"), "TIME"),
    (re.compile(r"[\d,]+ allocations/s"), "RATE allocations/s"),
    (re.compile(r"(  heap over time:  )\S+"), r"\1SPARKLINE"),
    (re.compile(r"log written to \S+"), "log written to LOG"),
]


_FIX = "(scripts/update-readme-example rewrites README.md's example)"
_CLOCK_LINES = ("  allocation rate: ", "  heap over time:  ")
# sampled by halloc-trace every 10 ms: a run as short as the example's may
# have no sample, or one
_SAMPLED_LINES = ("  peak RSS:        ", "  RSS over time:   ")


def normalized(lines):
    out = []
    for line in lines:
        for pattern, repl in _VOLATILE:
            line = pattern.sub(repl, line)
        out.append(line.rstrip())
    return out


def readme_example():
    """The indented block after README_INTRO: the report as README shows it."""
    with open(README, encoding="utf-8") as f:
        lines = f.read().splitlines()
    try:
        start = next(i for i, l in enumerate(lines) if l.strip().endswith(README_INTRO)) + 1
    except StopIteration:
        raise Fail(f"README.md has no line ending in {README_INTRO!r}")
    while start < len(lines) and not lines[start].strip():
        start += 1
    block = []
    for line in lines[start:]:
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    while block and not block[-1]:
        block.pop()
    return block


@case("readme-example")
def readme_example_case(c):
    """`make example`'s report, as README.md shows it: paths relative to the
    repository (where `make example` runs), pids, times and the sparkline
    aside."""
    leaky = os.path.relpath(os.path.join(EXAMPLES, "leaky"), ROOT)
    p = c.run([TRACE, "-o", c.path("leaky.hlog"), leaky], cwd=ROOT)
    check(p.returncode == 0, f"{leaky}: exit {p.returncode}")
    err = p.stderr.decode(errors="replace").replace(ROOT + "/", "")
    got = [g for g in normalized(err.splitlines()) if not g.startswith(_SAMPLED_LINES)]
    want = [w for w in normalized(readme_example()) if not w.startswith(_SAMPLED_LINES)]
    check(len(want) > 20, f"README.md shows only {len(want)} lines of the report")
    i = 0
    for k, w in enumerate(want):
        g = got[i] if i < len(got) else None
        # a run within one tick of the agent's coarse clock (4 ms) has no
        # rate and no heap over time: README's lines for them may be absent
        if g != w and w.startswith(_CLOCK_LINES):
            continue
        check(g == w, f"README.md's example, line {k + 1}:\n  README: {w!r}\n  now:    {g!r}"
              f"\n{_FIX}")
        i += 1
    check(i == len(got), f"the report has lines README.md does not show: {got[i:]}\n{_FIX}")
