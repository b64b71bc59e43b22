"""halloc-trace --sample (issue 6): estimates from a sampled run against
the exact run of the same program (programs/sampled.c, deterministic), big
leaks found, the report saying it is sampled, bad intervals refused.
"""
import os

from harness import (TRACE, case, check, expect_leak, expect_rc, leaks_at, line_of,
                     log_bytes, only_process, program, report_json, source, trace)

BIG = 1 << 20
BIG_BLOCKS = 4


def within(what, got, want, tolerance=0.05):
    check(abs(got - want) <= tolerance * want,
          f"{what}: estimate {got}, exact {want} (off by {abs(got - want) / want:.1%}, "
          f"more than {tolerance:.0%})")


@case("sample-estimates")
def sample_estimates(c):
    exact = trace(c, [program("sampled")], ("-q",))
    expect_rc(exact, 0)
    sampled = trace(c, [program("sampled")], ("-q", "--sample", "4096"))
    expect_rc(sampled, 0)
    e_doc, s_doc = report_json(c, exact.log), report_json(c, sampled.log)
    check(e_doc.get("sampled", "absent") is None, f"exact run: sampled {e_doc.get('sampled')!r}")
    check(s_doc.get("sampled") == {"interval": 4096}, f"sampled {s_doc.get('sampled')!r}")
    e, s = only_process(e_doc)["summary"], only_process(s_doc)["summary"]
    check(e["allocations"] >= 200000, f"exact run: {e['allocations']} allocations")
    for key in ("allocations", "frees", "bytes_allocated"):
        within(key, s[key], e[key])
    # 1 MiB blocks at a 4 KiB interval: sampled for sure, each one block.
    proc = only_process(s_doc)
    expect_leak(proc, source("sampled"), "LEAK:big", BIG * BIG_BLOCKS, BIG_BLOCKS, "leak_big")
    check(s["leaked_bytes"] >= BIG * BIG_BLOCKS, f"leaked_bytes {s['leaked_bytes']}")
    # The log is much smaller: most events are not in it.
    check(os.path.getsize(sampled.log) < os.path.getsize(exact.log) / 2,
          f"sampled log {os.path.getsize(sampled.log)} bytes, exact {os.path.getsize(exact.log)}")


@case("sample-report-and-gates")
def sample_report_and_gates(c):
    # 64K: the four 1 MiB blocks are sampled for sure (p = 1 - e^-16),
    # each one block; the churn frees all it allocates.
    t = trace(c, [program("sampled")], ("--sample", "64K", "--max-leaked", "3M"))
    expect_rc(t, 1)
    check("sampled: one allocation per 64.0 KiB on average" in t.err,
          f"no 'sampled:' line in the report: {t.err[:400]!r}")
    check("gate failed" in t.err, f"stderr {t.err[-300:]!r}")
    ok = trace(c, [program("sampled")], ("-q", "--sample", "64K", "--max-leaked", "5M"))
    expect_rc(ok, 0)


def frame_types(path):
    """The types of a log's frames, in order (include/halloc/log.h)."""
    data, at, types = log_bytes(path), 16, []
    while at + 8 <= len(data):
        length = int.from_bytes(data[at:at + 4], "little")
        types.append(int.from_bytes(data[at + 4:at + 6], "little"))
        at += 8 + length
    return types


@case("sample-no-symbols")
def sample_no_symbols(c):
    SYMBOLS = 4
    t = trace(c, [program("sampled")], ("-q", "--sample", "64K", "--no-symbols"))
    expect_rc(t, 0)
    types = frame_types(t.log)
    check(types and types[-1] == 5 and SYMBOLS not in types, f"frame types {types}")
    # The report finds the sites in the binary on disk. At 64K a 1 MiB
    # block stands for 1 + 1e-7 blocks: its bytes may round up by one.
    proc = only_process(report_json(c, t.log))
    nbytes, blocks, functions = leaks_at(proc, source("sampled"),
                                         line_of(source("sampled"), "LEAK:big"))
    check(blocks == BIG_BLOCKS and functions == {"leak_big"},
          f"LEAK:big: {blocks} blocks in {functions}, want {BIG_BLOCKS} in leak_big")
    within("LEAK:big bytes", nbytes, BIG * BIG_BLOCKS, 1e-5)
    withsym = trace(c, [program("sampled")], ("-q", "--sample", "64K"))
    check(SYMBOLS in frame_types(withsym.log), "no SYMBOLS frame without --no-symbols")


@case("sample-bad-interval")
def sample_bad_interval(c):
    for bad, why in (("0", "invalid sample interval '0'"), ("x", "invalid sample interval 'x'"),
                     ("2G", "invalid sample interval '2G'"), ("-1", "invalid sample interval")):
        p = c.run([TRACE, "--sample", bad, "--", "true"])
        check(p.returncode == 2, f"--sample {bad}: exit {p.returncode}, want 2")
        first = p.stderr.decode(errors="replace").splitlines()[:1]
        check(first and first[0].startswith("halloc-trace: ") and why in first[0],
              f"--sample {bad}: {p.stderr!r}")
    p = c.run([TRACE, "--sample", "1K", "--bpf", "--", "true"])
    check(p.returncode == 2, f"--sample with --bpf: exit {p.returncode}, want 2")
    check(b"'--sample' cannot be used with --bpf" in p.stderr, repr(p.stderr))
