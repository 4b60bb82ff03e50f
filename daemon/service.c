/*
 * Service manager integration. The notification protocol is one datagram
 * of "KEY=VALUE" lines sent to the AF_UNIX socket named in $NOTIFY_SOCKET
 * (a leading '@' names an abstract socket), and socket activation passes
 * $LISTEN_FDS descriptors from fd 3 to the process named in $LISTEN_PID;
 * both are small enough to speak directly, so relayqd needs no libsystemd.
 * See sd_notify(3) and sd_listen_fds(3) for the protocol.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "service.h"
#include "util.h"

/* The first descriptor passed by socket activation (SD_LISTEN_FDS_START). */
#define SERVICE_LISTEN_FDS_START	3

/* More passed sockets than this means the environment is corrupt. */
#define SERVICE_LISTEN_FDS_MAX		1024

static struct event *service_watchdog_timer;
static bool service_notify_failing;	/* the last datagram was not sent */

/* Build the address of $NOTIFY_SOCKET. Returns its length, or 0 when invalid. */
static socklen_t
service_notify_address(const char *name, struct sockaddr_un *sun)
{
	size_t len = strlen(name);

	if ((name[0] != '/' && name[0] != '@') || len < 2 ||
	    len >= sizeof(sun->sun_path))
		return 0;
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, name, len);

	/* An abstract name starts with a NUL byte and has no terminator. */
	if (name[0] == '@')
		sun->sun_path[0] = '\0';
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
}

static int
service_notify_failed(const char *name, const char *error)
{
	if (!service_notify_failing)
		log_warning("event=notify_failed socket=%s error=\"%s\"", name, error);
	service_notify_failing = true;
	return -1;
}

int
service_notify(const char *state)
{
	const char *name = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun;
	socklen_t len;
	ssize_t sent;
	int fd, saved;

	if (name == NULL || name[0] == '\0')
		return 0;
	len = service_notify_address(name, &sun);
	if (len == 0)
		return service_notify_failed(name, "NOTIFY_SOCKET is not an absolute "
		    "path or an abstract name starting with @");

	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return service_notify_failed(name, strerror(errno));
	sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL,
	    (struct sockaddr *)&sun, len);
	saved = errno;
	close(fd);
	if (sent == -1)
		return service_notify_failed(name, strerror(saved));

	if (service_notify_failing)
		log_info("event=notify_recovered socket=%s", name);
	service_notify_failing = false;
	return 0;
}

/* Send STATE and log it at debug level, newlines escaped. */
static void
service_notify_logged(const char *state)
{
	char *escaped;

	if (getenv("NOTIFY_SOCKET") == NULL)
		return;
	escaped = log_escape(state, strlen(state));
	log_debug("event=notify state=\"%s\"", escaped);
	free(escaped);
	service_notify(state);
}

void
service_ready(const char *status)
{
	char *state, *p;

	if (status == NULL) {
		service_notify_logged("READY=1");
		return;
	}
	state = xasprintf("READY=1\nSTATUS=%s", status);

	/* A newline in the status would start another assignment. */
	for (p = state + strlen("READY=1\n"); *p != '\0'; p++)
		if (*p == '\n')
			*p = ' ';
	service_notify_logged(state);
	free(state);
}

void
service_reloading(void)
{
	struct timespec ts;
	char state[80];

	/* systemd 253 and later require the reload's start time on CLOCK_MONOTONIC. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
	    (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000);
	service_notify_logged(state);
}

void
service_stopping(void)
{
	service_notify_logged("STOPPING=1");
}

int
service_main(int argc, char **argv, service_run_fn *run)
{
	return run(argc, argv);
}

int
service_control_events(struct event *stop, struct event *reload, char **errstr)
{
	(void)stop;
	(void)reload;
	(void)errstr;
	return 0;
}

/* --- Watchdog --- */

static void
service_watchdog_ping(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	service_notify("WATCHDOG=1");
}

/* Parse a whole unsigned decimal number. */
static bool
service_parse_number(const char *text, unsigned long long *out)
{
	unsigned long long n;
	char *end;

	if (text == NULL || text[0] < '0' || text[0] > '9')
		return false;
	errno = 0;
	n = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = n;
	return true;
}

void
service_watchdog_start(struct event_base *base)
{
	const char *usec_text = getenv("WATCHDOG_USEC");
	const char *pid_text = getenv("WATCHDOG_PID");
	unsigned long long usec, pid;
	struct timeval interval;

	if (usec_text == NULL)
		return;
	if (!service_parse_number(usec_text, &usec) || usec == 0) {
		log_warning("event=watchdog_ignored reason=\"invalid WATCHDOG_USEC %s\"",
		    usec_text);
		return;
	}
	if (pid_text != NULL &&
	    (!service_parse_number(pid_text, &pid) || pid != (unsigned long long)getpid())) {
		log_debug("event=watchdog_ignored reason=\"WATCHDOG_PID %s is another "
		    "process\"", pid_text);
		return;
	}

	/* Half the timeout, as sd_watchdog_enabled(3) recommends. */
	usec /= 2;
	interval.tv_sec = (time_t)(usec / 1000000);
	interval.tv_usec = (suseconds_t)(usec % 1000000);
	service_watchdog_timer = event_new(base, -1, EV_PERSIST, service_watchdog_ping,
	    NULL);
	if (service_watchdog_timer == NULL) {
		log_error("event=watchdog_failed error=\"cannot create the timer\"");
		return;
	}
	event_add(service_watchdog_timer, &interval);
	service_notify("WATCHDOG=1");
	log_info("event=watchdog interval_ms=%llu", usec / 1000);
}

void
service_watchdog_stop(void)
{
	if (service_watchdog_timer == NULL)
		return;
	event_free(service_watchdog_timer);
	service_watchdog_timer = NULL;
}

/* --- Socket activation --- */

/* Check that FD is an open, listening TCP socket. */
static int
service_check_listen_fd(int fd, char **errstr)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int type, listening;
	socklen_t optlen;

	if (fcntl(fd, F_SETFD, FD_CLOEXEC) == -1)
		return set_error(errstr, "socket activation: fd %d is not open: %s",
		    fd, strerror(errno));
	optlen = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &optlen) == -1)
		return set_error(errstr, "socket activation: fd %d is not a socket: %s",
		    fd, strerror(errno));
	optlen = sizeof(listening);
	if (type != SOCK_STREAM ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) == -1 ||
	    !listening)
		return set_error(errstr, "socket activation: fd %d is not a listening "
		    "stream socket; use ListenStream= with Accept=no in the socket unit",
		    fd);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		return set_error(errstr, "socket activation: fd %d: getsockname: %s",
		    fd, strerror(errno));
	if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
		return set_error(errstr, "socket activation: fd %d is not a TCP/IP "
		    "socket; relayqd accepts SMTP on IPv4 and IPv6 addresses only", fd);
	return 0;
}

int
service_listen_fds(int **fds, char **errstr)
{
	const char *pid_text = getenv("LISTEN_PID");
	const char *count_text = getenv("LISTEN_FDS");
	unsigned long long pid, count;
	int *list, i;

	*fds = NULL;
	if (pid_text == NULL)
		return 0;
	if (!service_parse_number(pid_text, &pid) || pid != (unsigned long long)getpid()) {
		/* The sockets belong to another process, such as our parent. */
		log_debug("event=listen_fds_ignored reason=\"LISTEN_PID %s is another "
		    "process\"", pid_text);
		return 0;
	}
	if (!service_parse_number(count_text, &count) ||
	    count > SERVICE_LISTEN_FDS_MAX)
		return set_error(errstr, "socket activation: invalid LISTEN_FDS \"%s\"",
		    count_text != NULL ? count_text : "");

	/* Child processes must not take the sockets for theirs. */
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (count == 0)
		return 0;

	list = xcalloc((size_t)count, sizeof(*list));
	for (i = 0; i < (int)count; i++) {
		list[i] = SERVICE_LISTEN_FDS_START + i;
		if (service_check_listen_fd(list[i], errstr) == -1) {
			free(list);
			return -1;
		}
	}
	*fds = list;
	return (int)count;
}

/* --- Privilege drop --- */

/* True when NAME is FILE or starts with FILE, such as "queue.db-wal" for "queue.db". */
static bool
service_is_queue_entry(const char *name, const char *file)
{
	return strncmp(name, file, strlen(file)) == 0;
}

/*
 * True when DIR contains nothing but the queue's files and the control
 * socket, so handing it to the daemon's user takes nothing from others.
 */
static bool
service_dir_is_dedicated(const char *dir, const char *queue_file,
    const char *socket_file)
{
	struct dirent *entry;
	bool dedicated = true;
	DIR *d;

	d = opendir(dir);
	if (d == NULL)
		return false;
	while ((entry = readdir(d)) != NULL) {
		const char *name = entry->d_name;

		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		if (service_is_queue_entry(name, queue_file))
			continue;
		if (socket_file != NULL && strcmp(name, socket_file) == 0)
			continue;
		dedicated = false;
		break;
	}
	closedir(d);
	return dedicated;
}

/*
 * Change the owner of PATH to UID:GID. A missing PATH is skipped, and a
 * symbolic link is not followed.
 */
static int
service_chown(const char *path, uid_t uid, gid_t gid, char **errstr)
{
	struct stat st;

	if (lstat(path, &st) == -1) {
		if (errno == ENOENT)
			return 0;
		return set_error(errstr, "cannot check %s: %s", path, strerror(errno));
	}
	if (st.st_uid == uid && st.st_gid == gid)
		return 0;
	if (fchownat(AT_FDCWD, path, uid, gid, AT_SYMLINK_NOFOLLOW) == -1)
		return set_error(errstr, "cannot change the owner of %s to %u:%u: %s",
		    path, (unsigned)uid, (unsigned)gid, strerror(errno));
	log_info("event=chown path=%s uid=%u gid=%u", path, (unsigned)uid,
	    (unsigned)gid);
	return 0;
}

static const char *
service_basename(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash != NULL ? slash + 1 : path;
}

/* Change the owner of the queue's directory when only relayq uses it, else warn. */
static int
service_chown_queue_dir(const struct passwd *pw, const char *queue_path,
    const char *control_socket, char **errstr)
{
	char *dir = path_dirname(queue_path), *socket_dir = NULL;
	const char *socket_file = NULL;
	int rc = 0;

	if (control_socket != NULL) {
		socket_dir = path_dirname(control_socket);
		if (strcmp(socket_dir, dir) == 0)
			socket_file = service_basename(control_socket);
	}

	if (strcmp(dir, "/") != 0 &&
	    service_dir_is_dedicated(dir, service_basename(queue_path), socket_file))
		rc = service_chown(dir, pw->pw_uid, pw->pw_gid, errstr);
	else
		log_warning("event=chown_skipped path=%s reason=\"the directory contains "
		    "other files than the queue, so its owner stays unchanged\" "
		    "note=\"user %s needs write access to it for the queue's WAL files "
		    "and the control socket\"", dir, pw->pw_name);
	free(socket_dir);
	free(dir);
	return rc;
}

static int
service_chown_queue(const struct passwd *pw, const char *queue_path,
    const char *control_socket, char **errstr)
{
	static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };
	size_t i;
	int rc = 0;

	if (service_chown_queue_dir(pw, queue_path, control_socket, errstr) == -1)
		return -1;
	for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]) && rc == 0; i++) {
		char *path = xasprintf("%s%s", queue_path, suffixes[i]);

		rc = service_chown(path, pw->pw_uid, pw->pw_gid, errstr);
		free(path);
	}
	return rc;
}

/* Change the process's groups and user ids, then prove that root cannot come back. */
static int
service_set_ids(const struct passwd *pw, char **errstr)
{
	if (initgroups(pw->pw_name, pw->pw_gid) == -1)
		return set_error(errstr, "initgroups(%s): %s", pw->pw_name,
		    strerror(errno));
	if (setgid(pw->pw_gid) == -1)
		return set_error(errstr, "setgid(%u): %s", (unsigned)pw->pw_gid,
		    strerror(errno));
	if (setuid(pw->pw_uid) == -1)
		return set_error(errstr, "setuid(%u): %s", (unsigned)pw->pw_uid,
		    strerror(errno));

	if (getuid() != pw->pw_uid || geteuid() != pw->pw_uid ||
	    getgid() != pw->pw_gid || getegid() != pw->pw_gid)
		return set_error(errstr, "the user and group ids did not change to "
		    "%u:%u", (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
	if (setuid(0) != -1)
		return set_error(errstr, "setuid(0) still succeeds after the switch "
		    "to user %s", pw->pw_name);
	return 0;
}

int
service_drop_privileges(const char *user, const char *queue_path,
    const char *control_socket, char **errstr)
{
	struct passwd *pw;

	errno = 0;
	pw = getpwnam(user);
	if (pw == NULL)
		return set_error(errstr, "user \"%s\" not found%s%s; create it (for "
		    "example with systemd-sysusers or adduser --system) or change the "
		    "\"user\" key", user, errno != 0 ? ": " : "",
		    errno != 0 ? strerror(errno) : "");

	if (geteuid() != 0) {
		if (geteuid() != pw->pw_uid)
			log_warning("event=user_unchanged user=%s uid=%u reason=\"not "
			    "running as root, so the user cannot be changed\"", user,
			    (unsigned)geteuid());
		return 0;
	}
	if (pw->pw_uid == 0) {
		log_warning("event=user_unchanged user=%s reason=\"the user is root\"", user);
		return 0;
	}

	if (service_chown_queue(pw, queue_path, control_socket, errstr) == -1)
		return -1;
	if (service_set_ids(pw, errstr) == -1)
		return -1;
	log_info("event=privileges_dropped user=%s uid=%u gid=%u", pw->pw_name,
	    (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
	return 0;
}
