/* SMTP listening sockets from the "listen:" config list or from socket activation. */
#ifndef RELAYQ_LISTENER_H
#define RELAYQ_LISTENER_H

#include "config.h"

/*
 * Listen on the sockets passed by socket activation when there are any,
 * else bind and listen on every configured address. Returns 0, or -1 with
 * *ERRSTR.
 */
int listener_start(char **errstr);

/*
 * Make the listeners match CONFIG after a reload: keep the addresses that
 * stay, open the new ones, close the removed ones. All or nothing: when an
 * address cannot be opened, every listener stays as it was and -1 is
 * returned with *ERRSTR. Each listener gets a new policy from CONFIG
 * (certificate, users file, limits); sessions keep the one they started
 * with. With socket activation the passed sockets stay and entries
 * without one are reported.
 */
int listener_reconfigure(struct config *config, char **errstr);

/* Close every listening socket (connections already accepted stay open). */
void listener_stop(void);

#endif
