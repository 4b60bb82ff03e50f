/*
 * The settings of one SMTP listener as its sessions use them: the merged
 * "listen:" entry, the STARTTLS context and the AUTH users. A policy is
 * reference-counted, so that a reload can give a listener a new one while
 * the sessions that started under the old one keep it until they end.
 */
#ifndef RELAYQ_SMTPD_POLICY_H
#define RELAYQ_SMTPD_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "compat.h"
#include "compat.h"
#include "config.h"
#include "smtpd_auth.h"

struct smtpd_policy {
	int refs;
	uint64_t listener_id;		/* the listener's, for per-listener connection counts */
	struct config *config;		/* a reference: LISTEN may point into it */
	const struct config_listen *listen;
	struct config_listen own;	/* LISTEN for a socket without a config entry */
	SSL_CTX *tls;			/* NULL without STARTTLS */
	struct smtpd_auth_users *users;	/* NULL with auth off */
};

/*
 * Build the policy of listener LISTENER_ID from ENTRY of CONFIG, or from
 * the "smtpd:" defaults of CONFIG when ENTRY is NULL (a socket passed by
 * the service manager that no entry names; TEXT is its address). Loads
 * the certificate, key and users file. Returns NULL with *ERRSTR.
 */
struct smtpd_policy *smtpd_policy_new(struct config *config,
    const struct config_listen *entry, const char *text, uint64_t listener_id,
    char **errstr);

struct smtpd_policy *smtpd_policy_ref(struct smtpd_policy *policy);

/* Drop one reference; the last one frees the policy. */
void smtpd_policy_free(struct smtpd_policy *policy);

/* True when the client at ADDR is in the listener's "allow" networks. */
bool smtpd_policy_allows(const struct smtpd_policy *policy,
    const struct sockaddr *addr);

/* True for 127.0.0.0/8, ::1, their IPv4-mapped forms and local sockets. */
bool smtpd_policy_is_loopback(const struct sockaddr *addr);

#endif
