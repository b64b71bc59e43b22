"""The in-process API (issue 4) end to end: halloc-trace --limit on a
program that handles NULL and on one that does not, typed allocations in
the report, and the bundled example's output. Truths are in the programs'
headers (programs/budget.c, programs/typed.c, examples/typed.c).
"""
import os

from harness import (EXAMPLES, ROOT, TRACE, Fail, case, check, compare, expect_rc, line_of,
                     only_process, program, report_json, source, trace)

MIB = 1 << 20


@case("limit-careful")
def limit_careful(c):
    t = trace(c, [program("budget"), "careful"], opts=("--limit", "8M"))
    expect_rc(t, 0)
    check(t.out == "8\n", f"the program got {t.out.strip()!r} blocks, want 8")
    proc = only_process(report_json(c, t.log))
    compare("summary", proc["summary"], {
        "allocations": 8, "frees": 8, "bytes_allocated": 8 * MIB,
        "peak_bytes": 8 * MIB, "leaked_bytes": 0, "failed_allocations": 0})
    # without a limit, all 64 fit
    t = trace(c, [program("budget"), "careful"])
    expect_rc(t, 0)
    check(t.out == "64\n", f"without --limit: {t.out.strip()!r} blocks, want 64")


@case("limit-careless")
def limit_careless(c):
    t = trace(c, [program("budget"), "careless"], opts=("--limit", "8388608"))
    expect_rc(t, 128 + 11)
    proc = only_process(report_json(c, t.log))
    check(proc["status"] == {"signal": 11}, f"status {proc['status']}, want SIGSEGV")
    compare("summary", proc["summary"], {
        "allocations": 8, "frees": 0, "leaked_bytes": 8 * MIB, "leaked_blocks": 8})
    src = source("budget")
    check([leak["site"]["line"] for leak in proc["leaks"]] == [line_of(src, "BUDGET:take")],
          f"leaks {proc['leaks']}")


@case("limit-usage")
def limit_usage(c):
    for bad in ("0", "8X", "-1", "1.5M", ""):
        p = c.run([TRACE, "--limit", bad, "--", program("budget")])
        check(p.returncode == 2, f"--limit {bad!r}: exit {p.returncode}, want 2")
        err = p.stderr.decode(errors="replace")
        check(f"invalid limit '{bad}'" in err, f"--limit {bad!r}: {err.strip()[:200]}")


@case("types")
def types(c):
    t = trace(c, [program("typed")])
    expect_rc(t, 0)
    src = source("typed")
    proc = only_process(report_json(c, t.log))
    compare("summary", proc["summary"], {
        "allocations": 7, "frees": 6, "bytes_allocated": 372,
        "leaked_bytes": 48, "leaked_blocks": 1})
    got = {ty["type"]: ty for ty in proc["types"]}
    check(set(got) == {"struct point", "struct node"}, f"types {sorted(got)}")
    compare("struct point", got["struct point"], {
        "object_size": 16, "allocations": 2, "objects": 13, "bytes": 208,
        "peak_bytes": 208, "leaked_bytes": 48, "leaked_blocks": 1})
    compare("struct node", got["struct node"], {
        "object_size": 16, "allocations": 4, "objects": 4, "bytes": 64,
        "peak_bytes": 64, "leaked_bytes": 0, "leaked_blocks": 0})
    sites = [(s["file"], s["line"], s["allocations"], s["objects"], s["bytes"])
             for s in got["struct point"]["sites"]]
    check(sites == [(src, line_of(src, "TYPED:points"), 1, 10, 160),
                    (src, line_of(src, "TYPED:more"), 1, 3, 48)],
          f"struct point sites {sites}")
    sites = [(s["file"], s["line"], s["allocations"]) for s in got["struct node"]["sites"]]
    check(sites == [(src, line_of(src, "TYPED:nodes"), 4)], f"struct node sites {sites}")
    compare("size classes", {"classes": proc["size_classes"]}, {"classes": [
        {"min": 64, "max": 127, "allocations": 1, "bytes": 100, "peak_bytes": 100,
         "leaked_bytes": 0, "leaked_blocks": 0}]})
    want = (f"MEMORY USAGE BY TYPE (halloc() allocations):\n"
            f"  struct point: 13 objects in 2 allocations, 208 B, peak 208 B, leaked 48 B\n"
            f"    {src}:{line_of(src, 'TYPED:points')}: 1 allocation, 10 objects, 160 B\n")
    check(want in t.err, f"text report lacks {want!r}")


@case("diff-types")
def diff_types(c):
    """--diff compares types by name: programs/typed.c against the bundled
    example, whose only type is struct particle (10 x 56 bytes, freed)."""
    import json
    from harness import REPORT
    old = trace(c, [program("typed")])
    new = trace(c, [os.path.join(EXAMPLES, "typed")])
    expect_rc(old, 0)
    expect_rc(new, 0)
    p = c.run([REPORT, "--diff", old.log, new.log, "--format", "json"])
    check(p.returncode == 0, f"--diff: exit {p.returncode}: {p.stderr!r}")
    got = {t["type"]: (t["leaked_bytes"]["change"], t["peak_bytes"]["change"],
                       t["bytes_allocated"]["change"], t["allocations"]["change"])
           for t in json.loads(p.stdout)["types"]}
    want = {"struct point": (-48, -208, -208, -2), "struct node": (0, -64, -64, -4),
            "struct particle": (0, 560, 560, 1)}
    check(got == want, f"types {got}, want {want}")
    out = c.run([REPORT, "--diff", old.log, new.log]).stdout.decode()
    want = ("\nTYPES that changed, largest change first:\n  struct particle\n"
            "     leaked 0 B, peak +560 B, allocated +560 B, calls +1\n")
    check(want in out, f"text diff lacks {want!r}:\n{out}")


@case("example-typed")
def example_typed(c):
    """examples/typed.c: its output is the one README.md shows."""
    exe = os.path.join(EXAMPLES, "typed")
    if not os.path.exists(exe):
        raise Fail("build/examples/typed is not built (run make)")
    p = c.run([exe])
    check(p.returncode == 0, f"exit {p.returncode}")
    err = p.stderr.decode(errors="replace")
    readme = open(os.path.join(ROOT, "README.md")).read()
    shown = "".join("    " + line + "\n" for line in err.splitlines())
    check(err and shown in readme, f"README.md does not show the example's output:\n{err}")
    t = trace(c, [exe])
    expect_rc(t, 0)
    # the report's section, as README.md shows it (indented 4 more)
    lines = t.err.splitlines()
    at = lines.index("MEMORY USAGE BY TYPE (halloc() allocations):") if \
        "MEMORY USAGE BY TYPE (halloc() allocations):" in lines else None
    check(at is not None, "the trace's report has no MEMORY USAGE BY TYPE")
    shown = "".join("    " + line + "\n" for line in lines[at:at + 3])
    check(shown in readme, f"README.md does not show the report's section:\n{shown}")


@case("stats-off")
def stats_off(c):
    """A program that does not link libhalloc pays no accounting: the
    statistics say ENOSYS, traced (agent preloaded) or with libhalloc
    loaded by dlopen."""
    from harness import AGENT
    t = trace(c, [program("stats_off")])
    expect_rc(t, 0)
    check(t.out == "off\n", f"traced: {t.out!r}")
    p = c.run([program("stats_off"), AGENT])
    check(p.returncode == 0 and p.stdout == b"off\n",
          f"dlopen: exit {p.returncode}, {p.stdout!r}")
