/*
 * The Event Log source "relayq" (see eventlog.h). Every event uses one of
 * three messages whose text is just the insertion string, so the Event
 * Viewer shows the log line as it is, and filters by its type.
 */
#include "compat.h"

#include <stdlib.h>
#include <string.h>

#include "eventlog.h"
#include "relayqd_messages.h"
#include "util.h"

#define EVENTLOG_SOURCE		L"relayq"
#define EVENTLOG_KEY		L"SYSTEM\\CurrentControlSet\\Services\\EventLog\\" \
	L"Application\\relayq"

static HANDLE eventlog_source;

static int
eventlog_fail(char **errstr, const char *what, LSTATUS code)
{
	char *text = compat_win32_strerror((unsigned long)code);

	set_error(errstr, "%s: %s%s", what, text, code == ERROR_ACCESS_DENIED ?
	    " (run it from an elevated command prompt)" : "");
	free(text);
	return -1;
}

static LSTATUS
eventlog_set_values(HKEY key, const wchar_t *exe)
{
	DWORD types = EVENTLOG_ERROR_TYPE | EVENTLOG_WARNING_TYPE |
	    EVENTLOG_INFORMATION_TYPE;
	LSTATUS rc;

	rc = RegSetValueExW(key, L"EventMessageFile", 0, REG_EXPAND_SZ,
	    (const BYTE *)exe, (DWORD)((wcslen(exe) + 1) * sizeof(wchar_t)));
	if (rc != ERROR_SUCCESS)
		return rc;
	return RegSetValueExW(key, L"TypesSupported", 0, REG_DWORD,
	    (const BYTE *)&types, sizeof(types));
}

int
eventlog_register(char **errstr)
{
	wchar_t exe[MAX_PATH];
	LSTATUS rc;
	HKEY key;
	DWORD n;

	n = GetModuleFileNameW(NULL, exe, MAX_PATH);
	if (n == 0 || n >= MAX_PATH)
		return eventlog_fail(errstr, "cannot find the path of relayqd.exe",
		    (LSTATUS)GetLastError());

	rc = RegCreateKeyExW(HKEY_LOCAL_MACHINE, EVENTLOG_KEY, 0, NULL,
	    REG_OPTION_NON_VOLATILE, KEY_SET_VALUE, NULL, &key, NULL);
	if (rc != ERROR_SUCCESS)
		return eventlog_fail(errstr, "cannot create the Event Log source relayq", rc);
	rc = eventlog_set_values(key, exe);
	RegCloseKey(key);
	if (rc != ERROR_SUCCESS)
		return eventlog_fail(errstr, "cannot register the Event Log source relayq", rc);
	return 0;
}

int
eventlog_unregister(char **errstr)
{
	LSTATUS rc = RegDeleteKeyW(HKEY_LOCAL_MACHINE, EVENTLOG_KEY);

	if (rc != ERROR_SUCCESS && rc != ERROR_FILE_NOT_FOUND)
		return eventlog_fail(errstr, "cannot remove the Event Log source relayq", rc);
	return 0;
}

int
eventlog_open(char **errstr)
{
	eventlog_source = RegisterEventSourceW(NULL, EVENTLOG_SOURCE);
	if (eventlog_source == NULL)
		return eventlog_fail(errstr, "cannot open the Event Log source relayq",
		    (LSTATUS)GetLastError());
	return 0;
}

/*
 * LEN bytes of UTF-8 as an allocated UTF-16 string. Invalid bytes become
 * U+FFFD rather than losing the line.
 */
static wchar_t *
eventlog_widen(const char *text, size_t len)
{
	wchar_t *wide;
	int n;

	n = MultiByteToWideChar(CP_UTF8, 0, text, (int)len, NULL, 0);
	wide = xcalloc((size_t)n + 1, sizeof(*wide));
	if (n > 0)
		MultiByteToWideChar(CP_UTF8, 0, text, (int)len, wide, n);
	return wide;
}

void
eventlog_report(enum log_level level, const char *text, size_t len)
{
	const wchar_t *strings[1];
	wchar_t *wide;
	WORD type;
	DWORD id;

	switch (level) {
	case LOG_LEVEL_ERROR:
		type = EVENTLOG_ERROR_TYPE;
		id = RELAYQD_MSG_ERROR;
		break;
	case LOG_LEVEL_WARNING:
		type = EVENTLOG_WARNING_TYPE;
		id = RELAYQD_MSG_WARNING;
		break;
	case LOG_LEVEL_INFO:
		type = EVENTLOG_INFORMATION_TYPE;
		id = RELAYQD_MSG_INFO;
		break;
	default:
		/* Debug lines would flood the Application log; they stay in the file. */
		return;
	}
	if (eventlog_source == NULL)
		return;

	wide = eventlog_widen(text, len);
	strings[0] = wide;
	ReportEventW(eventlog_source, type, 0, id, NULL, 1, 0, strings, NULL);
	free(wide);
}

void
eventlog_close(void)
{
	if (eventlog_source != NULL)
		DeregisterEventSource(eventlog_source);
	eventlog_source = NULL;
}
