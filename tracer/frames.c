/*
 * tracer/frames.c - splitting the pipe into whole frames, and encoding the
 * tracer's own frames. See frames.h.
 */
#include "tracer/frames.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "agent/varint.h"

/* The log is little-endian whatever the host; these say so explicitly. */
static uint32_t get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint16_t get_le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static void put_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static void put_le16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

/* Total size of the frame whose header is at hdr, 0 if the agent cannot
 * have written it. */
static size_t frame_size(const unsigned char *hdr)
{
	uint32_t length = get_le32(hdr);

	if (get_le16(hdr + 4) != HALLOC_FRAME_CHUNK)
		return 0;
	if (length < HALLOC_CHUNK_HEADER_SIZE ||
	    length > HALLOC_FRAME_MAX - HALLOC_FRAME_HEADER_SIZE)
		return 0;
	return HALLOC_FRAME_HEADER_SIZE + length;
}

void ht_framer_init(struct ht_framer *framer)
{
	framer->have = 0;
	framer->broken = false;
	framer->dropped = 0;
}

const unsigned char *ht_framer_next(struct ht_framer *f,
				    const unsigned char **data, size_t *len,
				    size_t *size)
{
	while (!f->broken) {
		size_t want, take;

		/* The common case: a whole frame lies in the input. */
		if (f->have == 0 && *len >= HALLOC_FRAME_HEADER_SIZE) {
			size_t n = frame_size(*data);

			if (n == 0)
				break;
			if (*len >= n) {
				const unsigned char *frame = *data;

				*data += n;
				*len -= n;
				*size = n;
				return frame;
			}
		}
		if (*len == 0)
			return NULL;

		/* Gather the header, then the rest of the frame. */
		want = f->have < HALLOC_FRAME_HEADER_SIZE
			   ? HALLOC_FRAME_HEADER_SIZE
			   : frame_size(f->partial);
		take = want - f->have < *len ? want - f->have : *len;
		memcpy(f->partial + f->have, *data, take);
		f->have += take;
		*data += take;
		*len -= take;
		if (f->have < want)
			return NULL;
		if (want == HALLOC_FRAME_HEADER_SIZE) {
			if (frame_size(f->partial) == 0)
				break;
			continue;
		}
		f->have = 0;
		*size = want;
		return f->partial;
	}

	if (!f->broken) {
		f->broken = true;
		f->dropped += f->have;
		f->have = 0;
	}
	f->dropped += *len;
	*data += *len;
	*len = 0;
	return NULL;
}

bool ht_framer_end(struct ht_framer *framer)
{
	bool partial = framer->have > 0;

	framer->dropped += framer->have;
	framer->have = 0;
	return partial;
}

void ht_chunk_key(const unsigned char *frame, uint32_t *slot,
		  uint32_t *chunk_no)
{
	/* struct halloc_chunk_header: stream 8, pid 4, tid 4, slot, chunk_no */
	const unsigned char *chunk = frame + HALLOC_FRAME_HEADER_SIZE;

	*slot = get_le32(chunk + 16);
	*chunk_no = get_le32(chunk + 20);
}

void ht_put_file_header(unsigned char out[HT_FILE_HEADER_SIZE])
{
	memcpy(out, HALLOC_LOG_MAGIC, HALLOC_LOG_MAGIC_LEN);
	put_le32(out + 8, HALLOC_LOG_VERSION);
	put_le32(out + 12, 0);
}

void ht_put_frame_header(unsigned char *out, uint32_t length, uint16_t type)
{
	put_le32(out, length);
	put_le16(out + 4, type);
	put_le16(out + 6, 0);
}

static unsigned char *put_str(unsigned char *p, const char *s)
{
	size_t n = strlen(s);

	p = halloc_put_uv(p, n);
	memcpy(p, s, n);
	return p + n;
}

unsigned char *ht_frame_trace_info(const struct ht_trace_info *info,
				   size_t *size)
{
	size_t room =
	    HALLOC_FRAME_HEADER_SIZE + HT_TRACE_INFO_FIELDS * HALLOC_VARINT_MAX;
	unsigned char *frame, *p;
	uint64_t argc = 0;

	for (; info->argv[argc]; argc++)
		room += HALLOC_VARINT_MAX + strlen(info->argv[argc]);
	frame = malloc(room);
	if (!frame)
		return NULL;

	p = frame + HALLOC_FRAME_HEADER_SIZE;
	p = halloc_put_uv(p, info->recorder);
	p = halloc_put_uv(p, info->flags);
	p = halloc_put_uv(p, info->depth);
	p = halloc_put_uv(p, info->start_ns);
	p = halloc_put_uv(p, info->pid);
	p = halloc_put_uv(p, argc);
	for (uint64_t i = 0; i < argc; i++)
		p = put_str(p, info->argv[i]);

	*size = (size_t)(p - frame);
	ht_put_frame_header(frame, (uint32_t)(*size - HALLOC_FRAME_HEADER_SIZE),
			    HALLOC_FRAME_TRACE_INFO);
	return frame;
}

size_t ht_frame_process_exit_how(unsigned char out[HT_SMALL_FRAME_MAX],
				 pid_t pid, uint64_t how, uint64_t value,
				 uint64_t flags)
{
	unsigned char *p = out + HALLOC_FRAME_HEADER_SIZE;

	p = halloc_put_uv(p, (uint64_t)pid);
	p = halloc_put_uv(p, how);
	p = halloc_put_uv(p, value);
	p = halloc_put_uv(p, flags);
	ht_put_frame_header(out, (uint32_t)(p - out - HALLOC_FRAME_HEADER_SIZE),
			    HALLOC_FRAME_PROCESS_EXIT);
	return (size_t)(p - out);
}

size_t ht_frame_process_exit(unsigned char out[HT_SMALL_FRAME_MAX], pid_t pid,
			     int wait_status)
{
	if (WIFEXITED(wait_status))
		return ht_frame_process_exit_how(
		    out, pid, HALLOC_EXIT_CODE,
		    (uint64_t)WEXITSTATUS(wait_status), 0);
	if (WIFSIGNALED(wait_status))
		return ht_frame_process_exit_how(
		    out, pid, HALLOC_EXIT_SIGNAL,
		    (uint64_t)WTERMSIG(wait_status),
		    WCOREDUMP(wait_status) ? 1 : 0);
	return ht_frame_process_exit_how(out, pid, HALLOC_EXIT_UNKNOWN, 0, 0);
}

size_t ht_frame_end(unsigned char out[HT_SMALL_FRAME_MAX],
		    const struct ht_end *end)
{
	unsigned char *p = out + HALLOC_FRAME_HEADER_SIZE;

	p = halloc_put_uv(p, end->flags);
	p = halloc_put_uv(p, end->chunks_lost);
	if (end->bpf_counts) {
		p = halloc_put_uv(p, end->events_lost);
		p = halloc_put_uv(p, end->stacks_truncated);
	}
	ht_put_frame_header(out, (uint32_t)(p - out - HALLOC_FRAME_HEADER_SIZE),
			    HALLOC_FRAME_END);
	return (size_t)(p - out);
}
