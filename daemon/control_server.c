/*
 * The control socket: a Unix socket with mode 0600. Each connection sends
 * one request line and gets one reply line. Requests only wake the
 * scheduler; every change to the queue itself goes through SQLite.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "control.h"
#include "control_server.h"
#include "log.h"
#include "relayqd.h"
#include "scheduler.h"
#include "util.h"

static struct evconnlistener *control_listener;
static char *control_path;

static void
control_server_reply(struct bufferevent *bev, const char *line)
{
	bufferevent_write(bev, line, strlen(line));
	bufferevent_write(bev, "\n", 1);
}

static void
control_server_done(struct bufferevent *bev, void *arg)
{
	bufferevent_free(bev);
}

static void
control_server_event(struct bufferevent *bev, short what, void *arg)
{
	bufferevent_free(bev);
}

static void
control_server_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;

	line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
	if (line == NULL) {
		if (evbuffer_get_length(in) > CONTROL_LINE_MAX)
			bufferevent_free(bev);
		return;
	}

	if (strcmp(line, "wake") == 0) {
		log_debug("event=control request=wake");
		scheduler_wake();
		control_server_reply(bev, "ok");
	} else {
		control_server_reply(bev, "error unknown request");
	}
	free(line);
	bufferevent_disable(bev, EV_READ);
	bufferevent_setcb(bev, NULL, control_server_done, control_server_event, NULL);
}

static void
control_server_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *addr, int addrlen, void *arg)
{
	struct bufferevent *bev;
	struct timeval tv = { 5, 0 };

	bev = bufferevent_socket_new(relayqd.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		close(fd);
		return;
	}
	bufferevent_setcb(bev, control_server_read, NULL, control_server_event, NULL);
	bufferevent_set_timeouts(bev, &tv, &tv);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

int
control_server_start(char **errstr)
{
	const char *path = relayqd.config->control_socket;
	struct sockaddr_un sun;
	mode_t old_mask;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		return set_error(errstr, "control.socket %s is too long; choose a "
		    "path under %zu bytes", path, sizeof(sun.sun_path));
	memcpy(sun.sun_path, path, strlen(path) + 1);

	/* A socket left by a killed daemon blocks bind(); nobody else listens here. */
	if (unlink(path) == -1 && errno != ENOENT)
		return set_error(errstr, "cannot remove the old control socket %s: %s",
		    path, strerror(errno));

	/* The umask makes the socket 0600 from its creation, with no window. */
	old_mask = umask(0177);
	control_listener = evconnlistener_new_bind(relayqd.base, control_server_accept,
	    NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
	    (struct sockaddr *)&sun, sizeof(sun));
	umask(old_mask);
	if (control_listener == NULL)
		return set_error(errstr, "cannot listen on the control socket %s: %s; "
		    "check control.socket", path, strerror(errno));
	control_path = xstrdup(path);
	return 0;
}

void
control_server_stop(void)
{
	if (control_listener != NULL) {
		evconnlistener_free(control_listener);
		control_listener = NULL;
	}
	if (control_path != NULL) {
		unlink(control_path);
		free(control_path);
		control_path = NULL;
	}
}
