/*
 * SMTP listening sockets: one evconnlistener per "listen:" entry, or per
 * socket passed by the service manager (socket activation), which then
 * replace the configured list.
 */
#include <sys/types.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "compat.h"
#include "listener.h"
#include "log.h"
#include "relayqd.h"
#include "service.h"
#include "smtp_server.h"
#include "smtpd_policy.h"
#include "util.h"

/*
 * One listening socket. It keeps its own copy of the address text, because
 * a reload frees the config that named it while the socket stays open.
 * A reload also replaces its policy; sessions keep the one they started with.
 */
struct listener {
	struct evconnlistener *evl;
	struct sockaddr_storage addr;	/* bound address, for matching entries */
	socklen_t addrlen;
	char *text;			/* "127.0.0.1:25", for log lines */
	uint64_t id;			/* stays the same across reloads */
	struct smtpd_policy *policy;	/* allowed clients, TLS, AUTH and limits */
	struct event *resume;		/* ends a pause after a failed accept() */
};

/* How long a listener stops accepting after accept() failed, such as at the descriptor limit. */
#define LISTENER_PAUSE_MS 1000

static struct listener **listeners;
static size_t listener_count;
static bool listener_activated;	/* the sockets came from socket activation */
static uint64_t listener_next_id = 1;

static void
listener_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *addr, int addrlen, void *arg)
{
	struct listener *listener = arg;

	smtp_server_accept(fd, addr, (socklen_t)addrlen, listener->policy);
}

static void
listener_resume(evutil_socket_t fd, short what, void *arg)
{
	struct listener *listener = arg;

	evconnlistener_enable(listener->evl);
}

/*
 * accept() failed with EMFILE, ENFILE, ENOBUFS or ENOMEM. The connection
 * stays in the backlog and the socket stays readable, so listening on at
 * once would spin on accept() and flood the log. Pause instead; sessions
 * that end meanwhile give their descriptors back.
 */
static void
listener_error(struct evconnlistener *l, void *arg)
{
	struct listener *listener = arg;
	struct timeval pause = { LISTENER_PAUSE_MS / 1000,
	    (LISTENER_PAUSE_MS % 1000) * 1000 };
	int err = EVUTIL_SOCKET_ERROR();

	if (listener->resume == NULL)
		listener->resume = evtimer_new(relayqd.base, listener_resume, listener);
	if (listener->resume == NULL) {
		log_error("event=accept_failed listen=%s error=\"%s\"", listener->text,
		    evutil_socket_error_to_string(err));
		return;
	}
	log_error("event=accept_failed listen=%s error=\"%s\" sessions=%d "
	    "note=\"not accepting for %d ms\"", listener->text,
	    evutil_socket_error_to_string(err), smtp_server_sessions(),
	    LISTENER_PAUSE_MS);
	evconnlistener_disable(l);
	evtimer_add(listener->resume, &pause);
}

static void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	if (l->resume != NULL)
		event_free(l->resume);
	if (l->evl != NULL)
		evconnlistener_free(l->evl);
	smtpd_policy_free(l->policy);
	free(l->text);
	free(l);
}

static int
listener_resolve(const struct config_listen *entry, struct sockaddr_storage *ss,
    socklen_t *len, char **errstr)
{
	struct addrinfo hints, *res = NULL;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	rc = getaddrinfo(entry->host, entry->port, &hints, &res);
	if (rc != 0)
		return set_error(errstr, "listen %s: invalid address: %s", entry->text,
		    gai_strerror(rc));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = (socklen_t)res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* True when A and B are the same IP address and port. */
static bool
listener_same_address(const struct sockaddr_storage *a,
    const struct sockaddr_storage *b)
{
	const struct sockaddr_in *a4 = (const void *)a, *b4 = (const void *)b;
	const struct sockaddr_in6 *a6 = (const void *)a, *b6 = (const void *)b;

	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return a4->sin_port == b4->sin_port &&
		    a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return a6->sin6_port == b6->sin6_port &&
		    memcmp(&a6->sin6_addr, &b6->sin6_addr, sizeof(a6->sin6_addr)) == 0;
	return false;
}

/* Index of the open listener bound to SS, or -1. */
static ssize_t
listener_find(const struct sockaddr_storage *ss)
{
	size_t i;

	for (i = 0; i < listener_count; i++)
		if (listeners[i] != NULL && listener_same_address(&listeners[i]->addr, ss))
			return (ssize_t)i;
	return -1;
}

/* Bind and listen on ENTRY of CONFIG. Returns the new listener, or NULL with *ERRSTR. */
static struct listener *
listener_open(struct config *config, const struct config_listen *entry,
    char **errstr)
{
	struct listener *l = xcalloc(1, sizeof(*l));

	if (listener_resolve(entry, &l->addr, &l->addrlen, errstr) == -1) {
		free(l);
		return NULL;
	}
	l->id = listener_next_id++;
	l->text = xstrdup(entry->text);
	l->policy = smtpd_policy_new(config, entry, entry->text, l->id, errstr);
	if (l->policy == NULL) {
		listener_free(l);
		return NULL;
	}
	l->evl = evconnlistener_new_bind(relayqd.base, listener_accept, l,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 128,
	    (struct sockaddr *)&l->addr, (int)l->addrlen);
	if (l->evl == NULL) {
		set_error(errstr, "listen %s: cannot bind: %s; is another mail "
		    "server using this port, or does the port need root?", entry->text,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		listener_free(l);
		return NULL;
	}
	evconnlistener_set_error_cb(l->evl, listener_error);
	log_info("event=listening address=%s", entry->text);
	return l;
}

static void
listener_append(struct listener *l)
{
	listeners = xrealloc(listeners, (listener_count + 1) * sizeof(*listeners));
	listeners[listener_count++] = l;
}

/* "127.0.0.1:25" or "[::1]:25" for a bound socket address. */
static char *
listener_address_text(const struct sockaddr_storage *ss, socklen_t len)
{
	char host[NI_MAXHOST], port[NI_MAXSERV];

	if (getnameinfo((const struct sockaddr *)ss, len, host, sizeof(host), port,
	    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		return xstrdup("unknown");
	if (ss->ss_family == AF_INET6)
		return xasprintf("[%s]:%s", host, port);
	return xasprintf("%s:%s", host, port);
}

/* The config entry whose address is SS, or NULL. */
static const struct config_listen *
listener_config_entry(const struct config *config, const struct sockaddr_storage *ss)
{
	struct sockaddr_storage entry_addr;
	socklen_t entry_len;
	size_t i;

	for (i = 0; i < config->listen_count; i++) {
		if (listener_resolve(&config->listen[i], &entry_addr, &entry_len,
		    NULL) == -1)
			continue;
		if (listener_same_address(&entry_addr, ss))
			return &config->listen[i];
	}
	return NULL;
}

/*
 * Warn about each "listen:" entry that no passed socket serves: with
 * socket activation the socket unit decides what relayqd listens on.
 */
static void
listener_warn_unserved(const struct config *config)
{
	struct sockaddr_storage ss;
	socklen_t len;
	size_t i;

	for (i = 0; i < config->listen_count; i++) {
		if (listener_resolve(&config->listen[i], &ss, &len, NULL) == -1 ||
		    listener_find(&ss) == -1)
			log_warning("event=listen_ignored address=%s reason=\"the "
			    "service manager passed the listening sockets, so this "
			    "address is not bound\" note=\"add it to the socket unit "
			    "(relayqd.socket) or remove it from listen\"",
			    config->listen[i].text);
	}
}

/* Take over the passed sockets, matching each to a config entry by address. */
static int
listener_adopt(const int *fds, int count, char **errstr)
{
	const struct config_listen *entry;
	struct listener *l;
	int i;

	for (i = 0; i < count; i++) {
		l = xcalloc(1, sizeof(*l));
		l->addrlen = sizeof(l->addr);
		if (getsockname(fds[i], (struct sockaddr *)&l->addr, &l->addrlen) == -1) {
			free(l);
			return set_error(errstr, "socket activation: fd %d: getsockname: "
			    "%s", fds[i], strerror(errno));
		}
		entry = listener_config_entry(relayqd.config, &l->addr);
		l->text = entry != NULL ? xstrdup(entry->text) :
		    listener_address_text(&l->addr, l->addrlen);
		l->id = listener_next_id++;
		l->policy = smtpd_policy_new(relayqd.config, entry, l->text, l->id,
		    errstr);
		if (l->policy == NULL) {
			listener_free(l);
			return -1;
		}

		/*
		 * libevent accepts in a loop until accept() fails, so a blocking
		 * socket would hang the daemon. Backlog 0 keeps the socket
		 * unit's backlog.
		 */
		if (evutil_make_socket_nonblocking(fds[i]) == -1) {
			set_error(errstr, "socket activation: fd %d (%s): cannot make it "
			    "non-blocking", fds[i], l->text);
			listener_free(l);
			return -1;
		}
		l->evl = evconnlistener_new(relayqd.base, listener_accept, l,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fds[i]);
		if (l->evl == NULL) {
			set_error(errstr, "socket activation: fd %d (%s): cannot create "
			    "the listener", fds[i], l->text);
			listener_free(l);
			return -1;
		}
		evconnlistener_set_error_cb(l->evl, listener_error);
		listener_append(l);
		if (entry != NULL)
			log_info("event=listening address=%s source=socket_activation "
			    "fd=%d", l->text, fds[i]);
		else
			log_info("event=listening address=%s source=socket_activation "
			    "fd=%d note=\"not in the listen list; used as passed\"",
			    l->text, fds[i]);
	}
	listener_warn_unserved(relayqd.config);
	return 0;
}

int
listener_start(char **errstr)
{
	struct listener *l;
	int *fds = NULL, count;
	size_t i;

	count = service_listen_fds(&fds, errstr);
	if (count == -1)
		return -1;
	if (count > 0) {
		listener_activated = true;
		if (listener_adopt(fds, count, errstr) == -1) {
			free(fds);
			listener_stop();
			return -1;
		}
		free(fds);
		return 0;
	}

	for (i = 0; i < relayqd.config->listen_count; i++) {
		l = listener_open(relayqd.config, &relayqd.config->listen[i], errstr);
		if (l == NULL) {
			listener_stop();
			return -1;
		}
		listener_append(l);
	}
	return 0;
}

/*
 * Match each entry of CONFIG to an open listener (MATCH[i] is its index,
 * or -1) and open the entries that have none into OPENED[i].
 */
static int
listener_open_new(struct config *config, ssize_t *match,
    struct listener **opened, char **errstr)
{
	struct sockaddr_storage ss;
	socklen_t len;
	size_t i, j;

	for (i = 0; i < config->listen_count; i++) {
		if (listener_resolve(&config->listen[i], &ss, &len, errstr) == -1)
			return -1;
		match[i] = listener_find(&ss);

		/* Two spellings of one address: the second one binds, and fails. */
		for (j = 0; j < i && match[i] != -1; j++)
			if (match[j] == match[i])
				match[i] = -1;
		if (match[i] != -1)
			continue;
		opened[i] = listener_open(config, &config->listen[i], errstr);
		if (opened[i] == NULL)
			return -1;
	}
	return 0;
}

/*
 * Build from CONFIG the policy of each entry that keeps its open listener
 * (MATCH[i] is not -1) into POLICIES[i]. Returns -1 with *ERRSTR at the
 * first that fails, such as a certificate that cannot be loaded.
 */
static int
listener_new_policies(struct config *config, const ssize_t *match,
    struct smtpd_policy **policies, char **errstr)
{
	size_t i;

	for (i = 0; i < config->listen_count; i++) {
		if (match[i] == -1)
			continue;
		policies[i] = smtpd_policy_new(config, &config->listen[i],
		    config->listen[i].text, listeners[match[i]]->id, errstr);
		if (policies[i] == NULL)
			return -1;
	}
	return 0;
}

/* With socket activation the sockets stay; only their policies follow CONFIG. */
static int
listener_reconfigure_activated(struct config *config, char **errstr)
{
	struct smtpd_policy **policies;
	const struct config_listen *entry;
	size_t i;

	policies = xcalloc(listener_count, sizeof(*policies));
	for (i = 0; i < listener_count; i++) {
		entry = listener_config_entry(config, &listeners[i]->addr);
		policies[i] = smtpd_policy_new(config, entry, listeners[i]->text,
		    listeners[i]->id, errstr);
		if (policies[i] == NULL)
			break;
	}
	if (i < listener_count) {
		for (i = 0; i < listener_count; i++)
			smtpd_policy_free(policies[i]);
		free(policies);
		return -1;
	}

	for (i = 0; i < listener_count; i++) {
		smtpd_policy_free(listeners[i]->policy);
		listeners[i]->policy = policies[i];
	}
	free(policies);
	listener_warn_unserved(config);
	return 0;
}

int
listener_reconfigure(struct config *config, char **errstr)
{
	struct smtpd_policy **policies;
	struct listener **next;
	ssize_t *match;
	size_t i;
	int rc;

	if (listener_activated)
		return listener_reconfigure_activated(config, errstr);

	/*
	 * Open the new addresses and load every certificate and users file
	 * first, so a failure leaves every listener as it was.
	 */
	match = xcalloc(config->listen_count, sizeof(*match));
	next = xcalloc(config->listen_count, sizeof(*next));
	policies = xcalloc(config->listen_count, sizeof(*policies));
	rc = listener_open_new(config, match, next, errstr);
	if (rc == 0)
		rc = listener_new_policies(config, match, policies, errstr);
	if (rc == -1) {
		for (i = 0; i < config->listen_count; i++) {
			listener_free(next[i]);
			smtpd_policy_free(policies[i]);
		}
		free(policies);
		free(next);
		free(match);
		return -1;
	}

	for (i = 0; i < config->listen_count; i++) {
		if (match[i] == -1)
			continue;
		next[i] = listeners[match[i]];
		listeners[match[i]] = NULL;
		free(next[i]->text);
		next[i]->text = xstrdup(config->listen[i].text);
		smtpd_policy_free(next[i]->policy);
		next[i]->policy = policies[i];
	}
	free(policies);
	for (i = 0; i < listener_count; i++) {
		if (listeners[i] == NULL)
			continue;
		log_info("event=listener_closed address=%s", listeners[i]->text);
		listener_free(listeners[i]);
	}
	free(listeners);
	free(match);
	listeners = next;
	listener_count = config->listen_count;
	return 0;
}

void
listener_stop(void)
{
	size_t i;

	for (i = 0; i < listener_count; i++)
		listener_free(listeners[i]);
	free(listeners);
	listeners = NULL;
	listener_count = 0;
}
