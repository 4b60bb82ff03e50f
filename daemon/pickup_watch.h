/*
 * Change notification for the pickup directory. Each platform implements
 * this interface in its own file: pickup_watch_inotify.c on Linux,
 * pickup_watch_win32.c (ReadDirectoryChangesW) on Windows. The watcher
 * only reports names; pickup.c decides which files to take.
 */
#ifndef RELAYQ_PICKUP_WATCH_H
#define RELAYQ_PICKUP_WATCH_H

struct event_base;
struct pickup_watch;

enum pickup_watch_event {
	PICKUP_WATCH_FILE,	/* NAME was closed after writing or moved into the directory */
	PICKUP_WATCH_RESCAN,	/* notifications were lost: look at the whole directory */
	PICKUP_WATCH_GONE,	/* the directory was removed or moved away; the watch ended */
};

/* NAME is set only for PICKUP_WATCH_FILE and is valid during the call. */
typedef void (*pickup_watch_cb)(enum pickup_watch_event event, const char *name,
    void *arg);

/*
 * Watch directory PATH from BASE's event loop and call CB for each change.
 * Returns NULL with *ERRSTR set when PATH cannot be watched.
 */
struct pickup_watch *pickup_watch_start(struct event_base *base,
    const char *path, pickup_watch_cb cb, void *arg, char **errstr);

void pickup_watch_stop(struct pickup_watch *watch);

#endif
