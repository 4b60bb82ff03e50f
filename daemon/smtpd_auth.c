/*
 * SMTP AUTH for the listeners: the users file and the PLAIN and LOGIN
 * exchanges. Password hashes are checked with crypt(3) from libxcrypt,
 * which supports yescrypt, SHA-512 and the other formats of "mkpasswd".
 */
#include <sys/stat.h>

#ifndef _WIN32
#include <crypt.h>
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "compat.h"
#include "log.h"
#include "sasl.h"
#include "smtpd_auth.h"
#include "util.h"

/* A users file is a few lines per user; anything larger is the wrong file. */
#define SMTPD_AUTH_FILE_MAX (1024 * 1024)

struct smtpd_auth_user {
	char *name;
	char *hash;
};

struct smtpd_auth_users {
	struct smtpd_auth_user *items;
	size_t count;
};

/* The LOGIN challenges "Username:" and "Password:" in base64. */
static const char smtpd_auth_login_user[] = "VXNlcm5hbWU6";
static const char smtpd_auth_login_password[] = "UGFzc3dvcmQ6";

void
smtpd_auth_users_free(struct smtpd_auth_users *users)
{
	size_t i;

	if (users == NULL)
		return;
	for (i = 0; i < users->count; i++) {
		free(users->items[i].name);
		free(users->items[i].hash);
	}
	free(users->items);
	free(users);
}

size_t
smtpd_auth_users_count(const struct smtpd_auth_users *users)
{
	return users->count;
}

static const struct smtpd_auth_user *
smtpd_auth_users_find(const struct smtpd_auth_users *users, const char *name)
{
	size_t i;

	for (i = 0; i < users->count; i++)
		if (strcmp(users->items[i].name, name) == 0)
			return &users->items[i];
	return NULL;
}

static bool
smtpd_auth_name_is_valid(const char *name)
{
	const unsigned char *p;

	if (name[0] == '\0')
		return false;
	for (p = (const unsigned char *)name; *p != '\0'; p++)
		if (*p <= ' ' || *p == 0x7f)
			return false;
	return true;
}

/* Check the crypt(3) format of HASH. Returns NULL when usable, else why not. */
static const char *
smtpd_auth_hash_problem(const char *hash, bool *legacy)
{
	*legacy = false;
	if (hash[0] != '$')
		return "is not a crypt(3) hash starting with \"$\"";
#ifdef _WIN32
	/* NOTE: Windows has no crypt(3), so AUTH on the listeners is not available there. */
	return "cannot be checked, because Windows has no crypt(3)";
#else
	switch (crypt_checksalt(hash)) {
	case CRYPT_SALT_OK:
		return NULL;
	case CRYPT_SALT_METHOD_LEGACY:
		*legacy = true;
		return NULL;
	default:
		return "has a hash format that this system's crypt(3) does not support";
	}
#endif
}

/* Add the user of one line (LINENO) of the file, or skip a comment or blank line. */
static int
smtpd_auth_users_add_line(struct smtpd_auth_users *users, const char *path,
    size_t lineno, char *line, char **errstr)
{
	const char *problem;
	char *colon, *hash, *name;
	size_t len = strlen(line);
	bool legacy;

	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' ||
	    line[len - 1] == '\t'))
		line[--len] = '\0';
	if (len == 0 || line[0] == '#')
		return 0;

	colon = strchr(line, ':');
	if (colon == NULL || colon == line || strchr(colon + 1, ':') != NULL)
		return set_error(errstr, "%s:%zu: expected user:HASH, with the hash "
		    "from \"mkpasswd -m yescrypt\"", path, lineno);
	*colon = '\0';
	hash = colon + 1;
	name = log_escape(line, strlen(line));

	if (!smtpd_auth_name_is_valid(line)) {
		set_error(errstr, "%s:%zu: invalid user name \"%s\": expected no "
		    "spaces or control characters", path, lineno, name);
		free(name);
		return -1;
	}
	if (smtpd_auth_users_find(users, line) != NULL) {
		set_error(errstr, "%s:%zu: user \"%s\" appears twice", path, lineno,
		    name);
		free(name);
		return -1;
	}
	problem = smtpd_auth_hash_problem(hash, &legacy);
	if (problem != NULL) {
		set_error(errstr, "%s:%zu: the password of user \"%s\" %s: create "
		    "it with \"mkpasswd -m yescrypt\" or \"mkpasswd -m sha-512\"",
		    path, lineno, name, problem);
		free(name);
		return -1;
	}
	if (legacy)
		log_warning("event=weak_password_hash file=%s line=%zu user=\"%s\" "
		    "note=\"replace the hash with one from mkpasswd -m yescrypt\"",
		    path, lineno, name);
	free(name);

	users->items = xrealloc(users->items,
	    (users->count + 1) * sizeof(*users->items));
	users->items[users->count].name = xstrdup(line);
	users->items[users->count].hash = xstrdup(hash);
	users->count++;
	return 0;
}

/* Read the whole file FD, which must be private to its owner. */
static int
smtpd_auth_users_read(int fd, const char *path, char **text, char **errstr)
{
	struct stat st;
	size_t len = 0;
	ssize_t n;
	char *buf;

	if (fstat(fd, &st) == -1)
		return set_error(errstr, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return set_error(errstr, "%s is not a regular file", path);
#ifndef _WIN32
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		return set_error(errstr, "%s can be read or changed by group or "
		    "others (mode %04o), which exposes its password hashes: run "
		    "\"chmod 600 %s\"", path, (unsigned int)(st.st_mode & 07777), path);
#endif
	if (st.st_size > SMTPD_AUTH_FILE_MAX)
		return set_error(errstr, "%s is larger than %d KiB, which is too "
		    "large for a users file, so check the path", path,
		    SMTPD_AUTH_FILE_MAX / 1024);

	buf = xmalloc((size_t)st.st_size + 1);
	while (len < (size_t)st.st_size) {
		n = read(fd, buf + len, (size_t)st.st_size - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(buf);
			return set_error(errstr, "cannot read %s: %s", path,
			    n == 0 ? "unexpected end of file" : strerror(errno));
		}
		len += (size_t)n;
	}
	buf[len] = '\0';
	if (memchr(buf, '\0', len) != NULL) {
		free(buf);
		return set_error(errstr, "%s contains a NUL byte, so it is not a "
		    "users file", path);
	}
	*text = buf;
	return 0;
}

struct smtpd_auth_users *
smtpd_auth_users_load(const char *path, char **errstr)
{
	struct smtpd_auth_users *users;
	char *text = NULL, *line, *next;
	size_t lineno = 0, text_len;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1) {
		set_error(errstr, "cannot open the users file %s: %s%s", path,
		    strerror(errno), errno == EACCES ? ". It must be owned by the "
		    "user that runs relayqd, with mode 0600" : "");
		return NULL;
	}
	if (smtpd_auth_users_read(fd, path, &text, errstr) == -1) {
		close(fd);
		return NULL;
	}
	close(fd);

	text_len = strlen(text);
	users = xcalloc(1, sizeof(*users));
	for (line = text; line != NULL; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (smtpd_auth_users_add_line(users, path, ++lineno, line, errstr) == -1) {
			secure_wipe(text, text_len);
			free(text);
			smtpd_auth_users_free(users);
			return NULL;
		}
	}
	secure_wipe(text, text_len);
	free(text);
	if (users->count == 0)
		log_warning("event=users_file_empty file=%s note=\"nobody can "
		    "authenticate\"", path);
	return users;
}

bool
smtpd_auth_verify(const struct smtpd_auth_users *users, const char *user,
    const char *password, size_t len)
{
#ifdef _WIN32
	(void)users;
	(void)user;
	(void)password;
	(void)len;
	return false;
#else
	static struct crypt_data data;
	const struct smtpd_auth_user *entry;
	const char *setting, *result;
	bool match = false;

	if (users->count == 0)
		return false;

	/* An unknown user is checked against a real hash, so it costs the same time. */
	entry = smtpd_auth_users_find(users, user);
	setting = entry != NULL ? entry->hash : users->items[0].hash;

	memset(&data, 0, sizeof(data));
	result = crypt_rn(password, setting, &data, sizeof(data));
	if (result != NULL && result[0] != '*' && strlen(result) == strlen(setting))
		match = CRYPTO_memcmp(result, setting, strlen(setting)) == 0;
	secure_wipe(&data, sizeof(data));

	/* A NUL inside the password would make crypt(3) see a shorter one. */
	if (memchr(password, '\0', len) != NULL)
		match = false;
	return entry != NULL && match;
#endif
}

/* --- The SASL exchange --- */

void
smtpd_auth_clear(struct smtpd_auth_exchange *ex)
{
	if (ex == NULL)
		return;
	free(ex->user);
	if (ex->password != NULL) {
		secure_wipe(ex->password, ex->password_len);
		free(ex->password);
	}
	memset(ex, 0, sizeof(*ex));
}

const char *
smtpd_auth_mechanism_name(const struct smtpd_auth_exchange *ex)
{
	return ex->mechanism == SMTPD_AUTH_PLAIN ? "PLAIN" : "LOGIN";
}

/* Decode one base64 line; "=" stands for an empty response (RFC 4954 section 4). */
static unsigned char *
smtpd_auth_decode(const char *line, size_t *len)
{
	if (strcmp(line, "=") == 0) {
		*len = 0;
		return (unsigned char *)xstrdup("");
	}
	return sasl_base64_decode(line, len);
}

static void
smtpd_auth_wipe_free(unsigned char *data, size_t len)
{
	if (data == NULL)
		return;
	secure_wipe(data, len);
	free(data);
}

/* PLAIN: "authzid NUL authcid NUL password", authzid empty or the user itself. */
static enum smtpd_auth_result
smtpd_auth_plain(struct smtpd_auth_exchange *ex, const char *line,
    const char **reply)
{
	unsigned char *raw;
	const char *authzid, *authcid, *password;
	size_t len, zlen, clen;

	raw = smtpd_auth_decode(line, &len);
	if (raw == NULL) {
		*reply = "501 5.5.2 Invalid base64 data";
		return SMTPD_AUTH_REJECTED;
	}
	authzid = (const char *)raw;
	zlen = strnlen(authzid, len);
	if (zlen >= len) {
		smtpd_auth_wipe_free(raw, len);
		*reply = "501 5.5.2 Invalid PLAIN response";
		return SMTPD_AUTH_REJECTED;
	}
	authcid = authzid + zlen + 1;
	clen = strnlen(authcid, len - zlen - 1);
	if (zlen + 1 + clen >= len) {
		smtpd_auth_wipe_free(raw, len);
		*reply = "501 5.5.2 Invalid PLAIN response";
		return SMTPD_AUTH_REJECTED;
	}
	password = authcid + clen + 1;

	if (zlen > 0 && strcmp(authzid, authcid) != 0) {
		smtpd_auth_wipe_free(raw, len);
		*reply = "535 5.7.8 The authorization identity must be empty or the user name";
		return SMTPD_AUTH_REJECTED;
	}
	if (!smtpd_auth_name_is_valid(authcid)) {
		smtpd_auth_wipe_free(raw, len);
		*reply = "501 5.5.2 Invalid user name";
		return SMTPD_AUTH_REJECTED;
	}
	ex->user = xstrdup(authcid);
	ex->password_len = len - zlen - clen - 2;
	ex->password = xstrndup(password, ex->password_len);
	smtpd_auth_wipe_free(raw, len);
	return SMTPD_AUTH_CREDENTIALS;
}

/* LOGIN: the user name, then the password, each in its own line. */
static enum smtpd_auth_result
smtpd_auth_login(struct smtpd_auth_exchange *ex, const char *line,
    const char **reply)
{
	unsigned char *raw;
	size_t len;

	raw = smtpd_auth_decode(line, &len);
	if (raw == NULL) {
		*reply = "501 5.5.2 Invalid base64 data";
		return SMTPD_AUTH_REJECTED;
	}
	if (ex->step == 0) {
		if (memchr(raw, '\0', len) != NULL ||
		    !smtpd_auth_name_is_valid((const char *)raw)) {
			smtpd_auth_wipe_free(raw, len);
			*reply = "501 5.5.2 Invalid user name";
			return SMTPD_AUTH_REJECTED;
		}
		ex->user = (char *)raw;
		ex->step = 1;
		*reply = smtpd_auth_login_password;
		return SMTPD_AUTH_CHALLENGE;
	}
	ex->password = (char *)raw;
	ex->password_len = len;
	return SMTPD_AUTH_CREDENTIALS;
}

enum smtpd_auth_result
smtpd_auth_continue(struct smtpd_auth_exchange *ex, const char *line,
    const char **reply)
{
	if (strcmp(line, "*") == 0) {
		*reply = "501 5.0.0 Authentication cancelled";
		return SMTPD_AUTH_REJECTED;
	}
	if (ex->mechanism == SMTPD_AUTH_PLAIN)
		return smtpd_auth_plain(ex, line, reply);
	return smtpd_auth_login(ex, line, reply);
}

enum smtpd_auth_result
smtpd_auth_start(struct smtpd_auth_exchange *ex, const char *arg,
    const char **reply)
{
	size_t len = strcspn(arg, " ");
	const char *initial = arg[len] == ' ' ? arg + len + 1 : NULL;

	memset(ex, 0, sizeof(*ex));
	if (len == 0 || (initial != NULL && (initial[0] == '\0' ||
	    strchr(initial, ' ') != NULL))) {
		*reply = "501 5.5.4 Syntax: AUTH mechanism [initial-response]";
		return SMTPD_AUTH_REJECTED;
	}
	if (len == 5 && strncasecmp(arg, "PLAIN", 5) == 0) {
		ex->mechanism = SMTPD_AUTH_PLAIN;
		if (initial == NULL) {
			*reply = "";
			return SMTPD_AUTH_CHALLENGE;
		}
		return smtpd_auth_continue(ex, initial, reply);
	}
	if (len == 5 && strncasecmp(arg, "LOGIN", 5) == 0) {
		ex->mechanism = SMTPD_AUTH_LOGIN;
		if (initial == NULL) {
			*reply = smtpd_auth_login_user;
			return SMTPD_AUTH_CHALLENGE;
		}
		return smtpd_auth_continue(ex, initial, reply);
	}
	*reply = "504 5.5.4 Unrecognized authentication mechanism";
	return SMTPD_AUTH_REJECTED;
}
