/*
 * analyzer/json.h - a small streaming JSON writer: always valid output.
 *
 * Strings are escaped (quotes, backslashes, control characters) and made
 * valid UTF-8: a byte that does not start a valid sequence becomes U+FFFD,
 * since logs carry argv and paths, which are bytes, not text. Numbers are
 * unsigned or signed 64-bit integers, never NaN. Objects and arrays nest
 * up to HA_JSON_DEPTH; an "inline" container is written on one line.
 */
#ifndef HALLOC_ANALYZER_JSON_H
#define HALLOC_ANALYZER_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define HA_JSON_DEPTH 32

struct ha_json {
	FILE *out;
	unsigned depth;
	bool empty[HA_JSON_DEPTH];   /* no member yet at this level */
	bool inline_[HA_JSON_DEPTH]; /* this level is on one line */
	char close[HA_JSON_DEPTH];   /* '}' or ']' */
	bool after_key;
};

void ha_json_init(struct ha_json *j, FILE *out);
void ha_json_object(struct ha_json *j, bool inline_);
void ha_json_array(struct ha_json *j, bool inline_);
void ha_json_end(struct ha_json *j);
void ha_json_key(struct ha_json *j, const char *key);
void ha_json_string(struct ha_json *j, const char *s);
void ha_json_string_n(struct ha_json *j, const char *s, size_t len);
void ha_json_uint(struct ha_json *j, uint64_t v);
void ha_json_int(struct ha_json *j, int64_t v);
void ha_json_bool(struct ha_json *j, bool v);
void ha_json_null(struct ha_json *j);
/* A string of "0x" and lowercase hex digits. */
void ha_json_hex(struct ha_json *j, uint64_t v);
/* "key": v, a member of the object being written. */
void ha_json_counter(struct ha_json *j, const char *key, uint64_t v);

/* report_json.c: a site object, as every section of a report writes it. */
struct ha_log;
struct ha_site;
void ha_json_site(struct ha_json *j, const struct ha_log *log,
		  const struct ha_site *site);

/* Writes s[0..len) escaped, without quotes: valid UTF-8 out. */
void ha_json_escape(FILE *out, const char *s, size_t len);

#endif /* HALLOC_ANALYZER_JSON_H */
