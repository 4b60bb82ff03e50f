/*
 * SMTP AUTH on the listeners (RFC 4954): the users file with crypt(3)
 * password hashes, and the server side of the SASL mechanisms PLAIN
 * (RFC 4616) and LOGIN. Nothing here logs a password or a hash.
 */
#ifndef RELAYQ_SMTPD_AUTH_H
#define RELAYQ_SMTPD_AUTH_H

#include <stdbool.h>
#include <stddef.h>

/* The mechanisms offered in EHLO, in the order offered. */
#define SMTPD_AUTH_MECHANISMS "PLAIN LOGIN"

/* The users of one users_file. */
struct smtpd_auth_users;

/*
 * Read PATH, with one "user:HASH" line per user. HASH is a crypt(3) hash
 * such as "$y$..." (yescrypt) or "$6$..." (SHA-512). Blank lines and
 * lines starting with "#" are skipped. The file must be a regular file
 * that group and others cannot read. Returns NULL with *ERRSTR, which
 * names the file and the line.
 */
struct smtpd_auth_users *smtpd_auth_users_load(const char *path, char **errstr);
void smtpd_auth_users_free(struct smtpd_auth_users *users);
size_t smtpd_auth_users_count(const struct smtpd_auth_users *users);

/*
 * Check USER's PASSWORD (LEN bytes) against its hash. The hashes are
 * compared in constant time, and an unknown user costs one hash
 * computation too, so the reply time does not tell whether a user exists.
 */
bool smtpd_auth_verify(const struct smtpd_auth_users *users, const char *user,
    const char *password, size_t len);

enum smtpd_auth_mechanism {
	SMTPD_AUTH_PLAIN,
	SMTPD_AUTH_LOGIN,
};

/* One AUTH exchange, from the AUTH command to the credentials. */
struct smtpd_auth_exchange {
	enum smtpd_auth_mechanism mechanism;
	int step;			/* LOGIN: 0 waits for the user, 1 for the password */
	char *user;			/* the authentication identity */
	char *password;			/* wiped when freed */
	size_t password_len;
};

enum smtpd_auth_result {
	SMTPD_AUTH_CHALLENGE,		/* send "334 " and the challenge, then feed the next line */
	SMTPD_AUTH_CREDENTIALS,		/* user and password are complete: verify them */
	SMTPD_AUTH_REJECTED,		/* send the reply; the exchange is over */
};

/*
 * Start an exchange with the argument of the AUTH command ("PLAIN" or
 * "PLAIN dGVzdA=="). *REPLY receives the challenge (base64, without
 * "334 ") or the full rejection reply; it points to static text.
 */
enum smtpd_auth_result smtpd_auth_start(struct smtpd_auth_exchange *ex,
    const char *arg, const char **reply);

/* Feed the client's next line of the exchange (without CRLF). */
enum smtpd_auth_result smtpd_auth_continue(struct smtpd_auth_exchange *ex,
    const char *line, const char **reply);

/* The SASL name of the exchange's mechanism. */
const char *smtpd_auth_mechanism_name(const struct smtpd_auth_exchange *ex);

/* Wipe the password and free what EX contains. */
void smtpd_auth_clear(struct smtpd_auth_exchange *ex);

#endif
