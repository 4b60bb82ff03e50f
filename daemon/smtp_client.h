/*
 * Outgoing SMTP session to the smart host: connect (every address of the
 * name in turn), TLS (STARTTLS or implicit), EHLO, AUTH, then one
 * transaction per message handed over by the scheduler, then QUIT.
 *
 * Ownership: the scheduler owns the client and the messages; the client
 * borrows a message from next_message() until it reports message_done()
 * for it. After closed() has been called the client frees itself and
 * must not be touched again.
 */
#ifndef RELAYQ_SMTP_CLIENT_H
#define RELAYQ_SMTP_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "queue_store.h"
#include "smtp_proto.h"

struct event_base;
struct evdns_base;
struct ssl_ctx_st;
struct smtp_client;

/* Why a session or a transaction failed. */
enum smtp_failure {
	SMTP_FAILURE_NONE,
	SMTP_FAILURE_CONNECT,	/* name lookup, TCP connect, connection lost, timeout */
	SMTP_FAILURE_TLS,	/* handshake or certificate verification failed */
	SMTP_FAILURE_PROTOCOL,	/* malformed reply, or a required extension missing */
	SMTP_FAILURE_AUTH,	/* credentials rejected or unusable, AUTH not offered: relay-wide */
	SMTP_FAILURE_CONFIG,	/* the endpoint's settings do not fit the server: TLS mode mix-up */
	SMTP_FAILURE_REPLY,	/* the server replied 4xx/5xx at a session stage (greeting, EHLO) */
	SMTP_FAILURE_SHUTDOWN,	/* 421: the server is closing, whatever the stage: relay-wide */
	SMTP_FAILURE_INTERNAL,	/* local error: reading the body, memory */
};

/* A short name of FAILURE for log lines, such as "auth". */
const char *smtp_failure_name(enum smtp_failure failure);

/* How one message's transaction ended. */
enum delivery_status {
	/* The transaction ran: each recipient's state/code/status/text is set. */
	DELIVERY_DONE,
	/* No recipient got a final answer (4xx at MAIL, failure before the
	 * final dot): retry the whole message. */
	DELIVERY_TEMPFAIL,
	/* MAIL got 5xx: every recipient fails. */
	DELIVERY_PERMFAIL,
	/* The connection was lost after the final dot without a reply. */
	DELIVERY_UNCERTAIN,
};

struct delivery_result {
	enum delivery_status status;
	enum smtp_failure failure;	/* why, for TEMPFAIL/PERMFAIL/UNCERTAIN */
	struct smtp_reply reply;	/* the deciding reply; code 0 when none */
	char *error;			/* one-line reason for logs and last_error */
	const char *host;		/* "host:port" of this session */
};

struct smtp_client_callbacks {
	/*
	 * The session is ready for a transaction. Return a claimed message,
	 * or NULL to end the session with QUIT. Setting *RETRY_MS above zero
	 * with NULL keeps the session open and asks again after that many
	 * milliseconds (a rate limit holds due messages back); the session
	 * ends with QUIT instead when the wait would be longer than a minute.
	 */
	struct queue_message *(*next_message)(void *arg, struct smtp_client *client,
	    int64_t *retry_ms);
	/* The transaction of MSG ended; RESULT is valid during the call only. */
	void (*message_done)(void *arg, struct smtp_client *client,
	    struct queue_message *msg, const struct delivery_result *result);
	/*
	 * The session ended. FAILURE is SMTP_FAILURE_NONE after a clean QUIT;
	 * otherwise ERROR says why and REPLY holds the server's reply if any.
	 * DELIVERED counts the messages that got a final reply.
	 */
	void (*closed)(void *arg, struct smtp_client *client,
	    enum smtp_failure failure, const char *error,
	    const struct smtp_reply *reply, int delivered);
	/*
	 * A session started without a TLS context (TLS off in the config)
	 * needs one to check whether a silent port expects TLS. Return a
	 * context that stays valid until closed() has run, or NULL to skip
	 * the check. May be NULL.
	 */
	struct ssl_ctx_st *(*probe_tls_ctx)(void *arg, struct smtp_client *client);
};

/*
 * Start a session to ENDPOINT with the settings of CONFIG->smarthost.
 * TLS_CTX is the client context from tls_client_ctx_new(). QS is used to
 * read message bodies chunk by chunk. Returns NULL only when out of
 * resources (with *ERRSTR set); connection failures arrive via closed().
 * The callbacks run from the event loop, never inside this call or
 * inside smtp_client_stop().
 */
struct smtp_client *smtp_client_start(struct event_base *base,
    struct evdns_base *dns, struct ssl_ctx_st *tls_ctx,
    const struct config *config, const struct config_endpoint *endpoint,
    struct queue_store *qs, const struct smtp_client_callbacks *callbacks,
    void *arg, char **errstr);

/*
 * Ask the session to end: no new transaction starts; the one in flight
 * finishes unless ABORT is set, in which case the connection is dropped
 * at once (a transaction in flight then ends with DELIVERY_TEMPFAIL, or
 * DELIVERY_UNCERTAIN after the final dot).
 */
void smtp_client_stop(struct smtp_client *client, bool abort);

/* Numeric session id used in log lines ("session=c12"). */
uint64_t smtp_client_id(const struct smtp_client *client);

#endif
