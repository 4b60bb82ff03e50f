/*
 * Endpoint health, the relay-wide hold and the message rate limit. The
 * rate limit is a sliding window: at most N messages start in any 60
 * seconds, which is how Office 365 and similar relays count, where a
 * token bucket would allow a burst above N in one minute.
 */
#include <stdlib.h>
#include <string.h>

#include "relay_policy.h"
#include "util.h"

/* The window of smarthost.max_messages_per_minute, in milliseconds. */
#define RELAY_POLICY_WINDOW_MS 60000

static struct {
	int64_t *cooldown_until;	/* per endpoint, Unix seconds; 0: healthy */
	size_t endpoint_count;
	int64_t cooldown;

	int64_t held_until;		/* Unix seconds; 0: not held */
	int holds;

	int64_t *starts;		/* ring of the last per_minute start times, ms */
	int per_minute;
	int start_count;
	int start_next;
} relay;

void
relay_policy_configure(size_t endpoint_count, int64_t cooldown, int per_minute)
{
	if (endpoint_count != relay.endpoint_count) {
		free(relay.cooldown_until);
		relay.cooldown_until = xcalloc(endpoint_count,
		    sizeof(*relay.cooldown_until));
		relay.endpoint_count = endpoint_count;
	}
	relay.cooldown = cooldown;

	if (per_minute != relay.per_minute) {
		free(relay.starts);
		relay.starts = per_minute > 0 ?
		    xcalloc((size_t)per_minute, sizeof(*relay.starts)) : NULL;
		relay.per_minute = per_minute;
		relay.start_count = 0;
		relay.start_next = 0;
	}
}

size_t
relay_policy_endpoint(int64_t now)
{
	size_t i;

	for (i = 0; i < relay.endpoint_count; i++)
		if (relay.cooldown_until[i] <= now)
			return i;
	for (i = 0; i < relay.endpoint_count; i++)
		relay.cooldown_until[i] = 0;
	return 0;
}

void
relay_policy_endpoint_failed(size_t endpoint, int64_t now)
{
	if (endpoint < relay.endpoint_count)
		relay.cooldown_until[endpoint] = now + relay.cooldown;
}

void
relay_policy_endpoint_ok(size_t endpoint)
{
	if (endpoint < relay.endpoint_count)
		relay.cooldown_until[endpoint] = 0;
}

bool
relay_policy_has_healthy(int64_t now)
{
	size_t i;

	for (i = 0; i < relay.endpoint_count; i++)
		if (relay.cooldown_until[i] <= now)
			return true;
	return false;
}

int
relay_policy_hold(int64_t now, int64_t delay)
{
	relay.held_until = now + delay;
	return ++relay.holds;
}

int
relay_policy_hold_count(void)
{
	return relay.holds;
}

bool
relay_policy_held(int64_t now, int64_t *until)
{
	if (relay.held_until == 0 || relay.held_until <= now)
		return false;
	if (until != NULL)
		*until = relay.held_until;
	return true;
}

void
relay_policy_release(void)
{
	relay.held_until = 0;
	relay.holds = 0;
}

int64_t
relay_policy_rate_wait(int64_t now_ms)
{
	int64_t oldest;

	if (relay.per_minute == 0 || relay.start_count < relay.per_minute)
		return 0;
	/* When the ring is full, the next slot contains the oldest start. */
	oldest = relay.starts[relay.start_next];
	if (oldest + RELAY_POLICY_WINDOW_MS <= now_ms)
		return 0;
	return oldest + RELAY_POLICY_WINDOW_MS - now_ms;
}

void
relay_policy_rate_take(int64_t now_ms)
{
	if (relay.per_minute == 0)
		return;
	relay.starts[relay.start_next] = now_ms;
	relay.start_next = (relay.start_next + 1) % relay.per_minute;
	if (relay.start_count < relay.per_minute)
		relay.start_count++;
}

void
relay_policy_free(void)
{
	free(relay.cooldown_until);
	free(relay.starts);
	memset(&relay, 0, sizeof(relay));
}
