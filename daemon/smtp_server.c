/*
 * Incoming SMTP sessions. Commands are read line by line and answered in
 * order, so pipelined commands work without special cases. During DATA
 * the bytes go through three stages: smtp_data (end of data, unstuffing,
 * line ends), message_writer (Received:, Date:, Message-ID:) and the
 * session's chunk buffer, which is written to the queue every
 * QUEUE_CHUNK_SIZE bytes. Reading is paused while a message waits for its
 * group commit, and resumes with whatever the client pipelined after it.
 *
 * Each session follows the policy of the listener that accepted it:
 * allowed networks, STARTTLS, AUTH and limits (smtpd_policy.h). One timer
 * per session bounds the time to send each command (smtpd.timeout) and
 * the whole of DATA (smtpd.data_timeout), so that a client that trickles
 * one byte at a time is cut off like an idle one.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "address.h"
#include "compat.h"
#include "intake.h"
#include "list.h"
#include "log.h"
#include "message.h"
#include "relayqd.h"
#include "smtp_data.h"
#include "smtp_proto.h"
#include "smtp_server.h"
#include "smtpd_auth.h"
#include "smtpd_policy.h"
#include "smtpd_tls.h"
#include "util.h"

/* Errors tolerated before the session is closed, against scanners and loops. */
#define SMTP_SERVER_MAX_ERRORS 20

/* Commands answered with 503 after a 554 greeting before the session closes. */
#define SMTP_SERVER_REFUSED_COMMANDS 3

/* Seconds a client refused at the greeting has to send QUIT. */
#define SMTP_SERVER_REFUSED_TIMEOUT 10

/* Failed AUTH attempts per session; the last one closes the session. */
#define SMTP_SERVER_MAX_AUTH_FAILURES 3

/* Seconds before the reply to a failed AUTH, times the failures so far. */
#define SMTP_SERVER_AUTH_FAILURE_DELAY 1

/*
 * Session states. COMMAND -> DATA (after 354) -> COMMIT (data complete,
 * reading paused) -> COMMAND. COMMAND -> AUTH (inside an AUTH exchange)
 * -> COMMAND, or -> AUTH_DELAY (failed, reading paused until the 535)
 * -> COMMAND. A client outside the allowed networks starts in REFUSED.
 * Any state -> CLOSING (reply queued, closing once it is written).
 */
enum smtp_server_state {
	SMTP_SERVER_COMMAND,
	SMTP_SERVER_AUTH,
	SMTP_SERVER_AUTH_DELAY,
	SMTP_SERVER_DATA,
	SMTP_SERVER_COMMIT,
	SMTP_SERVER_REFUSED,
	SMTP_SERVER_CLOSING,
};

/* The transaction from MAIL to the end of DATA. */
struct smtp_transaction {
	char *sender;
	char **rcpts;
	size_t rcpt_count;
	bool body_8bitmime;
	bool smtputf8;			/* MAIL had the SMTPUTF8 parameter */
	uint64_t max_size;		/* the listener's max_message_size at MAIL */
	int64_t msg_id;			/* 0 until DATA creates the queue entry */
	struct smtp_data_parser data;
	struct message_writer writer;
	char *chunk;			/* QUEUE_CHUNK_SIZE bytes */
	size_t chunk_len;
	int chunk_seq;
	uint64_t size;			/* message bytes after unstuffing */
	bool too_big;
	char *store_error;		/* first failure writing the body */
	bool store_error_space;
	struct intake_request *commit;
};

struct smtp_session {
	TAILQ_ENTRY(smtp_session) entry;
	uint64_t id;
	struct bufferevent *bev;	/* the socket's, or the TLS filter over it */
	struct event *timer;		/* command and DATA deadlines, AUTH delay */
	struct smtpd_policy *policy;
	char peer[INET6_ADDRSTRLEN];
	bool loopback;			/* the client connected from a loopback address */
	enum smtp_server_state state;
	char *helo;			/* escaped for logs and Received: */
	bool esmtp;
	bool tls;			/* STARTTLS done (the handshake may be running) */
	char *auth_user;		/* authenticated user, or NULL */
	int auth_failures;
	struct smtpd_auth_exchange auth;
	bool discard_line;		/* skipping the rest of an over-long line */
	int errors;
	int refused_commands;
	int messages;
	struct smtp_transaction *tx;
};

static TAILQ_HEAD(, smtp_session) smtp_sessions =
    TAILQ_HEAD_INITIALIZER(smtp_sessions);
static int smtp_session_count;
static uint64_t smtp_session_next_id = 1;

static void smtp_server_read(struct bufferevent *bev, void *arg);
static void smtp_server_written(struct bufferevent *bev, void *arg);
static void smtp_server_event(struct bufferevent *bev, short what, void *arg);

static const char *
smtp_server_hostname(const struct smtp_session *s)
{
	const char *name = s->policy->config->smtpd.hostname;

	return name != NULL ? name : host_fqdn();
}

static void
smtp_server_reply(struct smtp_session *s, const char *fmt, ...)
    RELAYQ_PRINTF(2, 3);

static void
smtp_server_reply(struct smtp_session *s, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

/* Run the session timer SECONDS from now, replacing any earlier deadline. */
static void
smtp_session_arm(struct smtp_session *s, int64_t seconds)
{
	struct timeval tv;

	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = 0;
	evtimer_add(s->timer, &tv);
}

static void
smtp_transaction_free(struct smtp_transaction *tx)
{
	size_t i;

	if (tx == NULL)
		return;
	if (tx->commit != NULL)
		intake_cancel(tx->commit);
	else if (tx->msg_id != 0)
		queue_store_message_delete(relayqd.store, tx->msg_id, NULL);
	for (i = 0; i < tx->rcpt_count; i++)
		free(tx->rcpts[i]);
	free(tx->rcpts);
	free(tx->sender);
	free(tx->chunk);
	free(tx->store_error);
	message_writer_clear(&tx->writer);
	free(tx);
}

static void
smtp_session_reset(struct smtp_session *s)
{
	smtp_transaction_free(s->tx);
	s->tx = NULL;
}

static void
smtp_session_free(struct smtp_session *s)
{
	log_info("session=s%llu event=disconnect messages=%d",
	    (unsigned long long)s->id, s->messages);
	smtp_session_reset(s);
	TAILQ_REMOVE(&smtp_sessions, s, entry);
	smtp_session_count--;
	event_free(s->timer);
	bufferevent_free(s->bev);
	smtpd_auth_clear(&s->auth);
	smtpd_policy_free(s->policy);
	free(s->auth_user);
	free(s->helo);
	free(s);
}

/* The socket's bufferevent under the TLS filter finished writing, or failed. */
static void
smtp_server_plain_written(struct bufferevent *bev, void *arg)
{
	smtp_session_free(arg);
}

static void
smtp_server_plain_event(struct bufferevent *bev, short what, void *arg)
{
	smtp_session_free(arg);
}

/*
 * Free a closing session whose last reply has left its bufferevent. With
 * TLS the filter has only encrypted it into the socket's bufferevent, so
 * the session waits for that one to write it, with a close_notify behind.
 */
static void
smtp_session_closed(struct smtp_session *s)
{
	struct bufferevent *plain = NULL;
	SSL *ssl;

	if (s->tls) {
		plain = bufferevent_get_underlying(s->bev);
		ssl = bufferevent_openssl_get_ssl(s->bev);
		if (ssl != NULL && SSL_is_init_finished(ssl))
			SSL_shutdown(ssl);
	}
	if (plain != NULL && evbuffer_get_length(bufferevent_get_output(plain)) > 0) {
		bufferevent_setcb(plain, NULL, smtp_server_plain_written,
		    smtp_server_plain_event, s);
		bufferevent_enable(plain, EV_WRITE);
		return;
	}
	smtp_session_free(s);
}

/* Send a final reply and close once it has been written. */
static void
smtp_session_close(struct smtp_session *s, const char *reply)
{
	if (reply != NULL)
		smtp_server_reply(s, "%s", reply);
	s->state = SMTP_SERVER_CLOSING;
	bufferevent_disable(s->bev, EV_READ);
	/* A client that reads nothing must not keep the session forever. */
	smtp_session_arm(s, s->policy->config->smtpd.timeout);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		smtp_session_closed(s);
}

static void
smtp_server_written(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	if (s->state == SMTP_SERVER_CLOSING)
		smtp_session_closed(s);
}

static void
smtp_server_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;
	char description[128], *reason;

	if (what & BEV_EVENT_CONNECTED) {
		/* Only the TLS filter reports this: the handshake is complete. */
		smtpd_tls_describe(bev, description, sizeof(description));
		log_info("session=s%llu event=tls client=%s protocol=\"%s\"",
		    (unsigned long long)s->id, s->peer, description);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		log_info("session=s%llu event=timeout client=%s stage=write",
		    (unsigned long long)s->id, s->peer);
		smtp_session_free(s);
		return;
	}
	if (s->tls && (what & BEV_EVENT_ERROR)) {
		reason = smtpd_tls_error(bev);
		log_info("session=s%llu event=tls_error client=%s error=\"%s\"",
		    (unsigned long long)s->id, s->peer, reason);
		free(reason);
	}
	if (s->state == SMTP_SERVER_COMMIT) {
		/* The commit goes ahead; only the reply has nowhere to go. */
		log_info("session=s%llu event=lost_during_commit",
		    (unsigned long long)s->id);
	}
	smtp_session_free(s);
}

/* Count a protocol error; too many close the session. Returns -1 when closed. */
static int
smtp_session_error(struct smtp_session *s, const char *reply)
{
	if (++s->errors >= SMTP_SERVER_MAX_ERRORS) {
		smtp_session_close(s, "421 4.7.0 Too many errors, closing");
		return -1;
	}
	smtp_server_reply(s, "%s", reply);
	return 0;
}

/* --- message data --- */

static void
smtp_chunk_flush(struct smtp_transaction *tx)
{
	char *error = NULL;

	if (tx->chunk_len == 0 || tx->store_error != NULL)
		return;
	if (queue_store_chunk_append(relayqd.store, tx->msg_id, tx->chunk_seq,
	    tx->chunk, tx->chunk_len, &error) == -1) {
		tx->store_error = error;
		tx->store_error_space = queue_store_error_is_space(relayqd.store);
	}
	tx->chunk_seq++;
	tx->chunk_len = 0;
}

/* Sink of the message writer: fill the chunk buffer, write it when full. */
static void
smtp_chunk_sink(void *arg, const char *data, size_t len)
{
	struct smtp_transaction *tx = arg;

	tx->size += len;
	if (tx->max_size > 0 && tx->size > tx->max_size)
		tx->too_big = true;
	if (tx->too_big || tx->store_error != NULL)
		return;

	while (len > 0) {
		size_t room = QUEUE_CHUNK_SIZE - tx->chunk_len;
		size_t n = len < room ? len : room;

		memcpy(tx->chunk + tx->chunk_len, data, n);
		tx->chunk_len += n;
		data += n;
		len -= n;
		if (tx->chunk_len == QUEUE_CHUNK_SIZE)
			smtp_chunk_flush(tx);
	}
}

/* Sink of the DATA parser: message text goes through the header writer. */
static void
smtp_data_sink_cb(void *arg, const char *data, size_t len)
{
	struct smtp_transaction *tx = arg;

	message_writer_write(&tx->writer, data, len);
}

/*
 * The protocol of the "with" clause: ESMTP with S for TLS and A for AUTH
 * (RFC 3848), UTF8SMTP and its variants for SMTPUTF8 (RFC 6531).
 */
static void
smtp_received_protocol(const struct smtp_session *s, char *buf, size_t size)
{
	const char *base = "SMTP";

	if (s->tx->smtputf8)
		base = "UTF8SMTP";
	else if (s->esmtp)
		base = "ESMTP";
	if (!s->esmtp) {
		snprintf(buf, size, "%s", base);
		return;
	}
	snprintf(buf, size, "%s%s%s", base, s->tls ? "S" : "",
	    s->auth_user != NULL ? "A" : "");
}

static char *
smtp_received_header(struct smtp_session *s, int64_t id)
{
	char date[64], protocol[16];
	const char *for_clause = "";
	char *for_text = NULL, *header;

	time_format_rfc5322(now_seconds(), date, sizeof(date));
	if (s->tx->rcpt_count == 1) {
		char *escaped = log_escape(s->tx->rcpts[0], strlen(s->tx->rcpts[0]));

		for_text = xasprintf("\r\n\tfor <%s>", escaped);
		for_clause = for_text;
		free(escaped);
	}
	smtp_received_protocol(s, protocol, sizeof(protocol));
	header = xasprintf("Received: from %s ([%s])\r\n\tby %s (relayq) with %s "
	    "id %lld%s;\r\n\t%s\r\n", s->helo != NULL ? s->helo : "unknown", s->peer,
	    smtp_server_hostname(s), protocol, (long long)id, for_clause, date);
	free(for_text);
	return header;
}

static void
smtp_log_accepted(struct smtp_session *s, int64_t id)
{
	struct smtp_transaction *tx = s->tx;
	char *sender = log_escape(tx->sender, strlen(tx->sender));
	char *user = NULL;

	if (s->auth_user != NULL)
		user = log_escape(s->auth_user, strlen(s->auth_user));
	log_info("msg=%lld event=accepted session=s%llu from=<%s> rcpts=%zu "
	    "size=%llu tls=%s%s%s%s", (long long)id, (unsigned long long)s->id,
	    sender, tx->rcpt_count, (unsigned long long)tx->size,
	    s->tls ? "yes" : "no", user != NULL ? " user=\"" : "",
	    user != NULL ? user : "", user != NULL ? "\"" : "");
	free(user);
	free(sender);
}

static void
smtp_commit_done(void *arg, int64_t id, const char *error, int space)
{
	struct smtp_session *s = arg;
	struct smtp_transaction *tx = s->tx;

	tx->commit = NULL;
	if (error != NULL) {
		tx->msg_id = 0;		/* intake's now: deleted, or kept after a failed sync */
		smtp_server_reply(s, "%s Message not accepted: %s",
		    space ? "452 4.3.1" : "451 4.3.0", error);
	} else {
		smtp_log_accepted(s, id);
		tx->msg_id = 0;		/* now owned by the queue */
		s->messages++;
		smtp_server_reply(s, "250 2.0.0 Ok: queued as %lld", (long long)id);
	}
	smtp_session_reset(s);
	s->state = SMTP_SERVER_COMMAND;
	smtp_session_arm(s, s->policy->config->smtpd.timeout);
	bufferevent_enable(s->bev, EV_READ);
	/* Commands pipelined behind the data are already buffered. */
	smtp_server_read(s->bev, s);
}

/* The final dot arrived: reject, or hand the message to the group commit. */
static void
smtp_data_finished(struct smtp_session *s)
{
	struct smtp_transaction *tx = s->tx;

	message_writer_finish(&tx->writer);
	smtp_chunk_flush(tx);
	smtp_session_arm(s, s->policy->config->smtpd.timeout);

	if (tx->too_big) {
		smtp_server_reply(s, "552 5.3.4 Message too big: the limit is %llu bytes",
		    (unsigned long long)tx->max_size);
		smtp_session_reset(s);
		s->state = SMTP_SERVER_COMMAND;
		return;
	}
	if (tx->store_error != NULL) {
		log_error("session=s%llu event=spool_failed error=\"%s\"",
		    (unsigned long long)s->id, tx->store_error);
		smtp_server_reply(s, "%s Message not accepted: %s",
		    tx->store_error_space ? "452 4.3.1" : "451 4.3.0", tx->store_error);
		smtp_session_reset(s);
		s->state = SMTP_SERVER_COMMAND;
		return;
	}

	/* The client waits for the commit now; no deadline runs meanwhile. */
	evtimer_del(s->timer);
	s->state = SMTP_SERVER_COMMIT;
	bufferevent_disable(s->bev, EV_READ);
	tx->commit = intake_submit(tx->msg_id, tx->size,
	    message_writer_message_id(&tx->writer), smtp_commit_done, s);
}

/* Feed buffered input to the DATA parser without copying it. */
static void
smtp_server_read_data(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_iovec vec[8];
	int n, i;
	size_t consumed = 0;

	n = evbuffer_peek(in, -1, NULL, vec, 8);
	for (i = 0; i < n && i < 8; i++) {
		size_t used = smtp_data_feed(&s->tx->data, vec[i].iov_base,
		    vec[i].iov_len);

		consumed += used;
		if (smtp_data_done(&s->tx->data))
			break;
	}
	evbuffer_drain(in, consumed);
	if (smtp_data_done(&s->tx->data))
		smtp_data_finished(s);
}

/* --- AUTH --- */

/* True when AUTH is offered to this session now. */
static bool
smtp_auth_offered(const struct smtp_session *s)
{
	if (s->policy->users == NULL)
		return false;
	return s->tls || (s->loopback && s->policy->listen->auth_plaintext_loopback);
}

/* The 530 reply when the listener requires AUTH and the session has none, else NULL. */
static const char *
smtp_auth_missing(const struct smtp_session *s)
{
	if (s->policy->listen->auth != SMTPD_AUTH_REQUIRED || s->auth_user != NULL)
		return NULL;
	if (!smtp_auth_offered(s) && s->policy->tls != NULL && !s->tls)
		return "530 5.7.0 Must issue a STARTTLS command first";
	return "530 5.7.0 Authentication required";
}

static void
smtp_auth_end(struct smtp_session *s)
{
	smtpd_auth_clear(&s->auth);
	s->state = SMTP_SERVER_COMMAND;
}

/* The delay after a failed AUTH is over: reply, or close after too many. */
static void
smtp_auth_delay_done(struct smtp_session *s)
{
	if (s->auth_failures >= SMTP_SERVER_MAX_AUTH_FAILURES) {
		smtp_session_close(s, "421 4.7.0 Too many failed authentication "
		    "attempts, closing");
		return;
	}
	s->state = SMTP_SERVER_COMMAND;
	smtp_server_reply(s, "535 5.7.8 Authentication credentials invalid");
	smtp_session_arm(s, s->policy->config->smtpd.timeout);
	bufferevent_enable(s->bev, EV_READ);
	smtp_server_read(s->bev, s);
}

/* The exchange produced a user and a password: check them. */
static void
smtp_auth_check(struct smtp_session *s)
{
	const char *mechanism = smtpd_auth_mechanism_name(&s->auth);
	char *user = log_escape(s->auth.user, strlen(s->auth.user));
	bool ok;

	ok = smtpd_auth_verify(s->policy->users, s->auth.user, s->auth.password,
	    s->auth.password_len);
	if (ok) {
		log_info("session=s%llu event=auth client=%s user=\"%s\" mechanism=%s",
		    (unsigned long long)s->id, s->peer, user, mechanism);
		s->auth_user = xstrdup(s->auth.user);
		smtp_auth_end(s);
		smtp_server_reply(s, "235 2.7.0 Authentication successful");
		free(user);
		return;
	}

	s->auth_failures++;
	log_info("session=s%llu event=auth_failed client=%s user=\"%s\" "
	    "mechanism=%s failures=%d", (unsigned long long)s->id, s->peer, user,
	    mechanism, s->auth_failures);
	free(user);
	smtp_auth_end(s);

	/* Pause the session before the reply, to slow down password guessing. */
	s->state = SMTP_SERVER_AUTH_DELAY;
	bufferevent_disable(s->bev, EV_READ);
	smtp_session_arm(s, (int64_t)s->auth_failures * SMTP_SERVER_AUTH_FAILURE_DELAY);
}

static void
smtp_auth_result(struct smtp_session *s, enum smtpd_auth_result result,
    const char *reply)
{
	switch (result) {
	case SMTPD_AUTH_CHALLENGE:
		s->state = SMTP_SERVER_AUTH;
		smtp_server_reply(s, "334 %s", reply);
		break;
	case SMTPD_AUTH_CREDENTIALS:
		smtp_auth_check(s);
		break;
	case SMTPD_AUTH_REJECTED:
		smtp_auth_end(s);
		smtp_session_error(s, reply);
		break;
	}
}

static void
smtp_cmd_auth(struct smtp_session *s, const char *arg)
{
	enum smtpd_auth_result result;
	const char *reply;

	if (s->policy->users == NULL) {
		smtp_session_error(s, "502 5.5.1 AUTH is not offered here");
		return;
	}
	if (!smtp_auth_offered(s)) {
		smtp_session_error(s, "538 5.7.11 Encryption required for requested "
		    "authentication mechanism: use STARTTLS first");
		return;
	}
	if (s->helo == NULL || !s->esmtp) {
		smtp_session_error(s, "503 5.5.1 Send EHLO first");
		return;
	}
	if (s->auth_user != NULL) {
		smtp_session_error(s, "503 5.5.1 Already authenticated");
		return;
	}
	if (s->tx != NULL) {
		smtp_session_error(s, "503 5.5.1 AUTH is not allowed during a mail "
		    "transaction");
		return;
	}
	result = smtpd_auth_start(&s->auth, arg, &reply);
	smtp_auth_result(s, result, reply);
}

/* One line of an AUTH exchange: a base64 response, or "*" to cancel. */
static void
smtp_auth_line(struct smtp_session *s, const char *line)
{
	enum smtpd_auth_result result;
	const char *reply;

	result = smtpd_auth_continue(&s->auth, line, &reply);
	smtp_auth_result(s, result, reply);
}

/* --- STARTTLS --- */

/* Forget what the client sent before TLS (RFC 3207 section 4.2). */
static void
smtp_session_forget(struct smtp_session *s)
{
	smtp_session_reset(s);
	free(s->helo);
	s->helo = NULL;
	s->esmtp = false;
	free(s->auth_user);
	s->auth_user = NULL;
}

static void
smtp_cmd_starttls(struct smtp_session *s, const char *arg)
{
	struct bufferevent *tls;
	struct evbuffer *in;
	struct timeval tv;
	char *error = NULL;
	size_t pending;

	if (s->policy->tls == NULL) {
		smtp_session_error(s, "502 5.5.1 Command not implemented");
		return;
	}
	if (s->tls) {
		smtp_session_error(s, "503 5.5.1 TLS is already active");
		return;
	}
	if (arg[0] != '\0') {
		smtp_session_error(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}

	/*
	 * Commands pipelined behind STARTTLS came in plain text, possibly
	 * from an attacker in the path who wants them to run inside TLS.
	 */
	in = bufferevent_get_input(s->bev);
	pending = evbuffer_get_length(in);
	if (pending > 0) {
		log_info("session=s%llu event=starttls_pipelining_discarded "
		    "client=%s bytes=%zu", (unsigned long long)s->id, s->peer, pending);
		evbuffer_drain(in, pending);
	}

	smtp_server_reply(s, "220 2.0.0 Ready to start TLS");
	tls = smtpd_tls_start(s->bev, s->policy->tls, &error);
	if (tls == NULL) {
		log_error("session=s%llu event=tls_error client=%s error=\"%s\"",
		    (unsigned long long)s->id, s->peer, error);
		free(error);
		smtp_session_close(s, NULL);
		return;
	}

	/* The 220 is in the socket's buffer ahead of the handshake's records. */
	s->bev = tls;
	s->tls = true;
	smtp_session_forget(s);
	bufferevent_setcb(tls, smtp_server_read, smtp_server_written,
	    smtp_server_event, s);
	tv.tv_sec = (time_t)s->policy->config->smtpd.timeout;
	tv.tv_usec = 0;
	bufferevent_set_timeouts(tls, NULL, &tv);
	bufferevent_enable(tls, EV_READ | EV_WRITE);
}

/* --- commands --- */

static void
smtp_cmd_helo(struct smtp_session *s, const char *arg, bool esmtp)
{
	const struct config_listen *listen = s->policy->listen;
	const char *host = smtp_server_hostname(s);

	if (arg[0] == '\0') {
		smtp_session_error(s, esmtp ? "501 5.5.4 Syntax: EHLO hostname" :
		    "501 5.5.4 Syntax: HELO hostname");
		return;
	}
	smtp_session_reset(s);
	free(s->helo);
	s->helo = log_escape(arg, strlen(arg) > 255 ? 255 : strlen(arg));
	s->esmtp = esmtp;
	if (!esmtp) {
		smtp_server_reply(s, "250 %s", host);
		return;
	}
	smtp_server_reply(s, "250-%s", host);
	smtp_server_reply(s, "250-PIPELINING");
	smtp_server_reply(s, "250-SIZE %llu",
	    (unsigned long long)listen->max_message_size);
	smtp_server_reply(s, "250-8BITMIME");
	if (listen->smtputf8)
		smtp_server_reply(s, "250-SMTPUTF8");
	if (s->policy->tls != NULL && !s->tls)
		smtp_server_reply(s, "250-STARTTLS");
	if (smtp_auth_offered(s))
		smtp_server_reply(s, "250-AUTH %s", SMTPD_AUTH_MECHANISMS);
	smtp_server_reply(s, "250-ENHANCEDSTATUSCODES");
	smtp_server_reply(s, "250 HELP");
}

/*
 * Check the SMTPUTF8 rules for ADDRESS: a non-ASCII address needs the
 * SMTPUTF8 parameter of MAIL (RFC 6531 section 3.4). Returns the reply
 * for a rejected address, or NULL.
 */
static const char *
smtp_check_utf8(const struct smtp_session *s, const char *address, bool smtputf8)
{
	if (!address_is_8bit(address))
		return NULL;
	if (!s->policy->listen->smtputf8)
		return "553 5.6.7 Non-ASCII addresses are not accepted here, "
		    "because SMTPUTF8 is off";
	if (!smtputf8)
		return "553 5.6.7 A non-ASCII address needs the SMTPUTF8 parameter "
		    "of MAIL";
	return NULL;
}

static void
smtp_cmd_mail(struct smtp_session *s, const char *arg)
{
	struct smtp_path_command cmd;
	uint64_t max = s->policy->listen->max_message_size;
	const char *reply;
	char *error = NULL;

	if (s->helo == NULL) {
		smtp_session_error(s, "503 5.5.1 Send HELO or EHLO first");
		return;
	}
	if (s->tx != NULL) {
		smtp_session_error(s, "503 5.5.1 Sender already specified");
		return;
	}
	reply = smtp_auth_missing(s);
	if (reply != NULL) {
		smtp_session_error(s, reply);
		return;
	}
	if (smtp_path_command_parse(arg, true, &cmd, &error) == -1) {
		smtp_session_error(s, error);
		free(error);
		return;
	}
	if (cmd.smtputf8 && !s->policy->listen->smtputf8) {
		smtp_path_command_clear(&cmd);
		smtp_session_error(s, "555 5.5.4 SMTPUTF8 is not offered here");
		return;
	}
	reply = smtp_check_utf8(s, cmd.address, cmd.smtputf8);
	if (reply != NULL) {
		smtp_path_command_clear(&cmd);
		smtp_server_reply(s, "%s", reply);
		return;
	}
	if (max > 0 && cmd.size > max) {
		smtp_server_reply(s, "552 5.3.4 Message too big: the limit is %llu bytes",
		    (unsigned long long)max);
		smtp_path_command_clear(&cmd);
		return;
	}

	s->tx = xcalloc(1, sizeof(*s->tx));
	s->tx->sender = cmd.address;
	s->tx->body_8bitmime = cmd.body_8bitmime;
	s->tx->smtputf8 = cmd.smtputf8;
	s->tx->max_size = max;
	cmd.address = NULL;
	smtp_path_command_clear(&cmd);
	smtp_server_reply(s, "250 2.1.0 Ok");
}

static void
smtp_cmd_rcpt(struct smtp_session *s, const char *arg)
{
	struct smtp_path_command cmd;
	struct smtp_transaction *tx = s->tx;
	const char *reply;
	char *error = NULL;

	if (tx == NULL) {
		smtp_session_error(s, "503 5.5.1 Need MAIL before RCPT");
		return;
	}
	if (smtp_path_command_parse(arg, false, &cmd, &error) == -1) {
		smtp_session_error(s, error);
		free(error);
		return;
	}
	reply = smtp_check_utf8(s, cmd.address, tx->smtputf8);
	if (reply != NULL) {
		smtp_server_reply(s, "%s", reply);
		smtp_path_command_clear(&cmd);
		return;
	}
	if (tx->rcpt_count >= (size_t)s->policy->listen->max_recipients) {
		/* RFC 5321 4.5.3.1.10: 452 lets the client send the rest later. */
		smtp_server_reply(s, "452 4.5.3 Too many recipients");
		smtp_path_command_clear(&cmd);
		return;
	}
	tx->rcpts = xrealloc(tx->rcpts, (tx->rcpt_count + 1) * sizeof(*tx->rcpts));
	tx->rcpts[tx->rcpt_count++] = cmd.address;
	cmd.address = NULL;
	smtp_path_command_clear(&cmd);
	smtp_server_reply(s, "250 2.1.5 Ok");
}

static void
smtp_cmd_data(struct smtp_session *s, const char *arg)
{
	struct smtp_transaction *tx = s->tx;
	char *error = NULL, *received;

	if (tx == NULL || tx->rcpt_count == 0) {
		smtp_session_error(s, tx == NULL ? "503 5.5.1 Need MAIL before DATA" :
		    "503 5.5.1 Need RCPT before DATA");
		return;
	}
	if (arg[0] != '\0') {
		smtp_session_error(s, "501 5.5.4 DATA takes no arguments");
		return;
	}
	if (queue_store_message_create(relayqd.store, tx->sender, tx->rcpts,
	    tx->rcpt_count, s->peer, now_seconds(), &tx->msg_id, &error) == -1) {
		log_error("session=s%llu event=spool_failed error=\"%s\"",
		    (unsigned long long)s->id, error);
		smtp_server_reply(s, "%s Cannot queue the message now: %s",
		    queue_store_error_is_space(relayqd.store) ? "452 4.3.1" : "451 4.3.0",
		    error);
		free(error);
		tx->msg_id = 0;
		return;
	}

	tx->chunk = xmalloc(QUEUE_CHUNK_SIZE);
	received = smtp_received_header(s, tx->msg_id);
	message_writer_init(&tx->writer, received, smtp_server_hostname(s),
	    smtp_chunk_sink, tx);
	free(received);
	smtp_data_init(&tx->data, smtp_data_sink_cb, tx);
	s->state = SMTP_SERVER_DATA;
	smtp_session_arm(s, s->policy->config->smtpd.data_timeout);
	smtp_server_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void
smtp_cmd_help(struct smtp_session *s)
{
	smtp_server_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET "
	    "NOOP QUIT HELP VRFY%s%s", s->policy->tls != NULL && !s->tls ?
	    " STARTTLS" : "", smtp_auth_offered(s) ? " AUTH" : "");
}

/* After a 554 greeting only QUIT is accepted (RFC 5321 section 3.1). */
static void
smtp_server_refused_command(struct smtp_session *s, const struct smtp_command *cmd)
{
	if (cmd->verb == SMTP_VERB_QUIT) {
		smtp_session_close(s, "221 2.0.0 Bye");
		return;
	}
	if (++s->refused_commands >= SMTP_SERVER_REFUSED_COMMANDS) {
		smtp_session_close(s, "503 5.7.1 Access denied, closing");
		return;
	}
	smtp_server_reply(s, "503 5.7.1 Access denied: only QUIT is accepted");
}

/* Log a command at debug level. AUTH is logged without its initial response. */
static void
smtp_server_log_command(const struct smtp_session *s,
    const struct smtp_command *cmd, const char *line)
{
	size_t len;
	char *escaped;

	if (!log_debug_enabled())
		return;
	if (cmd->verb == SMTP_VERB_AUTH) {
		len = strcspn(cmd->arg, " ");
		escaped = log_escape(cmd->arg, len);
		log_debug("session=s%llu command=\"AUTH %s%s\"",
		    (unsigned long long)s->id, escaped,
		    cmd->arg[len] != '\0' ? " [initial response not logged]" : "");
	} else {
		escaped = log_escape(line, strlen(line));
		log_debug("session=s%llu command=\"%s\"", (unsigned long long)s->id,
		    escaped);
	}
	free(escaped);
}

static void
smtp_server_command(struct smtp_session *s, char *line)
{
	struct smtp_command cmd;

	if (relayqd.stopping) {
		smtp_session_close(s, "421 4.3.2 Service shutting down, try again later");
		return;
	}
	smtp_command_parse(line, &cmd);
	smtp_server_log_command(s, &cmd, line);
	if (s->state == SMTP_SERVER_REFUSED) {
		smtp_server_refused_command(s, &cmd);
		return;
	}

	switch (cmd.verb) {
	case SMTP_VERB_EHLO:
	case SMTP_VERB_HELO:
		smtp_cmd_helo(s, cmd.arg, cmd.verb == SMTP_VERB_EHLO);
		break;
	case SMTP_VERB_MAIL:
		smtp_cmd_mail(s, cmd.arg);
		break;
	case SMTP_VERB_RCPT:
		smtp_cmd_rcpt(s, cmd.arg);
		break;
	case SMTP_VERB_DATA:
		smtp_cmd_data(s, cmd.arg);
		break;
	case SMTP_VERB_RSET:
		smtp_session_reset(s);
		smtp_server_reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_VERB_NOOP:
		smtp_server_reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_VERB_QUIT:
		smtp_session_close(s, "221 2.0.0 Bye");
		break;
	case SMTP_VERB_HELP:
		smtp_cmd_help(s);
		break;
	case SMTP_VERB_VRFY:
		smtp_server_reply(s, "252 2.5.2 Cannot VRFY users, but will accept "
		    "the message for delivery");
		break;
	case SMTP_VERB_STARTTLS:
		smtp_cmd_starttls(s, cmd.arg);
		break;
	case SMTP_VERB_AUTH:
		smtp_cmd_auth(s, cmd.arg);
		break;
	case SMTP_VERB_EXPN:
	case SMTP_VERB_BDAT:
		smtp_session_error(s, "502 5.5.1 Command not implemented");
		break;
	case SMTP_VERB_UNKNOWN:
	default:
		smtp_session_error(s, "500 5.5.2 Command not recognized");
		break;
	}
}

/* Reject an over-long line; inside an AUTH exchange that ends the exchange. */
static int
smtp_server_line_too_long(struct smtp_session *s)
{
	if (s->state == SMTP_SERVER_AUTH)
		smtp_auth_end(s);
	return smtp_session_error(s, "500 5.5.2 Line too long") == 0;
}

/* Handle one complete line (CRLF removed) in the command, AUTH or refused state. */
static void
smtp_server_line(struct smtp_session *s, char *line, size_t len)
{
	if (s->state == SMTP_SERVER_AUTH) {
		smtp_auth_line(s, line);
	} else if (smtp_command_has_control(line, len)) {
		smtp_session_error(s, "500 5.5.2 Invalid character in command");
	} else {
		smtp_server_command(s, line);
	}

	/* The client has smtpd.timeout for its next command; a refused one has no more time. */
	if (s->state == SMTP_SERVER_COMMAND || s->state == SMTP_SERVER_AUTH)
		smtp_session_arm(s, s->policy->config->smtpd.timeout);
}

/* Read one command line. Returns 1 when one was handled, 0 when more input is needed. */
static int
smtp_server_read_command(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_ptr eol;
	char line[SMTP_COMMAND_LINE_MAX + 1];
	size_t len;

	eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
	if (eol.pos == -1) {
		if (evbuffer_get_length(in) > SMTP_COMMAND_LINE_MAX) {
			/* Drop what we have and the rest of the line when it arrives. */
			evbuffer_drain(in, evbuffer_get_length(in));
			if (!s->discard_line) {
				s->discard_line = true;
				return smtp_server_line_too_long(s);
			}
		}
		return 0;
	}

	len = (size_t)eol.pos;
	if (s->discard_line || len > SMTP_COMMAND_LINE_MAX) {
		evbuffer_drain(in, len + 1);
		if (s->discard_line) {
			s->discard_line = false;
			return 1;
		}
		return smtp_server_line_too_long(s);
	}
	evbuffer_remove(in, line, len + 1);
	line[len] = '\0';
	if (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';

	smtp_server_line(s, line, len);
	/* AUTH lines carry passwords. */
	secure_wipe(line, len);
	return 1;
}

static void
smtp_server_read(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;
	struct evbuffer *in;

	/* STARTTLS replaces s->bev, so the input is looked up each round. */
	for (;;) {
		in = bufferevent_get_input(s->bev);
		if (evbuffer_get_length(in) == 0)
			break;
		if (s->state == SMTP_SERVER_DATA) {
			smtp_server_read_data(s, in);
			if (s->state == SMTP_SERVER_DATA)
				break;
		} else if (s->state == SMTP_SERVER_COMMAND ||
		    s->state == SMTP_SERVER_AUTH || s->state == SMTP_SERVER_REFUSED) {
			if (smtp_server_read_command(s, in) == 0)
				break;
		} else {
			break;
		}
	}
}

/* The session's deadline passed, or the delay after a failed AUTH ended. */
static void
smtp_server_timer(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;

	switch (s->state) {
	case SMTP_SERVER_AUTH_DELAY:
		smtp_auth_delay_done(s);
		return;
	case SMTP_SERVER_CLOSING:
		smtp_session_free(s);
		return;
	case SMTP_SERVER_COMMIT:
		return;
	case SMTP_SERVER_REFUSED:
		log_info("session=s%llu event=timeout client=%s stage=refused",
		    (unsigned long long)s->id, s->peer);
		smtp_session_close(s, NULL);
		return;
	case SMTP_SERVER_DATA:
		log_info("session=s%llu event=timeout client=%s stage=data "
		    "limit=%llds", (unsigned long long)s->id, s->peer,
		    (long long)s->policy->config->smtpd.data_timeout);
		smtp_session_close(s, "421 4.4.2 Message data not complete in time, "
		    "closing");
		return;
	default:
		log_info("session=s%llu event=timeout client=%s stage=command "
		    "limit=%llds", (unsigned long long)s->id, s->peer,
		    (long long)s->policy->config->smtpd.timeout);
		smtp_session_close(s, "421 4.4.2 Timeout waiting for a command, closing");
		return;
	}
}

/* Sessions of the same listener as S, and of the same client address, S included. */
static void
smtp_server_count_sessions(const struct smtp_session *s, int *listener,
    int *client)
{
	const struct smtp_session *other;

	*listener = 0;
	*client = 0;
	TAILQ_FOREACH(other, &smtp_sessions, entry) {
		if (other->policy->listener_id == s->policy->listener_id)
			(*listener)++;
		if (strcmp(other->peer, s->peer) == 0)
			(*client)++;
	}
}

/* Apply the connection limits. Returns -1 when the session was refused. */
static int
smtp_server_check_limits(struct smtp_session *s)
{
	const struct config_listen *listen = s->policy->listen;
	const char *reason = NULL;
	int listener, client, limit = 0;

	smtp_server_count_sessions(s, &listener, &client);
	if (smtp_session_count > relayqd.config->smtpd.max_connections) {
		reason = "max_connections";
		limit = relayqd.config->smtpd.max_connections;
	} else if (listener > listen->max_connections) {
		reason = "listener_max_connections";
		limit = listen->max_connections;
	} else if (client > listen->max_connections_per_client) {
		reason = "max_connections_per_client";
		limit = listen->max_connections_per_client;
	}
	if (reason == NULL)
		return 0;

	log_info("session=s%llu event=refused client=%s listen=%s reason=%s "
	    "limit=%d", (unsigned long long)s->id, s->peer, listen->text, reason,
	    limit);
	smtp_session_close(s, client > listen->max_connections_per_client ?
	    "421 4.7.0 Too many connections from your address, try again later" :
	    "421 4.7.0 Too many connections, try again later");
	return -1;
}

/* Greet the client: 554 when its address is not allowed (RFC 5321 section 3.1), else 220. */
static void
smtp_server_greet(struct smtp_session *s, const struct sockaddr *addr)
{
	if (!smtpd_policy_allows(s->policy, addr)) {
		log_info("session=s%llu event=rejected client=%s listen=%s "
		    "reason=\"the client address is not in allow\"",
		    (unsigned long long)s->id, s->peer, s->policy->listen->text);
		s->state = SMTP_SERVER_REFUSED;
		smtp_server_reply(s, "554 5.7.1 %s Access denied: %s may not submit "
		    "mail here", smtp_server_hostname(s), s->peer);
		smtp_session_arm(s, SMTP_SERVER_REFUSED_TIMEOUT);
		return;
	}
	smtp_server_reply(s, "220 %s ESMTP relayq", smtp_server_hostname(s));
	smtp_session_arm(s, s->policy->config->smtpd.timeout);
}

/* Fill in the client's address text and return its port. */
static int
smtp_server_peer(struct smtp_session *s, const struct sockaddr *addr)
{
	if (addr->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;

		inet_ntop(AF_INET, &sin->sin_addr, s->peer, sizeof(s->peer));
		return ntohs(sin->sin_port);
	}
	if (addr->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)addr;

		inet_ntop(AF_INET6, &sin6->sin6_addr, s->peer, sizeof(s->peer));
		return ntohs(sin6->sin6_port);
	}
	snprintf(s->peer, sizeof(s->peer), "local");
	return 0;
}

void
smtp_server_accept(evutil_socket_t fd, const struct sockaddr *addr,
    socklen_t addrlen, struct smtpd_policy *policy)
{
	struct smtp_session *s;
	struct timeval tv;
	int port;

	s = xcalloc(1, sizeof(*s));
	s->id = smtp_session_next_id++;
	port = smtp_server_peer(s, addr);
	s->loopback = smtpd_policy_is_loopback(addr);

	s->bev = bufferevent_socket_new(relayqd.base, fd, BEV_OPT_CLOSE_ON_FREE);
	s->timer = evtimer_new(relayqd.base, smtp_server_timer, s);
	if (s->bev == NULL || s->timer == NULL) {
		if (s->bev != NULL)
			bufferevent_free(s->bev);
		else
			evutil_closesocket(fd);
		if (s->timer != NULL)
			event_free(s->timer);
		free(s);
		return;
	}
	s->policy = smtpd_policy_ref(policy);
	TAILQ_INSERT_TAIL(&smtp_sessions, s, entry);
	smtp_session_count++;
	bufferevent_setcb(s->bev, smtp_server_read, smtp_server_written,
	    smtp_server_event, s);

	/* Reading is bounded by the session timer; a stuck write by this timeout. */
	tv.tv_sec = (time_t)policy->config->smtpd.timeout;
	tv.tv_usec = 0;
	bufferevent_set_timeouts(s->bev, NULL, &tv);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);

	log_info("session=s%llu event=connect client=%s port=%d listen=%s",
	    (unsigned long long)s->id, s->peer, port, policy->listen->text);
	if (smtp_server_check_limits(s) == -1)
		return;
	if (relayqd.stopping) {
		smtp_session_close(s, "421 4.3.2 Service shutting down, try again later");
		return;
	}
	smtp_server_greet(s, addr);
}

void
smtp_server_shutdown(void)
{
	struct smtp_session *s, *next;

	for (s = TAILQ_FIRST(&smtp_sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		if (s->tx != NULL)
			continue;
		if (s->state == SMTP_SERVER_COMMAND || s->state == SMTP_SERVER_AUTH ||
		    s->state == SMTP_SERVER_AUTH_DELAY || s->state == SMTP_SERVER_REFUSED)
			smtp_session_close(s, "421 4.3.2 Service shutting down, try again later");
	}
}

void
smtp_server_abort_all(void)
{
	struct smtp_session *s;

	while ((s = TAILQ_FIRST(&smtp_sessions)) != NULL)
		smtp_session_free(s);
}

int
smtp_server_sessions(void)
{
	return smtp_session_count;
}
