/*
 * Group commit: requests gather during one event loop round and are
 * committed together by a callback that libevent runs after the round's
 * other ready events. The batch then waits for the WAL sync that
 * disk_sync.c runs off the loop; batches committed while a sync runs share
 * the next one.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "disk_sync.h"
#include "intake.h"
#include "list.h"
#include "log.h"
#include "relayqd.h"
#include "scheduler.h"
#include "util.h"

struct intake_request {
	TAILQ_ENTRY(intake_request) entry;
	int64_t id;
	uint64_t size;
	char *message_id;
	intake_done_cb cb;	/* NULL after intake_cancel() */
	void *arg;
};

TAILQ_HEAD(intake_list, intake_request);

/* A committed batch waiting for its sync. */
struct intake_batch {
	struct intake_list requests;
};

static struct intake_list intake_pending = TAILQ_HEAD_INITIALIZER(intake_pending);
static struct event *intake_event;

static void
intake_request_free(struct intake_request *req)
{
	free(req->message_id);
	free(req);
}

/* Accept every pending message in one durable transaction. */
static int
intake_commit(struct intake_list *batch, char **errstr)
{
	struct intake_request *req;

	if (queue_store_begin(relayqd.store, true, errstr) == -1)
		return -1;
	TAILQ_FOREACH(req, batch, entry) {
		if (queue_store_message_accept(relayqd.store, req->id, req->size,
		    req->message_id, errstr) == -1) {
			queue_store_rollback(relayqd.store);
			return -1;
		}
	}
	return queue_store_commit(relayqd.store, errstr);
}

/* Tell each session of BATCH its result, ERROR NULL meaning on disk. */
static void
intake_reply(struct intake_list *batch, const char *error, int space)
{
	struct intake_request *req;

	while ((req = TAILQ_FIRST(batch)) != NULL) {
		TAILQ_REMOVE(batch, req, entry);
		if (req->cb != NULL)
			req->cb(req->arg, req->id, error, space);
		intake_request_free(req);
	}
}

/*
 * The sync of a committed batch ended. After a failed sync the messages
 * stay queued, since they may be on disk or already delivered, but their
 * clients hear 451 and send them again: a possible duplicate rather than
 * a possible loss.
 */
static void
intake_synced(void *arg, const char *error)
{
	struct intake_batch *b = arg;

	if (error == NULL)
		scheduler_wake();
	intake_reply(&b->requests, error, 0);
	free(b);
}

static void
intake_run(evutil_socket_t fd, short what, void *arg)
{
	struct intake_batch *b;
	struct intake_request *req;
	char *error = NULL;
	int space, count = 0;

	(void)fd;
	(void)what;
	(void)arg;
	TAILQ_FOREACH(req, &intake_pending, entry)
		count++;
	if (count == 0)
		return;
	b = xcalloc(1, sizeof(*b));
	TAILQ_INIT(&b->requests);
	TAILQ_CONCAT(&b->requests, &intake_pending, entry);

	if (intake_commit(&b->requests, &error) == 0) {
		log_debug("event=group_commit messages=%d", count);
		disk_sync_after_commit(intake_synced, b);
		return;
	}

	space = queue_store_error_is_space(relayqd.store);
	log_error("event=commit_failed messages=%d error=\"%s\"", count, error);
	TAILQ_FOREACH(req, &b->requests, entry)
		queue_store_message_delete(relayqd.store, req->id, NULL);
	intake_reply(&b->requests, error, space);
	free(error);
	free(b);
}

int
intake_init(void)
{
	intake_event = event_new(relayqd.base, -1, 0, intake_run, NULL);
	return intake_event != NULL ? 0 : -1;
}

void
intake_shutdown(void)
{
	/* Commit whatever is still pending so no finished transfer is lost. */
	intake_run(-1, 0, NULL);
	disk_sync_stop();
	if (intake_event != NULL)
		event_free(intake_event);
	intake_event = NULL;
}

struct intake_request *
intake_submit(int64_t id, uint64_t size, const char *message_id,
    intake_done_cb cb, void *arg)
{
	struct intake_request *req = xcalloc(1, sizeof(*req));

	req->id = id;
	req->size = size;
	req->message_id = message_id != NULL ? xstrdup(message_id) : NULL;
	req->cb = cb;
	req->arg = arg;
	TAILQ_INSERT_TAIL(&intake_pending, req, entry);
	event_active(intake_event, 0, 0);
	return req;
}

void
intake_cancel(struct intake_request *req)
{
	req->cb = NULL;
	req->arg = NULL;
}
