/*
 * Running a shell command on Windows and collecting its standard output,
 * for smarthost.password_command. The command runs with cmd.exe in a job
 * object, so that a timeout or a cancel ends it together with every
 * process it started.
 */
#include "compat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Interval between looks at the output pipe, in milliseconds. */
#define COMPAT_PROCESS_POLL_MS 10

struct compat_process {
	HANDLE job;
	HANDLE process;
	HANDLE out_read;	/* our end of the child's standard output */
	HANDLE out_write;	/* the child's end, closed after the start */
	HANDLE null;		/* NUL, the child's standard input (and error unless shown) */
};

static int
compat_process_error(const char *what, char **errstr)
{
	char *text = compat_win32_strerror(GetLastError());

	set_error(errstr, "cannot run smarthost.password_command: %s: %s", what,
	    text);
	free(text);
	return -1;
}

static void
compat_process_close(struct compat_process *p)
{
	HANDLE *handles[] = { &p->job, &p->process, &p->out_read, &p->out_write,
	    &p->null };
	size_t i;

	for (i = 0; i < sizeof(handles) / sizeof(handles[0]); i++) {
		if (*handles[i] != NULL && *handles[i] != INVALID_HANDLE_VALUE)
			CloseHandle(*handles[i]);
		*handles[i] = NULL;
	}
}

/* The command line "CMD.EXE /d /s /c "COMMAND"", as UTF-16. */
static wchar_t *
compat_process_command_line(const char *command)
{
	wchar_t system_dir[MAX_PATH], *wide, *line;
	size_t size;
	UINT n;

	n = GetSystemDirectoryW(system_dir, MAX_PATH);
	if (n == 0 || n >= MAX_PATH)
		return NULL;
	wide = compat_utf8_to_wide(command);
	if (wide == NULL)
		return NULL;
	/* /s: cmd.exe removes the outer quotes and keeps the command as written. */
	size = wcslen(system_dir) + wcslen(wide) + 32;
	line = xcalloc(size, sizeof(*line));
	_snwprintf(line, size, L"\"%ls\\cmd.exe\" /d /s /c \"%ls\"", system_dir, wide);
	free(wide);
	return line;
}

static int
compat_process_pipes(struct compat_process *p, char **errstr)
{
	SECURITY_ATTRIBUTES inherit = { sizeof(inherit), NULL, TRUE };

	if (!CreatePipe(&p->out_read, &p->out_write, &inherit, 0))
		return compat_process_error("CreatePipe", errstr);
	/* Only the child's end is inherited. */
	SetHandleInformation(p->out_read, HANDLE_FLAG_INHERIT, 0);
	p->null = CreateFileW(L"NUL", GENERIC_READ | GENERIC_WRITE,
	    FILE_SHARE_READ | FILE_SHARE_WRITE, &inherit, OPEN_EXISTING, 0, NULL);
	if (p->null == INVALID_HANDLE_VALUE)
		return compat_process_error("open NUL", errstr);
	return 0;
}

/*
 * Start the command suspended, put it into a new job and let it run. The
 * child inherits only its three standard handles, named in a handle list,
 * because relayqd's sockets are inheritable by default.
 */
static int
compat_process_start(struct compat_process *p, const char *command,
    bool show_stderr, char **errstr)
{
	JOBOBJECT_EXTENDED_LIMIT_INFORMATION limits;
	STARTUPINFOEXW si;
	PROCESS_INFORMATION pi;
	HANDLE inherited[3];
	SIZE_T attr_size = 0;
	wchar_t *line;
	DWORD count = 0;
	BOOL ok;

	memset(&si, 0, sizeof(si));
	si.StartupInfo.cb = sizeof(si);
	si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
	si.StartupInfo.hStdInput = p->null;
	si.StartupInfo.hStdOutput = p->out_write;
	si.StartupInfo.hStdError = show_stderr ? GetStdHandle(STD_ERROR_HANDLE) : p->null;
	inherited[count++] = p->null;
	inherited[count++] = p->out_write;
	if (show_stderr && si.StartupInfo.hStdError != NULL &&
	    si.StartupInfo.hStdError != INVALID_HANDLE_VALUE &&
	    SetHandleInformation(si.StartupInfo.hStdError, HANDLE_FLAG_INHERIT,
	    HANDLE_FLAG_INHERIT))
		inherited[count++] = si.StartupInfo.hStdError;

	InitializeProcThreadAttributeList(NULL, 1, 0, &attr_size);
	si.lpAttributeList = xmalloc(attr_size);
	if (!InitializeProcThreadAttributeList(si.lpAttributeList, 1, 0, &attr_size) ||
	    !UpdateProcThreadAttribute(si.lpAttributeList, 0,
	    PROC_THREAD_ATTRIBUTE_HANDLE_LIST, inherited, count * sizeof(HANDLE),
	    NULL, NULL)) {
		free(si.lpAttributeList);
		return compat_process_error("InitializeProcThreadAttributeList", errstr);
	}

	p->job = CreateJobObjectW(NULL, NULL);
	if (p->job == NULL) {
		DeleteProcThreadAttributeList(si.lpAttributeList);
		free(si.lpAttributeList);
		return compat_process_error("CreateJobObject", errstr);
	}
	/* Closing the job's last handle ends whatever still runs in it. */
	memset(&limits, 0, sizeof(limits));
	limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
	SetInformationJobObject(p->job, JobObjectExtendedLimitInformation, &limits,
	    sizeof(limits));

	line = compat_process_command_line(command);
	if (line == NULL) {
		DeleteProcThreadAttributeList(si.lpAttributeList);
		free(si.lpAttributeList);
		return set_error(errstr, "cannot run smarthost.password_command: the "
		    "command is not valid UTF-8 or the system directory is unknown");
	}
	ok = CreateProcessW(NULL, line, NULL, NULL, TRUE,
	    CREATE_SUSPENDED | CREATE_NO_WINDOW | EXTENDED_STARTUPINFO_PRESENT,
	    NULL, NULL, &si.StartupInfo, &pi);
	free(line);
	DeleteProcThreadAttributeList(si.lpAttributeList);
	free(si.lpAttributeList);
	if (!ok)
		return compat_process_error("CreateProcess", errstr);

	p->process = pi.hProcess;
	if (!AssignProcessToJobObject(p->job, pi.hProcess)) {
		TerminateProcess(pi.hProcess, 1);
		CloseHandle(pi.hThread);
		return compat_process_error("AssignProcessToJobObject", errstr);
	}
	ResumeThread(pi.hThread);
	CloseHandle(pi.hThread);

	/* Our copy of the write end would keep the pipe open after the child exits. */
	CloseHandle(p->out_write);
	p->out_write = NULL;
	return 0;
}

/*
 * Move what the pipe holds into OUT without blocking. Returns 1 while the
 * pipe is open, 0 at its end, after which nothing more arrives.
 */
static int
compat_process_read_available(struct compat_process *p, char *out, size_t size,
    size_t *used)
{
	DWORD avail = 0, got = 0, want;

	while (*used < size) {
		if (!PeekNamedPipe(p->out_read, NULL, 0, NULL, &avail, NULL))
			return 0;
		if (avail == 0)
			return 1;
		want = avail < size - *used ? avail : (DWORD)(size - *used);
		if (!ReadFile(p->out_read, out + *used, want, &got, NULL) || got == 0)
			return 0;
		*used += got;
	}
	return 1;
}

int
compat_run_command(const char *command, int timeout, bool show_stderr,
    HANDLE cancel, char *out, size_t size, size_t *used,
    unsigned long *exit_code, char **errstr)
{
	struct compat_process p;
	ULONGLONG deadline = GetTickCount64() + (ULONGLONG)timeout * 1000;
	HANDLE waits[2];
	DWORD nwaits = 0, status = 0;
	int rc = 0, open = 1;

	memset(&p, 0, sizeof(p));
	*used = 0;
	if (compat_process_pipes(&p, errstr) == -1 ||
	    compat_process_start(&p, command, show_stderr, errstr) == -1) {
		compat_process_close(&p);
		return -1;
	}

	waits[nwaits++] = p.process;
	if (cancel != NULL)
		waits[nwaits++] = cancel;
	for (;;) {
		DWORD w;

		if (open)
			open = compat_process_read_available(&p, out, size, used);
		if (GetTickCount64() >= deadline) {
			rc = set_error(errstr, "smarthost.password_command did not "
			    "finish within %ds", timeout);
			break;
		}
		w = WaitForMultipleObjects(nwaits, waits, FALSE, COMPAT_PROCESS_POLL_MS);
		if (w == WAIT_OBJECT_0 + 1) {
			rc = set_error(errstr, "smarthost.password_command was "
			    "cancelled");
			break;
		}
		if (w == WAIT_OBJECT_0) {
			/* What the child wrote before it exited is still in the pipe. */
			if (open)
				compat_process_read_available(&p, out, size, used);
			GetExitCodeProcess(p.process, &status);
			*exit_code = status;
			break;
		}
		if (w == WAIT_FAILED) {
			rc = compat_process_error("WaitForMultipleObjects", errstr);
			break;
		}
	}

	if (rc == -1)
		TerminateJobObject(p.job, 1);
	compat_process_close(&p);
	return rc;
}
