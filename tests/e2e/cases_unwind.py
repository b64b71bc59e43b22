"""The agent's unwind memo (agent/unwind.c): walks shortened by the last walk
of the thread must equal full walks, through recursion, longjmp, signal
handlers and threads.
"""
from harness import (case, check, expect_rc, only_process, program, report_json, source,
                     line_of, trace)


@case("unwind-memo")
def unwind_memo(c):
    prog = program("unwindmemo")
    t = trace(c, [prog], env=c.env(HALLOC_UNWIND_CHECK="1"))
    expect_rc(t, 0)
    check("unwind memo disagrees" not in t.err, "the memo disagreed with a full walk")
    proc = only_process(report_json(c, t.log))
    src = source("unwindmemo")
    # Leaks group by site (leaf): both blocks, the stack through keep_a or keep_b.
    lines = {line_of(src, "LINE:keep_a"), line_of(src, "LINE:keep_b")}
    hits = [lk for lk in proc["leaks"]
            if any(f["line"] in lines and f["file"].endswith("unwindmemo.c") for f in lk["stack"])]
    check(len(hits) == 1 and (hits[0]["bytes"], hits[0]["blocks"]) == (300, 2),
          f"leaks through keep_a/keep_b: {[(lk['bytes'], lk['blocks']) for lk in hits]}, "
          "want 300 bytes in 2 blocks")
    # 3 threads x 3000 rounds x (3 recursions + 1 jump) + 3 x 60 signals, at least
    check(proc["summary"]["allocations"] >= 3 * (3000 * 4 + 60),
          f"{proc['summary']['allocations']} allocations, want at least {3 * (3000 * 4 + 60)}")
    # Walks the depth limit stops are remembered too, their memo good only
    # for walks with no more room than they had.
    for depth in ("6", "30"):
        t = trace(c, [prog], ["--depth", depth], env=c.env(HALLOC_UNWIND_CHECK="1"))
        expect_rc(t, 0)
        check("unwind memo disagrees" not in t.err,
              f"the memo disagreed with a full walk at --depth {depth}")
