"""What every end-to-end case needs: building the test programs, running
halloc-trace, halloc-report and Valgrind, checking a JSON report's shape.

A case is a function of a Case (its temp dir and notes) that raises Fail
or Skip; returning is passing. Truths come from the test programs' own
comments and are recomputed here, never read back from the tool under test.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# `make BUILD=dir check` exports BUILD to this script, as make does with
# every variable set on its command line.
BUILD = os.path.join(ROOT, os.environ.get("BUILD", "build"))
TRACE = os.path.join(BUILD, "bin", "halloc-trace")
REPORT = os.path.join(BUILD, "bin", "halloc-report")
AGENT = os.path.join(BUILD, "lib", "libhalloc.so")
EXAMPLES = os.path.join(BUILD, "examples")
OUT = os.path.join(BUILD, "tests", "e2e")
PROGRAMS = os.path.join(HERE, "programs")
LIBS = os.path.join(HERE, "libs")
DATA = os.path.join(HERE, "data")

# Debian's /usr/bin/valgrind is a script that adds LD_LIBRARY_PATH,
# GLIBCXX_FORCE_NEW and GLIBCPP_FORCE_NEW to the program's environment;
# the binary behind it runs the program with the environment it is given,
# as halloc-trace does.
VALGRIND = next((v for v in ("/usr/bin/valgrind.bin", shutil.which("valgrind"))
                 if v and os.access(v, os.X_OK)), None)

SUMMARY_KEYS = ("allocations", "frees", "bytes_allocated", "peak_bytes",
                "peak_blocks", "leaked_bytes", "leaked_blocks")
# "unknown": a reason this build does not know (a newer log, or damage)
REFUSAL_REASONS = ("monitor", "limit", "fail-after", "fail-rate", "fail-at", "unknown")
VALGRIND_KEYS = ("allocations", "frees", "bytes_allocated", "leaked_bytes",
                 "leaked_blocks")


CASES = []   # (name, function), in the order they are defined


def case(name):
    """Register a case: a function of a Case that raises Fail or Skip."""
    def register(fn):
        CASES.append((name, fn))
        return fn
    return register


class Fail(Exception):
    pass


class Skip(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Fail(message)


def compare(what, got, want):
    """Fail listing every key of `want` that `got` does not match."""
    bad = [f"{k} {got.get(k)!r} != {v!r}" for k, v in want.items() if got.get(k) != v]
    if bad:
        raise Fail(f"{what}: " + ", ".join(bad))


class Case:
    """One case's scratch directory and the notes -v prints."""

    def __init__(self, name, keep=False):
        self.name = name
        self.keep = keep
        self.notes = []
        self.tmp = tempfile.mkdtemp(prefix=f"halloc-e2e-{name}-")
        self._n = 0

    def path(self, name):
        return os.path.join(self.tmp, name)

    def fresh(self, stem, ext):
        self._n += 1
        return self.path(f"{stem}-{self._n}{ext}")

    def note(self, text):
        self.notes.append(text)

    def cleanup(self):
        if self.keep:
            self.note(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def env(self, **extra):
        """The environment every traced or valgrind'ed program gets."""
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": self.tmp,
               "LANG": "C.UTF-8", "TMPDIR": self.tmp}
        env.update(extra)
        return env

    def run(self, argv, stdin=None, env=None, timeout=120, cwd=None):
        """Run argv; returns CompletedProcess with bytes stdout/stderr."""
        self.note("$ " + " ".join(argv) + (f" < {stdin}" if stdin else ""))
        if os.path.isabs(argv[0]) and not os.path.exists(argv[0]):
            raise Fail(f"{shown(argv[0])} is not built (run make)")
        fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
        try:
            p = subprocess.run(argv, stdin=fin, capture_output=True, cwd=cwd, timeout=timeout,
                               env=env if env is not None else self.env())
        except subprocess.TimeoutExpired:
            raise Fail(f"timed out after {timeout}s: {' '.join(argv)}")
        finally:
            if stdin:
                fin.close()
        err = p.stderr.decode(errors="replace")
        self.note(f"  exit {p.returncode}; stderr {len(err.splitlines())} lines"
                  + (":\n    " + "\n    ".join(err.splitlines()[:40]) if err else ""))
        return p


# ---- building the programs under test --------------------------------------

_built = {}   # name -> path, or an error message (str starting with "!")


def _cflags_of(src):
    """Extra flags a source asks for with a line `/* e2e-cflags: ... */`;
    $OUT is where the programs and libs/ are built (to link a lib)."""
    with open(src) as f:
        for line in f:
            m = re.search(r"e2e-cflags:\s*(.*?)\s*\*/", line)
            if m:
                return m.group(1).replace("$OUT", OUT).split()
    return []


def _link_flags_of(src):
    """A source whose header says `e2e-link: halloc` links libhalloc, the
    in-process API, as a program does."""
    with open(src) as f:
        if "e2e-link: halloc" not in f.read(2000):
            return []
    lib = os.path.join(BUILD, "lib")
    return ["-I" + os.path.join(ROOT, "include"), "-L" + lib, "-lhalloc",
            "-Wl,-rpath," + lib]


def _compile(cmd, out):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return "!" + (p.stderr.strip().splitlines() or ["compiler failed"])[-1]
    return out


def _up_to_date(out, src):
    return os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(src)


def build_all():
    """Compile libs/*.c, then programs/*.c and *.cc into build/tests/e2e/.

    -O0 -g and nothing about frame pointers: the programs are traced the
    way users build them (deep.c asks for -fomit-frame-pointer itself).
    """
    os.makedirs(OUT, exist_ok=True)
    # libs first: a program may link one (e2e-cflags: -L$OUT -lNAME)
    for src in sorted(glob.glob(os.path.join(LIBS, "*.c"))):
        name = os.path.splitext(os.path.basename(src))[0]
        out = os.path.join(OUT, f"lib{name}.so")
        if _up_to_date(out, src):
            _built["lib" + name] = out
            continue
        _built["lib" + name] = _compile(["gcc", "-shared", "-fPIC", "-O0", "-g",
                                         "-o", out, src], out)
    for src in sorted(glob.glob(os.path.join(PROGRAMS, "*.c")) +
                      glob.glob(os.path.join(PROGRAMS, "*.cc"))):
        name, ext = os.path.splitext(os.path.basename(src))
        if name.startswith("bpf_"):
            continue  # tests/e2e/bpf_run builds and runs those
        out = os.path.join(OUT, name)
        cc = "g++" if ext == ".cc" else "gcc"
        if _up_to_date(out, src):
            _built[name] = out
            continue
        # flags after the source: a -l there must follow what uses it
        _built[name] = _compile([cc, "-O0", "-g", "-o", out, src, *_cflags_of(src),
                                 *_link_flags_of(src), "-pthread", "-ldl"], out)


def program(name):
    """Path of a built test program (or lib<name>); Fail if it did not build."""
    path = _built.get(name)
    if path is None:
        raise Fail(f"no test program '{name}'")
    if path.startswith("!"):
        raise Fail(f"cannot build '{name}': {path[1:]}")
    return path


def source(name):
    for d, ext in ((PROGRAMS, ".c"), (PROGRAMS, ".cc"), (LIBS, ".c")):
        p = os.path.join(d, name + ext)
        if os.path.exists(p):
            return p
    raise Fail(f"no source for '{name}'")


def line_of(src, marker):
    """The one line of src with the comment `/* marker */` (e.g. LEAK:calloc),
    or holding marker if it starts with "/*". Header comments may name a
    marker; only the code carries the comment."""
    if not marker.startswith("/*"):
        marker = f"/* {marker} */"
    with open(src) as f:
        hits = [i for i, text in enumerate(f, 1) if marker in text]
    if len(hits) != 1:
        raise Fail(f"{os.path.basename(src)}: marker '{marker}' on {len(hits)} lines")
    return hits[0]


# ---- halloc-trace and halloc-report -------------------------------------------

def shown(path):
    """path relative to the repository when it is inside it."""
    rel = os.path.relpath(path, ROOT)
    return path if rel.startswith("..") else rel


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def log_bytes(path):
    """The bytes of the log at path, decompressed when halloc-trace compressed it
    (zstd frames, analyzer/log_source.h), through libzstd itself."""
    import ctypes
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(ZSTD_MAGIC):
        return data

    class Buf(ctypes.Structure):
        _fields_ = [("ptr", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]
    z = ctypes.CDLL("libzstd.so.1")
    z.ZSTD_createDCtx.restype = ctypes.c_void_p
    z.ZSTD_decompressStream.restype = ctypes.c_size_t
    z.ZSTD_decompressStream.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    z.ZSTD_isError.argtypes = [ctypes.c_size_t]
    z.ZSTD_freeDCtx.argtypes = [ctypes.c_void_p]
    dctx = z.ZSTD_createDCtx()
    src = ctypes.create_string_buffer(data, len(data))
    out = ctypes.create_string_buffer(1 << 20)
    inb, parts = Buf(ctypes.cast(src, ctypes.c_void_p), len(data), 0), []
    while True:
        ob = Buf(ctypes.cast(out, ctypes.c_void_p), len(out), 0)
        ret = z.ZSTD_decompressStream(dctx, ctypes.byref(ob), ctypes.byref(inb))
        if z.ZSTD_isError(ret):
            z.ZSTD_freeDCtx(dctx)
            raise Fail(f"{path}: zstd cannot decompress it")
        parts.append(out.raw[:ob.pos])
        if inb.pos == inb.size and ob.pos < len(out):
            break
    z.ZSTD_freeDCtx(dctx)
    return b"".join(parts)


def need_tools():
    for tool in (TRACE, REPORT, AGENT):
        if not os.path.exists(tool):
            raise Fail(f"{shown(tool)} is not built (run make)")


class Traced:
    def __init__(self, proc, log):
        self.rc = proc.returncode
        self.out = proc.stdout.decode(errors="replace")
        self.err = proc.stderr.decode(errors="replace")
        self.log = log


def trace(case, argv, opts=(), stdin=None, env=None, timeout=120):
    """halloc-trace -o LOG OPTS -- ARGV."""
    need_tools()
    log = case.fresh("trace", ".hlog")
    p = case.run([TRACE, "-o", log, *opts, "--", *argv], stdin=stdin, env=env, timeout=timeout)
    check(p.returncode >= 0, f"halloc-trace killed by signal {-p.returncode}")
    check(os.path.exists(log), f"halloc-trace wrote no log (exit {p.returncode}): "
          + p.stderr.decode(errors="replace").strip()[-300:])
    return Traced(p, log)


def report_json(case, log):
    """halloc-report --format json LOG: exit 0, parsed and shape-checked."""
    need_tools()
    p = case.run([REPORT, "--format", "json", log])
    check(p.returncode == 0, f"halloc-report --format json exited {p.returncode}: "
          + p.stderr.decode(errors="replace").strip()[:300])
    return parse_report(p.stdout)


def parse_report(raw):
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise Fail(f"halloc-report output is not JSON: {e}")
    check_shape(doc)
    return doc


def _typed(obj, key, types, where):
    check(isinstance(obj, dict), f"{where}: not an object")
    check(key in obj, f"{where}: no key '{key}'")
    value = obj[key]
    types = types if isinstance(types, tuple) else (types,)
    # bool is an int to isinstance; JSON true is never a count
    ok = isinstance(value, types) and (bool in types or not isinstance(value, bool))
    check(ok, f"{where}.{key}: {type(value).__name__} {value!r}")
    return value


def _check_site(site, where):
    _typed(site, "function", str, where)
    _typed(site, "file", str, where)
    check(_typed(site, "line", int, where) >= 0, f"{where}.line negative")


def check_shape(doc):
    """The report shape CONTEXT.md fixes, with types, and the sums it implies."""
    check(_typed(doc, "format", str, "report") == "halloc-report", "format is not halloc-report")
    check(_typed(doc, "version", int, "report") == 1, "version is not 1")
    for i, p in enumerate(_typed(doc, "processes", list, "report")):
        w = f"processes[{i}]"
        _typed(p, "pid", int, w)
        _typed(p, "parent", (int, type(None)), w)
        cmd = _typed(p, "command", list, w)
        check(all(isinstance(a, str) for a in cmd), f"{w}.command: not all strings")
        complete = _typed(p, "complete", bool, w)
        status = _typed(p, "status", (dict, type(None)), w)
        # {"exit": n} or {"signal": n}; null or {} when the end is unknown
        # (a descendant reaped by its own parent, a truncated log)
        check(not status or (len(status) == 1 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in status.values())),
            f"{w}.status: {status!r}")
        s = _typed(p, "summary", dict, w)
        for k in SUMMARY_KEYS:
            check(_typed(s, k, int, w + ".summary") >= 0, f"{w}.summary.{k} negative")
        check(s["peak_bytes"] >= s["leaked_bytes"] or not complete,
              f"{w}: peak_bytes {s['peak_bytes']} < leaked_bytes {s['leaked_bytes']}")
        lb = lk = 0
        for j, leak in enumerate(_typed(p, "leaks", list, w)):
            lw = f"{w}.leaks[{j}]"
            lb += _typed(leak, "bytes", int, lw)
            lk += _typed(leak, "blocks", int, lw)
            check(leak["blocks"] >= 1, f"{lw}.blocks < 1")
            _check_site(_typed(leak, "site", dict, lw), lw + ".site")
            for k, fr in enumerate(_typed(leak, "stack", list, lw)):
                fw = f"{lw}.stack[{k}]"
                _check_site(fr, fw)
                _typed(fr, "module", str, fw)
                check(re.fullmatch(r"0x[0-9a-f]+", _typed(fr, "address", str, fw)) is not None,
                      f"{fw}.address {fr['address']!r}")
        # leaks[] leaves out what suppressions took (summary.suppressed_*)
        # and what --top/--min-bytes left out (leaks_omitted)
        om = _typed(p, "leaks_omitted", dict, w)
        lb += _typed(om, "bytes", int, w + ".leaks_omitted")
        lk += _typed(om, "blocks", int, w + ".leaks_omitted")
        for j, u in enumerate(_typed(p, "suppressed", list, w)):
            uw = f"{w}.suppressed[{j}]"
            _typed(u, "suppression", str, uw)
            lb += _typed(u, "bytes", int, uw)
            lk += _typed(u, "blocks", int, uw)
        check((lb, lk) == (s["leaked_bytes"], s["leaked_blocks"]),
              f"{w}: leaks[] and suppressed[] add up to {lb} bytes in {lk} blocks, summary says "
              f"{s['leaked_bytes']} in {s['leaked_blocks']}")
        # refusals (never counted in the summary), and the last of them
        for j, r in enumerate(_typed(p, "refused", list, w)):
            rw = f"{w}.refused[{j}]"
            _check_site(_typed(r, "site", dict, rw), rw + ".site")
            check(_typed(r, "reason", str, rw) in REFUSAL_REASONS, f"{rw}.reason {r['reason']!r}")
            check(_typed(r, "allocations", int, rw) >= 1, f"{rw}.allocations < 1")
            _typed(r, "bytes", int, rw)
        last = _typed(p, "last_refused", (dict, type(None)), w)
        check((last is None) == (not p["refused"]), f"{w}: last_refused {last!r} with "
              f"{len(p['refused'])} refused sites")
        check(_typed(p, "killed_after_refusal", bool, w) <= (last is not None),
              f"{w}: killed_after_refusal without a refusal")
        sa = sb = sl = slb = 0
        for j, site in enumerate(_typed(p, "sites", list, w)):
            sw = f"{w}.sites[{j}]"
            _check_site(_typed(site, "site", dict, sw), sw + ".site")
            sa += _typed(site, "allocations", int, sw)
            sb += _typed(site, "bytes_allocated", int, sw)
            _typed(site, "peak_bytes", int, sw)
            sl += _typed(site, "leaked_bytes", int, sw)
            slb += _typed(site, "leaked_blocks", int, sw)
        # A forked child's counters start with its parent's; its sites may
        # only cover its own allocations, so the sums hold for the rest.
        if p["parent"] is None:
            check((sa, sb) == (s["allocations"], s["bytes_allocated"]),
                  f"{w}: sites[] add up to {sa} allocations of {sb} bytes, summary says "
                  f"{s['allocations']} of {s['bytes_allocated']}")
            check((sl, slb) == (s["leaked_bytes"], s["leaked_blocks"]),
                  f"{w}: sites[] leak {sl} bytes in {slb} blocks, summary says "
                  f"{s['leaked_bytes']} in {s['leaked_blocks']}")
        # memory by type: typed allocations by type, the rest by size
        # class; together, every allocation and every leaked byte
        ta = tb = tl = 0
        for j, ty in enumerate(_typed(p, "types", list, w)):
            tw = f"{w}.types[{j}]"
            _typed(ty, "type", str, tw)
            ta += _typed(ty, "allocations", int, tw)
            tb += _typed(ty, "bytes", int, tw)
            tl += _typed(ty, "leaked_bytes", int, tw)
            check(_typed(ty, "peak_bytes", int, tw) <= ty["bytes"], f"{tw}: peak over bytes")
            for k, ts in enumerate(_typed(ty, "sites", list, tw)):
                _typed(ts, "file", str, f"{tw}.sites[{k}]")
                _typed(ts, "line", int, f"{tw}.sites[{k}]")
        for j, sc in enumerate(_typed(p, "size_classes", list, w)):
            cw = f"{w}.size_classes[{j}]"
            check(_typed(sc, "min", int, cw) <= _typed(sc, "max", int, cw), f"{cw}: min > max")
            ta += _typed(sc, "allocations", int, cw)
            tb += _typed(sc, "bytes", int, cw)
            tl += _typed(sc, "leaked_bytes", int, cw)
        if p["parent"] is None:
            check((ta, tb, tl) == (s["allocations"], s["bytes_allocated"], s["leaked_bytes"]),
                  f"{w}: types[] and size_classes[] add up to {ta} allocations of {tb} bytes, "
                  f"{tl} leaked; summary says {s['allocations']} of {s['bytes_allocated']}, "
                  f"{s['leaked_bytes']}")


# ---- checking what the tools did -------------------------------------------

def expect_rc(t, want):
    lines = t.err.strip().splitlines()
    check(t.rc == want, f"halloc-trace exited {t.rc}, want {want}"
          + (f"; stderr: {' | '.join(lines[:3])}" if lines else ""))


def expect_status(proc, want, reaped_by_parent=False):
    """The process ended as `want` says. halloc-trace only learns how a
    descendant ended if it reaps it, not when the descendant's own parent
    does (halloc-trace(1), BUGS): then the status may be unknown."""
    ok = proc["status"] == want or (reaped_by_parent and not proc["status"])
    check(ok, f"pid {proc['pid']}: status {proc['status']}, want {want}")
    check(proc["complete"] is True, f"pid {proc['pid']}: complete is {proc['complete']}")


def one_line(p, what):
    err = p.stderr.decode(errors="replace")
    check(len(err.splitlines()) == 1 and err.strip(),
          f"{what}: want one line on stderr, got {len(err.splitlines())}: {err.strip()[:300]!r}")
    return err.strip()


def process_by(doc, pid, command=None):
    hits = [p for p in doc["processes"] if p["pid"] == pid
            and (command is None or p["command"] == command)]
    check(len(hits) == 1, f"{len(hits)} processes with pid {pid}"
          + (f" and command {command}" if command else "") + "; report has "
          + ", ".join(f"{p['pid']} {p['command'][:1]}" for p in doc["processes"]))
    return hits[0]


def only_process(doc):
    procs = doc["processes"]
    check(len(procs) == 1, f"{len(procs)} processes in the report, want 1: "
          + ", ".join(f"{p['pid']} {p['command'][:1]}" for p in procs))
    return procs[0]


def same_file(a, b):
    return a == b or (bool(a) and os.path.realpath(a) == os.path.realpath(b))


def leaks_at(proc, src, line):
    """(bytes, blocks, functions) of the leaks whose site is src:line."""
    hits = [lk for lk in proc["leaks"]
            if lk["site"]["line"] == line and same_file(lk["site"]["file"], src)]
    return (sum(lk["bytes"] for lk in hits), sum(lk["blocks"] for lk in hits),
            {lk["site"]["function"] for lk in hits})


def expect_leak(proc, src, marker, nbytes, blocks, function=None):
    line = line_of(src, marker)
    got = leaks_at(proc, src, line)
    where = f"{os.path.basename(src)}:{line} ({marker})"
    if got[1] == 0:
        sites = ", ".join(f"{os.path.basename(lk['site']['file']) or '?'}:{lk['site']['line']} "
                          f"{lk['site']['function'] or '?'} {lk['bytes']}B/{lk['blocks']}"
                          for lk in proc["leaks"])
        raise Fail(f"no leak at {where}; leaks: [{sites}]")
    check(got[:2] == (nbytes, blocks),
          f"leak at {where}: {got[0]} bytes in {got[1]} blocks, want {nbytes} in {blocks}")
    if function is not None:
        check(got[2] == {function}, f"leak at {where}: function {sorted(got[2])}, want {function}")
    return line


def site_at(proc, src, line):
    hits = [s for s in proc["sites"]
            if s["site"]["line"] == line and same_file(s["site"]["file"], src)]
    return {k: sum(s[k] for s in hits) for k in ("allocations", "bytes_allocated",
                                                  "leaked_bytes", "leaked_blocks")}


def summary_of(proc, keys=VALGRIND_KEYS):
    return {k: proc["summary"][k] for k in keys}


# ---- Valgrind -----------------------------------------------------------------

_IN_USE = re.compile(r"in use at exit: ([\d,]+) bytes in ([\d,]+) blocks")
_TOTAL = re.compile(r"total heap usage: ([\d,]+) allocs, ([\d,]+) frees, ([\d,]+) bytes allocated")


def _num(s):
    return int(s.replace(",", ""))


def valgrind(case, argv, stdin=None, env=None, children=False, timeout=300):
    """Run argv under memcheck; returns (process, {pid: summary}) for every
    process image that printed a HEAP SUMMARY."""
    if VALGRIND is None:
        raise Skip("valgrind is not installed")
    d = case.fresh("valgrind", "")
    os.makedirs(d)
    cmd = [VALGRIND, "--tool=memcheck", "--run-libc-freeres=no", "--run-cxx-freeres=no",
           "--leak-check=no", f"--log-file={d}/%p"]
    if children:
        cmd.append("--trace-children=yes")
    p = case.run(cmd + list(argv), stdin=stdin, env=env, timeout=timeout)
    found = {}
    for name in os.listdir(d):
        with open(os.path.join(d, name), errors="replace") as f:
            text = f.read()
        u, t = _IN_USE.search(text), _TOTAL.search(text)
        if u and t:
            found[int(name)] = {"allocations": _num(t.group(1)), "frees": _num(t.group(2)),
                                "bytes_allocated": _num(t.group(3)),
                                "leaked_bytes": _num(u.group(1)), "leaked_blocks": _num(u.group(2))}
            case.note(f"  valgrind pid {name}: {found[int(name)]}")
    return p, found
