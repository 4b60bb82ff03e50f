/*
 * Streaming JSON writer (RFC 8259). The writer keeps a stack of open
 * containers with their item counts, which tell it where commas go.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "log.h"
#include "util.h"

/* UTF-8 encoding of U+FFFD REPLACEMENT CHARACTER. */
#define JSON_REPLACEMENT "\xef\xbf\xbd"

enum json_stream {
	JSON_STREAM_NONE,
	JSON_STREAM_STRING,
	JSON_STREAM_BASE64,
};

struct json_level {
	char type;		/* '{' or '[' */
	size_t count;		/* members or elements written so far */
};

struct json_writer {
	FILE *fp;
	int flags;
	struct json_level *stack;
	size_t depth;
	size_t capacity;
	bool after_key;		/* a key was written and its value is due */
	enum json_stream stream;
	/* Bytes carried between pieces of a streamed value: a truncated
	 * UTF-8 sequence, or up to two bytes of an incomplete base64 group. */
	unsigned char pending[4];
	size_t pending_len;
};

struct json_writer *
json_writer_new(FILE *fp, int flags)
{
	struct json_writer *w = xcalloc(1, sizeof(*w));

	w->fp = fp;
	w->flags = flags;
	return w;
}

void
json_writer_free(struct json_writer *w)
{
	if (w == NULL)
		return;
	free(w->stack);
	free(w);
}

/* --- UTF-8 --- */

enum json_utf8_result
json_utf8_scan(const unsigned char *s, size_t len, size_t *seqlen,
    uint32_t *codepoint)
{
	unsigned char lead = s[0], low = 0x80, high = 0xbf;
	size_t need, i;
	uint32_t cp;

	if (lead < 0x80) {
		*seqlen = 1;
		*codepoint = lead;
		return JSON_UTF8_VALID;
	}

	/*
	 * The second byte's range excludes overlong forms, surrogates and
	 * values above U+10FFFF.
	 */
	if (lead < 0xc2) {
		*seqlen = 1;
		return JSON_UTF8_INVALID;
	} else if (lead < 0xe0) {
		need = 2;
		cp = lead & 0x1f;
	} else if (lead < 0xf0) {
		need = 3;
		cp = lead & 0x0f;
		if (lead == 0xe0)
			low = 0xa0;
		else if (lead == 0xed)
			high = 0x9f;
	} else if (lead < 0xf5) {
		need = 4;
		cp = lead & 0x07;
		if (lead == 0xf0)
			low = 0x90;
		else if (lead == 0xf4)
			high = 0x8f;
	} else {
		*seqlen = 1;
		return JSON_UTF8_INVALID;
	}

	for (i = 1; i < need; i++) {
		if (i >= len) {
			*seqlen = len;
			return JSON_UTF8_TRUNCATED;
		}
		if (s[i] < low || s[i] > high) {
			*seqlen = i;
			return JSON_UTF8_INVALID;
		}
		cp = cp << 6 | (s[i] & 0x3f);
		low = 0x80;
		high = 0xbf;
	}

	*seqlen = need;
	*codepoint = cp;
	return JSON_UTF8_VALID;
}

/*
 * Continue the truncated sequence in PENDING with the first bytes of S.
 * A truncated sequence stays in PENDING (which then absorbed all of S);
 * otherwise the finished sequence goes to SEQ and PENDING is emptied.
 * Returns the number of bytes taken from S.
 */
static size_t
json_utf8_complete(unsigned char *pending, size_t *pending_len,
    const unsigned char *s, size_t len, enum json_utf8_result *result,
    unsigned char *seq, size_t *seq_len, uint32_t *codepoint)
{
	unsigned char buf[8];
	size_t have = *pending_len, take, scanned;

	take = 4 - have;
	if (take > len)
		take = len;
	memcpy(buf, pending, have);
	memcpy(buf + have, s, take);

	*result = json_utf8_scan(buf, have + take, &scanned, codepoint);
	if (*result == JSON_UTF8_TRUNCATED) {
		memcpy(pending + have, s, take);
		*pending_len = have + take;
		return take;
	}

	/* PENDING was well-formed so far, so the sequence spans all of it. */
	memcpy(seq, buf, scanned);
	*seq_len = scanned;
	*pending_len = 0;
	return scanned - have;
}

void
json_utf8_check_init(struct json_utf8_check *check)
{
	memset(check, 0, sizeof(*check));
	check->valid = true;
}

void
json_utf8_check_update(struct json_utf8_check *check, const void *data,
    size_t len)
{
	const unsigned char *s = data;
	enum json_utf8_result result;
	unsigned char seq[4];
	size_t i = 0, seqlen;
	uint32_t cp;

	if (!check->valid)
		return;

	if (check->pending_len > 0 && len > 0) {
		i = json_utf8_complete(check->pending, &check->pending_len, s,
		    len, &result, seq, &seqlen, &cp);
		if (result == JSON_UTF8_INVALID)
			check->valid = false;
		if (result != JSON_UTF8_VALID)
			return;
	}

	while (i < len) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		result = json_utf8_scan(s + i, len - i, &seqlen, &cp);
		if (result == JSON_UTF8_INVALID) {
			check->valid = false;
			return;
		}
		if (result == JSON_UTF8_TRUNCATED) {
			memcpy(check->pending, s + i, seqlen);
			check->pending_len = seqlen;
			return;
		}
		i += seqlen;
	}
}

bool
json_utf8_check_finish(struct json_utf8_check *check)
{
	return check->valid && check->pending_len == 0;
}

/* --- structure --- */

static void
json_require_no_stream(struct json_writer *w)
{
	if (w->stream != JSON_STREAM_NONE)
		fatal("json: value written while a streamed string is open");
}

static void
json_indent(struct json_writer *w, size_t depth)
{
	size_t i;

	if (!(w->flags & JSON_PRETTY))
		return;
	putc('\n', w->fp);
	for (i = 0; i < depth; i++)
		fputs("  ", w->fp);
}

/* Start a new item of the innermost container: comma, line break, indentation. */
static void
json_item_begin(struct json_writer *w)
{
	struct json_level *top = &w->stack[w->depth - 1];

	if (top->count > 0)
		putc(',', w->fp);
	json_indent(w, w->depth);
	top->count++;
}

static void
json_value_begin(struct json_writer *w)
{
	json_require_no_stream(w);
	if (w->depth == 0)
		return;

	if (w->stack[w->depth - 1].type == '{') {
		if (!w->after_key)
			fatal("json: object member written without a key");
		w->after_key = false;
		return;
	}
	json_item_begin(w);
}

/* End a complete top-level value with a newline, as text files end. */
static void
json_value_end(struct json_writer *w)
{
	if (w->depth == 0)
		putc('\n', w->fp);
}

static void
json_container_begin(struct json_writer *w, char type)
{
	json_value_begin(w);
	if (w->depth == w->capacity) {
		w->capacity = w->capacity == 0 ? 8 : w->capacity * 2;
		w->stack = xrealloc(w->stack, w->capacity * sizeof(*w->stack));
	}
	w->stack[w->depth].type = type;
	w->stack[w->depth].count = 0;
	w->depth++;
	putc(type, w->fp);
}

static void
json_container_end(struct json_writer *w, char type)
{
	json_require_no_stream(w);
	if (w->depth == 0 || w->stack[w->depth - 1].type != type)
		fatal("json: closing a container that is not open");
	if (w->after_key)
		fatal("json: object closed after a key without a value");

	w->depth--;
	if (w->stack[w->depth].count > 0)
		json_indent(w, w->depth);
	putc(type == '{' ? '}' : ']', w->fp);
	json_value_end(w);
}

void
json_object_begin(struct json_writer *w)
{
	json_container_begin(w, '{');
}

void
json_object_end(struct json_writer *w)
{
	json_container_end(w, '{');
}

void
json_array_begin(struct json_writer *w)
{
	json_container_begin(w, '[');
}

void
json_array_end(struct json_writer *w)
{
	json_container_end(w, '[');
}

/* --- strings --- */

static void
json_write_ascii_escape(struct json_writer *w, unsigned char c)
{
	switch (c) {
	case '"':
		fputs("\\\"", w->fp);
		break;
	case '\\':
		fputs("\\\\", w->fp);
		break;
	case '\b':
		fputs("\\b", w->fp);
		break;
	case '\f':
		fputs("\\f", w->fp);
		break;
	case '\n':
		fputs("\\n", w->fp);
		break;
	case '\r':
		fputs("\\r", w->fp);
		break;
	case '\t':
		fputs("\\t", w->fp);
		break;
	default:
		fprintf(w->fp, "\\u%04x", c);
		break;
	}
}

/*
 * Write one non-ASCII sequence. JSON allows C1 controls and the line
 * separators U+2028/U+2029 raw, but they are escaped because terminals
 * act on C1 controls and JavaScript before ES2019 rejects the separators
 * in string literals.
 */
static void
json_write_sequence(struct json_writer *w, enum json_utf8_result result,
    const unsigned char *seq, size_t len, uint32_t cp)
{
	if (result != JSON_UTF8_VALID)
		fputs(JSON_REPLACEMENT, w->fp);
	else if ((cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029)
		fprintf(w->fp, "\\u%04" PRIx32, cp);
	else
		fwrite(seq, 1, len, w->fp);
}

/*
 * Write the escaped string content of S. With STREAMING a sequence cut
 * off at the end is kept in w->pending for the next piece; otherwise it
 * is ill-formed and replaced.
 */
static void
json_write_escaped(struct json_writer *w, const unsigned char *s, size_t len,
    bool streaming)
{
	enum json_utf8_result result;
	size_t i = 0, run = 0, seqlen;
	unsigned char c;
	uint32_t cp = 0;

	while (i < len) {
		c = s[i];
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			i++;
			continue;
		}

		fwrite(s + run, 1, i - run, w->fp);
		if (c < 0x80) {
			json_write_ascii_escape(w, c);
			run = ++i;
			continue;
		}

		result = json_utf8_scan(s + i, len - i, &seqlen, &cp);
		if (result == JSON_UTF8_TRUNCATED && streaming) {
			memcpy(w->pending, s + i, seqlen);
			w->pending_len = seqlen;
			return;
		}
		json_write_sequence(w, result, s + i, seqlen, cp);
		i += seqlen;
		run = i;
	}
	fwrite(s + run, 1, i - run, w->fp);
}

void
json_key(struct json_writer *w, const char *key)
{
	json_require_no_stream(w);
	if (w->depth == 0 || w->stack[w->depth - 1].type != '{')
		fatal("json: key \"%s\" written outside an object", key);
	if (w->after_key)
		fatal("json: key \"%s\" written where a value is due", key);

	json_item_begin(w);
	putc('"', w->fp);
	json_write_escaped(w, (const unsigned char *)key, strlen(key), false);
	fputs(w->flags & JSON_PRETTY ? "\": " : "\":", w->fp);
	w->after_key = true;
}

void
json_string_len(struct json_writer *w, const char *s, size_t len)
{
	json_value_begin(w);
	putc('"', w->fp);
	json_write_escaped(w, (const unsigned char *)s, len, false);
	putc('"', w->fp);
	json_value_end(w);
}

void
json_string(struct json_writer *w, const char *s)
{
	if (s == NULL)
		json_null(w);
	else
		json_string_len(w, s, strlen(s));
}

void
json_string_begin(struct json_writer *w)
{
	json_value_begin(w);
	putc('"', w->fp);
	w->stream = JSON_STREAM_STRING;
	w->pending_len = 0;
}

void
json_string_append(struct json_writer *w, const void *data, size_t len)
{
	const unsigned char *s = data;
	enum json_utf8_result result;
	unsigned char seq[4];
	size_t used = 0, seqlen;
	uint32_t cp = 0;

	if (w->stream != JSON_STREAM_STRING)
		fatal("json: string piece written outside a streamed string");

	if (w->pending_len > 0 && len > 0) {
		used = json_utf8_complete(w->pending, &w->pending_len, s, len,
		    &result, seq, &seqlen, &cp);
		if (result == JSON_UTF8_TRUNCATED)
			return;
		json_write_sequence(w, result, seq, seqlen, cp);
	}
	json_write_escaped(w, s + used, len - used, true);
}

void
json_string_end(struct json_writer *w)
{
	if (w->stream != JSON_STREAM_STRING)
		fatal("json: end of a streamed string that is not open");

	if (w->pending_len > 0)
		fputs(JSON_REPLACEMENT, w->fp);
	w->pending_len = 0;
	w->stream = JSON_STREAM_NONE;
	putc('"', w->fp);
	json_value_end(w);
}

/* --- base64 --- */

static const char json_base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Encode one group of LEN (1 to 3) bytes as four characters with '=' padding. */
static void
json_base64_group(struct json_writer *w, const unsigned char *in, size_t len)
{
	uint32_t bits = (uint32_t)in[0] << 16;
	char out[4];

	if (len > 1)
		bits |= (uint32_t)in[1] << 8;
	if (len > 2)
		bits |= in[2];

	out[0] = json_base64_alphabet[bits >> 18 & 0x3f];
	out[1] = json_base64_alphabet[bits >> 12 & 0x3f];
	out[2] = len > 1 ? json_base64_alphabet[bits >> 6 & 0x3f] : '=';
	out[3] = len > 2 ? json_base64_alphabet[bits & 0x3f] : '=';
	fwrite(out, 1, sizeof(out), w->fp);
}

void
json_base64_begin(struct json_writer *w)
{
	json_value_begin(w);
	putc('"', w->fp);
	w->stream = JSON_STREAM_BASE64;
	w->pending_len = 0;
}

void
json_base64_append(struct json_writer *w, const void *data, size_t len)
{
	const unsigned char *s = data;
	size_t i = 0;

	if (w->stream != JSON_STREAM_BASE64)
		fatal("json: base64 piece written outside a base64 string");

	while (w->pending_len > 0 && w->pending_len < 3 && i < len)
		w->pending[w->pending_len++] = s[i++];
	if (w->pending_len == 3) {
		json_base64_group(w, w->pending, 3);
		w->pending_len = 0;
	}

	for (; len - i >= 3; i += 3)
		json_base64_group(w, s + i, 3);

	while (i < len)
		w->pending[w->pending_len++] = s[i++];
}

void
json_base64_end(struct json_writer *w)
{
	if (w->stream != JSON_STREAM_BASE64)
		fatal("json: end of a base64 string that is not open");

	if (w->pending_len > 0)
		json_base64_group(w, w->pending, w->pending_len);
	w->pending_len = 0;
	w->stream = JSON_STREAM_NONE;
	putc('"', w->fp);
	json_value_end(w);
}

/* --- scalars --- */

void
json_int(struct json_writer *w, int64_t value)
{
	json_value_begin(w);
	fprintf(w->fp, "%" PRId64, value);
	json_value_end(w);
}

void
json_bool(struct json_writer *w, bool value)
{
	json_value_begin(w);
	fputs(value ? "true" : "false", w->fp);
	json_value_end(w);
}

void
json_null(struct json_writer *w)
{
	json_value_begin(w);
	fputs("null", w->fp);
	json_value_end(w);
}
