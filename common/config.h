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
};

enum uncertain_policy {
	UNCERTAIN_RETRY,
	UNCERTAIN_HOLD,
};

/* One "listen:" entry, "127.0.0.1:25" or "[::1]:25". */
struct config_listen {
	char *host;		/* numeric address without brackets */
	char *port;		/* numeric port as text */
	char *text;		/* the entry as written, for messages */
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
	char *password_file;		/* required with username */
	char *helo_name;		/* NULL: the host's FQDN */
	int max_connections;		/* default 2 */
	int max_messages_per_connection;	/* default 100 */
	enum uncertain_policy on_uncertain;	/* default retry */
	struct config_timeouts timeouts;
	struct config_endpoint *fallback;
	size_t fallback_count;
};

struct config_retry {
	int64_t initial;	/* default 1m */
	int64_t max;		/* default 1h */
	int64_t max_age;	/* default 5d */
};

/* Limits of the SMTP listeners ("smtpd:" section). */
struct config_smtpd {
	char *hostname;			/* greeting name; NULL: the host's FQDN */
	uint64_t max_message_size;	/* default 50M, advertised in SIZE */
	int max_recipients;		/* default 1000 */
	int max_connections;		/* default 100 concurrent sessions */
	int64_t timeout;		/* idle time per command: default 5m */
};

struct config {
	char *path;			/* the file this was loaded from */
	char *queue_path;		/* default /var/lib/relayq/queue.db */
	struct config_listen *listen;	/* default 127.0.0.1:25 */
	size_t listen_count;
	char *pickup_path;		/* NULL: no pickup directory */
	char *control_socket;		/* default: relayqd.sock beside the queue */
	struct config_smarthost smarthost;
	struct config_retry retry;
	struct config_smtpd smtpd;
	enum log_level log_level;	/* "log: {level: info}" */
};

/*
 * Load and validate the YAML file at PATH. Errors read
 * "FILE:LINE:COLUMN: what is wrong" and go to *ERRSTR.
 * Returns 0, or -1 with *ERRSTR set.
 */
int config_load(const char *path, struct config **out, char **errstr);
void config_free(struct config *config);

/* The config path to use when none is given: $RELAYQ_CONFIG or the platform default. */
const char *config_default_path(void);

const char *tls_mode_name(enum tls_mode mode);

#endif
