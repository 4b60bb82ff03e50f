/*
 * Reading the smart host secret from a file, the environment or a
 * command. Error messages name the source but never quote what it
 * contains, because a malformed secret is still a secret.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifndef _WIN32
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#endif

#include "acl.h"
#include "secret.h"
#include "util.h"

void
secret_free(char *secret, size_t len)
{
	if (secret == NULL)
		return;
	secure_wipe(secret, len + 1);
	free(secret);
}

int
secret_check_file_mode(const char *path, char **errstr)
{
	struct stat st;

	if (stat(path, &st) == -1)
		return set_error(errstr, "cannot read smarthost.password_file %s: "
		    "%s", path, strerror(errno));
#ifdef _WIN32
	/* File modes mean nothing on Windows: the DACL decides who can read. */
	return acl_check_private_file(path, "smarthost.password_file", errstr);
#else
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		return set_error(errstr, "smarthost.password_file %s can be read "
		    "or changed by group or others (mode %04o), so the password "
		    "is not secret: run \"chmod 600 %s\"", path,
		    (unsigned int)(st.st_mode & 07777), path);
	return 0;
#endif
}

int
secret_check_config(const struct config_smarthost *sh, char **errstr)
{
	if (sh->username == NULL)
		return 0;
	if (sh->password_file != NULL)
		return secret_check_file_mode(sh->password_file, errstr);
	if (sh->password_env != NULL && getenv(sh->password_env) == NULL)
		return set_error(errstr, "smarthost.password_env names %s, which "
		    "is not set in relayqd's environment", sh->password_env);
	return 0;
}

/* Check a secret read from SOURCE: not empty, no NUL, no line break inside. */
static int
secret_check_text(const char *source, const char *secret, size_t len,
    char **errstr)
{
	if (len == 0)
		return set_error(errstr, "%s is empty", source);
	if (memchr(secret, '\0', len) != NULL)
		return set_error(errstr, "%s is invalid: it contains a NUL byte",
		    source);
	if (memchr(secret, '\n', len) != NULL || memchr(secret, '\r', len) != NULL)
		return set_error(errstr, "%s is invalid: it contains more than "
		    "one line", source);
	return 0;
}

int
secret_read_file(const char *path, char **secret, size_t *len, char **errstr)
{
	char *buf, *source;
	size_t used = 0;
	ssize_t n = 0;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd == -1)
		return set_error(errstr, "cannot open smarthost.password_file %s: "
		    "%s", path, strerror(errno));

	buf = xmalloc(SECRET_MAX + 2);
	while (used <= SECRET_MAX) {
		n = read(fd, buf + used, SECRET_MAX + 1 - used);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		used += (size_t)n;
	}
	close(fd);

	if (n == -1) {
		rc = set_error(errstr, "cannot read smarthost.password_file %s: %s",
		    path, strerror(errno));
		secret_free(buf, SECRET_MAX + 1);
		return rc;
	}
	if (used > SECRET_MAX) {
		secret_free(buf, SECRET_MAX + 1);
		return set_error(errstr, "smarthost.password_file %s is longer than "
		    "%d bytes", path, SECRET_MAX);
	}

	if (used > 0 && buf[used - 1] == '\n')
		used--;
	if (used > 0 && buf[used - 1] == '\r')
		used--;
	buf[used] = '\0';

	source = xasprintf("smarthost.password_file %s", path);
	rc = secret_check_text(source, buf, used, errstr);
	free(source);
	if (rc == -1) {
		secret_free(buf, SECRET_MAX + 1);
		return -1;
	}
	*secret = buf;
	*len = used;
	return 0;
}

int
secret_read_env(const char *name, char **secret, size_t *len, char **errstr)
{
	const char *value = getenv(name);
	char *source;
	size_t n;
	int rc;

	if (value == NULL)
		return set_error(errstr, "the environment variable %s named by "
		    "smarthost.password_env is not set", name);
	n = strlen(value);
	if (n > SECRET_MAX)
		return set_error(errstr, "the environment variable %s is longer "
		    "than %d bytes", name, SECRET_MAX);

	source = xasprintf("the environment variable %s", name);
	rc = secret_check_text(source, value, n, errstr);
	free(source);
	if (rc == -1)
		return -1;
	*secret = xstrndup(value, n);
	*len = n;
	return 0;
}

/* Parse a lifetime line: whole seconds, at most ten years. */
static int
secret_parse_lifetime(const char *text, size_t len, int64_t *lifetime)
{
	int64_t value = 0;
	size_t i;

	while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\t'))
		len--;
	if (len == 0 || len > 10)
		return -1;
	for (i = 0; i < len; i++) {
		if (text[i] < '0' || text[i] > '9')
			return -1;
		value = value * 10 + (text[i] - '0');
	}
	if (value > (int64_t)3650 * 24 * 3600)
		return -1;
	*lifetime = value;
	return 0;
}

int
secret_parse_command_output(const char *out, size_t out_len, char **secret,
    size_t *len, int64_t *lifetime, char **errstr)
{
	const char *eol, *second, *second_end;
	size_t n;

	*lifetime = 0;
	eol = memchr(out, '\n', out_len);
	n = eol != NULL ? (size_t)(eol - out) : out_len;
	if (n > 0 && out[n - 1] == '\r')
		n--;
	if (n > SECRET_MAX)
		return set_error(errstr, "smarthost.password_command printed a "
		    "first line longer than %d bytes", SECRET_MAX);
	if (secret_check_text("the first line of smarthost.password_command's "
	    "output", out, n, errstr) == -1)
		return -1;

	if (eol != NULL && (size_t)(eol + 1 - out) < out_len) {
		second = eol + 1;
		second_end = memchr(second, '\n', out_len - (size_t)(second - out));
		if (second_end == NULL)
			second_end = out + out_len;
		if (second_end > second && second_end[-1] == '\r')
			second_end--;
		if (second_end > second && secret_parse_lifetime(second,
		    (size_t)(second_end - second), lifetime) == -1)
			return set_error(errstr, "the second line of "
			    "smarthost.password_command's output must be the "
			    "token's lifetime in whole seconds");
	}

	*secret = xstrndup(out, n);
	*len = n;
	return 0;
}

int64_t
secret_cache_seconds(int64_t lifetime)
{
	int64_t margin;

	if (lifetime <= 0)
		return SECRET_COMMAND_CACHE_DEFAULT;
	/* Renew early so that a token does not expire between EHLO and AUTH. */
	margin = lifetime / 10 < 60 ? lifetime / 10 : 60;
	return lifetime - margin > 0 ? lifetime - margin : 1;
}

#ifdef _WIN32
/* On Windows STATUS is the exit code of cmd.exe, which is the command's. */
int
secret_command_status(int status, char **errstr)
{
	if (status == 0)
		return 0;
	return set_error(errstr, "smarthost.password_command exited with "
	    "status %d", status);
}

static int
secret_command_unsupported(char **errstr)
{
	return set_error(errstr, "cannot run smarthost.password_command: "
	    "Windows has no fork(); relayqd runs it with compat_run_command()");
}

void
secret_command_kill(pid_t pid)
{
	(void)pid;
}

int
secret_command_spawn(const char *command, bool show_stderr, pid_t *pid,
    int *fd, char **errstr)
{
	(void)command;
	(void)show_stderr;
	(void)pid;
	(void)fd;
	return secret_command_unsupported(errstr);
}

int
secret_run_command(const char *command, int timeout, bool show_stderr,
    char **secret, size_t *len, int64_t *lifetime, char **errstr)
{
	size_t room = SECRET_MAX + 64, used = 0;
	unsigned long status = 0;
	char *out = xmalloc(room);
	int rc;

	if (compat_run_command(command, timeout, show_stderr, NULL, out, room - 1,
	    &used, &status, errstr) == -1 ||
	    secret_command_status((int)status, errstr) == -1) {
		secret_free(out, room - 1);
		return -1;
	}
	rc = secret_parse_command_output(out, used, secret, len, lifetime, errstr);
	secret_free(out, room - 1);
	return rc;
}
#else
int
secret_command_status(int status, char **errstr)
{
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status))
		return set_error(errstr, "smarthost.password_command exited with "
		    "status %d", WEXITSTATUS(status));
	if (WIFSIGNALED(status))
		return set_error(errstr, "smarthost.password_command was killed "
		    "by signal %d", WTERMSIG(status));
	return set_error(errstr, "smarthost.password_command failed");
}

void
secret_command_kill(pid_t pid)
{
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
		;
}

int
secret_command_spawn(const char *command, bool show_stderr, pid_t *pid,
    int *fd, char **errstr)
{
	int fds[2], rc;

	if (pipe(fds) == -1)
		return set_error(errstr, "cannot run smarthost.password_command: "
		    "pipe: %s", strerror(errno));
	*pid = fork();
	if (*pid == -1) {
		rc = set_error(errstr, "cannot run smarthost.password_command: "
		    "fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return rc;
	}
	if (*pid == 0) {
		int null = open("/dev/null", O_RDWR);

		/* Its own process group, so a timeout can end its children too. */
		setpgid(0, 0);
		dup2(null, STDIN_FILENO);
		dup2(fds[1], STDOUT_FILENO);
		if (!show_stderr)
			dup2(null, STDERR_FILENO);
		/* Only the three standard streams: the daemon's sockets and queue stay out. */
		closefrom(STDERR_FILENO + 1);
		execl("/bin/sh", "sh", "-c", command, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	fcntl(fds[0], F_SETFD, FD_CLOEXEC);
	*fd = fds[0];
	return 0;
}

int
secret_run_command(const char *command, int timeout, bool show_stderr,
    char **secret, size_t *len, int64_t *lifetime, char **errstr)
{
	struct pollfd pfd;
	int64_t deadline = now_millis() + (int64_t)timeout * 1000, left;
	char *out;
	size_t used = 0, room = SECRET_MAX + 64;
	ssize_t n;
	pid_t pid;
	int fd, status, rc;

	if (secret_command_spawn(command, show_stderr, &pid, &fd, errstr) == -1)
		return -1;
	out = xmalloc(room);

	for (;;) {
		left = deadline - now_millis();
		if (left <= 0) {
			close(fd);
			secret_command_kill(pid);
			secret_free(out, room - 1);
			return set_error(errstr, "smarthost.password_command did not "
			    "finish within %ds", timeout);
		}
		pfd.fd = fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, (int)left) == -1 && errno != EINTR)
			break;
		n = read(fd, out + used, room - 1 - used);
		if (n == -1 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0 || (used += (size_t)n) == room - 1)
			break;
	}
	close(fd);

	while (waitpid(pid, &status, 0) == -1) {
		if (errno != EINTR) {
			status = -1;
			break;
		}
	}
	if (secret_command_status(status, errstr) == -1) {
		secret_free(out, room - 1);
		return -1;
	}
	rc = secret_parse_command_output(out, used, secret, len, lifetime, errstr);
	secret_free(out, room - 1);
	return rc;
}

#endif

int
secret_read(const struct config_smarthost *sh, bool show_stderr, char **secret,
    size_t *len, char **errstr)
{
	int64_t lifetime;

	if (sh->password_file != NULL)
		return secret_read_file(sh->password_file, secret, len, errstr);
	if (sh->password_env != NULL)
		return secret_read_env(sh->password_env, secret, len, errstr);
	if (sh->password_command != NULL)
		return secret_run_command(sh->password_command,
		    SECRET_COMMAND_TIMEOUT, show_stderr, secret, len, &lifetime,
		    errstr);
	return set_error(errstr, "smarthost.username is set without a password "
	    "source");
}
