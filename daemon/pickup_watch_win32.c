/*
 * The pickup directory watcher on Windows, by polling: a timer lists the
 * directory every PICKUP_WATCH_INTERVAL seconds. Windows has no
 * IN_CLOSE_WRITE, so a file is reported only when it looks finished:
 * its size and modification time are the same as one interval before,
 * and no process has it open for writing (an open that denies writers
 * succeeds). A file that changes after it was reported is reported again.
 *
 * TODO: ReadDirectoryChangesW() on a thread would report new names
 * without the delay of up to two intervals.
 */
#include "compat.h"

#include <dirent.h>
#include <errno.h>
#include <share.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/event.h>

#include "log.h"
#include "pickup_watch.h"
#include "util.h"

/* Seconds between two looks at the directory. */
#define PICKUP_WATCH_INTERVAL 2

struct pickup_watch_file {
	char *name;
	int64_t size;
	int64_t mtime;
	bool reported;		/* reported with this size and time */
	bool seen;		/* present in the current listing */
};

struct pickup_watch {
	char *path;
	struct event *timer;
	struct pickup_watch_file *files;
	size_t count;
	pickup_watch_cb cb;
	void *arg;
};

static struct pickup_watch_file *
pickup_watch_find(struct pickup_watch *w, const char *name)
{
	size_t i;

	for (i = 0; i < w->count; i++)
		if (strcmp(w->files[i].name, name) == 0)
			return &w->files[i];
	return NULL;
}

/* Forget the files that the last listing did not show. */
static void
pickup_watch_forget_gone(struct pickup_watch *w)
{
	size_t i = 0;

	while (i < w->count) {
		if (w->files[i].seen) {
			w->files[i].seen = false;
			i++;
			continue;
		}
		free(w->files[i].name);
		w->files[i] = w->files[--w->count];
	}
}

/* True when no process has PATH open for writing. */
static bool
pickup_watch_writers_done(const char *path)
{
	int fd = _sopen(path, _O_RDONLY | _O_BINARY, _SH_DENYWR);

	if (fd == -1)
		return false;
	_close(fd);
	return true;
}

/*
 * Note NAME with its current state. Returns true when it is finished and
 * has not been reported in this state.
 */
static bool
pickup_watch_note(struct pickup_watch *w, const char *name)
{
	struct pickup_watch_file *f;
	struct stat st;
	char *path = xasprintf("%s/%s", w->path, name);
	bool ready = false;

	if (stat(path, &st) == -1 || !S_ISREG(st.st_mode)) {
		free(path);
		return false;
	}

	f = pickup_watch_find(w, name);
	if (f == NULL) {
		w->files = xrealloc(w->files, (w->count + 1) * sizeof(*w->files));
		f = &w->files[w->count++];
		memset(f, 0, sizeof(*f));
		f->name = xstrdup(name);
	} else if (f->size == (int64_t)st.st_size && f->mtime == (int64_t)st.st_mtime) {
		ready = !f->reported && pickup_watch_writers_done(path);
	} else {
		f->reported = false;
	}
	f->size = (int64_t)st.st_size;
	f->mtime = (int64_t)st.st_mtime;
	f->seen = true;
	if (ready)
		f->reported = true;
	free(path);
	return ready;
}

static void
pickup_watch_poll(evutil_socket_t fd, short what, void *arg)
{
	struct pickup_watch *w = arg;
	struct dirent *de;
	char **ready = NULL;
	size_t count = 0, i;
	DIR *dir;

	(void)fd;
	(void)what;
	dir = opendir(w->path);
	if (dir == NULL) {
		if (errno == ENOENT || errno == ENOTDIR) {
			/* The callback may free W. */
			w->cb(PICKUP_WATCH_GONE, NULL, w->arg);
			return;
		}
		log_error("event=pickup_watch_failed path=%s error=\"%s\"", w->path,
		    strerror(errno));
		return;
	}
	while ((de = readdir(dir)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (!pickup_watch_note(w, de->d_name))
			continue;
		ready = xrealloc(ready, (count + 1) * sizeof(*ready));
		ready[count++] = xstrdup(de->d_name);
	}
	closedir(dir);
	pickup_watch_forget_gone(w);

	for (i = 0; i < count; i++) {
		w->cb(PICKUP_WATCH_FILE, ready[i], w->arg);
		free(ready[i]);
	}
	free(ready);
}

struct pickup_watch *
pickup_watch_start(struct event_base *base, const char *path, pickup_watch_cb cb,
    void *arg, char **errstr)
{
	struct timeval interval = { PICKUP_WATCH_INTERVAL, 0 };
	struct pickup_watch *w = xcalloc(1, sizeof(*w));
	struct stat st;

	if (stat(path, &st) == -1) {
		set_error(errstr, "cannot watch the pickup directory %s: %s", path,
		    strerror(errno));
		free(w);
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		set_error(errstr, "cannot watch the pickup directory %s: not a "
		    "directory", path);
		free(w);
		return NULL;
	}
	w->path = xstrdup(path);
	w->cb = cb;
	w->arg = arg;
	w->timer = event_new(base, -1, EV_PERSIST, pickup_watch_poll, w);
	if (w->timer == NULL || event_add(w->timer, &interval) == -1) {
		set_error(errstr, "cannot watch the pickup directory %s: no timer",
		    path);
		pickup_watch_stop(w);
		return NULL;
	}
	return w;
}

void
pickup_watch_stop(struct pickup_watch *w)
{
	size_t i;

	if (w == NULL)
		return;
	if (w->timer != NULL)
		event_free(w->timer);
	for (i = 0; i < w->count; i++)
		free(w->files[i].name);
	free(w->files);
	free(w->path);
	free(w);
}
