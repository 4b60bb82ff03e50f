/*
 * Message text on its way into the queue: prepends a Received: field,
 * notes whether Date: and Message-ID: exist, and adds the missing ones at
 * the end of the header section. Works on a stream of CRLF lines, so the
 * message never has to fit in memory; only one header line is buffered.
 */
#ifndef RELAYQ_MESSAGE_H
#define RELAYQ_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest header line examined; longer ones pass through unexamined. */
#define MESSAGE_HEADER_LINE_MAX 1000

typedef void (*message_sink)(void *arg, const char *data, size_t len);

struct message_writer {
	message_sink sink;
	void *arg;
	char *domain;			/* right side of generated Message-IDs */
	bool in_headers;
	bool long_line;			/* inside a header line over the limit */
	bool last_was_message_id;	/* for a Message-ID folded onto the next line */
	bool has_date;
	bool has_message_id;
	char line[MESSAGE_HEADER_LINE_MAX];
	size_t line_len;
	char *message_id;		/* found or generated, with angle brackets */
	uint64_t size;			/* bytes passed to the sink */
};

/*
 * Start a message. PREFIX (CRLF-terminated header lines, normally the
 * Received: field) is written first. DOMAIN is used in a generated
 * Message-ID.
 */
void message_writer_init(struct message_writer *w, const char *prefix,
    const char *domain, message_sink sink, void *arg);

/* Write LEN bytes of CRLF-normalised message text. */
void message_writer_write(struct message_writer *w, const char *data, size_t len);

/* End the message: adds missing headers if the text had no body. */
void message_writer_finish(struct message_writer *w);

/* The Message-ID of the finished message, with angle brackets. */
const char *message_writer_message_id(const struct message_writer *w);

void message_writer_clear(struct message_writer *w);

/* Generate a new Message-ID ("<time.random@domain>"); allocated. */
char *message_id_generate(const char *domain);

#endif
