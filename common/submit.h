/*
 * Local submission into the queue, for sources other than SMTP: relayq
 * send, the sendmail interface and the pickup directory. The text is
 * streamed: line ends are normalised to CRLF, Received: is prepended,
 * Date: and Message-ID: are added where missing, and the body is written
 * in chunks, so memory does not grow with the message. Nothing is visible
 * or durable before submit_commit() returns 0.
 */
#ifndef RELAYQ_SUBMIT_H
#define RELAYQ_SUBMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue_store.h"

struct submit;

/*
 * Start a message from SENDER ("" for the null sender) to RCPTS. SOURCE
 * names the submitter for Received: and the queue's client column
 * ("sendmail uid=1000", "pickup name.eml"). Returns NULL with *ERRSTR set
 * when the queue cannot take it.
 */
struct submit *submit_new(struct queue_store *qs, const char *sender,
    char *const *rcpts, size_t rcpt_count, const char *source, char **errstr);

/* Add LEN bytes of message text with LF, CRLF or CR line ends. */
int submit_write(struct submit *s, const char *data, size_t len, char **errstr);

/*
 * Finish and commit the message durably; *ID receives its queue id.
 * On failure nothing stays in the queue. SPACE (may be NULL) is set when
 * the cause is a full disk or read-only spool.
 */
int submit_commit(struct submit *s, int64_t *id, bool *space, char **errstr);

/* Release S; a message not committed is removed from the queue. */
void submit_free(struct submit *s);

/* Bytes of message text stored so far, headers added by relayq included. */
uint64_t submit_size(const struct submit *s);

#endif
