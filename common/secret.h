/*
 * The smart host password or OAuth 2.0 token, from one of the three
 * sources of smarthost.username: password_file, password_env or
 * password_command. Secrets are returned in allocated buffers that the
 * caller releases with secret_free(), which wipes them. No function here
 * logs or returns a secret inside an error message.
 */
#ifndef RELAYQ_SECRET_H
#define RELAYQ_SECRET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

/* Maximum length of a secret in bytes; OAuth access tokens reach a few kilobytes. */
#define SECRET_MAX 16384

/* Time a password_command output without a lifetime line stays cached, in seconds. */
#define SECRET_COMMAND_CACHE_DEFAULT 60

/* Time password_command gets to print its output, in seconds. */
#define SECRET_COMMAND_TIMEOUT 30

/*
 * Refuse a password_file that group or others can read: returns -1 with
 * a message that names PATH, its mode and the chmod to run.
 */
int secret_check_file_mode(const char *path, char **errstr);

/*
 * Check the password source of SH that can be checked without running
 * anything: the mode of password_file, and that password_env is set.
 * Returns 0 when SH has no username.
 */
int secret_check_config(const struct config_smarthost *sh, char **errstr);

/* Read PATH whole, without one trailing LF or CRLF. */
int secret_read_file(const char *path, char **secret, size_t *len,
    char **errstr);

/* Read the environment variable NAME. */
int secret_read_env(const char *name, char **secret, size_t *len,
    char **errstr);

/*
 * Parse the standard output of password_command: the secret on the first
 * line, then optionally its lifetime in seconds on the second. *LIFETIME
 * is 0 when the output has no lifetime line.
 */
int secret_parse_command_output(const char *out, size_t out_len,
    char **secret, size_t *len, int64_t *lifetime, char **errstr);

/*
 * Seconds a password_command result with LIFETIME stays cached: until
 * shortly before it expires, or SECRET_COMMAND_CACHE_DEFAULT without one.
 */
int64_t secret_cache_seconds(int64_t lifetime);

/*
 * Run COMMAND with /bin/sh -c and wait for it, at most TIMEOUT seconds,
 * then parse its output as secret_parse_command_output() does. Its
 * standard error goes where ours goes when SHOW_STDERR, else nowhere.
 * Blocks, so only the CLI uses it.
 */
int secret_run_command(const char *command, int timeout, bool show_stderr,
    char **secret, size_t *len, int64_t *lifetime, char **errstr);

/*
 * Start COMMAND with /bin/sh -c in its own process group, standard input
 * from /dev/null and standard output into the pipe *FD (close-on-exec).
 */
int secret_command_spawn(const char *command, bool show_stderr, pid_t *pid,
    int *fd, char **errstr);

/* Check the wait STATUS of password_command: 0 for exit status 0, else -1 and why. */
int secret_command_status(int status, char **errstr);

/* Kill the process group of a command that took too long, and reap it. */
void secret_command_kill(pid_t pid);

/*
 * Read the secret of SH synchronously from whichever source it has.
 * For the CLI; relayqd runs password_command without blocking.
 */
int secret_read(const struct config_smarthost *sh, bool show_stderr,
    char **secret, size_t *len, char **errstr);

/* Wipe and free a secret of LEN bytes (plus its NUL); NULL is a no-op. */
void secret_free(char *secret, size_t len);

#endif
