/*
 * Client side of the control channel on Windows (see control.h): a named
 * pipe such as \\.\pipe\relayq, which relayqd creates with an ACL for
 * SYSTEM, Administrators and its own account.
 */
#include "compat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "util.h"

/* A reply that takes longer than this means the daemon is stuck. */
#define CONTROL_TIMEOUT_MS 5000

struct control_pipe {
	HANDLE handle;
	OVERLAPPED io;
	ULONGLONG deadline;	/* GetTickCount64() value */
	const char *name;
};

static DWORD
control_pipe_time_left(const struct control_pipe *p)
{
	ULONGLONG now = GetTickCount64();

	return now >= p->deadline ? 0 : (DWORD)(p->deadline - now);
}

static int
control_pipe_error(const struct control_pipe *p, const char *what, DWORD code,
    char **errstr)
{
	char *text = compat_win32_strerror(code);

	set_error(errstr, "cannot %s relayqd at %s: %s", what, p->name, text);
	free(text);
	return -1;
}

/*
 * Open the pipe, waiting while the daemon serves another client. Returns
 * 0, 1 when no daemon listens (no pipe of that name exists), or -1.
 */
static int
control_pipe_open(struct control_pipe *p, const wchar_t *name, char **errstr)
{
	DWORD err;

	for (;;) {
		/* SECURITY_IDENTIFICATION: a server that took the name cannot act as the caller. */
		p->handle = CreateFileW(name, GENERIC_READ | GENERIC_WRITE, 0, NULL,
		    OPEN_EXISTING, FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT |
		    SECURITY_IDENTIFICATION, NULL);
		if (p->handle != INVALID_HANDLE_VALUE)
			return 0;
		err = GetLastError();
		if (err == ERROR_FILE_NOT_FOUND)
			return 1;
		if (err != ERROR_PIPE_BUSY)
			return control_pipe_error(p, "reach", err, errstr);
		if (control_pipe_time_left(p) == 0)
			return set_error(errstr, "relayqd at %s stayed busy for %d s",
			    p->name, CONTROL_TIMEOUT_MS / 1000);
		if (!WaitNamedPipeW(name, control_pipe_time_left(p))) {
			err = GetLastError();
			if (err == ERROR_FILE_NOT_FOUND)
				return 1;
			if (err != ERROR_SEM_TIMEOUT)
				return control_pipe_error(p, "reach", err, errstr);
		}
	}
}

/*
 * Wait for the overlapped operation started on P until the deadline. A
 * pipe closed by the daemon counts as done with 0 bytes.
 */
static int
control_pipe_finish(struct control_pipe *p, BOOL started, DWORD *done,
    const char *what, char **errstr)
{
	DWORD err;

	*done = 0;
	if (!started) {
		err = GetLastError();
		if (err == ERROR_BROKEN_PIPE)
			return 0;
		if (err != ERROR_IO_PENDING)
			return control_pipe_error(p, what, err, errstr);
		if (WaitForSingleObject(p->io.hEvent, control_pipe_time_left(p)) !=
		    WAIT_OBJECT_0) {
			CancelIo(p->handle);
			GetOverlappedResult(p->handle, &p->io, done, TRUE);
			return set_error(errstr, "relayqd at %s did not reply within %d s",
			    p->name, CONTROL_TIMEOUT_MS / 1000);
		}
	}
	if (!GetOverlappedResult(p->handle, &p->io, done, FALSE)) {
		err = GetLastError();
		if (err == ERROR_BROKEN_PIPE)
			return 0;
		return control_pipe_error(p, what, err, errstr);
	}
	return 0;
}

static int
control_pipe_write(struct control_pipe *p, const char *text, char **errstr)
{
	DWORD len = (DWORD)strlen(text), done = 0;
	BOOL started;

	ResetEvent(p->io.hEvent);
	started = WriteFile(p->handle, text, len, NULL, &p->io);
	if (control_pipe_finish(p, started, &done, "write to", errstr) == -1)
		return -1;
	if (done != len)
		return set_error(errstr, "relayqd at %s closed the control connection "
		    "before reading the request", p->name);
	return 0;
}

static int
control_pipe_read_line(struct control_pipe *p, char *buf, size_t size,
    char **errstr)
{
	size_t len = 0;

	while (len + 1 < size && memchr(buf, '\n', len) == NULL) {
		DWORD done = 0;
		BOOL started;

		ResetEvent(p->io.hEvent);
		started = ReadFile(p->handle, buf + len, (DWORD)(size - len - 1), NULL,
		    &p->io);
		if (control_pipe_finish(p, started, &done, "read from", errstr) == -1)
			return -1;
		if (done == 0)
			break;
		len += done;
	}
	buf[len] = '\0';
	if (len == 0 || buf[len - 1] != '\n')
		return set_error(errstr, "relayqd at %s closed the control connection "
		    "without a reply", p->name);
	buf[len - 1] = '\0';
	if (len >= 2 && buf[len - 2] == '\r')
		buf[len - 2] = '\0';
	return 0;
}

int
control_request(const struct config *config, const char *request, char **reply,
    char **errstr)
{
	struct control_pipe p;
	char line[CONTROL_LINE_MAX], *text = NULL;
	wchar_t *name;
	int rc;

	*reply = NULL;
	memset(&p, 0, sizeof(p));
	p.handle = INVALID_HANDLE_VALUE;
	p.name = config->control_socket;
	p.deadline = GetTickCount64() + CONTROL_TIMEOUT_MS;

	name = compat_utf8_to_wide(config->control_socket);
	if (name == NULL)
		return set_error(errstr, "control.socket %s is not valid UTF-8",
		    config->control_socket);
	p.io.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
	if (p.io.hEvent == NULL) {
		free(name);
		return control_pipe_error(&p, "reach", GetLastError(), errstr);
	}

	rc = control_pipe_open(&p, name, errstr);
	if (rc == 0) {
		text = xasprintf("%s\n", request);
		if (control_pipe_write(&p, text, errstr) == -1 ||
		    control_pipe_read_line(&p, line, sizeof(line), errstr) == -1)
			rc = -1;
		else
			*reply = xstrdup(line);
	}

	free(text);
	if (p.handle != INVALID_HANDLE_VALUE)
		CloseHandle(p.handle);
	CloseHandle(p.io.hEvent);
	free(name);
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
