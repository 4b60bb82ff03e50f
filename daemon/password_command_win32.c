/*
 * Running smarthost.password_command from the event loop on Windows.
 * compat_run_command() blocks, so a worker thread runs it and activates
 * an event in the loop when it ends. The loop then caches the result and
 * hands it to the waiting sessions. The output is a secret: it is wiped
 * after parsing and never logged.
 */
#include "compat.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "list.h"
#include "log.h"
#include "password_command.h"
#include "secret.h"
#include "util.h"

struct password_command_wait {
	TAILQ_ENTRY(password_command_wait) entry;
	password_command_cb *cb;
	void *arg;
};

/* One run. The worker thread owns the output fields until it activates DONE. */
struct password_command_run {
	char *command;
	HANDLE thread;
	HANDLE cancel;			/* set at shutdown to end the command */
	struct event *done;
	char *out;
	size_t used;
	unsigned long status;
	char *error;			/* set when the command could not run */
	int rc;
};

static struct {
	/* The cache. */
	char *command;			/* the command the cache belongs to */
	char *secret;
	size_t len;
	int64_t expires;		/* Unix seconds */

	struct password_command_run *run;	/* the run in flight, or NULL */
	TAILQ_HEAD(, password_command_wait) waits;
	bool initialised;
} pc;

static void
password_command_init(void)
{
	if (pc.initialised)
		return;
	TAILQ_INIT(&pc.waits);
	pc.initialised = true;
}

static void
password_command_cache_clear(void)
{
	secret_free(pc.secret, pc.len);
	pc.secret = NULL;
	pc.len = 0;
	pc.expires = 0;
}

int
password_command_cached(const char *command, char **secret, size_t *len)
{
	if (pc.secret == NULL || pc.command == NULL ||
	    strcmp(pc.command, command) != 0 || now_seconds() >= pc.expires)
		return 0;
	*secret = xstrndup(pc.secret, pc.len);
	*len = pc.len;
	return 1;
}

void
password_command_forget(void)
{
	password_command_cache_clear();
}

/* Wait for the worker thread of RUN to end and free RUN. */
static void
password_command_run_free(struct password_command_run *run)
{
	if (run == NULL)
		return;
	if (run->thread != NULL) {
		WaitForSingleObject(run->thread, INFINITE);
		CloseHandle(run->thread);
	}
	if (run->cancel != NULL)
		CloseHandle(run->cancel);
	if (run->done != NULL)
		event_free(run->done);
	secret_free(run->out, SECRET_MAX + 63);
	free(run->error);
	free(run->command);
	free(run);
}

/* Hand the result to every waiting session, removing each before its call. */
static void
password_command_deliver(const char *secret, size_t len, const char *error)
{
	struct password_command_wait *wait;

	while ((wait = TAILQ_FIRST(&pc.waits)) != NULL) {
		TAILQ_REMOVE(&pc.waits, wait, entry);
		wait->cb(wait->arg, secret, len, error);
		free(wait);
	}
}

static void
password_command_fail(const char *error)
{
	char *escaped = log_escape(error, strlen(error));

	log_warning("event=password_command_failed error=\"%s\"", escaped);
	free(escaped);
	password_command_deliver(NULL, 0, error);
}

/* The run has ended (in the loop): parse the output, cache it and deliver it. */
static void
password_command_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct password_command_run *run = arg;
	char *secret = NULL, *error = NULL;
	int64_t lifetime = 0;
	size_t len = 0;

	(void)fd;
	(void)what;
	pc.run = NULL;
	if (run->rc == -1) {
		password_command_fail(run->error);
		password_command_run_free(run);
		return;
	}
	if (secret_command_status((int)run->status, &error) == -1 ||
	    secret_parse_command_output(run->out, run->used, &secret, &len,
	    &lifetime, &error) == -1) {
		password_command_run_free(run);
		password_command_fail(error);
		free(error);
		return;
	}
	password_command_run_free(run);

	password_command_cache_clear();
	pc.secret = secret;
	pc.len = len;
	pc.expires = now_seconds() + secret_cache_seconds(lifetime);
	log_info("event=password_command_done lifetime=%llds cached_for=%llds",
	    (long long)lifetime, (long long)(pc.expires - now_seconds()));

	/* Each session gets a copy, because one may reject it and forget the cache. */
	secret = xstrndup(pc.secret, pc.len);
	password_command_deliver(secret, len, NULL);
	secret_free(secret, len);
}

static DWORD WINAPI
password_command_thread(void *arg)
{
	struct password_command_run *run = arg;

	run->rc = compat_run_command(run->command, SECRET_COMMAND_TIMEOUT, false,
	    run->cancel, run->out, SECRET_MAX + 63, &run->used, &run->status,
	    &run->error);
	/* libevent's thread support (compat_init()) makes this safe from here. */
	event_active(run->done, EV_READ, 1);
	return 0;
}

static int
password_command_start(struct event_base *base, const char *command,
    char **errstr)
{
	struct password_command_run *run = xcalloc(1, sizeof(*run));
	char *text;

	run->command = xstrdup(command);
	run->out = xmalloc(SECRET_MAX + 64);
	run->cancel = CreateEventW(NULL, TRUE, FALSE, NULL);
	run->done = event_new(base, -1, 0, password_command_done_cb, run);
	if (run->cancel == NULL || run->done == NULL) {
		password_command_run_free(run);
		return set_error(errstr, "cannot run smarthost.password_command: "
		    "cannot create its events");
	}
	run->thread = CreateThread(NULL, 0, password_command_thread, run, 0, NULL);
	if (run->thread == NULL) {
		text = compat_win32_strerror(GetLastError());
		set_error(errstr, "cannot run smarthost.password_command: "
		    "CreateThread: %s", text);
		free(text);
		password_command_run_free(run);
		return -1;
	}
	pc.run = run;

	/* A different command after a reload makes the old cache useless. */
	if (pc.command == NULL || strcmp(pc.command, command) != 0) {
		password_command_cache_clear();
		free(pc.command);
		pc.command = xstrdup(command);
	}
	log_info("event=password_command_started");
	return 0;
}

struct password_command_wait *
password_command_run(struct event_base *base, const char *command,
    password_command_cb *cb, void *arg, char **errstr)
{
	struct password_command_wait *wait;

	password_command_init();
	if (pc.run == NULL && password_command_start(base, command, errstr) == -1)
		return NULL;

	wait = xcalloc(1, sizeof(*wait));
	wait->cb = cb;
	wait->arg = arg;
	TAILQ_INSERT_TAIL(&pc.waits, wait, entry);
	return wait;
}

void
password_command_cancel(struct password_command_wait *wait)
{
	if (wait == NULL)
		return;
	TAILQ_REMOVE(&pc.waits, wait, entry);
	free(wait);
}

void
password_command_shutdown(void)
{
	struct password_command_wait *wait;

	password_command_init();
	if (pc.run != NULL) {
		SetEvent(pc.run->cancel);
		password_command_run_free(pc.run);
		pc.run = NULL;
	}
	while ((wait = TAILQ_FIRST(&pc.waits)) != NULL) {
		TAILQ_REMOVE(&pc.waits, wait, entry);
		free(wait);
	}
	password_command_cache_clear();
	free(pc.command);
	pc.command = NULL;
}
