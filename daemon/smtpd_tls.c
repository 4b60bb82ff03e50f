/*
 * Server-side TLS for STARTTLS. The handshake runs in a bufferevent_openssl
 * filter over the session's socket bufferevent, so the session code reads
 * and writes the same way before and after STARTTLS.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>

#include "smtpd_tls.h"
#include "util.h"

/* Write the latest OpenSSL error into BUF and empty the error queue. */
static void
smtpd_tls_last_error(char *buf, size_t size)
{
	unsigned long code = ERR_peek_last_error();

	if (code == 0)
		snprintf(buf, size, "unknown error");
	else
		ERR_error_string_n(code, buf, size);
	ERR_clear_error();
}

/* Fail early with the system's reason when FILE cannot be read. */
static int
smtpd_tls_check_readable(const char *key, const char *file, char **errstr)
{
	if (access(file, R_OK) == -1)
		return set_error(errstr, "cannot read %s %s: %s", key, file,
		    strerror(errno));
	return 0;
}

static int
smtpd_tls_ctx_load(SSL_CTX *ctx, const char *cert, const char *key,
    char **errstr)
{
	char reason[256];

	if (smtpd_tls_check_readable("tls_cert", cert, errstr) == -1 ||
	    smtpd_tls_check_readable("tls_key", key, errstr) == -1)
		return -1;
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		smtpd_tls_last_error(reason, sizeof(reason));
		return set_error(errstr, "tls_cert %s: cannot load the certificate "
		    "chain (PEM expected): %s", cert, reason);
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		smtpd_tls_last_error(reason, sizeof(reason));
		return set_error(errstr, "tls_key %s: cannot load the private key "
		    "(PEM without a passphrase expected): %s", key, reason);
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		return set_error(errstr, "tls_key %s does not belong to the "
		    "certificate in tls_cert %s", key, cert);
	}
	return 0;
}

SSL_CTX *
smtpd_tls_ctx_new(const char *cert, const char *key, char **errstr)
{
	static const unsigned char session_context[] = "relayqd";
	SSL_CTX *ctx;

	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		ERR_clear_error();
		set_error(errstr, "cannot create a TLS server context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_session_id_context(ctx, session_context,
	    sizeof(session_context) - 1);

	if (smtpd_tls_ctx_load(ctx, cert, key, errstr) == -1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

struct bufferevent *
smtpd_tls_start(struct bufferevent *plain, SSL_CTX *ctx, char **errstr)
{
	struct bufferevent *bev;
	SSL *ssl;

	ssl = SSL_new(ctx);
	if (ssl == NULL) {
		ERR_clear_error();
		set_error(errstr, "cannot create a TLS connection object");
		return NULL;
	}
	bev = bufferevent_openssl_filter_new(bufferevent_get_base(plain), plain,
	    ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		set_error(errstr, "cannot create the TLS filter");
		return NULL;
	}

	/* Many clients close without close_notify after QUIT; that is no error. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

void
smtpd_tls_describe(struct bufferevent *bev, char *buf, size_t size)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);

	if (ssl == NULL) {
		snprintf(buf, size, "none");
		return;
	}
	snprintf(buf, size, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
}

char *
smtpd_tls_error(struct bufferevent *bev)
{
	char text[256], *out = NULL, *joined;
	unsigned long code;

	while ((code = bufferevent_get_openssl_error(bev)) != 0) {
		/* libevent also queues bare SSL_ERROR_* values, which carry no text. */
		if (ERR_GET_LIB(code) == 0)
			continue;
		ERR_error_string_n(code, text, sizeof(text));
		if (out == NULL) {
			out = xstrdup(text);
			continue;
		}
		joined = xasprintf("%s; %s", out, text);
		free(out);
		out = joined;
	}
	if (out == NULL)
		out = xstrdup("no TLS error reported; the connection was closed or reset");
	return out;
}
