/*
 * tests/tools/stackdump.c - print every stack a log holds, one a line, as
 * "module+offset" frames innermost first (frames in libhalloc.so as
 * "agent"): addresses that mean the same code in two runs print the same,
 * whatever the load addresses. tests/e2e/compare_stacks sorts the lines
 * and compares two builds' logs of the same program.
 *
 * Usage: stackdump LOG
 */
#include <inttypes.h>
#include <stdio.h>

#include "analyzer/model.h"

int main(int argc, char **argv)
{
	struct ha_diag diag = {{0}};
	struct ha_log *log = NULL;
	FILE *f;
	size_t i, j;

	if (argc != 2) {
		fprintf(stderr, "usage: stackdump LOG\n");
		return 2;
	}
	f = fopen(argv[1], "rb");
	if (!f) {
		perror(argv[1]);
		return 1;
	}
	if (ha_log_read(f, argv[1], true, &log, &diag) != HA_OK ||
	    ha_log_resolve(log) != HA_OK) {
		fprintf(stderr, "stackdump: %s\n", diag.message);
		return 1;
	}
	for (i = 0; i < log->nstacks; i++) {
		const struct ha_stack *s = &log->stacks[i];

		if (!s->defined)
			continue;
		for (j = 0; j < s->nframes; j++) {
			const struct ha_loc *l =
			    &log->locs[log->frame_locs[s->first + j]];
			const struct ha_modfile *m = &log->modfiles[l->modfile];

			if (m->agent)
				printf("%sagent", j ? " " : "");
			else
				printf("%s%s+%" PRIx64, j ? " " : "",
				       ha_basename(m->path), l->offset);
		}
		printf("\n");
	}
	ha_log_free(log);
	fclose(f);
	return 0;
}
