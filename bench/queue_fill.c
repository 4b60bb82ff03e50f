/*
 * queue_fill: put COUNT small messages into a relayq queue through the
 * same queue_store functions that relayqd's SMTP intake calls
 * (message_create, chunk_append, message_accept). A benchmark thus builds
 * a queue of a million messages in about a minute instead of an hour.
 * Messages are committed BATCH at a time, and the last commit is durable.
 * Run it only while no relayqd uses the queue. bench/run compiles it
 * against the common library of a build directory.
 *
 * usage: queue_fill QUEUE_PATH COUNT [BATCH]
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue_store.h"
#include "util.h"

#define QUEUE_FILL_DEFAULT_BATCH 10000

/* One message: CRLF lines, about 600 bytes, distinct per SEQ. */
static char *
queue_fill_message(uint64_t seq, int64_t now)
{
	char date[64];

	time_format_rfc5322(now, date, sizeof(date));
	return xasprintf("Received: from bench.test ([127.0.0.1])\r\n"
	    "\tby relayq-bench (relayq) with ESMTP id %" PRIu64 ";\r\n\t%s\r\n"
	    "Date: %s\r\n"
	    "From: Bench Sender <sender@bench.test>\r\n"
	    "To: Bench Recipient <rcpt%" PRIu64 "@example.net>\r\n"
	    "Subject: queue fill message %" PRIu64 "\r\n"
	    "Message-ID: <fill.%" PRIu64 ".%" PRId64 "@bench.test>\r\n"
	    "\r\n"
	    "This message was put into the queue by bench/queue_fill to\r\n"
	    "measure the daemon and the admin tool with a large queue. The\r\n"
	    "text has a few lines so that a message is about as large as a\r\n"
	    "short notification that an application sends.\r\n",
	    seq, date, date, seq % 1000, seq, seq, now);
}

static int
queue_fill_one(struct queue_store *qs, uint64_t seq, int64_t now, char **errstr)
{
	char sender[] = "sender@bench.test";
	char rcpt[64], message_id[96];
	char *rcpts[1] = { rcpt }, *text;
	int64_t id;
	int rc;

	snprintf(rcpt, sizeof(rcpt), "rcpt%" PRIu64 "@example.net", seq % 1000);
	snprintf(message_id, sizeof(message_id), "<fill.%" PRIu64 ".%" PRId64
	    "@bench.test>", seq, now);

	if (queue_store_message_create(qs, sender, rcpts, 1, "127.0.0.1", now,
	    &id, errstr) == -1)
		return -1;

	text = queue_fill_message(seq, now);
	rc = queue_store_chunk_append(qs, id, 0, text, strlen(text), errstr);
	if (rc == 0)
		rc = queue_store_message_accept(qs, id, strlen(text), message_id,
		    errstr);
	free(text);
	return rc;
}

static int
queue_fill_batch(struct queue_store *qs, uint64_t first, uint64_t count,
    bool durable, char **errstr)
{
	int64_t now = now_seconds();
	uint64_t i;

	if (queue_store_begin(qs, durable, errstr) == -1)
		return -1;
	for (i = 0; i < count; i++) {
		if (queue_fill_one(qs, first + i, now, errstr) == -1) {
			queue_store_rollback(qs);
			return -1;
		}
	}
	return queue_store_commit(qs, errstr);
}

static int
queue_fill_parse_count(const char *text, uint64_t *out)
{
	char *end;
	unsigned long long value;

	errno = 0;
	value = strtoull(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || value == 0)
		return -1;
	*out = value;
	return 0;
}

int
main(int argc, char **argv)
{
	struct queue_store *qs = NULL;
	uint64_t count, batch = QUEUE_FILL_DEFAULT_BATCH, done = 0, n;
	char *error = NULL;

	if (argc < 3 || argc > 4 || queue_fill_parse_count(argv[2], &count) == -1 ||
	    (argc == 4 && queue_fill_parse_count(argv[3], &batch) == -1)) {
		fprintf(stderr, "usage: queue_fill QUEUE_PATH COUNT [BATCH]\n"
		    "COUNT and BATCH are positive integers.\n");
		return 64;
	}

	if (queue_store_open(argv[1], QUEUE_STORE_CREATE, &qs, &error) == -1)
		goto fail;
	while (done < count) {
		n = count - done < batch ? count - done : batch;
		if (queue_fill_batch(qs, done, n, done + n == count, &error) == -1)
			goto fail;
		done += n;
	}
	queue_store_close(qs);
	printf("%" PRIu64 "\n", done);
	return 0;

fail:
	fprintf(stderr, "queue_fill: %s (after %" PRIu64 " messages)\n", error, done);
	free(error);
	queue_store_close(qs);
	return 1;
}
