/*
 * OpenSSL client contexts for the smart host, shared by relayqd and
 * `relayq diagnose` so that both apply the same TLS policy: versions,
 * ciphers, CA store, client certificate and certificate pinning.
 */
#ifndef RELAYQ_TLS_H
#define RELAYQ_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "config.h"

/* Room for "AB:CD:..." of a SHA-256 digest and its NUL. */
#define TLS_FINGERPRINT_TEXT_SIZE (CONFIG_FINGERPRINT_SIZE * 3)

/*
 * Create the client context from CONFIG->smarthost: minimum version
 * (tls_min_version), cipher lists, CA file and directory (or the system
 * store), and the client certificate. Returns NULL with *ERRSTR set.
 */
SSL_CTX *tls_client_ctx_new(const struct config *config, char **errstr);

/*
 * Create an SSL object for one connection to HOST. SNI is sent unless
 * HOST is an IP literal. With PIN_COUNT > 0 only the leaf certificate's
 * SHA-256 fingerprint is checked against PINS (which must outlive the
 * SSL object), and chain and name are not. Otherwise with VERIFY the
 * chain and the name HOST are verified. Every SSL object also records
 * the first record header the server sent, for tls_peer_sent_plaintext().
 */
SSL *tls_client_ssl_new(SSL_CTX *ctx, const char *host, bool verify,
    const struct config_fingerprint *pins, size_t pin_count, char **errstr);

/*
 * True when the first bytes the server sent on SSL look like an SMTP
 * reply ("220 ...") instead of a TLS record: the port speaks plain SMTP.
 */
bool tls_peer_sent_plaintext(SSL *ssl);

/* Format the SHA-256 fingerprint of CERT as "AB:CD:..." into BUF. */
void tls_fingerprint_format(X509 *cert, char buf[TLS_FINGERPRINT_TEXT_SIZE]);

/*
 * Describe CERT on one line: subject, issuer and expiry date, such as
 * "subject CN=mail.example.com, issuer CN=Example CA, expires
 * 2026-05-01T12:00:00Z". Returns an allocated string.
 */
char *tls_certificate_describe(X509 *cert);

/* Expiry of CERT in Unix seconds, or -1 when it cannot be read. */
long long tls_certificate_expiry(X509 *cert);

/*
 * Describe why the handshake on SSL failed: the pin mismatch or the
 * verification result when there is one ("certificate verify failed:
 * self-signed certificate"), else the drained OpenSSL error queue.
 * Returns an allocated string.
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

#ifdef _WIN32
/*
 * Add the certificates of the Windows ROOT system store to STORE, except
 * those in the DISALLOWED store and those whose store properties exclude
 * server authentication. *LOADED receives the number added. Returns 0, or
 * -1 with *ERRSTR set when the ROOT store cannot be opened.
 */
int tls_windows_load_roots(X509_STORE *store, size_t *loaded, char **errstr);
#endif

/* The protocol name of an SSL_CTX_set_min_proto_version() value for tls_min_version. */
int tls_protocol_version(int tls_min_version);

#endif
