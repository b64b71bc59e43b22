/*
 * tracer/finish.c - completing the log once the traced processes have
 * ended: the chunks only shared memory holds, how each process ended, the
 * symbols, and the END frame that marks the log complete.
 */
#include "tracer/session.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "analyzer/analyzer.h"

/* A descendant left running (gave_up) may be rewriting its slot: a copy
 * could mix two chunks. Its events are lost anyway, and said to be. */
static bool owner_alive(const struct halloc_slot *slot)
{
	pid_t tid = (pid_t)__atomic_load_n(&slot->state, __ATOMIC_ACQUIRE);

	return tid > 0 && (kill(tid, 0) == 0 || errno == EPERM);
}

/*
 * Whether slot i may hold anything: the agent writes a slot's header when
 * a thread takes it, so a slot whose header lies in a hole of the memfd
 * (never written) is empty. Asking the file (SEEK_DATA, which counts
 * swapped-out pages as data) spares touching all 16 MiB of slots, most
 * never used, one page fault each. *data_end caches the current data
 * range: [*data_at, *data_end).
 */
static bool slot_written(const struct ht_session *s, uint32_t i, off_t *data_at,
			 off_t *data_end)
{
	off_t h = (off_t)(offsetof(struct halloc_shm, slots) +
			  (size_t)i * sizeof(struct halloc_slot));
	off_t hdr_end = h + (off_t)offsetof(struct halloc_slot, frame);

	if (*data_end < 0) /* the file cannot say: look at every slot */
		return true;
	if (h < *data_at) /* before the data found: in a hole, or not */
		return hdr_end > *data_at;
	if (h < *data_end) /* in the data, or straddles its end: look */
		return true;
	*data_at = lseek(s->shm_fd, h, SEEK_DATA);
	if (*data_at < 0) {
		if (errno == ENXIO) { /* no data from h on */
			*data_at = *data_end = (off_t)INT64_MAX;
			return false;
		}
		*data_end = -1;
		return true;
	}
	*data_end = lseek(s->shm_fd, *data_at, SEEK_HOLE);
	if (*data_end < 0)
		return true;
	return *data_at < hdr_end;
}

/* Appends each slot's unflushed frame unless the pipe already carried it;
 * adds what it appends to the set of chunks in the log. */
static void append_leftovers(struct ht_session *s)
{
	unsigned char frame[HALLOC_FRAME_MAX];
	struct ht_chunk_set appended;
	off_t data_at = 0, data_end = 0;

	ht_chunk_set_init(&appended);
	ht_chunk_set_sort(&s->seen);
	/* nslots is ours (spawn.c), but the program could have written it. */
	uint32_t nslots = s->shm->nslots < HALLOC_SHM_SLOTS ? s->shm->nslots
							    : HALLOC_SHM_SLOTS;

	for (uint32_t i = 0; i < nslots; i++) {
		uint32_t slot, chunk_no;
		size_t size;

		if (!slot_written(s, i, &data_at, &data_end))
			continue;
		if (s->gave_up && owner_alive(&s->shm->slots[i]))
			continue;
		size = ht_slot_leftover(&s->shm->slots[i], &s->seen, frame);
		if (!size)
			continue;
		ht_log_write(s, frame, size);
		ht_symbols_frame(s, frame, size);
		ht_chunk_key(frame, &slot, &chunk_no);
		if (ht_chunk_set_add(&appended, slot, chunk_no) < 0)
			s->seen_incomplete = true;
	}
	for (size_t i = 0; i < appended.count; i++) {
		uint64_t key = appended.keys[i];

		if (ht_chunk_set_add(&s->seen, (uint32_t)(key >> 32),
				     (uint32_t)key) < 0)
			s->seen_incomplete = true;
	}
	ht_chunk_set_free(&appended);
	ht_chunk_set_sort(&s->seen);
}

static bool killed_by_signal(const struct ht_session *s)
{
	for (size_t i = 0; i < s->nexits; i++)
		if (WIFSIGNALED(s->exits[i].status))
			return true;
	return false;
}

static void append_end(struct ht_session *s)
{
	unsigned char frame[HT_SMALL_FRAME_MAX];
	uint64_t chunks_lost = s->frames_dropped, gaps, flags = 0;
	uint32_t slots_full =
	    __atomic_load_n(&s->shm->slots_full, __ATOMIC_RELAXED);

	if (s->framer.broken)
		/* At least this many frames were in the bytes dropped. */
		chunks_lost += (s->framer.dropped + HALLOC_FRAME_MAX - 1) /
			       HALLOC_FRAME_MAX;
	/* A dropped chunk may also show as a gap: both are lower bounds. */
	gaps = s->seen_incomplete ? 0 : ht_chunk_set_gaps(&s->seen);
	if (gaps > chunks_lost)
		chunks_lost = gaps;
	/*
	 * A thread that found no free slot buffers privately; that buffer is
	 * lost only if its process was killed before flushing it.
	 */
	if (chunks_lost || s->seen_incomplete || s->gave_up ||
	    (slots_full && killed_by_signal(s)))
		flags |= HT_END_EVENTS_LOST;
	ht_log_write(
	    s, frame,
	    ht_frame_end(frame, &(struct ht_end){.flags = flags,
						 .chunks_lost = chunks_lost}));
}

enum ht_result ht_finish(struct ht_session *s, struct ht_diag *diag)
{
	struct ha_diag symbols_diag = {{0}};
	unsigned char frame[HT_SMALL_FRAME_MAX];

	diag->message[0] = '\0';
	/* Without the full set, a leftover could duplicate a chunk: better
	 * to lose the last chunk of each thread than to count twice. */
	if (!s->seen_incomplete)
		append_leftovers(s);
	for (size_t i = 0; i < s->nexits; i++) {
		size_t size = ht_frame_process_exit(frame, s->exits[i].pid,
						    s->exits[i].status);

		ht_log_write(s, frame, size);
		ht_symbols_frame(s, frame, size);
	}
	/* The symbols are appended through another descriptor (and the log
	 * read again, when it was not fed): the zstd frame must end first. */
	ht_log_seal(s);
	if (s->log_errno)
		goto write_error;

	/* --no-symbols: reports read the binaries on disk instead. */
	if (!s->no_symbols && ht_symbols_append(s, &symbols_diag) != HA_OK)
		snprintf(diag->message, sizeof(diag->message),
			 "while adding symbols to the log: %.470s",
			 symbols_diag.message[0] ? symbols_diag.message
						 : "cannot symbolize");
	/* The symbols were appended through another descriptor. */
	if (lseek(s->log_fd, 0, SEEK_END) < 0 && errno != ESPIPE) {
		s->log_errno = errno;
		goto write_error;
	}
	append_end(s);
	ht_log_seal(s);
	if (s->log_errno)
		goto write_error;
	if (close(s->log_fd) < 0) {
		s->log_fd = -1;
		s->log_errno = errno;
		goto write_error;
	}
	s->log_fd = -1;
	return HT_OK;

write_error:
	snprintf(diag->message, sizeof(diag->message),
		 "cannot write the log '%s': %s", s->log_path,
		 strerror(s->log_errno));
	return HT_ERR_LOG;
}

int ht_exit_status(const struct ht_session *s)
{
	if (!s->child_ended)
		return 125;
	if (WIFEXITED(s->child_status))
		return WEXITSTATUS(s->child_status);
	if (WIFSIGNALED(s->child_status))
		return 128 + WTERMSIG(s->child_status);
	return 125;
}
