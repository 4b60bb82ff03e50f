/*
 * sendmail -bs: an SMTP session on standard input and output, for
 * programs that speak SMTP to a pipe. Commands and message data go
 * through the parsers of relayqd's listener (smtp_proto, smtp_data), so
 * the same rules hold: only <CRLF>.<CRLF> ends DATA, dot-stuffing is
 * removed, and each message is committed to the queue before its 250.
 * Replies are flushed one by one, which keeps pipelined commands in order.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd_sendmail.h"
#include "compat.h"
#include "exit_codes.h"
#include "header.h"
#include "smtp_data.h"
#include "smtp_proto.h"
#include "submit.h"
#include "util.h"

/* Protocol errors tolerated before the session ends, as on relayqd's listener. */
#define CMD_SENDMAIL_BS_MAX_ERRORS 20

#define CMD_SENDMAIL_BS_BUFFER (64 * 1024)

struct cmd_sendmail_bs {
	struct cli *cli;
	const char *source;
	char in[CMD_SENDMAIL_BS_BUFFER];
	size_t start;			/* unread input is in[start..end) */
	size_t end;
	bool eof;
	bool discard_line;		/* skipping the rest of an over-long line */
	bool helo;
	bool done;			/* QUIT, too many errors, or output failed */
	int errors;

	/* The transaction from MAIL to the end of DATA. */
	char *sender;			/* NULL before MAIL */
	struct header_addresses rcpts;
	struct submit *submit;		/* during DATA */
	struct smtp_data_parser data;
	char *write_error;		/* first failure writing the message */
};

static void
cmd_sendmail_bs_reply(struct cmd_sendmail_bs *bs, const char *fmt, ...)
    RELAYQ_PRINTF(2, 3);

static void
cmd_sendmail_bs_reply(struct cmd_sendmail_bs *bs, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputs("\r\n", stdout);
	if (fflush(stdout) == EOF)
		bs->done = true;
}

static void
cmd_sendmail_bs_reset(struct cmd_sendmail_bs *bs)
{
	submit_free(bs->submit);
	bs->submit = NULL;
	free(bs->sender);
	bs->sender = NULL;
	free(bs->write_error);
	bs->write_error = NULL;
	header_addresses_clear(&bs->rcpts);
}

/* Count a protocol error and send REPLY; too many end the session. */
static void
cmd_sendmail_bs_error(struct cmd_sendmail_bs *bs, const char *reply)
{
	if (++bs->errors >= CMD_SENDMAIL_BS_MAX_ERRORS) {
		cmd_sendmail_bs_reply(bs, "421 4.7.0 Too many errors, closing");
		bs->done = true;
		return;
	}
	cmd_sendmail_bs_reply(bs, "%s", reply);
}

/* Read more input. Returns 1 when bytes arrived, 0 at the end of input, -1 on an error. */
static int
cmd_sendmail_bs_fill(struct cmd_sendmail_bs *bs)
{
	ssize_t got;

	if (bs->start > 0) {
		memmove(bs->in, bs->in + bs->start, bs->end - bs->start);
		bs->end -= bs->start;
		bs->start = 0;
	}
	do
		got = read(STDIN_FILENO, bs->in + bs->end, sizeof(bs->in) - bs->end);
	while (got == -1 && errno == EINTR);
	if (got == -1)
		return -1;
	if (got == 0) {
		bs->eof = true;
		return 0;
	}
	bs->end += (size_t)got;
	return 1;
}

/* --- message data --- */

static void
cmd_sendmail_bs_data_sink(void *arg, const char *data, size_t len)
{
	struct cmd_sendmail_bs *bs = arg;

	if (bs->write_error == NULL)
		submit_write(bs->submit, data, len, &bs->write_error);
}

static void
cmd_sendmail_bs_data_end(struct cmd_sendmail_bs *bs)
{
	char *errstr = NULL;
	bool space = false;
	int64_t id = 0;

	if (bs->write_error != NULL) {
		space = queue_store_error_is_space(bs->cli->store);
		errstr = xstrdup(bs->write_error);
	} else if (submit_commit(bs->submit, &id, &space, &errstr) == 0) {
		cmd_sendmail_bs_reply(bs, "250 2.0.0 Ok: queued as %lld", (long long)id);
		cmd_sendmail_bs_reset(bs);
		cmd_sendmail_wake(bs->cli, id);
		return;
	}
	cmd_sendmail_bs_reply(bs, "%s Message not accepted: %s",
	    space ? "452 4.3.1" : "451 4.3.0", errstr);
	free(errstr);
	cmd_sendmail_bs_reset(bs);
}

/* Feed buffered input to the DATA parser until the end of data or of the buffer. */
static void
cmd_sendmail_bs_data(struct cmd_sendmail_bs *bs)
{
	size_t used;

	used = smtp_data_feed(&bs->data, bs->in + bs->start, bs->end - bs->start);
	bs->start += used;
	if (smtp_data_done(&bs->data))
		cmd_sendmail_bs_data_end(bs);
}

/* --- commands --- */

static void
cmd_sendmail_bs_helo(struct cmd_sendmail_bs *bs, const char *arg, bool esmtp)
{
	if (arg[0] == '\0') {
		cmd_sendmail_bs_error(bs, esmtp ? "501 5.5.4 Syntax: EHLO hostname" :
		    "501 5.5.4 Syntax: HELO hostname");
		return;
	}
	cmd_sendmail_bs_reset(bs);
	bs->helo = true;
	if (!esmtp) {
		cmd_sendmail_bs_reply(bs, "250 %s", host_fqdn());
		return;
	}
	cmd_sendmail_bs_reply(bs, "250-%s\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
	    "250-ENHANCEDSTATUSCODES\r\n250 HELP", host_fqdn());
}

static void
cmd_sendmail_bs_mail(struct cmd_sendmail_bs *bs, const char *arg)
{
	struct smtp_path_command cmd;
	char *errstr = NULL;

	if (!bs->helo) {
		cmd_sendmail_bs_error(bs, "503 5.5.1 Send HELO or EHLO first");
		return;
	}
	if (bs->sender != NULL) {
		cmd_sendmail_bs_error(bs, "503 5.5.1 Sender already specified");
		return;
	}
	if (smtp_path_command_parse(arg, true, &cmd, &errstr) == -1) {
		cmd_sendmail_bs_error(bs, errstr);
		free(errstr);
		return;
	}
	bs->sender = cmd.address;
	cmd.address = NULL;
	smtp_path_command_clear(&cmd);
	cmd_sendmail_bs_reply(bs, "250 2.1.0 Ok");
}

static void
cmd_sendmail_bs_rcpt(struct cmd_sendmail_bs *bs, const char *arg)
{
	struct smtp_path_command cmd;
	char *errstr = NULL;

	if (bs->sender == NULL) {
		cmd_sendmail_bs_error(bs, "503 5.5.1 Need MAIL before RCPT");
		return;
	}
	if (smtp_path_command_parse(arg, false, &cmd, &errstr) == -1) {
		cmd_sendmail_bs_error(bs, errstr);
		free(errstr);
		return;
	}
	if (bs->rcpts.count >= (size_t)bs->cli->config->smtpd.max_recipients) {
		/* RFC 5321 4.5.3.1.10: 452 lets the client send the rest later. */
		cmd_sendmail_bs_reply(bs, "452 4.5.3 Too many recipients");
	} else {
		header_addresses_add(&bs->rcpts, cmd.address);
		cmd_sendmail_bs_reply(bs, "250 2.1.5 Ok");
	}
	smtp_path_command_clear(&cmd);
}

static void
cmd_sendmail_bs_data_command(struct cmd_sendmail_bs *bs, const char *arg)
{
	char *errstr = NULL;

	if (bs->sender == NULL || bs->rcpts.count == 0) {
		cmd_sendmail_bs_error(bs, bs->sender == NULL ?
		    "503 5.5.1 Need MAIL before DATA" : "503 5.5.1 Need RCPT before DATA");
		return;
	}
	if (arg[0] != '\0') {
		cmd_sendmail_bs_error(bs, "501 5.5.4 DATA takes no arguments");
		return;
	}
	bs->submit = submit_new(bs->cli->store, bs->sender, bs->rcpts.items,
	    bs->rcpts.count, bs->source, &errstr);
	if (bs->submit == NULL) {
		cmd_sendmail_bs_reply(bs, "%s Cannot queue the message now: %s",
		    queue_store_error_is_space(bs->cli->store) ? "452 4.3.1" :
		    "451 4.3.0", errstr);
		free(errstr);
		return;
	}
	smtp_data_init(&bs->data, cmd_sendmail_bs_data_sink, bs);
	cmd_sendmail_bs_reply(bs, "354 End data with <CR><LF>.<CR><LF>");
}

static void
cmd_sendmail_bs_command(struct cmd_sendmail_bs *bs, const char *line)
{
	struct smtp_command cmd;

	smtp_command_parse(line, &cmd);
	switch (cmd.verb) {
	case SMTP_VERB_EHLO:
	case SMTP_VERB_HELO:
		cmd_sendmail_bs_helo(bs, cmd.arg, cmd.verb == SMTP_VERB_EHLO);
		break;
	case SMTP_VERB_MAIL:
		cmd_sendmail_bs_mail(bs, cmd.arg);
		break;
	case SMTP_VERB_RCPT:
		cmd_sendmail_bs_rcpt(bs, cmd.arg);
		break;
	case SMTP_VERB_DATA:
		cmd_sendmail_bs_data_command(bs, cmd.arg);
		break;
	case SMTP_VERB_RSET:
		cmd_sendmail_bs_reset(bs);
		cmd_sendmail_bs_reply(bs, "250 2.0.0 Ok");
		break;
	case SMTP_VERB_NOOP:
		cmd_sendmail_bs_reply(bs, "250 2.0.0 Ok");
		break;
	case SMTP_VERB_QUIT:
		cmd_sendmail_bs_reply(bs, "221 2.0.0 Bye");
		bs->done = true;
		break;
	case SMTP_VERB_HELP:
		cmd_sendmail_bs_reply(bs, "214 2.0.0 Commands: EHLO HELO MAIL RCPT "
		    "DATA RSET NOOP QUIT HELP VRFY");
		break;
	case SMTP_VERB_VRFY:
		cmd_sendmail_bs_reply(bs, "252 2.5.2 Cannot VRFY users, but will "
		    "accept the message for delivery");
		break;
	case SMTP_VERB_EXPN:
	case SMTP_VERB_STARTTLS:
	case SMTP_VERB_AUTH:
	case SMTP_VERB_BDAT:
		cmd_sendmail_bs_error(bs, "502 5.5.1 Command not implemented");
		break;
	case SMTP_VERB_UNKNOWN:
	default:
		cmd_sendmail_bs_error(bs, "500 5.5.2 Command not recognized");
		break;
	}
}

/*
 * Handle the next buffered command line. Returns 1 when one was handled
 * (or skipped), 0 when more input is needed.
 */
static int
cmd_sendmail_bs_line(struct cmd_sendmail_bs *bs)
{
	char *line = bs->in + bs->start, *nl;
	size_t avail = bs->end - bs->start, len;

	nl = memchr(line, '\n', avail);
	if (nl == NULL) {
		if (avail > SMTP_COMMAND_LINE_MAX) {
			/* Drop what is here and the rest of the line when it arrives. */
			bs->start = bs->end;
			if (!bs->discard_line)
				cmd_sendmail_bs_error(bs, "500 5.5.2 Line too long");
			bs->discard_line = true;
			return 1;
		}
		return 0;
	}

	len = (size_t)(nl - line);
	bs->start += len + 1;
	if (bs->discard_line) {
		bs->discard_line = false;
		return 1;
	}
	if (len > SMTP_COMMAND_LINE_MAX) {
		cmd_sendmail_bs_error(bs, "500 5.5.2 Line too long");
		return 1;
	}
	if (len > 0 && line[len - 1] == '\r')
		len--;
	line[len] = '\0';
	if (smtp_command_has_control(line, len))
		cmd_sendmail_bs_error(bs, "500 5.5.2 Invalid character in command");
	else
		cmd_sendmail_bs_command(bs, line);
	return 1;
}

/* Handle whatever the buffer holds. Returns 1 to go on, 0 when more input is needed. */
static int
cmd_sendmail_bs_step(struct cmd_sendmail_bs *bs)
{
	if (bs->submit != NULL) {
		cmd_sendmail_bs_data(bs);
		return bs->submit == NULL;
	}
	return cmd_sendmail_bs_line(bs);
}

int
cmd_sendmail_bs(struct cli *cli, const char *source)
{
	struct cmd_sendmail_bs *bs = xcalloc(1, sizeof(*bs));
	int rc = EX_OK, got;

	/* A client that goes away shows as a failed write, not as SIGPIPE. */
	compat_ignore_sigpipe();
	bs->cli = cli;
	bs->source = source;

	cmd_sendmail_bs_reply(bs, "220 %s ESMTP relayq sendmail -bs", host_fqdn());
	while (!bs->done) {
		if (bs->start < bs->end && cmd_sendmail_bs_step(bs) == 1)
			continue;
		got = cmd_sendmail_bs_fill(bs);
		if (got == 0)
			break;
		if (got == -1) {
			cli_warn(cli, "cannot read standard input: %s", strerror(errno));
			rc = EX_IOERR;
			break;
		}
	}

	/* A message whose data never ended is not queued. */
	cmd_sendmail_bs_reset(bs);
	free(bs);
	return rc;
}
