/*
 * relayq send: submit a message from a file or standard input straight
 * into the queue, so it works while relayqd is stopped. From:, To: and
 * Subject: are added where the input lacks them; input that does not
 * start with a header section becomes the body of a new message. The
 * queue id is printed, and the exit status is 0 only after the commit.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#ifndef _WIN32
#include <unistd.h>
#endif

#include "address.h"
#include "cli.h"
#include "exit_codes.h"
#include "header.h"
#include "submit.h"
#include "util.h"

#define CMD_SEND_READ_SIZE (64 * 1024)

/* Header lines are folded before this many characters (RFC 5322 2.1.1). */
#define CMD_SEND_LINE_WIDTH 78

/*
 * Bytes of Subject text per encoded word: 39 bytes give 52 base64
 * characters, so "Subject: =?UTF-8?B?...?=" stays within 78 characters.
 */
#define CMD_SEND_WORD_BYTES 39

struct cmd_send {
	bool help;		/* --help was given */
	char *from;		/* points into argv */
	char **rcpts;
	size_t rcpt_count;
	const char *subject;
	const char *path;	/* NULL or "-": standard input */
	FILE *in;

	char *head;		/* the first bytes of the input */
	size_t head_len;
	size_t header_len;	/* bytes of HEAD in the header section */
	bool eof;		/* HEAD holds the whole input */

	bool has_header;	/* the input starts with a header section */
	bool has_from;
	bool has_to;		/* To: or Cc: */
	bool has_bcc;		/* Bcc:, which is removed before queueing */
	bool has_subject;
};

static const struct option cmd_send_options[] = {
	{ "from", required_argument, NULL, 'f' },
	{ "to", required_argument, NULL, 't' },
	{ "subject", required_argument, NULL, 's' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/*
 * Field names that mark the start of a real header section. Text whose
 * first line merely looks like "Word: text" is a body.
 */
static const char *const cmd_send_known_fields[] = {
	"From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "Reply-To",
	"Sender", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"In-Reply-To", "References", "Received", "Return-Path", "X-Mailer",
};

static void
cmd_send_clear(struct cmd_send *send)
{
	free(send->rcpts);
	free(send->head);
	if (send->in != NULL && send->in != stdin)
		fclose(send->in);
}

/* --- arguments --- */

/* Strip one pair of angle brackets in place: "<a@b>" becomes "a@b". */
static char *
cmd_send_strip(char *address)
{
	size_t len = strlen(address);

	if (len >= 2 && address[0] == '<' && address[len - 1] == '>') {
		address[len - 1] = '\0';
		return address + 1;
	}
	return address;
}

static int
cmd_send_check_address(struct cli *cli, const char *option, const char *address)
{
	char *escaped;
	int rc;

	if (address_is_valid(address))
		return EX_OK;
	escaped = cli_escape(address, strlen(address), 64, NULL);
	rc = cli_usage_error(cli, "send", "invalid %s address '%s'; expected "
	    "local@domain", option, escaped);
	free(escaped);
	return rc;
}

static int
cmd_send_check_subject(struct cli *cli, const char *subject)
{
	struct json_utf8_check check;
	const unsigned char *p;

	for (p = (const unsigned char *)subject; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			return cli_usage_error(cli, "send", "invalid --subject: it "
			    "contains a control character such as a line break");
	json_utf8_check_init(&check);
	json_utf8_check_update(&check, subject, strlen(subject));
	if (!json_utf8_check_finish(&check))
		return cli_usage_error(cli, "send", "invalid --subject: it is not "
		    "valid UTF-8");
	return EX_OK;
}

/* Parse the options; addresses are kept in ARGV, so they need no copies. */
static int
cmd_send_parse(struct cli *cli, int argc, char **argv, struct cmd_send *send)
{
	int opt;

	while ((opt = getopt_long(argc, argv, ":h", cmd_send_options,
	    NULL)) != -1) {
		switch (opt) {
		case 'f':
			send->from = cmd_send_strip(optarg);
			break;
		case 't':
			send->rcpts = xrealloc(send->rcpts,
			    (send->rcpt_count + 1) * sizeof(*send->rcpts));
			send->rcpts[send->rcpt_count++] = cmd_send_strip(optarg);
			break;
		case 's':
			send->subject = optarg;
			break;
		case 'h':
			send->help = true;
			return cli_usage(cli, "send");
		default:
			return cli_option_error(cli, "send", opt, argv);
		}
	}

	if (optind < argc)
		send->path = argv[optind++];
	if (optind < argc)
		return cli_unexpected_argument(cli, "send", argv[optind]);
	if (send->from == NULL)
		return cli_usage_error(cli, "send", "missing --from ADDR, the sender");
	if (send->rcpt_count == 0)
		return cli_usage_error(cli, "send", "missing --to ADDR, a recipient");
	return EX_OK;
}

static int
cmd_send_check(struct cli *cli, const struct cmd_send *send)
{
	size_t i;
	int rc;

	rc = cmd_send_check_address(cli, "--from", send->from);
	for (i = 0; i < send->rcpt_count && rc == EX_OK; i++)
		rc = cmd_send_check_address(cli, "--to", send->rcpts[i]);
	if (rc == EX_OK && send->subject != NULL)
		rc = cmd_send_check_subject(cli, send->subject);
	return rc;
}

/* --- input --- */

static int
cmd_send_open(struct cli *cli, struct cmd_send *send)
{
	char *escaped;

	if (send->path == NULL || strcmp(send->path, "-") == 0) {
		send->in = stdin;
		return EX_OK;
	}
	send->in = fopen(send->path, "rb");
	if (send->in != NULL)
		return EX_OK;

	escaped = cli_escape(send->path, strlen(send->path), 0, NULL);
	cli_warn(cli, "cannot open %s: %s", escaped, strerror(errno));
	free(escaped);
	return EX_NOINPUT;
}

static int
cmd_send_read_error(struct cli *cli, const struct cmd_send *send)
{
	const char *name = send->in == stdin ? "standard input" : send->path;
	char *escaped = cli_escape(name, strlen(name), 0, NULL);

	cli_warn(cli, "cannot read %s: %s", escaped, strerror(errno));
	free(escaped);
	return EX_IOERR;
}

/* Read the start of the input until the end of its header section is known. */
static int
cmd_send_read_head(struct cli *cli, struct cmd_send *send)
{
	size_t n, want;

	send->head = xmalloc(HEADER_SECTION_MAX);
	for (;;) {
		if (header_section_end(send->head, send->head_len, send->eof,
		    &send->header_len) == 1)
			return EX_OK;
		if (send->eof)
			break;
		if (send->head_len == HEADER_SECTION_MAX) {
			cli_warn(cli, "the header section of the input is longer than "
			    "%d KiB; it was not queued", HEADER_SECTION_MAX / 1024);
			return EX_DATAERR;
		}

		want = HEADER_SECTION_MAX - send->head_len;
		if (want > 4096)
			want = 4096;
		n = fread(send->head + send->head_len, 1, want, send->in);
		send->head_len += n;
		if (n < want) {
			if (ferror(send->in))
				return cmd_send_read_error(cli, send);
			send->eof = true;
		}
	}
	send->header_len = send->head_len;
	return EX_OK;
}

/*
 * Decide whether the input starts with a header section: it must have a
 * standard field, so that text whose first line merely looks like
 * "Word: text" stays a body. Note which fields relayq may add.
 */
static void
cmd_send_scan_header(struct cmd_send *send)
{
	struct header_field field;
	bool known = false;
	size_t pos = 0, i;

	while (header_field_next(send->head, send->header_len, &pos, &field) == 1) {
		if (field.name == NULL)
			break;
		for (i = 0; i < sizeof(cmd_send_known_fields) /
		    sizeof(cmd_send_known_fields[0]); i++)
			if (header_field_is(&field, cmd_send_known_fields[i]))
				known = true;
		if (header_field_is(&field, "From"))
			send->has_from = true;
		if (header_field_is(&field, "To") || header_field_is(&field, "Cc"))
			send->has_to = true;
		if (header_field_is(&field, "Bcc"))
			send->has_bcc = true;
		if (header_field_is(&field, "Subject"))
			send->has_subject = true;
	}

	send->has_header = known;
	if (!known) {
		send->header_len = 0;
		send->has_from = send->has_to = send->has_bcc = false;
		send->has_subject = false;
	}
}

/* --- the added header fields --- */

static void
cmd_send_base64(const unsigned char *data, size_t len, char *out)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint32_t v;
	size_t i;

	for (i = 0; i + 2 < len; i += 3, out += 4) {
		v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
		out[0] = alphabet[v >> 18 & 63];
		out[1] = alphabet[v >> 12 & 63];
		out[2] = alphabet[v >> 6 & 63];
		out[3] = alphabet[v & 63];
	}
	if (i < len) {
		v = (uint32_t)data[i] << 16 | (i + 1 < len ? (uint32_t)data[i + 1] << 8 : 0);
		out[0] = alphabet[v >> 18 & 63];
		out[1] = alphabet[v >> 12 & 63];
		out[2] = i + 1 < len ? alphabet[v >> 6 & 63] : '=';
		out[3] = '=';
		out += 4;
	}
	*out = '\0';
}

/*
 * Format the field NAME (with its colon) with the ASCII VALUE, folded at
 * spaces before CMD_SEND_LINE_WIDTH characters where possible. Unfolding
 * gives VALUE back unchanged.
 */
static char *
cmd_send_fold_ascii(const char *name, const char *value)
{
	size_t width = strlen(name), len;
	const char *word = value, *space;
	char *out = xstrdup(name), *next;

	for (;;) {
		space = strchr(word, ' ');
		len = space != NULL ? (size_t)(space - word) : strlen(word);
		if (width > strlen(name) && width + 1 + len > CMD_SEND_LINE_WIDTH) {
			next = xasprintf("%s\r\n %.*s", out, (int)len, word);
			width = 1 + len;
		} else {
			next = xasprintf("%s %.*s", out, (int)len, word);
			width += 1 + len;
		}
		free(out);
		out = next;
		if (space == NULL)
			break;
		word = space + 1;
	}
	next = xasprintf("%s\r\n", out);
	free(out);
	return next;
}

/*
 * Format the Subject: field. ASCII text goes as it is; other text becomes
 * RFC 2047 encoded words of whole UTF-8 characters, one per folded line.
 */
static char *
cmd_send_subject_field(const char *subject)
{
	const unsigned char *p = (const unsigned char *)subject;
	size_t len = strlen(subject), pos = 0, take, seqlen;
	char encoded[4 * CMD_SEND_WORD_BYTES / 3 + 8], *out, *next;
	uint32_t cp;

	for (take = 0; take < len; take++)
		if (p[take] >= 0x80)
			break;
	if (take == len)
		return cmd_send_fold_ascii("Subject:", subject);

	out = xstrdup("Subject:");
	while (pos < len) {
		for (take = 0; pos + take < len; take += seqlen) {
			json_utf8_scan(p + pos + take, len - pos - take, &seqlen, &cp);
			if (take + seqlen > CMD_SEND_WORD_BYTES)
				break;
		}
		cmd_send_base64(p + pos, take, encoded);
		next = xasprintf("%s%s=?UTF-8?B?%s?=", out, pos == 0 ? " " : "\r\n ",
		    encoded);
		free(out);
		out = next;
		pos += take;
	}
	next = xasprintf("%s\r\n", out);
	free(out);
	return next;
}

/* Format "To: a, b" folded before CMD_SEND_LINE_WIDTH characters. */
static char *
cmd_send_to_field(const struct cmd_send *send)
{
	size_t i, len, width = strlen("To:");
	char *out = xstrdup("To:"), *next;
	const char *separator;

	for (i = 0; i < send->rcpt_count; i++) {
		len = strlen(send->rcpts[i]);
		if (i == 0) {
			separator = " ";
			width += 1 + len;
		} else if (width + 2 + len > CMD_SEND_LINE_WIDTH) {
			separator = ",\r\n ";
			width = 1 + len;
		} else {
			separator = ", ";
			width += 2 + len;
		}
		next = xasprintf("%s%s%s", out, separator, send->rcpts[i]);
		free(out);
		out = next;
	}
	next = xasprintf("%s\r\n", out);
	free(out);
	return next;
}

/*
 * The fields to write before the input's own: those it lacks. Input whose
 * recipients are all in Bcc: gets "To: undisclosed-recipients:;", as
 * Postfix does, so that the removed Bcc: is not replaced by a To: that
 * names them.
 */
static char *
cmd_send_added_fields(struct cli *cli, const struct cmd_send *send)
{
	char *from, *to, *subject, *out;

	from = send->has_from ? xstrdup("") : xasprintf("From: %s\r\n", send->from);
	if (send->has_to)
		to = xstrdup("");
	else if (send->has_bcc)
		to = xstrdup("To: undisclosed-recipients:;\r\n");
	else
		to = cmd_send_to_field(send);
	subject = send->has_subject || send->subject == NULL ? xstrdup("") :
	    cmd_send_subject_field(send->subject);
	if (send->has_subject && send->subject != NULL)
		cli_warn(cli, "the input has a Subject: field; --subject is ignored");

	/* Without a header section of its own the input is the body. */
	out = xasprintf("%s%s%s%s", from, to, subject,
	    send->has_header ? "" : "\r\n");
	free(from);
	free(to);
	free(subject);
	return out;
}

/* --- submission --- */

static int
cmd_send_write(struct cli *cli, struct submit *submit, const char *data,
    size_t len)
{
	uint64_t max = cli->config->smtpd.max_message_size;
	char *errstr = NULL;

	if (memchr(data, '\0', len) != NULL) {
		cli_warn(cli, "the input contains a NUL byte, which mail cannot "
		    "carry; it was not queued");
		return EX_DATAERR;
	}
	if (submit_write(submit, data, len, &errstr) == -1) {
		cli_warn(cli, "cannot queue the message: %s", errstr);
		free(errstr);
		return EX_TEMPFAIL;
	}
	if (max > 0 && submit_size(submit) > max) {
		cli_warn(cli, "the message is larger than smtpd.max_message_size "
		    "(%" PRIu64 " bytes); it was not queued", max);
		return EX_DATAERR;
	}
	return EX_OK;
}

/*
 * Write the added fields, the input's header section without Bcc: and
 * Resent-Bcc: (hidden recipients) and Return-Path:, the rest of the
 * examined head and the rest of the input.
 */
static int
cmd_send_copy(struct cli *cli, struct cmd_send *send, struct submit *submit)
{
	char *added = cmd_send_added_fields(cli, send), *buf, *section = NULL;
	size_t n, section_len = 0;
	int rc;

	rc = cmd_send_write(cli, submit, added, strlen(added));
	free(added);
	if (rc == EX_OK && send->has_header) {
		section = header_section_remove(send->head, send->header_len,
		    header_submission_drop, &section_len);
		rc = cmd_send_write(cli, submit, section, section_len);
		free(section);
	}
	if (rc == EX_OK)
		rc = cmd_send_write(cli, submit, send->head + send->header_len,
		    send->head_len - send->header_len);
	if (rc != EX_OK || send->eof)
		return rc;

	buf = xmalloc(CMD_SEND_READ_SIZE);
	while (rc == EX_OK &&
	    (n = fread(buf, 1, CMD_SEND_READ_SIZE, send->in)) > 0)
		rc = cmd_send_write(cli, submit, buf, n);
	if (rc == EX_OK && ferror(send->in))
		rc = cmd_send_read_error(cli, send);
	free(buf);
	return rc;
}

static char *
cmd_send_source(void)
{
#ifdef _WIN32
	return xstrdup("relayq send");
#else
	return xasprintf("relayq send uid=%ld", (long)getuid());
#endif
}

static int
cmd_send_submit(struct cli *cli, struct cmd_send *send)
{
	struct submit *submit;
	char *errstr = NULL, *source = cmd_send_source();
	int64_t id;
	bool space;
	int rc;

	submit = submit_new(cli->store, send->from, send->rcpts, send->rcpt_count,
	    source, &errstr);
	free(source);
	if (submit == NULL) {
		cli_warn(cli, "cannot queue the message: %s", errstr);
		free(errstr);
		return EX_TEMPFAIL;
	}

	rc = cmd_send_copy(cli, send, submit);
	if (rc == EX_OK && submit_commit(submit, &id, &space, &errstr) == -1) {
		cli_warn(cli, "cannot queue the message: %s", errstr);
		free(errstr);
		rc = EX_TEMPFAIL;
	}
	submit_free(submit);
	if (rc != EX_OK)
		return rc;

	printf("%" PRId64 "\n", id);
	cli_wake(cli);
	return EX_OK;
}

int
cmd_send(struct cli *cli, int argc, char **argv)
{
	struct cmd_send send;
	int rc;

	memset(&send, 0, sizeof(send));
	rc = cmd_send_parse(cli, argc, argv, &send);
	if (rc != EX_OK || send.help) {
		cmd_send_clear(&send);
		return rc;
	}
	rc = cmd_send_check(cli, &send);
	if (rc == EX_OK)
		rc = cmd_send_open(cli, &send);
	if (rc == EX_OK)
		rc = cmd_send_read_head(cli, &send);
	if (rc == EX_OK) {
		cmd_send_scan_header(&send);
		rc = cli_open_store(cli, 0);
	}
	if (rc == EX_OK)
		rc = cmd_send_submit(cli, &send);
	cmd_send_clear(&send);
	return rc;
}
