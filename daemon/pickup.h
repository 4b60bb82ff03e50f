/*
 * The pickup directory (pickup.path): relayqd takes each complete
 * NAME.eml file from it, reads the envelope from the message's header
 * fields, commits the message to the queue, and only then removes the
 * file. A file that cannot become a message moves to bad/ beside a
 * NAME.reason file; a queue failure leaves the file for a later retry.
 * docs/sendmail.md states the rules for writers.
 */
#ifndef RELAYQ_PICKUP_H
#define RELAYQ_PICKUP_H

/*
 * Start watching config->pickup_path, creating it (mode 0700) when
 * missing, and take the files already there. Does nothing without a
 * pickup path. Returns 0, or -1 with *ERRSTR set.
 */
int pickup_start(char **errstr);

/* Stop; a file being read stays in the directory for the next start. */
void pickup_stop(void);

#endif
