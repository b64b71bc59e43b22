/*
 * analyzer/report_types.c - "Memory usage by type" in both formats: the
 * halloc(type, n) allocations by type, with their file:line sites, and the
 * memory without a type by size class (types.h).
 *
 * Text shows the section only for a process that made typed allocations
 * (otherwise the size classes repeat ALLOCATION SIZES). JSON always has
 * both keys:
 *   "types": [{"type", "object_size", "allocations", "objects", "bytes",
 *              "peak_bytes", "leaked_bytes", "leaked_blocks",
 *              "sites": [{"file", "line", "allocations", "objects",
 *                         "bytes"}]}]
 *   "size_classes": [{"min", "max", "allocations", "bytes", "peak_bytes",
 *                     "leaked_bytes", "leaked_blocks"}]
 */
#include <inttypes.h>

#include "analyzer/json.h"
#include "analyzer/report_text.h"
#include "analyzer/types.h"

static uint64_t class_min(unsigned k)
{
	return k ? 1ull << (k - 1) : 0;
}

static uint64_t class_max(unsigned k)
{
	return k == 0 ? 0 : k == 64 ? UINT64_MAX : (1ull << k) - 1;
}

/* 2^k bytes, short: "512 B", "4 KiB" (as ALLOCATION SIZES shows them). */
static const char *pow2(char buf[32], unsigned k)
{
	static const char *const units[] = {"B",   "KiB", "MiB", "GiB",
					    "TiB", "PiB", "EiB"};

	snprintf(buf, 32, "%llu %s", 1ull << (k % 10), units[k / 10]);
	return buf;
}

/* "16 B - <32 B", "0 B" */
static void print_class(FILE *out, unsigned k)
{
	char range[80], b1[32], b2[32];

	if (k == 0)
		snprintf(range, sizeof(range), "0 B");
	else
		snprintf(range, sizeof(range), "%s - <%s", pow2(b1, k - 1),
			 k < 64 ? pow2(b2, k) : "16 EiB");
	fprintf(out, "    %-20s", range);
}

void ha_text_types(FILE *out, const struct ha_process *p,
		   const struct ha_text_style *st)
{
	const struct ha_types_result *r = &p->types;
	char s1[64], s2[64], s3[64], n1[32], n2[32];

	if (!r->ntypes)
		return;
	fprintf(out, "\n%sMEMORY USAGE BY TYPE%s (halloc() allocations):\n",
		st->head, st->reset);
	for (size_t i = 0; i < r->ntypes; i++) {
		const struct ha_type_usage *u = &r->types[i];

		fprintf(
		    out, "  %s%s%s: %s %s in %s %s, %s, peak %s, leaked %s\n",
		    st->place, u->name, st->reset,
		    ha_text_count(n1, u->objects),
		    ha_text_plural(u->objects, "object", "objects"),
		    ha_text_count(n2, u->allocations),
		    ha_text_plural(u->allocations, "allocation", "allocations"),
		    ha_text_size(s1, u->bytes), ha_text_size(s2, u->peak_bytes),
		    ha_text_size(s3, u->leaked_bytes));
		for (size_t k = 0; k < u->nsites; k++) {
			const struct ha_type_site_usage *s = &u->sites[k];

			fprintf(out, "    %s:%" PRIu32 ": %s %s, %s %s, %s\n",
				s->file, s->line,
				ha_text_count(n1, s->allocations),
				ha_text_plural(s->allocations, "allocation",
					       "allocations"),
				ha_text_count(n2, s->objects),
				ha_text_plural(s->objects, "object", "objects"),
				ha_text_size(s1, s->bytes));
		}
	}
	if (!r->nclasses)
		return;
	fprintf(out, "  %sWithout a type%s, by size class:\n", st->head,
		st->reset);
	for (size_t i = 0; i < r->nclasses; i++) {
		const struct ha_size_class *c = &r->classes[i];

		print_class(out, c->bucket);
		fprintf(
		    out, " %s %s, %s, peak %s, leaked %s\n",
		    ha_text_count(n1, c->allocations),
		    ha_text_plural(c->allocations, "allocation", "allocations"),
		    ha_text_size(s1, c->bytes), ha_text_size(s2, c->peak_bytes),
		    ha_text_size(s3, c->leaked_bytes));
	}
}

void ha_json_types(struct ha_json *j, const struct ha_process *p)
{
	const struct ha_types_result *r = &p->types;

	ha_json_key(j, "types");
	ha_json_array(j, false);
	for (size_t i = 0; i < r->ntypes; i++) {
		const struct ha_type_usage *u = &r->types[i];

		ha_json_object(j, false);
		ha_json_key(j, "type");
		ha_json_string(j, u->name);
		ha_json_counter(j, "object_size", u->object_size);
		ha_json_counter(j, "allocations", u->allocations);
		ha_json_counter(j, "objects", u->objects);
		ha_json_counter(j, "bytes", u->bytes);
		ha_json_counter(j, "peak_bytes", u->peak_bytes);
		ha_json_counter(j, "leaked_bytes", u->leaked_bytes);
		ha_json_counter(j, "leaked_blocks", u->leaked_blocks);
		ha_json_key(j, "sites");
		ha_json_array(j, false);
		for (size_t k = 0; k < u->nsites; k++) {
			ha_json_object(j, true);
			ha_json_key(j, "file");
			ha_json_string(j, u->sites[k].file);
			ha_json_counter(j, "line", u->sites[k].line);
			ha_json_counter(j, "allocations", u->sites[k].allocations);
			ha_json_counter(j, "objects", u->sites[k].objects);
			ha_json_counter(j, "bytes", u->sites[k].bytes);
			ha_json_end(j);
		}
		ha_json_end(j);
		ha_json_end(j);
	}
	ha_json_end(j);
	ha_json_key(j, "size_classes");
	ha_json_array(j, false);
	for (size_t i = 0; i < r->nclasses; i++) {
		const struct ha_size_class *c = &r->classes[i];

		ha_json_object(j, true);
		ha_json_counter(j, "min", class_min(c->bucket));
		ha_json_counter(j, "max", class_max(c->bucket));
		ha_json_counter(j, "allocations", c->allocations);
		ha_json_counter(j, "bytes", c->bytes);
		ha_json_counter(j, "peak_bytes", c->peak_bytes);
		ha_json_counter(j, "leaked_bytes", c->leaked_bytes);
		ha_json_counter(j, "leaked_blocks", c->leaked_blocks);
		ha_json_end(j);
	}
	ha_json_end(j);
}
