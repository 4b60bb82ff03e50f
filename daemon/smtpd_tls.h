/*
 * STARTTLS on the listeners (RFC 3207): the server's OpenSSL context and
 * the TLS filter that replaces a session's plain bufferevent.
 */
#ifndef RELAYQ_SMTPD_TLS_H
#define RELAYQ_SMTPD_TLS_H

#include <stddef.h>

#include <event2/bufferevent.h>
#include <openssl/ssl.h>

/*
 * Create a server context with the PEM certificate chain CERT and the
 * private key KEY: TLS 1.2 at least, the server's cipher order, no
 * renegotiation. Returns NULL with *ERRSTR, which names the file.
 */
SSL_CTX *smtpd_tls_ctx_new(const char *cert, const char *key, char **errstr);

/*
 * Wrap PLAIN in a TLS filter that accepts a handshake with CTX. The new
 * bufferevent owns PLAIN and frees it. Returns NULL with *ERRSTR.
 */
struct bufferevent *smtpd_tls_start(struct bufferevent *plain, SSL_CTX *ctx,
    char **errstr);

/* Write the protocol version and cipher of the TLS bufferevent BEV into BUF. */
void smtpd_tls_describe(struct bufferevent *bev, char *buf, size_t size);

/*
 * Why the TLS bufferevent BEV failed, from its OpenSSL error codes.
 * Returns an allocated string.
 */
char *smtpd_tls_error(struct bufferevent *bev);

#endif
