/*
 * tests/unit/tracer_frames.c - the tracer's frame-boundary parser, fed the
 * pipe's bytes split at every odd place, and the frames the tracer writes.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/wait.h>

#include "agent/varint.h"
#include "tracer/frames.h"

/* Builds a chunk frame of `size` bytes in total, named (slot, chunk_no),
 * its payload after the chunk header filled with a pattern. */
static size_t make_chunk(unsigned char *out, size_t size, uint32_t slot,
			 uint32_t chunk_no)
{
	struct halloc_chunk_header ch = {
	    .stream = 0x1122334455667788ull,
	    .pid = 42,
	    .tid = 43,
	    .slot = slot,
	    .chunk_no = chunk_no,
	};

	cr_assert(size >= HALLOC_FRAME_HEADER_SIZE + HALLOC_CHUNK_HEADER_SIZE);
	ht_put_frame_header(out, (uint32_t)(size - HALLOC_FRAME_HEADER_SIZE),
			    HALLOC_FRAME_CHUNK);
	memcpy(out + HALLOC_FRAME_HEADER_SIZE, &ch, sizeof(ch));
	for (size_t i = HALLOC_FRAME_HEADER_SIZE + sizeof(ch); i < size; i++)
		out[i] = (unsigned char)(i * 7 + chunk_no);
	return size;
}

/* A stream of frames of varied sizes, the largest the agent may write. */
static size_t make_stream(unsigned char *out, size_t *sizes, size_t *count)
{
	static const size_t lengths[] = {32,   4096, 33,   100,	 4095,
					 1000, 32,   4096, 2049, 77};
	size_t total = 0;

	*count = sizeof(lengths) / sizeof(lengths[0]);
	for (size_t i = 0; i < *count; i++) {
		sizes[i] = make_chunk(out + total, lengths[i], (uint32_t)i % 3,
				      (uint32_t)i);
		total += sizes[i];
	}
	return total;
}

/* Feeds `stream` in pieces of the given sizes (cycling) and checks that
 * exactly the original frames come out, whole and in order. */
static void feed_in_pieces(const size_t *pieces, size_t npieces)
{
	static unsigned char stream[64 * 1024], joined[64 * 1024];
	size_t sizes[16], count, total, at = 0, out = 0, nframes = 0;
	struct ht_framer framer;

	total = make_stream(stream, sizes, &count);
	ht_framer_init(&framer);
	for (size_t p = 0; at < total; p++) {
		size_t piece = pieces[p % npieces];
		const unsigned char *data = stream + at, *frame;
		size_t len = piece < total - at ? piece : total - at, size;

		at += len;
		while ((frame = ht_framer_next(&framer, &data, &len, &size))) {
			cr_assert_lt(nframes, count);
			cr_assert_eq(size, sizes[nframes],
				     "frame %zu: %zu != %zu", nframes, size,
				     sizes[nframes]);
			memcpy(joined + out, frame, size);
			out += size;
			nframes++;
		}
		cr_assert_eq(len, 0);
	}
	cr_assert_eq(nframes, count);
	cr_assert_eq(out, total);
	cr_assert(memcmp(joined, stream, total) == 0);
	cr_assert_not(framer.broken);
	cr_assert_not(ht_framer_end(&framer));
}

Test(tracer_frames, whole_stream_at_once)
{
	size_t pieces[] = {1 << 20};

	feed_in_pieces(pieces, 1);
}

Test(tracer_frames, byte_by_byte)
{
	size_t pieces[] = {1};

	feed_in_pieces(pieces, 1);
}

Test(tracer_frames, split_inside_headers_and_payloads)
{
	/* 3 and 5 split frame headers; 4093 and 4099 straddle big frames. */
	size_t odd[] = {3, 5, 4093, 7, 4099, 8, 31, 1};

	feed_in_pieces(odd, sizeof(odd) / sizeof(odd[0]));
}

Test(tracer_frames, every_piece_size_up_to_a_frame)
{
	for (size_t piece = 1; piece <= HALLOC_FRAME_MAX + 9; piece += 97)
		feed_in_pieces(&piece, 1);
}

Test(tracer_frames, partial_frame_at_end_is_reported)
{
	unsigned char frame[200];
	const unsigned char *data = frame;
	size_t len = make_chunk(frame, sizeof(frame), 1, 2) - 1, size;
	struct ht_framer framer;

	ht_framer_init(&framer);
	cr_assert_null(ht_framer_next(&framer, &data, &len, &size));
	cr_assert(ht_framer_end(&framer));
	cr_assert_eq(framer.dropped, sizeof(frame) - 1);
}

/* A header the agent cannot have written: everything after it is dropped
 * (boundaries are lost), and what came before is kept. */
static void check_broken(const unsigned char *bad_header)
{
	unsigned char stream[3 * HALLOC_FRAME_MAX];
	const unsigned char *data = stream;
	size_t first = make_chunk(stream, 100, 0, 0), len, size;
	struct ht_framer framer;

	memcpy(stream + first, bad_header, HALLOC_FRAME_HEADER_SIZE);
	make_chunk(stream + first + HALLOC_FRAME_HEADER_SIZE, 200, 0, 1);
	len = first + HALLOC_FRAME_HEADER_SIZE + 200;

	ht_framer_init(&framer);
	cr_assert_eq(ht_framer_next(&framer, &data, &len, &size), stream);
	cr_assert_eq(size, first);
	cr_assert_null(ht_framer_next(&framer, &data, &len, &size));
	cr_assert(framer.broken);
	cr_assert_eq(len, 0);
	cr_assert_eq(framer.dropped, HALLOC_FRAME_HEADER_SIZE + 200);

	/* Later input is dropped too. */
	data = stream;
	len = first;
	cr_assert_null(ht_framer_next(&framer, &data, &len, &size));
	cr_assert_eq(framer.dropped, HALLOC_FRAME_HEADER_SIZE + 200 + first);
}

Test(tracer_frames, wrong_type_breaks_the_stream)
{
	unsigned char header[HALLOC_FRAME_HEADER_SIZE];

	ht_put_frame_header(header, 100, HALLOC_FRAME_END);
	check_broken(header);
}

Test(tracer_frames, too_long_breaks_the_stream)
{
	unsigned char header[HALLOC_FRAME_HEADER_SIZE];

	ht_put_frame_header(header, HALLOC_FRAME_MAX, HALLOC_FRAME_CHUNK);
	check_broken(header);
}

Test(tracer_frames, shorter_than_a_chunk_header_breaks_the_stream)
{
	unsigned char header[HALLOC_FRAME_HEADER_SIZE];

	ht_put_frame_header(header, HALLOC_CHUNK_HEADER_SIZE - 1,
			    HALLOC_FRAME_CHUNK);
	check_broken(header);
}

Test(tracer_frames, broken_header_split_across_reads)
{
	unsigned char header[HALLOC_FRAME_HEADER_SIZE];
	const unsigned char *data = header;
	size_t len = 3, size;
	struct ht_framer framer;

	ht_put_frame_header(header, 5000, HALLOC_FRAME_CHUNK);
	ht_framer_init(&framer);
	cr_assert_null(ht_framer_next(&framer, &data, &len, &size));
	cr_assert_not(framer.broken);
	len = HALLOC_FRAME_HEADER_SIZE - 3;
	cr_assert_null(ht_framer_next(&framer, &data, &len, &size));
	cr_assert(framer.broken);
	cr_assert_eq(framer.dropped, HALLOC_FRAME_HEADER_SIZE);
}

Test(tracer_frames, chunk_key)
{
	unsigned char frame[64];
	uint32_t slot, chunk_no;

	make_chunk(frame, sizeof(frame), 4095, 0xdeadbeef);
	ht_chunk_key(frame, &slot, &chunk_no);
	cr_assert_eq(slot, 4095);
	cr_assert_eq(chunk_no, 0xdeadbeef);
}

Test(tracer_frames, file_header)
{
	unsigned char h[HT_FILE_HEADER_SIZE];
	static const unsigned char expected[HT_FILE_HEADER_SIZE] = {
	    'H', 'A', 'L', 'L', 'O', 'C', 'L', 'G', 1, 0, 0, 0, 0, 0, 0, 0};

	ht_put_file_header(h);
	cr_assert(memcmp(h, expected, sizeof(h)) == 0);
}

static uint64_t uv(const unsigned char **p, const unsigned char *end)
{
	uint64_t v = 0;

	cr_assert(halloc_get_uv(p, end, &v));
	return v;
}

static void check_header(const unsigned char *frame, size_t size, uint16_t type)
{
	uint32_t length;
	uint16_t t, flags;

	memcpy(&length, frame, 4);
	memcpy(&t, frame + 4, 2);
	memcpy(&flags, frame + 6, 2);
	cr_assert_eq(length, size - HALLOC_FRAME_HEADER_SIZE);
	cr_assert_eq(t, type);
	cr_assert_eq(flags, 0);
}

Test(tracer_frames, trace_info)
{
	char *argv[] = {"./prog", "", "an argument", NULL};
	struct ht_trace_info info = {
	    .recorder = HALLOC_RECORDER_PRELOAD,
	    .flags = HALLOC_TRACE_FOLLOW_CHILDREN,
	    .depth = 64,
	    .start_ns = 1700000000123456789ull,
	    .pid = 4242,
	    .argv = argv,
	};
	size_t size;
	unsigned char *frame = ht_frame_trace_info(&info, &size);
	const unsigned char *p = frame + HALLOC_FRAME_HEADER_SIZE,
			    *end = frame + size;

	cr_assert_not_null(frame);
	check_header(frame, size, HALLOC_FRAME_TRACE_INFO);
	cr_assert_eq(uv(&p, end), HALLOC_RECORDER_PRELOAD);
	cr_assert_eq(uv(&p, end), HALLOC_TRACE_FOLLOW_CHILDREN);
	cr_assert_eq(uv(&p, end), 64);
	cr_assert_eq(uv(&p, end), 1700000000123456789ull);
	cr_assert_eq(uv(&p, end), 4242);
	cr_assert_eq(uv(&p, end), 3);
	for (int i = 0; i < 3; i++) {
		uint64_t n = uv(&p, end);

		cr_assert_eq(n, strlen(argv[i]));
		cr_assert(memcmp(p, argv[i], n) == 0);
		p += n;
	}
	cr_assert_eq(p, end);
	free(frame);
}

Test(tracer_frames, process_exit_code)
{
	unsigned char frame[HT_SMALL_FRAME_MAX];
	size_t size = ht_frame_process_exit(frame, 300000, 3 << 8);
	const unsigned char *p = frame + HALLOC_FRAME_HEADER_SIZE,
			    *end = frame + size;

	cr_assert(WIFEXITED(3 << 8));
	check_header(frame, size, HALLOC_FRAME_PROCESS_EXIT);
	cr_assert_eq(uv(&p, end), 300000);
	cr_assert_eq(uv(&p, end), HALLOC_EXIT_CODE);
	cr_assert_eq(uv(&p, end), 3);
	cr_assert_eq(uv(&p, end), 0);
	cr_assert_eq(p, end);
}

Test(tracer_frames, process_exit_signal_with_core)
{
	unsigned char frame[HT_SMALL_FRAME_MAX];
	int status = SIGABRT | 0x80; /* killed by SIGABRT, core dumped */
	size_t size = ht_frame_process_exit(frame, 7, status);
	const unsigned char *p = frame + HALLOC_FRAME_HEADER_SIZE,
			    *end = frame + size;

	cr_assert(WIFSIGNALED(status) && WCOREDUMP(status));
	check_header(frame, size, HALLOC_FRAME_PROCESS_EXIT);
	cr_assert_eq(uv(&p, end), 7);
	cr_assert_eq(uv(&p, end), HALLOC_EXIT_SIGNAL);
	cr_assert_eq(uv(&p, end), SIGABRT);
	cr_assert_eq(uv(&p, end), 1);
	cr_assert_eq(p, end);
}

Test(tracer_frames, end)
{
	unsigned char frame[HT_SMALL_FRAME_MAX];
	struct ht_end info = {.flags = HT_END_EVENTS_LOST, .chunks_lost = 1000};
	size_t size = ht_frame_end(frame, &info);
	const unsigned char *p = frame + HALLOC_FRAME_HEADER_SIZE,
			    *end = frame + size;

	check_header(frame, size, HALLOC_FRAME_END);
	cr_assert_eq(uv(&p, end), 1);
	cr_assert_eq(uv(&p, end), 1000);
	cr_assert_eq(p, end);
}

Test(tracer_frames, end_with_bpf_counts)
{
	unsigned char frame[HT_SMALL_FRAME_MAX];
	struct ht_end info = {.flags = HT_END_EVENTS_LOST,
			      .bpf_counts = true,
			      .events_lost = 70000,
			      .stacks_truncated = 0};
	size_t size = ht_frame_end(frame, &info);
	const unsigned char *p = frame + HALLOC_FRAME_HEADER_SIZE,
			    *end = frame + size;

	check_header(frame, size, HALLOC_FRAME_END);
	cr_assert_eq(uv(&p, end), 1);
	cr_assert_eq(uv(&p, end), 0);
	cr_assert_eq(uv(&p, end), 70000);
	cr_assert_eq(uv(&p, end), 0); /* written though 0: the field is there */
	cr_assert_eq(p, end);
}

Test(tracer_frames, process_exit_detached)
{
	unsigned char frame[HT_SMALL_FRAME_MAX];
	size_t size =
	    ht_frame_process_exit_how(frame, 4321, HALLOC_EXIT_DETACHED, 0, 0);
	const unsigned char *p = frame + HALLOC_FRAME_HEADER_SIZE,
			    *end = frame + size;

	check_header(frame, size, HALLOC_FRAME_PROCESS_EXIT);
	cr_assert_eq(uv(&p, end), 4321);
	cr_assert_eq(uv(&p, end), HALLOC_EXIT_DETACHED);
	cr_assert_eq(uv(&p, end), 0);
	cr_assert_eq(uv(&p, end), 0);
	cr_assert_eq(p, end);
}
