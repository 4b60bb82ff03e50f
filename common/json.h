/*
 * A streaming JSON writer to a stdio stream. The writer places commas,
 * colons and (with JSON_PRETTY) line breaks and indentation itself, so
 * callers only state the structure. Strings are written as UTF-8. Valid
 * sequences pass through, invalid bytes become U+FFFD, and control
 * characters (C0, DEL and C1) and U+2028/U+2029 are escaped. Misuse,
 * such as a value in an object without a key, is a broken invariant and
 * aborts via fatal(). Write errors are left in the stream's error flag
 * for the caller to check.
 */
#ifndef RELAYQ_JSON_H
#define RELAYQ_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum json_flags {
	JSON_PRETTY = 1,	/* one member per line, indented by two spaces */
};

struct json_writer;

/* Create a writer to FP. A newline follows each complete top-level value. */
struct json_writer *json_writer_new(FILE *fp, int flags);
void json_writer_free(struct json_writer *w);

void json_object_begin(struct json_writer *w);
void json_object_end(struct json_writer *w);
void json_array_begin(struct json_writer *w);
void json_array_end(struct json_writer *w);

/* Write the name of the next object member. A value must follow. */
void json_key(struct json_writer *w, const char *key);

/* Write a string value, or null when S is NULL. */
void json_string(struct json_writer *w, const char *s);
void json_string_len(struct json_writer *w, const char *s, size_t len);

void json_int(struct json_writer *w, int64_t value);
void json_bool(struct json_writer *w, bool value);
void json_null(struct json_writer *w);

/*
 * Write one string value in pieces. The pieces may split a UTF-8 sequence
 * anywhere, and an incomplete sequence left at json_string_end() becomes
 * U+FFFD.
 */
void json_string_begin(struct json_writer *w);
void json_string_append(struct json_writer *w, const void *data, size_t len);
void json_string_end(struct json_writer *w);

/* Write the base64 (RFC 4648) encoding of bytes given in pieces. */
void json_base64_begin(struct json_writer *w);
void json_base64_append(struct json_writer *w, const void *data, size_t len);
void json_base64_end(struct json_writer *w);

enum json_utf8_result {
	JSON_UTF8_VALID,	/* a complete, well-formed sequence */
	JSON_UTF8_INVALID,	/* ill-formed: replace the bytes with U+FFFD */
	JSON_UTF8_TRUNCATED,	/* well-formed so far, but LEN ends inside it */
};

/*
 * Classify the UTF-8 sequence at the start of S (LEN >= 1 bytes) by the
 * rules of RFC 3629: overlong forms, surrogates and values above U+10FFFF
 * are invalid. *SEQLEN receives the bytes the sequence spans: a whole
 * valid sequence, the maximal ill-formed prefix (at least 1 byte, as the
 * Unicode standard recommends for U+FFFD substitution) or all LEN bytes
 * when truncated. *CODEPOINT is set for a valid sequence.
 */
enum json_utf8_result json_utf8_scan(const unsigned char *s, size_t len,
    size_t *seqlen, uint32_t *codepoint);

/* Incremental UTF-8 validation of a byte stream given in pieces. */
struct json_utf8_check {
	unsigned char pending[4];	/* a truncated sequence from the previous piece */
	size_t pending_len;
	bool valid;
};

void json_utf8_check_init(struct json_utf8_check *check);
void json_utf8_check_update(struct json_utf8_check *check, const void *data,
    size_t len);
/* Return whether every piece so far was valid and no sequence is left open. */
bool json_utf8_check_finish(struct json_utf8_check *check);

#endif
