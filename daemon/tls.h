/* OpenSSL contexts for the smart host client. */
#ifndef RELAYQ_TLS_H
#define RELAYQ_TLS_H

#include <openssl/ssl.h>

#include "config.h"

/*
 * Create the client context: TLS 1.2 minimum, peer verification unless
 * smarthost.tls_verify is false, CA from smarthost.ca_file or the system
 * store. Returns NULL with *ERRSTR set on failure.
 */
SSL_CTX *tls_client_ctx_new(const struct config *config, char **errstr);

/*
 * Create an SSL object for one connection to HOST: SNI (unless HOST is an
 * IP literal) and host name verification when verification is on.
 */
SSL *tls_client_ssl_new(SSL_CTX *ctx, const char *host, bool verify, char **errstr);

/*
 * Describe why the handshake on SSL failed: the verification result when
 * there is one ("certificate verify failed: self-signed certificate"),
 * else the drained OpenSSL error queue. Returns an allocated string.
 */
char *tls_error_describe(SSL *ssl);

/*
 * Like tls_error_describe(), for COUNT error codes already taken off the
 * OpenSSL queue (libevent moves them into the bufferevent, from where
 * bufferevent_get_openssl_error() returns them). SSL may be NULL.
 * Returns an allocated string, or NULL when there is nothing to report.
 */
char *tls_error_describe_codes(SSL *ssl, const unsigned long *codes,
    size_t count);

#endif
