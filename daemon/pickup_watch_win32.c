/*
 * The pickup directory watcher on Windows. A thread keeps an overlapped
 * ReadDirectoryChangesW() pending on the directory (not its
 * subdirectories) and hands the names to the event loop with
 * event_active(). Windows has no IN_CLOSE_WRITE, so a name is reported
 * once no process has the file open for writing. A file renamed into the
 * directory is reported at once. A file written in place is reported when
 * its writer closes it, which a timer checks every PICKUP_WATCH_BUSY_MS
 * for as long as the file stays open. A listing every
 * PICKUP_WATCH_RESCAN_INTERVAL seconds, and at once when the notification
 * buffer overflowed, finds what the notifications missed. It reports only
 * files that are new or changed since they were reported.
 *
 * NOTE: names are converted to UTF-8, but pickup.c opens files with the
 * narrow CRT functions, which take the ANSI code page, so non-ASCII names
 * are reported and then not found.
 */
#include "compat.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "pickup_watch.h"
#include "util.h"

/* Bytes of notifications per read; ReadDirectoryChangesW() takes at most 64 KiB on a network share. */
#define PICKUP_WATCH_BUFFER (32 * 1024)
/* Milliseconds between two checks of a file that is still open for writing. */
#define PICKUP_WATCH_BUSY_MS 250
/* Seconds between two listings of the whole directory. */
#define PICKUP_WATCH_RESCAN_INTERVAL 30
/* Changes kept for the loop before the watcher lists the directory instead. */
#define PICKUP_WATCH_CHANGES_MAX 4096

/* One notification, from the thread to the loop. */
struct pickup_watch_change {
	DWORD action;		/* FILE_ACTION_* */
	char *name;		/* UTF-8 */
};

/* A file in the loop's list: waiting for its writers, or reported. */
struct pickup_watch_file {
	char *name;
	bool reported;
	int64_t size;		/* when reported */
	int64_t mtime;		/* when reported, in FILETIME units */
	bool seen;		/* present in the current listing */
};

/* Outcome of checking one file. */
enum pickup_watch_probe {
	PICKUP_WATCH_READY,	/* no writer has it open: report it */
	PICKUP_WATCH_BUSY,	/* open for writing: check again later */
	PICKUP_WATCH_ABSENT,	/* removed, or not a file */
};

struct pickup_watch {
	char *path;
	HANDLE dir;		/* FILE_FLAG_OVERLAPPED directory handle */
	HANDLE thread;
	HANDLE stop;		/* set by pickup_watch_stop() to end the thread */
	OVERLAPPED overlapped;	/* the pending read: the thread's once it runs */
	bool reading;		/* a read is pending and no thread owns it */
	DWORD *buffer;		/* PICKUP_WATCH_BUFFER bytes, DWORD-aligned */
	struct event *notify;	/* activated by the thread */
	struct event *busy;	/* timer for files still open for writing */
	struct event *rescan;	/* the periodic listing */
	pickup_watch_cb cb;
	void *arg;

	/* Shared with the thread, under LOCK. */
	CRITICAL_SECTION lock;
	bool lock_ready;
	struct pickup_watch_change *changes;
	size_t change_count;
	bool overflow;
	DWORD error;		/* nonzero once the thread ended on an error */

	/* The loop's own. */
	struct pickup_watch_file *files;
	size_t file_count;
};

/* --- the thread --- */

/* Queue a read of the next changes; the event in OVERLAPPED is set when it completes. */
static bool
pickup_watch_read(struct pickup_watch *w)
{
	return ReadDirectoryChangesW(w->dir, w->buffer, PICKUP_WATCH_BUFFER, FALSE,
	    FILE_NOTIFY_CHANGE_FILE_NAME | FILE_NOTIFY_CHANGE_LAST_WRITE, NULL,
	    &w->overlapped, NULL) != 0;
}

/* The name of one notification in UTF-8, or NULL when it is not valid UTF-16. */
static char *
pickup_watch_name(const FILE_NOTIFY_INFORMATION *info)
{
	size_t len = info->FileNameLength / sizeof(WCHAR);
	wchar_t *wide = xcalloc(len + 1, sizeof(*wide));
	char *name;

	memcpy(wide, info->FileName, len * sizeof(WCHAR));
	name = compat_wide_to_utf8(wide);
	free(wide);
	return name;
}

/* Append the BYTES of notifications in the buffer to the shared list; 0 bytes means an overflow. */
static void
pickup_watch_hand_over(struct pickup_watch *w, DWORD bytes)
{
	const char *base = (const char *)w->buffer;
	const FILE_NOTIFY_INFORMATION *info;
	size_t off = 0;
	char *name;

	EnterCriticalSection(&w->lock);
	w->overflow = w->overflow || bytes == 0;
	while (bytes > 0 && off + sizeof(*info) <= bytes) {
		info = (const void *)(base + off);
		if (off + offsetof(FILE_NOTIFY_INFORMATION, FileName) +
		    info->FileNameLength > bytes)
			break;
		name = pickup_watch_name(info);
		if (name != NULL && w->change_count < PICKUP_WATCH_CHANGES_MAX) {
			w->changes = xrealloc(w->changes, (w->change_count + 1) *
			    sizeof(*w->changes));
			w->changes[w->change_count].action = info->Action;
			w->changes[w->change_count++].name = name;
		} else if (name != NULL) {
			/* The loop falls behind: a listing replaces the changes. */
			w->overflow = true;
			free(name);
		}
		if (info->NextEntryOffset == 0)
			break;
		off += info->NextEntryOffset;
	}
	LeaveCriticalSection(&w->lock);
}

/*
 * Wait for each read to complete, hand its changes to the loop and queue
 * the next read. Changes that happen in between are kept by the system
 * for that next read. Ends when STOP is set or a read fails.
 */
static DWORD WINAPI
pickup_watch_thread(void *arg)
{
	struct pickup_watch *w = arg;
	HANDLE waits[2] = { w->overlapped.hEvent, w->stop };
	DWORD bytes, error = 0;

	for (;;) {
		if (WaitForMultipleObjects(2, waits, FALSE, INFINITE) != WAIT_OBJECT_0) {
			CancelIoEx(w->dir, &w->overlapped);
			GetOverlappedResult(w->dir, &w->overlapped, &bytes, TRUE);
			return 0;
		}
		if (!GetOverlappedResult(w->dir, &w->overlapped, &bytes, FALSE)) {
			error = GetLastError();
			/* The system's buffer overflowed. */
			if (error != ERROR_NOTIFY_ENUM_DIR)
				break;
			bytes = 0;
			error = 0;
		}
		pickup_watch_hand_over(w, bytes);
		if (!pickup_watch_read(w)) {
			error = GetLastError();
			break;
		}
		/* libevent's thread support (compat_init()) makes this safe from here. */
		event_active(w->notify, EV_READ, 1);
	}

	EnterCriticalSection(&w->lock);
	w->error = error != 0 ? error : ERROR_GEN_FAILURE;
	LeaveCriticalSection(&w->lock);
	event_active(w->notify, EV_READ, 1);
	return 0;
}

/* --- files, in the loop --- */

static struct pickup_watch_file *
pickup_watch_find(struct pickup_watch *w, const char *name)
{
	size_t i;

	for (i = 0; i < w->file_count; i++)
		if (strcmp(w->files[i].name, name) == 0)
			return &w->files[i];
	return NULL;
}

/* Mark NAME to be checked and reported, even when it was reported before. */
static struct pickup_watch_file *
pickup_watch_want(struct pickup_watch *w, const char *name)
{
	struct pickup_watch_file *f = pickup_watch_find(w, name);

	if (f == NULL) {
		w->files = xrealloc(w->files, (w->file_count + 1) * sizeof(*w->files));
		f = &w->files[w->file_count++];
		memset(f, 0, sizeof(*f));
		f->name = xstrdup(name);
	}
	f->reported = false;
	return f;
}

static void
pickup_watch_forget(struct pickup_watch *w, struct pickup_watch_file *f)
{
	free(f->name);
	*f = w->files[--w->file_count];
}

static int64_t
pickup_watch_filetime(FILETIME t)
{
	return (int64_t)(((uint64_t)t.dwHighDateTime << 32) | t.dwLowDateTime);
}

static bool
pickup_watch_error_is_absent(DWORD error)
{
	return error == ERROR_FILE_NOT_FOUND || error == ERROR_PATH_NOT_FOUND;
}

/*
 * Check whether a process has file NAME open for writing: an open that
 * shares reading and deleting but not writing fails with a sharing
 * violation while a writer's handle exists. Sharing deletion lets a
 * writer rename the file while it is checked. Sets *SIZE and *MTIME when
 * the file is READY and could be opened.
 */
static enum pickup_watch_probe
pickup_watch_probe(struct pickup_watch *w, const char *name, int64_t *size,
    int64_t *mtime)
{
	BY_HANDLE_FILE_INFORMATION info;
	char *path = xasprintf("%s/%s", w->path, name);
	wchar_t *wide = compat_utf8_to_wide(path);
	DWORD attributes, error;
	HANDLE file;

	free(path);
	*size = -1;
	*mtime = -1;
	if (wide == NULL)
		return PICKUP_WATCH_ABSENT;

	attributes = GetFileAttributesW(wide);
	if (attributes != INVALID_FILE_ATTRIBUTES &&
	    (attributes & FILE_ATTRIBUTE_DIRECTORY) != 0) {
		free(wide);
		return PICKUP_WATCH_ABSENT;
	}
	file = CreateFileW(wide, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_DELETE,
	    NULL, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
	error = GetLastError();
	free(wide);
	if (file == INVALID_HANDLE_VALUE) {
		if (error == ERROR_SHARING_VIOLATION)
			return PICKUP_WATCH_BUSY;
		if (pickup_watch_error_is_absent(error))
			return PICKUP_WATCH_ABSENT;
		/* Other errors: pickup.c fails to open it too and logs the reason. */
		return PICKUP_WATCH_READY;
	}

	if (GetFileInformationByHandle(file, &info)) {
		*size = (int64_t)(((uint64_t)info.nFileSizeHigh << 32) |
		    info.nFileSizeLow);
		*mtime = pickup_watch_filetime(info.ftLastWriteTime);
	}
	CloseHandle(file);
	return PICKUP_WATCH_READY;
}

/*
 * Check every file that waits to be reported and report the ready ones.
 * Files still open for writing keep the busy timer running.
 */
static void
pickup_watch_check(struct pickup_watch *w)
{
	struct timeval busy_delay = { 0, PICKUP_WATCH_BUSY_MS * 1000 };
	char **ready = NULL;
	size_t count = 0, i = 0;
	bool busy = false;

	while (i < w->file_count) {
		struct pickup_watch_file *f = &w->files[i];

		if (f->reported) {
			i++;
			continue;
		}
		switch (pickup_watch_probe(w, f->name, &f->size, &f->mtime)) {
		case PICKUP_WATCH_READY:
			f->reported = true;
			ready = xrealloc(ready, (count + 1) * sizeof(*ready));
			ready[count++] = xstrdup(f->name);
			i++;
			break;
		case PICKUP_WATCH_BUSY:
			busy = true;
			i++;
			break;
		case PICKUP_WATCH_ABSENT:
			pickup_watch_forget(w, f);
			break;
		}
	}
	if (busy && !evtimer_pending(w->busy, NULL))
		evtimer_add(w->busy, &busy_delay);

	for (i = 0; i < count; i++) {
		w->cb(PICKUP_WATCH_FILE, ready[i], w->arg);
		free(ready[i]);
	}
	free(ready);
}

/* Note one entry of a listing: new files, and files changed since they were reported, are checked. */
static void
pickup_watch_list_entry(struct pickup_watch *w, const WIN32_FIND_DATAW *data)
{
	struct pickup_watch_file *f;
	int64_t size, mtime;
	char *name;

	if ((data->dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) != 0)
		return;
	name = compat_wide_to_utf8(data->cFileName);
	if (name == NULL)
		return;

	size = (int64_t)(((uint64_t)data->nFileSizeHigh << 32) | data->nFileSizeLow);
	mtime = pickup_watch_filetime(data->ftLastWriteTime);
	f = pickup_watch_find(w, name);
	if (f == NULL || (f->reported && (f->size != size || f->mtime != mtime)))
		f = pickup_watch_want(w, name);
	f->seen = true;
	free(name);
}

/*
 * List the directory and note each file. Returns -1 after reporting
 * PICKUP_WATCH_GONE, when W may have been freed.
 */
static int
pickup_watch_list(struct pickup_watch *w)
{
	char *pattern = xasprintf("%s/*", w->path), *text;
	wchar_t *wide = compat_utf8_to_wide(pattern);
	WIN32_FIND_DATAW data;
	HANDLE find = INVALID_HANDLE_VALUE;
	DWORD error = ERROR_INVALID_NAME;
	size_t i;

	free(pattern);
	if (wide != NULL) {
		find = FindFirstFileW(wide, &data);
		error = GetLastError();
		free(wide);
	}
	/* ERROR_FILE_NOT_FOUND: nothing matched, not even "." (a drive's root). */
	if (find == INVALID_HANDLE_VALUE && error != ERROR_FILE_NOT_FOUND) {
		if (!pickup_watch_error_is_absent(error)) {
			text = compat_win32_strerror(error);
			log_error("event=pickup_watch_failed path=%s error=\"cannot list "
			    "the directory: %s\"", w->path, text);
			free(text);
		}
		/* pickup.c watches again later; the callback may free W. */
		w->cb(PICKUP_WATCH_GONE, NULL, w->arg);
		return -1;
	}

	if (find != INVALID_HANDLE_VALUE) {
		do
			pickup_watch_list_entry(w, &data);
		while (FindNextFileW(find, &data));
		FindClose(find);
	}

	i = 0;
	while (i < w->file_count) {
		if (!w->files[i].seen) {
			pickup_watch_forget(w, &w->files[i]);
			continue;
		}
		w->files[i++].seen = false;
	}
	return 0;
}

/* --- events --- */

/* Apply one notification: a new or written name is checked, a removed one forgotten. */
static void
pickup_watch_apply(struct pickup_watch *w, const struct pickup_watch_change *change)
{
	struct pickup_watch_file *f;

	switch (change->action) {
	case FILE_ACTION_ADDED:
	case FILE_ACTION_MODIFIED:
	case FILE_ACTION_RENAMED_NEW_NAME:
		pickup_watch_want(w, change->name);
		break;
	case FILE_ACTION_REMOVED:
	case FILE_ACTION_RENAMED_OLD_NAME:
		f = pickup_watch_find(w, change->name);
		if (f != NULL)
			pickup_watch_forget(w, f);
		break;
	default:
		break;
	}
}

static void
pickup_watch_notified(evutil_socket_t fd, short what, void *arg)
{
	struct pickup_watch *w = arg;
	struct pickup_watch_change *changes;
	size_t count, i;
	bool overflow;
	DWORD error;
	char *text;

	(void)fd;
	(void)what;
	EnterCriticalSection(&w->lock);
	changes = w->changes;
	count = w->change_count;
	overflow = w->overflow;
	error = w->error;
	w->changes = NULL;
	w->change_count = 0;
	w->overflow = false;
	LeaveCriticalSection(&w->lock);

	for (i = 0; i < count; i++) {
		pickup_watch_apply(w, &changes[i]);
		free(changes[i].name);
	}
	free(changes);

	if (error != 0) {
		text = compat_win32_strerror(error);
		log_error("event=pickup_watch_failed path=%s error=\"ReadDirectoryChangesW: "
		    "%s\"", w->path, text);
		free(text);
		/* The thread has ended; pickup.c watches again later. */
		w->cb(PICKUP_WATCH_GONE, NULL, w->arg);
		return;
	}
	if (overflow) {
		log_warning("event=pickup_rescan path=%s reason=\"change notifications "
		    "were lost\"", w->path);
		if (pickup_watch_list(w) == -1)
			return;
	}
	pickup_watch_check(w);
}

static void
pickup_watch_busy_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pickup_watch_check(arg);
}

static void
pickup_watch_rescan_timer(evutil_socket_t fd, short what, void *arg)
{
	struct pickup_watch *w = arg;

	(void)fd;
	(void)what;
	if (pickup_watch_list(w) == -1)
		return;
	pickup_watch_check(w);
}

/* --- start and stop --- */

/* Open PATH for change notifications and queue the first read. */
static int
pickup_watch_open(struct pickup_watch *w, const char *path, char **errstr)
{
	wchar_t *wide = compat_utf8_to_wide(path);
	DWORD attributes, error;
	char *text;

	if (wide == NULL)
		return set_error(errstr, "cannot watch the pickup directory %s: the "
		    "path is not valid UTF-8", path);
	attributes = GetFileAttributesW(wide);
	if (attributes != INVALID_FILE_ATTRIBUTES &&
	    (attributes & FILE_ATTRIBUTE_DIRECTORY) == 0) {
		free(wide);
		return set_error(errstr, "cannot watch the pickup directory %s: not "
		    "a directory", path);
	}
	/* Sharing deletion keeps the directory removable and renamable while watched. */
	w->dir = CreateFileW(wide, FILE_LIST_DIRECTORY, FILE_SHARE_READ |
	    FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL, OPEN_EXISTING,
	    FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OVERLAPPED, NULL);
	error = GetLastError();
	free(wide);
	if (w->dir == INVALID_HANDLE_VALUE) {
		text = compat_win32_strerror(error);
		set_error(errstr, "cannot watch the pickup directory %s: %s", path,
		    text);
		free(text);
		return -1;
	}

	/* The first read is queued before pickup.c lists the directory, so no file falls between. */
	if (!pickup_watch_read(w)) {
		text = compat_win32_strerror(GetLastError());
		set_error(errstr, "cannot watch the pickup directory %s: "
		    "ReadDirectoryChangesW: %s", path, text);
		free(text);
		return -1;
	}
	w->reading = true;
	return 0;
}

/* Create the events and the thread that waits for the reads. */
static int
pickup_watch_run(struct pickup_watch *w, struct event_base *base, char **errstr)
{
	struct timeval interval = { PICKUP_WATCH_RESCAN_INTERVAL, 0 };
	char *text;

	w->notify = event_new(base, -1, 0, pickup_watch_notified, w);
	w->busy = evtimer_new(base, pickup_watch_busy_timer, w);
	w->rescan = event_new(base, -1, EV_PERSIST, pickup_watch_rescan_timer, w);
	if (w->notify == NULL || w->busy == NULL || w->rescan == NULL ||
	    event_add(w->rescan, &interval) == -1)
		return set_error(errstr, "cannot watch the pickup directory %s: "
		    "cannot create its events", w->path);

	w->thread = CreateThread(NULL, 0, pickup_watch_thread, w, 0, NULL);
	if (w->thread == NULL) {
		text = compat_win32_strerror(GetLastError());
		set_error(errstr, "cannot watch the pickup directory %s: "
		    "CreateThread: %s", w->path, text);
		free(text);
		return -1;
	}
	w->reading = false;
	return 0;
}

struct pickup_watch *
pickup_watch_start(struct event_base *base, const char *path, pickup_watch_cb cb,
    void *arg, char **errstr)
{
	struct pickup_watch *w = xcalloc(1, sizeof(*w));

	w->path = xstrdup(path);
	w->cb = cb;
	w->arg = arg;
	w->dir = INVALID_HANDLE_VALUE;
	w->buffer = xmalloc(PICKUP_WATCH_BUFFER);
	InitializeCriticalSection(&w->lock);
	w->lock_ready = true;
	w->overlapped.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
	w->stop = CreateEventW(NULL, TRUE, FALSE, NULL);
	if (w->overlapped.hEvent == NULL || w->stop == NULL) {
		set_error(errstr, "cannot watch the pickup directory %s: "
		    "cannot create its events", path);
		pickup_watch_stop(w);
		return NULL;
	}

	if (pickup_watch_open(w, path, errstr) == -1 ||
	    pickup_watch_run(w, base, errstr) == -1) {
		pickup_watch_stop(w);
		return NULL;
	}
	return w;
}

void
pickup_watch_stop(struct pickup_watch *w)
{
	DWORD bytes;
	size_t i;

	if (w == NULL)
		return;
	if (w->thread != NULL) {
		SetEvent(w->stop);
		WaitForSingleObject(w->thread, INFINITE);
		CloseHandle(w->thread);
	} else if (w->reading) {
		/* The read must end before its buffer is freed. */
		CancelIoEx(w->dir, &w->overlapped);
		GetOverlappedResult(w->dir, &w->overlapped, &bytes, TRUE);
	}
	if (w->dir != INVALID_HANDLE_VALUE)
		CloseHandle(w->dir);
	if (w->overlapped.hEvent != NULL)
		CloseHandle(w->overlapped.hEvent);
	if (w->stop != NULL)
		CloseHandle(w->stop);

	if (w->notify != NULL)
		event_free(w->notify);
	if (w->busy != NULL)
		event_free(w->busy);
	if (w->rescan != NULL)
		event_free(w->rescan);
	if (w->lock_ready)
		DeleteCriticalSection(&w->lock);
	for (i = 0; i < w->change_count; i++)
		free(w->changes[i].name);
	free(w->changes);
	for (i = 0; i < w->file_count; i++)
		free(w->files[i].name);
	free(w->files);
	free(w->buffer);
	free(w->path);
	free(w);
}
