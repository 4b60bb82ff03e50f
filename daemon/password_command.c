/*
 * Running smarthost.password_command from the event loop: its output is
 * read through a pipe with a read event, the child is reaped with
 * waitpid(WNOHANG) on a short timer, and a deadline kills its process
 * group. The output is a secret: it is wiped after parsing and never
 * logged.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "list.h"
#include "log.h"
#include "password_command.h"
#include "secret.h"
#include "util.h"

/* Interval between checks for the child's exit once its output has ended, in milliseconds. */
#define PASSWORD_COMMAND_REAP_MS 20

struct password_command_wait {
	TAILQ_ENTRY(password_command_wait) entry;
	password_command_cb *cb;
	void *arg;
};

static struct {
	/* The cache. */
	char *command;			/* the command the cache belongs to */
	char *secret;
	size_t len;
	int64_t expires;		/* Unix seconds */

	/* The run in flight, when pid > 0. */
	pid_t pid;
	int fd;
	int64_t deadline;		/* Unix milliseconds */
	char *out;
	size_t used;
	struct event *read_event;
	struct event *timer;
	TAILQ_HEAD(, password_command_wait) waits;
	bool initialised;
} pc;

static void
password_command_init(void)
{
	if (pc.initialised)
		return;
	TAILQ_INIT(&pc.waits);
	pc.fd = -1;
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

/* End the run in flight: close the pipe and free its events and output. */
static void
password_command_end_run(void)
{
	if (pc.read_event != NULL)
		event_free(pc.read_event);
	if (pc.timer != NULL)
		event_free(pc.timer);
	pc.read_event = NULL;
	pc.timer = NULL;
	if (pc.fd != -1)
		close(pc.fd);
	pc.fd = -1;
	pc.pid = 0;
	secret_free(pc.out, SECRET_MAX + 63);
	pc.out = NULL;
	pc.used = 0;
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
	password_command_end_run();
	password_command_deliver(NULL, 0, error);
}

/* The child has exited with STATUS: parse the output and cache it. */
static void
password_command_finish(int status)
{
	char *secret = NULL, *error = NULL;
	int64_t lifetime = 0;
	size_t len = 0;

	if (secret_command_status(status, &error) == -1 ||
	    secret_parse_command_output(pc.out, pc.used, &secret, &len,
	    &lifetime, &error) == -1) {
		password_command_fail(error);
		free(error);
		return;
	}
	password_command_end_run();

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

static void
password_command_timeout(void)
{
	char *error = xasprintf("smarthost.password_command did not finish "
	    "within %ds", SECRET_COMMAND_TIMEOUT);

	secret_command_kill(pc.pid);
	password_command_fail(error);
	free(error);
}

/* The output has ended: wait for the child's exit without blocking. */
static void
password_command_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = { 0, PASSWORD_COMMAND_REAP_MS * 1000 };
	pid_t done;
	int status = 0;

	(void)fd;
	(void)what;
	(void)arg;
	done = waitpid(pc.pid, &status, WNOHANG);
	if (done == pc.pid) {
		password_command_finish(status);
		return;
	}
	if (done == -1 && errno != EINTR) {
		password_command_fail("cannot wait for smarthost.password_command");
		return;
	}
	if (now_millis() >= pc.deadline) {
		password_command_timeout();
		return;
	}
	evtimer_add(pc.timer, &tv);
}

static void
password_command_read_cb(evutil_socket_t fd, short what, void *arg)
{
	size_t room = SECRET_MAX + 63;
	ssize_t n;

	(void)arg;
	if ((what & EV_TIMEOUT) != 0 || now_millis() >= pc.deadline) {
		password_command_timeout();
		return;
	}

	n = read(fd, pc.out + pc.used, room - pc.used);
	if (n == -1 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n > 0) {
		pc.used += (size_t)n;
		if (pc.used < room)
			return;
	}

	/* End of output (or more than a secret can be): the rest is not read. */
	event_del(pc.read_event);
	close(pc.fd);
	pc.fd = -1;
	password_command_reap_cb(-1, 0, NULL);
}

static int
password_command_start(struct event_base *base, const char *command,
    char **errstr)
{
	struct timeval tv = { SECRET_COMMAND_TIMEOUT, 0 };

	if (secret_command_spawn(command, false, &pc.pid, &pc.fd, errstr) == -1)
		return -1;
	evutil_make_socket_nonblocking(pc.fd);
	pc.deadline = now_millis() + (int64_t)SECRET_COMMAND_TIMEOUT * 1000;
	pc.out = xmalloc(SECRET_MAX + 64);
	pc.used = 0;
	pc.read_event = event_new(base, pc.fd, EV_READ | EV_PERSIST,
	    password_command_read_cb, NULL);
	pc.timer = evtimer_new(base, password_command_reap_cb, NULL);
	event_add(pc.read_event, &tv);

	/* A different command after a reload makes the old cache useless. */
	if (pc.command == NULL || strcmp(pc.command, command) != 0) {
		password_command_cache_clear();
		free(pc.command);
		pc.command = xstrdup(command);
	}
	log_info("event=password_command_started pid=%ld", (long)pc.pid);
	return 0;
}

struct password_command_wait *
password_command_run(struct event_base *base, const char *command,
    password_command_cb *cb, void *arg, char **errstr)
{
	struct password_command_wait *wait;

	password_command_init();
	if (pc.pid == 0 && password_command_start(base, command, errstr) == -1)
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
	if (pc.pid > 0)
		secret_command_kill(pc.pid);
	password_command_end_run();
	while ((wait = TAILQ_FIRST(&pc.waits)) != NULL) {
		TAILQ_REMOVE(&pc.waits, wait, entry);
		free(wait);
	}
	password_command_cache_clear();
	free(pc.command);
	pc.command = NULL;
}
