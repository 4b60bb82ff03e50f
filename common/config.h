/*
 * The configuration file (YAML): loading, validation and defaults.
 * A loaded config is immutable; config_free() releases it and wipes
 * nothing secret because secrets are never stored here, only file names.
 */
#ifndef RELAYQ_CONFIG_H
#define RELAYQ_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

enum tls_mode {
	TLS_MODE_NONE,
	TLS_MODE_STARTTLS,
	TLS_MODE_IMPLICIT,
	TLS_MODE_OPPORTUNISTIC,	/* STARTTLS when offered, else plain text */
};

/* SASL mechanisms for SMTP AUTH, tried in the configured order. */
enum auth_mechanism {
	AUTH_MECHANISM_PLAIN,
	AUTH_MECHANISM_LOGIN,
	AUTH_MECHANISM_CRAM_MD5,
	AUTH_MECHANISM_XOAUTH2,
};
#define AUTH_MECHANISM_COUNT (AUTH_MECHANISM_XOAUTH2 + 1)

/* Who receives delivery status notifications ("dsn:" section). */
enum dsn_mode {
	DSN_MODE_SENDER,	/* the envelope sender */
	DSN_MODE_ADMIN,		/* dsn.address only */
	DSN_MODE_OFF,
};

/* SHA-256 digest of a certificate's DER encoding, for smarthost.tls_fingerprint. */
#define CONFIG_FINGERPRINT_SIZE 32
struct config_fingerprint {
	unsigned char sha256[CONFIG_FINGERPRINT_SIZE];
};

enum uncertain_policy {
	UNCERTAIN_RETRY,
	UNCERTAIN_HOLD,
};

/* Who must authenticate on an SMTP listener (the "auth" key). */
enum smtpd_auth {
	SMTPD_AUTH_OFF,		/* AUTH is not offered */
	SMTPD_AUTH_OPTIONAL,	/* offered; clients may submit without it */
	SMTPD_AUTH_REQUIRED,	/* MAIL before AUTH gets 530 */
};

/* An IP network of an "allow" list, such as 192.168.1.0/24. */
struct config_network {
	int family;			/* 4 or 6 */
	unsigned char addr[16];		/* network byte order; host bits are zero */
	int prefix;			/* prefix length in bits */
};

struct config_networks {
	struct config_network *items;
	size_t count;
};

/*
 * One "listen:" entry: "127.0.0.1:25", "[::1]:25", or a mapping with an
 * address and the settings below. Every setting the entry leaves out has
 * the value of the key of the same name in "smtpd:".
 */
struct config_listen {
	char *host;		/* numeric address without brackets */
	char *port;		/* numeric port as text */
	char *text;		/* the address as written, for messages */
	size_t line, column;	/* position of the entry in the file; 0 for the default */

	struct config_networks allow;	/* clients that may connect */
	char *tls_cert;			/* PEM certificate chain for STARTTLS */
	char *tls_key;			/* PEM private key for STARTTLS */
	bool starttls;			/* offer STARTTLS */
	enum smtpd_auth auth;
	char *users_file;		/* "user:$crypt-hash" lines for AUTH */
	bool auth_plaintext_loopback;	/* offer AUTH without TLS to loopback clients */
	uint64_t max_message_size;	/* advertised in SIZE */
	int max_recipients;
	int max_connections;		/* concurrent sessions on this listener */
	int max_connections_per_client;	/* concurrent sessions of one client address */
	bool smtputf8;			/* offer SMTPUTF8 (RFC 6531) */
	uint64_t set;			/* bit per listener key given in the file */
};

/* Client timeouts in seconds, one per stage (RFC 5321 section 4.5.3.2). */
struct config_timeouts {
	int64_t connect;	/* TCP connect and TLS handshake: 30s */
	int64_t greeting;	/* 220 greeting: 5m */
	int64_t command;	/* EHLO, STARTTLS, AUTH, RSET, QUIT replies: 5m */
	int64_t mail;		/* MAIL reply: 5m */
	int64_t rcpt;		/* RCPT reply: 5m */
	int64_t data_init;	/* 354 reply to DATA: 2m */
	int64_t data_block;	/* each write of the body: 3m */
	int64_t data_end;	/* reply after the final dot: 10m */
	int64_t session;	/* whole session, connect to close: 30m */
};

/* One smart host endpoint; "fallback:" entries default to the primary's values. */
struct config_endpoint {
	char *host;
	int port;
	enum tls_mode tls;
};

struct config_smarthost {
	char *host;
	int port;			/* default 25, 465 with tls: implicit */
	enum tls_mode tls;		/* default starttls */
	bool tls_verify;		/* default true */
	char *ca_file;			/* NULL: the system store */
	char *username;			/* NULL: no SMTP AUTH */
	char *password_file;		/* one of password_file, _command, _env with username */
	char *password_command;		/* run with /bin/sh -c; stdout line 1 is the secret */
	char *password_env;		/* name of an environment variable */
	enum auth_mechanism auth_mechanisms[AUTH_MECHANISM_COUNT];	/* in order of preference */
	size_t auth_mechanism_count;	/* default PLAIN, LOGIN, CRAM-MD5 */
	int tls_min_version;		/* 12 (default) or 13, for TLS 1.2 or 1.3 */
	char *tls_ciphers;		/* OpenSSL cipher list for TLS 1.2; NULL: OpenSSL's default */
	char *tls_ciphersuites;		/* TLS 1.3 cipher suites; NULL: OpenSSL's default */
	char *ca_path;			/* hashed CA directory (c_rehash), besides ca_file */
	struct config_fingerprint *tls_fingerprints;	/* pinned leaf certificates */
	size_t tls_fingerprint_count;
	char *tls_client_cert;		/* PEM client certificate, with tls_client_key */
	char *tls_client_key;
	int64_t endpoint_cooldown;	/* a failed endpoint is skipped this long: default 5m */
	int max_messages_per_minute;	/* messages started in any 60 s; 0 (default): no limit */
	char *helo_name;		/* NULL: the host's FQDN */
	int max_connections;		/* default 2 */
	int max_messages_per_connection;	/* default 100 */
	enum uncertain_policy on_uncertain;	/* default retry */
	struct config_timeouts timeouts;
	struct config_endpoint *fallback;
	size_t fallback_count;
};

/* Delivery status notifications for failed recipients. */
struct config_dsn {
	enum dsn_mode mode;		/* default sender */
	char *address;			/* required with mode admin */
	int max_per_hour;		/* default 100; 0: no limit */
};

struct config_retry {
	int64_t initial;	/* default 1m */
	int64_t max;		/* default 1h */
	int64_t max_age;	/* default 5d */
};

/*
 * The SMTP listeners ("smtpd:" section): settings of all listeners, and
 * the defaults of the per-listener keys of struct config_listen.
 */
struct config_smtpd {
	char *hostname;			/* greeting name; NULL: the host's FQDN */
	uint64_t max_message_size;	/* default 50M, advertised in SIZE */
	int max_recipients;		/* default 1000 */
	int max_connections;		/* concurrent sessions of all listeners: default 100 */
	int64_t timeout;		/* time allowed per command: default 5m */
	int64_t data_timeout;		/* time allowed from 354 to the final dot: default 10m */
	struct config_networks allow;	/* default 127.0.0.0/8 and ::1/128 */
	char *tls_cert;
	char *tls_key;
	bool starttls;			/* default true when tls_cert is set */
	enum smtpd_auth auth;		/* default off */
	char *users_file;
	bool auth_plaintext_loopback;	/* default false */
	int max_connections_per_client;	/* default 50 */
	bool smtputf8;			/* default false */
	uint64_t set;			/* bit per listener key given in the file */
};

struct config {
	char *path;			/* the file this was loaded from */
	char *queue_path;		/* default /var/lib/relayq/queue.db */
	int64_t keep_sent;		/* body of a sent message kept: default 30d */
	int64_t keep_history;		/* record of a sent message kept: default 400d */
	struct config_listen *listen;	/* default 127.0.0.1:25 */
	size_t listen_count;
	char *pickup_path;		/* NULL: no pickup directory */
	char *control_socket;		/* default: relayqd.sock beside the queue */
	struct config_smarthost smarthost;
	struct config_retry retry;
	struct config_smtpd smtpd;
	struct config_dsn dsn;
	enum log_level log_level;	/* "log: {level: info}" */
	char *user;			/* switch to this user when started as root; NULL: stay */
	int refs;			/* references; config_free() drops one */
};

/*
 * Load and validate the YAML file at PATH. Errors read
 * "FILE:LINE:COLUMN: what is wrong" and go to *ERRSTR.
 * Returns 0, or -1 with *ERRSTR set.
 */
int config_load(const char *path, struct config **out, char **errstr);
void config_free(struct config *config);

/*
 * Take another reference to CONFIG and return it. A loaded config starts
 * with one reference, and config_free() releases it only with the last,
 * so a daemon can keep an old config alive for sessions that use it
 * while a reloaded one takes its place.
 */
struct config *config_ref(struct config *config);

/* The config path to use when none is given: $RELAYQ_CONFIG or the platform default. */
const char *config_default_path(void);

const char *tls_mode_name(enum tls_mode mode);

/* The config name of MODE: "off", "optional" or "required". */
const char *smtpd_auth_name(enum smtpd_auth mode);

/*
 * Fill the settings of ENTRY that ENTRY->set does not name with the
 * values of SMTPD. ENTRY's address fields are left alone. For listeners
 * that the service manager passes without a config entry.
 */
void config_listen_inherit(struct config_listen *entry,
    const struct config_smtpd *smtpd);

/* Free what ENTRY points to, and zero it. */
void config_listen_clear(struct config_listen *entry);

/* The SASL name of MECHANISM, such as "CRAM-MD5". */
const char *auth_mechanism_name(enum auth_mechanism mechanism);

#endif
