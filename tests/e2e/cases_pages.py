"""Page items and resident memory (issue 3's "Page items", issue 4's
halloc_saved_page_items), on programs/pages.c (its header holds the
truth): the program's own anonymous mmap/munmap/mremap and the heap blocks
glibc serves by mmap, by site, with exact sizes; RSS sampled from outside;
the in-process API of a program linked with -lhalloc.
"""
import os
import subprocess

from harness import (AGENT, BUILD, ROOT, Fail, case, check, compare, expect_rc,
                     line_of, only_process, program, report_json, same_file, source,
                     summary_of, trace, valgrind)
from cases_valgrind import agree

PAGE = 4096
HEAP_TRUTH = {"allocations": 4, "frees": 3, "bytes_allocated": 2248576,
              "leaked_bytes": 1048576, "leaked_blocks": 1}
# marker: (kind, count, bytes, pages, peak, at exit: bytes, pages, items)
SITES = {
    "MMAP:gone": ("mmap", 1, 65536, 16, 65536, 0, 0, 0),
    "MMAP:kept": ("mmap", 1, 40960, 10, 40960, 40960, 10, 1),
    "MMAP:grown": ("mmap", 1, 81920, 20, 81920, 81920, 20, 1),
    "MMAP:split": ("mmap", 1, 131072, 32, 131072, 98304, 24, 2),
    "HEAP:big1": ("heap", 1, 300000, 74, 300000, 0, 0, 0),
    "HEAP:big2": ("heap", 1, 1048576, 257, 1048576, 1048576, 257, 1),
    "HEAP:big3": ("heap", 1, 400000, 98, 400000, 0, 0, 0),
    "HEAP:grow": ("heap", 1, 500000, 123, 500000, 0, 0, 0),
}
PEAK = 65536 + 40960 + 81920 + 131072 + 300000 + 1048576 + 400000
AT_EXIT = (40960 + 81920 + 98304 + 1048576, 5)
TOUCHED = 40960 + 81920 + 1048576


def check_page_items(proc):
    src = source("pages")
    items = proc.get("page_items")
    check(isinstance(items, dict), f"no page_items object: {items!r}")
    compare("page_items", items, {"peak_bytes": PEAK, "mapped_at_exit_bytes": AT_EXIT[0],
                                  "mapped_at_exit_items": AT_EXIT[1]})
    sites = items["sites"]
    shown = [(s["kind"], os.path.basename(s["site"]["file"]), s["site"]["line"], s["bytes"])
             for s in sites]
    check(len(sites) == len(SITES), f"{len(sites)} page item sites, want {len(SITES)} "
          f"(a file mapping is not one): {shown}")
    for marker, want in SITES.items():
        line = line_of(src, marker)
        hits = [s for s in sites if s["site"]["line"] == line
                and same_file(s["site"]["file"], src)]
        check(len(hits) == 1, f"{marker} (pages.c:{line}): {len(hits)} sites; have {shown}")
        s = hits[0]
        got = (s["kind"], s["count"], s["bytes"], s["pages"], s["peak_bytes"],
               s["mapped_at_exit_bytes"], s["mapped_at_exit_pages"], s["mapped_at_exit_items"])
        check(got == want, f"{marker}: (kind, count, bytes, pages, peak, at exit bytes, "
              f"pages, items) {got}, want {want}")


def check_rss(proc):
    peak = proc["summary"].get("peak_rss_bytes")
    check(isinstance(peak, int) and peak >= TOUCHED,
          f"peak_rss_bytes {peak!r}, want at least the {TOUCHED} bytes it touched")
    check(peak < 1 << 30, f"peak_rss_bytes {peak} is not plausible")
    rss = [p.get("rss") for p in proc["timeline"]]
    check(all(r is None or isinstance(r, int) for r in rss), f"timeline rss: {rss[:5]}")
    known = [r for r in rss if r is not None]
    check(known, "no timeline point has an rss")
    check(max(known) <= peak, f"timeline rss {max(known)} above the peak {peak}")
    # once known, it stays known (the last sample holds until the next)
    first = rss.index(known[0])
    check(all(r is not None for r in rss[first:]), "timeline rss goes back to null")


@case("pages-trace")
def pages_trace(c):
    t = trace(c, [program("pages")])
    expect_rc(t, 0)
    proc = only_process(report_json(c, t.log))
    compare("pages heap summary", summary_of(proc), HEAP_TRUTH)
    check_page_items(proc)
    check_rss(proc)
    for text in ("PAGE ITEMS", "heap block by mmap at heap_blocks (pages.c:",
                 "mmap at map_split (pages.c:", "in 2 pieces", "peak RSS:",
                 "RSS over time:"):
        check(text in t.err, f"text report: no {text!r}")


@case("pages-valgrind")
def pages_valgrind(c):
    """Interposing mmap & co changes no heap total."""
    env = c.env()
    t = trace(c, [program("pages")], env=env)
    vp, found = valgrind(c, [program("pages")], env=env)
    check(len(found) == 1, f"valgrind printed {len(found)} heap summaries")
    agree("pages", summary_of(only_process(report_json(c, t.log))), next(iter(found.values())))


def build_linked(c):
    """pages.c built as a user of the API builds it: -lhalloc."""
    out = c.path("pages-api")
    lib = os.path.dirname(AGENT)
    cmd = ["gcc", "-O0", "-g", "-DHALLOC_LINKED", "-I", os.path.join(ROOT, "include"),
           "-o", out, source("pages"), "-L", lib, "-lhalloc", f"-Wl,-rpath,{lib}"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    check(p.returncode == 0, "cannot build pages.c with -lhalloc: " + p.stderr.strip()[-300:])
    return out


@case("pages-api")
def pages_api(c):
    exe = build_linked(c)
    p = c.run([exe])
    err = p.stderr.decode(errors="replace")
    check(p.returncode == 0, f"linked pages exited {p.returncode}: {err.strip()[-400:]}")
    lines = err.splitlines()
    check(lines and lines[0].startswith("halloc: page items: 5 mapped: 1,269,760 bytes in 311 pages"),
          f"halloc_print_saved_page_items said {lines[:1]}")
    check(sum(ln.startswith("  heap block ") for ln in lines) == 1 and
          sum(ln.startswith("  mmap ") for ln in lines) == 4, f"items printed: {lines[1:]}")
    # the same under halloc-trace: the registry does not depend on recording
    t = trace(c, [exe])
    check(t.rc == 0, f"traced linked pages exited {t.rc}: {t.err.strip()[-400:]}")
    check_page_items_linked(only_process(report_json(c, t.log)))


def check_page_items_linked(proc):
    items = proc["page_items"]
    compare("page_items (linked)", items, {"peak_bytes": PEAK,
                                           "mapped_at_exit_bytes": AT_EXIT[0]})
