/*
 * halloc/log.h - the halloc log format, version 1.
 *
 * A log is what `halloc-trace` records and `halloc-report` reads. It is a
 * stream of little-endian binary frames after a fixed file header. The same
 * frames travel through the pipe from the agent to the tracer, which copies
 * them verbatim to the file, so the agent never formats text and the tracer
 * never re-encodes.
 *
 * Invariants every reader and writer relies on:
 *  - A frame is self-delimiting: header (8 bytes) + `length` payload bytes.
 *    A frame the agent writes is at most HALLOC_FRAME_MAX bytes in total, so
 *    its write(2) to a pipe is atomic and frames from different threads and
 *    processes never interleave.
 *  - A log ends with an HALLOC_FRAME_END frame only if recording finished
 *    cleanly. A log without one (the tracer was killed) is "incomplete": a
 *    reader reports every whole frame it holds and says so. A partial last
 *    frame is dropped.
 *  - Inside a chunk, every record starts with a tag byte and then the varint
 *    delta of its sequence number. Sequence numbers are per stream (one
 *    stream is one process image, from its start to its exit or exec),
 *    unique and strictly increasing within a thread, and give the order of
 *    events across threads. They may have gaps. A reader orders the events of
 *    a stream by sequence number, never by file position.
 *  - Every delta (sequence, time, address) restarts at 0 at the start of each
 *    chunk, so a chunk decodes on its own.
 *
 * Compression: halloc-trace writes the file as a sequence of zstd frames
 * (RFC 8878) whose decompressed concatenation is the log; readers
 * recognize the zstd magic (28 b5 2f fd) where HALLOC_LOG_MAGIC would be
 * and read plain logs too. Frames appended after recording (SYMBOLS, END)
 * are zstd frames of their own. A file that ends inside a zstd frame is
 * cut short, like one that ends inside a frame: what decompresses is kept.
 *
 * Encodings: "uv" is an unsigned LEB128 varint (at most 10 bytes for 64
 * bits); "sv" is a signed value zig-zag encoded, then written as uv; "str"
 * is uv length followed by that many bytes (no terminating NUL).
 */
#ifndef HALLOC_LOG_H
#define HALLOC_LOG_H

#include <stdint.h>

/* ---- File header: 16 bytes ------------------------------------------- */

#define HALLOC_LOG_MAGIC "HALLOCLG" /* 8 bytes, no NUL */
#define HALLOC_LOG_MAGIC_LEN 8
#define HALLOC_LOG_VERSION 1u

struct halloc_file_header {
	char magic[HALLOC_LOG_MAGIC_LEN]; /* HALLOC_LOG_MAGIC */
	uint32_t version;                 /* HALLOC_LOG_VERSION */
	uint32_t reserved;                /* 0 */
};

/* ---- Frames ------------------------------------------------------------ */

struct halloc_frame_header {
	uint32_t length; /* payload bytes that follow this header */
	uint16_t type;   /* enum halloc_frame_type */
	uint16_t flags;  /* 0; readers ignore unknown bits */
};

#define HALLOC_FRAME_HEADER_SIZE 8u

/*
 * Frame flags. HALLOC_FRAME_EVENTS_ONLY, on a CHUNK: every record in it is
 * an event (ALLOC, FREE, REALLOC, ALLOC_FAILED, REFUSED, PAGES), none of
 * PROCESS, MODULE_LOAD, MODULE_UNLOAD, STACK, TYPE. A reader that wants
 * only those (symbols, the model of a log) may skip such a chunk without
 * decoding it. Absent: the chunk may hold any record.
 */
#define HALLOC_FRAME_EVENTS_ONLY 1u
/* Largest frame the agent writes, header included: PIPE_BUF on Linux. */
#define HALLOC_FRAME_MAX 4096u

enum halloc_frame_type {
	/*
	 * Written once, first, by the tracer.
	 * Payload: uv recorder (enum halloc_recorder), uv trace flags
	 * (HALLOC_TRACE_*), uv stack depth limit, uv start time (CLOCK_REALTIME,
	 * ns since the epoch), uv pid of the traced program (or attached
	 * process), uv argc, then argc x str argv (the command as given);
	 * optional, then: uv sample interval (absent or 0: every event was
	 * recorded; N: a sample, see below).
	 *
	 * Sampled (halloc-trace --sample N): each allocation of s bytes was
	 * recorded with probability 1 - exp(-max(s, 1) / N), independently
	 * (a Poisson process over the bytes allocated); a recorded block's
	 * FREE, or the free half of a REALLOC, is recorded, no other. A
	 * REALLOC record is written only when both halves were chosen;
	 * otherwise the half that was is a FREE (fn REALLOC) or an ALLOC.
	 * A reader scales each recorded block by 1 / that probability.
	 */
	HALLOC_FRAME_TRACE_INFO = 1,

	/*
	 * Written by the agent (one thread's buffer, flushed).
	 * Payload: struct halloc_chunk_header, then records (enum halloc_record).
	 */
	HALLOC_FRAME_CHUNK = 2,

	/*
	 * Written by the tracer when a traced process ends.
	 * Payload: uv pid, uv how (enum halloc_exit_how), uv value (exit code or
	 * signal number), uv flags (bit 0: core dumped).
	 * It applies to the last stream (process image) of that pid; earlier
	 * images of the same pid ended by exec.
	 */
	HALLOC_FRAME_PROCESS_EXIT = 3,

	/*
	 * Written by the tracer when recording has ended: what is needed to
	 * symbolize every address recorded in stacks, so the log can be reported
	 * after the binaries change or on another machine. A log may hold
	 * several; a reader merges them.
	 * Payload: uv nstrings, nstrings x str (index 0 is the empty string);
	 * then uv nentries, each: uv module path (string index), uv build-id
	 * (string index of the lowercase hex build-id, 0 if none), uv offset
	 * (the looked-up address minus the module's bias, i.e. return address
	 * minus 1 minus bias), uv nframes, then nframes x { uv function (string
	 * index, demangled), uv file (string index, absolute path when known),
	 * uv line, uv column }. Frames go innermost first: inlined frames, then
	 * the function that contains the address.
	 */
	HALLOC_FRAME_SYMBOLS = 4,

	/*
	 * Written last by the tracer; its presence says the log is complete.
	 * Payload: uv flags (bit 0: some events were lost, e.g. a process was
	 * killed with SIGKILL while events sat in a buffer), uv chunks lost.
	 * The eBPF recorder adds (readers of older logs: absent means 0):
	 * uv events lost (its ring buffer was full), uv stacks truncated
	 * (DWARF mode: the copied stack ended before the outermost frame).
	 */
	HALLOC_FRAME_END = 5,

	/*
	 * Written by the tracer while the program runs: the resident memory of
	 * a traced process, sampled from outside (/proc/PID/statm).
	 * Payload: uv pid, uv time (CLOCK_REALTIME ns: the clock of the
	 * PROCESS record's start time, so a reader places a sample in the
	 * stream of that pid that was running then and on its clock), uv
	 * resident bytes (statm's resident pages x page size); then, optional
	 * (absent: unknown), uv peak resident bytes so far (VmHWM).
	 * Samples come every 10 ms at first; the interval doubles every 256
	 * samples of a process, so a long run keeps a few thousand.
	 */
	HALLOC_FRAME_RSS = 6,
};

enum halloc_recorder {
	HALLOC_RECORDER_PRELOAD = 1, /* libhalloc.so injected with LD_PRELOAD */
	HALLOC_RECORDER_BPF = 2,     /* eBPF uprobes (halloc-trace -p / --bpf) */
};

enum halloc_trace_flags {
	HALLOC_TRACE_FOLLOW_CHILDREN = 1u << 0,
	/*
	 * The eBPF recorder (HALLOC_RECORDER_BPF) sets these.
	 * ATTACHED: recording started in a process that was already running
	 * (halloc-trace -p). Blocks it allocated before are unknown: a FREE
	 * (or the free half of a REALLOC) of an address the stream never
	 * allocated frees such a block - count it apart, it is not an error.
	 * Leaks are the blocks allocated while recording and not freed.
	 * AGGREGATE: --aggregate. The kernel kept totals per call stack; the
	 * ALLOC/FREE records were made from them when recording ended: the
	 * counts, bytes, sites and leaked blocks (with their times) are
	 * exact, but the order and times of freed blocks are not, so peaks
	 * and timelines mean nothing.
	 * STACK_FP / STACK_DWARF: how call stacks were captured (frame
	 * pointers, or the top of the stack copied and unwound with DWARF
	 * CFI). Neither: the preload agent's own unwinder.
	 */
	HALLOC_TRACE_ATTACHED = 1u << 1,
	HALLOC_TRACE_AGGREGATE = 1u << 2,
	HALLOC_TRACE_STACK_FP = 1u << 3,
	HALLOC_TRACE_STACK_DWARF = 1u << 4,
};

enum halloc_exit_how {
	HALLOC_EXIT_UNKNOWN = 0, /* the tracer could not learn how it ended */
	HALLOC_EXIT_CODE = 1,    /* exited; value is the exit status */
	HALLOC_EXIT_SIGNAL = 2,  /* killed; value is the signal number */
	HALLOC_EXIT_DETACHED = 3, /* still running when recording stopped
				     (halloc-trace -p); value 0 */
};

/*
 * Header of a chunk payload. A chunk holds records of one thread of one
 * stream, in the order that thread made them.
 */
struct halloc_chunk_header {
	uint64_t stream;   /* unique id of the process image (never 0) */
	uint32_t pid;      /* process id */
	uint32_t tid;      /* thread id (gettid) */
	uint32_t slot;     /* the agent's buffer slot this chunk came from */
	uint32_t chunk_no; /* per-slot counter, to drop a chunk seen twice */
};

#define HALLOC_CHUNK_HEADER_SIZE 24u

/* ---- Records inside a chunk -------------------------------------------- */

/*
 * The low 4 bits of a record's tag byte are its kind; the high 4 bits carry
 * the allocation function (enum halloc_alloc_fn) for ALLOC, REALLOC,
 * ALLOC_FAILED, and the freeing function (enum halloc_free_fn) for FREE.
 * Every record then starts with: uv seq delta (from the previous record of
 * the chunk, 0 before the first).
 */
enum halloc_record {
	/*
	 * The stream starts: first record the agent writes in a process image.
	 * After seq: uv pid, uv parent pid, uv parent stream (the stream this
	 * one was forked from, 0 if it was not forked from a traced stream),
	 * uv parent seq (the parent's sequence number at the fork: the child
	 * starts with the parent's live blocks as of then), uv flags (bit 0:
	 * this image was started by exec in a traced process), uv start time
	 * (CLOCK_REALTIME ns), str executable path, uv argc, argc x str argv.
	 */
	HALLOC_REC_PROCESS = 1,

	/*
	 * A module (executable, shared library, the loader, the vDSO) is mapped.
	 * After seq: uv module id (per stream), uv bias (load address added to
	 * the ELF's p_vaddr), str path (as the loader knows it; "" for the main
	 * program is replaced by its absolute path), str build-id (raw bytes,
	 * may be empty), uv nsegments, then nsegments x { uv start, uv size }:
	 * the runtime address ranges of its PT_LOAD segments.
	 */
	HALLOC_REC_MODULE_LOAD = 2,

	/* A module is unmapped (dlclose). After seq: uv module id. */
	HALLOC_REC_MODULE_UNLOAD = 3,

	/*
	 * A call stack, sent once per stream, before any record that names it
	 * (by sequence number). After seq: uv stack id, uv nframes, then
	 * nframes x sv (frame address minus the previous frame address; the
	 * first minus 0). Frames go innermost first; the first is the return
	 * address into the code that called the allocation function. Every
	 * frame is a return address: a symbolizer looks up address - 1. A
	 * stack id stays valid until the stream ends.
	 */
	HALLOC_REC_STACK = 4,

	/*
	 * A successful allocation (also malloc(0)). After seq: uv time delta
	 * (microseconds since the stream's start, as a delta within the chunk),
	 * sv address delta (from the previous address of the chunk), uv size
	 * (bytes requested), uv stack id. With fn HALLOC_FN_HALLOC (a
	 * halloc(type, n) of the in-process API) two more fields follow: uv
	 * type-site id (see HALLOC_REC_TYPE), uv count (n; size is n times the
	 * site's object size).
	 */
	HALLOC_REC_ALLOC = 5,

	/*
	 * A block is freed (never free(NULL)). After seq: uv time delta,
	 * sv address delta.
	 */
	HALLOC_REC_FREE = 6,

	/*
	 * realloc/reallocarray of a non-NULL pointer to a non-zero size that
	 * succeeded: the old block is freed at seq, the new one allocated at
	 * seq + uv seq2 delta (seq2 > seq; other threads' events may lie
	 * between). After seq: uv seq2 delta (from seq), uv time delta, sv old
	 * address delta, sv new address delta (from the old address), uv size,
	 * uv stack id. The chunk's previous address becomes the new address.
	 * realloc(NULL, n) is an ALLOC; realloc(p, 0) that frees is a FREE.
	 */
	HALLOC_REC_REALLOC = 7,

	/*
	 * An allocation returned NULL. After seq: uv time delta, uv size
	 * (requested; SIZE_MAX when n * size overflowed), uv stack id,
	 * uv errno.
	 */
	HALLOC_REC_ALLOC_FAILED = 8,

	/*
	 * A typed call site of the in-process API (include/halloc/halloc.h):
	 * halloc(type, n) at file:line. After seq: uv type-site id (per
	 * stream, never 0), uv object size (sizeof(type)), str type name (as
	 * written in the call), str file (as the compiler wrote __FILE__), uv
	 * line. Sent once per stream, by the first thread that allocates at
	 * the site in it; a thread racing it may write an ALLOC naming the id
	 * earlier in seq order, so a reader resolves type-site ids once the
	 * stream is read, as it does stack ids. A second TYPE of the same id
	 * says the same.
	 */
	HALLOC_REC_TYPE = 9,

	/*
	 * An allocation refused before it reached the allocator (the memory
	 * monitor, --limit, or fault injection): the caller got NULL and
	 * ENOMEM. Never counted as an allocation. The tag's high nibble is the
	 * allocation function. After seq: uv time delta, uv size (requested),
	 * uv stack id, uv reason (enum halloc_refusal).
	 */
	HALLOC_REC_REFUSED = 11,

	/*
	 * Page-backed memory (page items). The high nibble of the tag is an
	 * enum halloc_page_op instead of an allocation function. After seq,
	 * by op:
	 *  MMAP (the program's own anonymous mmap, after it returned):
	 *    uv time delta, sv address delta, uv length (as asked), uv stack
	 *    id, uv prot, uv flags (mmap's arguments).
	 *  MUNMAP (seq taken before the call; written only when the range
	 *    ended part of a recorded mapping, or a file was mapped with
	 *    MAP_FIXED over one): uv time delta, sv address delta, uv length.
	 *    Any part of a mapping inside [address, address + length) ends: a
	 *    mapping can lose its head, its tail, or its middle.
	 *  MREMAP (a recorded mapping moved or resized): uv seq2 delta (from
	 *    seq), uv time delta, sv old address delta, sv new address delta
	 *    (from the old address), uv old length, uv new length. The old
	 *    range ends at seq (taken before the call), the new one, with the
	 *    old one's stack, starts at seq2. Old length 0 (a duplicate of a
	 *    shared mapping) ends nothing.
	 *  HEAP (a block the allocator served by mmap, found by glibc's
	 *    IS_MMAPPED chunk bit; its own seq, after the ALLOC's or
	 *    REALLOC's seq2): uv time delta, sv address delta (the block, as
	 *    in its ALLOC), uv size (requested, as in its ALLOC), uv mapped
	 *    length (the pages the allocator mapped for it, its header
	 *    included), uv stack id (its ALLOC's).
	 *  HEAP_FREE (that block is about to be freed, or realloc'd; its own
	 *    seq, before the FREE's or the REALLOC's): uv time delta, sv
	 *    address delta. A realloc that then fails writes the block's
	 *    HEAP again.
	 * A new mapping (MMAP, MREMAP's new range) replaces any recorded one
	 * it overlaps (MAP_FIXED). The chunk's previous address becomes the
	 * record's (new) address. File-backed mappings are not recorded.
	 */
	HALLOC_REC_PAGES = 12,

	/* 10, 13, 14 unassigned; 15 reserved for an extension tag. */
};

enum halloc_refusal {
	HALLOC_REFUSED_MONITOR = 1,    /* halloc_set_memory_monitor's fn said no */
	HALLOC_REFUSED_LIMIT = 2,      /* halloc-trace --limit */
	HALLOC_REFUSED_FAIL_AFTER = 3, /* halloc-trace --fail-after */
	HALLOC_REFUSED_FAIL_RATE = 4,  /* halloc-trace --fail-rate */
	HALLOC_REFUSED_FAIL_AT = 5,    /* halloc-trace --fail-at */
};

enum halloc_page_op {
	HALLOC_PAGE_MMAP = 0,   /* the program's own anonymous mmap */
	HALLOC_PAGE_MUNMAP = 1, /* the program's own munmap */
	HALLOC_PAGE_MREMAP = 2, /* the program's own mremap */
	HALLOC_PAGE_HEAP = 3,   /* a heap block the allocator served by mmap */
	HALLOC_PAGE_HEAP_FREE = 4, /* such a block is freed (or realloc'd) */
};

enum halloc_alloc_fn {
	HALLOC_FN_MALLOC = 0,
	HALLOC_FN_CALLOC = 1,
	HALLOC_FN_REALLOC = 2,
	HALLOC_FN_REALLOCARRAY = 3,
	HALLOC_FN_POSIX_MEMALIGN = 4,
	HALLOC_FN_ALIGNED_ALLOC = 5,
	HALLOC_FN_MEMALIGN = 6,
	HALLOC_FN_VALLOC = 7,
	HALLOC_FN_PVALLOC = 8,
	HALLOC_FN_HALLOC = 9, /* halloc(type, n): see HALLOC_REC_TYPE */
};

enum halloc_free_fn {
	HALLOC_FREE_FREE = 0,
	HALLOC_FREE_REALLOC = 1, /* realloc(p, 0) or reallocarray(p, 0, n) */
};

#define HALLOC_RECORD_KIND(tag) ((unsigned)(tag)&0x0fu)
#define HALLOC_RECORD_FN(tag) (((unsigned)(tag) >> 4) & 0x0fu)
#define HALLOC_RECORD_TAG(kind, fn) ((uint8_t)(((fn) << 4) | (kind)))

/* Stack depth: default and the largest a frame can carry. */
#define HALLOC_DEPTH_DEFAULT 64u
#define HALLOC_DEPTH_MAX 256u

#endif /* HALLOC_LOG_H */
