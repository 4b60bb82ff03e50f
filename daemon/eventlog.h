/*
 * The Event Log source "relayq" (Windows only): its registration in the
 * registry, and one event per log line with the type of the line's level.
 * The message texts come from relayqd_messages.mc, compiled into
 * relayqd.exe.
 */
#ifndef RELAYQ_EVENTLOG_H
#define RELAYQ_EVENTLOG_H

#include <stddef.h>

#include "log.h"

/*
 * Register the source under
 * HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\relayq with
 * EventMessageFile set to this program's path and TypesSupported to
 * error, warning and information. Returns -1 with *ERRSTR when the key
 * cannot be written (without administrator rights, for example).
 */
int eventlog_register(char **errstr);

/* Remove the source's key. Returns 0 when it is gone or was never there. */
int eventlog_unregister(char **errstr);

/* Open the source for eventlog_report(). Returns -1 with *ERRSTR on failure. */
int eventlog_open(char **errstr);

/*
 * Report LEN bytes of TEXT (UTF-8) as an event of LEVEL's type. Does
 * nothing before eventlog_open(), or for LOG_LEVEL_DEBUG. Safe on any
 * thread.
 */
void eventlog_report(enum log_level level, const char *text, size_t len);

void eventlog_close(void);

#endif
