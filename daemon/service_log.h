/*
 * The log of relayqd as a Windows service, which has no standard error
 * (Windows only). Every line goes to
 * %ProgramData%\relayq\log\relayqd.log, which rotates at
 * SERVICE_LOG_MAX_SIZE bytes and keeps SERVICE_LOG_KEEP old files
 * (relayqd.log.1 is the newest). Error, warning and info lines also go
 * to the Event Log as events of the source "relayq".
 */
#ifndef RELAYQ_SERVICE_LOG_H
#define RELAYQ_SERVICE_LOG_H

#define SERVICE_LOG_MAX_SIZE	(10LL * 1024 * 1024)
#define SERVICE_LOG_KEEP	5

/*
 * Send the log to the file and the Event Log, and stderr to the file.
 * Whatever part fails, the other still gets the lines. Returns -1 with
 * *ERRSTR naming the first failure, which the caller should log.
 */
int service_log_start(char **errstr);

/* Send the log to stderr again and close the file and the Event Log source. */
void service_log_stop(void);

#endif
