/*
 * Delivery scheduling. Sessions are owned here; each borrows one claimed
 * message at a time through next_message() and returns it through
 * message_done(), where the outcome is stored durably before anything
 * else happens to the message. A session that fails before it delivers
 * anything moves on to the next endpoint; when every endpoint has failed,
 * all due messages are deferred with their own backoff.
 */
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "log.h"
#include "relayqd.h"
#include "scheduler.h"
#include "smtp_client.h"
#include "tls.h"
#include "util.h"

struct scheduler_session {
	LIST_ENTRY(scheduler_session) entry;
	struct smtp_client *client;
	size_t endpoint;
	char *host;		/* "host:port" for attempt records */
};

static struct {
	SSL_CTX *tls_ctx;
	struct config_endpoint *endpoints;	/* primary first, then fallbacks */
	size_t endpoint_count;
	size_t endpoint_next;			/* endpoint for the next session */
	LIST_HEAD(, scheduler_session) sessions;
	int session_count;
	struct event *wake_event;
	struct event *timer;
	bool stopping;
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

/*
 * Store the result of one attempt on MSG and log it. REASON is the
 * one-line description (the reply or the local error).
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
	if (queue_store_finish(relayqd.store, msg, state, next, error, final_reply,
	    &attempt, &store_error) == -1) {
		/* The message stays "sending" on disk and is retried after a restart. */
		log_error("msg=%lld event=store_failed error=\"%s\"", (long long)msg->id,
		    store_error);
		free(store_error);
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

done:
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

static struct queue_message *
scheduler_next_message(void *arg, struct smtp_client *client)
{
	struct queue_message *msg = NULL;
	char *error = NULL;

	if (sched.stopping || relayqd.stopping)
		return NULL;
	if (queue_store_claim_due(relayqd.store, now_seconds(),
	    scheduler_include_uncertain(), &msg, &error) == -1) {
		log_error("event=claim_failed error=\"%s\"", error);
		free(error);
		return NULL;
	}
	if (msg != NULL)
		log_debug("msg=%lld event=claimed session=c%llu", (long long)msg->id,
		    (unsigned long long)smtp_client_id(client));
	return msg;
}

static void
scheduler_message_done(void *arg, struct smtp_client *client,
    struct queue_message *msg, const struct delivery_result *result)
{
	struct scheduler_session *s = scheduler_session_find(client);
	const char *host = s != NULL ? s->host : result->host;
	char *reason;

	if (result->reply.code != 0 && result->status != DELIVERY_UNCERTAIN)
		reason = smtp_reply_format(&result->reply);
	else
		reason = xstrdup(result->error != NULL ? result->error : "unknown error");

	scheduler_record(msg, result->status, host,
	    result->reply.code != 0 ? &result->reply : NULL, reason);
	free(reason);
	queue_message_free(msg);
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
	char *error = NULL;
	int count = 0;

	for (;;) {
		if (queue_store_claim_due(relayqd.store, now_seconds(),
		    scheduler_include_uncertain(), &msg, &error) == -1) {
			log_error("event=claim_failed error=\"%s\"", error);
			free(error);
			break;
		}
		if (msg == NULL)
			break;
		scheduler_set_all(msg, RCPT_PENDING, NULL, NULL);
		scheduler_record(msg, DELIVERY_TEMPFAIL, host, reply, reason);
		queue_message_free(msg);
		count++;
	}
	if (count > 0)
		log_info("event=relay_deferred messages=%d host=%s", count, host);
}

static void
scheduler_closed(void *arg, struct smtp_client *client, enum smtp_failure failure,
    const char *error, const struct smtp_reply *reply, int delivered)
{
	struct scheduler_session *s = scheduler_session_find(client);
	char *reason = NULL, *host;

	if (s == NULL)
		return;
	LIST_REMOVE(s, entry);
	sched.session_count--;
	host = s->host;

	if (failure != SMTP_FAILURE_NONE && delivered == 0 && !relayqd.stopping) {
		/* The client's error text already quotes the server's reply. */
		reason = xstrdup(error != NULL ? error : "session failed");
		if (s->endpoint + 1 < sched.endpoint_count) {
			sched.endpoint_next = s->endpoint + 1;
			log_warning("event=endpoint_failed host=%s error=\"%s\" next=%s:%d",
			    host, reason, sched.endpoints[sched.endpoint_next].host,
			    sched.endpoints[sched.endpoint_next].port);
		} else {
			sched.endpoint_next = 0;
			scheduler_defer_due(host, reply, reason);
		}
		free(reason);
	}
	free(host);
	free(s);
	scheduler_wake();
}

static const struct smtp_client_callbacks scheduler_callbacks = {
	.next_message = scheduler_next_message,
	.message_done = scheduler_message_done,
	.closed = scheduler_closed,
};

static void
scheduler_start_session(void)
{
	struct scheduler_session *s = xcalloc(1, sizeof(*s));
	char *error = NULL;

	s->endpoint = sched.endpoint_next;
	s->host = scheduler_endpoint_text(&sched.endpoints[s->endpoint]);
	LIST_INSERT_HEAD(&sched.sessions, s, entry);
	sched.session_count++;

	s->client = smtp_client_start(relayqd.base, relayqd.dns, sched.tls_ctx,
	    relayqd.config, &sched.endpoints[s->endpoint], relayqd.store,
	    &scheduler_callbacks, NULL, &error);
	if (s->client == NULL) {
		log_error("event=session_failed host=%s error=\"%s\"", s->host, error);
		LIST_REMOVE(s, entry);
		sched.session_count--;
		free(s->host);
		free(s);
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

static void
scheduler_run(evutil_socket_t fd, short what, void *arg)
{
	int64_t now = now_seconds(), due = 0;
	char *error = NULL;
	int max = relayqd.config->smarthost.max_connections;

	if (sched.stopping || relayqd.stopping)
		return;
	if (queue_store_count_due(relayqd.store, now, scheduler_include_uncertain(),
	    &due, &error) == -1) {
		log_error("event=schedule_failed error=\"%s\"", error);
		free(error);
		due = 0;
	}

	/* Sessions already open pick up due messages as they finish their current one. */
	while (sched.session_count < max && due > sched.session_count)
		scheduler_start_session();
	scheduler_arm_timer(now);
}

void
scheduler_wake(void)
{
	if (sched.wake_event != NULL)
		event_active(sched.wake_event, 0, 0);
}

int
scheduler_init(char **errstr)
{
	const struct config_smarthost *sh = &relayqd.config->smarthost;
	size_t i;

	LIST_INIT(&sched.sessions);
	sched.tls_ctx = tls_client_ctx_new(relayqd.config, errstr);
	if (sched.tls_ctx == NULL)
		return -1;

	sched.endpoint_count = 1 + sh->fallback_count;
	sched.endpoints = xcalloc(sched.endpoint_count, sizeof(*sched.endpoints));
	sched.endpoints[0].host = sh->host;
	sched.endpoints[0].port = sh->port;
	sched.endpoints[0].tls = sh->tls;
	for (i = 0; i < sh->fallback_count; i++)
		sched.endpoints[i + 1] = sh->fallback[i];

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

int
scheduler_sessions(void)
{
	return sched.session_count;
}

void
scheduler_free(void)
{
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
}
