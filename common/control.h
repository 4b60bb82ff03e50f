/*
 * The control channel between relayq and a running relayqd: one request
 * line, one reply line. On Unix it is a socket with mode 0600 at
 * config->control_socket; the request and reply format do not depend on
 * the transport, so a Windows named pipe can carry them unchanged.
 *
 * Requests: "wake" (look for due messages now). Replies: "ok" or
 * "error TEXT".
 */
#ifndef RELAYQ_CONTROL_H
#define RELAYQ_CONTROL_H

#include "config.h"

/* Longest request or reply line, newline included. */
#define CONTROL_LINE_MAX 1024

/*
 * Send REQUEST to the daemon and read its reply into *REPLY (allocated).
 * Returns 0 on a reply, 1 when no daemon is listening (nothing to do for
 * read-only use), -1 with *ERRSTR on other failures.
 */
int control_request(const struct config *config, const char *request,
    char **reply, char **errstr);

/* Send "wake"; a daemon that is not running is not an error. */
int control_wake(const struct config *config, char **errstr);

#endif
