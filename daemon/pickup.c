/*
 * The pickup directory. Names that the watcher reports, or that a scan
 * finds, wait in a list. A zero-delay timer does one step per event loop
 * round, with at most PICKUP_ROUND_BYTES of reading, so a large file is
 * taken in pieces while SMTP sessions and deliveries keep running. One
 * file is taken at a time.
 *
 * A file is taken when its name ends in ".eml" (any case) and does not
 * start with a dot, and it is a regular file with a single link. Its
 * envelope comes from its header section as with `sendmail -t`, or from
 * X-Sender:/X-Receiver: fields (the IIS pickup format that .NET's
 * SmtpClient writes) when it has an X-Receiver:.
 *
 * NOTE: the file is removed after the commit, so a crash between the two
 * takes the file again at the next start and queues the message twice.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "disk_sync.h"
#include "header.h"
#include "list.h"
#include "log.h"
#include "pickup.h"
#include "pickup_watch.h"
#include "relayqd.h"
#include "scheduler.h"
#include "submit.h"
#include "util.h"

/* Maximum bytes read per event loop round, so that sessions get a turn between reads. */
#define PICKUP_ROUND_BYTES (256 * 1024)
#define PICKUP_READ_SIZE (64 * 1024)
/* Delay before taking files again after a queue failure: doubles up to the maximum. */
#define PICKUP_RETRY_MIN 5
#define PICKUP_RETRY_MAX 300
/* Delay before watching the directory again after it was removed. */
#define PICKUP_REWATCH_DELAY 30
/* Attempts to find a free name in bad/ before giving up. */
#define PICKUP_BAD_NAME_TRIES 1000

/* Outcome of a step on the current file. */
enum pickup_result {
	PICKUP_MORE,	/* more to read in a later round */
	PICKUP_DONE,	/* queued and removed, or gone before it was opened */
	PICKUP_BAD,	/* not usable: move it to bad/ with the reason */
	PICKUP_RETRY,	/* the queue failed: leave the file and try again later */
};

struct pickup_name {
	TAILQ_ENTRY(pickup_name) entry;
	char *name;
};

TAILQ_HEAD(pickup_names, pickup_name);

/* The file being taken. */
struct pickup_file {
	char *name;
	char *path;
	int fd;
	unsigned int uid;		/* owner, for Received: */
	char *head;			/* the header section, while it is read */
	size_t head_len;
	size_t head_cap;
	struct submit *submit;		/* once the header section is complete */
	char *sender;
	size_t rcpt_count;
};

static struct {
	char *path;
	struct pickup_watch *watch;	/* NULL after the directory went away */
	struct event *step;		/* zero-delay timer: one step per round */
	struct event *retry;		/* after a queue failure or a lost watch */
	int64_t retry_delay;
	bool waiting;			/* for the retry timer after a queue failure */
	struct pickup_names pending;
	struct pickup_names stuck;	/* files that could be neither taken nor moved */
	struct pickup_names syncing;	/* queued, removed once the queue is synced */
	struct pickup_file *file;
} pickup;

/* A queued file, waiting for the sync of its commit before it is removed. */
struct pickup_synced {
	int64_t id;
	char *name;
	char *path;
};

/* Fields that carry the IIS pickup envelope, removed before queueing. */
static const char *const pickup_iis_drop[] = {
	"Bcc", "Resent-Bcc", "Return-Path", "X-Sender", "X-Receiver", NULL,
};

/* --- names --- */

static bool
pickup_names_has(struct pickup_names *list, const char *name)
{
	struct pickup_name *n;

	TAILQ_FOREACH(n, list, entry)
		if (strcmp(n->name, name) == 0)
			return true;
	return false;
}

static void
pickup_names_add(struct pickup_names *list, const char *name, bool front)
{
	struct pickup_name *n = xcalloc(1, sizeof(*n));

	n->name = xstrdup(name);
	if (front)
		TAILQ_INSERT_HEAD(list, n, entry);
	else
		TAILQ_INSERT_TAIL(list, n, entry);
}

static void
pickup_names_clear(struct pickup_names *list)
{
	struct pickup_name *n;

	while ((n = TAILQ_FIRST(list)) != NULL) {
		TAILQ_REMOVE(list, n, entry);
		free(n->name);
		free(n);
	}
}

static void
pickup_names_remove(struct pickup_names *list, const char *name)
{
	struct pickup_name *n;

	TAILQ_FOREACH(n, list, entry) {
		if (strcmp(n->name, name) == 0) {
			TAILQ_REMOVE(list, n, entry);
			free(n->name);
			free(n);
			return;
		}
	}
}

/* Pop the first name; the caller frees it. */
static char *
pickup_names_pop(struct pickup_names *list)
{
	struct pickup_name *n = TAILQ_FIRST(list);
	char *name;

	if (n == NULL)
		return NULL;
	TAILQ_REMOVE(list, n, entry);
	name = n->name;
	free(n);
	return name;
}

/* The naming rule: "*.eml", not hidden, and not given up on. */
static bool
pickup_name_wanted(const char *name)
{
	size_t len = strlen(name);

	if (name[0] == '.' || len <= 4 || strcasecmp(name + len - 4, ".eml") != 0)
		return false;
	return !pickup_names_has(&pickup.stuck, name) &&
	    !pickup_names_has(&pickup.syncing, name);
}

static int
pickup_name_compare(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replace the pending list with every wanted name in the directory, sorted. */
static void
pickup_scan(void)
{
	struct dirent *de;
	char **names = NULL;
	size_t count = 0, i;
	DIR *dir;

	dir = opendir(pickup.path);
	if (dir == NULL) {
		log_error("event=pickup_scan_failed path=%s error=\"%s\"", pickup.path,
		    strerror(errno));
		return;
	}
	while ((de = readdir(dir)) != NULL) {
		if (!pickup_name_wanted(de->d_name))
			continue;
		names = xrealloc(names, (count + 1) * sizeof(*names));
		names[count++] = xstrdup(de->d_name);
	}
	closedir(dir);

	if (count > 1)
		qsort(names, count, sizeof(*names), pickup_name_compare);
	pickup_names_clear(&pickup.pending);
	for (i = 0; i < count; i++) {
		pickup_names_add(&pickup.pending, names[i], false);
		free(names[i]);
	}
	free(names);
	log_debug("event=pickup_scan path=%s files=%zu", pickup.path, count);
}

static void
pickup_schedule(void)
{
	struct timeval now = { 0, 0 };

	evtimer_add(pickup.step, &now);
}

/* --- the current file --- */

static void
pickup_file_free(struct pickup_file *file)
{
	if (file == NULL)
		return;
	if (file->fd != -1)
		close(file->fd);
	submit_free(file->submit);
	free(file->head);
	free(file->sender);
	free(file->path);
	free(file->name);
	free(file);
}

/* Open NAME; a missing file is DONE (taken or removed meanwhile). */
static enum pickup_result
pickup_file_open(const char *name, struct pickup_file **out, char **reason)
{
	struct pickup_file *file = xcalloc(1, sizeof(*file));
	struct stat st;

	file->name = xstrdup(name);
	file->path = xasprintf("%s/%s", pickup.path, name);
	*out = file;

	/* O_NOFOLLOW: a link must not let a writer make relayqd read another file. */
	file->fd = open(file->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (file->fd == -1) {
		if (errno == ENOENT)
			return PICKUP_DONE;
		if (errno == EMFILE || errno == ENFILE || errno == ENOMEM) {
			set_error(reason, "cannot open the file now: %s",
			    strerror(errno));
			return PICKUP_RETRY;
		}
		if (errno == ELOOP)
			set_error(reason, "a symbolic link, not a file");
		else
			set_error(reason, "cannot open the file: %s", strerror(errno));
		return PICKUP_BAD;
	}
	if (fstat(file->fd, &st) == -1) {
		set_error(reason, "cannot examine the file: %s", strerror(errno));
		return PICKUP_BAD;
	}
	if (!S_ISREG(st.st_mode)) {
		set_error(reason, "not a regular file");
		return PICKUP_BAD;
	}
	/* A second link could expose a file that only relayqd may read. */
	if (st.st_nlink != 1) {
		set_error(reason, "the file has %lu hard links; write it under a "
		    "temporary name and rename it", (unsigned long)st.st_nlink);
		return PICKUP_BAD;
	}
	file->uid = (unsigned int)st.st_uid;
	return PICKUP_MORE;
}

/* The envelope of the IIS pickup format: X-Sender: and one X-Receiver: per recipient. */
static int
pickup_iis_envelope(const char *section, size_t len, char **sender,
    struct header_addresses *rcpts, char **errstr)
{
	struct header_addresses senders = { NULL, 0 };
	struct header_field field;
	size_t pos = 0;
	int rc = 0;

	while (rc == 0 && header_field_next(section, len, &pos, &field) == 1) {
		struct header_addresses *list = NULL;

		if (header_field_is(&field, "X-Receiver"))
			list = rcpts;
		else if (header_field_is(&field, "X-Sender"))
			list = &senders;
		if (list != NULL && header_address_list_parse(field.value,
		    field.value_len, host_fqdn(), list, errstr) == -1) {
			char *reason = *errstr;

			*errstr = NULL;
			set_error(errstr, "%.*s: %s", (int)field.name_len, field.name,
			    reason);
			free(reason);
			rc = -1;
		}
	}
	if (rc == 0 && senders.count > 0)
		*sender = xstrdup(senders.items[0]);
	header_addresses_clear(&senders);
	return rc;
}

/*
 * Find the envelope in the header section of FILE: sender and recipients
 * into FILE and RCPTS, and the fields to remove into *DROP.
 */
static enum pickup_result
pickup_file_envelope(struct pickup_file *file, size_t end,
    struct header_addresses *rcpts, const char *const **drop, char **reason)
{
	char *errstr = NULL;

	*drop = header_submission_drop;
	if (header_section_has(file->head, end, "X-Receiver")) {
		*drop = pickup_iis_drop;
		if (pickup_iis_envelope(file->head, end, &file->sender, rcpts,
		    &errstr) == -1)
			goto bad;
	} else if (header_recipients(file->head, end, host_fqdn(), rcpts,
	    &errstr) == -1)
		goto bad;

	if (file->sender == NULL && header_sender(file->head, end, host_fqdn(),
	    &file->sender, &errstr) == -1)
		goto bad;
	if (rcpts->count == 0) {
		set_error(reason, "no recipients: the message has no address in To:, "
		    "Cc: or Bcc: (or X-Receiver:)");
		return PICKUP_BAD;
	}
	if (file->sender == NULL) {
		set_error(reason, "no sender: the message has no Return-Path:, "
		    "Sender: or From: (or X-Sender:)");
		return PICKUP_BAD;
	}
	file->rcpt_count = rcpts->count;
	return PICKUP_MORE;

bad:
	set_error(reason, "invalid address in the header: %s", errstr);
	free(errstr);
	return PICKUP_BAD;
}

/* A name for Received: and the queue's client column, free of syntax characters. */
static char *
pickup_file_source(const struct pickup_file *file)
{
	char *name = xstrdup(file->name), *p, *source;

	for (p = name; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("._-+=@", *p) != NULL))
			*p = '_';
	source = xasprintf("pickup %s uid=%u", name, file->uid);
	free(name);
	return source;
}

/* The header section ends at END: create the queue entry and write what was read. */
static enum pickup_result
pickup_file_begin(struct pickup_file *file, size_t end, char **reason)
{
	struct header_addresses rcpts = { NULL, 0 };
	const char *const *drop;
	enum pickup_result result;
	char *source, *section;
	size_t len;

	result = pickup_file_envelope(file, end, &rcpts, &drop, reason);
	if (result != PICKUP_MORE) {
		header_addresses_clear(&rcpts);
		return result;
	}

	source = pickup_file_source(file);
	file->submit = submit_new(relayqd.store, file->sender, rcpts.items,
	    rcpts.count, source, reason);
	free(source);
	header_addresses_clear(&rcpts);
	if (file->submit == NULL)
		return PICKUP_RETRY;

	section = header_section_remove(file->head, end, drop, &len);
	if (submit_write(file->submit, section, len, reason) == -1 ||
	    submit_write(file->submit, file->head + end, file->head_len - end,
	    reason) == -1)
		result = PICKUP_RETRY;
	free(section);
	free(file->head);
	file->head = NULL;
	return result;
}

/* Read into the header buffer; *GOT receives the byte count (0 at the end). */
static enum pickup_result
pickup_file_read_head(struct pickup_file *file, size_t *got, char **reason)
{
	size_t end = 0;
	ssize_t n;

	if (file->head_cap - file->head_len < PICKUP_READ_SIZE) {
		file->head_cap = file->head_cap == 0 ? PICKUP_READ_SIZE * 2 :
		    file->head_cap * 2;
		file->head = xrealloc(file->head, file->head_cap);
	}
	n = read(file->fd, file->head + file->head_len, PICKUP_READ_SIZE);
	if (n == -1) {
		set_error(reason, "cannot read the file: %s", strerror(errno));
		return PICKUP_BAD;
	}
	*got = (size_t)n;
	file->head_len += (size_t)n;

	if (header_section_end(file->head, file->head_len, n == 0, &end) == 1 &&
	    end <= HEADER_SECTION_MAX)
		return pickup_file_begin(file, end, reason);
	if (file->head_len > HEADER_SECTION_MAX) {
		set_error(reason, "header section too large: more than %d bytes before "
		    "the empty line that ends it", HEADER_SECTION_MAX);
		return PICKUP_BAD;
	}
	return PICKUP_MORE;
}

/* Read body bytes into the queue; at the end of the file, commit. */
static enum pickup_result
pickup_file_read_body(struct pickup_file *file, size_t *got, int64_t *id,
    char **reason)
{
	char buf[PICKUP_READ_SIZE];
	ssize_t n;

	n = read(file->fd, buf, sizeof(buf));
	if (n == -1) {
		set_error(reason, "cannot read the file: %s", strerror(errno));
		return PICKUP_BAD;
	}
	*got = (size_t)n;
	if (n > 0)
		return submit_write(file->submit, buf, (size_t)n, reason) == -1 ?
		    PICKUP_RETRY : PICKUP_MORE;
	if (submit_commit(file->submit, id, NULL, reason) == -1)
		return PICKUP_RETRY;
	return PICKUP_DONE;
}

/* Work on the current file for up to one round's worth of reading. */
static enum pickup_result
pickup_file_work(struct pickup_file *file, int64_t *id, char **reason)
{
	size_t budget = PICKUP_ROUND_BYTES, got = 0;
	enum pickup_result result = PICKUP_MORE;

	while (result == PICKUP_MORE && budget > 0) {
		if (file->submit == NULL)
			result = pickup_file_read_head(file, &got, reason);
		else
			result = pickup_file_read_body(file, &got, id, reason);
		budget -= got < budget ? got : budget;
	}
	return result;
}

/* --- outcomes --- */

/* Rename FROM to TO unless TO exists (then fail with EEXIST). */
static int
pickup_rename_new(const char *from, const char *to)
{
	struct stat st;

	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;

	/*
	 * NOTE: file systems without RENAME_NOREPLACE get this check, so a
	 * name taken between the check and the rename is overwritten.
	 */
	if (lstat(to, &st) == 0) {
		errno = EEXIST;
		return -1;
	}
	return rename(from, to);
}

/* Move NAME into bad/ under a free name. Returns the new path, or NULL with *ERRSTR. */
static char *
pickup_move_bad(const char *name, char **errstr)
{
	char *dir = xasprintf("%s/bad", pickup.path), *from, *to = NULL;
	int i;

	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		set_error(errstr, "cannot create %s: %s", dir, strerror(errno));
		free(dir);
		return NULL;
	}
	from = xasprintf("%s/%s", pickup.path, name);
	for (i = 0; i < PICKUP_BAD_NAME_TRIES; i++) {
		to = i == 0 ? xasprintf("%s/%s", dir, name) :
		    xasprintf("%s/%d-%s", dir, i, name);
		/* An earlier bad file of the same name is kept. */
		if (pickup_rename_new(from, to) == 0)
			break;
		if (errno != EEXIST) {
			set_error(errstr, "cannot move it to %s: %s", dir, strerror(errno));
			free(to);
			to = NULL;
			break;
		}
		free(to);
		to = NULL;
	}
	if (to == NULL && i == PICKUP_BAD_NAME_TRIES)
		set_error(errstr, "no free name for it in %s", dir);
	free(from);
	free(dir);
	return to;
}

/* Write REASON into PATH.reason, beside the moved file. */
static void
pickup_write_reason(const char *path, const char *reason)
{
	char *reason_path = xasprintf("%s.reason", path), *text, date[64];
	int fd;

	time_format_rfc3339(now_seconds(), date, sizeof(date));
	text = xasprintf("%s relayqd did not queue this file: %s\n", date, reason);
	fd = open(reason_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd == -1 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		char *escaped = log_escape(reason_path, strlen(reason_path));

		log_error("event=pickup_reason_failed path=\"%s\" error=\"%s\"",
		    escaped, strerror(errno));
		free(escaped);
	}
	if (fd != -1)
		close(fd);
	free(text);
	free(reason_path);
}

static void
pickup_quarantine(const char *name, const char *reason)
{
	char *escaped = log_escape(name, strlen(name)), *errstr = NULL, *to;
	char *reason_text = log_escape(reason, strlen(reason));

	to = pickup_move_bad(name, &errstr);
	if (to != NULL) {
		char *moved_to = log_escape(to, strlen(to));

		pickup_write_reason(to, reason);
		log_warning("event=pickup_rejected file=\"%s\" reason=\"%s\" "
		    "moved_to=\"%s\"", escaped, reason_text, moved_to);
		free(moved_to);
	} else {
		/* Left in place, it would be examined again on every scan. */
		log_error("event=pickup_rejected file=\"%s\" reason=\"%s\" "
		    "error=\"%s\" note=\"the file stays in place and is ignored "
		    "until relayqd restarts\"", escaped, reason_text, errstr);
		pickup_names_add(&pickup.stuck, name, false);
	}
	free(to);
	free(errstr);
	free(reason_text);
	free(escaped);
}

/*
 * The commit of a queued file is on disk, or its sync failed. Only now
 * may the file go: removed before the sync, a power loss could lose both.
 * After a failed sync the message stays queued and the file stays too,
 * ignored until the next start, which may queue it a second time.
 */
static void
pickup_synced(void *arg, const char *error)
{
	struct pickup_synced *q = arg;
	char *name = log_escape(q->name, strlen(q->name));
	bool running = pickup.path != NULL;

	if (running)
		pickup_names_remove(&pickup.syncing, q->name);
	if (error != NULL) {
		log_error("msg=%lld event=pickup_sync_failed file=\"%s\" error=\"%s\" "
		    "note=\"the message is queued; the file stays and is queued "
		    "again at the next start\"", (long long)q->id, name, error);
		if (running)
			pickup_names_add(&pickup.stuck, q->name, false);
	} else if (unlink(q->path) == -1) {
		log_error("msg=%lld event=pickup_unlink_failed file=\"%s\" error=\"%s\" "
		    "note=\"remove the file, or relayqd queues it again at its next "
		    "start\"", (long long)q->id, name, strerror(errno));
		if (running)
			pickup_names_add(&pickup.stuck, q->name, false);
	}
	if (error == NULL)
		scheduler_wake();
	free(name);
	free(q->name);
	free(q->path);
	free(q);
}

static void
pickup_accepted(struct pickup_file *file, int64_t id)
{
	char *name = log_escape(file->name, strlen(file->name));
	char *sender = log_escape(file->sender, strlen(file->sender));
	struct pickup_synced *q = xcalloc(1, sizeof(*q));

	log_info("msg=%lld event=accepted source=pickup file=\"%s\" from=<%s> "
	    "rcpts=%zu size=%llu", (long long)id, name, sender, file->rcpt_count,
	    (unsigned long long)submit_size(file->submit));
	free(sender);
	free(name);

	q->id = id;
	q->name = xstrdup(file->name);
	q->path = xstrdup(file->path);
	pickup_names_add(&pickup.syncing, file->name, false);
	disk_sync_after_commit(pickup_synced, q);
}

/* The queue failed: put the file back in front and wait before the next try. */
static void
pickup_defer(const char *name, const char *reason)
{
	char *escaped = log_escape(name, strlen(name));
	char *reason_text = log_escape(reason, strlen(reason));
	struct timeval delay = { 0, 0 };

	pickup.retry_delay = pickup.retry_delay == 0 ? PICKUP_RETRY_MIN :
	    pickup.retry_delay * 2;
	if (pickup.retry_delay > PICKUP_RETRY_MAX)
		pickup.retry_delay = PICKUP_RETRY_MAX;
	log_error("event=pickup_deferred file=\"%s\" error=\"%s\" retry_in=%llds",
	    escaped, reason_text, (long long)pickup.retry_delay);

	pickup_names_add(&pickup.pending, name, true);
	pickup.waiting = true;
	delay.tv_sec = (time_t)pickup.retry_delay;
	evtimer_add(pickup.retry, &delay);
	free(reason_text);
	free(escaped);
}

/* --- event loop --- */

static void
pickup_step(evutil_socket_t fd, short what, void *arg)
{
	struct pickup_file *file;
	enum pickup_result result;
	char *reason = NULL, *name;
	int64_t id = 0;

	if (relayqd.stopping || pickup.waiting)
		return;
	if (pickup.file == NULL) {
		name = pickup_names_pop(&pickup.pending);
		if (name == NULL)
			return;
		result = pickup_file_open(name, &pickup.file, &reason);
		free(name);
		if (result == PICKUP_MORE)
			result = pickup_file_work(pickup.file, &id, &reason);
	} else {
		result = pickup_file_work(pickup.file, &id, &reason);
	}

	file = pickup.file;
	if (result != PICKUP_MORE)
		pickup.file = NULL;
	/* Windows cannot remove or rename a file that is still open. */
	if (result != PICKUP_MORE && file->fd != -1) {
		close(file->fd);
		file->fd = -1;
	}
	if (result == PICKUP_DONE && file->submit != NULL) {
		pickup_accepted(file, id);
		pickup.retry_delay = 0;
	} else if (result == PICKUP_BAD) {
		pickup_quarantine(file->name, reason);
	} else if (result == PICKUP_RETRY) {
		pickup_defer(file->name, reason);
	}
	if (result != PICKUP_MORE)
		pickup_file_free(file);
	free(reason);
	pickup_schedule();
}

static void
pickup_watch_event(enum pickup_watch_event event, const char *name, void *arg)
{
	struct timeval delay = { PICKUP_REWATCH_DELAY, 0 };

	switch (event) {
	case PICKUP_WATCH_FILE:
		if (pickup_name_wanted(name))
			pickup_names_add(&pickup.pending, name, false);
		break;
	case PICKUP_WATCH_RESCAN:
		log_warning("event=pickup_rescan path=%s reason=\"notifications were "
		    "lost\"", pickup.path);
		pickup_scan();
		break;
	case PICKUP_WATCH_GONE:
		log_error("event=pickup_watch_lost path=%s note=\"the directory was "
		    "removed or moved; trying again in %ds\"", pickup.path,
		    PICKUP_REWATCH_DELAY);
		pickup_watch_stop(pickup.watch);
		pickup.watch = NULL;
		evtimer_add(pickup.retry, &delay);
		return;
	}
	pickup_schedule();
}

/* Create the directory when missing and check that relayqd may use it. */
static int
pickup_prepare_dir(char **errstr)
{
	struct stat st;

	if (mkdir(pickup.path, 0700) == -1 && errno != EEXIST)
		return set_error(errstr, "cannot create the pickup directory %s: %s; "
		    "create it or change pickup.path", pickup.path, strerror(errno));
	if (stat(pickup.path, &st) == -1 || !S_ISDIR(st.st_mode))
		return set_error(errstr, "pickup.path %s is not a directory",
		    pickup.path);
	/* Taking a file means reading it, then removing or moving it. */
	if (access(pickup.path, R_OK | W_OK | X_OK) == -1)
		return set_error(errstr, "the pickup directory %s is not readable and "
		    "writable by relayqd: %s", pickup.path, strerror(errno));
	return 0;
}

static int
pickup_watch_again(void)
{
	struct timeval delay = { PICKUP_REWATCH_DELAY, 0 };
	char *errstr = NULL;

	if (pickup_prepare_dir(&errstr) == 0)
		pickup.watch = pickup_watch_start(relayqd.base, pickup.path,
		    pickup_watch_event, NULL, &errstr);
	if (pickup.watch == NULL) {
		log_error("event=pickup_watch_failed error=\"%s\" retry_in=%ds",
		    errstr, PICKUP_REWATCH_DELAY);
		free(errstr);
		evtimer_add(pickup.retry, &delay);
		return -1;
	}
	log_info("event=pickup_watching path=%s", pickup.path);
	pickup_scan();
	return 0;
}

static void
pickup_retry(evutil_socket_t fd, short what, void *arg)
{
	pickup.waiting = false;
	if (pickup.watch == NULL && pickup_watch_again() == -1)
		return;
	pickup_schedule();
}

int
pickup_start(char **errstr)
{
	const char *path = relayqd.config->pickup_path;

	if (path == NULL)
		return 0;
	TAILQ_INIT(&pickup.pending);
	TAILQ_INIT(&pickup.stuck);
	TAILQ_INIT(&pickup.syncing);
	pickup.path = xstrdup(path);
	if (pickup_prepare_dir(errstr) == -1)
		return -1;

	pickup.step = evtimer_new(relayqd.base, pickup_step, NULL);
	pickup.retry = evtimer_new(relayqd.base, pickup_retry, NULL);
	if (pickup.step == NULL || pickup.retry == NULL)
		return set_error(errstr, "cannot create the pickup events");

	/* Watch first, then scan: a file that arrives in between is seen twice, not lost. */
	pickup.watch = pickup_watch_start(relayqd.base, path, pickup_watch_event,
	    NULL, errstr);
	if (pickup.watch == NULL)
		return -1;
	pickup_scan();
	log_info("event=pickup_started path=%s", pickup.path);
	pickup_schedule();
	return 0;
}

void
pickup_stop(void)
{
	pickup_file_free(pickup.file);
	pickup_watch_stop(pickup.watch);
	if (pickup.step != NULL)
		event_free(pickup.step);
	if (pickup.retry != NULL)
		event_free(pickup.retry);
	if (pickup.path != NULL) {
		pickup_names_clear(&pickup.pending);
		pickup_names_clear(&pickup.stuck);
		pickup_names_clear(&pickup.syncing);
	}
	free(pickup.path);
	memset(&pickup, 0, sizeof(pickup));
}
