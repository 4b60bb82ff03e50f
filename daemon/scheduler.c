/*
 * Delivery scheduling. Sessions are owned here; each borrows one claimed
 * message at a time through next_message() and returns it through
 * message_done(), where the outcome is stored durably before anything
 * else happens to the message. A session that fails before it delivers
 * anything puts its endpoint in a cool-down and moves on to the next
 * healthy endpoint; when every endpoint has failed, all due messages are
 * deferred with their own backoff. An AUTH failure or a 421 holds the
 * whole relay instead (relay_policy.c).
 */
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "disk_sync.h"
#include "dsn.h"
#include "list.h"
#include "log.h"
#include "password_command.h"
#include "queue_admin.h"
#include "relay_policy.h"
#include "relayqd.h"
#include "scheduler.h"
#include "secret.h"
#include "smtp_client.h"
#include "tls.h"
#include "util.h"

/*
 * A session without progress for this long (in ms) no longer counts as
 * taking the next due message, so a hung session does not keep the
 * scheduler from opening another one within max_connections.
 */
#define SCHEDULER_STALL_MS 3000

/*
 * Pause (in ms) after the queue rejected a write, such as on a full disk
 * or a read-only spool, before sessions start again. Without it every
 * session would connect, fail to claim a message and end, in a loop.
 */
#define SCHEDULER_STORE_RETRY_MS 5000

/*
 * The outcome of an attempt that the queue could not store. On disk the
 * message stays "sending", which only a restart would undo, and after the
 * restart a delivered message would go out again. So the outcome is kept
 * here and stored before any new session starts.
 */
struct scheduler_unstored {
	TAILQ_ENTRY(scheduler_unstored) entry;
	struct queue_message *msg;
	enum msg_state state;
	int64_t next_attempt;
	char *last_error;
	char *final_reply;
	char *host;
	int64_t time;
	int code;
	char *status;
	char *text;
};

struct scheduler_session {
	LIST_ENTRY(scheduler_session) entry;
	struct smtp_client *client;
	size_t endpoint;
	char *host;		/* "host:port" for attempt records */
	/*
	 * What the client was started with, held until it closes, because a
	 * reload replaces sched.config, sched.tls_ctx and sched.endpoints.
	 */
	struct config *config;
	SSL_CTX *tls_ctx;
	struct config_endpoint target;	/* host points into config */
	int64_t progress;	/* Unix ms of the start, the last claim or the last outcome */
};

static struct {
	struct config *config;			/* the config the next sessions use */
	SSL_CTX *tls_ctx;
	struct config_endpoint *endpoints;	/* primary first, then fallbacks */
	size_t endpoint_count;
	LIST_HEAD(, scheduler_session) sessions;
	int session_count;
	struct event *wake_event;
	struct event *timer;
	bool stopping;
	TAILQ_HEAD(, scheduler_unstored) unstored;
	int64_t store_retry_at;		/* Unix ms; no session starts before */
} sched;

static bool
scheduler_include_uncertain(void)
{
	return relayqd.config->smarthost.on_uncertain == UNCERTAIN_RETRY;
}

int64_t
scheduler_backoff(int64_t initial, int64_t max, int attempts)
{
	int64_t delay = initial, spread;
	int i;

	for (i = 1; i < attempts && delay < max; i++)
		delay *= 2;
	if (delay > max)
		delay = max;

	/* +/- 20% jitter so messages deferred together do not retry together. */
	spread = delay * 2 / 5;
	if (spread > 0)
		delay = delay - delay / 5 + (int64_t)random_below((uint64_t)spread + 1);
	return delay > 0 ? delay : 1;
}

static char *
scheduler_endpoint_text(const struct config_endpoint *ep)
{
	if (strchr(ep->host, ':') != NULL)
		return xasprintf("[%s]:%d", ep->host, ep->port);
	return xasprintf("%s:%d", ep->host, ep->port);
}

/* Decide the next state of a message whose recipients carry this attempt's results. */
static enum msg_state
scheduler_outcome(struct queue_message *msg, int64_t now, const char *reason)
{
	const struct config_retry *retry = &relayqd.config->retry;
	size_t i, pending = 0, failed = (size_t)msg->failed_before;

	for (i = 0; i < msg->rcpt_count; i++) {
		if (msg->rcpts[i].state == RCPT_PENDING)
			pending++;
		else if (msg->rcpts[i].state == RCPT_FAILED)
			failed++;
	}
	if (pending > 0 && now - msg->created >= retry->max_age) {
		/* Expired: the pending recipients fail with the last reason. */
		for (i = 0; i < msg->rcpt_count; i++) {
			struct queue_recipient *r = &msg->rcpts[i];

			if (r->state != RCPT_PENDING)
				continue;
			r->state = RCPT_FAILED;
			free(r->text);
			r->text = xasprintf("expired after %lld s in the queue; last "
			    "error: %s", (long long)(now - msg->created), reason);
		}
		return MSG_FAILED;
	}
	if (pending > 0)
		return MSG_DEFERRED;
	return failed > 0 ? MSG_FAILED : MSG_SENT;
}

static void
scheduler_set_all(struct queue_message *msg, enum rcpt_state state,
    const struct smtp_reply *reply, const char *text)
{
	size_t i;

	for (i = 0; i < msg->rcpt_count; i++) {
		struct queue_recipient *r = &msg->rcpts[i];

		r->state = state;
		r->code = reply != NULL ? reply->code : 0;
		snprintf(r->status, sizeof(r->status), "%s",
		    reply != NULL ? reply->status : "");
		free(r->text);
		r->text = text != NULL ? xstrdup(text) : NULL;
	}
}

/* The first recipient result that is not a success, as "code status text". */
static char *
scheduler_recipient_error(const struct queue_message *msg)
{
	size_t i;

	for (i = 0; i < msg->rcpt_count; i++) {
		const struct queue_recipient *r = &msg->rcpts[i];

		if (r->state == RCPT_SENT || (r->code == 0 && r->text == NULL))
			continue;
		if (r->code == 0)
			return xasprintf("<%s>: %s", r->address, r->text);
		return xasprintf("<%s>: %d%s%s %s", r->address, r->code,
		    r->status[0] != '\0' ? " " : "", r->status,
		    r->text != NULL ? r->text : "");
	}
	return NULL;
}

/* Record the smart host status for `relayq stats`; a failure affects only that display. */
static void
scheduler_note_relay(enum queue_admin_relay status, const char *error)
{
	char *store_error = NULL;

	if (queue_admin_set_relay_status(relayqd.store, status, error,
	    now_seconds(), &store_error) != 0) {
		log_warning("event=relay_status_failed error=\"%s\"", store_error);
		free(store_error);
	}
}

/* Queue a notification about the recipients of MSG that failed for good. */
static void
scheduler_notify(const struct queue_message *msg, const char *host)
{
	char *error = NULL, *escaped;
	int rc;

	rc = dsn_notify(relayqd.store, relayqd.config, msg, host, &error);
	if (rc == 1) {
		scheduler_wake();
		return;
	}
	if (rc == -1) {
		escaped = log_escape(error, strlen(error));
		log_error("msg=%lld event=dsn_failed error=\"%s\"",
		    (long long)msg->id, escaped);
		free(escaped);
		free(error);
	}
}

/* Keep an outcome that the queue rejected, taking over MSG, and pause new sessions. */
static void
scheduler_stash(struct queue_message *msg, enum msg_state state,
    int64_t next_attempt, const char *last_error, const char *final_reply,
    const struct queue_attempt *attempt)
{
	struct scheduler_unstored *u = xcalloc(1, sizeof(*u));

	u->msg = msg;
	u->state = state;
	u->next_attempt = next_attempt;
	u->last_error = last_error != NULL ? xstrdup(last_error) : NULL;
	u->final_reply = final_reply != NULL ? xstrdup(final_reply) : NULL;
	u->host = xstrdup(attempt->host);
	u->time = attempt->time;
	u->code = attempt->code;
	u->status = xstrdup(attempt->status);
	u->text = xstrdup(attempt->text);
	TAILQ_INSERT_TAIL(&sched.unstored, u, entry);
	sched.store_retry_at = now_millis() + SCHEDULER_STORE_RETRY_MS;
}

/*
 * Store a delivery result. No reply depends on it reaching the disk, so
 * its sync runs in the background (disk_sync.c). Until then a power loss,
 * but not a crash, could undo it, and the message would be sent again.
 */
static int
scheduler_finish(const struct queue_message *msg, enum msg_state state,
    int64_t next_attempt, const char *last_error, const char *final_reply,
    const struct queue_attempt *attempt, char **errstr)
{
	if (queue_store_finish(relayqd.store, msg, state, next_attempt,
	    last_error, final_reply, attempt, errstr) == -1)
		return -1;
	disk_sync_request();
	return 0;
}

static void
scheduler_unstored_free(struct scheduler_unstored *u)
{
	queue_message_free(u->msg);
	free(u->last_error);
	free(u->final_reply);
	free(u->host);
	free(u->status);
	free(u->text);
	free(u);
}

/* Store the kept outcomes in order. Returns false when the queue still rejects writes. */
static bool
scheduler_store_unstored(void)
{
	struct scheduler_unstored *u;
	struct queue_attempt attempt;
	char *error = NULL;

	while ((u = TAILQ_FIRST(&sched.unstored)) != NULL) {
		attempt.time = u->time;
		attempt.host = u->host;
		attempt.code = u->code;
		attempt.status = u->status;
		attempt.text = u->text;
		if (scheduler_finish(u->msg, u->state,
		    u->next_attempt, u->last_error, u->final_reply, &attempt,
		    &error) == -1) {
			log_warning("msg=%lld event=store_retry_failed error=\"%s\" "
			    "next_try=+%ds", (long long)u->msg->id, error,
			    SCHEDULER_STORE_RETRY_MS / 1000);
			free(error);
			return false;
		}
		log_info("msg=%lld event=stored_late state=%s host=%s",
		    (long long)u->msg->id, msg_state_name(u->state), u->host);
		if (u->state == MSG_SENT)
			scheduler_note_relay(QUEUE_ADMIN_RELAY_OK, NULL);
		scheduler_notify(u->msg, u->host);
		TAILQ_REMOVE(&sched.unstored, u, entry);
		scheduler_unstored_free(u);
	}
	return true;
}

/*
 * Store the result of one attempt on MSG, which this takes over, and log
 * it. REASON is the one-line description (the reply or the local error).
 */
static void
scheduler_record(struct queue_message *msg, enum delivery_status status,
    const char *host, const struct smtp_reply *reply, const char *reason)
{
	struct queue_attempt attempt;
	enum msg_state state;
	int64_t now = now_seconds(), next = now;
	char *error = NULL, *store_error = NULL, *escaped, *attempt_text;
	char *rcpt_error = NULL;
	const char *final_reply = NULL;

	switch (status) {
	case DELIVERY_PERMFAIL:
		scheduler_set_all(msg, RCPT_FAILED, reply, reason);
		state = MSG_FAILED;
		break;
	case DELIVERY_UNCERTAIN:
		state = MSG_UNCERTAIN;
		break;
	case DELIVERY_DONE:
	case DELIVERY_TEMPFAIL:
	default:
		state = scheduler_outcome(msg, now, reason);
		break;
	}

	/* A transaction that ran but left recipients behind: say which and why. */
	if (status == DELIVERY_DONE && state != MSG_SENT) {
		rcpt_error = scheduler_recipient_error(msg);
		if (rcpt_error != NULL)
			reason = rcpt_error;
	}
	if (state == MSG_DEFERRED || state == MSG_UNCERTAIN)
		next = now + scheduler_backoff(relayqd.config->retry.initial,
		    relayqd.config->retry.max, msg->attempt_count + 1);
	if (state == MSG_SENT)
		final_reply = reason;
	else
		error = xstrdup(reason);

	attempt_text = reply != NULL && status != DELIVERY_UNCERTAIN ?
	    smtp_reply_text_line(reply) : xstrdup(reason);
	attempt.time = now;
	attempt.host = host;
	attempt.code = reply != NULL ? reply->code : 0;
	attempt.status = reply != NULL ? reply->status : "";
	attempt.text = attempt_text;
	if (scheduler_finish(msg, state, next, error, final_reply,
	    &attempt, &store_error) == -1) {
		log_error("msg=%lld event=store_failed state=%s error=\"%s\" "
		    "note=\"the outcome is kept in memory and stored when the "
		    "queue accepts writes again\"", (long long)msg->id,
		    msg_state_name(state), store_error);
		free(store_error);
		scheduler_stash(msg, state, next, error, final_reply, &attempt);
		msg = NULL;
		goto done;
	}

	escaped = log_escape(reason, strlen(reason));
	if (state == MSG_UNCERTAIN)
		log_warning("msg=%lld event=uncertain host=%s reason=\"%s\" policy=%s "
		    "note=\"the smart host may have the message: a retry can "
		    "deliver a duplicate\"", (long long)msg->id, host, escaped,
		    scheduler_include_uncertain() ? "retry" : "hold");
	else if (state == MSG_DEFERRED)
		log_info("msg=%lld event=deferred host=%s attempts=%d next_attempt=+%llds "
		    "reason=\"%s\"", (long long)msg->id, host, msg->attempt_count + 1,
		    (long long)(next - now), escaped);
	else
		log_info("msg=%lld event=%s host=%s attempts=%d reply=\"%s\"",
		    (long long)msg->id, state == MSG_SENT ? "sent" : "failed", host,
		    msg->attempt_count + 1, escaped);
	free(escaped);
	if (state == MSG_SENT)
		scheduler_note_relay(QUEUE_ADMIN_RELAY_OK, NULL);
	scheduler_notify(msg, host);

done:
	queue_message_free(msg);
	free(attempt_text);
	free(rcpt_error);
	free(error);
}

static struct scheduler_session *
scheduler_session_find(struct smtp_client *client)
{
	struct scheduler_session *s;

	LIST_FOREACH(s, &sched.sessions, entry) {
		if (s->client == client)
			return s;
	}
	return NULL;
}

/* True when a message is due now, for a session deciding whether to wait. */
static bool
scheduler_has_due(void)
{
	int64_t due = 0;
	char *error = NULL;

	if (queue_store_count_due(relayqd.store, now_seconds(),
	    scheduler_include_uncertain(), &due, &error) == -1) {
		free(error);
		return false;
	}
	return due > 0;
}

/*
 * Set MSG aside when its queue entry is damaged, such as a missing
 * sender, recipient or body chunk, or a body of the wrong size. It goes
 * to state "held" with last_error "damaged: ...", so that no part of it
 * is sent and the other messages keep flowing. Returns true when MSG was
 * set aside and freed.
 */
static bool
scheduler_set_aside_damaged(struct queue_message *msg, const char *host)
{
	struct queue_attempt attempt;
	char *reason = NULL, *error = NULL, *text;
	int64_t id = msg->id;
	int rc;

	rc = queue_store_message_check(relayqd.store, msg, &reason, &error);
	if (rc == -1) {
		/* Reading the body fails the same way, and that attempt is retried. */
		log_error("msg=%lld event=check_failed error=\"%s\"", (long long)id,
		    error);
		free(error);
		return false;
	}
	if (rc == 0)
		return false;

	text = xasprintf("damaged: %s", reason);
	attempt.time = now_seconds();
	attempt.host = host;
	attempt.code = 0;
	attempt.status = "";
	attempt.text = text;
	if (scheduler_finish(msg, MSG_HELD, attempt.time, text,
	    NULL, &attempt, &error) == -1) {
		log_error("msg=%lld event=store_failed state=held error=\"%s\"",
		    (long long)id, error);
		free(error);
		scheduler_stash(msg, MSG_HELD, attempt.time, text, NULL, &attempt);
		msg = NULL;
	}
	log_error("msg=%lld event=set_aside state=held reason=\"%s\" note=\"the "
	    "queue entry is damaged and is not sent; see relayq show %lld, then "
	    "restore it from a backup or delete it\"", (long long)id, reason,
	    (long long)id);
	queue_message_free(msg);
	free(reason);
	free(text);
	return true;
}

/*
 * Claim the next due message for HOST, setting aside every damaged one
 * on the way. Returns 1 with *OUT set, 0 when none is due, -1 when the
 * queue failed, which pauses new sessions for SCHEDULER_STORE_RETRY_MS.
 */
static int
scheduler_claim(const char *host, struct queue_message **out)
{
	char *error = NULL;
	int rc;

	for (;;) {
		rc = queue_store_claim_due(relayqd.store, now_seconds(),
		    scheduler_include_uncertain(), out, &error);
		if (rc == -1) {
			log_error("event=claim_failed error=\"%s\" next_try=+%ds",
			    error, SCHEDULER_STORE_RETRY_MS / 1000);
			free(error);
			sched.store_retry_at = now_millis() + SCHEDULER_STORE_RETRY_MS;
			return -1;
		}
		if (rc == 0 || !scheduler_set_aside_damaged(*out, host))
			return rc;
		*out = NULL;
	}
}

static struct queue_message *
scheduler_next_message(void *arg, struct smtp_client *client,
    int64_t *retry_ms)
{
	struct scheduler_session *s = scheduler_session_find(client);
	struct queue_message *msg = NULL;
	int64_t wait;

	if (sched.stopping || relayqd.stopping ||
	    relay_policy_held(now_seconds(), NULL) ||
	    now_millis() < sched.store_retry_at)
		return NULL;
	wait = relay_policy_rate_wait(now_millis());
	if (wait > 0) {
		if (scheduler_has_due())
			*retry_ms = wait;
		return NULL;
	}
	if (scheduler_claim(s != NULL ? s->host : "-", &msg) == -1)
		return NULL;
	if (msg != NULL) {
		if (s != NULL)
			s->progress = now_millis();
		relay_policy_rate_take(now_millis());
		log_debug("msg=%lld event=claimed session=c%llu", (long long)msg->id,
		    (unsigned long long)smtp_client_id(client));
	}
	return msg;
}

static void
scheduler_message_done(void *arg, struct smtp_client *client,
    struct queue_message *msg, const struct delivery_result *result)
{
	struct scheduler_session *s = scheduler_session_find(client);
	const char *host = s != NULL ? s->host : result->host;
	char *reason;

	if (s != NULL)
		s->progress = now_millis();

	if (result->reply.code != 0 && result->status != DELIVERY_UNCERTAIN)
		reason = smtp_reply_format(&result->reply);
	else
		reason = xstrdup(result->error != NULL ? result->error : "unknown error");

	scheduler_record(msg, result->status, host,
	    result->reply.code != 0 ? &result->reply : NULL, reason);
	free(reason);
}

/*
 * Every endpoint failed before a transaction: defer all due messages, each
 * with an attempt record and its own backoff, so the relay goes quiet
 * until the earliest retry instead of reconnecting in a loop.
 */
static void
scheduler_defer_due(const char *host, const struct smtp_reply *reply,
    const char *reason)
{
	struct queue_message *msg;
	int count = 0;

	for (;;) {
		if (scheduler_claim(host, &msg) != 1)
			break;
		scheduler_set_all(msg, RCPT_PENDING, NULL, NULL);
		scheduler_record(msg, DELIVERY_TEMPFAIL, host, reply, reason);
		count++;
	}
	if (count > 0)
		log_info("event=relay_deferred messages=%d host=%s", count, host);
}

/*
 * The relay is held after an AUTH failure: give each due message one
 * attempt record with the reason, so that `relayq list` shows it, and
 * make it due again when the hold ends. Only the first hold of a series
 * does this, and it never expires a message or sends a notification:
 * wrong credentials are the relay's fault, not the recipients'.
 */
static void
scheduler_mark_held(const char *host, const struct smtp_reply *reply,
    const char *reason, int64_t until)
{
	struct queue_attempt attempt;
	struct queue_message *msg;
	char *error = NULL, *text;
	int count = 0;

	text = reply != NULL ? smtp_reply_text_line(reply) : xstrdup(reason);
	for (;;) {
		if (scheduler_claim(host, &msg) != 1)
			break;
		scheduler_set_all(msg, RCPT_PENDING, NULL, NULL);
		attempt.time = now_seconds();
		attempt.host = host;
		attempt.code = reply != NULL ? reply->code : 0;
		attempt.status = reply != NULL ? reply->status : "";
		attempt.text = text;
		if (scheduler_finish(msg, MSG_DEFERRED, until,
		    reason, NULL, &attempt, &error) == -1) {
			log_error("msg=%lld event=store_failed error=\"%s\"",
			    (long long)msg->id, error);
			free(error);
			error = NULL;
			scheduler_stash(msg, MSG_DEFERRED, until, reason, NULL,
			    &attempt);
			msg = NULL;
		}
		queue_message_free(msg);
		count++;
	}
	free(text);
	if (count > 0)
		log_info("event=relay_held_messages messages=%d host=%s", count,
		    host);
}

/*
 * Hold the whole relay on the retry backoff schedule, counted in holds:
 * no session starts until the hold ends, and the messages keep their
 * place without expiring.
 */
static void
scheduler_hold_relay(const char *host, enum smtp_failure failure,
    const struct smtp_reply *reply, const char *reason)
{
	const struct config_retry *retry = &relayqd.config->retry;
	int64_t now = now_seconds(), delay;
	bool first = relay_policy_hold_count() == 0;
	char *escaped;
	int holds;

	/* Two sessions that fail together make one hold, not two. */
	if (relay_policy_held(now, NULL))
		return;
	delay = scheduler_backoff(retry->initial, retry->max,
	    relay_policy_hold_count() + 1);
	holds = relay_policy_hold(now, delay);

	escaped = log_escape(reason, strlen(reason));
	if (failure == SMTP_FAILURE_AUTH) {
		log_error("event=relay_held reason=auth host=%s holds=%d "
		    "next_attempt=+%llds error=\"%s\" note=\"no mail is sent and "
		    "no notification goes out until the smart host accepts the "
		    "credentials\"", host, holds, (long long)delay, escaped);
		scheduler_note_relay(QUEUE_ADMIN_RELAY_AUTH_FAILING, reason);
		if (first)
			scheduler_mark_held(host, reply, reason, now + delay);
	} else {
		log_warning("event=relay_held reason=421 host=%s holds=%d "
		    "next_attempt=+%llds error=\"%s\"", host, holds,
		    (long long)delay, escaped);
		scheduler_note_relay(QUEUE_ADMIN_RELAY_DEFERRING, reason);
	}
	free(escaped);
}

/*
 * Decide what the end of session S means for the relay. A clean end or
 * a delivery makes its endpoint healthy. AUTH failures and 421 hold the
 * whole relay. Other failures before any delivery put the endpoint in
 * its cool-down and move on to the next healthy endpoint, or defer the
 * due messages when none is left.
 */
static void
scheduler_session_outcome(struct scheduler_session *s,
    enum smtp_failure failure, const char *error,
    const struct smtp_reply *reply, int delivered)
{
	const char *reason = error != NULL ? error : "session failed";
	int64_t now = now_seconds();
	size_t next;

	if (failure == SMTP_FAILURE_NONE || delivered > 0)
		relay_policy_endpoint_ok(s->endpoint);
	if (failure == SMTP_FAILURE_NONE) {
		relay_policy_release();
		return;
	}
	if (failure == SMTP_FAILURE_AUTH || failure == SMTP_FAILURE_SHUTDOWN) {
		scheduler_hold_relay(s->host, failure, reply, reason);
		return;
	}
	/* A local error is not the smart host's fault. */
	if (failure == SMTP_FAILURE_INTERNAL || delivered > 0)
		return;

	relay_policy_endpoint_failed(s->endpoint, now);
	if (relay_policy_has_healthy(now)) {
		next = relay_policy_endpoint(now);
		log_warning("event=endpoint_failed host=%s failure=%s "
		    "error=\"%s\" cooldown=%llds next=%s:%d", s->host,
		    smtp_failure_name(failure), reason,
		    (long long)sched.config->smarthost.endpoint_cooldown,
		    sched.endpoints[next].host, sched.endpoints[next].port);
		return;
	}
	log_warning("event=endpoint_failed host=%s failure=%s error=\"%s\" "
	    "next=none", s->host, smtp_failure_name(failure), reason);
	scheduler_defer_due(s->host, reply, reason);
	scheduler_note_relay(QUEUE_ADMIN_RELAY_DEFERRING, reason);
}

static void
scheduler_session_free(struct scheduler_session *s)
{
	free(s->host);
	config_free(s->config);
	SSL_CTX_free(s->tls_ctx);
	free(s);
}

static void
scheduler_closed(void *arg, struct smtp_client *client, enum smtp_failure failure,
    const char *error, const struct smtp_reply *reply, int delivered)
{
	struct scheduler_session *s = scheduler_session_find(client);
	bool current;

	if (s == NULL)
		return;
	LIST_REMOVE(s, entry);
	sched.session_count--;

	/* A session of the config before a reload says nothing about the new endpoints. */
	current = s->config == sched.config;
	if (!relayqd.stopping && current)
		scheduler_session_outcome(s, failure, error, reply, delivered);
	scheduler_session_free(s);
	scheduler_wake();
}

/*
 * True when CONFIG needs its TLS client context from the start: an
 * endpoint uses TLS, or certificate files are named, which are better
 * checked at start than at the first delivery. Creating a context
 * initialises OpenSSL, which added 2.7 MiB to relayqd's RSS. With TLS
 * off everywhere, only the check for a TLS port configured as plain text
 * needs one, after a greeting timeout, so a relay that talks plain text
 * to a working smart host never pays for it.
 */
static bool
scheduler_tls_at_start(const struct config *config)
{
	const struct config_smarthost *sh = &config->smarthost;
	size_t i;

	if (sh->tls != TLS_MODE_NONE || sh->ca_file != NULL ||
	    sh->ca_path != NULL || sh->tls_client_cert != NULL)
		return true;
	for (i = 0; i < sh->fallback_count; i++)
		if (sh->fallback[i].tls != TLS_MODE_NONE)
			return true;
	return false;
}

/*
 * Give a session without a TLS context one for its check of a silent
 * port, creating the context that a TLS-less config left out at start.
 * The session keeps a reference until it is freed.
 */
static SSL_CTX *
scheduler_probe_tls_ctx(void *arg, struct smtp_client *client)
{
	struct scheduler_session *s = scheduler_session_find(client);
	char *error = NULL;

	(void)arg;
	if (sched.tls_ctx == NULL) {
		sched.tls_ctx = tls_client_ctx_new(sched.config, &error);
		if (sched.tls_ctx == NULL) {
			log_warning("event=tls_context_failed error=\"%s\" "
			    "note=\"cannot check whether the silent port expects "
			    "TLS\"", error);
			free(error);
			return NULL;
		}
	}
	if (s == NULL || s->tls_ctx != NULL)
		return s != NULL ? s->tls_ctx : NULL;
	s->tls_ctx = sched.tls_ctx;
	SSL_CTX_up_ref(s->tls_ctx);
	return s->tls_ctx;
}

static const struct smtp_client_callbacks scheduler_callbacks = {
	.next_message = scheduler_next_message,
	.message_done = scheduler_message_done,
	.closed = scheduler_closed,
	.probe_tls_ctx = scheduler_probe_tls_ctx,
};

static void
scheduler_start_session(void)
{
	struct scheduler_session *s = xcalloc(1, sizeof(*s));
	char *error = NULL;

	s->endpoint = relay_policy_endpoint(now_seconds());
	s->host = scheduler_endpoint_text(&sched.endpoints[s->endpoint]);
	s->config = config_ref(sched.config);
	s->tls_ctx = sched.tls_ctx;
	if (s->tls_ctx != NULL)
		SSL_CTX_up_ref(s->tls_ctx);
	s->target = sched.endpoints[s->endpoint];
	s->progress = now_millis();
	LIST_INSERT_HEAD(&sched.sessions, s, entry);
	sched.session_count++;

	s->client = smtp_client_start(relayqd.base, relayqd.dns, s->tls_ctx,
	    s->config, &s->target, relayqd.store, &scheduler_callbacks, NULL,
	    &error);
	if (s->client == NULL) {
		log_error("event=session_failed host=%s error=\"%s\"", s->host, error);
		LIST_REMOVE(s, entry);
		sched.session_count--;
		scheduler_session_free(s);
		free(error);
	}
}

/* Arm the timer for the earliest deferred message, if any. */
static void
scheduler_arm_timer(int64_t now)
{
	struct timeval tv = { 0, 0 };
	int64_t when;
	char *error = NULL;
	int rc;

	rc = queue_store_next_due(relayqd.store, scheduler_include_uncertain(), &when,
	    &error);
	if (rc == -1) {
		log_error("event=schedule_failed error=\"%s\"", error);
		free(error);
		when = now + 5;
	} else if (rc == 0) {
		evtimer_del(sched.timer);
		return;
	}
	/* Times are whole seconds; the extra second avoids waking just before due. */
	tv.tv_sec = when > now ? (time_t)(when - now) : 1;
	evtimer_add(sched.timer, &tv);
}

/* Make the timer fire within MS milliseconds, keeping an earlier expiry. */
static void
scheduler_arm_within(int64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	struct timeval expiry, now, when;

	if (evtimer_pending(sched.timer, &expiry) &&
	    event_base_gettimeofday_cached(relayqd.base, &now) == 0) {
		evutil_timeradd(&now, &tv, &when);
		if (evutil_timercmp(&expiry, &when, <))
			return;
	}
	evtimer_add(sched.timer, &tv);
}

/* Sessions that made progress lately, and so will take the next due message. */
static int
scheduler_active_sessions(void)
{
	struct scheduler_session *s;
	int64_t now = now_millis();
	int active = 0;

	LIST_FOREACH(s, &sched.sessions, entry) {
		if (now - s->progress < SCHEDULER_STALL_MS)
			active++;
	}
	return active;
}

static void
scheduler_run(evutil_socket_t fd, short what, void *arg)
{
	int64_t now = now_seconds(), due = 0, until = 0, wait;
	struct timeval tv = { 0, 0 };
	char *error = NULL;
	int max = relayqd.config->smarthost.max_connections, active;

	if (sched.stopping || relayqd.stopping)
		return;
	if (now_millis() < sched.store_retry_at) {
		scheduler_arm_within(sched.store_retry_at - now_millis());
		return;
	}
	if (!scheduler_store_unstored()) {
		sched.store_retry_at = now_millis() + SCHEDULER_STORE_RETRY_MS;
		scheduler_arm_within(SCHEDULER_STORE_RETRY_MS);
		return;
	}
	if (relay_policy_held(now, &until)) {
		tv.tv_sec = (time_t)(until - now);
		evtimer_add(sched.timer, &tv);
		return;
	}
	if (queue_store_count_due(relayqd.store, now, scheduler_include_uncertain(),
	    &due, &error) == -1) {
		log_error("event=schedule_failed error=\"%s\"", error);
		free(error);
		due = 0;
	}

	/*
	 * Sessions already open pick up due messages as they finish their
	 * current one. Under the rate limit no new session starts, and open
	 * ones wait between transactions themselves.
	 */
	wait = relay_policy_rate_wait(now_millis());
	active = scheduler_active_sessions();
	while (wait == 0 && sched.session_count < max && due > active) {
		scheduler_start_session();
		active++;
	}
	scheduler_arm_timer(now);
	if (wait > 0 && due > 0 && sched.session_count == 0)
		scheduler_arm_within(wait);
	else if (wait == 0 && due > 0 && sched.session_count > 0)
		/* Look again later: a session that looks busy now may stall. */
		scheduler_arm_within(SCHEDULER_STALL_MS);
}

void
scheduler_wake(void)
{
	if (sched.wake_event != NULL)
		event_active(sched.wake_event, 0, 0);
}

/* Point sched.endpoints at CONFIG's smart host and its fallbacks. */
static void
scheduler_load_endpoints(const struct config *config)
{
	const struct config_smarthost *sh = &config->smarthost;
	size_t i;

	free(sched.endpoints);
	sched.endpoint_count = 1 + sh->fallback_count;
	sched.endpoints = xcalloc(sched.endpoint_count, sizeof(*sched.endpoints));
	sched.endpoints[0].host = sh->host;
	sched.endpoints[0].port = sh->port;
	sched.endpoints[0].tls = sh->tls;
	for (i = 0; i < sh->fallback_count; i++)
		sched.endpoints[i + 1] = sh->fallback[i];
	relay_policy_configure(sched.endpoint_count, sh->endpoint_cooldown,
	    sh->max_messages_per_minute);
}

int
scheduler_init(char **errstr)
{
	LIST_INIT(&sched.sessions);
	TAILQ_INIT(&sched.unstored);
	/* A readable password file is refused before any session starts. */
	if (secret_check_config(&relayqd.config->smarthost, errstr) == -1)
		return -1;
	if (scheduler_tls_at_start(relayqd.config)) {
		sched.tls_ctx = tls_client_ctx_new(relayqd.config, errstr);
		if (sched.tls_ctx == NULL)
			return -1;
	}
	sched.config = config_ref(relayqd.config);
	scheduler_load_endpoints(sched.config);

	sched.wake_event = event_new(relayqd.base, -1, 0, scheduler_run, NULL);
	sched.timer = evtimer_new(relayqd.base, scheduler_run, NULL);
	if (sched.wake_event == NULL || sched.timer == NULL)
		return set_error(errstr, "cannot create scheduler events");
	scheduler_wake();
	return 0;
}

void
scheduler_stop(bool abort)
{
	struct scheduler_session *s, *next;

	sched.stopping = true;
	if (sched.timer != NULL)
		evtimer_del(sched.timer);
	/* closed() runs on a later loop round, but NEXT is taken first all the same. */
	for (s = LIST_FIRST(&sched.sessions); s != NULL; s = next) {
		next = LIST_NEXT(s, entry);
		smtp_client_stop(s->client, abort);
	}
}

/*
 * Switch to CONFIG after a reload. Sessions already open finish the
 * message in hand with the old settings, which they keep alive, then end
 * with QUIT; new sessions use CONFIG.
 */
int
scheduler_reconfigure(struct config *config, char **errstr)
{
	struct scheduler_session *s, *next;
	SSL_CTX *ctx;

	/* Check first: a bad ca_file or password_file must leave everything as it was. */
	if (secret_check_config(&config->smarthost, errstr) == -1)
		return -1;
	ctx = NULL;
	if (scheduler_tls_at_start(config)) {
		ctx = tls_client_ctx_new(config, errstr);
		if (ctx == NULL)
			return -1;
	}
	SSL_CTX_free(sched.tls_ctx);
	sched.tls_ctx = ctx;
	config_free(sched.config);
	sched.config = config_ref(config);
	scheduler_load_endpoints(config);
	/* New settings may fix what held the relay, such as a password: try again now. */
	relay_policy_release();

	/* smtp_client_stop may call closed() at once, which unlinks S. */
	for (s = LIST_FIRST(&sched.sessions); s != NULL; s = next) {
		next = LIST_NEXT(s, entry);
		if (s->config != sched.config)
			smtp_client_stop(s->client, false);
	}
	scheduler_wake();
	return 0;
}

int
scheduler_sessions(void)
{
	return sched.session_count;
}

void
scheduler_free(void)
{
	struct scheduler_unstored *u;

	/* A last try; what stays unstored is "sending" on disk, queued again at the next start. */
	scheduler_store_unstored();
	while ((u = TAILQ_FIRST(&sched.unstored)) != NULL) {
		log_warning("msg=%lld event=outcome_lost state=%s note=\"the "
		    "message is queued again at the next start\"",
		    (long long)u->msg->id, msg_state_name(u->state));
		TAILQ_REMOVE(&sched.unstored, u, entry);
		scheduler_unstored_free(u);
	}
	if (sched.wake_event != NULL)
		event_free(sched.wake_event);
	if (sched.timer != NULL)
		event_free(sched.timer);
	sched.wake_event = NULL;
	sched.timer = NULL;
	free(sched.endpoints);
	sched.endpoints = NULL;
	if (sched.tls_ctx != NULL)
		SSL_CTX_free(sched.tls_ctx);
	sched.tls_ctx = NULL;
	config_free(sched.config);
	sched.config = NULL;
	relay_policy_free();
	dsn_free();
	password_command_shutdown();
}
