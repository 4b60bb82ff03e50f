/* SMTP listening sockets from the "listen:" config list. */
#ifndef RELAYQ_LISTENER_H
#define RELAYQ_LISTENER_H

/* Bind and listen on every configured address. Returns 0, or -1 with *ERRSTR. */
int listener_start(char **errstr);

/* Close every listening socket (connections already accepted stay open). */
void listener_stop(void);

#endif
