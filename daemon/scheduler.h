/*
 * The delivery scheduler: wakes on new mail and at the next due time (one
 * timer, no polling), opens up to smarthost.max_connections sessions, hands
 * them due messages oldest first, and turns each outcome into the next
 * state: sent, deferred with backoff, failed, or uncertain.
 */
#ifndef RELAYQ_SCHEDULER_H
#define RELAYQ_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

int scheduler_init(char **errstr);

/*
 * Use CONFIG's smart host settings from now on (after a reload). Returns
 * 0, or -1 with *ERRSTR when its TLS context cannot be built, in which
 * case nothing changes. Takes its own reference to CONFIG.
 */
int scheduler_reconfigure(struct config *config, char **errstr);

/* Look for due work soon (after the current event loop round). */
void scheduler_wake(void);

/* Stop starting transactions; with ABORT also drop the sessions in flight. */
void scheduler_stop(bool abort);

/* Number of smart host sessions still open. */
int scheduler_sessions(void);

void scheduler_free(void);

/* Backoff before attempt number ATTEMPTS + 1: min(max, initial * 2^(attempts-1)) +/- 20%. */
int64_t scheduler_backoff(int64_t initial, int64_t max, int attempts);

#endif
