/*
 * Clean-up of old sent messages, one batch per event loop round. A batch
 * examines PURGE_BATCH messages in id order, so its cost does not grow
 * with the queue, and the pass remembers the last id between batches.
 * The cut-off times are fixed when a pass starts and read from the
 * config then, so a reload applies from the next pass.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "purge.h"
#include "queue_admin.h"
#include "relayqd.h"
#include "util.h"

#define PURGE_INTERVAL (24 * 60 * 60)

/* After a failed batch the pass starts again this much later. */
#define PURGE_RETRY (60 * 60)

/* Messages examined per batch, and the pause between batches. */
#define PURGE_BATCH 500
#define PURGE_PAUSE_USEC 10000

static struct {
	struct event *timer;
	bool running;		/* a pass is under way */
	int64_t cursor;		/* the last message id examined */
	int64_t body_before;
	int64_t record_before;
	int64_t bodies;
	int64_t records;
} purge;

static void
purge_schedule(long seconds, long usec)
{
	struct timeval tv;

	tv.tv_sec = seconds;
	tv.tv_usec = usec;
	evtimer_add(purge.timer, &tv);
}

static void
purge_begin_pass(void)
{
	int64_t now = now_seconds();

	purge.running = true;
	purge.cursor = 0;
	purge.bodies = 0;
	purge.records = 0;
	purge.body_before = now - relayqd.config->keep_sent;
	purge.record_before = now - relayqd.config->keep_history;
}

static void
purge_end_pass(void)
{
	purge.running = false;
	if (purge.bodies > 0 || purge.records > 0)
		log_info("event=purged bodies=%lld messages=%lld",
		    (long long)purge.bodies, (long long)purge.records);
	else
		log_debug("event=purged bodies=0 messages=0");
	purge_schedule(PURGE_INTERVAL, 0);
}

static void
purge_run(evutil_socket_t fd, short what, void *arg)
{
	char *error = NULL, *escaped;
	bool done = false;

	if (relayqd.stopping)
		return;
	if (!purge.running)
		purge_begin_pass();

	if (queue_admin_purge_batch(relayqd.store, purge.body_before,
	    purge.record_before, PURGE_BATCH, &purge.cursor, &done, &purge.bodies,
	    &purge.records, &error) != 0) {
		escaped = log_escape(error, strlen(error));
		log_error("event=purge_failed after_message=%lld error=\"%s\" "
		    "retry_in=%ds", (long long)purge.cursor, escaped, PURGE_RETRY);
		free(escaped);
		free(error);
		purge.running = false;
		purge_schedule(PURGE_RETRY, 0);
		return;
	}

	if (done)
		purge_end_pass();
	else
		purge_schedule(0, PURGE_PAUSE_USEC);
}

int
purge_start(char **errstr)
{
	purge.timer = evtimer_new(relayqd.base, purge_run, NULL);
	if (purge.timer == NULL)
		return set_error(errstr, "cannot create the purge timer");
	purge_schedule(0, 0);
	return 0;
}

void
purge_stop(void)
{
	if (purge.timer != NULL)
		event_free(purge.timer);
	purge.timer = NULL;
	purge.running = false;
}
