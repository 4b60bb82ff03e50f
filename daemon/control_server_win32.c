/*
 * The control channel on Windows: the named pipe config->control_socket
 * (\\.\pipe\relayq by default). libevent's Windows backend watches only
 * sockets, so one thread serves the pipe: it waits for a client, reads
 * one request line and writes one reply line. Requests only wake the
 * scheduler: the thread activates an event, and the event loop runs the
 * wake (libevent's thread support is on, see compat_init()).
 *
 * The pipe has a single instance, created with
 * FILE_FLAG_FIRST_PIPE_INSTANCE so that no other process can own the name
 * first. It rejects remote clients. Its ACL allows only SYSTEM,
 * Administrators and the account relayqd runs as, the counterpart of the
 * socket's mode 0600.
 */
#include "compat.h"

#include <sddl.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "control.h"
#include "control_server.h"
#include "log.h"
#include "relayqd.h"
#include "scheduler.h"
#include "util.h"

/* Time a client gets to send its request and read the reply, in milliseconds. */
#define CONTROL_SERVER_TIMEOUT_MS 5000

static struct {
	HANDLE pipe;
	HANDLE stop;		/* set by control_server_stop() */
	HANDLE io_event;	/* for the thread's overlapped operations */
	HANDLE thread;
	struct event *wake;	/* activated by the thread, run by the loop */
	char *path;
} cs;

static void
control_server_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	log_debug("event=control request=wake");
	scheduler_wake();
}

/*
 * Wait for the overlapped operation on the pipe. Returns 1 when it
 * finished with *DONE bytes, 0 on a timeout, an error or a closed pipe,
 * and -1 when the server is stopping.
 */
static int
control_server_wait(OVERLAPPED *io, BOOL started, DWORD timeout, DWORD *done)
{
	HANDLE waits[2] = { cs.stop, io->hEvent };
	DWORD w;

	*done = 0;
	if (!started && GetLastError() != ERROR_IO_PENDING)
		return GetLastError() == ERROR_PIPE_CONNECTED ? 1 : 0;
	if (!started) {
		w = WaitForMultipleObjects(2, waits, FALSE, timeout);
		if (w != WAIT_OBJECT_0 + 1) {
			CancelIo(cs.pipe);
			GetOverlappedResult(cs.pipe, io, done, TRUE);
			return w == WAIT_OBJECT_0 ? -1 : 0;
		}
	}
	return GetOverlappedResult(cs.pipe, io, done, FALSE) ? 1 : 0;
}

/* Read one request line into BUF. Returns 1, 0 when the client failed, -1 when stopping. */
static int
control_server_read_line(OVERLAPPED *io, char *buf, size_t size)
{
	ULONGLONG deadline = GetTickCount64() + CONTROL_SERVER_TIMEOUT_MS;
	size_t len = 0;
	char *eol;

	while ((eol = memchr(buf, '\n', len)) == NULL) {
		ULONGLONG now = GetTickCount64();
		DWORD done;
		BOOL started;
		int rc;

		if (len + 1 >= size || now >= deadline)
			return 0;
		ResetEvent(io->hEvent);
		started = ReadFile(cs.pipe, buf + len, (DWORD)(size - len - 1), NULL, io);
		rc = control_server_wait(io, started, (DWORD)(deadline - now), &done);
		if (rc != 1)
			return rc;
		if (done == 0)
			return 0;
		len += done;
	}
	*eol = '\0';
	if (eol > buf && eol[-1] == '\r')
		eol[-1] = '\0';
	return 1;
}

static void
control_server_write_line(OVERLAPPED *io, const char *line)
{
	char *text = xasprintf("%s\n", line);
	DWORD done;
	BOOL started;

	ResetEvent(io->hEvent);
	started = WriteFile(cs.pipe, text, (DWORD)strlen(text), NULL, io);
	control_server_wait(io, started, CONTROL_SERVER_TIMEOUT_MS, &done);
	free(text);
}

/*
 * Wait until the client closes its end, at most the timeout, because
 * DisconnectNamedPipe() discards a reply that the client has not read
 * yet. FlushFileBuffers() would wait as well, but without a time limit.
 */
static int
control_server_wait_close(OVERLAPPED *io)
{
	char byte;
	DWORD done;
	BOOL started;
	int rc;

	do {
		ResetEvent(io->hEvent);
		started = ReadFile(cs.pipe, &byte, 1, NULL, io);
		rc = control_server_wait(io, started, CONTROL_SERVER_TIMEOUT_MS, &done);
	} while (rc == 1 && done > 0);
	return rc == -1 ? -1 : 0;
}

/* Serve one client that has connected. Returns -1 when the server is stopping. */
static int
control_server_serve(OVERLAPPED *io)
{
	char line[CONTROL_LINE_MAX];
	int rc;

	rc = control_server_read_line(io, line, sizeof(line));
	if (rc != 1)
		return rc;
	if (strcmp(line, "wake") == 0) {
		event_active(cs.wake, EV_READ, 1);
		control_server_write_line(io, "ok");
	} else {
		control_server_write_line(io, "error unknown request");
	}
	return control_server_wait_close(io);
}

static DWORD WINAPI
control_server_thread(void *arg)
{
	OVERLAPPED io;

	(void)arg;
	for (;;) {
		DWORD done;
		BOOL started;
		int rc;

		memset(&io, 0, sizeof(io));
		io.hEvent = cs.io_event;
		ResetEvent(io.hEvent);
		started = ConnectNamedPipe(cs.pipe, &io);
		rc = control_server_wait(&io, started, INFINITE, &done);
		if (rc == 1)
			rc = control_server_serve(&io);
		else if (rc == 0 && WaitForSingleObject(cs.stop, 100) == WAIT_OBJECT_0)
			rc = -1;	/* a failed connect: pause, so an error cannot spin */
		DisconnectNamedPipe(cs.pipe);
		if (rc == -1)
			break;
	}
	return 0;
}

/* The pipe's security descriptor: full access for SYSTEM, Administrators and our own account. */
static int
control_server_security(PSECURITY_DESCRIPTOR *sd, char **errstr)
{
	HANDLE token = NULL;
	TOKEN_USER *user = NULL;
	DWORD size = 0;
	wchar_t *sid = NULL, sddl[256];
	int rc = -1;

	if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token))
		goto out;
	GetTokenInformation(token, TokenUser, NULL, 0, &size);
	user = xmalloc(size);
	if (!GetTokenInformation(token, TokenUser, user, size, &size) ||
	    !ConvertSidToStringSidW(user->User.Sid, &sid))
		goto out;
	/* P: protected, so that no inherited entry widens the access. */
	_snwprintf(sddl, sizeof(sddl) / sizeof(sddl[0]),
	    L"D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;%ls)", sid);
	if (ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl,
	    SDDL_REVISION_1, sd, NULL))
		rc = 0;

out:
	if (rc == -1) {
		char *text = compat_win32_strerror(GetLastError());

		set_error(errstr, "cannot build the control pipe's access list: %s",
		    text);
		free(text);
	}
	if (sid != NULL)
		LocalFree(sid);
	free(user);
	if (token != NULL)
		CloseHandle(token);
	return rc;
}

static int
control_server_create_pipe(const char *path, char **errstr)
{
	SECURITY_ATTRIBUTES sa = { sizeof(sa), NULL, FALSE };
	PSECURITY_DESCRIPTOR sd = NULL;
	wchar_t *name;
	DWORD err;

	name = compat_utf8_to_wide(path);
	if (name == NULL)
		return set_error(errstr, "control.socket %s is not valid UTF-8", path);
	if (control_server_security(&sd, errstr) == -1) {
		free(name);
		return -1;
	}
	sa.lpSecurityDescriptor = sd;
	cs.pipe = CreateNamedPipeW(name, PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED |
	    FILE_FLAG_FIRST_PIPE_INSTANCE, PIPE_TYPE_BYTE | PIPE_READMODE_BYTE |
	    PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS, 1, CONTROL_LINE_MAX,
	    CONTROL_LINE_MAX, 0, &sa);
	err = GetLastError();
	LocalFree(sd);
	free(name);
	if (cs.pipe == INVALID_HANDLE_VALUE) {
		char *text = compat_win32_strerror(err);

		cs.pipe = NULL;
		if (err == ERROR_ACCESS_DENIED || err == ERROR_PIPE_BUSY)
			set_error(errstr, "cannot create the control pipe %s: %s; is "
			    "another relayqd running? Else check control.socket", path,
			    text);
		else
			set_error(errstr, "cannot create the control pipe %s: %s; check "
			    "control.socket", path, text);
		free(text);
		return -1;
	}
	return 0;
}

int
control_server_start(char **errstr)
{
	const char *path = relayqd.config->control_socket;

	if (strncmp(path, "\\\\.\\pipe\\", 9) != 0)
		return set_error(errstr, "control.socket %s is not a named pipe; on "
		    "Windows it must start with \\\\.\\pipe\\", path);
	if (control_server_create_pipe(path, errstr) == -1)
		return -1;

	cs.stop = CreateEventW(NULL, TRUE, FALSE, NULL);
	cs.io_event = CreateEventW(NULL, TRUE, FALSE, NULL);
	cs.wake = event_new(relayqd.base, -1, 0, control_server_wake_cb, NULL);
	if (cs.stop == NULL || cs.io_event == NULL || cs.wake == NULL) {
		control_server_stop();
		return set_error(errstr, "cannot create the control pipe's events");
	}
	cs.thread = CreateThread(NULL, 0, control_server_thread, NULL, 0, NULL);
	if (cs.thread == NULL) {
		char *text = compat_win32_strerror(GetLastError());

		set_error(errstr, "cannot start the control pipe's thread: %s", text);
		free(text);
		control_server_stop();
		return -1;
	}
	cs.path = xstrdup(path);
	log_debug("event=control_listening pipe=%s", path);
	return 0;
}

void
control_server_stop(void)
{
	if (cs.thread != NULL) {
		SetEvent(cs.stop);
		WaitForSingleObject(cs.thread, INFINITE);
		CloseHandle(cs.thread);
	}
	if (cs.pipe != NULL)
		CloseHandle(cs.pipe);
	if (cs.stop != NULL)
		CloseHandle(cs.stop);
	if (cs.io_event != NULL)
		CloseHandle(cs.io_event);
	if (cs.wake != NULL)
		event_free(cs.wake);
	free(cs.path);
	memset(&cs, 0, sizeof(cs));
}
