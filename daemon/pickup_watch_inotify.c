/*
 * The pickup directory watcher on Linux: inotify(7) on the directory
 * itself (not its subdirectories). IN_CLOSE_WRITE reports a file that a
 * writer finished in place, IN_MOVED_TO one renamed into the directory,
 * and IN_Q_OVERFLOW that the kernel dropped events.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "pickup_watch.h"
#include "util.h"

/* Room for several events at once; each may carry a name of NAME_MAX bytes. */
#define PICKUP_WATCH_BUFFER (16 * (sizeof(struct inotify_event) + NAME_MAX + 1))

struct pickup_watch {
	int fd;
	struct event *ev;
	pickup_watch_cb cb;
	void *arg;
};

/* Report one event; returns false once the watch has ended. */
static bool
pickup_watch_dispatch(struct pickup_watch *w, const struct inotify_event *ie)
{
	if (ie->mask & IN_Q_OVERFLOW) {
		w->cb(PICKUP_WATCH_RESCAN, NULL, w->arg);
		return true;
	}
	if (ie->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT)) {
		w->cb(PICKUP_WATCH_GONE, NULL, w->arg);
		return false;
	}
	if ((ie->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) && !(ie->mask & IN_ISDIR) &&
	    ie->len > 0)
		w->cb(PICKUP_WATCH_FILE, ie->name, w->arg);
	return true;
}

static void
pickup_watch_read(evutil_socket_t fd, short what, void *arg)
{
	struct pickup_watch *w = arg;
	char buf[PICKUP_WATCH_BUFFER]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;
	size_t off;

	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == -1 && errno != EAGAIN)
				log_error("event=pickup_watch_failed error=\"%s\"",
				    strerror(errno));
			return;
		}
		for (off = 0; off < (size_t)n; ) {
			const struct inotify_event *ie = (const void *)(buf + off);

			off += sizeof(*ie) + ie->len;
			/* After GONE the callback may have freed W. */
			if (!pickup_watch_dispatch(w, ie))
				return;
		}
	}
}

struct pickup_watch *
pickup_watch_start(struct event_base *base, const char *path, pickup_watch_cb cb,
    void *arg, char **errstr)
{
	struct pickup_watch *w = xcalloc(1, sizeof(*w));

	w->cb = cb;
	w->arg = arg;
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd == -1) {
		set_error(errstr, "cannot watch the pickup directory %s: "
		    "inotify_init1: %s", path, strerror(errno));
		free(w);
		return NULL;
	}
	if (inotify_add_watch(w->fd, path, IN_CLOSE_WRITE | IN_MOVED_TO |
	    IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR) == -1) {
		set_error(errstr, "cannot watch the pickup directory %s: %s", path,
		    strerror(errno));
		close(w->fd);
		free(w);
		return NULL;
	}

	w->ev = event_new(base, w->fd, EV_READ | EV_PERSIST, pickup_watch_read, w);
	if (w->ev == NULL || event_add(w->ev, NULL) == -1) {
		set_error(errstr, "cannot watch the pickup directory %s: no event",
		    path);
		pickup_watch_stop(w);
		return NULL;
	}
	return w;
}

void
pickup_watch_stop(struct pickup_watch *w)
{
	if (w == NULL)
		return;
	if (w->ev != NULL)
		event_free(w->ev);
	close(w->fd);
	free(w);
}
