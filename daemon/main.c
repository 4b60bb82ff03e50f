/*
 * relayqd: start-up, signals and shutdown. Everything runs in one
 * libevent loop; SQLite calls are short and made from that loop.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "compat.h"
#include "config.h"
#include "control_server.h"
#include "disk_sync.h"
#include "exit_codes.h"
#include "intake.h"
#include "listener.h"
#include "log.h"
#include "pickup.h"
#include "purge.h"
#include "relayqd.h"
#include "scheduler.h"
#include "service.h"
#include "smtp_server.h"
#include "util.h"

/* Time sessions get to finish their transaction after SIGTERM. */
#define RELAYQD_SHUTDOWN_GRACE 20

struct relayqd relayqd;

static struct event *shutdown_timer;
static const char *relayqd_config_path;	/* loaded again on SIGHUP */

static void
usage(FILE *out)
{
	fprintf(out, "usage: relayqd [-c FILE] [-f] [--check-config] [--version]\n"
	    "  -c FILE          configuration file (default %s)\n"
	    "  -f               stay in the foreground and log to stderr\n"
	    "  --check-config   validate the configuration and exit\n"
	    "  --version        print the version and exit\n",
	    config_default_path());
}

static void
relayqd_check_done(evutil_socket_t fd, short what, void *arg)
{
	if (smtp_server_sessions() == 0 && scheduler_sessions() == 0)
		event_base_loopexit(relayqd.base, NULL);
}

static void
relayqd_deadline(evutil_socket_t fd, short what, void *arg)
{
	log_warning("event=shutdown_deadline smtp_sessions=%d delivery_sessions=%d",
	    smtp_server_sessions(), scheduler_sessions());
	smtp_server_abort_all();
	scheduler_stop(true);
	event_base_loopexit(relayqd.base, NULL);
}

static void
relayqd_signal(evutil_socket_t sig, short what, void *arg)
{
	static struct event *poll_timer;
	struct timeval grace = { RELAYQD_SHUTDOWN_GRACE, 0 }, tick = { 0, 100000 };

	if (relayqd.stopping)
		return;
	log_info("event=stopping signal=%d", (int)sig);
	relayqd.stopping = true;
	service_stopping();
	listener_stop();
	smtp_server_shutdown();
	scheduler_stop(false);

	shutdown_timer = evtimer_new(relayqd.base, relayqd_deadline, NULL);
	evtimer_add(shutdown_timer, &grace);
	/* Sessions end through many paths; checking a few times a second is simplest. */
	poll_timer = event_new(relayqd.base, -1, EV_PERSIST, relayqd_check_done, NULL);
	event_add(poll_timer, &tick);
}

/* The STATUS= text shown by "systemctl status". */
static void
relayqd_ready(void)
{
	char *status;

	status = xasprintf("Relaying to %s:%d (tls %s)", relayqd.config->smarthost.host,
	    relayqd.config->smarthost.port, tls_mode_name(relayqd.config->smarthost.tls));
	service_ready(status);
	free(status);
}

static bool
relayqd_same_string(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/*
 * Keep the running value of a setting that only a restart can change
 * (*NEXT is replaced by a copy of RUNNING), and say so.
 */
static void
relayqd_keep_setting(const char *key, const char *running, char **next)
{
	if (relayqd_same_string(running, *next))
		return;
	log_warning("event=restart_needed key=%s running=\"%s\" configured=\"%s\" "
	    "note=\"the new value takes effect after a restart\"", key,
	    running != NULL ? running : "", *next != NULL ? *next : "");
	free(*next);
	*next = running != NULL ? xstrdup(running) : NULL;
}

static void
relayqd_reload_failed(struct config *next, char *error)
{
	char *escaped = log_escape(error, strlen(error));

	log_error("event=reload_failed config=%s error=\"%s\" note=\"the running "
	    "configuration stays in effect\"", relayqd_config_path, escaped);
	free(escaped);
	free(error);
	config_free(next);
	relayqd_ready();
}

/*
 * SIGHUP: load the config file again and apply it, or keep the running
 * config when the file is invalid or a part of it cannot be applied.
 * The old config is freed only when no delivery session uses it anymore.
 */
static void
relayqd_reload(evutil_socket_t sig, short what, void *arg)
{
	struct config *next = NULL, *old = relayqd.config;
	char *error = NULL, *revert_error = NULL;

	if (relayqd.stopping)
		return;
	service_reloading();
	log_info("event=reloading config=%s", relayqd_config_path);
	if (config_load(relayqd_config_path, &next, &error) == -1) {
		relayqd_reload_failed(NULL, error);
		return;
	}

	/* The queue, control socket and pickup directory are open, the user switched. */
	relayqd_keep_setting("queue.path", old->queue_path, &next->queue_path);
	relayqd_keep_setting("control.socket", old->control_socket,
	    &next->control_socket);
	relayqd_keep_setting("user", old->user, &next->user);
	relayqd_keep_setting("pickup.path", old->pickup_path, &next->pickup_path);

	if (scheduler_reconfigure(next, &error) == -1) {
		relayqd_reload_failed(next, error);
		return;
	}
	if (listener_reconfigure(next, &error) == -1) {
		if (scheduler_reconfigure(old, &revert_error) == -1) {
			log_error("event=reload_revert_failed error=\"%s\"", revert_error);
			free(revert_error);
		}
		relayqd_reload_failed(next, error);
		return;
	}

	relayqd.config = next;
	log_set_level(next->log_level);
	config_free(old);
	log_info("event=reloaded config=%s smarthost=%s:%d tls=%s listeners=%zu",
	    relayqd_config_path, next->smarthost.host, next->smarthost.port,
	    tls_mode_name(next->smarthost.tls), next->listen_count);
	relayqd_ready();
}

static int
relayqd_open_queue(char **errstr)
{
	int dropped = 0, requeued = 0;

	if (queue_store_open(relayqd.config->queue_path, QUEUE_STORE_CREATE,
	    &relayqd.store, errstr) == -1)
		return -1;
	if (queue_store_recover(relayqd.store, &dropped, &requeued, errstr) == -1)
		return -1;
	if (dropped > 0 || requeued > 0)
		log_info("event=recovered dropped_unacknowledged=%d requeued=%d",
		    dropped, requeued);
	return 0;
}

static int
relayqd_main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "check-config", no_argument, NULL, 'C' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = NULL;
	bool check_only = false;
	struct event *sigterm, *sigint, *sighup;
	char *error = NULL;
	int ch;

	log_init("relayqd", LOG_LEVEL_INFO);
	if (compat_init(&error) == -1)
		fatal("%s", error);
	while ((ch = getopt_long(argc, argv, "c:fh", options, NULL)) != -1) {
		switch (ch) {
		case 'c':
			config_path = optarg;
			break;
		case 'f':
			/* Logging always goes to stderr; -f only keeps the process in front. */
			break;
		case 'C':
			check_only = true;
			break;
		case 'V':
			printf("relayqd %s\n", RELAYQ_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return EX_USAGE;
	}
	if (config_path == NULL)
		config_path = config_default_path();
	relayqd_config_path = config_path;

	if (config_load(config_path, &relayqd.config, &error) == -1) {
		fprintf(stderr, "relayqd: %s\n", error);
		free(error);
		return EX_CONFIG;
	}
	if (check_only) {
		printf("%s: configuration is valid\n", config_path);
		return 0;
	}
	log_set_level(relayqd.config->log_level);
	compat_ignore_sigpipe();

	if (relayqd_open_queue(&error) == -1) {
		log_error("event=start_failed error=\"%s\"", error);
		free(error);
		return EX_UNAVAILABLE;
	}

	relayqd.base = event_base_new();
	if (relayqd.base == NULL)
		fatal("cannot create the event loop");

	/*
	 * Catch the signals before the listeners open, so a SIGTERM sent as
	 * soon as the port accepts does not kill the process. The handlers
	 * run from the event loop, after the start-up below has finished.
	 */
	sigterm = evsignal_new(relayqd.base, SIGTERM, relayqd_signal, NULL);
	sigint = evsignal_new(relayqd.base, SIGINT, relayqd_signal, NULL);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
#ifdef SIGHUP
	sighup = evsignal_new(relayqd.base, SIGHUP, relayqd_reload, NULL);
	evsignal_add(sighup, NULL);
#else
	/* Windows has no SIGHUP; the service controller asks for a reload instead. */
	sighup = event_new(relayqd.base, -1, 0, relayqd_reload, NULL);
#endif
	if (service_control_events(sigterm, sighup, &error) == -1) {
		log_error("event=start_failed error=\"%s\"", error);
		free(error);
		return EX_OSERR;
	}

	relayqd.dns = evdns_base_new(relayqd.base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
	    EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (relayqd.dns == NULL) {
		/* No resolv.conf: numeric hosts and the hosts file still work. */
		relayqd.dns = evdns_base_new(relayqd.base, 0);
		if (relayqd.dns == NULL)
			fatal("cannot create the DNS resolver");
	}

	if (disk_sync_init(relayqd.base, relayqd.store, &error) == -1 ||
	    intake_init() == -1)
		fatal("cannot create the intake events: %s", error != NULL ? error : "out of memory");
	if (scheduler_init(&error) == -1) {
		log_error("event=start_failed error=\"%s\"", error);
		free(error);
		return EX_CONFIG;
	}
	if (purge_start(&error) == -1) {
		log_error("event=start_failed error=\"%s\"", error);
		free(error);
		return EX_UNAVAILABLE;
	}
	if (listener_start(&error) == -1) {
		log_error("event=start_failed error=\"%s\"", error);
		free(error);
		return EX_UNAVAILABLE;
	}

	/* Ports and the queue are open: root is needed no more. */
	if (relayqd.config->user != NULL &&
	    service_drop_privileges(relayqd.config->user, relayqd.config->queue_path,
	    relayqd.config->control_socket, &error) == -1) {
		char *escaped = log_escape(error, strlen(error));

		log_error("event=start_failed error=\"cannot switch to user %s: %s\" "
		    "note=\"relayqd does not go on as root\"", relayqd.config->user,
		    escaped);
		free(escaped);
		free(error);
		return EX_CONFIG;
	}

	if (control_server_start(&error) == -1) {
		log_error("event=start_failed error=\"%s\"", error);
		free(error);
		return EX_UNAVAILABLE;
	}
	/* After the switch to the service user, which must own the directory it creates. */
	if (pickup_start(&error) == -1) {
		log_error("event=start_failed error=\"%s\"", error);
		free(error);
		return EX_UNAVAILABLE;
	}

	log_info("event=started version=%s config=%s queue=%s smarthost=%s:%d tls=%s",
	    RELAYQ_VERSION, config_path, relayqd.config->queue_path,
	    relayqd.config->smarthost.host, relayqd.config->smarthost.port,
	    tls_mode_name(relayqd.config->smarthost.tls));
	service_watchdog_start(relayqd.base);
	relayqd_ready();
	event_base_dispatch(relayqd.base);

	pickup_stop();
	intake_shutdown();
	control_server_stop();
	scheduler_free();
	purge_stop();
	service_watchdog_stop();
	event_free(sigterm);
	event_free(sigint);
	event_free(sighup);
	if (shutdown_timer != NULL)
		event_free(shutdown_timer);
	queue_store_close(relayqd.store);
	log_info("event=stopped");
	config_free(relayqd.config);
	return 0;
}

int
main(int argc, char **argv)
{
	return service_main(argc, argv, relayqd_main);
}
