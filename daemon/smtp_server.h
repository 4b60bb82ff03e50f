/*
 * Incoming SMTP sessions (RFC 5321 with PIPELINING, SIZE, 8BITMIME,
 * ENHANCEDSTATUSCODES, and per listener STARTTLS, AUTH and SMTPUTF8). A
 * session owns its connection and its current transaction; the message
 * body streams into the queue in chunks and the 250 after DATA is sent
 * only after the group commit has put it on disk.
 */
#ifndef RELAYQ_SMTP_SERVER_H
#define RELAYQ_SMTP_SERVER_H

#include <event2/util.h>

#include "compat.h"

struct smtpd_policy;

/*
 * Take over a connection accepted by the listener whose settings are
 * POLICY. The session keeps its own reference to POLICY.
 */
void smtp_server_accept(evutil_socket_t fd, const struct sockaddr *addr,
    socklen_t addrlen, struct smtpd_policy *policy);

/* Close idle sessions with 421; sessions inside a transaction finish it first. */
void smtp_server_shutdown(void);

/* Drop every session at once (shutdown deadline). */
void smtp_server_abort_all(void);

int smtp_server_sessions(void);

#endif
