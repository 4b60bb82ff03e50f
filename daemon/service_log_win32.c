/*
 * The service's log sink (see service_log.h). log.c calls the sink on
 * every thread that logs, so a lock serialises the file writes and
 * rotations. The Event Log calls need no lock.
 */
#include "compat.h"

#include <knownfolders.h>
#include <shlobj.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "eventlog.h"
#include "log.h"
#include "log_file.h"
#include "service_log.h"
#include "util.h"

static CRITICAL_SECTION service_log_lock;
static struct log_file *service_log_file;	/* NULL: Event Log only */
static bool service_log_failing;		/* the last file write failed */

static void
service_log_sink(const struct log_record *record)
{
	char *error = NULL, *message;
	bool report = false;

	eventlog_report(record->level, record->text, record->text_len);

	EnterCriticalSection(&service_log_lock);
	if (service_log_file != NULL) {
		if (log_file_write(service_log_file, record->line, record->line_len,
		    &error) == -1) {
			report = !service_log_failing;
			service_log_failing = true;
		} else {
			service_log_failing = false;
		}
	}
	LeaveCriticalSection(&service_log_lock);

	/* Only the first failure in a row, so a full disk does not double every event. */
	if (report) {
		message = xasprintf("event=log_file_failed error=\"%s\"", error);
		eventlog_report(LOG_LEVEL_WARNING, message, strlen(message));
		free(message);
	}
	free(error);
}

/* Create DIR unless it exists. */
static int
service_log_mkdir(const wchar_t *dir, char **errstr)
{
	char *text, *name;

	if (CreateDirectoryW(dir, NULL) || GetLastError() == ERROR_ALREADY_EXISTS)
		return 0;
	text = compat_win32_strerror(GetLastError());
	name = compat_wide_to_utf8(dir);
	set_error(errstr, "cannot create the log directory %s: %s",
	    name != NULL ? name : "(not UTF-16)", text);
	free(name);
	free(text);
	return -1;
}

/*
 * The path of relayqd.log in %ProgramData%\relayq\log, as UTF-8, with
 * the directories created. The folder comes from the known folder
 * FOLDERID_ProgramData, not from the environment, because Wine 8 gives
 * services a %ProgramData% of C:\users\Public.
 */
static char *
service_log_path(char **errstr)
{
	wchar_t *base = NULL, dir[MAX_PATH + 32];
	char *path = NULL;
	HRESULT hr;

	hr = SHGetKnownFolderPath(&FOLDERID_ProgramData, 0, NULL, &base);
	if (FAILED(hr) || wcslen(base) >= MAX_PATH) {
		set_error(errstr, "cannot find the ProgramData folder (HRESULT 0x%08lx)",
		    (unsigned long)hr);
		goto out;
	}

	_snwprintf(dir, sizeof(dir) / sizeof(dir[0]), L"%ls\\relayq", base);
	if (service_log_mkdir(dir, errstr) == -1)
		goto out;
	_snwprintf(dir, sizeof(dir) / sizeof(dir[0]), L"%ls\\relayq\\log", base);
	if (service_log_mkdir(dir, errstr) == -1)
		goto out;

	_snwprintf(dir, sizeof(dir) / sizeof(dir[0]),
	    L"%ls\\relayq\\log\\relayqd.log", base);
	path = compat_wide_to_utf8(dir);
out:
	CoTaskMemFree(base);
	return path;
}

static struct log_file *
service_log_open_file(char **errstr)
{
	struct log_file *file;
	char *path;

	path = service_log_path(errstr);
	if (path == NULL)
		return NULL;
	file = log_file_open(path, SERVICE_LOG_MAX_SIZE, SERVICE_LOG_KEEP, errstr);
	free(path);
	if (file == NULL)
		return NULL;

	/*
	 * The config error at start-up, for one, is printed to stderr. The
	 * file stays in use when that fails, with the error in *ERRSTR.
	 */
	log_file_capture_stderr(file, errstr);
	return file;
}

int
service_log_start(char **errstr)
{
	char *event_error = NULL, *file_error = NULL;
	bool have_events;

	InitializeCriticalSection(&service_log_lock);
	have_events = eventlog_open(&event_error) == 0;
	service_log_file = service_log_open_file(&file_error);
	if (have_events || service_log_file != NULL)
		log_set_sink(service_log_sink);

	if (file_error == NULL && event_error == NULL)
		return 0;
	set_error(errstr, "%s", file_error != NULL ? file_error : event_error);
	free(file_error);
	free(event_error);
	return -1;
}

void
service_log_stop(void)
{
	log_set_sink(NULL);
	EnterCriticalSection(&service_log_lock);
	log_file_free(service_log_file);
	service_log_file = NULL;
	LeaveCriticalSection(&service_log_lock);
	eventlog_close();
}
