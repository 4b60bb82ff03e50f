/*
 * Calls into every statically linked dependency once: Winsock with a
 * libevent loop and a loopback socket pair, an OpenSSL TLS context wrapped
 * in a libevent bufferevent, an in-memory SQLite database, and a libyaml
 * parse. Exits 0 when all of them work.
 */
#include <stdio.h>
#include <string.h>

#include <winsock2.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sqlite3.h>
#include <yaml.h>

static int
depcheck_fail(const char *what)
{
	fprintf(stderr, "depcheck: %s failed\n", what);
	return -1;
}

static int
depcheck_libevent(void)
{
	struct event_base *base;
	struct evdns_base *dns;
	evutil_socket_t pair[2];
	char buf[4];
	int rc = -1;

	base = event_base_new();
	if (base == NULL)
		return depcheck_fail("event_base_new");
	dns = evdns_base_new(base, 0);
	if (dns == NULL) {
		event_base_free(base);
		return depcheck_fail("evdns_base_new");
	}

	if (evutil_socketpair(AF_INET, SOCK_STREAM, 0, pair) == -1) {
		depcheck_fail("evutil_socketpair");
		goto out;
	}
	if (send(pair[0], "ok", 2, 0) != 2 || recv(pair[1], buf, 2, 0) != 2 ||
	    memcmp(buf, "ok", 2) != 0)
		depcheck_fail("loopback socket pair transfer");
	else
		rc = 0;
	evutil_closesocket(pair[0]);
	evutil_closesocket(pair[1]);

	printf("libevent %s, backend %s\n", event_get_version(),
	    event_base_get_method(base));
out:
	evdns_base_free(dns, 0);
	event_base_free(base);
	return rc;
}

static int
depcheck_openssl(void)
{
	struct event_base *base;
	struct bufferevent *bev;
	SSL_CTX *ctx;
	SSL *ssl;
	int rc = -1;

	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		return depcheck_fail("SSL_CTX_new");
	ssl = SSL_new(ctx);
	base = event_base_new();
	if (ssl == NULL || base == NULL) {
		depcheck_fail("SSL_new or event_base_new");
		SSL_free(ssl);
		goto out;
	}

	/* BEV_OPT_CLOSE_ON_FREE makes the bufferevent free SSL. */
	bev = bufferevent_openssl_socket_new(base, -1, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		depcheck_fail("bufferevent_openssl_socket_new");
		goto out;
	}
	bufferevent_free(bev);
	printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
	rc = 0;
out:
	if (base != NULL)
		event_base_free(base);
	SSL_CTX_free(ctx);
	return rc;
}

static int
depcheck_sqlite(void)
{
	sqlite3 *db;
	int rc;

	if (sqlite3_open_v2(":memory:", &db,
	    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
		sqlite3_close(db);
		return depcheck_fail("sqlite3_open_v2");
	}
	rc = sqlite3_exec(db, "CREATE TABLE t (x); INSERT INTO t VALUES (1);",
	    NULL, NULL, NULL);
	sqlite3_close(db);
	if (rc != SQLITE_OK)
		return depcheck_fail("sqlite3_exec");

	printf("SQLite %s\n", sqlite3_libversion());
	return 0;
}

static int
depcheck_libyaml(void)
{
	static const unsigned char doc[] = "queue:\n  path: queue.db\n";
	yaml_parser_t parser;
	yaml_document_t document;
	int ok;

	if (!yaml_parser_initialize(&parser))
		return depcheck_fail("yaml_parser_initialize");
	yaml_parser_set_input_string(&parser, doc, sizeof(doc) - 1);
	ok = yaml_parser_load(&parser, &document);
	if (ok)
		yaml_document_delete(&document);
	yaml_parser_delete(&parser);
	if (!ok)
		return depcheck_fail("yaml_parser_load");

	printf("libyaml %s\n", yaml_get_version_string());
	return 0;
}

int
main(void)
{
	WSADATA wsa;
	int failed = 0;

	/* libevent does not start Winsock, and its socket calls need it. */
	if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) {
		depcheck_fail("WSAStartup");
		return 1;
	}

	failed |= depcheck_libevent() == -1;
	failed |= depcheck_openssl() == -1;
	failed |= depcheck_sqlite() == -1;
	failed |= depcheck_libyaml() == -1;

	WSACleanup();
	return failed ? 1 : 0;
}
