/* Client side of the control channel (see control.h). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "util.h"

/* A reply that takes longer than this means the daemon is stuck. */
#define CONTROL_TIMEOUT_MS 5000

static int
control_connect(const char *path, int *fd_out, char **errstr)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		return set_error(errstr, "control socket path %s is too long; set "
		    "control.socket to a shorter path", path);
	memcpy(sun.sun_path, path, strlen(path) + 1);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return set_error(errstr, "cannot create a socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		int err = errno;

		close(fd);
		if (err == ENOENT || err == ECONNREFUSED)
			return 1;
		return set_error(errstr, "cannot reach relayqd at %s: %s", path,
		    strerror(err));
	}
	*fd_out = fd;
	return 0;
}

static int
control_read_line(int fd, char *buf, size_t size, const char *path, char **errstr)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	size_t len = 0;

	while (len + 1 < size) {
		ssize_t n;

		if (poll(&pfd, 1, CONTROL_TIMEOUT_MS) <= 0)
			return set_error(errstr, "relayqd at %s did not reply within %d s",
			    path, CONTROL_TIMEOUT_MS / 1000);
		n = read(fd, buf + len, size - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
		if (memchr(buf, '\n', len) != NULL)
			break;
	}
	buf[len] = '\0';
	if (len == 0 || buf[len - 1] != '\n')
		return set_error(errstr, "relayqd at %s closed the control connection "
		    "without a reply", path);
	buf[len - 1] = '\0';
	return 0;
}

int
control_request(const struct config *config, const char *request, char **reply,
    char **errstr)
{
	char line[CONTROL_LINE_MAX], *text;
	int fd = -1, rc;

	*reply = NULL;
	rc = control_connect(config->control_socket, &fd, errstr);
	if (rc != 0)
		return rc;

	text = xasprintf("%s\n", request);
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		rc = set_error(errstr, "cannot write to relayqd at %s: %s",
		    config->control_socket, strerror(errno));
	} else if (control_read_line(fd, line, sizeof(line), config->control_socket,
	    errstr) == -1) {
		rc = -1;
	} else {
		*reply = xstrdup(line);
	}
	free(text);
	close(fd);
	return rc;
}

int
control_wake(const struct config *config, char **errstr)
{
	char *reply = NULL;
	int rc;

	rc = control_request(config, "wake", &reply, errstr);
	if (rc == 0 && strcmp(reply, "ok") != 0)
		rc = set_error(errstr, "relayqd refused the wake request: %s", reply);
	free(reply);
	return rc == -1 ? -1 : 0;
}
