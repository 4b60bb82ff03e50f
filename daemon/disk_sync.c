/*
 * Durable commits without waiting on the event loop.
 *
 * relayqd's transactions commit with synchronous=NORMAL: their WAL frames
 * are written, which survives a crash of the process, but not synced,
 * which a power loss would undo. Each commit handed in here gets the
 * next sequence number, and a worker thread runs fdatasync() on the WAL
 * file. When a sync ends, every commit numbered before the sync began is
 * on disk, and the event loop runs the callbacks of those commits.
 *
 * The loop does not wait for these syncs. While one runs, it keeps
 * reading from sessions and committing, and the next sync covers all of
 * those commits at once, so the groups grow with the disk's latency
 * without any timer. SQLite's automatic checkpoints still sync the WAL
 * and the database file on the loop, about once per 1,000 WAL pages.
 *
 * A failed fdatasync() fails every commit that it was to cover, even when
 * a later sync succeeds, because after such a failure Linux may have
 * dropped the unwritten pages, so those commits may not be on disk.
 *
 * On Windows, and when the WAL file cannot be opened, durable commits stay
 * synchronous (synchronous=FULL) and the callbacks run in the next loop
 * round ("inline" mode).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifndef _WIN32
#include <pthread.h>
#endif

#include <event2/event.h>

#include "disk_sync.h"
#include "list.h"
#include "log.h"
#include "queue_store.h"
#include "util.h"

struct disk_sync_waiter {
	TAILQ_ENTRY(disk_sync_waiter) entry;
	uint64_t seq;
	disk_sync_cb cb;
	void *arg;
};

TAILQ_HEAD(disk_sync_waiters, disk_sync_waiter);

enum disk_sync_mode {
	DISK_SYNC_OFF,		/* not started, or stopped: commits are synchronous */
	DISK_SYNC_INLINE,	/* commits are synchronous, callbacks run next round */
	DISK_SYNC_THREAD,	/* the worker syncs the WAL */
};

static struct {
	enum disk_sync_mode mode;
	struct queue_store *store;
	struct event *done_event;	/* wakes the loop after a sync */

	/* Owned by the loop thread. */
	uint64_t committed;		/* sequence number of the last commit */
	uint64_t requested;		/* highest number handed to the worker */
	struct disk_sync_waiters waiters;	/* in sequence order */

#ifndef _WIN32
	/* Shared with the worker, under lock. */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	uint64_t target;		/* sync everything up to here */
	uint64_t synced;		/* covered by a finished sync */
	uint64_t failed;		/* covered by a failed sync */
	char *error;			/* why the last failed sync failed */
	bool stop;

	/* Owned by the worker (and by the loop once the worker has ended). */
	char *wal_path;
	int wal_fd;
	bool dir_unsynced;		/* the WAL file's directory entry may not be on disk */
	int pipe[2];			/* the worker's wake-up for the loop */
#endif
} ds = {
	.waiters = TAILQ_HEAD_INITIALIZER(ds.waiters),
#ifndef _WIN32
	.wal_fd = -1,
	.pipe = { -1, -1 },
#endif
};

/*
 * Run, in order, the callbacks of commits up to SYNCED. Those up to FAILED
 * get ERROR, which is logged once when any callback receives it.
 */
static void
disk_sync_complete(uint64_t synced, uint64_t failed, const char *error)
{
	struct disk_sync_waiter *w = TAILQ_FIRST(&ds.waiters);

	if (error != NULL && w != NULL && w->seq <= failed)
		log_error("event=sync_failed error=\"%s\" note=\"the messages "
		    "committed before it are queued but may be lost on a power "
		    "failure, so their clients are told to try again\"", error);
	while ((w = TAILQ_FIRST(&ds.waiters)) != NULL && w->seq <= synced) {
		TAILQ_REMOVE(&ds.waiters, w, entry);
		w->cb(w->arg, w->seq <= failed ? error : NULL);
		free(w);
	}
}

static void
disk_sync_inline_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	disk_sync_complete(ds.committed, 0, NULL);
}

#ifndef _WIN32

static int
disk_sync_open_wal(char **errstr)
{
	int fd = open(ds.wal_path, O_RDONLY | O_CLOEXEC);

	if (fd == -1)
		return set_error(errstr, "cannot open %s: %s", ds.wal_path,
		    strerror(errno));
	if (ds.wal_fd != -1)
		close(ds.wal_fd);
	ds.wal_fd = fd;
	ds.dir_unsynced = true;
	return 0;
}

/*
 * SQLite deletes the WAL file only when its last connection closes, and
 * relayqd keeps one open, so the file should never change. If it did, a
 * sync of the old file would cover nothing: compare inodes and reopen.
 */
static int
disk_sync_check_wal(char **errstr)
{
	struct stat path_st, fd_st;

	if (stat(ds.wal_path, &path_st) == -1)
		return set_error(errstr, "cannot find %s: %s", ds.wal_path,
		    strerror(errno));
	if (fstat(ds.wal_fd, &fd_st) == 0 && fd_st.st_ino == path_st.st_ino &&
	    fd_st.st_dev == path_st.st_dev)
		return 0;
	return disk_sync_open_wal(errstr);
}

/* A new file is durable only once its directory entry is: sync the directory once. */
static int
disk_sync_dir(char **errstr)
{
	char *dir = path_dirname(ds.wal_path);
	int fd, rc = 0;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1 || fsync(fd) == -1)
		rc = set_error(errstr, "cannot sync the directory %s: %s", dir,
		    strerror(errno));
	if (fd != -1)
		close(fd);
	free(dir);
	if (rc == 0)
		ds.dir_unsynced = false;
	return rc;
}

/* One sync of the WAL file. Runs on the worker, or on the loop once the worker has ended. */
static int
disk_sync_wal(char **errstr)
{
	if (disk_sync_check_wal(errstr) == -1)
		return -1;
	if (fdatasync(ds.wal_fd) == -1)
		return set_error(errstr, "fdatasync of %s failed: %s", ds.wal_path,
		    strerror(errno));
	if (ds.dir_unsynced && disk_sync_dir(errstr) == -1)
		return -1;
	return 0;
}

/* Record the end of a sync that covered commits up to TARGET. Called with the lock held. */
static void
disk_sync_record(uint64_t target, int rc, char *error)
{
	ds.synced = target;
	if (rc == -1) {
		ds.failed = target;
		free(ds.error);
		ds.error = error;
	}
}

static void *
disk_sync_worker(void *unused)
{
	uint64_t target;
	char *error;
	int rc;

	(void)unused;
	pthread_mutex_lock(&ds.lock);
	for (;;) {
		while (!ds.stop && ds.target == ds.synced)
			pthread_cond_wait(&ds.wake, &ds.lock);
		if (ds.target == ds.synced)
			break;
		target = ds.target;
		pthread_mutex_unlock(&ds.lock);

		error = NULL;
		rc = disk_sync_wal(&error);

		pthread_mutex_lock(&ds.lock);
		disk_sync_record(target, rc, error);
		/* A full pipe already contains a wake-up, so a failed write loses nothing. */
		if (write(ds.pipe[1], "s", 1) == -1 && errno != EAGAIN)
			break;
	}
	pthread_mutex_unlock(&ds.lock);
	return NULL;
}

/* The loop's side: the worker finished a sync. */
static void
disk_sync_thread_done(evutil_socket_t fd, short what, void *arg)
{
	uint64_t synced, failed;
	char buf[64], *error;

	(void)what;
	(void)arg;
	while (read(fd, buf, sizeof(buf)) > 0)
		continue;

	pthread_mutex_lock(&ds.lock);
	synced = ds.synced;
	failed = ds.failed;
	error = ds.error != NULL ? xstrdup(ds.error) : NULL;
	pthread_mutex_unlock(&ds.lock);

	disk_sync_complete(synced, failed, error);
	free(error);
}

static int
disk_sync_start_thread(struct event_base *base, char **errstr)
{
	ds.wal_path = queue_store_wal_path(ds.store);
	if (disk_sync_open_wal(errstr) == -1)
		return -1;
	if (pipe(ds.pipe) == -1)
		return set_error(errstr, "cannot create a pipe: %s", strerror(errno));
	evutil_make_socket_nonblocking(ds.pipe[0]);
	evutil_make_socket_nonblocking(ds.pipe[1]);
	evutil_make_socket_closeonexec(ds.pipe[0]);
	evutil_make_socket_closeonexec(ds.pipe[1]);

	ds.done_event = event_new(base, ds.pipe[0], EV_READ | EV_PERSIST,
	    disk_sync_thread_done, NULL);
	if (ds.done_event == NULL || event_add(ds.done_event, NULL) == -1)
		return set_error(errstr, "cannot create the sync event");
	pthread_mutex_init(&ds.lock, NULL);
	pthread_cond_init(&ds.wake, NULL);
	if (pthread_create(&ds.thread, NULL, disk_sync_worker, NULL) != 0) {
		pthread_cond_destroy(&ds.wake);
		pthread_mutex_destroy(&ds.lock);
		return set_error(errstr, "cannot start the sync thread");
	}
	ds.mode = DISK_SYNC_THREAD;
	queue_store_defer_sync(ds.store, true);
	return 0;
}

/* Undo a failed disk_sync_start_thread(). */
static void
disk_sync_release(void)
{
	if (ds.done_event != NULL)
		event_free(ds.done_event);
	ds.done_event = NULL;
	if (ds.pipe[0] != -1)
		close(ds.pipe[0]);
	if (ds.pipe[1] != -1)
		close(ds.pipe[1]);
	ds.pipe[0] = ds.pipe[1] = -1;
	if (ds.wal_fd != -1)
		close(ds.wal_fd);
	ds.wal_fd = -1;
	free(ds.wal_path);
	ds.wal_path = NULL;
}

/* Hand commits up to the current one to the worker. */
static void
disk_sync_kick(void)
{
	if (ds.requested == ds.committed)
		return;
	ds.requested = ds.committed;
	pthread_mutex_lock(&ds.lock);
	ds.target = ds.requested;
	pthread_cond_signal(&ds.wake);
	pthread_mutex_unlock(&ds.lock);
}

/* End the worker, then sync on this thread whatever it did not cover. */
static void
disk_sync_stop_thread(void)
{
	char *error = NULL;
	int rc;

	pthread_mutex_lock(&ds.lock);
	ds.stop = true;
	pthread_cond_signal(&ds.wake);
	pthread_mutex_unlock(&ds.lock);
	pthread_join(ds.thread, NULL);

	if (ds.synced < ds.committed) {
		rc = disk_sync_wal(&error);
		disk_sync_record(ds.committed, rc, error);
	}
	disk_sync_complete(ds.synced, ds.failed, ds.error);
	free(ds.error);
	ds.error = NULL;
	pthread_cond_destroy(&ds.wake);
	pthread_mutex_destroy(&ds.lock);
	disk_sync_release();
}

#endif /* !_WIN32 */

static int
disk_sync_start_inline(struct event_base *base, char **errstr)
{
	ds.done_event = event_new(base, -1, 0, disk_sync_inline_done, NULL);
	if (ds.done_event == NULL)
		return set_error(errstr, "cannot create the sync event");
	ds.mode = DISK_SYNC_INLINE;
	return 0;
}

int
disk_sync_init(struct event_base *base, struct queue_store *qs, char **errstr)
{
#ifndef _WIN32
	char *error = NULL;
#endif

	ds.store = qs;
#ifndef _WIN32
	if (disk_sync_start_thread(base, &error) == 0)
		return 0;
	log_warning("event=sync_thread_unavailable error=\"%s\" note=\"every "
	    "accepted message waits for its own sync on the event loop\"", error);
	free(error);
	disk_sync_release();
#endif
	return disk_sync_start_inline(base, errstr);
}

void
disk_sync_after_commit(disk_sync_cb cb, void *arg)
{
	struct disk_sync_waiter *w = xcalloc(1, sizeof(*w));

	w->seq = ++ds.committed;
	w->cb = cb;
	w->arg = arg;
	TAILQ_INSERT_TAIL(&ds.waiters, w, entry);

	switch (ds.mode) {
	case DISK_SYNC_OFF:
		/* The commit was synchronous and the loop may be gone: run it now. */
		disk_sync_complete(ds.committed, 0, NULL);
		break;
	case DISK_SYNC_INLINE:
		event_active(ds.done_event, 0, 0);
		break;
	case DISK_SYNC_THREAD:
#ifndef _WIN32
		disk_sync_kick();
#endif
		break;
	}
}

void
disk_sync_request(void)
{
	if (ds.mode != DISK_SYNC_THREAD)
		return;
	ds.committed++;
#ifndef _WIN32
	disk_sync_kick();
#endif
}

void
disk_sync_stop(void)
{
	switch (ds.mode) {
	case DISK_SYNC_OFF:
		return;
	case DISK_SYNC_INLINE:
		disk_sync_complete(ds.committed, 0, NULL);
		event_free(ds.done_event);
		ds.done_event = NULL;
		break;
	case DISK_SYNC_THREAD:
#ifndef _WIN32
		disk_sync_stop_thread();
#endif
		break;
	}
	queue_store_defer_sync(ds.store, false);
	ds.mode = DISK_SYNC_OFF;
}
