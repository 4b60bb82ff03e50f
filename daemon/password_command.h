/*
 * smarthost.password_command, run without blocking the event loop. At
 * most one run is in flight, and every session that waits for it gets
 * its result. A result is cached until shortly before the lifetime the
 * command printed, or for SECRET_COMMAND_CACHE_DEFAULT seconds.
 */
#ifndef RELAYQ_PASSWORD_COMMAND_H
#define RELAYQ_PASSWORD_COMMAND_H

#include <stddef.h>

struct event_base;
struct password_command_wait;

/*
 * Result of a run: SECRET (LEN bytes, valid during the call only) or
 * ERROR, which never contains the command's output.
 */
typedef void password_command_cb(void *arg, const char *secret, size_t len,
    const char *error);

/*
 * Copy the cached result for COMMAND into *SECRET (free it with
 * secret_free()). Returns 1 when there is one, 0 when a run is needed.
 */
int password_command_cached(const char *command, char **secret, size_t *len);

/*
 * Run COMMAND, or join the run in flight, and call CB from the event
 * loop when it ends. Returns a handle for password_command_cancel(), or
 * NULL with *ERRSTR when the command cannot be started.
 */
struct password_command_wait *password_command_run(struct event_base *base,
    const char *command, password_command_cb *cb, void *arg, char **errstr);

/* Stop waiting: CB will not be called. */
void password_command_cancel(struct password_command_wait *wait);

/* Drop the cached result, after the smart host rejected it. */
void password_command_forget(void);

/* Kill a run in flight and free everything, at shutdown. */
void password_command_shutdown(void);

#endif
