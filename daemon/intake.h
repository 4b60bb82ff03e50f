/*
 * Group commit of accepted messages. Sessions hand in messages whose data
 * is complete; at the end of the current event loop round all of them are
 * accepted in one durable transaction, and only then does each session
 * get its result. Several sessions thus share one disk sync, and no
 * session hears "accepted" before its own message is on disk.
 */
#ifndef RELAYQ_INTAKE_H
#define RELAYQ_INTAKE_H

#include <stdint.h>

/*
 * Called once the commit is over. ERROR is NULL when the message is on
 * disk. Otherwise it describes the failure, and SPACE is true for a full
 * disk or a read-only spool, which gets reply 452 rather than 451.
 */
typedef void (*intake_done_cb)(void *arg, int64_t id, const char *error, int space);

struct intake_request;

int intake_init(void);
void intake_shutdown(void);

/*
 * Queue message ID (state "receiving", data complete) for the next group
 * commit. Returns a handle valid until CB runs, for intake_cancel().
 */
struct intake_request *intake_submit(int64_t id, uint64_t size,
    const char *message_id, intake_done_cb cb, void *arg);

/* Forget the callback of a pending request: its session went away. The commit still happens. */
void intake_cancel(struct intake_request *req);

#endif
