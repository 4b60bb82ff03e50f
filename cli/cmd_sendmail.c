/*
 * relayq sendmail: the sendmail-compatible submission interface, also
 * run when the binary is invoked as "sendmail" or "mailq". A message read
 * from standard input goes straight into the queue through submit.c, so
 * it is accepted while relayqd is down, and exit status 0 means it is
 * committed. docs/sendmail.md describes every flag and the permission
 * model; a setgid installation keeps its group only for submission with
 * the default config.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "address.h"
#include "cmd_sendmail.h"
#include "compat.h"
#include "control.h"
#include "exit_codes.h"
#include "header.h"
#include "submit.h"
#include "util.h"

/* Bytes read from standard input at a time. */
#define CMD_SENDMAIL_READ_SIZE (64 * 1024)

enum cmd_sendmail_mode {
	CMD_SENDMAIL_DELIVER,	/* -bm: one message from standard input */
	CMD_SENDMAIL_SMTP,	/* -bs: SMTP on standard input and output */
	CMD_SENDMAIL_LIST,	/* -bp, or invoked as mailq */
	CMD_SENDMAIL_FLUSH,	/* -q */
	CMD_SENDMAIL_NOOP,	/* -bi, -I: there is no alias database to rebuild */
};

struct cmd_sendmail_options {
	enum cmd_sendmail_mode mode;
	bool extract;		/* -t: recipients from To, Cc and Bcc too */
	bool ignore_dots;	/* -i, -oi, -O IgnoreDots: read to the end of input */
	const char *sender;	/* -f or -r; NULL for login@host */
	const char *full_name;	/* -F, for a From: that relayq adds */
	char **args;		/* recipients after the flags */
	int arg_count;
};

/*
 * Position in the current input line, for the end-of-message rule:
 * without -i a line that contains only "." (ended by LF or CRLF, or by
 * the end of input) ends the message, and the dot line itself is dropped.
 */
enum cmd_sendmail_line {
	CMD_SENDMAIL_LINE_START,
	CMD_SENDMAIL_LINE_MIDDLE,
	CMD_SENDMAIL_LINE_DOT,		/* "." at a line start, held back */
	CMD_SENDMAIL_LINE_DOT_CR,	/* ".\r" at a line start, held back */
};

struct cmd_sendmail_input {
	int fd;
	bool ignore_dots;
	bool done;			/* end of input, or the dot line */
	enum cmd_sendmail_line line;
	char raw[CMD_SENDMAIL_READ_SIZE];
};

/* The header section read ahead of the queue entry, and the body bytes read with it. */
struct cmd_sendmail_head {
	char *text;
	size_t len;
	size_t end;		/* where the body starts */
};

static const char cmd_sendmail_usage_text[] =
    "[-t] [-i] [-f ADDR] [-F NAME] [-bm | -bs | -bp | -bi | -q] [RECIPIENT...]";

static const char cmd_sendmail_help_text[] =
    "Reads a message from standard input and commits it to the queue.\n"
    "  -t            also send to the addresses in To:, Cc: and Bcc:\n"
    "  -i, -oi       read to the end of input; a line \".\" does not end it\n"
    "  -f ADDR       envelope sender (-r is the same); default: LOGIN@HOST\n"
    "  -F NAME       full name for the From: added to a message without one\n"
    "  -bm           submit a message (the default)\n"
    "  -bs           speak SMTP on standard input and output\n"
    "  -bp           list the queue, like mailq\n"
    "  -bi           do nothing (there is no alias database)\n"
    "  -q            make deferred messages due now and wake relayqd\n"
    "Other -o and -O options, -v, -B, -N, -R, -V, -L, -X and -d are\n"
    "accepted and ignored. Exit status: 0 when the message is queued, 64\n"
    "for invalid flags or addresses, 65 for invalid input, 75 when the\n"
    "queue cannot take the message now, 78 for an invalid config.\n";

/* --- messages --- */

static void
cmd_sendmail_print_usage(struct cli *cli, FILE *fp)
{
	if (strcmp(cli->progname, "relayq") == 0)
		fprintf(fp, "usage: relayq [-c FILE] sendmail %s\n",
		    cmd_sendmail_usage_text);
	else
		fprintf(fp, "usage: %s %s\n", cli->progname, cmd_sendmail_usage_text);
	if (fp == stdout)
		fputs(cmd_sendmail_help_text, fp);
}

static int
cmd_sendmail_usage_error(struct cli *cli, const char *fmt, ...)
    RELAYQ_PRINTF(2, 3);

static int
cmd_sendmail_usage_error(struct cli *cli, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "%s: ", cli->progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	cmd_sendmail_print_usage(cli, stderr);
	return EX_USAGE;
}

/* Report that the queue cannot take the message. Returns EX_TEMPFAIL: try again later. */
static int
cmd_sendmail_queue_error(struct cli *cli, const char *errstr)
{
	cli_warn(cli, "cannot queue the message: %s (nothing was queued)", errstr);
	return EX_TEMPFAIL;
}

void
cmd_sendmail_wake(struct cli *cli, int64_t id)
{
	char *errstr = NULL;

	if (control_wake(cli->config, &errstr) == 0)
		return;
	cli_warn(cli, "warning: message %lld is queued, but relayqd was not "
	    "told about it (%s); it is sent when relayqd next looks at the queue",
	    (long long)id, errstr);
	free(errstr);
}

/* --- privileges --- */

static bool
cmd_sendmail_elevated(void)
{
	return getegid() != getgid() || geteuid() != getuid();
}

int
cmd_sendmail_drop_privileges(void)
{
	gid_t gid = getgid();
	uid_t uid = getuid();

	if (!cmd_sendmail_elevated())
		return 0;
	/* setres*id() also replaces the saved IDs, so the group cannot come back. */
	if (setresgid(gid, gid, gid) == -1 || setresuid(uid, uid, uid) == -1)
		return -1;
	return 0;
}

/*
 * Keep a setgid group only to submit mail with the default config. A
 * config the caller chose could point queue.path at any file the group
 * may write, so it runs with the caller's own rights.
 */
static int
cmd_sendmail_check_privileges(struct cli *cli,
    const struct cmd_sendmail_options *opt)
{
	bool keep = opt->mode == CMD_SENDMAIL_DELIVER || opt->mode == CMD_SENDMAIL_SMTP;

	if (getenv("RELAYQ_CONFIG") != NULL ||
	    strcmp(cli->config_path, config_default_path()) != 0)
		keep = false;
	if (keep || cmd_sendmail_drop_privileges() == 0)
		return EX_OK;
	cli_warn(cli, "cannot give up the setgid group: %s", strerror(errno));
	return EX_OSERR;
}

/* --- flags --- */

static int
cmd_sendmail_set_mode(struct cli *cli, const char *arg,
    struct cmd_sendmail_options *opt)
{
	if (strcmp(arg, "m") == 0)
		opt->mode = CMD_SENDMAIL_DELIVER;
	else if (strcmp(arg, "s") == 0)
		opt->mode = CMD_SENDMAIL_SMTP;
	else if (strcmp(arg, "p") == 0)
		opt->mode = CMD_SENDMAIL_LIST;
	else if (strcmp(arg, "i") == 0)
		opt->mode = CMD_SENDMAIL_NOOP;
	else if (strcmp(arg, "d") == 0 || strcmp(arg, "D") == 0)
		return cmd_sendmail_usage_error(cli, "-b%s (daemon mode) is not "
		    "supported: relayqd receives SMTP mail", arg);
	else
		return cmd_sendmail_usage_error(cli, "-b%.16s is not supported; "
		    "use -bm, -bs, -bp or -bi", arg);
	return EX_OK;
}

/* sendmail's booleans: a value starting with t or y is true, f or n false. */
static int
cmd_sendmail_boolean(const char *value, bool *result)
{
	if (value == NULL || strchr("tTyY", value[0]) != NULL)
		*result = true;
	else if (value[0] != '\0' && strchr("fFnN", value[0]) != NULL)
		*result = false;
	else
		return -1;
	return 0;
}

/* -O NAME[=VALUE]: only IgnoreDots means anything here; other options are ignored. */
static int
cmd_sendmail_long_option(struct cli *cli, const char *arg,
    struct cmd_sendmail_options *opt)
{
	const char *equals = strchr(arg, '=');
	size_t name_len = equals != NULL ? (size_t)(equals - arg) : strlen(arg);

	if (name_len != strlen("IgnoreDots") ||
	    strncasecmp(arg, "IgnoreDots", name_len) != 0)
		return EX_OK;
	if (cmd_sendmail_boolean(equals != NULL ? equals + 1 : NULL,
	    &opt->ignore_dots) == -1)
		return cmd_sendmail_usage_error(cli, "-O IgnoreDots takes true or "
		    "false, not \"%.32s\"", equals + 1);
	return EX_OK;
}

static int
cmd_sendmail_option(struct cli *cli, int ch, struct cmd_sendmail_options *opt)
{
	switch (ch) {
	case 'b':
		return cmd_sendmail_set_mode(cli, optarg, opt);
	case 'C':
		return cmd_sendmail_usage_error(cli, "-C (a sendmail.cf file) is not "
		    "supported; give relayq's config as \"relayq -c FILE sendmail\" "
		    "or in $RELAYQ_CONFIG");
	case 'F':
		opt->full_name = optarg;
		break;
	case 'f':
	case 'r':
		opt->sender = optarg;
		break;
	case 'I':
		opt->mode = CMD_SENDMAIL_NOOP;
		break;
	case 'i':
		opt->ignore_dots = true;
		break;
	case 'O':
		return cmd_sendmail_long_option(cli, optarg, opt);
	case 'o':
		/* -oi is -i; sendmail clones ignore the other -o options (-oem, -odb, ...). */
		if (strcmp(optarg, "i") == 0)
			opt->ignore_dots = true;
		break;
	case 'q':
		opt->mode = CMD_SENDMAIL_FLUSH;
		break;
	case 't':
		opt->extract = true;
		break;
	case ':':
		return cmd_sendmail_usage_error(cli, "option -%c requires an argument",
		    optopt);
	case '?':
		return cmd_sendmail_usage_error(cli, "invalid option -%c", optopt);
	default:
		/* -A, -B, -D, -d, -G, -h, -L, -M, -m, -N, -n, -p, -R, -U, -V, -v, -X. */
		break;
	}
	return EX_OK;
}

static int
cmd_sendmail_parse(struct cli *cli, int argc, char **argv,
    struct cmd_sendmail_options *opt)
{
	int ch, rc;

	/* "+" stops at the first recipient, as sendmail's own parser does. */
	opterr = 0;
	optind = 0;
	while ((ch = getopt(argc, argv,
	    "+:A:B:b:C:D:d:F:f:GIh:iL:M:mN:nO:o:p:q::R:r:tUV:vX:")) != -1) {
		rc = cmd_sendmail_option(cli, ch, opt);
		if (rc != EX_OK)
			return rc;
	}
	opt->args = argv + optind;
	opt->arg_count = argc - optind;
	return EX_OK;
}

/* --- envelope --- */

/* The envelope sender from -f, or LOGIN@HOST for the real user. */
static int
cmd_sendmail_sender(struct cli *cli, const char *arg, char **sender)
{
	struct header_addresses list = { NULL, 0 };
	struct passwd *pw;
	char *errstr = NULL;

	if (arg == NULL) {
		pw = getpwuid(getuid());
		if (pw == NULL)
			return cmd_sendmail_usage_error(cli, "uid %u has no login name "
			    "to build a sender address from; give one with -f",
			    (unsigned)getuid());
		*sender = xasprintf("%s@%s", pw->pw_name, host_fqdn());
		if (address_is_valid(*sender))
			return EX_OK;
		free(*sender);
		*sender = NULL;
		return cmd_sendmail_usage_error(cli, "the login name \"%.64s\" is not "
		    "valid in an address; give a sender with -f", pw->pw_name);
	}

	if (strspn(arg, " ") == strlen(arg) || strcmp(arg, "<>") == 0) {
		*sender = xstrdup("");
		return EX_OK;
	}
	if (header_address_list_parse(arg, strlen(arg), host_fqdn(), &list,
	    &errstr) == -1 || list.count != 1) {
		cmd_sendmail_usage_error(cli, "invalid sender address \"%.256s\": %s",
		    arg, errstr != NULL ? errstr : "give exactly one address");
		free(errstr);
		header_addresses_clear(&list);
		return EX_USAGE;
	}
	*sender = xstrdup(list.items[0]);
	header_addresses_clear(&list);
	return EX_OK;
}

/* Recipients given as arguments; each may be an address list ("a@b, C <c@d>"). */
static int
cmd_sendmail_arguments(struct cli *cli, const struct cmd_sendmail_options *opt,
    struct header_addresses *rcpts)
{
	char *errstr = NULL;
	int i;

	for (i = 0; i < opt->arg_count; i++) {
		const char *arg = opt->args[i];

		if (header_address_list_parse(arg, strlen(arg), host_fqdn(), rcpts,
		    &errstr) == -1) {
			cmd_sendmail_usage_error(cli, "invalid recipient address "
			    "\"%.256s\": %s", arg, errstr);
			free(errstr);
			return EX_USAGE;
		}
	}
	return EX_OK;
}

/*
 * A From: field for a message without one: the full name from -F, when
 * given, as a quoted string with control characters removed, so that it
 * cannot start a field of its own.
 */
static char *
cmd_sendmail_from_line(const char *sender, const char *full_name)
{
	char *address, *name, *line;
	size_t i, n = 0;

	if (sender[0] != '\0')
		address = xstrdup(sender);
	else
		address = xasprintf("MAILER-DAEMON@%s", host_fqdn());
	if (full_name == NULL || full_name[0] == '\0') {
		line = xasprintf("From: %s\r\n", address);
		free(address);
		return line;
	}

	name = xmalloc(strlen(full_name) * 2 + 1);
	for (i = 0; full_name[i] != '\0'; i++) {
		unsigned char c = (unsigned char)full_name[i];

		if (c < 0x20 || c == 0x7f)
			continue;
		if (c == '"' || c == '\\')
			name[n++] = '\\';
		name[n++] = (char)c;
	}
	name[n] = '\0';
	line = xasprintf("From: \"%s\" <%s>\r\n", name, address);
	free(name);
	free(address);
	return line;
}

/* --- standard input --- */

static void
cmd_sendmail_input_init(struct cmd_sendmail_input *in, bool ignore_dots)
{
	memset(in, 0, sizeof(*in));
	in->fd = STDIN_FILENO;
	in->ignore_dots = ignore_dots;
	in->line = CMD_SENDMAIL_LINE_START;
}

/*
 * Copy LEN input bytes to OUT up to a dot line, which sets in->done.
 * OUT needs LEN + 2 bytes: a "." or ".\r" held back from the previous
 * piece may be written out ahead of this one.
 */
static size_t
cmd_sendmail_dot_filter(struct cmd_sendmail_input *in, const char *data,
    size_t len, char *out)
{
	size_t n = 0, i;

	for (i = 0; i < len; i++) {
		char c = data[i];

		switch (in->line) {
		case CMD_SENDMAIL_LINE_START:
			if (c == '.') {
				in->line = CMD_SENDMAIL_LINE_DOT;
				continue;
			}
			break;
		case CMD_SENDMAIL_LINE_MIDDLE:
			break;
		case CMD_SENDMAIL_LINE_DOT:
			if (c == '\n') {
				in->done = true;
				return n;
			}
			if (c == '\r') {
				in->line = CMD_SENDMAIL_LINE_DOT_CR;
				continue;
			}
			out[n++] = '.';
			break;
		case CMD_SENDMAIL_LINE_DOT_CR:
			if (c == '\n') {
				in->done = true;
				return n;
			}
			out[n++] = '.';
			out[n++] = '\r';
			break;
		}
		out[n++] = c;
		in->line = c == '\n' ? CMD_SENDMAIL_LINE_START : CMD_SENDMAIL_LINE_MIDDLE;
	}
	return n;
}

/*
 * Read message text into BUF (SIZE > 2 bytes). Returns the byte count, 0
 * at the end of the message, or -1 with errno on a read error. A "." held
 * back at the end of input is dropped: a last line "." ends the message.
 */
static ssize_t
cmd_sendmail_input_read(struct cmd_sendmail_input *in, char *buf, size_t size)
{
	size_t want = size - 2, n = 0;
	ssize_t got;

	if (want > sizeof(in->raw))
		want = sizeof(in->raw);
	while (n == 0 && !in->done) {
		got = read(in->fd, in->ignore_dots ? buf : in->raw, want);
		if (got == -1 && errno == EINTR)
			continue;
		if (got == -1)
			return -1;
		if (got == 0) {
			in->done = true;
			break;
		}
		if (in->ignore_dots)
			return got;
		n = cmd_sendmail_dot_filter(in, in->raw, (size_t)got, buf);
	}
	return (ssize_t)n;
}

/* Read the header section, with the first body bytes read alongside it. */
static int
cmd_sendmail_read_head(struct cli *cli, struct cmd_sendmail_input *in,
    struct cmd_sendmail_head *head)
{
	size_t cap = CMD_SENDMAIL_READ_SIZE;
	ssize_t got;

	head->text = xmalloc(cap);
	for (;;) {
		if (cap - head->len < CMD_SENDMAIL_READ_SIZE) {
			cap *= 2;
			head->text = xrealloc(head->text, cap);
		}
		got = cmd_sendmail_input_read(in, head->text + head->len,
		    CMD_SENDMAIL_READ_SIZE);
		if (got == -1) {
			cli_warn(cli, "cannot read the message from standard input: %s",
			    strerror(errno));
			return EX_IOERR;
		}
		head->len += (size_t)got;
		if (header_section_end(head->text, head->len, got == 0,
		    &head->end) == 1)
			break;
		if (head->len > HEADER_SECTION_MAX)
			break;
	}

	if (head->len > HEADER_SECTION_MAX && (head->end == 0 ||
	    head->end > HEADER_SECTION_MAX)) {
		cli_warn(cli, "header section too large: more than %d bytes before "
		    "the empty line that ends it", HEADER_SECTION_MAX);
		return EX_DATAERR;
	}
	return EX_OK;
}

/* --- submission --- */

static int
cmd_sendmail_write(struct cli *cli, struct submit *s, const char *data,
    size_t len)
{
	char *errstr = NULL;
	int rc;

	if (submit_write(s, data, len, &errstr) == 0)
		return EX_OK;
	rc = cmd_sendmail_queue_error(cli, errstr);
	free(errstr);
	return rc;
}

/* Write the header section as it is queued: From: added when missing, Bcc removed. */
static int
cmd_sendmail_write_head(struct cli *cli, struct submit *s, const char *sender,
    const char *full_name, const struct cmd_sendmail_head *head)
{
	char *text;
	size_t len;
	int rc = EX_OK;

	if (!header_section_has(head->text, head->end, "From")) {
		text = cmd_sendmail_from_line(sender, full_name);
		rc = cmd_sendmail_write(cli, s, text, strlen(text));
		free(text);
	}
	if (rc != EX_OK)
		return rc;

	text = header_section_remove(head->text, head->end, header_submission_drop,
	    &len);
	rc = cmd_sendmail_write(cli, s, text, len);
	free(text);
	if (rc != EX_OK)
		return rc;
	return cmd_sendmail_write(cli, s, head->text + head->end,
	    head->len - head->end);
}

static int
cmd_sendmail_write_body(struct cli *cli, struct submit *s,
    struct cmd_sendmail_input *in)
{
	char *buf = xmalloc(CMD_SENDMAIL_READ_SIZE);
	ssize_t got;
	int rc = EX_OK;

	while (rc == EX_OK) {
		got = cmd_sendmail_input_read(in, buf, CMD_SENDMAIL_READ_SIZE);
		if (got == -1) {
			cli_warn(cli, "cannot read the message from standard input: %s",
			    strerror(errno));
			rc = EX_IOERR;
		} else if (got == 0) {
			break;
		} else {
			rc = cmd_sendmail_write(cli, s, buf, (size_t)got);
		}
	}
	free(buf);
	return rc;
}

static int
cmd_sendmail_submit(struct cli *cli, const struct cmd_sendmail_options *opt,
    const char *sender, const struct header_addresses *rcpts,
    struct cmd_sendmail_input *in, const struct cmd_sendmail_head *head,
    const char *source)
{
	struct submit *s;
	char *errstr = NULL;
	int64_t id = 0;
	int rc;

	s = submit_new(cli->store, sender, rcpts->items, rcpts->count, source,
	    &errstr);
	if (s == NULL) {
		rc = cmd_sendmail_queue_error(cli, errstr);
		free(errstr);
		return rc;
	}

	rc = cmd_sendmail_write_head(cli, s, sender, opt->full_name, head);
	if (rc == EX_OK)
		rc = cmd_sendmail_write_body(cli, s, in);
	if (rc == EX_OK && submit_commit(s, &id, NULL, &errstr) == -1) {
		rc = cmd_sendmail_queue_error(cli, errstr);
		free(errstr);
	}
	submit_free(s);

	if (rc == EX_OK)
		cmd_sendmail_wake(cli, id);
	return rc;
}

/* Open the queue: a queue that cannot be opened now is a temporary failure. */
static int
cmd_sendmail_open(struct cli *cli)
{
	int rc = cli_open_store(cli, 0);

	return rc == EX_UNAVAILABLE ? EX_TEMPFAIL : rc;
}

/* -bm: read one message from standard input and queue it. */
static int
cmd_sendmail_deliver(struct cli *cli, const struct cmd_sendmail_options *opt,
    const char *source)
{
	struct header_addresses rcpts = { NULL, 0 };
	struct cmd_sendmail_head head = { NULL, 0, 0 };
	struct cmd_sendmail_input *in = xmalloc(sizeof(*in));
	char *sender = NULL, *errstr = NULL;
	int rc;

	cmd_sendmail_input_init(in, opt->ignore_dots);
	rc = cmd_sendmail_sender(cli, opt->sender, &sender);
	if (rc == EX_OK)
		rc = cmd_sendmail_arguments(cli, opt, &rcpts);
	if (rc == EX_OK && !opt->extract && rcpts.count == 0)
		rc = cmd_sendmail_usage_error(cli, "no recipients: name them after "
		    "the flags, or use -t to take them from To:, Cc: and Bcc:");
	if (rc == EX_OK)
		rc = cmd_sendmail_open(cli);
	if (rc == EX_OK)
		rc = cmd_sendmail_read_head(cli, in, &head);

	/* With -t the arguments are added to the header's recipients, as Postfix does. */
	if (rc == EX_OK && opt->extract && header_recipients(head.text, head.end,
	    host_fqdn(), &rcpts, &errstr) == -1) {
		cli_warn(cli, "invalid recipient in the message header: %s", errstr);
		rc = EX_DATAERR;
	}
	if (rc == EX_OK && rcpts.count == 0) {
		cli_warn(cli, "No recipient addresses found in header");
		rc = EX_DATAERR;
	}

	if (rc == EX_OK)
		rc = cmd_sendmail_submit(cli, opt, sender, &rcpts, in, &head, source);
	free(errstr);
	free(head.text);
	free(sender);
	free(in);
	header_addresses_clear(&rcpts);
	return rc;
}

/* -bp and mailq: the queue as `relayq list` shows it. */
static int
cmd_sendmail_list(struct cli *cli)
{
	char name[] = "list";
	char *argv[] = { name, NULL };

	optind = 0;
	return cmd_list(cli, 1, argv);
}

/* -q: what `relayq flush` does. */
static int
cmd_sendmail_flush(struct cli *cli)
{
	char name[] = "flush";
	char *argv[] = { name, NULL };

	optind = 0;
	return cmd_flush(cli, 1, argv);
}

static bool
cmd_sendmail_wants_help(int argc, char **argv)
{
	return argc > 1 && strcmp(argv[1], "--help") == 0;
}

int
cmd_sendmail(struct cli *cli, int argc, char **argv)
{
	struct cmd_sendmail_options opt;
	char *source;
	int rc;

	memset(&opt, 0, sizeof(opt));
	if (strcmp(cli->progname, "mailq") == 0) {
		/* mailq's own flags (-v, -Ac) change nothing here. */
		opt.mode = CMD_SENDMAIL_LIST;
	} else if (cmd_sendmail_wants_help(argc, argv)) {
		cmd_sendmail_print_usage(cli, stdout);
		return EX_OK;
	} else {
		rc = cmd_sendmail_parse(cli, argc, argv, &opt);
		if (rc != EX_OK)
			return rc;
	}

	rc = cmd_sendmail_check_privileges(cli, &opt);
	if (rc != EX_OK)
		return rc;

	switch (opt.mode) {
	case CMD_SENDMAIL_NOOP:
		return EX_OK;
	case CMD_SENDMAIL_LIST:
		return cmd_sendmail_list(cli);
	case CMD_SENDMAIL_FLUSH:
		return cmd_sendmail_flush(cli);
	case CMD_SENDMAIL_SMTP:
		rc = cmd_sendmail_open(cli);
		if (rc != EX_OK)
			return rc;
		source = xasprintf("sendmail -bs uid=%u", (unsigned)getuid());
		rc = cmd_sendmail_bs(cli, source);
		break;
	case CMD_SENDMAIL_DELIVER:
	default:
		source = xasprintf("sendmail uid=%u", (unsigned)getuid());
		rc = cmd_sendmail_deliver(cli, &opt, source);
		break;
	}
	free(source);
	return rc;
}
