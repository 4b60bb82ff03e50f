/*
 * Streaming header handling for messages entering the queue. Header lines
 * are buffered one at a time (up to MESSAGE_HEADER_LINE_MAX); body bytes
 * pass straight through to the sink.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "message.h"
#include "util.h"

void
message_writer_init(struct message_writer *w, const char *prefix,
    const char *domain, message_sink sink, void *arg)
{
	memset(w, 0, sizeof(*w));
	w->sink = sink;
	w->arg = arg;
	w->domain = xstrdup(domain);
	w->in_headers = true;
	if (prefix != NULL && prefix[0] != '\0') {
		w->sink(w->arg, prefix, strlen(prefix));
		w->size += strlen(prefix);
	}
}

static void
message_writer_emit(struct message_writer *w, const char *data, size_t len)
{
	if (len == 0)
		return;
	w->sink(w->arg, data, len);
	w->size += len;
}

char *
message_id_generate(const char *domain)
{
	return xasprintf("<%lld.%016llx@%s>", (long long)now_millis(),
	    (unsigned long long)random_below(UINT64_MAX), domain);
}

/* RFC 5322 3.6.1 and 3.6.4: both fields are required; add what is missing. */
static void
message_writer_add_missing(struct message_writer *w)
{
	char date[64], *line;

	if (!w->has_date) {
		time_format_rfc5322(now_seconds(), date, sizeof(date));
		line = xasprintf("Date: %s\r\n", date);
		message_writer_emit(w, line, strlen(line));
		free(line);
		w->has_date = true;
	}
	if (!w->has_message_id) {
		free(w->message_id);
		w->message_id = message_id_generate(w->domain);
		line = xasprintf("Message-ID: %s\r\n", w->message_id);
		message_writer_emit(w, line, strlen(line));
		free(line);
		w->has_message_id = true;
	}
}

/* Keep the Message-ID value: the text from the first '<' to the following '>'. */
static void
message_writer_capture_id(struct message_writer *w, const char *value, size_t len)
{
	const char *open = memchr(value, '<', len), *close;

	if (open == NULL || w->message_id != NULL)
		return;
	close = memchr(open, '>', len - (size_t)(open - value));
	if (close != NULL)
		w->message_id = xstrndup(open, (size_t)(close - open) + 1);
}

/* Length of the field name if LINE starts a header field ("Name:"), else 0. */
static size_t
message_field_name_length(const char *line, size_t len)
{
	size_t i;

	/* RFC 5322 3.6.8: printable ASCII except the colon. */
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c == ':')
			return i;
		if (c < 33 || c > 126)
			return 0;
	}
	return 0;
}

static void
message_writer_header_line(struct message_writer *w, const char *line, size_t len)
{
	size_t name_len;

	if (len == 2 && line[0] == '\r') {
		/* The empty line that ends the header section. */
		message_writer_add_missing(w);
		w->in_headers = false;
		message_writer_emit(w, line, len);
		return;
	}
	if (line[0] == ' ' || line[0] == '\t') {
		if (w->last_was_message_id)
			message_writer_capture_id(w, line, len);
		message_writer_emit(w, line, len);
		return;
	}

	name_len = message_field_name_length(line, len);
	if (name_len == 0) {
		/* Not a header field: the header section ended without an empty line. */
		message_writer_add_missing(w);
		w->in_headers = false;
		message_writer_emit(w, line, len);
		return;
	}
	w->last_was_message_id = false;
	if (name_len == 4 && strncasecmp(line, "Date", 4) == 0)
		w->has_date = true;
	if (name_len == 10 && strncasecmp(line, "Message-ID", 10) == 0) {
		w->has_message_id = true;
		w->last_was_message_id = true;
		message_writer_capture_id(w, line + name_len, len - name_len);
	}
	message_writer_emit(w, line, len);
}

void
message_writer_write(struct message_writer *w, const char *data, size_t len)
{
	size_t i;

	for (i = 0; i < len && w->in_headers; i++) {
		char c = data[i];

		if (w->long_line) {
			message_writer_emit(w, &c, 1);
			if (c == '\n')
				w->long_line = false;
			continue;
		}
		w->line[w->line_len++] = c;
		if (c == '\n') {
			size_t n = w->line_len;

			w->line_len = 0;
			message_writer_header_line(w, w->line, n);
		} else if (w->line_len == sizeof(w->line)) {
			/* An over-long header line is passed on as it is. */
			message_writer_emit(w, w->line, w->line_len);
			w->line_len = 0;
			w->long_line = true;
		}
	}
	message_writer_emit(w, data + i, len - i);
}

void
message_writer_finish(struct message_writer *w)
{
	if (!w->in_headers)
		return;
	if (w->line_len > 0) {
		/* Text that ends without CRLF: complete the line first. */
		message_writer_emit(w, w->line, w->line_len);
		message_writer_emit(w, "\r\n", 2);
		w->line_len = 0;
	}
	message_writer_add_missing(w);
	w->in_headers = false;
}

const char *
message_writer_message_id(const struct message_writer *w)
{
	return w->message_id;
}

void
message_writer_clear(struct message_writer *w)
{
	free(w->domain);
	free(w->message_id);
	w->domain = NULL;
	w->message_id = NULL;
}
