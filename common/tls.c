/*
 * OpenSSL client contexts and per-connection SSL objects for the smart
 * host, certificate pinning, and readable descriptions of handshake
 * failures. Each failing OpenSSL call here drains the error queue into
 * its message, so its errors do not show up in the report of a later
 * call. Not thread-safe: the ex_data index is created on first use.
 */
#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#define timegm _mkgmtime
#else
#include <arpa/inet.h>
#include <dirent.h>
#endif
#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "tls.h"
#include "util.h"

/* Maximum number of queued OpenSSL errors put into one message. */
#define TLS_ERRORS_MAX 8

/* Length of a TLS record header, the first bytes a TLS server sends. */
#define TLS_RECORD_HEADER_SIZE 5

/* Facts about one connection's peer, attached to its SSL object. */
struct tls_peer {
	const struct config_fingerprint *pins;	/* owned by the config */
	size_t pin_count;
	char leaf[TLS_FINGERPRINT_TEXT_SIZE];	/* fingerprint of the leaf, "" before */
	unsigned char first[TLS_RECORD_HEADER_SIZE];	/* first record header received */
	size_t first_len;
};

static int tls_peer_index = -1;

static void
tls_peer_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
    void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	free(ptr);
}

static struct tls_peer *
tls_peer_get(SSL *ssl)
{
	if (ssl == NULL || tls_peer_index == -1)
		return NULL;
	return SSL_get_ex_data(ssl, tls_peer_index);
}

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
		    "issued the server's certificate, or pin a self-signed "
		    "certificate with smarthost.tls_fingerprint)";
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

int
tls_protocol_version(int tls_min_version)
{
	return tls_min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

/* Apply tls_min_version, tls_ciphers and tls_ciphersuites. */
static int
tls_ctx_set_protocol(SSL_CTX *ctx, const struct config_smarthost *sh,
    char **errstr)
{
	char *reason;
	int rc = 0;

	if (SSL_CTX_set_min_proto_version(ctx,
	    tls_protocol_version(sh->tls_min_version)) != 1) {
		reason = tls_error_describe(NULL);
		rc = set_error(errstr, "cannot require TLS 1.%d or later: %s",
		    sh->tls_min_version % 10, reason);
		free(reason);
		return rc;
	}
	if (sh->tls_ciphers != NULL &&
	    SSL_CTX_set_cipher_list(ctx, sh->tls_ciphers) != 1) {
		reason = tls_error_describe(NULL);
		rc = set_error(errstr, "invalid smarthost.tls_ciphers \"%s\": %s "
		    "(see \"openssl ciphers\" for the names)", sh->tls_ciphers,
		    reason);
		free(reason);
		return rc;
	}
	if (sh->tls_ciphersuites != NULL &&
	    SSL_CTX_set_ciphersuites(ctx, sh->tls_ciphersuites) != 1) {
		reason = tls_error_describe(NULL);
		rc = set_error(errstr, "invalid smarthost.tls_ciphersuites \"%s\": "
		    "%s (TLS 1.3 names such as TLS_AES_256_GCM_SHA384)",
		    sh->tls_ciphersuites, reason);
		free(reason);
		return rc;
	}
	return 0;
}

#ifndef _WIN32
/* OpenSSL's default certificate directory, or the one SSL_CERT_DIR names. */
static const char *
tls_default_cert_dir(void)
{
	const char *dir = getenv(X509_get_default_cert_dir_env());

	return dir != NULL ? dir : X509_get_default_cert_dir();
}

/* True for a name like "9d04f354.0": a subject hash, a dot and a number. */
static bool
tls_is_hash_name(const char *name)
{
	size_t i;

	for (i = 0; i < 8; i++)
		if (!isxdigit((unsigned char)name[i]))
			return false;
	if (name[8] != '.' || !isdigit((unsigned char)name[9]))
		return false;
	for (i = 10; name[i] != '\0'; i++)
		if (!isdigit((unsigned char)name[i]))
			return false;
	return true;
}

/*
 * True when DIR contains hash links (c_rehash, update-ca-certificates).
 * OpenSSL then reads a CA certificate from the directory only when a
 * chain needs it. Loading the system bundle file instead parses every
 * root at start, which added 1 MiB to relayqd's idle RSS on Debian 12
 * for the daemon's whole life.
 */
static bool
tls_dir_is_hashed(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	bool hashed = false;

	if (d == NULL)
		return false;
	while (!hashed && (e = readdir(d)) != NULL)
		hashed = tls_is_hash_name(e->d_name);
	closedir(d);
	return hashed;
}
#endif

/*
 * Load the system's trusted roots. On Windows that is the ROOT store,
 * because OPENSSLDIR contains no certificates there. Elsewhere it is
 * OpenSSL's default directory when it is hashed, else its default file
 * and directory. SSL_CERT_FILE, when set, always names a file to load.
 */
static int
tls_ctx_load_system_ca(SSL_CTX *ctx, char **errstr)
{
#ifdef _WIN32
	size_t loaded;

	return tls_windows_load_roots(SSL_CTX_get_cert_store(ctx), &loaded, errstr);
#else
	char *reason;
	int rc;

	if (getenv(X509_get_default_cert_file_env()) == NULL &&
	    tls_dir_is_hashed(tls_default_cert_dir())) {
		if (SSL_CTX_set_default_verify_dir(ctx) == 1)
			return 0;
	} else if (SSL_CTX_set_default_verify_paths(ctx) == 1) {
		return 0;
	}
	reason = tls_error_describe(NULL);
	rc = set_error(errstr, "cannot load the system CA certificates: %s "
	    "(set smarthost.ca_file)", reason);
	free(reason);
	return rc;
#endif
}

/* Load ca_file and ca_path, or the system store when neither is set. */
static int
tls_ctx_load_ca(SSL_CTX *ctx, const struct config_smarthost *sh, char **errstr)
{
	char *reason;
	int rc;

	/* A configured CA is loaded even without verification, so a typo shows at start. */
	if (sh->ca_file != NULL || sh->ca_path != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, sh->ca_file,
		    sh->ca_path) == 1)
			return 0;
		reason = tls_error_describe(NULL);
		rc = set_error(errstr, "cannot load CA certificates from %s%s%s: %s",
		    sh->ca_file != NULL ? "smarthost.ca_file " : "smarthost.ca_path ",
		    sh->ca_file != NULL ? sh->ca_file : sh->ca_path,
		    sh->ca_file != NULL && sh->ca_path != NULL ?
		    " and smarthost.ca_path" : "", reason);
		free(reason);
		return rc;
	}
	return tls_ctx_load_system_ca(ctx, errstr);
}

static int
tls_ctx_load_client_cert(SSL_CTX *ctx, const struct config_smarthost *sh,
    char **errstr)
{
	char *reason;
	int rc;

	if (sh->tls_client_cert == NULL)
		return 0;
	if (SSL_CTX_use_certificate_chain_file(ctx, sh->tls_client_cert) != 1) {
		reason = tls_error_describe(NULL);
		rc = set_error(errstr, "cannot load smarthost.tls_client_cert %s: %s",
		    sh->tls_client_cert, reason);
		free(reason);
		return rc;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, sh->tls_client_key,
	    SSL_FILETYPE_PEM) != 1) {
		reason = tls_error_describe(NULL);
		rc = set_error(errstr, "cannot load smarthost.tls_client_key %s: %s",
		    sh->tls_client_key, reason);
		free(reason);
		return rc;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		reason = tls_error_describe(NULL);
		rc = set_error(errstr, "smarthost.tls_client_key %s does not belong "
		    "to smarthost.tls_client_cert %s: %s", sh->tls_client_key,
		    sh->tls_client_cert, reason);
		free(reason);
		return rc;
	}
	return 0;
}

SSL_CTX *
tls_client_ctx_new(const struct config *config, char **errstr)
{
	const struct config_smarthost *sh = &config->smarthost;
	SSL_CTX *ctx;
	char *reason;

	if (tls_peer_index == -1)
		tls_peer_index = SSL_get_ex_new_index(0, NULL, NULL, NULL,
		    tls_peer_free);

	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		reason = tls_error_describe(NULL);
		set_error(errstr, "cannot create the TLS client context: %s",
		    reason);
		free(reason);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, sh->tls_verify ? SSL_VERIFY_PEER :
	    SSL_VERIFY_NONE, NULL);

	if (tls_ctx_set_protocol(ctx, sh, errstr) == -1 ||
	    tls_ctx_load_ca(ctx, sh, errstr) == -1 ||
	    tls_ctx_load_client_cert(ctx, sh, errstr) == -1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

void
tls_fingerprint_format(X509 *cert, char buf[TLS_FINGERPRINT_TEXT_SIZE])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0, i;
	size_t n = 0;

	buf[0] = '\0';
	if (X509_digest(cert, EVP_sha256(), md, &len) != 1)
		return;
	for (i = 0; i < len && i < CONFIG_FINGERPRINT_SIZE; i++)
		n += (size_t)snprintf(buf + n, TLS_FINGERPRINT_TEXT_SIZE - n,
		    "%s%02X", i == 0 ? "" : ":", md[i]);
}

static bool
tls_pin_matches(const struct tls_peer *peer, X509 *cert)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	size_t i;

	if (X509_digest(cert, EVP_sha256(), md, &len) != 1 ||
	    len != CONFIG_FINGERPRINT_SIZE)
		return false;
	for (i = 0; i < peer->pin_count; i++)
		if (CRYPTO_memcmp(md, peer->pins[i].sha256, len) == 0)
			return true;
	return false;
}

/*
 * Verification with pins: certificates above the leaf are accepted
 * whatever their errors, and the leaf passes exactly when its SHA-256
 * matches a pin. A self-signed Exchange certificate thus needs no CA.
 */
static int
tls_verify_pinned(int ok, X509_STORE_CTX *store)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(store,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_peer *peer = tls_peer_get(ssl);
	X509 *cert;

	if (peer == NULL || peer->pin_count == 0)
		return ok;
	if (X509_STORE_CTX_get_error_depth(store) > 0)
		return 1;

	cert = X509_STORE_CTX_get_current_cert(store);
	if (cert == NULL)
		return 0;
	tls_fingerprint_format(cert, peer->leaf);
	if (tls_pin_matches(peer, cert)) {
		X509_STORE_CTX_set_error(store, X509_V_OK);
		return 1;
	}
	X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
	return 0;
}

/* Keep the first record header the server sent (SSL3_RT_HEADER is reported before it is checked). */
static void
tls_message_cb(int write_p, int version, int content_type, const void *buf,
    size_t len, SSL *ssl, void *arg)
{
	struct tls_peer *peer = arg;

	(void)version;
	(void)ssl;
	if (write_p || content_type != SSL3_RT_HEADER || peer->first_len > 0)
		return;
	if (len > sizeof(peer->first))
		len = sizeof(peer->first);
	memcpy(peer->first, buf, len);
	peer->first_len = len;
}

SSL *
tls_client_ssl_new(SSL_CTX *ctx, const char *host, bool verify,
    const struct config_fingerprint *pins, size_t pin_count, char **errstr)
{
	struct tls_peer *peer;
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

	peer = xcalloc(1, sizeof(*peer));
	peer->pins = pins;
	peer->pin_count = pin_count;
	SSL_set_ex_data(ssl, tls_peer_index, peer);
	SSL_set_msg_callback(ssl, tls_message_cb);
	SSL_set_msg_callback_arg(ssl, peer);

	/* RFC 6066 section 3 forbids IP addresses in SNI. */
	if (!tls_is_ip_literal(host) &&
	    SSL_set_tlsext_host_name(ssl, host) != 1) {
		reason = tls_error_describe(NULL);
		set_error(errstr, "cannot set the TLS server name %s: %s",
		    host, reason);
		goto fail;
	}

	if (pin_count > 0) {
		SSL_set_verify(ssl, SSL_VERIFY_PEER, tls_verify_pinned);
		return ssl;
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

bool
tls_peer_sent_plaintext(SSL *ssl)
{
	struct tls_peer *peer = tls_peer_get(ssl);
	const unsigned char *b;

	if (peer == NULL || peer->first_len < 4)
		return false;
	/* A reply code of three digits, then a space or a hyphen (RFC 5321 section 4.2). */
	b = peer->first;
	return b[0] >= '2' && b[0] <= '5' && b[1] >= '0' && b[1] <= '9' &&
	    b[2] >= '0' && b[2] <= '9' && (b[3] == ' ' || b[3] == '-');
}

long long
tls_certificate_expiry(X509 *cert)
{
	const ASN1_TIME *not_after = X509_get0_notAfter(cert);
	struct tm tm;

	if (not_after == NULL || ASN1_TIME_to_tm(not_after, &tm) != 1)
		return -1;
	return (long long)timegm(&tm);
}

static char *
tls_name_text(const X509_NAME *name)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *text;
	long len;

	if (bio == NULL)
		return xstrdup("?");
	/* One line, "CN=a, O=b", with UTF-8 kept as it is. */
	X509_NAME_print_ex(bio, name, 0, XN_FLAG_ONELINE & ~XN_FLAG_SPC_EQ &
	    ~ASN1_STRFLGS_ESC_MSB);
	len = BIO_get_mem_data(bio, &data);
	text = len > 0 ? xstrndup(data, (size_t)len) : xstrdup("(empty)");
	BIO_free(bio);
	return text;
}

char *
tls_certificate_describe(X509 *cert)
{
	char *subject, *issuer, *text, expiry[32];
	long long when = tls_certificate_expiry(cert);

	subject = tls_name_text(X509_get_subject_name(cert));
	issuer = tls_name_text(X509_get_issuer_name(cert));
	if (when >= 0)
		time_format_rfc3339(when, expiry, sizeof(expiry));
	else
		snprintf(expiry, sizeof(expiry), "unknown");
	text = xasprintf("subject %s, issuer %s, expires %s", subject, issuer,
	    expiry);
	free(subject);
	free(issuer);
	return text;
}

/* The pin mismatch, when that is why verification failed. */
static char *
tls_pin_failure(SSL *ssl, long result)
{
	struct tls_peer *peer = tls_peer_get(ssl);

	if (peer == NULL || peer->pin_count == 0 ||
	    result != X509_V_ERR_CERT_REJECTED)
		return NULL;
	return xasprintf("the server's certificate (SHA-256 fingerprint %s) "
	    "matches no smarthost.tls_fingerprint", peer->leaf[0] != '\0' ?
	    peer->leaf : "unknown");
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
		out = tls_pin_failure(ssl, result);
		if (out != NULL)
			return out;
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
