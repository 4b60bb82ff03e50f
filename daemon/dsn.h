/*
 * Delivery status notifications (RFC 3464) for recipients that failed
 * for good. A notification is a new message with the null sender,
 * submitted into the queue and relayed like any other, so it is as
 * durable as the mail it reports on.
 */
#ifndef RELAYQ_DSN_H
#define RELAYQ_DSN_H

#include "config.h"
#include "queue_store.h"

/*
 * Report the recipients of MSG whose state is RCPT_FAILED after the
 * attempt through HOST ("host:port"), following CONFIG->dsn: to the
 * envelope sender, to dsn.address, or not at all. Nothing is sent for a
 * message with the null sender (never a notification about a
 * notification), and at most dsn.max_per_hour go out in any hour.
 * Returns 1 when a notification was queued, 0 when none was due, -1
 * with *ERRSTR when queueing it failed.
 */
int dsn_notify(struct queue_store *qs, const struct config *config,
    const struct queue_message *msg, const char *host, char **errstr);

void dsn_free(void);

#endif
