/* SMTP listening sockets: one evconnlistener per "listen:" entry. */
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include <event2/listener.h>

#include "listener.h"
#include "log.h"
#include "relayqd.h"
#include "smtp_server.h"
#include "util.h"

static struct evconnlistener **listeners;
static size_t listener_count;

static void
listener_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *addr, int addrlen, void *arg)
{
	smtp_server_accept(fd, addr, (socklen_t)addrlen);
}

static void
listener_error(struct evconnlistener *l, void *arg)
{
	const struct config_listen *entry = arg;
	int err = EVUTIL_SOCKET_ERROR();

	/* EMFILE and friends are passing conditions: log them and keep listening. */
	log_error("event=accept_failed listen=%s error=\"%s\"", entry->text,
	    evutil_socket_error_to_string(err));
}

static int
listener_open(const struct config_listen *entry, char **errstr)
{
	struct addrinfo hints, *res = NULL;
	struct evconnlistener *l;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	rc = getaddrinfo(entry->host, entry->port, &hints, &res);
	if (rc != 0)
		return set_error(errstr, "listen %s: invalid address: %s", entry->text,
		    gai_strerror(rc));

	l = evconnlistener_new_bind(relayqd.base, listener_accept, (void *)entry,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 128,
	    res->ai_addr, (int)res->ai_addrlen);
	freeaddrinfo(res);
	if (l == NULL)
		return set_error(errstr, "listen %s: cannot bind: %s; is another mail "
		    "server using this port, or does the port need root?", entry->text,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	evconnlistener_set_error_cb(l, listener_error);

	listeners = xrealloc(listeners, (listener_count + 1) * sizeof(*listeners));
	listeners[listener_count++] = l;
	log_info("event=listening address=%s", entry->text);
	return 0;
}

int
listener_start(char **errstr)
{
	size_t i;

	for (i = 0; i < relayqd.config->listen_count; i++) {
		if (listener_open(&relayqd.config->listen[i], errstr) == -1) {
			listener_stop();
			return -1;
		}
	}
	return 0;
}

void
listener_stop(void)
{
	size_t i;

	for (i = 0; i < listener_count; i++)
		evconnlistener_free(listeners[i]);
	free(listeners);
	listeners = NULL;
	listener_count = 0;
}
