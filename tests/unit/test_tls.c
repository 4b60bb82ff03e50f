/*
 * Unit tests for the smart host's client context (tls.c): the trust
 * anchors it loads without smarthost.ca_file, checked by in-memory
 * handshakes with a self-signed server certificate, and on Windows the
 * ROOT certificate store (tls_win32.c).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "check.h"
#include "compat.h"
#include "config.h"
#include "tls.h"

/* The name in the test server's certificate and the name the client expects. */
#define TEST_TLS_HOST "localhost"
/* Handshake steps of both sides before the test gives up; a handshake needs a few. */
#define TEST_TLS_ROUNDS 50

/* Outcome of one in-memory handshake. */
struct test_tls_result {
	bool connected;			/* the client completed the handshake */
	long verify;			/* SSL_get_verify_result() of the client */
	char *error;			/* tls_error_describe() after a failure */
};

static void
test_tls_init(void)
{
	static bool done;
	char *errstr = NULL;

	if (done)
		return;
	done = true;
	/* WSAStartup() on Windows, for inet_pton() in tls_client_ssl_new(). */
	if (compat_init(&errstr) == -1) {
		fprintf(stderr, "compat_init: %s\n", errstr);
		abort();
	}
}

/* The client context as relayqd builds it without ca_file and ca_path. */
static SSL_CTX *
test_tls_client_ctx(void)
{
	struct config config;
	char *errstr = NULL;
	SSL_CTX *ctx;

	memset(&config, 0, sizeof(config));
	config.smarthost.tls_verify = true;
	config.smarthost.tls_min_version = 12;
	ctx = tls_client_ctx_new(&config, &errstr);
	CHECK_STR_EQ(errstr, NULL);
	free(errstr);
	return ctx;
}

/* A self-signed certificate for TEST_TLS_HOST with KEY, valid from an hour ago for a day. */
static X509 *
test_tls_self_signed(EVP_PKEY *key)
{
	X509 *cert = X509_new();
	X509_NAME *subject = X509_get_subject_name(cert);
	X509_EXTENSION *san;
	X509V3_CTX v3;

	X509_set_version(cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
	X509_set_pubkey(cert, key);
	X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
	    (const unsigned char *)TEST_TLS_HOST, -1, -1, 0);
	X509_set_issuer_name(cert, subject);

	X509V3_set_ctx(&v3, cert, cert, NULL, NULL, 0);
	san = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name,
	    "DNS:" TEST_TLS_HOST);
	X509_add_ext(cert, san, -1);
	X509_EXTENSION_free(san);
	X509_sign(cert, key, EVP_sha256());
	return cert;
}

/* True when SSL's last call RC failed for another reason than waiting for the peer. */
static bool
test_tls_failed(SSL *ssl, int rc)
{
	int error;

	if (rc == 1)
		return false;
	error = SSL_get_error(ssl, rc);
	return error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE;
}

/* Connect a client from CLIENT_CTX to a server with CERT and KEY through a BIO pair. */
static struct test_tls_result
test_tls_handshake(SSL_CTX *client_ctx, X509 *cert, EVP_PKEY *key)
{
	struct test_tls_result result = { false, X509_V_OK, NULL };
	SSL_CTX *server_ctx = SSL_CTX_new(TLS_server_method());
	SSL *client, *server;
	BIO *client_bio, *server_bio;
	char *errstr = NULL;
	int i, c = 0, s = 0;

	CHECK(server_ctx != NULL);
	CHECK_INT_EQ(SSL_CTX_use_certificate(server_ctx, cert), 1);
	CHECK_INT_EQ(SSL_CTX_use_PrivateKey(server_ctx, key), 1);
	client = tls_client_ssl_new(client_ctx, TEST_TLS_HOST, true, NULL, 0,
	    &errstr);
	CHECK_STR_EQ(errstr, NULL);
	free(errstr);
	server = SSL_new(server_ctx);
	CHECK_INT_EQ(BIO_new_bio_pair(&client_bio, 0, &server_bio, 0), 1);
	SSL_set_bio(client, client_bio, client_bio);
	SSL_set_bio(server, server_bio, server_bio);
	SSL_set_connect_state(client);
	SSL_set_accept_state(server);

	for (i = 0; i < TEST_TLS_ROUNDS; i++) {
		if (c != 1)
			c = SSL_do_handshake(client);
		if (test_tls_failed(client, c))
			break;
		if (s != 1)
			s = SSL_do_handshake(server);
		if (test_tls_failed(server, s) || (c == 1 && s == 1))
			break;
	}

	result.connected = c == 1;
	result.verify = SSL_get_verify_result(client);
	if (!result.connected)
		result.error = tls_error_describe(client);
	ERR_clear_error();
	SSL_free(client);
	SSL_free(server);
	SSL_CTX_free(server_ctx);
	return result;
}

/* A server's self-signed key and certificate, and relayq's default client context. */
struct test_tls_pair {
	EVP_PKEY *key;
	X509 *cert;
	SSL_CTX *ctx;
};

/* Create the pair; false when it could not be created, which CHECK has counted. */
static bool
test_tls_pair_new(struct test_tls_pair *pair)
{
	test_tls_init();
	pair->key = EVP_EC_gen("P-256");
	CHECK(pair->key != NULL);
	pair->cert = test_tls_self_signed(pair->key);
	pair->ctx = test_tls_client_ctx();
	CHECK(pair->ctx != NULL);
	return pair->key != NULL && pair->ctx != NULL;
}

static void
test_tls_pair_free(struct test_tls_pair *pair)
{
	SSL_CTX_free(pair->ctx);
	X509_free(pair->cert);
	EVP_PKEY_free(pair->key);
}

static void
test_self_signed_server_rejected(void)
{
	struct test_tls_pair pair;
	struct test_tls_result result;

	if (!test_tls_pair_new(&pair))
		return;

	result = test_tls_handshake(pair.ctx, pair.cert, pair.key);
	CHECK(!result.connected);
	CHECK_INT_EQ(result.verify, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);
	CHECK(result.error != NULL &&
	    strstr(result.error, "self-signed certificate") != NULL);

	free(result.error);
	test_tls_pair_free(&pair);
}

/* The same handshake passes once the certificate is trusted, so the rejection above is about trust. */
static void
test_self_signed_server_trusted(void)
{
	struct test_tls_pair pair;
	struct test_tls_result result;

	if (!test_tls_pair_new(&pair))
		return;

	CHECK_INT_EQ(X509_STORE_add_cert(SSL_CTX_get_cert_store(pair.ctx),
	    pair.cert), 1);
	result = test_tls_handshake(pair.ctx, pair.cert, pair.key);
	CHECK(result.connected);
	CHECK_INT_EQ(result.verify, X509_V_OK);
	CHECK_STR_EQ(result.error, NULL);

	free(result.error);
	test_tls_pair_free(&pair);
}

#ifdef _WIN32
/* The first certificate in STORE, or NULL. */
static X509 *
test_tls_first_cert(X509_STORE *store, int *count)
{
	STACK_OF(X509_OBJECT) *objects = X509_STORE_get0_objects(store);
	X509 *first = NULL;
	int i;

	*count = 0;
	for (i = 0; i < sk_X509_OBJECT_num(objects); i++) {
		X509_OBJECT *object = sk_X509_OBJECT_value(objects, i);

		if (X509_OBJECT_get_type(object) != X509_LU_X509)
			continue;
		if (first == NULL)
			first = X509_OBJECT_get0_X509(object);
		(*count)++;
	}
	return first;
}

static void
test_windows_roots_loaded(void)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *verify = X509_STORE_CTX_new();
	char *errstr = NULL;
	size_t loaded = 0;
	X509 *root;
	int count;

	test_tls_init();
	CHECK_INT_EQ(tls_windows_load_roots(store, &loaded, &errstr), 0);
	CHECK_STR_EQ(errstr, NULL);
	free(errstr);
	CHECK(loaded >= 1);
	root = test_tls_first_cert(store, &count);
	CHECK(count >= 1);
	CHECK(root != NULL);

	/* A loaded root is a trust anchor: it verifies against the store by itself. */
	if (root != NULL) {
		CHECK_INT_EQ(X509_STORE_CTX_init(verify, store, root, NULL), 1);
		X509_STORE_CTX_set_flags(verify, X509_V_FLAG_NO_CHECK_TIME);
		CHECK_INT_EQ(X509_verify_cert(verify), 1);
		CHECK_INT_EQ(X509_STORE_CTX_get_error(verify), X509_V_OK);
	}
	X509_STORE_CTX_free(verify);
	X509_STORE_free(store);
}

/* Without ca_file and ca_path the client context gets the ROOT store. */
static void
test_windows_roots_in_client_ctx(void)
{
	SSL_CTX *ctx;
	int count = 0;

	test_tls_init();
	ctx = test_tls_client_ctx();
	CHECK(ctx != NULL);
	if (ctx == NULL)
		return;
	test_tls_first_cert(SSL_CTX_get_cert_store(ctx), &count);
	CHECK(count >= 1);
	SSL_CTX_free(ctx);
}
#endif

static const struct check_case check_cases[] = {
	CHECK_CASE(test_self_signed_server_rejected),
	CHECK_CASE(test_self_signed_server_trusted),
#ifdef _WIN32
	CHECK_CASE(test_windows_roots_loaded),
	CHECK_CASE(test_windows_roots_in_client_ctx),
#endif
};
CHECK_MAIN(check_cases)
