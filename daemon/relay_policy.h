/*
 * When and where the scheduler may open a smart host session: endpoint
 * health with a cool-down, a relay-wide hold after an AUTH failure or a
 * 421 reply, and smarthost.max_messages_per_minute. Pure bookkeeping:
 * nothing here touches the queue or the network.
 */
#ifndef RELAYQ_RELAY_POLICY_H
#define RELAYQ_RELAY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Set the number of endpoints (primary first), the cool-down in seconds
 * and the per-minute message limit (0: none). Health is forgotten when
 * the number of endpoints changes; the relay hold is kept.
 */
void relay_policy_configure(size_t endpoint_count, int64_t cooldown,
    int per_minute);

/*
 * The endpoint for the next session at NOW: the first one, in config
 * order, that is not cooling down, so that the primary is used again as
 * soon as its cool-down ends. When every endpoint is cooling down, all
 * are forgotten and the primary is returned, so that each retry round
 * tries every endpoint in order again.
 */
size_t relay_policy_endpoint(int64_t now);

/* ENDPOINT failed a session at NOW: skip it until NOW plus the cool-down. */
void relay_policy_endpoint_failed(size_t endpoint, int64_t now);

/* ENDPOINT delivered or ended cleanly: it is healthy again. */
void relay_policy_endpoint_ok(size_t endpoint);

/* True when some endpoint is not cooling down at NOW. */
bool relay_policy_has_healthy(int64_t now);

/*
 * Hold the whole relay until NOW + DELAY: no session starts before then.
 * Returns the number of consecutive holds, this one included.
 */
int relay_policy_hold(int64_t now, int64_t delay);

/* Consecutive holds so far, for the backoff of the next one. */
int relay_policy_hold_count(void);

/* True while the relay is held at NOW; *UNTIL receives the end. */
bool relay_policy_held(int64_t now, int64_t *until);

/* A session went well: end the hold and forget the count. */
void relay_policy_release(void);

/*
 * Milliseconds until one more message may start under the per-minute
 * limit at NOW_MS (Unix milliseconds); 0 when it may start now.
 */
int64_t relay_policy_rate_wait(int64_t now_ms);

/* A message starts at NOW_MS: count it against the limit. */
void relay_policy_rate_take(int64_t now_ms);

void relay_policy_free(void);

#endif
