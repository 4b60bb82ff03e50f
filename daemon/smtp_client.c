/*
 * Outgoing SMTP session to the smart host (RFC 5321), driven by libevent.
 * Each state has a name and a timeout in smtp_client_states[].
 * smtp_client_enter() enters a state and sends its command.
 * smtp_client_handle_reply() takes a complete reply and picks the next
 * state. The client frees itself from the event loop after closed().
 *
 * The body on the wire (stored bodies are CRLF text, not dot-stuffed):
 * - each CRLF, bare LF or bare CR of the stored body becomes one CRLF, so
 *   no bare CR or LF is ever sent;
 * - a line longer than 998 octets is broken into pieces of at most 998
 *   octets separated by CRLF (the limit of RFC 5321 section 4.5.3.1.6);
 *   a stuffed dot counts toward the 998;
 * - each wire line that starts with "." gets one more "." (RFC 5321
 *   section 4.5.2), pieces of a broken line included;
 * - a body that does not end with a line break gets a CRLF, then ".\r\n".
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#ifndef _WIN32
#include <netinet/in.h>
#include <netinet/tcp.h>
#endif

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "address.h"
#include "duration.h"
#include "log.h"
#include "password_command.h"
#include "sasl.h"
#include "secret.h"
#include "smtp_client.h"
#include "tls.h"
#include "util.h"

/* Maximum line length on the wire, CRLF excluded (RFC 5321 section 4.5.3.1.6). */
#define SMTP_CLIENT_LINE_MAX 998

/*
 * Seconds without a greeting before a probe connection checks for a TLS
 * mode mix-up. Smart hosts greet within a second; a port that waits for
 * a TLS ClientHello never does.
 */
#define SMTP_CLIENT_GREETING_HINT 3

/* Maximum wait between transactions for a rate limit before the session ends, in ms. */
#define SMTP_CLIENT_IDLE_MAX_MS 60000

/* Size of the buffer that collects encoded body octets before evbuffer_add(). */
#define SMTP_CLIENT_STAGE_SIZE 4096

/* Maximum number of OpenSSL error codes read from a bufferevent. */
#define SMTP_CLIENT_TLS_ERRORS_MAX 8

/*
 * Session states. Any state may also go to CLOSED when the connection is
 * lost, a timeout fires, a 421 reply arrives or the session is aborted.
 *   INIT -> RESOLVE -> CONNECT
 *   CONNECT -> CONNECT (next address) | TLS_HANDSHAKE (implicit TLS) | GREETING
 *   TLS_HANDSHAKE -> GREETING
 *   GREETING -> EHLO | QUIT (greeting other than 220)
 *   EHLO -> STARTTLS | CREDENTIALS | AUTH_* | READY | HELO | QUIT
 *   HELO -> READY | QUIT
 *   STARTTLS -> TLS_STARTTLS_HANDSHAKE | QUIT
 *   TLS_STARTTLS_HANDSHAKE -> EHLO_AFTER_TLS
 *   EHLO_AFTER_TLS -> CREDENTIALS | AUTH_* | READY | QUIT
 *   CREDENTIALS (password_command runs) -> AUTH_* | QUIT
 *   AUTH_PLAIN -> READY | AUTH_* (504 or 534: the next mechanism) | QUIT
 *   AUTH_LOGIN -> AUTH_LOGIN_USERNAME -> AUTH_LOGIN_PASSWORD -> READY, or QUIT
 *   AUTH_CRAM_MD5 -> AUTH_CRAM_MD5_RESPONSE -> READY, or QUIT
 *   AUTH_XOAUTH2 -> READY | AUTH_XOAUTH2_ERROR (334 error) -> QUIT
 *   READY -> MAIL | READY (waiting for a rate limit) | QUIT
 *   MAIL -> RCPT | RSET
 *   RCPT -> RCPT | DATA | RSET
 *   DATA -> BODY | DATA_END (354 with nothing to send) | RSET
 *   BODY -> DATA_END
 *   DATA_END -> READY
 *   RSET -> READY | QUIT
 *   QUIT -> CLOSED
 * With PIPELINING (RFC 2920) entering MAIL sends MAIL, every RCPT and
 * DATA at once; MAIL, RCPT and DATA then only read their replies in order.
 */
enum smtp_client_state {
	SMTP_CLIENT_INIT,
	SMTP_CLIENT_RESOLVE,
	SMTP_CLIENT_CONNECT,
	SMTP_CLIENT_TLS_HANDSHAKE,
	SMTP_CLIENT_GREETING,
	SMTP_CLIENT_EHLO,
	SMTP_CLIENT_HELO,
	SMTP_CLIENT_STARTTLS,
	SMTP_CLIENT_TLS_STARTTLS_HANDSHAKE,
	SMTP_CLIENT_EHLO_AFTER_TLS,
	SMTP_CLIENT_AUTH_PLAIN,
	SMTP_CLIENT_AUTH_LOGIN,
	SMTP_CLIENT_AUTH_LOGIN_USERNAME,
	SMTP_CLIENT_AUTH_LOGIN_PASSWORD,
	SMTP_CLIENT_CREDENTIALS,
	SMTP_CLIENT_AUTH_CRAM_MD5,
	SMTP_CLIENT_AUTH_CRAM_MD5_RESPONSE,
	SMTP_CLIENT_AUTH_XOAUTH2,
	SMTP_CLIENT_AUTH_XOAUTH2_ERROR,
	SMTP_CLIENT_READY,
	SMTP_CLIENT_MAIL,
	SMTP_CLIENT_RCPT,
	SMTP_CLIENT_DATA,
	SMTP_CLIENT_BODY,
	SMTP_CLIENT_DATA_END,
	SMTP_CLIENT_RSET,
	SMTP_CLIENT_QUIT,
	SMTP_CLIENT_CLOSED,
};

/* Timeout of a state, named by its field in struct config_timeouts. */
enum smtp_client_timeout {
	SMTP_TIMEOUT_NONE,
	SMTP_TIMEOUT_CONNECT,
	SMTP_TIMEOUT_GREETING,
	SMTP_TIMEOUT_COMMAND,
	SMTP_TIMEOUT_MAIL,
	SMTP_TIMEOUT_RCPT,
	SMTP_TIMEOUT_DATA_INIT,
	SMTP_TIMEOUT_DATA_BLOCK,
	SMTP_TIMEOUT_DATA_END,
};

struct smtp_client_state_info {
	const char *name;
	enum smtp_client_timeout timeout;
	/* Completes "timed out after 30s ..." and "connection lost while ...". */
	const char *activity;
};

static const struct smtp_client_state_info smtp_client_states[] = {
	[SMTP_CLIENT_INIT] = { "init", SMTP_TIMEOUT_NONE, "starting the session with" },
	[SMTP_CLIENT_RESOLVE] = { "resolve", SMTP_TIMEOUT_CONNECT, "looking up the address of" },
	[SMTP_CLIENT_CONNECT] = { "connect", SMTP_TIMEOUT_CONNECT, "connecting to" },
	[SMTP_CLIENT_TLS_HANDSHAKE] = { "tls-handshake", SMTP_TIMEOUT_CONNECT, "in the TLS handshake with" },
	[SMTP_CLIENT_GREETING] = { "greeting", SMTP_TIMEOUT_GREETING, "waiting for the greeting from" },
	[SMTP_CLIENT_EHLO] = { "ehlo", SMTP_TIMEOUT_COMMAND, "waiting for the reply to EHLO from" },
	[SMTP_CLIENT_HELO] = { "helo", SMTP_TIMEOUT_COMMAND, "waiting for the reply to HELO from" },
	[SMTP_CLIENT_STARTTLS] = { "starttls", SMTP_TIMEOUT_COMMAND, "waiting for the reply to STARTTLS from" },
	[SMTP_CLIENT_TLS_STARTTLS_HANDSHAKE] = { "starttls-handshake", SMTP_TIMEOUT_CONNECT, "in the TLS handshake after STARTTLS with" },
	[SMTP_CLIENT_EHLO_AFTER_TLS] = { "ehlo-after-tls", SMTP_TIMEOUT_COMMAND, "waiting for the reply to EHLO after STARTTLS from" },
	[SMTP_CLIENT_AUTH_PLAIN] = { "auth-plain", SMTP_TIMEOUT_COMMAND, "waiting for the reply to AUTH PLAIN from" },
	[SMTP_CLIENT_AUTH_LOGIN] = { "auth-login", SMTP_TIMEOUT_COMMAND, "waiting for the reply to AUTH LOGIN from" },
	[SMTP_CLIENT_AUTH_LOGIN_USERNAME] = { "auth-login-username", SMTP_TIMEOUT_COMMAND, "waiting for the reply to the AUTH LOGIN user name from" },
	[SMTP_CLIENT_AUTH_LOGIN_PASSWORD] = { "auth-login-password", SMTP_TIMEOUT_COMMAND, "waiting for the reply to the AUTH LOGIN password from" },
	[SMTP_CLIENT_CREDENTIALS] = { "credentials", SMTP_TIMEOUT_NONE, "running smarthost.password_command for" },
	[SMTP_CLIENT_AUTH_CRAM_MD5] = { "auth-cram-md5", SMTP_TIMEOUT_COMMAND, "waiting for the CRAM-MD5 challenge from" },
	[SMTP_CLIENT_AUTH_CRAM_MD5_RESPONSE] = { "auth-cram-md5-response", SMTP_TIMEOUT_COMMAND, "waiting for the reply to the CRAM-MD5 response from" },
	[SMTP_CLIENT_AUTH_XOAUTH2] = { "auth-xoauth2", SMTP_TIMEOUT_COMMAND, "waiting for the reply to AUTH XOAUTH2 from" },
	[SMTP_CLIENT_AUTH_XOAUTH2_ERROR] = { "auth-xoauth2-error", SMTP_TIMEOUT_COMMAND, "waiting for the final reply to AUTH XOAUTH2 from" },
	[SMTP_CLIENT_READY] = { "ready", SMTP_TIMEOUT_NONE, "between transactions with" },
	[SMTP_CLIENT_MAIL] = { "mail", SMTP_TIMEOUT_MAIL, "waiting for the reply to MAIL FROM from" },
	[SMTP_CLIENT_RCPT] = { "rcpt", SMTP_TIMEOUT_RCPT, "waiting for the reply to RCPT TO from" },
	[SMTP_CLIENT_DATA] = { "data", SMTP_TIMEOUT_DATA_INIT, "waiting for the reply to DATA from" },
	[SMTP_CLIENT_BODY] = { "body", SMTP_TIMEOUT_DATA_BLOCK, "sending the message body to" },
	[SMTP_CLIENT_DATA_END] = { "data-end", SMTP_TIMEOUT_DATA_END, "waiting for the reply to the end of the message from" },
	[SMTP_CLIENT_RSET] = { "rset", SMTP_TIMEOUT_COMMAND, "waiting for the reply to RSET from" },
	[SMTP_CLIENT_QUIT] = { "quit", SMTP_TIMEOUT_COMMAND, "waiting for the reply to QUIT from" },
	[SMTP_CLIENT_CLOSED] = { "closed", SMTP_TIMEOUT_NONE, "closing the session with" },
};

/* Encoder state carried from one body chunk to the next. */
struct smtp_client_body {
	size_t column;		/* octets on the current wire line, CRLF excluded */
	bool cr_pending;	/* the last input octet was a CR */
};

/* One MAIL ... final reply transaction, owned by its session. */
struct smtp_client_txn {
	struct queue_message *msg;
	bool *accepted;		/* per recipient: 2xx to RCPT, provisional until the final reply */
	size_t accepted_count;
	size_t rcpt_replied;	/* RCPT replies read so far */
	bool pipelined;
	bool mail_accepted;
	bool body_8bit;		/* send BODY=8BITMIME */
	bool smtputf8;		/* send SMTPUTF8: an envelope address is not ASCII */

	/* Set once the outcome is known, possibly before the last reply of a pipelined group. */
	bool decided;
	enum delivery_status status;
	enum smtp_failure failure;
	struct smtp_reply reply;
	char *error;

	bool empty_data;	/* 354 although nothing is to be sent: only "." follows */
	int chunk_seq;
	struct evbuffer *chunk;
	struct smtp_client_body body;
	uint64_t body_octets;
	uint64_t stored_octets;	/* body octets read from the queue */
	bool pumping;		/* smtp_client_body_pump() is running */
	bool body_queued;	/* the final dot is in the output buffer */
	bool dot_sent;		/* the output buffer has drained after the final dot */
};

struct smtp_client {
	uint64_t id;
	struct event_base *base;
	struct evdns_base *dns;
	SSL_CTX *tls_ctx;
	const struct config_smarthost *smarthost;
	const struct config_endpoint *endpoint;
	struct queue_store *qs;
	struct smtp_client_callbacks callbacks;
	void *arg;
	char *hostport;			/* "host:port", "[::1]:25" for IPv6 */

	enum smtp_client_state state;
	struct event *timer;		/* the current state's timeout */
	struct event *deferred;		/* start and finish, run from the event loop */
	struct evdns_getaddrinfo_request *dns_request;
	bool dns_pending;		/* the lookup callback has not run yet */
	bool free_pending;		/* free when the lookup callback runs */
	struct evutil_addrinfo *addrs;
	struct evutil_addrinfo *addr;	/* the address being tried */
	char *connect_errors;
	struct bufferevent *bev;
	SSL *ssl;			/* owned by bev */
	bool greeting_warned;
	struct bufferevent *probe;	/* TLS probe for a silent greeting; NULL when none */
	struct event *deadline;		/* timeouts.session */

	struct smtp_reply_parser parser;
	char *ehlo;			/* text of the last EHLO reply; NULL after HELO */
	char *password;			/* the secret, only while AUTH runs */
	size_t password_len;
	struct password_command_wait *password_wait;
	size_t auth_index;		/* into smarthost->auth_mechanisms */
	const char *auth_mechanism;
	char *auth_challenge;		/* the last 334 text during AUTH */

	struct smtp_client_txn *txn;
	int messages;			/* messages taken from next_message() */
	int delivered;			/* messages with a 2xx final reply */
	bool stopping;
	bool aborted;

	/* The first session failure; SMTP_FAILURE_NONE after a clean QUIT. */
	enum smtp_failure failure;
	char *error;
	struct smtp_reply failure_reply;
};

static uint64_t smtp_client_next_id = 1;

static void smtp_client_enter(struct smtp_client *, enum smtp_client_state);
static void smtp_client_read_cb(struct bufferevent *, void *);
static void smtp_client_write_cb(struct bufferevent *, void *);
static void smtp_client_event_cb(struct bufferevent *, short, void *);

/* --- helpers --- */

static int64_t
smtp_client_timeout_seconds(const struct smtp_client *client,
    enum smtp_client_timeout which)
{
	const struct config_timeouts *t = &client->smarthost->timeouts;

	switch (which) {
	case SMTP_TIMEOUT_CONNECT:
		return t->connect;
	case SMTP_TIMEOUT_GREETING:
		return t->greeting;
	case SMTP_TIMEOUT_COMMAND:
		return t->command;
	case SMTP_TIMEOUT_MAIL:
		return t->mail;
	case SMTP_TIMEOUT_RCPT:
		return t->rcpt;
	case SMTP_TIMEOUT_DATA_INIT:
		return t->data_init;
	case SMTP_TIMEOUT_DATA_BLOCK:
		return t->data_block;
	case SMTP_TIMEOUT_DATA_END:
		return t->data_end;
	case SMTP_TIMEOUT_NONE:
		break;
	}
	return 0;
}

static int64_t
smtp_client_state_timeout(const struct smtp_client *client)
{
	return smtp_client_timeout_seconds(client,
	    smtp_client_states[client->state].timeout);
}

static void
smtp_client_timer_arm(struct smtp_client *client, int64_t seconds)
{
	struct timeval tv = { .tv_sec = (time_t)seconds, .tv_usec = 0 };

	evtimer_del(client->timer);
	if (seconds > 0)
		evtimer_add(client->timer, &tv);
}

static void
smtp_client_timer_arm_ms(struct smtp_client *client, int64_t ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000),
	    .tv_usec = (suseconds_t)(ms % 1000) * 1000 };

	evtimer_del(client->timer);
	evtimer_add(client->timer, &tv);
}

static bool
smtp_client_is_auth_state(enum smtp_client_state state)
{
	switch (state) {
	case SMTP_CLIENT_AUTH_PLAIN:
	case SMTP_CLIENT_AUTH_LOGIN:
	case SMTP_CLIENT_AUTH_LOGIN_USERNAME:
	case SMTP_CLIENT_AUTH_LOGIN_PASSWORD:
	case SMTP_CLIENT_AUTH_CRAM_MD5:
	case SMTP_CLIENT_AUTH_CRAM_MD5_RESPONSE:
	case SMTP_CLIENT_AUTH_XOAUTH2:
	case SMTP_CLIENT_AUTH_XOAUTH2_ERROR:
		return true;
	default:
		return false;
	}
}

/*
 * Log one protocol line at debug level. This is the only place that logs
 * protocol lines, and every line sent or received passes here. Client
 * lines during AUTH keep at most "AUTH <mechanism>", because the rest is
 * a credential in base64.
 */
static void
smtp_client_log_line(struct smtp_client *client, char direction,
    const char *line, size_t len)
{
	const char *space;
	char *escaped;

	if (!log_debug_enabled())
		return;

	if (direction == 'C' && (smtp_client_is_auth_state(client->state) ||
	    (len >= 5 && strncasecmp(line, "AUTH ", 5) == 0))) {
		if (len >= 5 && strncasecmp(line, "AUTH ", 5) == 0) {
			space = memchr(line + 5, ' ', len - 5);
			if (space == NULL) {
				escaped = log_escape(line, len);
				log_debug("session=c%" PRIu64 " C: %s", client->id,
				    escaped);
				free(escaped);
				return;
			}
			escaped = log_escape(line, (size_t)(space - line));
			log_debug("session=c%" PRIu64 " C: %s <redacted>",
			    client->id, escaped);
			free(escaped);
			return;
		}
		log_debug("session=c%" PRIu64 " C: <redacted>", client->id);
		return;
	}

	escaped = log_escape(line, len);
	log_debug("session=c%" PRIu64 " %c: %s", client->id, direction, escaped);
	free(escaped);
}

/* Send LINE and CRLF. The caller wipes LINE when it held a secret. */
static void
smtp_client_write_line(struct smtp_client *client, const char *line, size_t len)
{
	smtp_client_log_line(client, 'C', line, len);
	bufferevent_write(client->bev, line, len);
	bufferevent_write(client->bev, "\r\n", 2);
}

static void RELAYQ_PRINTF(2, 3)
smtp_client_send(struct smtp_client *client, const char *fmt, ...)
{
	va_list ap;
	char *line;

	va_start(ap, fmt);
	line = xvasprintf(fmt, ap);
	va_end(ap);

	smtp_client_write_line(client, line, strlen(line));
	free(line);
}

static void
smtp_client_reply_copy(struct smtp_reply *dst, const struct smtp_reply *src)
{
	smtp_reply_clear(dst);
	if (src == NULL)
		return;
	dst->code = src->code;
	memcpy(dst->status, src->status, sizeof(dst->status));
	dst->text = xstrdup(src->text != NULL ? src->text : "");
}

/* Format REPLY on one line, escaped for a log line or an error message. */
static char *
smtp_client_reply_text(const struct smtp_reply *reply)
{
	char *formatted, *escaped;

	formatted = smtp_reply_format(reply);
	escaped = log_escape(formatted, strlen(formatted));
	free(formatted);
	return escaped;
}

/*
 * Record the session failure. The first one wins, because later ones are
 * usually its consequences. The caller then sends QUIT or drops.
 */
static void RELAYQ_PRINTF(4, 5)
smtp_client_fail(struct smtp_client *client, enum smtp_failure failure,
    const struct smtp_reply *reply, const char *fmt, ...)
{
	va_list ap;

	if (client->failure != SMTP_FAILURE_NONE)
		return;

	client->failure = failure;
	free(client->error);
	va_start(ap, fmt);
	client->error = xvasprintf(fmt, ap);
	va_end(ap);
	smtp_client_reply_copy(&client->failure_reply, reply);
}

/* Return the parameters of KEYWORD in the last EHLO reply, or NULL when it is not offered. */
static const char *
smtp_client_extension(const struct smtp_client *client, const char *keyword,
    size_t *param_len)
{
	if (client->ehlo == NULL)
		return NULL;
	return smtp_ehlo_find(client->ehlo, keyword, param_len);
}

/* --- transactions --- */

static struct smtp_client_txn *
smtp_client_txn_new(struct queue_message *msg)
{
	struct smtp_client_txn *txn = xcalloc(1, sizeof(*txn));

	txn->msg = msg;
	txn->accepted = xcalloc(msg->rcpt_count, sizeof(bool));
	return txn;
}

static void
smtp_client_txn_free(struct smtp_client_txn *txn)
{
	if (txn == NULL)
		return;
	if (txn->chunk != NULL)
		evbuffer_free(txn->chunk);
	smtp_reply_clear(&txn->reply);
	free(txn->error);
	free(txn->accepted);
	free(txn);
}

/* Fix the outcome of TXN unless it is already fixed. ERROR is taken over. */
static void
smtp_client_txn_decide(struct smtp_client_txn *txn, enum delivery_status status,
    enum smtp_failure failure, const struct smtp_reply *reply, char *error)
{
	if (txn->decided) {
		free(error);
		return;
	}
	txn->decided = true;
	txn->status = status;
	txn->failure = failure;
	smtp_client_reply_copy(&txn->reply, reply);
	txn->error = error;
}

static void
smtp_client_rcpt_set(struct queue_recipient *rcpt, enum rcpt_state state,
    const struct smtp_reply *reply, const char *error)
{
	rcpt->state = state;
	rcpt->code = reply != NULL ? reply->code : 0;
	snprintf(rcpt->status, sizeof(rcpt->status), "%s",
	    reply != NULL ? reply->status : "");
	free(rcpt->text);
	if (reply != NULL && reply->text != NULL)
		rcpt->text = xstrdup(reply->text);
	else
		rcpt->text = xstrdup(error != NULL ? error : "");
}

/*
 * Give recipients without a final reply the outcome of the whole message.
 * After TEMPFAIL or UNCERTAIN, the ones accepted at RCPT and the untried
 * ones go back to pending. After PERMFAIL all of them fail. Recipients
 * rejected at RCPT before a TEMPFAIL or UNCERTAIN keep that reply.
 */
static void
smtp_client_txn_settle_rcpts(struct smtp_client_txn *txn)
{
	struct queue_message *msg = txn->msg;
	const struct smtp_reply *reply = txn->reply.code != 0 ? &txn->reply : NULL;
	bool untried;
	size_t i;

	for (i = 0; i < msg->rcpt_count; i++) {
		untried = !txn->mail_accepted || i >= txn->rcpt_replied;
		if (txn->status == DELIVERY_PERMFAIL)
			smtp_client_rcpt_set(&msg->rcpts[i], RCPT_FAILED, reply,
			    txn->error);
		else if (untried || txn->accepted[i])
			smtp_client_rcpt_set(&msg->rcpts[i], RCPT_PENDING, reply,
			    txn->error);
	}
}

static const char *
smtp_client_status_name(enum delivery_status status)
{
	switch (status) {
	case DELIVERY_DONE:
		return "done";
	case DELIVERY_TEMPFAIL:
		return "tempfail";
	case DELIVERY_PERMFAIL:
		return "permfail";
	case DELIVERY_UNCERTAIN:
		return "uncertain";
	}
	return "unknown";
}

static void
smtp_client_txn_log(const struct smtp_client *client,
    const struct smtp_client_txn *txn)
{
	const struct queue_message *msg = txn->msg;
	char *to, *text;
	size_t i;

	if (txn->status != DELIVERY_DONE) {
		text = log_escape(txn->error != NULL ? txn->error : "",
		    txn->error != NULL ? strlen(txn->error) : 0);
		log_info("session=c%" PRIu64 " msg=%" PRId64 " result=%s "
		    "error=\"%s\"", client->id, msg->id,
		    smtp_client_status_name(txn->status), text);
		free(text);
		return;
	}

	for (i = 0; i < msg->rcpt_count; i++) {
		const struct queue_recipient *rcpt = &msg->rcpts[i];

		to = log_escape(rcpt->address, strlen(rcpt->address));
		text = log_escape(rcpt->text != NULL ? rcpt->text : "",
		    rcpt->text != NULL ? strlen(rcpt->text) : 0);
		log_info("session=c%" PRIu64 " msg=%" PRId64 " to=<%s> state=%s "
		    "code=%d status=%s reply=\"%s\"", client->id, msg->id, to,
		    rcpt_state_name(rcpt->state), rcpt->code,
		    rcpt->status[0] != '\0' ? rcpt->status : "-", text);
		free(to);
		free(text);
	}
}

/* Report the transaction in flight through message_done() and forget it. */
static void
smtp_client_txn_finish(struct smtp_client *client)
{
	struct smtp_client_txn *txn = client->txn;
	struct delivery_result result;

	if (txn == NULL)
		return;
	client->txn = NULL;

	if (txn->status != DELIVERY_DONE)
		smtp_client_txn_settle_rcpts(txn);
	smtp_client_txn_log(client, txn);

	memset(&result, 0, sizeof(result));
	result.status = txn->status;
	result.failure = txn->failure;
	result.reply = txn->reply;
	result.error = txn->error;
	result.host = client->hostport;
	client->callbacks.message_done(client->arg, client, txn->msg, &result);

	smtp_client_txn_free(txn);
}

/* --- session end --- */

static void
smtp_client_free(struct smtp_client *client)
{
	if (client->bev != NULL)
		bufferevent_free(client->bev);
	if (client->addrs != NULL)
		evutil_freeaddrinfo(client->addrs);
	if (client->probe != NULL)
		bufferevent_free(client->probe);
	secret_free(client->password, client->password_len);
	password_command_cancel(client->password_wait);
	free(client->auth_challenge);
	event_free(client->timer);
	event_free(client->deadline);
	event_free(client->deferred);
	smtp_reply_parser_clear(&client->parser);
	smtp_reply_clear(&client->failure_reply);
	smtp_client_txn_free(client->txn);
	free(client->connect_errors);
	free(client->ehlo);
	free(client->error);
	free(client->hostport);
	free(client);
}

/*
 * End the connection now. The callbacks and the free run later from the
 * event loop (smtp_client_deferred_cb), so the client and its bufferevent
 * stay valid until every caller up the stack has returned.
 */
static void
smtp_client_drop(struct smtp_client *client)
{
	struct evdns_getaddrinfo_request *req;

	if (client->state == SMTP_CLIENT_CLOSED)
		return;
	client->state = SMTP_CLIENT_CLOSED;
	evtimer_del(client->timer);
	evtimer_del(client->deadline);
	password_command_cancel(client->password_wait);
	client->password_wait = NULL;
	if (client->probe != NULL) {
		bufferevent_free(client->probe);
		client->probe = NULL;
	}

	if (client->bev != NULL) {
		bufferevent_disable(client->bev, EV_READ | EV_WRITE);
		bufferevent_setcb(client->bev, NULL, NULL, NULL, NULL);
	}

	/* libevent runs the lookup callback later with EVUTIL_EAI_CANCEL. */
	if (client->dns_request != NULL) {
		req = client->dns_request;
		client->dns_request = NULL;
		evdns_getaddrinfo_cancel(req);
	}

	event_active(client->deferred, EV_TIMEOUT, 0);
}

static void
smtp_client_finish(struct smtp_client *client)
{
	struct smtp_client_txn *txn = client->txn;
	enum smtp_failure failure;
	char *error, *reason;

	if (txn != NULL && !txn->decided) {
		failure = client->failure != SMTP_FAILURE_NONE ?
		    client->failure : SMTP_FAILURE_CONNECT;
		if (client->error != NULL)
			reason = client->error;
		else if (client->aborted)
			reason = "the session was aborted";
		else
			reason = "the session was stopped";
		if (txn->dot_sent) {
			error = xasprintf("%s; the smart host may have "
			    "accepted the message", reason);
			smtp_client_txn_decide(txn, DELIVERY_UNCERTAIN, failure,
			    NULL, error);
		} else {
			error = xasprintf("delivery interrupted: %s", reason);
			smtp_client_txn_decide(txn, DELIVERY_TEMPFAIL, failure,
			    &client->failure_reply, error);
		}
	}
	smtp_client_txn_finish(client);

	if (client->failure == SMTP_FAILURE_NONE)
		log_info("session=c%" PRIu64 " host=%s closed messages=%d "
		    "delivered=%d", client->id, client->hostport,
		    client->messages, client->delivered);
	else {
		reason = log_escape(client->error, strlen(client->error));
		log_warning("session=c%" PRIu64 " host=%s failed messages=%d "
		    "delivered=%d error=\"%s\"", client->id, client->hostport,
		    client->messages, client->delivered, reason);
		free(reason);
	}

	client->callbacks.closed(client->arg, client, client->failure,
	    client->error, client->failure_reply.code != 0 ?
	    &client->failure_reply : NULL, client->delivered);

	/* The cancelled lookup still calls back with this client as its argument. */
	if (client->dns_pending) {
		client->free_pending = true;
		return;
	}
	smtp_client_free(client);
}

static void
smtp_client_deferred_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *client = arg;

	(void)fd;
	(void)what;
	if (client->state == SMTP_CLIENT_INIT)
		smtp_client_enter(client, SMTP_CLIENT_RESOLVE);
	else if (client->state == SMTP_CLIENT_CLOSED)
		smtp_client_finish(client);
}

/* --- name lookup and connect --- */

static void
smtp_client_resolved_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct smtp_client *client = arg;

	client->dns_pending = false;
	client->dns_request = NULL;

	if (client->state != SMTP_CLIENT_RESOLVE) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		if (client->free_pending)
			smtp_client_free(client);
		return;
	}

	if (result != 0) {
		smtp_client_fail(client, SMTP_FAILURE_CONNECT, NULL,
		    "cannot resolve the smart host %s: %s", client->hostport,
		    evutil_gai_strerror(result));
		smtp_client_drop(client);
		return;
	}

	client->addrs = res;
	client->addr = res;
	smtp_client_enter(client, SMTP_CLIENT_CONNECT);
}

static void
smtp_client_resolve(struct smtp_client *client)
{
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;
	char port[16];

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	snprintf(port, sizeof(port), "%d", client->endpoint->port);

	/* The callback may run before evdns_getaddrinfo() returns (numeric host). */
	client->dns_pending = true;
	req = evdns_getaddrinfo(client->dns, client->endpoint->host, port,
	    &hints, smtp_client_resolved_cb, client);
	if (client->dns_pending)
		client->dns_request = req;
}

/* "host:port", plus the address when HOST is a name. */
static char *
smtp_client_addr_text(const struct smtp_client *client)
{
	const struct sockaddr *sa = client->addr->ai_addr;
	char addr[INET6_ADDRSTRLEN];
	const void *raw;

	if (sa->sa_family == AF_INET6)
		raw = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	else
		raw = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	if (evutil_inet_ntop(sa->sa_family, raw, addr, sizeof(addr)) == NULL)
		snprintf(addr, sizeof(addr), "?");

	if (strcmp(addr, client->endpoint->host) == 0)
		return xstrdup(client->hostport);
	return xasprintf("%s (%s)", client->hostport, addr);
}

/* Note why the current address failed and go on with the next one. */
static void
smtp_client_connect_failed(struct smtp_client *client, const char *reason)
{
	char *where, *joined;

	where = smtp_client_addr_text(client);
	log_info("session=c%" PRIu64 " connect to %s failed: %s", client->id,
	    where, reason);
	if (client->connect_errors == NULL)
		joined = xasprintf("connect to %s failed: %s", where, reason);
	else
		joined = xasprintf("%s; connect to %s failed: %s",
		    client->connect_errors, where, reason);
	free(client->connect_errors);
	client->connect_errors = joined;
	free(where);

	if (client->bev != NULL) {
		bufferevent_free(client->bev);
		client->bev = NULL;
	}
	client->addr = client->addr->ai_next;
	smtp_client_enter(client, SMTP_CLIENT_CONNECT);
}

static void
smtp_client_connect(struct smtp_client *client)
{
	struct evutil_addrinfo *ai = client->addr;
	int error;

	if (ai == NULL) {
		smtp_client_fail(client, SMTP_FAILURE_CONNECT, NULL, "%s",
		    client->connect_errors != NULL ? client->connect_errors :
		    "the smart host name has no address");
		smtp_client_drop(client);
		return;
	}

	client->bev = bufferevent_socket_new(client->base, -1,
	    BEV_OPT_CLOSE_ON_FREE);
	if (client->bev == NULL) {
		smtp_client_fail(client, SMTP_FAILURE_INTERNAL, NULL,
		    "cannot create a connection to %s: out of resources",
		    client->hostport);
		smtp_client_drop(client);
		return;
	}
	bufferevent_setcb(client->bev, smtp_client_read_cb,
	    smtp_client_write_cb, smtp_client_event_cb, client);
	bufferevent_enable(client->bev, EV_READ | EV_WRITE);

	if (bufferevent_socket_connect(client->bev, ai->ai_addr,
	    (int)ai->ai_addrlen) != 0) {
		error = EVUTIL_SOCKET_ERROR();
		smtp_client_connect_failed(client,
		    evutil_socket_error_to_string(error));
	}
}

static void
smtp_client_connected(struct smtp_client *client)
{
	char *where = smtp_client_addr_text(client);
	int one = 1;

	log_info("session=c%" PRIu64 " connected to %s", client->id, where);
	free(where);

	/*
	 * Commands and the final dot are small writes that wait for a reply;
	 * Nagle's algorithm would hold each one for up to 40 ms.
	 */
	setsockopt(bufferevent_getfd(client->bev), IPPROTO_TCP, TCP_NODELAY,
	    (const char *)&one, sizeof(one));

	if (client->endpoint->tls == TLS_MODE_IMPLICIT)
		smtp_client_enter(client, SMTP_CLIENT_TLS_HANDSHAKE);
	else
		smtp_client_enter(client, SMTP_CLIENT_GREETING);
}

/* --- TLS --- */

static SSL *
smtp_client_ssl_new(struct smtp_client *client)
{
	char *error = NULL;
	SSL *ssl;

	if (client->tls_ctx == NULL) {
		smtp_client_fail(client, SMTP_FAILURE_INTERNAL, NULL,
		    "no TLS context for %s", client->hostport);
		return NULL;
	}
	ssl = tls_client_ssl_new(client->tls_ctx, client->endpoint->host,
	    client->smarthost->tls_verify, client->smarthost->tls_fingerprints,
	    client->smarthost->tls_fingerprint_count, &error);
	if (ssl == NULL) {
		smtp_client_fail(client, SMTP_FAILURE_TLS, NULL, "%s", error);
		free(error);
	}
	return ssl;
}

static void
smtp_client_tls_attach(struct smtp_client *client, struct bufferevent *bev,
    SSL *ssl)
{
	client->bev = bev;
	client->ssl = ssl;
	/* SMTP replies delimit themselves, so a missing close_notify after QUIT is harmless. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	bufferevent_setcb(bev, smtp_client_read_cb, smtp_client_write_cb,
	    smtp_client_event_cb, client);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* Implicit TLS: hand the connected socket to an OpenSSL bufferevent. */
static void
smtp_client_tls_start_implicit(struct smtp_client *client)
{
	struct bufferevent *plain = client->bev, *bev;
	evutil_socket_t fd;
	SSL *ssl;

	ssl = smtp_client_ssl_new(client);
	if (ssl == NULL) {
		smtp_client_drop(client);
		return;
	}

	/* Detach the socket so freeing the plain bufferevent does not close it. */
	fd = bufferevent_getfd(plain);
	bufferevent_disable(plain, EV_READ | EV_WRITE);
	bufferevent_setfd(plain, -1);
	bufferevent_free(plain);
	client->bev = NULL;

	bev = bufferevent_openssl_socket_new(client->base, fd, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		SSL_free(ssl);
		evutil_closesocket(fd);
		smtp_client_fail(client, SMTP_FAILURE_INTERNAL, NULL,
		    "cannot start TLS with %s: out of resources",
		    client->hostport);
		smtp_client_drop(client);
		return;
	}
	smtp_client_tls_attach(client, bev, ssl);
}

/* STARTTLS: wrap the plain bufferevent in an OpenSSL filter. */
static void
smtp_client_tls_start_filter(struct smtp_client *client)
{
	struct bufferevent *plain = client->bev, *bev;
	SSL *ssl;

	ssl = smtp_client_ssl_new(client);
	if (ssl == NULL) {
		smtp_client_drop(client);
		return;
	}

	/*
	 * Without a high watermark on the socket side the filter would move
	 * the whole body into the socket's buffer at once.
	 */
	bufferevent_setwatermark(plain, EV_WRITE, 0, QUEUE_CHUNK_SIZE);

	bev = bufferevent_openssl_filter_new(client->base, plain, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		/*
		 * NOTE: whether the filter took over SSL and the plain
		 * bufferevent on this failure differs between libevent
		 * versions, so both are left alone (leaked) here.
		 */
		client->bev = NULL;
		smtp_client_fail(client, SMTP_FAILURE_INTERNAL, NULL,
		    "cannot start TLS with %s: out of resources",
		    client->hostport);
		smtp_client_drop(client);
		return;
	}
	smtp_client_tls_attach(client, bev, ssl);
}

/* Describe why TLS failed on the current bufferevent. */
static char *
smtp_client_tls_reason(struct smtp_client *client, short what)
{
	unsigned long codes[SMTP_CLIENT_TLS_ERRORS_MAX], code;
	size_t count = 0;
	char *reason;
	int error;

	while ((code = bufferevent_get_openssl_error(client->bev)) != 0) {
		if (count < SMTP_CLIENT_TLS_ERRORS_MAX)
			codes[count++] = code;
	}
	reason = tls_error_describe_codes(client->ssl, codes, count);
	if (reason != NULL)
		return reason;

	error = EVUTIL_SOCKET_ERROR();
	if ((what & BEV_EVENT_EOF) != 0 || error == 0)
		return xstrdup("the server closed the connection");
	return xstrdup(evutil_socket_error_to_string(error));
}

static void
smtp_client_tls_failed(struct smtp_client *client, short what)
{
	char *reason = smtp_client_tls_reason(client, what);
	int port = client->endpoint->port;

	/* The "220 " of a plain-text greeting arrived where a TLS record was due. */
	if (client->state == SMTP_CLIENT_TLS_HANDSHAKE &&
	    tls_peer_sent_plaintext(client->ssl))
		smtp_client_fail(client, SMTP_FAILURE_CONFIG, NULL,
		    "smarthost port %d answered in plain text instead of a TLS "
		    "handshake: use tls: starttls, not implicit (smart host %s)",
		    port, client->hostport);
	else if (client->state == SMTP_CLIENT_TLS_HANDSHAKE)
		smtp_client_fail(client, SMTP_FAILURE_TLS, NULL,
		    "TLS handshake with %s failed: %s (tls: implicit; if port "
		    "%d expects plain SMTP or STARTTLS, set tls: starttls)",
		    client->hostport, reason, port);
	else
		smtp_client_fail(client, SMTP_FAILURE_TLS, NULL,
		    "TLS handshake after STARTTLS with %s failed: %s",
		    client->hostport, reason);
	free(reason);
	smtp_client_drop(client);
}

static void
smtp_client_tls_done(struct smtp_client *client)
{
	log_info("session=c%" PRIu64 " TLS established with %s: %s %s, "
	    "certificate %s", client->id, client->hostport,
	    SSL_get_version(client->ssl), SSL_get_cipher_name(client->ssl),
	    client->smarthost->tls_fingerprint_count > 0 ? "pinned" :
	    client->smarthost->tls_verify ? "verified" : "not verified");

	if (client->state == SMTP_CLIENT_TLS_HANDSHAKE) {
		smtp_client_enter(client, SMTP_CLIENT_GREETING);
		return;
	}

	/* RFC 3207 section 4.2: forget what the server offered before TLS. */
	free(client->ehlo);
	client->ehlo = NULL;
	smtp_client_enter(client, SMTP_CLIENT_EHLO_AFTER_TLS);
}

/* --- AUTH --- */

static void
smtp_client_password_forget(struct smtp_client *client)
{
	secret_free(client->password, client->password_len);
	client->password = NULL;
	client->password_len = 0;
}

/* Send PREFIX followed by the base64 RESPONSE, which carries the secret, then wipe both. */
static void
smtp_client_send_response(struct smtp_client *client, const char *prefix,
    char *response)
{
	char *line = xasprintf("%s%s", prefix, response);
	size_t len = strlen(line);

	smtp_client_write_line(client, line, len);
	secret_free(line, len);
	secret_free(response, strlen(response));
}

/*
 * AUTH cannot happen: a configuration problem (or a rejected password)
 * that stops the whole relay until it is fixed. Nothing is sent
 * unauthenticated: the session ends with QUIT before MAIL.
 */
static void RELAYQ_PRINTF(2, 3)
smtp_client_auth_stop(struct smtp_client *client, const char *fmt, ...)
{
	va_list ap;
	char *error;

	va_start(ap, fmt);
	error = xvasprintf(fmt, ap);
	va_end(ap);
	smtp_client_password_forget(client);
	smtp_client_fail(client, SMTP_FAILURE_AUTH, NULL, "%s", error);
	free(error);
	smtp_client_enter(client, SMTP_CLIENT_QUIT);
}

/* Enter the first state of the mechanism at client->auth_index. */
static void
smtp_client_auth_begin(struct smtp_client *client)
{
	enum auth_mechanism mechanism =
	    client->smarthost->auth_mechanisms[client->auth_index];

	client->auth_mechanism = auth_mechanism_name(mechanism);
	switch (mechanism) {
	case AUTH_MECHANISM_PLAIN:
		smtp_client_enter(client, SMTP_CLIENT_AUTH_PLAIN);
		break;
	case AUTH_MECHANISM_LOGIN:
		smtp_client_enter(client, SMTP_CLIENT_AUTH_LOGIN);
		break;
	case AUTH_MECHANISM_CRAM_MD5:
		smtp_client_enter(client, SMTP_CLIENT_AUTH_CRAM_MD5);
		break;
	case AUTH_MECHANISM_XOAUTH2:
		smtp_client_enter(client, SMTP_CLIENT_AUTH_XOAUTH2);
		break;
	}
}

static void
smtp_client_credentials_cb(void *arg, const char *secret, size_t len,
    const char *error)
{
	struct smtp_client *client = arg;

	client->password_wait = NULL;
	if (client->state != SMTP_CLIENT_CREDENTIALS)
		return;
	if (secret == NULL) {
		smtp_client_auth_stop(client, "%s; mail stays queued until "
		    "smarthost.password_command works", error);
		return;
	}
	client->password = xstrndup(secret, len);
	client->password_len = len;
	smtp_client_auth_begin(client);
}

/*
 * Get the secret, read at each session so that a changed password
 * applies without a restart: at once from password_file, password_env
 * or the cache of password_command, else by running the command.
 */
static void
smtp_client_credentials(struct smtp_client *client)
{
	const struct config_smarthost *sh = client->smarthost;
	char *error = NULL;
	int rc;

	if (sh->password_command != NULL) {
		if (password_command_cached(sh->password_command,
		    &client->password, &client->password_len) == 1) {
			smtp_client_auth_begin(client);
			return;
		}
		smtp_client_enter(client, SMTP_CLIENT_CREDENTIALS);
		return;
	}

	if (sh->password_file != NULL)
		rc = secret_check_file_mode(sh->password_file, &error) == -1 ? -1 :
		    secret_read_file(sh->password_file, &client->password,
		    &client->password_len, &error);
	else
		rc = secret_read_env(sh->password_env, &client->password,
		    &client->password_len, &error);
	if (rc == -1) {
		smtp_client_auth_stop(client, "%s; mail stays queued until it is "
		    "fixed", error);
		free(error);
		return;
	}
	smtp_client_auth_begin(client);
}

/* smarthost.auth_mechanisms as "PLAIN, LOGIN", for messages. */
static char *
smtp_client_mechanism_list(const struct config_smarthost *sh)
{
	char *list = xstrdup(""), *joined;
	size_t i;

	for (i = 0; i < sh->auth_mechanism_count; i++) {
		joined = xasprintf("%s%s%s", list, i == 0 ? "" : ", ",
		    auth_mechanism_name(sh->auth_mechanisms[i]));
		free(list);
		list = joined;
	}
	return list;
}

/*
 * Choose the first mechanism of smarthost.auth_mechanisms, from
 * client->auth_index on, that the last EHLO reply offers, then get the
 * secret and start it.
 */
static void
smtp_client_auth_start(struct smtp_client *client)
{
	const struct config_smarthost *sh = client->smarthost;
	const char *param;
	char *offered, *wanted;
	size_t len = 0;
	int index;

	/* Opportunistic TLS that did not happen must not expose the password. */
	if (client->ssl == NULL && client->endpoint->tls != TLS_MODE_NONE) {
		smtp_client_auth_stop(client, "smart host %s does not offer "
		    "STARTTLS, and the password of smarthost.username is never "
		    "sent without TLS unless tls: none is set; mail stays queued",
		    client->hostport);
		return;
	}

	param = smtp_client_extension(client, "AUTH", &len);
	if (param == NULL) {
		smtp_client_auth_stop(client, "smart host %s does not offer AUTH, "
		    "but smarthost.username is set; mail stays queued and nothing "
		    "is sent unauthenticated (is port %d the submission port?)",
		    client->hostport, client->endpoint->port);
		return;
	}

	index = sasl_choose(sh->auth_mechanisms, sh->auth_mechanism_count,
	    client->auth_index, param, len);
	if (index == -1) {
		offered = log_escape(param, len);
		wanted = smtp_client_mechanism_list(sh);
		smtp_client_auth_stop(client, "smart host %s offers AUTH %s, and "
		    "no mechanism of smarthost.auth_mechanisms (%s) is left to "
		    "try; mail stays queued", client->hostport, offered, wanted);
		free(offered);
		free(wanted);
		return;
	}
	client->auth_index = (size_t)index;

	/* After a 504 the secret read for the refused mechanism is used again. */
	if (client->password != NULL) {
		smtp_client_auth_begin(client);
		return;
	}
	smtp_client_credentials(client);
}

static void
smtp_client_auth_failed(struct smtp_client *client,
    const struct smtp_reply *reply)
{
	char *text = smtp_client_reply_text(reply), *detail = NULL;
	const char *user = client->smarthost->username;
	unsigned char *decoded;
	size_t len = 0;

	smtp_client_password_forget(client);

	/* 454 and other 4xx: the server cannot check credentials now (RFC 4954 section 6). */
	if (smtp_reply_class(reply->code) == 4) {
		smtp_client_fail(client, SMTP_FAILURE_REPLY, reply,
		    "smart host %s could not check AUTH %s for user %s now: %s",
		    client->hostport, client->auth_mechanism, user, text);
		free(text);
		smtp_client_enter(client, SMTP_CLIENT_QUIT);
		return;
	}

	/* The XOAUTH2 error challenge is a base64 JSON status without secrets. */
	if (client->auth_challenge != NULL &&
	    client->state == SMTP_CLIENT_AUTH_XOAUTH2_ERROR &&
	    (decoded = sasl_base64_decode(client->auth_challenge, &len)) != NULL) {
		char *escaped = log_escape((const char *)decoded, len);

		detail = xasprintf(" (token error %s)", escaped);
		free(escaped);
		free(decoded);
	}

	/* A token the server refused must not be handed out again from the cache. */
	if (client->smarthost->password_command != NULL)
		password_command_forget();
	smtp_client_fail(client, SMTP_FAILURE_AUTH, reply,
	    "smart host %s rejected AUTH %s for user %s: %s%s; check the "
	    "password of smarthost.username; mail stays queued", client->hostport,
	    client->auth_mechanism, user, text, detail != NULL ? detail : "");
	free(detail);
	free(text);
	smtp_client_enter(client, SMTP_CLIENT_QUIT);
}

/* The first reply to a mechanism: 504 or 534 means try the next one. */
static bool
smtp_client_auth_refused(struct smtp_client *client,
    const struct smtp_reply *reply)
{
	if (reply->code != 504 && reply->code != 534)
		return false;
	switch (client->state) {
	case SMTP_CLIENT_AUTH_PLAIN:
	case SMTP_CLIENT_AUTH_LOGIN:
	case SMTP_CLIENT_AUTH_CRAM_MD5:
	case SMTP_CLIENT_AUTH_XOAUTH2:
		break;
	default:
		return false;
	}
	log_info("session=c%" PRIu64 " AUTH %s got %d, trying the next "
	    "mechanism", client->id, client->auth_mechanism, reply->code);
	client->auth_index++;
	smtp_client_auth_start(client);
	return true;
}

/* A 334 continues the exchange in the states that expect one. */
static bool
smtp_client_auth_continue(struct smtp_client *client,
    const struct smtp_reply *reply)
{
	if (reply->code != 334)
		return false;
	free(client->auth_challenge);
	client->auth_challenge = xstrdup(reply->text != NULL ? reply->text : "");

	switch (client->state) {
	case SMTP_CLIENT_AUTH_LOGIN:
		smtp_client_enter(client, SMTP_CLIENT_AUTH_LOGIN_USERNAME);
		return true;
	case SMTP_CLIENT_AUTH_LOGIN_USERNAME:
		smtp_client_enter(client, SMTP_CLIENT_AUTH_LOGIN_PASSWORD);
		return true;
	case SMTP_CLIENT_AUTH_CRAM_MD5:
		smtp_client_enter(client, SMTP_CLIENT_AUTH_CRAM_MD5_RESPONSE);
		return true;
	case SMTP_CLIENT_AUTH_XOAUTH2:
		smtp_client_enter(client, SMTP_CLIENT_AUTH_XOAUTH2_ERROR);
		return true;
	default:
		return false;
	}
}

static void
smtp_client_handle_auth(struct smtp_client *client,
    const struct smtp_reply *reply)
{
	if (smtp_client_auth_continue(client, reply) ||
	    smtp_client_auth_refused(client, reply))
		return;

	/* 235 counts only after the last step of an exchange. */
	if (reply->code != 235 || client->state == SMTP_CLIENT_AUTH_LOGIN ||
	    client->state == SMTP_CLIENT_AUTH_LOGIN_USERNAME ||
	    client->state == SMTP_CLIENT_AUTH_CRAM_MD5 ||
	    client->state == SMTP_CLIENT_AUTH_XOAUTH2_ERROR) {
		smtp_client_auth_failed(client, reply);
		return;
	}

	smtp_client_password_forget(client);
	log_info("session=c%" PRIu64 " authenticated to %s as %s with AUTH %s",
	    client->id, client->hostport, client->smarthost->username,
	    client->auth_mechanism);
	smtp_client_enter(client, SMTP_CLIENT_READY);
}

/* Send the command or response of an AUTH state. */
static void
smtp_client_auth_send(struct smtp_client *client)
{
	const char *user = client->smarthost->username;
	char *response;

	switch (client->state) {
	case SMTP_CLIENT_AUTH_PLAIN:
		smtp_client_send_response(client, "AUTH PLAIN ",
		    sasl_plain_response(user, client->password,
		    client->password_len));
		break;
	case SMTP_CLIENT_AUTH_LOGIN:
		smtp_client_send(client, "AUTH LOGIN");
		break;
	case SMTP_CLIENT_AUTH_LOGIN_USERNAME:
		smtp_client_send_response(client, "", sasl_base64(user,
		    strlen(user)));
		break;
	case SMTP_CLIENT_AUTH_LOGIN_PASSWORD:
		smtp_client_send_response(client, "", sasl_base64(client->password,
		    client->password_len));
		break;
	case SMTP_CLIENT_AUTH_CRAM_MD5:
		smtp_client_send(client, "AUTH CRAM-MD5");
		break;
	case SMTP_CLIENT_AUTH_CRAM_MD5_RESPONSE:
		response = sasl_cram_md5_response(user, client->password,
		    client->password_len, client->auth_challenge);
		if (response == NULL) {
			smtp_client_fail(client, SMTP_FAILURE_PROTOCOL, NULL,
			    "smart host %s sent an invalid CRAM-MD5 challenge",
			    client->hostport);
			smtp_client_drop(client);
			return;
		}
		smtp_client_send_response(client, "", response);
		break;
	case SMTP_CLIENT_AUTH_XOAUTH2:
		smtp_client_send_response(client, "AUTH XOAUTH2 ",
		    sasl_xoauth2_response(user, client->password,
		    client->password_len));
		break;
	case SMTP_CLIENT_AUTH_XOAUTH2_ERROR:
		/* RFC 7628 section 3.2.3: an empty response ends the failed exchange. */
		smtp_client_write_line(client, "", 0);
		break;
	default:
		break;
	}
}

static void
smtp_client_credentials_start(struct smtp_client *client)
{
	char *error = NULL;

	client->password_wait = password_command_run(client->base,
	    client->smarthost->password_command, smtp_client_credentials_cb,
	    client, &error);
	if (client->password_wait == NULL) {
		smtp_client_auth_stop(client, "%s", error);
		free(error);
	}
}

/* --- TLS mode probe --- */

/*
 * A port that waits for a TLS ClientHello sends no greeting. After
 * SMTP_CLIENT_GREETING_HINT seconds of silence a second connection to
 * the same address tries a TLS handshake without verification. When the
 * handshake completes, the port expects implicit TLS, so the session
 * ends with a configuration error instead of a greeting timeout minutes
 * later.
 */
static void
smtp_client_probe_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_client *client = arg;

	(void)bev;
	bufferevent_free(client->probe);
	client->probe = NULL;
	if ((what & BEV_EVENT_CONNECTED) == 0) {
		log_debug("session=c%" PRIu64 " TLS probe of %s failed: the port "
		    "does not answer a TLS handshake either", client->id,
		    client->hostport);
		return;
	}
	if (client->state != SMTP_CLIENT_GREETING)
		return;

	smtp_client_fail(client, SMTP_FAILURE_CONFIG, NULL,
	    "smarthost port %d sent no greeting within %ds but answers a TLS "
	    "handshake: use tls: implicit, not %s (smart host %s)",
	    client->endpoint->port, SMTP_CLIENT_GREETING_HINT,
	    tls_mode_name(client->endpoint->tls), client->hostport);
	smtp_client_drop(client);
}

static void
smtp_client_probe_start(struct smtp_client *client)
{
	struct evutil_addrinfo *ai = client->addr;
	char *error = NULL;
	SSL *ssl;

	if (client->tls_ctx == NULL && client->callbacks.probe_tls_ctx != NULL)
		client->tls_ctx = client->callbacks.probe_tls_ctx(client->arg, client);
	if (client->tls_ctx == NULL || ai == NULL || client->probe != NULL)
		return;
	ssl = tls_client_ssl_new(client->tls_ctx, client->endpoint->host, false,
	    NULL, 0, &error);
	if (ssl == NULL) {
		free(error);
		return;
	}
	client->probe = bufferevent_openssl_socket_new(client->base, -1, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (client->probe == NULL) {
		SSL_free(ssl);
		return;
	}
	bufferevent_setcb(client->probe, NULL, NULL, smtp_client_probe_event_cb,
	    client);
	if (bufferevent_socket_connect(client->probe, ai->ai_addr,
	    (int)ai->ai_addrlen) != 0) {
		bufferevent_free(client->probe);
		client->probe = NULL;
	}
}

/* --- the message body --- */

static void
smtp_client_body_put(struct evbuffer *out, unsigned char *stage, size_t *used,
    const char *bytes, size_t len)
{
	memcpy(stage + *used, bytes, len);
	*used += len;
	/* Callers add at most 2 octets at a time, so flushing 8 short of the end cannot overflow. */
	if (*used > SMTP_CLIENT_STAGE_SIZE - 8) {
		evbuffer_add(out, stage, *used);
		*used = 0;
	}
}

/* Encode LEN octets of stored body into OUT by the rules at the top of this file. */
static void
smtp_client_body_encode(struct smtp_client_body *body, const unsigned char *in,
    size_t len, struct evbuffer *out)
{
	unsigned char stage[SMTP_CLIENT_STAGE_SIZE];
	size_t used = 0, i;
	char c;

	for (i = 0; i < len; i++) {
		c = (char)in[i];

		if (body->cr_pending) {
			body->cr_pending = false;
			smtp_client_body_put(out, stage, &used, "\r\n", 2);
			body->column = 0;
			if (c == '\n')
				continue;
		}
		if (c == '\r') {
			body->cr_pending = true;
			continue;
		}
		if (c == '\n') {
			smtp_client_body_put(out, stage, &used, "\r\n", 2);
			body->column = 0;
			continue;
		}

		if (body->column == SMTP_CLIENT_LINE_MAX) {
			smtp_client_body_put(out, stage, &used, "\r\n", 2);
			body->column = 0;
		}
		if (body->column == 0 && c == '.') {
			smtp_client_body_put(out, stage, &used, ".", 1);
			body->column++;
		}
		smtp_client_body_put(out, stage, &used, &c, 1);
		body->column++;
	}

	if (used > 0)
		evbuffer_add(out, stage, used);
}

/* End the body: close an unterminated last line, then the lone dot. */
static void
smtp_client_body_finish(struct smtp_client_body *body, struct evbuffer *out)
{
	if (body->cr_pending || body->column > 0)
		evbuffer_add(out, "\r\n", 2);
	body->cr_pending = false;
	body->column = 0;
	evbuffer_add(out, ".\r\n", 3);
}

/* Move STORED into OUT, encoded, one contiguous extent at a time. */
static void
smtp_client_body_encode_buffer(struct smtp_client_body *body,
    struct evbuffer *stored, struct evbuffer *out)
{
	struct evbuffer_iovec vec[8];
	int n, i;

	while (evbuffer_get_length(stored) > 0) {
		n = evbuffer_peek(stored, -1, NULL, vec, 8);
		if (n > 8)
			n = 8;
		for (i = 0; i < n; i++) {
			smtp_client_body_encode(body, vec[i].iov_base,
			    vec[i].iov_len, out);
			evbuffer_drain(stored, vec[i].iov_len);
		}
	}
}

/*
 * Queue body chunks until about one chunk is buffered. The write callback
 * calls again when the output drains below QUEUE_CHUNK_SIZE, so memory
 * does not grow with the message size.
 */
static void
smtp_client_body_pump(struct smtp_client *client)
{
	struct smtp_client_txn *txn = client->txn;
	struct evbuffer *out = bufferevent_get_output(client->bev);
	const char *reason;
	char *error = NULL;
	size_t before;
	int r;

	/*
	 * An OpenSSL filter may write, and run the write callback, from
	 * inside evbuffer_add(); the outer loop below already refills.
	 */
	if (txn->pumping)
		return;
	txn->pumping = true;

	while (!txn->body_queued && evbuffer_get_length(out) < QUEUE_CHUNK_SIZE) {
		r = queue_store_chunk_read(client->qs, txn->msg->id,
		    txn->chunk_seq, txn->chunk, &error);
		/* A chunk lost since the check before MAIL would look like the end of the body. */
		if (r == 0 && txn->stored_octets != txn->msg->size) {
			error = xasprintf("the body ends after %" PRIu64 " of %"
			    PRIu64 " bytes (chunk %d is missing)", txn->stored_octets,
			    txn->msg->size, txn->chunk_seq);
			r = -1;
		}
		if (r == -1) {
			/* SMTP cannot cancel DATA, so only dropping the connection avoids a truncated delivery. */
			reason = error != NULL ? error : "unknown error";
			smtp_client_txn_decide(txn, DELIVERY_TEMPFAIL,
			    SMTP_FAILURE_INTERNAL, NULL, xasprintf("cannot "
			    "read the message body: %s", reason));
			smtp_client_fail(client, SMTP_FAILURE_INTERNAL, NULL,
			    "cannot read the body of message %" PRId64 ": %s",
			    txn->msg->id, reason);
			free(error);
			txn->pumping = false;
			smtp_client_drop(client);
			return;
		}

		before = evbuffer_get_length(out);
		if (r == 0) {
			smtp_client_body_finish(&txn->body, out);
			txn->body_queued = true;
		} else {
			txn->chunk_seq++;
			txn->stored_octets += evbuffer_get_length(txn->chunk);
			smtp_client_body_encode_buffer(&txn->body, txn->chunk, out);
		}
		txn->body_octets += evbuffer_get_length(out) - before;
	}
	txn->pumping = false;

	if (txn->body_queued) {
		if (log_debug_enabled())
			log_debug("session=c%" PRIu64 " C: <message body, %" PRIu64
			    " octets with the final dot>", client->id,
			    txn->body_octets);
		/* From now on the write callback fires only on an empty buffer, once the dot has left. */
		bufferevent_setwatermark(client->bev, EV_WRITE, 0, 0);

		/* A filter that wrote everything synchronously runs no write callback later. */
		if (evbuffer_get_length(out) == 0) {
			smtp_client_enter(client, SMTP_CLIENT_DATA_END);
			return;
		}
	}
	smtp_client_timer_arm(client, smtp_client_state_timeout(client));
}

static void
smtp_client_body_start(struct smtp_client *client)
{
	struct smtp_client_txn *txn = client->txn;

	txn->chunk = evbuffer_new();
	if (txn->chunk == NULL) {
		smtp_client_txn_decide(txn, DELIVERY_TEMPFAIL,
		    SMTP_FAILURE_INTERNAL, NULL, xstrdup("out of memory"));
		smtp_client_fail(client, SMTP_FAILURE_INTERNAL, NULL,
		    "out of memory sending message %" PRId64, txn->msg->id);
		smtp_client_drop(client);
		return;
	}
	bufferevent_setwatermark(client->bev, EV_WRITE, QUEUE_CHUNK_SIZE, 0);
	smtp_client_body_pump(client);
}

/* --- the transaction commands --- */

static void
smtp_client_send_mail(struct smtp_client *client)
{
	struct smtp_client_txn *txn = client->txn;
	struct queue_message *msg = txn->msg;
	size_t i;

	char size[32] = "";

	txn->pipelined = smtp_client_extension(client, "PIPELINING", NULL) != NULL;

	if (smtp_client_extension(client, "SIZE", NULL) != NULL)
		snprintf(size, sizeof(size), " SIZE=%" PRIu64, msg->size);
	smtp_client_send(client, "MAIL FROM:<%s>%s%s%s", msg->sender, size,
	    txn->body_8bit ? " BODY=8BITMIME" : "",
	    txn->smtputf8 ? " SMTPUTF8" : "");

	if (!txn->pipelined)
		return;
	for (i = 0; i < msg->rcpt_count; i++)
		smtp_client_send(client, "RCPT TO:<%s>", msg->rcpts[i].address);
	smtp_client_send(client, "DATA");
}

/*
 * The smart host's SIZE limit (RFC 1870 section 4): one decimal number,
 * where 0 or no number means no fixed limit. Anything else (letters, a
 * sign, a number past 2^64) is not a limit the client can trust, so it
 * is ignored and the server's reply to MAIL or DATA decides.
 */
static uint64_t
smtp_client_size_limit(const struct smtp_client *client)
{
	const char *param;
	size_t len = 0, i;
	uint64_t value = 0;
	char *escaped;

	param = smtp_client_extension(client, "SIZE", &len);
	if (param == NULL)
		return 0;
	while (len > 0 && param[len - 1] == ' ')
		len--;
	for (i = 0; i < len; i++) {
		if (param[i] < '0' || param[i] > '9' ||
		    value > (UINT64_MAX - 9) / 10) {
			escaped = log_escape(param, len);
			log_info("session=c%" PRIu64 " ignoring the invalid SIZE "
			    "limit \"%s\" of %s", client->id, escaped,
			    client->hostport);
			free(escaped);
			return 0;
		}
		value = value * 10 + (uint64_t)(param[i] - '0');
	}
	return value;
}

/* Returns true when MSG is larger than the smart host's SIZE limit, which goes to *LIMIT. */
static bool
smtp_client_size_exceeded(const struct smtp_client *client,
    const struct queue_message *msg, uint64_t *limit)
{
	*limit = smtp_client_size_limit(client);
	return *limit != 0 && msg->size > *limit;
}

/*
 * Set *EIGHTBIT when the stored body of MSG has an octet above 127. The
 * queue does not record this, so the body is read once more before MAIL.
 */
static int
smtp_client_body_scan(struct smtp_client *client,
    const struct queue_message *msg, bool *eightbit, char **errstr)
{
	struct evbuffer *chunk = evbuffer_new();
	struct evbuffer_iovec vec[4];
	const unsigned char *p;
	int seq = 0, r, n, i;
	size_t j;

	*eightbit = false;
	if (chunk == NULL)
		return set_error(errstr, "out of memory");
	while (!*eightbit && (r = queue_store_chunk_read(client->qs, msg->id,
	    seq++, chunk, errstr)) == 1) {
		while (!*eightbit && evbuffer_get_length(chunk) > 0) {
			n = evbuffer_peek(chunk, -1, NULL, vec, 4);
			if (n > 4)
				n = 4;
			for (i = 0; i < n && !*eightbit; i++) {
				p = vec[i].iov_base;
				for (j = 0; j < vec[i].iov_len; j++)
					if (p[j] & 0x80) {
						*eightbit = true;
						break;
					}
				evbuffer_drain(chunk, vec[i].iov_len);
			}
		}
	}
	evbuffer_free(chunk);
	return *eightbit || r == 0 ? 0 : -1;
}

/* The first envelope address of MSG that is not ASCII, or NULL. */
static const char *
smtp_client_utf8_address(const struct queue_message *msg)
{
	size_t i;

	if (address_is_8bit(msg->sender))
		return msg->sender;
	for (i = 0; i < msg->rcpt_count; i++)
		if (address_is_8bit(msg->rcpts[i].address))
			return msg->rcpts[i].address;
	return NULL;
}

/*
 * Check MSG against the server's extensions before MAIL: its size, the
 * SMTPUTF8 that a non-ASCII address needs (RFC 6531 section 3.4 forbids
 * sending it otherwise), and BODY=8BITMIME when the server offers it and
 * the body has 8-bit octets. A body with 8-bit octets goes to a server
 * without 8BITMIME unchanged, as Postfix and sendmail do. Returns false
 * with the outcome of the message decided when it cannot be sent.
 */
static bool
smtp_client_txn_prepare(struct smtp_client *client, struct smtp_client_txn *txn)
{
	const struct queue_message *msg = txn->msg;
	const char *utf8;
	char *error = NULL, *escaped;
	uint64_t limit;

	if (smtp_client_size_exceeded(client, msg, &limit)) {
		smtp_client_txn_decide(txn, DELIVERY_PERMFAIL, SMTP_FAILURE_REPLY,
		    NULL, xasprintf("message size %" PRIu64 " bytes exceeds the "
		    "limit of %" PRIu64 " bytes announced by %s (SIZE)", msg->size,
		    limit, client->hostport));
		return false;
	}

	utf8 = smtp_client_utf8_address(msg);
	if (utf8 != NULL && smtp_client_extension(client, "SMTPUTF8", NULL) == NULL) {
		escaped = log_escape(utf8, strlen(utf8));
		smtp_client_txn_decide(txn, DELIVERY_PERMFAIL, SMTP_FAILURE_REPLY,
		    NULL, xasprintf("the address <%s> is not ASCII, and smart host "
		    "%s does not offer SMTPUTF8", escaped, client->hostport));
		free(escaped);
		return false;
	}
	txn->smtputf8 = utf8 != NULL;

	if (smtp_client_extension(client, "8BITMIME", NULL) != NULL &&
	    smtp_client_body_scan(client, msg, &txn->body_8bit, &error) == -1) {
		smtp_client_txn_decide(txn, DELIVERY_TEMPFAIL,
		    SMTP_FAILURE_INTERNAL, NULL, xasprintf("cannot read the "
		    "message body: %s", error != NULL ? error : "unknown error"));
		free(error);
		return false;
	}
	return true;
}

/* Hand out messages until one starts a transaction, or end the session. */
static void
smtp_client_next_transaction(struct smtp_client *client)
{
	int max = client->smarthost->max_messages_per_connection;
	struct queue_message *msg;
	int64_t retry_ms;

	for (;;) {
		if (client->stopping || (max > 0 && client->messages >= max)) {
			smtp_client_enter(client, SMTP_CLIENT_QUIT);
			return;
		}

		retry_ms = 0;
		msg = client->callbacks.next_message(client->arg, client,
		    &retry_ms);
		if (msg == NULL) {
			if (client->state != SMTP_CLIENT_READY)
				return;
			if (retry_ms > 0 && retry_ms <= SMTP_CLIENT_IDLE_MAX_MS) {
				log_debug("session=c%" PRIu64 " waiting %" PRId64
				    "ms for the rate limit", client->id, retry_ms);
				smtp_client_timer_arm_ms(client, retry_ms);
				return;
			}
			smtp_client_enter(client, SMTP_CLIENT_QUIT);
			return;
		}
		client->messages++;
		client->txn = smtp_client_txn_new(msg);

		/* smtp_client_stop(abort) from inside next_message(): report the message from finish. */
		if (client->state != SMTP_CLIENT_READY)
			return;

		if (msg->rcpt_count == 0) {
			smtp_client_txn_decide(client->txn, DELIVERY_DONE,
			    SMTP_FAILURE_NONE, NULL, NULL);
			smtp_client_txn_finish(client);
			continue;
		}
		if (smtp_client_txn_prepare(client, client->txn)) {
			smtp_client_enter(client, SMTP_CLIENT_MAIL);
			return;
		}
		smtp_client_txn_finish(client);
	}
}

/* --- replies --- */

static void
smtp_client_handle_greeting(struct smtp_client *client,
    const struct smtp_reply *reply)
{
	char *text;

	if (reply->code == 220) {
		smtp_client_enter(client, SMTP_CLIENT_EHLO);
		return;
	}

	text = smtp_client_reply_text(reply);
	smtp_client_fail(client, SMTP_FAILURE_REPLY, reply,
	    "smart host %s rejected the session in its greeting: %s",
	    client->hostport, text);
	free(text);
	smtp_client_enter(client, SMTP_CLIENT_QUIT);
}

/* After a successful EHLO: STARTTLS, AUTH or the first transaction. */
static void
smtp_client_after_ehlo(struct smtp_client *client)
{
	int port = client->endpoint->port;

	if (client->state == SMTP_CLIENT_EHLO &&
	    client->endpoint->tls == TLS_MODE_OPPORTUNISTIC) {
		if (smtp_client_extension(client, "STARTTLS", NULL) != NULL) {
			smtp_client_enter(client, SMTP_CLIENT_STARTTLS);
			return;
		}
		log_info("session=c%" PRIu64 " %s does not offer STARTTLS: going "
		    "on in plain text (tls: opportunistic)", client->id,
		    client->hostport);
	} else if (client->state == SMTP_CLIENT_EHLO &&
	    client->endpoint->tls == TLS_MODE_STARTTLS) {
		if (smtp_client_extension(client, "STARTTLS", NULL) == NULL) {
			smtp_client_fail(client, SMTP_FAILURE_CONFIG, NULL,
			    "smart host %s does not offer STARTTLS; use a port "
			    "that offers it (usually 587), set tls: implicit if "
			    "port %d expects TLS from the start (usually 465), "
			    "tls: opportunistic to use TLS only when offered, or "
			    "tls: none to send without encryption",
			    client->hostport, port);
			smtp_client_enter(client, SMTP_CLIENT_QUIT);
			return;
		}
		smtp_client_enter(client, SMTP_CLIENT_STARTTLS);
		return;
	}

	if (client->smarthost->username != NULL) {
		smtp_client_auth_start(client);
		return;
	}
	smtp_client_enter(client, SMTP_CLIENT_READY);
}

static void
smtp_client_handle_ehlo(struct smtp_client *client,
    const struct smtp_reply *reply)
{
	bool plain = client->endpoint->tls == TLS_MODE_NONE &&
	    client->smarthost->username == NULL;
	char *text;

	if (smtp_reply_class(reply->code) == 2) {
		free(client->ehlo);
		client->ehlo = xstrdup(reply->text);
		smtp_client_after_ehlo(client);
		return;
	}

	/* RFC 5321 section 3.2: fall back to HELO, which only works without extensions. */
	if (smtp_reply_class(reply->code) == 5 &&
	    client->state == SMTP_CLIENT_EHLO && plain) {
		smtp_client_enter(client, SMTP_CLIENT_HELO);
		return;
	}

	text = smtp_client_reply_text(reply);
	smtp_client_fail(client, SMTP_FAILURE_REPLY, reply,
	    "smart host %s rejected EHLO: %s%s", client->hostport, text,
	    plain ? "" : " (STARTTLS and AUTH need EHLO)");
	free(text);
	smtp_client_enter(client, SMTP_CLIENT_QUIT);
}

static void
smtp_client_handle_helo(struct smtp_client *client,
    const struct smtp_reply *reply)
{
	char *text;

	if (smtp_reply_class(reply->code) == 2) {
		free(client->ehlo);
		client->ehlo = NULL;
		smtp_client_enter(client, SMTP_CLIENT_READY);
		return;
	}

	text = smtp_client_reply_text(reply);
	smtp_client_fail(client, SMTP_FAILURE_REPLY, reply,
	    "smart host %s rejected EHLO and HELO: %s", client->hostport, text);
	free(text);
	smtp_client_enter(client, SMTP_CLIENT_QUIT);
}

static void
smtp_client_handle_starttls(struct smtp_client *client,
    const struct smtp_reply *reply)
{
	char *text;

	if (reply->code != 220) {
		text = smtp_client_reply_text(reply);
		smtp_client_fail(client, SMTP_FAILURE_TLS, reply,
		    "smart host %s rejected STARTTLS: %s", client->hostport,
		    text);
		free(text);
		smtp_client_enter(client, SMTP_CLIENT_QUIT);
		return;
	}

	/* Text after the 220 would be read as if it came over TLS (STARTTLS response injection). */
	if (evbuffer_get_length(bufferevent_get_input(client->bev)) != 0) {
		smtp_client_fail(client, SMTP_FAILURE_PROTOCOL, reply,
		    "smart host %s sent more data after its 220 reply to "
		    "STARTTLS; refusing to start TLS on that connection",
		    client->hostport);
		smtp_client_drop(client);
		return;
	}
	smtp_client_enter(client, SMTP_CLIENT_TLS_STARTTLS_HANDSHAKE);
}

static void
smtp_client_handle_mail(struct smtp_client *client,
    const struct smtp_reply *reply)
{
	struct smtp_client_txn *txn = client->txn;
	char *text;

	if (smtp_reply_class(reply->code) == 2)
		txn->mail_accepted = true;
	else {
		text = smtp_client_reply_text(reply);
		smtp_client_txn_decide(txn, smtp_reply_class(reply->code) == 5 ?
		    DELIVERY_PERMFAIL : DELIVERY_TEMPFAIL, SMTP_FAILURE_REPLY,
		    reply, xasprintf("smart host %s rejected MAIL FROM: %s",
		    client->hostport, text));
		free(text);
	}

	/* Pipelined RCPT and DATA replies are still due, whatever MAIL got. */
	if (txn->pipelined || txn->mail_accepted) {
		smtp_client_enter(client, SMTP_CLIENT_RCPT);
		return;
	}
	smtp_client_txn_finish(client);
	smtp_client_enter(client, SMTP_CLIENT_RSET);
}

static void
smtp_client_handle_rcpt(struct smtp_client *client,
    const struct smtp_reply *reply)
{
	struct smtp_client_txn *txn = client->txn;
	struct queue_message *msg = txn->msg;
	size_t i = txn->rcpt_replied++;
	enum rcpt_state state;

	if (txn->mail_accepted) {
		switch (smtp_reply_class(reply->code)) {
		case 2:
			state = RCPT_SENT;
			txn->accepted[i] = true;
			txn->accepted_count++;
			break;
		case 5:
			state = RCPT_FAILED;
			break;
		default:
			state = RCPT_PENDING;
			break;
		}
		smtp_client_rcpt_set(&msg->rcpts[i], state, reply, NULL);
	}

	if (txn->rcpt_replied < msg->rcpt_count) {
		smtp_client_enter(client, SMTP_CLIENT_RCPT);
		return;
	}
	if (txn->pipelined || txn->accepted_count > 0) {
		smtp_client_enter(client, SMTP_CLIENT_DATA);
		return;
	}

	smtp_client_txn_decide(txn, DELIVERY_DONE, SMTP_FAILURE_REPLY, NULL,
	    xasprintf("smart host %s rejected every recipient",
	    client->hostport));
	smtp_client_txn_finish(client);
	smtp_client_enter(client, SMTP_CLIENT_RSET);
}

/* Give every recipient accepted at RCPT the final STATE and REPLY. */
static void
smtp_client_settle_accepted(struct smtp_client_txn *txn, enum rcpt_state state,
    const struct smtp_reply *reply)
{
	size_t i;

	for (i = 0; i < txn->msg->rcpt_count; i++) {
		if (txn->accepted[i])
			smtp_client_rcpt_set(&txn->msg->rcpts[i], state, reply,
			    NULL);
	}
}

static void
smtp_client_handle_data(struct smtp_client *client,
    const struct smtp_reply *reply)
{
	struct smtp_client_txn *txn = client->txn;
	int klass = smtp_reply_class(reply->code);
	char *text;

	if (reply->code == 354) {
		if (txn->mail_accepted && txn->accepted_count > 0 &&
		    !txn->decided) {
			smtp_client_enter(client, SMTP_CLIENT_BODY);
			return;
		}
		/* RFC 2920 section 3.1: DATA accepted without recipients; end it with an empty message. */
		smtp_client_txn_decide(txn, DELIVERY_DONE, SMTP_FAILURE_REPLY,
		    NULL, xasprintf("smart host %s rejected every recipient",
		    client->hostport));
		txn->empty_data = true;
		smtp_client_write_line(client, ".", 1);
		smtp_client_enter(client, SMTP_CLIENT_DATA_END);
		return;
	}

	if (txn->accepted_count > 0 && !txn->decided)
		smtp_client_settle_accepted(txn, klass == 5 ? RCPT_FAILED :
		    RCPT_PENDING, reply);
	text = smtp_client_reply_text(reply);
	if (txn->accepted_count > 0)
		smtp_client_txn_decide(txn, DELIVERY_DONE, SMTP_FAILURE_REPLY,
		    reply, xasprintf("smart host %s rejected DATA: %s",
		    client->hostport, text));
	else
		smtp_client_txn_decide(txn, DELIVERY_DONE, SMTP_FAILURE_REPLY,
		    NULL, xasprintf("smart host %s rejected every recipient",
		    client->hostport));
	free(text);
	smtp_client_txn_finish(client);
	smtp_client_enter(client, SMTP_CLIENT_RSET);
}

/*
 * The final reply decides for every recipient accepted at RCPT. A 4xx
 * leaves them pending with that reply and the status is DELIVERY_DONE,
 * because the per-recipient states carry the retry.
 */
static void
smtp_client_handle_data_end(struct smtp_client *client,
    const struct smtp_reply *reply)
{
	struct smtp_client_txn *txn = client->txn;
	int klass = smtp_reply_class(reply->code);
	char *text;

	if (txn->empty_data) {
		smtp_client_txn_finish(client);
		smtp_client_enter(client, SMTP_CLIENT_READY);
		return;
	}

	if (klass == 2) {
		smtp_client_settle_accepted(txn, RCPT_SENT, reply);
		smtp_client_txn_decide(txn, DELIVERY_DONE, SMTP_FAILURE_NONE,
		    reply, NULL);
		client->delivered++;
	} else {
		smtp_client_settle_accepted(txn, klass == 5 ? RCPT_FAILED :
		    RCPT_PENDING, reply);
		text = smtp_client_reply_text(reply);
		smtp_client_txn_decide(txn, DELIVERY_DONE, SMTP_FAILURE_REPLY,
		    reply, xasprintf("smart host %s did not accept the "
		    "message: %s", client->hostport, text));
		free(text);
	}
	smtp_client_txn_finish(client);
	smtp_client_enter(client, SMTP_CLIENT_READY);
}

/* A reply while the body is being sent: the final reply once the dot is out. */
static void
smtp_client_handle_body_reply(struct smtp_client *client,
    const struct smtp_reply *reply)
{
	struct smtp_client_txn *txn = client->txn;
	char *text;

	if (txn->body_queued) {
		txn->dot_sent = true;
		smtp_client_handle_data_end(client, reply);
		return;
	}

	text = smtp_client_reply_text(reply);
	smtp_client_fail(client, SMTP_FAILURE_PROTOCOL, reply,
	    "smart host %s replied before the end of the message body: %s",
	    client->hostport, text);
	smtp_client_txn_decide(txn, DELIVERY_TEMPFAIL, SMTP_FAILURE_PROTOCOL,
	    reply, xasprintf("smart host %s replied before the end of the "
	    "message body: %s", client->hostport, text));
	free(text);
	smtp_client_drop(client);
}

static void
smtp_client_handle_rset(struct smtp_client *client,
    const struct smtp_reply *reply)
{
	char *text;

	if (smtp_reply_class(reply->code) == 2) {
		smtp_client_enter(client, SMTP_CLIENT_READY);
		return;
	}

	text = smtp_client_reply_text(reply);
	smtp_client_fail(client, SMTP_FAILURE_REPLY, reply,
	    "smart host %s rejected RSET: %s", client->hostport, text);
	free(text);
	smtp_client_enter(client, SMTP_CLIENT_QUIT);
}

/* 421 (RFC 5321 section 3.8): the server is closing; the session ends at once. */
static void
smtp_client_handle_421(struct smtp_client *client,
    const struct smtp_reply *reply)
{
	char *text = smtp_client_reply_text(reply);

	smtp_client_fail(client, SMTP_FAILURE_SHUTDOWN, reply,
	    "smart host %s closed the session: %s", client->hostport, text);
	if (client->txn != NULL)
		smtp_client_txn_decide(client->txn, DELIVERY_TEMPFAIL,
		    SMTP_FAILURE_REPLY, reply, xasprintf("smart host %s closed "
		    "the session: %s", client->hostport, text));
	free(text);
	smtp_client_drop(client);
}

/* Handle a complete reply and pick the next state. */
static void
smtp_client_handle_reply(struct smtp_client *client,
    const struct smtp_reply *reply)
{
	char *text;

	if (reply->code == 421 && client->state != SMTP_CLIENT_QUIT) {
		smtp_client_handle_421(client, reply);
		return;
	}

	switch (client->state) {
	case SMTP_CLIENT_GREETING:
		smtp_client_handle_greeting(client, reply);
		return;
	case SMTP_CLIENT_EHLO:
	case SMTP_CLIENT_EHLO_AFTER_TLS:
		smtp_client_handle_ehlo(client, reply);
		return;
	case SMTP_CLIENT_HELO:
		smtp_client_handle_helo(client, reply);
		return;
	case SMTP_CLIENT_STARTTLS:
		smtp_client_handle_starttls(client, reply);
		return;
	case SMTP_CLIENT_AUTH_PLAIN:
	case SMTP_CLIENT_AUTH_LOGIN:
	case SMTP_CLIENT_AUTH_LOGIN_USERNAME:
	case SMTP_CLIENT_AUTH_LOGIN_PASSWORD:
	case SMTP_CLIENT_AUTH_CRAM_MD5:
	case SMTP_CLIENT_AUTH_CRAM_MD5_RESPONSE:
	case SMTP_CLIENT_AUTH_XOAUTH2:
	case SMTP_CLIENT_AUTH_XOAUTH2_ERROR:
		smtp_client_handle_auth(client, reply);
		return;
	case SMTP_CLIENT_MAIL:
		smtp_client_handle_mail(client, reply);
		return;
	case SMTP_CLIENT_RCPT:
		smtp_client_handle_rcpt(client, reply);
		return;
	case SMTP_CLIENT_DATA:
		smtp_client_handle_data(client, reply);
		return;
	case SMTP_CLIENT_BODY:
		smtp_client_handle_body_reply(client, reply);
		return;
	case SMTP_CLIENT_DATA_END:
		smtp_client_handle_data_end(client, reply);
		return;
	case SMTP_CLIENT_RSET:
		smtp_client_handle_rset(client, reply);
		return;
	case SMTP_CLIENT_QUIT:
		smtp_client_drop(client);
		return;
	default:
		break;
	}

	text = smtp_client_reply_text(reply);
	smtp_client_fail(client, SMTP_FAILURE_PROTOCOL, reply,
	    "smart host %s sent a reply nothing was waiting for (state %s): %s",
	    client->hostport, smtp_client_states[client->state].name, text);
	free(text);
	smtp_client_drop(client);
}

/* --- entering states --- */

static const char *
smtp_client_helo_name(const struct smtp_client *client)
{
	if (client->smarthost->helo_name != NULL)
		return client->smarthost->helo_name;
	return host_fqdn();
}

/* Enter STATE: arm its timeout and send its command, if it has one. */
static void
smtp_client_enter(struct smtp_client *client, enum smtp_client_state state)
{
	struct smtp_client_txn *txn = client->txn;
	int64_t timeout;

	if (client->state == SMTP_CLIENT_CLOSED)
		return;
	if (state == SMTP_CLIENT_CLOSED) {
		smtp_client_drop(client);
		return;
	}
	client->state = state;

	timeout = smtp_client_state_timeout(client);
	if (state == SMTP_CLIENT_GREETING && !client->greeting_warned &&
	    client->endpoint->tls != TLS_MODE_IMPLICIT &&
	    timeout > SMTP_CLIENT_GREETING_HINT)
		timeout = SMTP_CLIENT_GREETING_HINT;
	smtp_client_timer_arm(client, timeout);

	switch (state) {
	case SMTP_CLIENT_RESOLVE:
		smtp_client_resolve(client);
		break;
	case SMTP_CLIENT_CONNECT:
		smtp_client_connect(client);
		break;
	case SMTP_CLIENT_TLS_HANDSHAKE:
		smtp_client_tls_start_implicit(client);
		break;
	case SMTP_CLIENT_EHLO:
	case SMTP_CLIENT_EHLO_AFTER_TLS:
		smtp_client_send(client, "EHLO %s", smtp_client_helo_name(client));
		break;
	case SMTP_CLIENT_HELO:
		smtp_client_send(client, "HELO %s", smtp_client_helo_name(client));
		break;
	case SMTP_CLIENT_STARTTLS:
		smtp_client_send(client, "STARTTLS");
		break;
	case SMTP_CLIENT_TLS_STARTTLS_HANDSHAKE:
		smtp_client_tls_start_filter(client);
		break;
	case SMTP_CLIENT_AUTH_PLAIN:
	case SMTP_CLIENT_AUTH_LOGIN:
	case SMTP_CLIENT_AUTH_LOGIN_USERNAME:
	case SMTP_CLIENT_AUTH_LOGIN_PASSWORD:
	case SMTP_CLIENT_AUTH_CRAM_MD5:
	case SMTP_CLIENT_AUTH_CRAM_MD5_RESPONSE:
	case SMTP_CLIENT_AUTH_XOAUTH2:
	case SMTP_CLIENT_AUTH_XOAUTH2_ERROR:
		smtp_client_auth_send(client);
		break;
	case SMTP_CLIENT_CREDENTIALS:
		smtp_client_credentials_start(client);
		break;
	case SMTP_CLIENT_READY:
		smtp_client_next_transaction(client);
		break;
	case SMTP_CLIENT_MAIL:
		smtp_client_send_mail(client);
		break;
	case SMTP_CLIENT_RCPT:
		if (!txn->pipelined)
			smtp_client_send(client, "RCPT TO:<%s>",
			    txn->msg->rcpts[txn->rcpt_replied].address);
		break;
	case SMTP_CLIENT_DATA:
		if (!txn->pipelined)
			smtp_client_send(client, "DATA");
		break;
	case SMTP_CLIENT_BODY:
		smtp_client_body_start(client);
		break;
	case SMTP_CLIENT_DATA_END:
		txn->dot_sent = true;
		break;
	case SMTP_CLIENT_RSET:
		smtp_client_send(client, "RSET");
		break;
	case SMTP_CLIENT_QUIT:
		smtp_client_send(client, "QUIT");
		break;
	case SMTP_CLIENT_INIT:
	case SMTP_CLIENT_GREETING:
	case SMTP_CLIENT_CLOSED:
		break;
	}
}

/* --- libevent callbacks --- */

static void
smtp_client_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *client = arg;
	const struct smtp_client_state_info *info = &smtp_client_states[client->state];
	int64_t seconds = smtp_client_state_timeout(client);
	int port = client->endpoint->port;
	char *reason;

	(void)fd;
	(void)what;
	switch (client->state) {
	case SMTP_CLIENT_CONNECT:
		reason = xasprintf("timed out after %" PRId64 "s", seconds);
		smtp_client_connect_failed(client, reason);
		free(reason);
		return;
	case SMTP_CLIENT_READY:
		smtp_client_next_transaction(client);
		return;
	case SMTP_CLIENT_GREETING:
		if (!client->greeting_warned &&
		    client->endpoint->tls != TLS_MODE_IMPLICIT &&
		    seconds > SMTP_CLIENT_GREETING_HINT) {
			client->greeting_warned = true;
			log_warning("session=c%" PRIu64 " no greeting from %s "
			    "after %ds; probing whether port %d expects TLS from "
			    "the start", client->id, client->hostport,
			    SMTP_CLIENT_GREETING_HINT, port);
			smtp_client_probe_start(client);
			smtp_client_timer_arm(client,
			    seconds - SMTP_CLIENT_GREETING_HINT);
			return;
		}
		smtp_client_fail(client, SMTP_FAILURE_CONNECT, NULL,
		    "timed out after %" PRId64 "s %s %s%s", seconds,
		    info->activity, client->hostport,
		    client->endpoint->tls != TLS_MODE_IMPLICIT ?
		    " (if the port expects TLS from the start, set tls: "
		    "implicit)" : "");
		break;
	case SMTP_CLIENT_QUIT:
		/* The session's work is done, so a server slow to close changes nothing. */
		break;
	default:
		smtp_client_fail(client, SMTP_FAILURE_CONNECT, NULL,
		    "timed out after %" PRId64 "s %s %s", seconds,
		    info->activity, client->hostport);
		break;
	}
	smtp_client_drop(client);
}

static void
smtp_client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_client *client = arg;
	const char *activity = smtp_client_states[client->state].activity;
	char *reason;
	int error;

	(void)bev;
	switch (client->state) {
	case SMTP_CLIENT_CONNECT:
		if ((what & BEV_EVENT_CONNECTED) != 0) {
			smtp_client_connected(client);
			return;
		}
		error = EVUTIL_SOCKET_ERROR();
		smtp_client_connect_failed(client, error != 0 ?
		    evutil_socket_error_to_string(error) : "connection failed");
		return;
	case SMTP_CLIENT_TLS_HANDSHAKE:
	case SMTP_CLIENT_TLS_STARTTLS_HANDSHAKE:
		if ((what & BEV_EVENT_CONNECTED) != 0)
			smtp_client_tls_done(client);
		else
			smtp_client_tls_failed(client, what);
		return;
	case SMTP_CLIENT_QUIT:
		smtp_client_drop(client);
		return;
	case SMTP_CLIENT_READY:
		/* Servers close idle sessions; no transaction was in flight. */
		if (client->txn == NULL && (what & BEV_EVENT_EOF) != 0) {
			log_info("session=c%" PRIu64 " %s closed the idle "
			    "session", client->id, client->hostport);
			smtp_client_drop(client);
			return;
		}
		break;
	default:
		break;
	}

	if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) == 0)
		return;

	if (client->ssl != NULL && (what & BEV_EVENT_ERROR) != 0)
		reason = smtp_client_tls_reason(client, what);
	else if ((what & BEV_EVENT_EOF) != 0)
		reason = xstrdup("closed by the server");
	else
		reason = xstrdup(evutil_socket_error_to_string(
		    EVUTIL_SOCKET_ERROR()));
	smtp_client_fail(client, SMTP_FAILURE_CONNECT, NULL,
	    "connection lost while %s %s: %s", activity, client->hostport,
	    reason);
	free(reason);
	smtp_client_drop(client);
}

/* Read complete lines and feed them to the reply parser. */
static void
smtp_client_read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_client *client = arg;
	struct smtp_reply reply;
	struct evbuffer *input;
	struct evbuffer_ptr eol;
	enum smtp_reply_feed fed;
	size_t eol_len = 0, len;
	char *line, *escaped;

	/*
	 * Data means the connection is up, even before BEV_EVENT_CONNECTED:
	 * libevent's select backend (Windows) runs a socket's read callback
	 * before the write callback that reports the finished connect().
	 * The late BEV_EVENT_CONNECTED is then ignored by smtp_client_event_cb().
	 */
	if (client->state == SMTP_CLIENT_CONNECT && client->bev == bev)
		smtp_client_connected(client);

	while (client->state != SMTP_CLIENT_CLOSED && client->bev == bev) {
		input = bufferevent_get_input(bev);
		eol = evbuffer_search_eol(input, NULL, &eol_len, EVBUFFER_EOL_CRLF);
		if ((eol.pos == -1 && evbuffer_get_length(input) >=
		    SMTP_REPLY_LINE_MAX) || (eol.pos != -1 &&
		    (size_t)eol.pos + eol_len > SMTP_REPLY_LINE_MAX)) {
			smtp_client_fail(client, SMTP_FAILURE_PROTOCOL, NULL,
			    "smart host %s sent a reply line longer than %d "
			    "octets", client->hostport, SMTP_REPLY_LINE_MAX);
			smtp_client_drop(client);
			return;
		}
		if (eol.pos == -1)
			return;

		line = evbuffer_readln(input, &len, EVBUFFER_EOL_CRLF);
		if (line == NULL)
			return;
		smtp_client_log_line(client, 'S', line, len);

		fed = smtp_reply_parser_feed(&client->parser, line, len);
		if (fed == SMTP_REPLY_INVALID) {
			escaped = log_escape(line, len);
			smtp_client_fail(client, SMTP_FAILURE_PROTOCOL, NULL,
			    "smart host %s sent an invalid reply line: \"%s\"",
			    client->hostport, escaped);
			free(escaped);
			free(line);
			smtp_client_drop(client);
			return;
		}
		free(line);
		if (fed == SMTP_REPLY_MORE)
			continue;

		smtp_reply_parser_take(&client->parser, &reply);
		smtp_client_handle_reply(client, &reply);
		smtp_reply_clear(&reply);
	}
}

static void
smtp_client_write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_client *client = arg;
	struct smtp_client_txn *txn = client->txn;

	if (client->state != SMTP_CLIENT_BODY || client->bev != bev)
		return;

	if (!txn->body_queued) {
		smtp_client_body_pump(client);
		return;
	}
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		smtp_client_enter(client, SMTP_CLIENT_DATA_END);
}

/* The whole session took longer than smarthost.timeouts.session. */
static void
smtp_client_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *client = arg;
	const struct smtp_client_state_info *info = &smtp_client_states[client->state];
	char span[32];

	(void)fd;
	(void)what;
	if (client->state == SMTP_CLIENT_CLOSED)
		return;
	if (client->state != SMTP_CLIENT_QUIT) {
		duration_format(client->smarthost->timeouts.session, span,
		    sizeof(span));
		smtp_client_fail(client, SMTP_FAILURE_CONNECT, NULL,
		    "the session deadline (smarthost.timeouts.session: %s) "
		    "passed while %s %s", span, info->activity,
		    client->hostport);
	}
	smtp_client_drop(client);
}

const char *
smtp_failure_name(enum smtp_failure failure)
{
	switch (failure) {
	case SMTP_FAILURE_NONE:
		return "none";
	case SMTP_FAILURE_CONNECT:
		return "connect";
	case SMTP_FAILURE_TLS:
		return "tls";
	case SMTP_FAILURE_PROTOCOL:
		return "protocol";
	case SMTP_FAILURE_AUTH:
		return "auth";
	case SMTP_FAILURE_CONFIG:
		return "config";
	case SMTP_FAILURE_REPLY:
		return "reply";
	case SMTP_FAILURE_SHUTDOWN:
		return "421";
	case SMTP_FAILURE_INTERNAL:
		return "internal";
	}
	return "unknown";
}

/* --- public interface --- */

struct smtp_client *
smtp_client_start(struct event_base *base, struct evdns_base *dns,
    struct ssl_ctx_st *tls_ctx, const struct config *config,
    const struct config_endpoint *endpoint, struct queue_store *qs,
    const struct smtp_client_callbacks *callbacks, void *arg, char **errstr)
{
	struct smtp_client *client = xcalloc(1, sizeof(*client));
	struct timeval deadline = { 0, 0 };

	client->id = smtp_client_next_id++;
	client->base = base;
	client->dns = dns;
	client->tls_ctx = tls_ctx;
	client->smarthost = &config->smarthost;
	client->endpoint = endpoint;
	client->qs = qs;
	client->callbacks = *callbacks;
	client->arg = arg;
	client->state = SMTP_CLIENT_INIT;
	smtp_reply_parser_init(&client->parser);

	if (strchr(endpoint->host, ':') != NULL)
		client->hostport = xasprintf("[%s]:%d", endpoint->host,
		    endpoint->port);
	else
		client->hostport = xasprintf("%s:%d", endpoint->host,
		    endpoint->port);

	client->timer = evtimer_new(base, smtp_client_timer_cb, client);
	client->deadline = evtimer_new(base, smtp_client_deadline_cb, client);
	client->deferred = event_new(base, -1, 0, smtp_client_deferred_cb,
	    client);
	if (client->timer == NULL || client->deadline == NULL ||
	    client->deferred == NULL) {
		set_error(errstr, "cannot create the session timers for %s",
		    client->hostport);
		if (client->timer != NULL)
			event_free(client->timer);
		if (client->deadline != NULL)
			event_free(client->deadline);
		if (client->deferred != NULL)
			event_free(client->deferred);
		free(client->hostport);
		free(client);
		return NULL;
	}
	deadline.tv_sec = (time_t)config->smarthost.timeouts.session;
	evtimer_add(client->deadline, &deadline);

	log_info("session=c%" PRIu64 " host=%s tls=%s starting", client->id,
	    client->hostport, tls_mode_name(endpoint->tls));

	/* Start from the event loop, so no callback runs inside this call. */
	event_active(client->deferred, EV_TIMEOUT, 0);
	return client;
}

void
smtp_client_stop(struct smtp_client *client, bool abort)
{
	if (client->state == SMTP_CLIENT_CLOSED)
		return;
	client->stopping = true;

	/* Until the greeting has arrived there is no session to end with QUIT. */
	if (abort || client->state <= SMTP_CLIENT_GREETING) {
		client->aborted = abort;
		smtp_client_drop(client);
		return;
	}

	/* Waiting for a rate limit: the timer ends the session from the event loop. */
	if (client->state == SMTP_CLIENT_READY && client->txn == NULL)
		smtp_client_timer_arm_ms(client, 0);
}

uint64_t
smtp_client_id(const struct smtp_client *client)
{
	return client->id;
}
