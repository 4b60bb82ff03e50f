/*
 * Durable commits without waiting on the event loop. relayqd commits
 * with synchronous=NORMAL, and a worker thread syncs the WAL file
 * afterwards. Code that must not acknowledge a commit before it is on
 * disk registers a callback that runs after that sync.
 */
#ifndef RELAYQ_DISK_SYNC_H
#define RELAYQ_DISK_SYNC_H

struct event_base;
struct queue_store;

/* ERROR is NULL when the commit is on disk, else why the sync failed. */
typedef void (*disk_sync_cb)(void *arg, const char *error);

/*
 * Start syncing the WAL of QS in a worker thread and switch QS to deferred
 * syncs. Where no thread can be used, durable commits stay synchronous
 * (synchronous=FULL) and callbacks run in the next loop round. Returns 0,
 * or -1 with *ERRSTR when the loop's events cannot be created.
 */
int disk_sync_init(struct event_base *base, struct queue_store *qs, char **errstr);

/*
 * Call CB from the event loop once the transaction just committed is on
 * disk. Call it right after a successful commit and before the next one.
 */
void disk_sync_after_commit(disk_sync_cb cb, void *arg);

/* Request a sync of the transaction just committed, without a callback. */
void disk_sync_request(void);

/*
 * Sync once more on the calling thread, run every waiting callback, stop
 * the worker and make durable commits synchronous again. For shutdown.
 */
void disk_sync_stop(void);

#endif
