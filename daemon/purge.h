/*
 * The daily clean-up of sent messages: their text after queue.keep_sent
 * and their whole record after queue.keep_history. A pass runs at start
 * and every 24 hours, in small batches so that the event loop is never
 * held up for long.
 */
#ifndef RELAYQ_PURGE_H
#define RELAYQ_PURGE_H

int purge_start(char **errstr);
void purge_stop(void);

#endif
