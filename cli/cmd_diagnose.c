/*
 * relayq diagnose: check each configured smart host endpoint step by
 * step with a small blocking SMTP client, and name the step that failed
 * with its likely cause. The steps are name lookup, TCP connect per
 * address, greeting, TLS and the certificate, AUTH and optionally a test
 * message.
 * It applies the daemon's TLS policy (common/tls.c) and credentials
 * (common/secret.c), but never prints a secret. Timeouts are the
 * configured ones, capped so that a diagnosis ends within minutes.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "address.h"
#include "cli.h"
#include "compat.h"
#include "exit_codes.h"
#include "log.h"
#include "message.h"
#include "sasl.h"
#include "secret.h"
#include "smtp_proto.h"
#include "tls.h"
#include "util.h"

/* Maximum wait for one network step, in seconds, even when the config allows more. */
#define DIAG_TIMEOUT_MAX 30
/* Maximum wait for a greeting, in seconds. Smart hosts greet within a second. */
#define DIAG_GREETING_MAX 10
/* Silence before a second connection checks whether the port expects TLS. */
#define DIAG_GREETING_HINT 5
/* Connect timeout for the alternative ports tried after a failed connect. */
#define DIAG_ALTERNATIVE_TIMEOUT 3
/* Maximum number of steps recorded for one endpoint. */
#define DIAG_STEPS_MAX 16

enum diag_result {
	DIAG_OK,
	DIAG_FAIL,
	DIAG_INFO,
};

struct diag_step {
	const char *name;
	enum diag_result result;
	char *detail;
	char *hint;		/* the likely cause and what to do; NULL when none */
};

struct diag_endpoint {
	const char *host;
	int port;
	enum tls_mode tls;
	struct diag_step steps[DIAG_STEPS_MAX];
	size_t step_count;
	int exit;		/* EX_OK, or the sysexits code of the first failure */
};

/* One connection: a blocking socket with send and receive timeouts, TLS once started. */
struct diag_conn {
	int fd;
	SSL *ssl;
	char buf[SMTP_REPLY_LINE_MAX];
	size_t len;
};

struct diag {
	struct cli *cli;
	const struct config *config;
	const struct config_smarthost *sh;
	SSL_CTX *ctx;
	const char *send_to;
	const char *send_from;
	int command_timeout;
};

static const struct option cmd_diagnose_options[] = {
	{ "send-test", required_argument, NULL, 's' },
	{ "from", required_argument, NULL, 'f' },
	{ "json", no_argument, NULL, 'j' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* The first X509 verification error seen by diag_verify_cb, or X509_V_OK. */
static long diag_verify_error;

static int
diag_timeout(int64_t configured)
{
	return configured > DIAG_TIMEOUT_MAX ? DIAG_TIMEOUT_MAX : (int)configured;
}

/* --- recording steps --- */

static void RELAYQ_PRINTF(4, 5)
diag_step(struct diag_endpoint *ep, const char *name, enum diag_result result,
    const char *fmt, ...)
{
	struct diag_step *step;
	va_list ap;

	if (ep->step_count == DIAG_STEPS_MAX)
		return;
	step = &ep->steps[ep->step_count++];
	step->name = name;
	step->result = result;
	va_start(ap, fmt);
	step->detail = xvasprintf(fmt, ap);
	va_end(ap);
}

/* Record a failed step with its cause, and the exit status it stands for. */
static int RELAYQ_PRINTF(5, 6)
diag_fail(struct diag_endpoint *ep, const char *name, int exit, const char *hint,
    const char *fmt, ...)
{
	struct diag_step *step;
	va_list ap;

	if (ep->step_count == DIAG_STEPS_MAX)
		return -1;
	step = &ep->steps[ep->step_count++];
	step->name = name;
	step->result = DIAG_FAIL;
	va_start(ap, fmt);
	step->detail = xvasprintf(fmt, ap);
	va_end(ap);
	step->hint = hint != NULL ? xstrdup(hint) : NULL;
	if (ep->exit == EX_OK)
		ep->exit = exit;
	return -1;
}

static void
diag_endpoint_clear(struct diag_endpoint *ep)
{
	size_t i;

	for (i = 0; i < ep->step_count; i++) {
		free(ep->steps[i].detail);
		free(ep->steps[i].hint);
	}
}

/* --- the connection --- */

static void
diag_conn_close(struct diag_conn *c)
{
	if (c->ssl != NULL) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	if (c->fd != -1)
		compat_socket_close(c->fd);
	c->ssl = NULL;
	c->fd = -1;
	c->len = 0;
}

static void
diag_set_timeouts(int fd, int seconds)
{
	compat_socket_set_timeouts(fd, seconds);
}

/*
 * Connect to AI within TIMEOUT seconds. Returns the socket, or -1 with
 * *TIMED_OUT telling a timeout from a refusal or another error in *ERR.
 */
static int
diag_connect(const struct addrinfo *ai, int timeout, bool *timed_out, int *err)
{
	socklen_t len = sizeof(*err);
	int fd, rc;

	*timed_out = false;
	*err = 0;
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd == -1) {
		*err = compat_socket_error();
		return -1;
	}
	compat_socket_set_nonblocking(fd, true);
	rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
	if (rc == -1 && !compat_socket_connect_pending(compat_socket_error())) {
		*err = compat_socket_error();
		compat_socket_close(fd);
		return -1;
	}
	if (rc == -1) {
		rc = compat_socket_wait_writable(fd, timeout * 1000);
		if (rc == 0) {
			*timed_out = true;
			compat_socket_close(fd);
			return -1;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, (void *)err, &len) == -1 ||
		    *err != 0) {
			if (*err == 0)
				*err = compat_socket_error();
			compat_socket_close(fd);
			return -1;
		}
	}
	compat_socket_set_nonblocking(fd, false);
	return fd;
}

static void
diag_addr_text(const struct addrinfo *ai, char *buf, size_t size)
{
	if (getnameinfo(ai->ai_addr, ai->ai_addrlen, buf, (socklen_t)size, NULL, 0,
	    NI_NUMERICHOST) != 0)
		snprintf(buf, size, "?");
}

static int
diag_write(struct diag_conn *c, const char *data, size_t len)
{
	ssize_t n;
	int w;

	while (len > 0) {
		if (c->ssl != NULL) {
			w = SSL_write(c->ssl, data, (int)len);
			if (w <= 0)
				return -1;
			n = w;
		} else {
			n = send(c->fd, data, len, MSG_NOSIGNAL);
			if (n == -1 && errno == EINTR)
				continue;
			if (n <= 0)
				return -1;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
diag_send_line(struct diag_conn *c, const char *line)
{
	if (diag_write(c, line, strlen(line)) == -1 || diag_write(c, "\r\n", 2) == -1)
		return -1;
	return 0;
}

/* Read one line without its CRLF into LINE; -1 on timeout, close or error. */
static int
diag_read_line(struct diag_conn *c, char *line, size_t size)
{
	char *eol;
	ssize_t n;
	size_t len;

	for (;;) {
		eol = memchr(c->buf, '\n', c->len);
		if (eol != NULL) {
			len = (size_t)(eol - c->buf);
			if (len > 0 && c->buf[len - 1] == '\r')
				len--;
			if (len >= size)
				len = size - 1;
			memcpy(line, c->buf, len);
			line[len] = '\0';
			c->len -= (size_t)(eol + 1 - c->buf);
			memmove(c->buf, eol + 1, c->len);
			return 0;
		}
		if (c->len == sizeof(c->buf))
			return -1;
		if (c->ssl != NULL)
			n = SSL_read(c->ssl, c->buf + c->len, (int)(sizeof(c->buf) - c->len));
		else
			n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (n == -1 && errno == EINTR && c->ssl == NULL)
			continue;
		if (n <= 0)
			return -1;
		c->len += (size_t)n;
	}
}

/* Read a complete reply; -1 when none arrived (timeout, close) or it was invalid. */
static int
diag_read_reply(struct diag_conn *c, struct smtp_reply *reply)
{
	struct smtp_reply_parser parser;
	enum smtp_reply_feed fed;
	char line[SMTP_REPLY_LINE_MAX];

	smtp_reply_parser_init(&parser);
	for (;;) {
		if (diag_read_line(c, line, sizeof(line)) == -1) {
			smtp_reply_parser_clear(&parser);
			return -1;
		}
		fed = smtp_reply_parser_feed(&parser, line, strlen(line));
		if (fed == SMTP_REPLY_INVALID) {
			smtp_reply_parser_clear(&parser);
			return -1;
		}
		if (fed == SMTP_REPLY_DONE)
			break;
	}
	smtp_reply_parser_take(&parser, reply);
	return 0;
}

/* Send LINE (NULL: send nothing) and read the reply. */
static int
diag_command(struct diag_conn *c, const char *line, struct smtp_reply *reply)
{
	if (line != NULL && diag_send_line(c, line) == -1)
		return -1;
	return diag_read_reply(c, reply);
}

/* --- TLS --- */

/* Let the handshake finish whatever the certificate, and remember the first problem. */
static int
diag_verify_cb(int ok, X509_STORE_CTX *store)
{
	if (!ok && diag_verify_error == X509_V_OK)
		diag_verify_error = X509_STORE_CTX_get_error(store);
	return 1;
}

static bool
diag_pin_matches(const struct config_smarthost *sh, X509 *cert)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	size_t i;

	if (X509_digest(cert, EVP_sha256(), md, &len) != 1 ||
	    len != CONFIG_FINGERPRINT_SIZE)
		return false;
	for (i = 0; i < sh->tls_fingerprint_count; i++)
		if (memcmp(md, sh->tls_fingerprints[i].sha256, len) == 0)
			return true;
	return false;
}

/* Report the certificate: who it names, and whether it passes the configured checks. */
static int
diag_certificate(struct diag *d, struct diag_endpoint *ep, SSL *ssl)
{
	char fingerprint[TLS_FINGERPRINT_TEXT_SIZE], *text;
	X509 *cert = SSL_get0_peer_certificate(ssl);
	long long expiry;

	if (cert == NULL)
		return diag_fail(ep, "certificate", EX_CONFIG, NULL,
		    "the server sent no certificate");
	text = tls_certificate_describe(cert);
	tls_fingerprint_format(cert, fingerprint);
	expiry = tls_certificate_expiry(cert);

	if (d->sh->tls_fingerprint_count > 0) {
		if (!diag_pin_matches(d->sh, cert)) {
			diag_fail(ep, "certificate", EX_CONFIG, "the server's "
			    "certificate changed, or smarthost.tls_fingerprint is "
			    "wrong; pin the SHA-256 fingerprint shown here if this "
			    "certificate is the right one", "%s; SHA-256 %s matches no "
			    "smarthost.tls_fingerprint", text, fingerprint);
			free(text);
			return -1;
		}
		diag_step(ep, "certificate", DIAG_OK, "%s; SHA-256 %s matches "
		    "smarthost.tls_fingerprint", text, fingerprint);
		free(text);
		return 0;
	}
	if (d->sh->tls_verify && diag_verify_error != X509_V_OK) {
		char *reason = xasprintf("%s; verification failed: %s", text,
		    X509_verify_cert_error_string(diag_verify_error));

		diag_fail(ep, "certificate", EX_CONFIG,
		    diag_verify_error == X509_V_ERR_HOSTNAME_MISMATCH ?
		    "smarthost.host must be a name in the certificate" :
		    diag_verify_error == X509_V_ERR_CERT_HAS_EXPIRED ?
		    "the certificate has expired: the smart host's admin must "
		    "renew it (or check this host's clock)" :
		    "set smarthost.ca_file to the CA that issued the certificate, "
		    "or pin a self-signed certificate with smarthost.tls_fingerprint",
		    "%s", reason);
		free(reason);
		free(text);
		return -1;
	}
	diag_step(ep, "certificate", DIAG_OK, "%s; SHA-256 %s; %s%s", text,
	    fingerprint, d->sh->tls_verify ? "verified for " : "not verified "
	    "(tls_verify: false) for ", ep->host);
	if (expiry >= 0 && expiry < now_seconds() + 14 * 24 * 3600)
		diag_step(ep, "certificate", DIAG_INFO, "the certificate expires "
		    "within 14 days");
	free(text);
	return 0;
}

/* Run the TLS handshake on C. IMPLICIT: the port was expected to start with TLS. */
static int
diag_tls(struct diag *d, struct diag_endpoint *ep, struct diag_conn *c,
    bool implicit)
{
	char *error = NULL, *reason;
	SSL *ssl;

	ssl = tls_client_ssl_new(d->ctx, ep->host, d->sh->tls_verify,
	    d->sh->tls_fingerprints, d->sh->tls_fingerprint_count, &error);
	if (ssl == NULL) {
		diag_fail(ep, "tls", EX_SOFTWARE, NULL, "%s", error);
		free(error);
		return -1;
	}
	SSL_set_verify(ssl, SSL_VERIFY_PEER, diag_verify_cb);
	diag_verify_error = X509_V_OK;
	SSL_set_fd(ssl, c->fd);

	ERR_clear_error();
	if (SSL_connect(ssl) != 1) {
		if (implicit && tls_peer_sent_plaintext(ssl)) {
			SSL_free(ssl);
			return diag_fail(ep, "tls", EX_CONFIG, "use tls: starttls "
			    "(or tls: none), not implicit, for this port",
			    "smarthost port %d answered in plain text instead of a "
			    "TLS handshake", ep->port);
		}
		reason = tls_error_describe(ssl);
		SSL_free(ssl);
		diag_fail(ep, "tls", EX_UNAVAILABLE, implicit ? "if the port "
		    "expects plain SMTP first, set tls: starttls" : NULL,
		    "TLS handshake failed: %s", reason);
		free(reason);
		return -1;
	}
	c->ssl = ssl;
	diag_step(ep, "tls", DIAG_OK, "%s %s", SSL_get_version(ssl),
	    SSL_get_cipher_name(ssl));
	return diag_certificate(d, ep, ssl);
}

/* True when a second connection to AI completes a TLS handshake (verification off). */
static bool
diag_probe_tls(struct diag *d, const struct addrinfo *ai, const char *host)
{
	bool timed_out, ok;
	char *error = NULL;
	SSL *ssl;
	int fd, err;

	fd = diag_connect(ai, DIAG_GREETING_HINT, &timed_out, &err);
	if (fd == -1)
		return false;
	diag_set_timeouts(fd, DIAG_GREETING_HINT);
	ssl = tls_client_ssl_new(d->ctx, host, false, NULL, 0, &error);
	if (ssl == NULL) {
		free(error);
		compat_socket_close(fd);
		return false;
	}
	SSL_set_fd(ssl, fd);
	ok = SSL_connect(ssl) == 1;
	ERR_clear_error();
	SSL_free(ssl);
	compat_socket_close(fd);
	return ok;
}

/* --- steps --- */

static int
diag_lookup(struct diag_endpoint *ep, struct addrinfo **res)
{
	struct addrinfo hints, *ai;
	char port[16], addr[INET6_ADDRSTRLEN], *list = xstrdup(""), *joined;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	snprintf(port, sizeof(port), "%d", ep->port);
	rc = getaddrinfo(ep->host, port, &hints, res);
	if (rc != 0) {
		free(list);
		return diag_fail(ep, "lookup", EX_UNAVAILABLE, "check the spelling "
		    "of smarthost.host and this host's DNS settings; relayqd "
		    "keeps mail queued and retries while names do not resolve",
		    "cannot resolve %s: %s", ep->host, gai_strerror(rc));
	}
	for (ai = *res; ai != NULL; ai = ai->ai_next) {
		diag_addr_text(ai, addr, sizeof(addr));
		joined = xasprintf("%s%s%s", list, list[0] != '\0' ? ", " : "", addr);
		free(list);
		list = joined;
	}
	diag_step(ep, "lookup", DIAG_OK, "%s has %s", ep->host, list);
	free(list);
	return 0;
}

/* After a failed connect: which of the usual submission ports answer on the first address. */
static char *
diag_alternative_ports(const struct diag_endpoint *ep, const struct addrinfo *ai)
{
	static const int ports[] = { 25, 2525, 587, 465 };
	struct addrinfo copy = *ai;
	struct sockaddr_storage ss;
	char *open_ports = xstrdup(""), *joined;
	bool timed_out;
	size_t i;
	int fd, err;

	for (i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		if (ports[i] == ep->port)
			continue;
		memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
		if (ss.ss_family == AF_INET6)
			((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)ports[i]);
		else
			((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)ports[i]);
		copy.ai_addr = (struct sockaddr *)&ss;
		fd = diag_connect(&copy, DIAG_ALTERNATIVE_TIMEOUT, &timed_out, &err);
		if (fd == -1)
			continue;
		compat_socket_close(fd);
		joined = xasprintf("%s%s%d", open_ports, open_ports[0] != '\0' ?
		    ", " : "", ports[i]);
		free(open_ports);
		open_ports = joined;
	}
	return open_ports;
}

/* Connect to each address in turn; keep the first connection that works. */
static int
diag_connect_step(struct diag *d, struct diag_endpoint *ep, struct addrinfo *res,
    struct diag_conn *c, const struct addrinfo **used)
{
	const struct addrinfo *ai;
	char addr[INET6_ADDRSTRLEN], *hint, *others;
	bool timed_out, any_timeout = false;
	int64_t started;
	int err, timeout = diag_timeout(d->sh->timeouts.connect);

	for (ai = res; ai != NULL; ai = ai->ai_next) {
		diag_addr_text(ai, addr, sizeof(addr));
		started = now_millis();
		c->fd = diag_connect(ai, timeout, &timed_out, &err);
		if (c->fd != -1) {
			diag_step(ep, "connect", DIAG_OK, "%s port %d in %lld ms", addr,
			    ep->port, (long long)(now_millis() - started));
			*used = ai;
			return 0;
		}
		any_timeout |= timed_out;
		diag_step(ep, "connect", DIAG_INFO, "%s port %d: %s", addr, ep->port,
		    timed_out ? "timed out" : compat_socket_strerror(err));
	}

	others = diag_alternative_ports(ep, res);
	if (any_timeout)
		hint = xasprintf("a firewall probably drops traffic to port %d; "
		    "ask for it to be opened, or try another port of the smart "
		    "host (25, 2525, 587 or 465)%s%s", ep->port, others[0] != '\0' ?
		    "; these answered: " : "", others);
	else
		hint = xasprintf("nothing accepts connections on port %d (wrong "
		    "port, the service is down, or a firewall rejects it); the "
		    "usual ports are 25, 2525, 587 (STARTTLS) and 465 (implicit "
		    "TLS)%s%s", ep->port, others[0] != '\0' ?
		    "; these answered: " : "", others);
	diag_fail(ep, "connect", EX_UNAVAILABLE, hint, "no address of %s accepted "
	    "a connection on port %d (%s)", ep->host, ep->port, any_timeout ?
	    "timed out" : "refused");
	free(hint);
	free(others);
	return -1;
}

/* Read the greeting; with silence, check whether the port expects TLS. */
static int
diag_greeting(struct diag *d, struct diag_endpoint *ep, struct diag_conn *c,
    const struct addrinfo *ai)
{
	struct smtp_reply reply;
	char *text;
	int wait = diag_timeout(d->sh->timeouts.greeting), rc;

	if (wait > DIAG_GREETING_MAX)
		wait = DIAG_GREETING_MAX;
	memset(&reply, 0, sizeof(reply));
	diag_set_timeouts(c->fd, wait < DIAG_GREETING_HINT ? wait : DIAG_GREETING_HINT);
	rc = diag_read_reply(c, &reply);

	/* Silence: a port that waits for a ClientHello answers a TLS probe. */
	if (rc == -1 && c->len == 0 && wait > DIAG_GREETING_HINT && c->ssl == NULL) {
		if (diag_probe_tls(d, ai, ep->host))
			return diag_fail(ep, "greeting", EX_CONFIG, "use tls: implicit, "
			    "not starttls or none, for this port", "smarthost port %d "
			    "sent no greeting within %ds but answers a TLS handshake",
			    ep->port, DIAG_GREETING_HINT);
		diag_set_timeouts(c->fd, wait - DIAG_GREETING_HINT);
		rc = diag_read_reply(c, &reply);
	}
	if (rc == -1)
		return diag_fail(ep, "greeting", EX_UNAVAILABLE, c->len == 0 ?
		    "the port accepts connections but sends nothing: it is not an "
		    "SMTP server, or the server is overloaded" : "the port does "
		    "not speak SMTP", "no valid greeting within %ds", wait);

	text = smtp_reply_format(&reply);
	if (reply.code != 220) {
		diag_fail(ep, "greeting", EX_UNAVAILABLE, "the smart host refuses "
		    "sessions from this host: ask its admin to allow this address",
		    "%s", text);
		free(text);
		smtp_reply_clear(&reply);
		return -1;
	}
	diag_step(ep, "greeting", DIAG_OK, "%s", text);
	free(text);
	smtp_reply_clear(&reply);
	return 0;
}

/* EHLO; *EHLO receives the reply text for the extensions. */
static int
diag_ehlo(struct diag_endpoint *ep, struct diag_conn *c, const char *name,
    const char *step, char **ehlo)
{
	struct smtp_reply reply;
	char *line = xasprintf("EHLO %s", name), *text, *p;
	int rc = diag_command(c, line, &reply);

	free(line);
	if (rc == -1)
		return diag_fail(ep, step, EX_UNAVAILABLE, NULL, "no reply to EHLO");
	if (smtp_reply_class(reply.code) != 2) {
		text = smtp_reply_format(&reply);
		diag_fail(ep, step, EX_UNAVAILABLE, NULL, "EHLO rejected: %s", text);
		free(text);
		smtp_reply_clear(&reply);
		return -1;
	}

	/* The keywords after the first line, on one line for the report. */
	p = strchr(reply.text, '\n');
	text = xstrdup(p != NULL ? p + 1 : "");
	for (p = text; *p != '\0'; p++)
		if (*p == '\n')
			*p = ' ';
	diag_step(ep, step, DIAG_OK, "%s", text[0] != '\0' ? text : "(no extensions)");
	free(text);
	*ehlo = reply.text;
	reply.text = NULL;
	return 0;
}

/* Run the exchange of MECHANISM with SECRET; *REPLY receives the final reply. */
static int
diag_auth_run(struct diag *d, struct diag_conn *c, enum auth_mechanism mechanism,
    const char *secret, size_t len, struct smtp_reply *reply)
{
	const char *user = d->sh->username;
	char *response = NULL, *line;
	int rc;

	switch (mechanism) {
	case AUTH_MECHANISM_PLAIN:
		response = sasl_plain_response(user, secret, len);
		line = xasprintf("AUTH PLAIN %s", response);
		rc = diag_command(c, line, reply);
		secret_free(line, strlen(line));
		break;
	case AUTH_MECHANISM_XOAUTH2:
		response = sasl_xoauth2_response(user, secret, len);
		line = xasprintf("AUTH XOAUTH2 %s", response);
		rc = diag_command(c, line, reply);
		secret_free(line, strlen(line));
		/* RFC 7628: an empty line answers the error challenge. */
		if (rc == 0 && reply->code == 334) {
			smtp_reply_clear(reply);
			rc = diag_command(c, "", reply);
		}
		break;
	case AUTH_MECHANISM_LOGIN:
		rc = diag_command(c, "AUTH LOGIN", reply);
		if (rc == 0 && reply->code == 334) {
			smtp_reply_clear(reply);
			response = sasl_base64(user, strlen(user));
			rc = diag_command(c, response, reply);
			free(response);
			response = NULL;
		}
		if (rc == 0 && reply->code == 334) {
			smtp_reply_clear(reply);
			response = sasl_base64(secret, len);
			rc = diag_command(c, response, reply);
		}
		break;
	case AUTH_MECHANISM_CRAM_MD5:
	default:
		rc = diag_command(c, "AUTH CRAM-MD5", reply);
		if (rc == 0 && reply->code == 334) {
			response = sasl_cram_md5_response(user, secret, len,
			    reply->text);
			smtp_reply_clear(reply);
			rc = response != NULL ? diag_command(c, response, reply) : -1;
		}
		break;
	}
	if (response != NULL)
		secret_free(response, strlen(response));
	return rc;
}

static int
diag_auth(struct diag *d, struct diag_endpoint *ep, struct diag_conn *c,
    const char *ehlo)
{
	const struct config_smarthost *sh = d->sh;
	struct smtp_reply reply;
	char *secret = NULL, *error = NULL, *offered, *text;
	size_t len = 0, plen = 0;
	const char *param;
	int index = 0, rc;

	if (c->ssl == NULL && ep->tls != TLS_MODE_NONE)
		return diag_fail(ep, "auth", EX_CONFIG, "use a port with STARTTLS, "
		    "or set tls: none to allow the password in plain text",
		    "no TLS, so relayqd would not send the password");
	param = smtp_ehlo_find(ehlo, "AUTH", &plen);
	if (param == NULL)
		return diag_fail(ep, "auth", EX_CONFIG, "use the smart host's "
		    "submission port (usually 587), or remove smarthost.username "
		    "if the relay accepts this host without a password",
		    "the server does not offer AUTH, but smarthost.username is set");
	offered = xstrndup(param, plen);
	diag_step(ep, "auth", DIAG_INFO, "offered: %s", offered);

	if (secret_read(sh, true, &secret, &len, &error) == -1) {
		diag_fail(ep, "auth", EX_CONFIG, NULL, "%s", error);
		free(error);
		free(offered);
		return -1;
	}

	for (;;) {
		index = sasl_choose(sh->auth_mechanisms, sh->auth_mechanism_count,
		    (size_t)index, param, plen);
		if (index == -1) {
			diag_fail(ep, "auth", EX_CONFIG, "add a mechanism the server "
			    "offers to smarthost.auth_mechanisms", "no mechanism of "
			    "smarthost.auth_mechanisms is offered and accepted (offered: "
			    "%s)", offered);
			rc = -1;
			break;
		}
		memset(&reply, 0, sizeof(reply));
		if (diag_auth_run(d, c, sh->auth_mechanisms[index], secret, len,
		    &reply) == -1) {
			rc = diag_fail(ep, "auth", EX_UNAVAILABLE, NULL, "no reply to "
			    "AUTH %s", auth_mechanism_name(sh->auth_mechanisms[index]));
			break;
		}
		text = smtp_reply_format(&reply);
		if (reply.code == 504 || reply.code == 534) {
			diag_step(ep, "auth", DIAG_INFO, "AUTH %s: %s; trying the next "
			    "mechanism", auth_mechanism_name(sh->auth_mechanisms[index]),
			    text);
			free(text);
			smtp_reply_clear(&reply);
			index++;
			continue;
		}
		if (reply.code == 235) {
			diag_step(ep, "auth", DIAG_OK, "AUTH %s accepted for user %s",
			    auth_mechanism_name(sh->auth_mechanisms[index]),
			    sh->username);
			rc = 0;
		} else if (smtp_reply_class(reply.code) == 4) {
			rc = diag_fail(ep, "auth", EX_TEMPFAIL, "the server cannot check "
			    "credentials now; try again later", "AUTH %s: %s",
			    auth_mechanism_name(sh->auth_mechanisms[index]), text);
		} else {
			rc = diag_fail(ep, "auth", EX_CONFIG, "the user name or the "
			    "password (or token) is wrong, or the account may not send "
			    "through this relay; relayqd holds all mail until it is fixed",
			    "AUTH %s rejected for user %s: %s",
			    auth_mechanism_name(sh->auth_mechanisms[index]),
			    sh->username, text);
		}
		free(text);
		smtp_reply_clear(&reply);
		break;
	}
	secret_free(secret, len);
	free(offered);
	return rc;
}

/* One command of the test transaction; fails the step unless the reply has class WANT. */
static int
diag_transaction_command(struct diag_endpoint *ep, struct diag_conn *c,
    const char *line, int want, const char *what)
{
	struct smtp_reply reply;
	char *text;
	int klass;

	if (diag_command(c, line, &reply) == -1)
		return diag_fail(ep, "send-test", EX_UNAVAILABLE, NULL, "no reply "
		    "to %s", what);
	klass = smtp_reply_class(reply.code);
	if (klass == want || (want == 3 && reply.code == 354)) {
		smtp_reply_clear(&reply);
		return 0;
	}
	text = smtp_reply_format(&reply);
	diag_fail(ep, "send-test", klass == 4 ? EX_TEMPFAIL : EX_UNAVAILABLE,
	    klass == 5 && strcmp(what, "MAIL FROM") == 0 ? "the relay may "
	    "accept only senders of the authenticated account: try --from" : NULL,
	    "%s rejected: %s", what, text);
	free(text);
	smtp_reply_clear(&reply);
	return -1;
}

static int
diag_send_test(struct diag *d, struct diag_endpoint *ep, struct diag_conn *c)
{
	struct smtp_reply reply;
	char date[64], *line, *message_id, *text;
	int rc;

	line = xasprintf("MAIL FROM:<%s>", d->send_from);
	rc = diag_transaction_command(ep, c, line, 2, "MAIL FROM");
	free(line);
	if (rc == -1)
		return -1;
	line = xasprintf("RCPT TO:<%s>", d->send_to);
	rc = diag_transaction_command(ep, c, line, 2, "RCPT TO");
	free(line);
	if (rc == -1 || diag_transaction_command(ep, c, "DATA", 3, "DATA") == -1)
		return -1;

	time_format_rfc5322(now_seconds(), date, sizeof(date));
	message_id = message_id_generate(host_fqdn());
	line = xasprintf("From: <%s>\r\nTo: <%s>\r\nSubject: relayq diagnose test "
	    "message\r\nDate: %s\r\nMessage-ID: %s\r\n\r\nThis message was sent "
	    "by relayq diagnose on %s through %s:%d to check the smart host.\r\n.",
	    d->send_from, d->send_to, date, message_id, host_fqdn(), ep->host,
	    ep->port);
	free(message_id);
	rc = diag_command(c, line, &reply);
	free(line);
	if (rc == -1)
		return diag_fail(ep, "send-test", EX_UNAVAILABLE, "the smart host "
		    "may or may not have the message", "no reply after the message");
	text = smtp_reply_format(&reply);
	if (smtp_reply_class(reply.code) == 2)
		diag_step(ep, "send-test", DIAG_OK, "message to <%s> accepted: %s",
		    d->send_to, text);
	else
		diag_fail(ep, "send-test", smtp_reply_class(reply.code) == 4 ?
		    EX_TEMPFAIL : EX_UNAVAILABLE, NULL, "message rejected: %s", text);
	free(text);
	rc = smtp_reply_class(reply.code) == 2 ? 0 : -1;
	smtp_reply_clear(&reply);
	return rc;
}

/* The SMTP part after connect: greeting, EHLO, STARTTLS, AUTH, test message. */
static int
diag_session(struct diag *d, struct diag_endpoint *ep, struct diag_conn *c,
    const struct addrinfo *ai)
{
	const char *name = d->sh->helo_name != NULL ? d->sh->helo_name : host_fqdn();
	struct smtp_reply reply;
	char *ehlo = NULL;
	int rc = -1;

	if (ep->tls == TLS_MODE_IMPLICIT && diag_tls(d, ep, c, true) == -1)
		return -1;
	if (diag_greeting(d, ep, c, ai) == -1)
		return -1;
	diag_set_timeouts(c->fd, d->command_timeout);
	if (diag_ehlo(ep, c, name, "ehlo", &ehlo) == -1)
		return -1;

	if (ep->tls == TLS_MODE_STARTTLS || ep->tls == TLS_MODE_OPPORTUNISTIC) {
		if (smtp_ehlo_find(ehlo, "STARTTLS", NULL) == NULL) {
			if (ep->tls == TLS_MODE_STARTTLS) {
				diag_fail(ep, "starttls", EX_CONFIG, "use the port that "
				    "offers STARTTLS (usually 587), tls: implicit for a "
				    "port that starts with TLS (usually 465), or tls: "
				    "opportunistic", "the server does not offer STARTTLS");
				goto done;
			}
			diag_step(ep, "starttls", DIAG_INFO, "not offered: "
			    "tls: opportunistic goes on in plain text");
		} else {
			if (diag_command(c, "STARTTLS", &reply) == -1 || reply.code != 220) {
				diag_fail(ep, "starttls", EX_UNAVAILABLE, NULL,
				    "STARTTLS rejected");
				smtp_reply_clear(&reply);
				goto done;
			}
			smtp_reply_clear(&reply);
			if (diag_tls(d, ep, c, false) == -1)
				goto done;
			free(ehlo);
			ehlo = NULL;
			if (diag_ehlo(ep, c, name, "ehlo-after-tls", &ehlo) == -1)
				goto done;
		}
	}

	if (d->sh->username != NULL && diag_auth(d, ep, c, ehlo) == -1)
		goto done;
	if (d->send_to != NULL && diag_send_test(d, ep, c) == -1)
		goto done;
	rc = 0;

done:
	if (diag_command(c, "QUIT", &reply) == 0)
		smtp_reply_clear(&reply);
	free(ehlo);
	return rc;
}

static void
diag_endpoint_run(struct diag *d, struct diag_endpoint *ep)
{
	struct diag_conn conn = { .fd = -1 };
	const struct addrinfo *used = NULL;
	struct addrinfo *res = NULL;

	if (diag_lookup(ep, &res) == -1)
		return;
	if (diag_connect_step(d, ep, res, &conn, &used) == 0) {
		diag_set_timeouts(conn.fd, diag_timeout(d->sh->timeouts.connect));
		diag_session(d, ep, &conn, used);
	}
	diag_conn_close(&conn);
	freeaddrinfo(res);
}

/* --- output --- */

static const char *
diag_result_name(enum diag_result result)
{
	switch (result) {
	case DIAG_OK:
		return "ok";
	case DIAG_FAIL:
		return "FAILED";
	default:
		return "info";
	}
}

static void
diag_print_text(struct diag_endpoint *eps, size_t count)
{
	char *detail, *hint;
	size_t i, j;

	for (i = 0; i < count; i++) {
		if (eps[i].port == 0)
			printf("%sconfiguration\n", i == 0 ? "" : "\n");
		else
			printf("%sendpoint %s:%d (tls: %s)\n", i == 0 ? "" : "\n",
			    eps[i].host, eps[i].port, tls_mode_name(eps[i].tls));
		for (j = 0; j < eps[i].step_count; j++) {
			const struct diag_step *step = &eps[i].steps[j];

			detail = cli_escape(step->detail, strlen(step->detail), 0, NULL);
			printf("  %-7s %-15s %s\n", diag_result_name(step->result),
			    step->name, detail);
			free(detail);
			if (step->hint != NULL) {
				hint = cli_escape(step->hint, strlen(step->hint), 0, NULL);
				printf("  %-7s %-15s %s\n", "", "likely cause", hint);
				free(hint);
			}
		}
		printf("  result: %s\n", eps[i].exit == EX_OK ? "all steps passed" :
		    "failed");
	}
}

static void
diag_print_json(struct diag_endpoint *eps, size_t count, int exit)
{
	struct json_writer *w = json_writer_new(stdout, JSON_PRETTY);
	size_t i, j;

	json_object_begin(w);
	json_key(w, "ok");
	json_bool(w, exit == EX_OK);
	json_key(w, "exit_code");
	json_int(w, exit);
	json_key(w, "endpoints");
	json_array_begin(w);
	for (i = 0; i < count; i++) {
		json_object_begin(w);
		json_key(w, "host");
		json_string(w, eps[i].host);
		json_key(w, "port");
		if (eps[i].port == 0)
			json_null(w);
		else
			json_int(w, eps[i].port);
		json_key(w, "tls");
		json_string(w, tls_mode_name(eps[i].tls));
		json_key(w, "ok");
		json_bool(w, eps[i].exit == EX_OK);
		json_key(w, "steps");
		json_array_begin(w);
		for (j = 0; j < eps[i].step_count; j++) {
			const struct diag_step *step = &eps[i].steps[j];

			json_object_begin(w);
			json_key(w, "step");
			json_string(w, step->name);
			json_key(w, "result");
			json_string(w, step->result == DIAG_OK ? "ok" :
			    step->result == DIAG_FAIL ? "failed" : "info");
			json_key(w, "detail");
			json_string(w, step->detail);
			json_key(w, "hint");
			if (step->hint != NULL)
				json_string(w, step->hint);
			else
				json_null(w);
			json_object_end(w);
		}
		json_array_end(w);
		json_object_end(w);
	}
	json_array_end(w);
	json_object_end(w);
	json_writer_free(w);
	fputc('\n', stdout);
}

/* --- the command --- */

/* Fill EPS with the primary and the fallbacks, as the scheduler orders them. */
static size_t
diag_endpoints(const struct config_smarthost *sh, struct diag_endpoint **eps)
{
	size_t i, count = 1 + sh->fallback_count;

	*eps = xcalloc(count, sizeof(**eps));
	(*eps)[0].host = sh->host;
	(*eps)[0].port = sh->port;
	(*eps)[0].tls = sh->tls;
	for (i = 0; i < sh->fallback_count; i++) {
		(*eps)[i + 1].host = sh->fallback[i].host;
		(*eps)[i + 1].port = sh->fallback[i].port;
		(*eps)[i + 1].tls = sh->fallback[i].tls;
	}
	return count;
}

static int
diag_parse(struct cli *cli, int argc, char **argv, struct diag *d, bool *json,
    bool *help)
{
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, ":h", cmd_diagnose_options,
	    NULL)) != -1) {
		switch (ch) {
		case 's':
			d->send_to = optarg;
			break;
		case 'f':
			d->send_from = optarg;
			break;
		case 'j':
			*json = true;
			break;
		case 'h':
			*help = true;
			return EX_OK;
		default:
			return cli_option_error(cli, "diagnose", ch, argv);
		}
	}
	if (optind != argc)
		return cli_usage_error(cli, "diagnose", "unexpected argument \"%s\"",
		    argv[optind]);
	if (d->send_to != NULL && !address_is_valid(d->send_to))
		return cli_usage_error(cli, "diagnose", "--send-test: invalid "
		    "address \"%s\"", d->send_to);
	if (d->send_from != NULL && !address_is_valid(d->send_from))
		return cli_usage_error(cli, "diagnose", "--from: invalid address "
		    "\"%s\"", d->send_from);
	return EX_OK;
}

int
cmd_diagnose(struct cli *cli, int argc, char **argv)
{
	struct diag d = { .cli = cli };
	struct diag_endpoint *eps = NULL, config_ep = { 0 };
	char *error = NULL, *from = NULL;
	bool json = false, help = false;
	size_t count, i;
	int rc, exit = EX_OK;

	rc = diag_parse(cli, argc, argv, &d, &json, &help);
	if (rc != EX_OK || help)
		return help ? cli_usage(cli, "diagnose") : rc;
	if (config_load(cli->config_path, &cli->config, &error) == -1) {
		cli_warn(cli, "%s", error);
		free(error);
		return EX_CONFIG;
	}
	d.config = cli->config;
	d.sh = &cli->config->smarthost;
	d.command_timeout = diag_timeout(d.sh->timeouts.command);
	if (d.send_to != NULL && d.send_from == NULL) {
		from = d.sh->username != NULL && strchr(d.sh->username, '@') != NULL ?
		    xstrdup(d.sh->username) : xasprintf("relayq@%s", host_fqdn());
		d.send_from = from;
	}

	/* Checks that need no network: the password source and the TLS settings. */
	config_ep.host = "(configuration)";
	if (secret_check_config(d.sh, &error) == -1) {
		diag_fail(&config_ep, "credentials", EX_CONFIG, NULL, "%s", error);
		free(error);
		error = NULL;
	}
	d.ctx = tls_client_ctx_new(cli->config, &error);
	if (d.ctx == NULL) {
		diag_fail(&config_ep, "tls-settings", EX_CONFIG, NULL, "%s", error);
		free(error);
	}

	count = diag_endpoints(d.sh, &eps);
	for (i = 0; i < count && d.ctx != NULL; i++) {
		diag_endpoint_run(&d, &eps[i]);
		if (exit == EX_OK)
			exit = eps[i].exit;
	}
	if (config_ep.exit != EX_OK)
		exit = config_ep.exit;

	if (config_ep.step_count > 0) {
		/* Configuration problems come first, reported like an endpoint of their own. */
		struct diag_endpoint *all = xcalloc(count + 1, sizeof(*all));

		all[0] = config_ep;
		memcpy(all + 1, eps, count * sizeof(*eps));
		free(eps);
		eps = all;
		count++;
	}
	if (json)
		diag_print_json(eps, count, exit);
	else
		diag_print_text(eps, count);

	for (i = 0; i < count; i++)
		diag_endpoint_clear(&eps[i]);
	free(eps);
	free(from);
	if (d.ctx != NULL)
		SSL_CTX_free(d.ctx);
	return exit;
}
