/*
 * Service manager integration: the sd_notify datagram protocol, listening
 * sockets passed by socket activation, the watchdog, and the switch to an
 * unprivileged user when relayqd starts as root.
 */
#ifndef RELAYQ_SERVICE_H
#define RELAYQ_SERVICE_H

struct event;
struct event_base;

/* The daemon's own main(), which service_main() runs. */
typedef int service_run_fn(int argc, char **argv);

/*
 * Run RUN(ARGC, ARGV) and return its exit status. On Windows,
 * "relayqd install" and "relayqd uninstall" register and remove the
 * service instead, and "relayqd --service ..." (the command line that
 * install registers) runs RUN under the service control manager.
 */
int service_main(int argc, char **argv, service_run_fn *run);

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
 * Make the requests that are not signals activate STOP, the event that
 * SIGTERM activates, or RELOAD, the one of SIGHUP. On Windows these are
 * Ctrl+C, Ctrl+Break, closing the console, logoff and shutdown, and the
 * service controller's stop, shutdown and parameter change. A no-op
 * returning 0 on POSIX systems. Returns -1 with *ERRSTR when the
 * handler cannot be installed.
 */
int service_control_events(struct event *stop, struct event *reload,
    char **errstr);

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
