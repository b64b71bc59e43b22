/*
 * analyzer/json.c - the JSON writer (see json.h).
 */
#include <inttypes.h>
#include <string.h>

#include "analyzer/json.h"

void ha_json_init(struct ha_json *j, FILE *out)
{
	memset(j, 0, sizeof(*j));
	j->out = out;
}

static bool on_one_line(const struct ha_json *j)
{
	return j->depth > 0 && j->inline_[j->depth - 1];
}

static void newline(struct ha_json *j, unsigned depth)
{
	fputc('\n', j->out);
	for (unsigned i = 0; i < depth; i++)
		fputs("  ", j->out);
}

/* Separator and indentation before a value or a key. */
static void before_item(struct ha_json *j)
{
	if (j->after_key) {
		j->after_key = false;
		return;
	}
	if (j->depth == 0)
		return;
	if (!j->empty[j->depth - 1])
		fputc(',', j->out);
	j->empty[j->depth - 1] = false;
	if (on_one_line(j))
		fputc(' ', j->out);
	else
		newline(j, j->depth);
}

static void open_container(struct ha_json *j, char open, char close,
			   bool inline_)
{
	if (j->depth >= HA_JSON_DEPTH)
		return; /* the reports never nest this deep */
	before_item(j);
	fputc(open, j->out);
	/* Inside a one-line container, everything stays on that line. */
	j->inline_[j->depth] = inline_ || on_one_line(j);
	j->empty[j->depth] = true;
	j->close[j->depth] = close;
	j->depth++;
}

void ha_json_object(struct ha_json *j, bool inline_)
{
	open_container(j, '{', '}', inline_);
}

void ha_json_array(struct ha_json *j, bool inline_)
{
	open_container(j, '[', ']', inline_);
}

void ha_json_end(struct ha_json *j)
{
	if (j->depth == 0)
		return;
	j->depth--;
	if (!j->empty[j->depth]) {
		if (j->inline_[j->depth])
			fputc(' ', j->out);
		else
			newline(j, j->depth);
	}
	fputc(j->close[j->depth], j->out);
	if (j->depth == 0)
		fputc('\n', j->out);
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if none. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp, min;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = s[0] & 0x1f;
		min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = s[0] & 0x0f;
		min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = s[0] & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and beyond U+10FFFF are not UTF-8. */
	if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

void ha_json_escape(FILE *out, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t len;

		switch (c) {
		case '"':
			fputs("\\\"", out);
			i++;
			continue;
		case '\\':
			fputs("\\\\", out);
			i++;
			continue;
		case '\n':
			fputs("\\n", out);
			i++;
			continue;
		case '\t':
			fputs("\\t", out);
			i++;
			continue;
		case '\r':
			fputs("\\r", out);
			i++;
			continue;
		default:
			break;
		}
		if (c < 0x20) {
			fprintf(out, "\\u%04x", c);
			i++;
			continue;
		}
		len = utf8_len(s + i, n - i);
		if (len == 0) {
			fputs("\\ufffd", out);
			i++;
			continue;
		}
		fwrite(s + i, 1, len, out);
		i += len;
	}
}

void ha_json_key(struct ha_json *j, const char *key)
{
	before_item(j);
	fputc('"', j->out);
	ha_json_escape(j->out, key, strlen(key));
	fputs("\": ", j->out);
	j->after_key = true;
}

void ha_json_string_n(struct ha_json *j, const char *s, size_t len)
{
	before_item(j);
	fputc('"', j->out);
	ha_json_escape(j->out, s, len);
	fputc('"', j->out);
}

void ha_json_string(struct ha_json *j, const char *s)
{
	ha_json_string_n(j, s ? s : "", s ? strlen(s) : 0);
}

void ha_json_uint(struct ha_json *j, uint64_t v)
{
	before_item(j);
	fprintf(j->out, "%" PRIu64, v);
}

void ha_json_counter(struct ha_json *j, const char *key, uint64_t v)
{
	ha_json_key(j, key);
	ha_json_uint(j, v);
}

void ha_json_int(struct ha_json *j, int64_t v)
{
	before_item(j);
	fprintf(j->out, "%" PRId64, v);
}

void ha_json_bool(struct ha_json *j, bool v)
{
	before_item(j);
	fputs(v ? "true" : "false", j->out);
}

void ha_json_null(struct ha_json *j)
{
	before_item(j);
	fputs("null", j->out);
}

void ha_json_hex(struct ha_json *j, uint64_t v)
{
	before_item(j);
	fprintf(j->out, "\"0x%" PRIx64 "\"", v);
}
