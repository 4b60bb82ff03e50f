/*
 * Service manager integration: the sd_notify datagram protocol, listening
 * sockets passed by socket activation, the watchdog, and the switch to an
 * unprivileged user when relayqd starts as root.
 */
#ifndef RELAYQ_SERVICE_H
#define RELAYQ_SERVICE_H

struct event_base;

/*
 * Send STATE ("READY=1", several assignments separated by newlines) to
 * $NOTIFY_SOCKET. A no-op returning 0 when the variable is unset. Returns
 * -1 when the datagram cannot be sent; the first failure in a row is logged.
 */
int service_notify(const char *state);

/* The service is up: READY=1 with STATUS=TEXT (TEXT may be NULL). */
void service_ready(const char *status);

/* A reload starts: RELOADING=1 with MONOTONIC_USEC; service_ready() ends it. */
void service_reloading(void);

/* The service is shutting down: STOPPING=1. */
void service_stopping(void);

/*
 * Send WATCHDOG=1 at half of $WATCHDOG_USEC from the event loop, so a
 * stuck loop stops the pings. Nothing happens when the variable is unset
 * or $WATCHDOG_PID names another process.
 */
void service_watchdog_start(struct event_base *base);
void service_watchdog_stop(void);

/*
 * Take the listening sockets passed by socket activation ($LISTEN_PID is
 * this process, $LISTEN_FDS sockets from fd 3). Sets *FDS to an allocated
 * array and returns their count, 0 when none were passed, or -1 with
 * *ERRSTR when a passed descriptor is not a listening TCP socket. Removes
 * the variables so that a second call returns 0.
 */
int service_listen_fds(int **fds, char **errstr);

/*
 * Switch to USER when running as root. First the queue file and its WAL,
 * shared-memory and journal files are given to USER, so that the daemon
 * can go on writing them. So is the queue's directory, but only when it
 * contains nothing but those files and CONTROL_SOCKET. Then initgroups(),
 * setgid() and setuid(). Without root the process keeps its user, with a
 * warning when that is not USER. Returns 0, or -1 with *ERRSTR, in which
 * case the caller must exit rather than go on as root.
 */
int service_drop_privileges(const char *user, const char *queue_path,
    const char *control_socket, char **errstr);

#endif
