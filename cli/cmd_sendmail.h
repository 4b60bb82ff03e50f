/*
 * The sendmail interface's parts shared between cmd_sendmail.c (flags,
 * privileges, message submission from standard input) and
 * cmd_sendmail_bs.c (SMTP on standard input and output, -bs).
 */
#ifndef RELAYQ_CMD_SENDMAIL_H
#define RELAYQ_CMD_SENDMAIL_H

#include <stdint.h>

#include "cli.h"

/*
 * Run an SMTP session on standard input and output (sendmail -bs),
 * committing each message to the queue in cli->store before its 250.
 * SOURCE names the submitter for Received:. Returns the exit status.
 */
int cmd_sendmail_bs(struct cli *cli, const char *source);

/*
 * Tell a running relayqd that message ID is queued. A daemon that is not
 * running is fine; any other failure is reported as a warning, because
 * the message is committed either way.
 */
void cmd_sendmail_wake(struct cli *cli, int64_t id);

#endif
