#!/usr/bin/env python3
# tests/tools/log_encodings.py LOG [ENCODING...]: decode a halloc log's events
# (include/halloc/log.h), write them again in other encodings, and print each one's
# size after `zstd -1` and `zstd -3`: where a log's bytes go, and what a format
# change would save (BENCHMARKS.md, "What the log's bytes are"). A measuring tool,
# not a reader: it assumes a well-formed log.
import struct, subprocess, sys

def uv(b, i):
    r = s = 0
    while True:
        c = b[i]; i += 1
        r |= (c & 0x7f) << s; s += 7
        if c < 0x80:
            return r, i

def sv(b, i):
    v, i = uv(b, i)
    return (v >> 1) ^ -(v & 1), i

def skip_str(b, i):
    n, i = uv(b, i)
    return i + n

raw = subprocess.run(["zstd", "-dc", sys.argv[1]], capture_output=True).stdout
i = 16
events = []   # (slot, kind, fn, seq, time, addr, old, size, stack)
chunks = 0; other_bytes = 0; chunk_bytes = 0
while i + 8 <= len(raw):
    ln, ty, fl = struct.unpack_from("<IHH", raw, i)
    p = i + 8; end = p + ln; i = end
    if ty != 2:
        other_bytes += 8 + ln
        continue
    chunks += 1; chunk_bytes += 8 + ln
    stream, pid, tid, slot, cno = struct.unpack_from("<QIIII", raw, p)
    p += 24
    seq = tm = addr = 0
    while p < end:
        tag = raw[p]; p += 1
        kind, fn = tag & 15, tag >> 4
        d, p = uv(raw, p); seq += d
        if kind == 1:  # PROCESS
            for _ in range(6): _, p = uv(raw, p)
            p = skip_str(raw, p); n, p = uv(raw, p)
            for _ in range(n): p = skip_str(raw, p)
        elif kind == 2:
            _, p = uv(raw, p); _, p = uv(raw, p); p = skip_str(raw, p); p = skip_str(raw, p)
            n, p = uv(raw, p)
            for _ in range(2 * n): _, p = uv(raw, p)
        elif kind == 3:
            _, p = uv(raw, p)
        elif kind == 4:
            _, p = uv(raw, p); n, p = uv(raw, p)
            for _ in range(n): _, p = sv(raw, p)
        elif kind == 5:
            dt, p = uv(raw, p); tm += dt
            da, p = sv(raw, p); addr += da
            size, p = uv(raw, p); st, p = uv(raw, p)
            if fn == 9:
                _, p = uv(raw, p); _, p = uv(raw, p)
            events.append((slot, 5, fn, seq, tm, addr, 0, size, st))
        elif kind == 6:
            dt, p = uv(raw, p); tm += dt
            da, p = sv(raw, p); addr += da
            events.append((slot, 6, fn, seq, tm, addr, 0, 0, 0))
        elif kind == 7:
            d2, p = uv(raw, p); dt, p = uv(raw, p); tm += dt
            da, p = sv(raw, p); old = addr + da
            dn, p = sv(raw, p); addr = old + dn
            size, p = uv(raw, p); st, p = uv(raw, p)
            events.append((slot, 7, fn, seq, tm, addr, old, size, st))
        elif kind == 8:
            dt, p = uv(raw, p); tm += dt
            for _ in range(3): _, p = uv(raw, p)
        elif kind == 11:
            dt, p = uv(raw, p); tm += dt
            for _ in range(3): _, p = uv(raw, p)
        elif kind == 12:
            dt, p = uv(raw, p); tm += dt
            if fn == 0:
                da, p = sv(raw, p); addr += da
                for _ in range(4): _, p = uv(raw, p)
            elif fn in (1, 4):
                da, p = sv(raw, p); addr += da
                if fn == 1: _, p = uv(raw, p)
            elif fn == 2:
                _, p = uv(raw, p); da, p = sv(raw, p); old = addr + da; dn, p = sv(raw, p); addr = old + dn
                _, p = uv(raw, p); _, p = uv(raw, p)
            elif fn == 3:
                da, p = sv(raw, p); addr += da
                for _ in range(3): _, p = uv(raw, p)
        else:
            raise SystemExit(f"kind {kind} at {p}")

def put_uv(out, v):
    while v >= 0x80:
        out.append((v & 0x7f) | 0x80); v >>= 7
    out.append(v)

def put_sv(out, v):
    put_uv(out, (v << 1) ^ (v >> 63) if v >= 0 else ((-v) << 1) - 1)

def zsize(data, level):
    return len(subprocess.run(["zstd", f"-{level}", "-c"], input=bytes(data), capture_output=True).stdout)

def encode(seq_mode, time_mode, addr_mode):
    out = bytearray()
    last = {}
    ids = {}; free_ids = []; next_id = [0]
    key_of = {}
    for (slot, kind, fn, seq, tm, addr, old, size, st) in events:
        s = last.setdefault(slot, {"seq": 0, "tm": 0, "addr": 0, "tick": 0})
        out.append(kind | fn << 4)
        if seq_mode == "delta":
            put_uv(out, seq - s["seq"])
        s["seq"] = seq
        if time_mode == "us":
            put_uv(out, tm - s["tm"]); s["tm"] = tm
        elif time_mode == "tick":
            t = tm // 10000
            if t != s["tick"]:
                out.append(0xff); put_uv(out, t - s["tick"]); s["tick"] = t
        def blk_free(a):
            if addr_mode == "addr":
                put_sv(out, a - s["addr"]); s["addr"] = a
            elif addr_mode == "id":
                bid = ids.pop(a); put_uv(out, bid); free_ids.append(bid)
            elif addr_mode == "key":
                put_uv(out, key_of.pop(a))
        def blk_alloc(a, size, st):
            if addr_mode == "addr":
                put_sv(out, a - s["addr"]); s["addr"] = a
            elif addr_mode == "id":
                if free_ids: bid = free_ids.pop()
                else: bid = next_id[0]; next_id[0] += 1
                ids[a] = bid
            elif addr_mode == "key":
                key_of[a] = st * 65536 + size % 65536
            put_uv(out, size); put_uv(out, st)
        if kind == 6:
            blk_free(addr) if addr in ids or addr in key_of or addr_mode == "addr" else None
        elif kind == 5:
            blk_alloc(addr, size, st)
        elif kind == 7:
            blk_free(old) if old in ids or old in key_of or addr_mode == "addr" else None
            blk_alloc(addr, size, st)
    return out

WANT = sys.argv[2:] or ["as now, no chunks", "no seq", "no seq, 10 ms ticks", "no seq, us, block ids", "no seq, ticks, block ids", "no seq, ticks, heaptrack keys"]
print(f"{sys.argv[1]}: {len(events)} events, {chunks} chunks; chunk frames {chunk_bytes} B plain, other frames {other_bytes} B plain")
for name, args in [x for x in [("as now, no chunks", ("delta", "us", "addr")),
                   ("no seq", (None, "us", "addr")),
                   ("no seq, 10 ms ticks", (None, "tick", "addr")),
                   ("no seq, us, block ids", (None, "us", "id")),
                   ("no seq, ticks, block ids", (None, "tick", "id")),
                   ("no seq, ticks, heaptrack keys", (None, "tick", "key"))] if x[0] in WANT]:
    d = encode(*args)
    print(f"  {name:32} plain {len(d):9}  zstd-1 {zsize(d, 1):8}  zstd-3 {zsize(d, 3):8}")
