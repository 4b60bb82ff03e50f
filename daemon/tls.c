/*
 * OpenSSL client contexts and per-connection SSL objects for the smart
 * host, and readable descriptions of handshake failures. Each failing
 * OpenSSL call here drains the error queue into its message, so its
 * errors do not show up in the report of a later call.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "tls.h"
#include "util.h"

/* Maximum number of queued OpenSSL errors put into one message. */
#define TLS_ERRORS_MAX 8

static bool
tls_is_ip_literal(const char *host)
{
	unsigned char addr[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, addr) == 1 ||
	    inet_pton(AF_INET6, host, addr) == 1;
}

/* An admin's next step for the certificate problems seen most often. */
static const char *
tls_verify_hint(long result)
{
	switch (result) {
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
		return " (set smarthost.ca_file to the CA certificate that "
		    "issued the server's certificate)";
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		return " (smarthost.host must be a name listed in the "
		    "server's certificate)";
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return " (check the server's certificate dates and this "
		    "host's clock)";
	default:
		return "";
	}
}

SSL_CTX *
tls_client_ctx_new(const struct config *config, char **errstr)
{
	const struct config_smarthost *sh = &config->smarthost;
	SSL_CTX *ctx;
	char *reason;

	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		reason = tls_error_describe(NULL);
		set_error(errstr, "cannot create the TLS client context: %s",
		    reason);
		free(reason);
		return NULL;
	}

	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		reason = tls_error_describe(NULL);
		set_error(errstr, "cannot require TLS 1.2 or later: %s", reason);
		goto fail;
	}

	SSL_CTX_set_verify(ctx, sh->tls_verify ? SSL_VERIFY_PEER :
	    SSL_VERIFY_NONE, NULL);

	/* A configured ca_file is loaded even without verification, so a typo shows at start. */
	if (sh->ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, sh->ca_file, NULL) != 1) {
			reason = tls_error_describe(NULL);
			set_error(errstr, "cannot load CA certificates from "
			    "smarthost.ca_file %s: %s", sh->ca_file, reason);
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		reason = tls_error_describe(NULL);
		set_error(errstr, "cannot load the system CA certificates: %s "
		    "(set smarthost.ca_file)", reason);
		goto fail;
	}

	return ctx;

fail:
	free(reason);
	SSL_CTX_free(ctx);
	return NULL;
}

SSL *
tls_client_ssl_new(SSL_CTX *ctx, const char *host, bool verify, char **errstr)
{
	char *reason;
	SSL *ssl;

	ERR_clear_error();
	ssl = SSL_new(ctx);
	if (ssl == NULL) {
		reason = tls_error_describe(NULL);
		set_error(errstr, "cannot create a TLS connection object: %s",
		    reason);
		free(reason);
		return NULL;
	}

	/* RFC 6066 section 3 forbids IP addresses in SNI. */
	if (!tls_is_ip_literal(host) &&
	    SSL_set_tlsext_host_name(ssl, host) != 1) {
		reason = tls_error_describe(NULL);
		set_error(errstr, "cannot set the TLS server name %s: %s",
		    host, reason);
		goto fail;
	}

	if (!verify) {
		SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
		return ssl;
	}

	/* Since OpenSSL 3.0, SSL_set1_host() matches an IP literal against the certificate's IP SANs. */
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (SSL_set1_host(ssl, host) != 1) {
		reason = tls_error_describe(NULL);
		set_error(errstr, "cannot set the expected certificate name "
		    "%s: %s", host, reason);
		goto fail;
	}
	SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
	return ssl;

fail:
	free(reason);
	SSL_free(ssl);
	return NULL;
}

char *
tls_error_describe_codes(SSL *ssl, const unsigned long *codes, size_t count)
{
	char text[256], *out = NULL, *joined;
	long result;
	size_t i;

	/* Without SSL_VERIFY_PEER the result is recorded but did not fail the handshake. */
	if (ssl != NULL && (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) != 0) {
		result = SSL_get_verify_result(ssl);
		if (result != X509_V_OK)
			return xasprintf("certificate verify failed: %s%s",
			    X509_verify_cert_error_string(result),
			    tls_verify_hint(result));
	}

	for (i = 0; i < count; i++) {
		/* libevent also queues bare SSL_ERROR_* values, which carry no library and no text. */
		if (ERR_GET_LIB(codes[i]) == 0)
			continue;
		ERR_error_string_n(codes[i], text, sizeof(text));
		if (out == NULL) {
			out = xstrdup(text);
			continue;
		}
		joined = xasprintf("%s; %s", out, text);
		free(out);
		out = joined;
	}

	return out;
}

char *
tls_error_describe(SSL *ssl)
{
	unsigned long codes[TLS_ERRORS_MAX];
	unsigned long code;
	size_t count = 0;
	char *text;

	while ((code = ERR_get_error()) != 0) {
		if (count < TLS_ERRORS_MAX)
			codes[count++] = code;
	}
	text = tls_error_describe_codes(ssl, codes, count);
	if (text == NULL)
		text = xstrdup("no error details from OpenSSL");
	return text;
}
