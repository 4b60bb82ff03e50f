/*
 * Local submission: line-end normalisation, header handling through
 * message_writer, and chunked writes to the queue store.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"
#include "submit.h"
#include "util.h"

struct submit {
	struct queue_store *qs;
	int64_t id;
	struct message_writer writer;
	bool pending_cr;	/* the last byte written was a CR */
	bool mid_line;		/* text written since the last line end */
	char *chunk;
	size_t chunk_len;
	int chunk_seq;
	char *error;		/* first failure writing the body */
	bool error_space;
	bool committed;
};

static void
submit_flush(struct submit *s)
{
	if (s->chunk_len == 0 || s->error != NULL)
		return;
	if (queue_store_chunk_append(s->qs, s->id, s->chunk_seq, s->chunk,
	    s->chunk_len, &s->error) == -1)
		s->error_space = queue_store_error_is_space(s->qs);
	s->chunk_seq++;
	s->chunk_len = 0;
}

static void
submit_sink(void *arg, const char *data, size_t len)
{
	struct submit *s = arg;

	while (len > 0 && s->error == NULL) {
		size_t room = QUEUE_CHUNK_SIZE - s->chunk_len;
		size_t n = len < room ? len : room;

		memcpy(s->chunk + s->chunk_len, data, n);
		s->chunk_len += n;
		data += n;
		len -= n;
		if (s->chunk_len == QUEUE_CHUNK_SIZE)
			submit_flush(s);
	}
}

struct submit *
submit_new(struct queue_store *qs, const char *sender, char *const *rcpts,
    size_t rcpt_count, const char *source, char **errstr)
{
	struct submit *s;
	char date[64], *received;

	s = xcalloc(1, sizeof(*s));
	s->qs = qs;
	if (queue_store_message_create(qs, sender, rcpts, rcpt_count, source,
	    now_seconds(), &s->id, errstr) == -1) {
		free(s);
		return NULL;
	}
	s->chunk = xmalloc(QUEUE_CHUNK_SIZE);

	time_format_rfc5322(now_seconds(), date, sizeof(date));
	received = xasprintf("Received: (%s)\r\n\tby %s (relayq) id %lld;\r\n\t%s\r\n",
	    source, host_fqdn(), (long long)s->id, date);
	message_writer_init(&s->writer, received, host_fqdn(), submit_sink, s);
	free(received);
	return s;
}

/* Write DATA with every line end as CRLF: LF, CRLF and a bare CR each end one line. */
int
submit_write(struct submit *s, const char *data, size_t len, char **errstr)
{
	size_t start = 0, i;

	for (i = 0; i < len; i++) {
		char c = data[i];

		if (s->pending_cr) {
			s->pending_cr = false;
			message_writer_write(&s->writer, "\r\n", 2);
			if (c == '\n') {
				start = i + 1;
				continue;
			}
		}
		if (c == '\r' || c == '\n') {
			message_writer_write(&s->writer, data + start, i - start);
			if (c == '\r')
				s->pending_cr = true;
			else
				message_writer_write(&s->writer, "\r\n", 2);
			start = i + 1;
		}
	}
	message_writer_write(&s->writer, data + start, len - start);
	if (len > 0)
		s->mid_line = data[len - 1] != '\n' && data[len - 1] != '\r';

	if (s->error != NULL)
		return set_error(errstr, "%s", s->error);
	return 0;
}

int
submit_commit(struct submit *s, int64_t *id, bool *space, char **errstr)
{
	if (space != NULL)
		*space = false;
	if (s->pending_cr) {
		message_writer_write(&s->writer, "\r\n", 2);
		s->pending_cr = false;
	}
	if (s->mid_line) {
		/* The text ended without a line end: end the last line. */
		message_writer_write(&s->writer, "\r\n", 2);
		s->mid_line = false;
	}
	message_writer_finish(&s->writer);
	submit_flush(s);
	if (s->error != NULL)
		goto fail;

	if (queue_store_begin(s->qs, true, &s->error) == -1 ||
	    queue_store_message_accept(s->qs, s->id, s->writer.size,
	    message_writer_message_id(&s->writer), &s->error) == -1)
		goto fail_tx;
	if (queue_store_commit(s->qs, &s->error) == -1)
		goto fail;

	s->committed = true;
	*id = s->id;
	return 0;

fail_tx:
	queue_store_rollback(s->qs);
fail:
	if (space != NULL)
		*space = s->error_space || queue_store_error_is_space(s->qs);
	return set_error(errstr, "%s", s->error);
}

uint64_t
submit_size(const struct submit *s)
{
	return s->writer.size;
}

void
submit_free(struct submit *s)
{
	if (s == NULL)
		return;
	if (!s->committed)
		queue_store_message_delete(s->qs, s->id, NULL);
	message_writer_clear(&s->writer);
	free(s->chunk);
	free(s->error);
	free(s);
}
