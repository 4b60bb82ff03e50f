/*
 * relayq: the admin tool. Global options, the command table and the
 * helpers the command files share: usage messages, opening the queue
 * store, SQLite error reporting and terminal-safe text output.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "cli.h"
#include "duration.h"
#include "log.h"
#include "util.h"

#ifndef RELAYQ_VERSION
#define RELAYQ_VERSION "unknown"
#endif

/* Time the CLI waits for a writer before it gives up with EX_TEMPFAIL. */
#define CLI_BUSY_TIMEOUT_MS 10000

static const struct cli_command cli_commands[] = {
	{ "list", cmd_list, "[--state STATE] [--json]",
	    "list messages in the queue, oldest first" },
	{ "show", cmd_show, "ID [--json] [--body]",
	    "show one message with its recipients and attempts" },
};

#define CLI_COMMAND_COUNT (sizeof(cli_commands) / sizeof(cli_commands[0]))

/* Longer help printed by `relayq help COMMAND` and `relayq COMMAND --help`. */
static const struct {
	const char *command;
	const char *text;
} cli_details[] = {
	{ "list",
	    "Without --state every message except sent ones is listed.\n"
	    "  --state STATE  list only messages in STATE: queued, deferred, sending,\n"
	    "                 held, sent, uncertain, failed, or all\n"
	    "  --json         print {\"messages\": [...]} instead of a table\n" },
	{ "show",
	    "  --json         print one JSON object instead of text\n"
	    "  --body         include the whole message instead of only its header;\n"
	    "                 with --json as \"body\" (a string) when the message is\n"
	    "                 valid UTF-8, else as \"body_base64\"\n"
	    "Text output escapes control characters and invalid UTF-8 as \\xHH.\n" },
};

static const struct option cli_global_options[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static const struct cli_command *
cli_command_find(const char *name)
{
	size_t i;

	for (i = 0; i < CLI_COMMAND_COUNT; i++)
		if (strcmp(cli_commands[i].name, name) == 0)
			return &cli_commands[i];
	return NULL;
}

void
cli_warn(struct cli *cli, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "%s: ", cli->progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* --- usage --- */

static void
cli_print_command_usage(struct cli *cli, FILE *fp, const struct cli_command *cmd)
{
	size_t i;

	fprintf(fp, "usage: %s %s %s\n", cli->progname, cmd->name, cmd->usage);
	if (fp != stdout)
		return;

	fprintf(fp, "%c%s.\n", toupper((unsigned char)cmd->summary[0]),
	    cmd->summary + 1);
	for (i = 0; i < sizeof(cli_details) / sizeof(cli_details[0]); i++)
		if (strcmp(cli_details[i].command, cmd->name) == 0)
			fputs(cli_details[i].text, fp);
}

static void
cli_print_usage(struct cli *cli, FILE *fp)
{
	char line[128];
	size_t i;

	fprintf(fp, "usage: %s [-c FILE] COMMAND [ARGUMENTS]\n"
	    "       %s --version | --help | help [COMMAND]\n\n"
	    "Commands:\n", cli->progname, cli->progname);
	for (i = 0; i < CLI_COMMAND_COUNT; i++) {
		snprintf(line, sizeof(line), "%s %s", cli_commands[i].name,
		    cli_commands[i].usage);
		fprintf(fp, "  %-32s %s\n", line, cli_commands[i].summary);
	}
	fprintf(fp, "\nOptions:\n"
	    "  -c, --config FILE   config file (default: %s,\n"
	    "                      or $RELAYQ_CONFIG when set)\n"
	    "  -h, --help          print this help\n"
	    "  -V, --version       print the version\n",
	    config_default_path());
}

int
cli_usage(struct cli *cli, const char *command)
{
	cli_print_command_usage(cli, stdout, cli_command_find(command));
	return EX_OK;
}

int
cli_usage_error(struct cli *cli, const char *command, const char *fmt, ...)
{
	const struct cli_command *cmd = command ? cli_command_find(command) : NULL;
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "%s: ", cli->progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);

	if (cmd != NULL)
		cli_print_command_usage(cli, stderr, cmd);
	else
		cli_print_usage(cli, stderr);
	return EX_USAGE;
}

int
cli_option_error(struct cli *cli, const char *command, int opt, char **argv)
{
	const char *arg = argv[optind - 1];
	char *name;
	int rc;

	/*
	 * A long option is the word before optind, with any "=VALUE" cut off.
	 * A short option may sit inside a group such as "-xj", so optopt names it.
	 */
	if (strncmp(arg, "--", 2) == 0)
		name = cli_escape(arg, strcspn(arg, "="), 64, NULL);
	else
		name = xasprintf("-%c", optopt);

	if (opt == ':')
		rc = cli_usage_error(cli, command, "option %s requires an argument",
		    name);
	else if (optopt != 0 && strchr(arg, '=') != NULL &&
	    strncmp(arg, "--", 2) == 0)
		rc = cli_usage_error(cli, command, "option %s takes no argument",
		    name);
	else
		rc = cli_usage_error(cli, command, "invalid option %s", name);
	free(name);
	return rc;
}

/* --- store --- */

int
cli_open_store(struct cli *cli, int flags)
{
	char *errstr = NULL;

	if (cli->config == NULL &&
	    config_load(cli->config_path, &cli->config, &errstr) == -1) {
		cli_warn(cli, "%s", errstr);
		free(errstr);
		return EX_CONFIG;
	}

	if (queue_store_open(cli->config->queue_path, flags, &cli->store,
	    &errstr) == -1) {
		cli_warn(cli, "%s", errstr);
		free(errstr);
		return EX_UNAVAILABLE;
	}
	sqlite3_busy_timeout(queue_store_db(cli->store), CLI_BUSY_TIMEOUT_MS);
	return EX_OK;
}

int
cli_store_error(struct cli *cli, const char *what)
{
	sqlite3 *db = queue_store_db(cli->store);
	int code = sqlite3_errcode(db) & 0xff;

	if (code == SQLITE_BUSY || code == SQLITE_LOCKED) {
		cli_warn(cli, "%s: the queue %s is busy (%s); try again", what,
		    cli->config->queue_path, sqlite3_errmsg(db));
		return EX_TEMPFAIL;
	}
	cli_warn(cli, "%s: queue %s: %s", what, cli->config->queue_path,
	    sqlite3_errmsg(db));
	return EX_UNAVAILABLE;
}

int
cli_read_begin(struct cli *cli)
{
	if (sqlite3_exec(queue_store_db(cli->store), "BEGIN", NULL, NULL,
	    NULL) != SQLITE_OK)
		return cli_store_error(cli, "cannot read the queue");
	return EX_OK;
}

void
cli_read_end(struct cli *cli)
{
	/* A read transaction has nothing to commit, so a failure changes nothing. */
	sqlite3_exec(queue_store_db(cli->store), "COMMIT", NULL, NULL, NULL);
}

const char *
cli_column_text(sqlite3_stmt *stmt, int col)
{
	if (sqlite3_column_type(stmt, col) == SQLITE_NULL)
		return NULL;
	return (const char *)sqlite3_column_text(stmt, col);
}

bool
cli_next_attempt(const char *state, int64_t next_attempt, int64_t created,
    int64_t *when)
{
	if (strcmp(state, "queued") != 0 && strcmp(state, "deferred") != 0 &&
	    strcmp(state, "uncertain") != 0)
		return false;
	*when = next_attempt > 0 ? next_attempt : created;
	return true;
}

void
cli_format_relative(int64_t when, int64_t now, char *buf, size_t size)
{
	char span[CLI_TIME_SIZE];

	if (when <= now) {
		snprintf(buf, size, "now");
		return;
	}
	duration_format(when - now, span, sizeof(span));
	snprintf(buf, size, "in %s", span);
}

void
cli_format_age(int64_t created, int64_t now, char *buf, size_t size)
{
	duration_format(now > created ? now - created : 0, buf, size);
}

/* --- terminal-safe text --- */

/*
 * Write the escaped form of the character at S into OUT (16 bytes) and
 * return the bytes of S it spans. Returns 0 when S ends inside a UTF-8
 * sequence and more input may follow (FINAL is false).
 */
static size_t
cli_escape_char(const unsigned char *s, size_t len, bool final, char *out,
    size_t *out_len, size_t *width)
{
	enum json_utf8_result result;
	size_t seqlen, i, n = 0;
	uint32_t cp = 0;

	if (s[0] >= 0x20 && s[0] < 0x7f) {
		if (s[0] == '\\')
			out[n++] = '\\';
		out[n++] = (char)s[0];
		*out_len = *width = n;
		return 1;
	}

	result = json_utf8_scan(s, len, &seqlen, &cp);
	if (result == JSON_UTF8_TRUNCATED && !final)
		return 0;

	/* C1 controls (U+0080 to U+009F) act on terminals like C0 controls. */
	if (result == JSON_UTF8_VALID && cp >= 0xa0) {
		memcpy(out, s, seqlen);
		*out_len = seqlen;
		*width = 1;
		return seqlen;
	}

	if (seqlen == 1 && s[0] == '\n')
		n = (size_t)snprintf(out, 16, "\\n");
	else if (seqlen == 1 && s[0] == '\r')
		n = (size_t)snprintf(out, 16, "\\r");
	else if (seqlen == 1 && s[0] == '\t')
		n = (size_t)snprintf(out, 16, "\\t");
	else
		for (i = 0; i < seqlen; i++)
			n += (size_t)snprintf(out + n, 16 - n, "\\x%02x", s[i]);
	*out_len = *width = n;
	return seqlen;
}

char *
cli_escape(const char *s, size_t len, size_t max_width, size_t *width)
{
	const unsigned char *p = (const unsigned char *)s;
	char *out = xmalloc(len * 4 + 8), unit[16];
	size_t i = 0, n = 0, total = 0, cut_len = 0, cut_width = 0;
	size_t used, unit_len, unit_width;

	while (i < len) {
		used = cli_escape_char(p + i, len - i, true, unit, &unit_len,
		    &unit_width);
		/* Remember where to cut so that the text plus "..." fits MAX_WIDTH. */
		if (max_width > 3 && total + unit_width <= max_width - 3) {
			cut_len = n + unit_len;
			cut_width = total + unit_width;
		}
		memcpy(out + n, unit, unit_len);
		n += unit_len;
		total += unit_width;
		i += used;
		if (max_width > 0 && total > max_width)
			break;
	}

	if (max_width > 0 && total > max_width) {
		n = cut_len;
		memcpy(out + n, "...", 3);
		n += 3;
		total = cut_width + 3;
	}
	out[n] = '\0';
	if (width != NULL)
		*width = total;
	return out;
}

void
cli_text_begin(struct cli_text_output *out, FILE *fp)
{
	memset(out, 0, sizeof(*out));
	out->fp = fp;
}

/*
 * Write the characters of S. Returns the number of bytes at the end left
 * unwritten because the next piece may continue them (only when !FINAL).
 */
static size_t
cli_text_write_some(struct cli_text_output *out, const unsigned char *s,
    size_t len, bool final)
{
	size_t i = 0, run, used, unit_len, unit_width;
	char unit[16];

	while (i < len) {
		/* Printable ASCII, tab and LF go out unchanged, in runs. */
		for (run = i; i < len; i++)
			if ((s[i] < 0x20 || s[i] >= 0x7f) && s[i] != '\t' &&
			    s[i] != '\n')
				break;
		fwrite(s + run, 1, i - run, out->fp);
		if (i == len)
			break;

		if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n') {
			putc('\n', out->fp);
			i += 2;
			continue;
		}
		if (s[i] == '\r' && i + 1 == len && !final)
			return 1;

		used = cli_escape_char(s + i, len - i, final, unit, &unit_len,
		    &unit_width);
		if (used == 0)
			return len - i;
		fwrite(unit, 1, unit_len, out->fp);
		i += used;
	}
	return 0;
}

void
cli_text_write(struct cli_text_output *out, const void *data, size_t len)
{
	const unsigned char *s = data;
	unsigned char buf[8];
	size_t have = out->pending_len, take, left;

	if (len == 0)
		return;

	/* Finish the carried bytes: a character needs at most 3 more bytes. */
	if (have > 0) {
		take = len < 4 ? len : 4;
		memcpy(buf, out->pending, have);
		memcpy(buf + have, s, take);
		left = cli_text_write_some(out, buf, have + take, false);
		out->pending_len = 0;
		if (left > take) {
			/* Still incomplete, so all of S joined the carried bytes. */
			memcpy(out->pending, buf + have + take - left, left);
			out->pending_len = left;
			return;
		}
		/* An unwritten tail lies in S and is written again from there. */
		s += take - left;
		len -= take - left;
	}

	left = cli_text_write_some(out, s, len, false);
	memcpy(out->pending, s + len - left, left);
	out->pending_len = left;
}

void
cli_text_end(struct cli_text_output *out)
{
	cli_text_write_some(out, out->pending, out->pending_len, true);
	out->pending_len = 0;
}

/* --- main --- */

static int
cli_unknown_command(struct cli *cli, const char *name)
{
	char *text = cli_escape(name, strlen(name), 64, NULL);
	int rc;

	rc = cli_usage_error(cli, NULL, "unknown command '%s'", text);
	free(text);
	return rc;
}

static int
cli_help(struct cli *cli, int argc, char **argv)
{
	if (argc <= 1) {
		cli_print_usage(cli, stdout);
		return EX_OK;
	}
	if (cli_command_find(argv[1]) == NULL)
		return cli_unknown_command(cli, argv[1]);
	return cli_usage(cli, argv[1]);
}

static int
cli_run(struct cli *cli, int argc, char **argv)
{
	const struct cli_command *cmd;
	int opt;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:c:hV", cli_global_options,
	    NULL)) != -1) {
		switch (opt) {
		case 'c':
			cli->config_path = optarg;
			break;
		case 'h':
			cli_print_usage(cli, stdout);
			return EX_OK;
		case 'V':
			printf("relayq %s\n", RELAYQ_VERSION);
			return EX_OK;
		default:
			return cli_option_error(cli, NULL, opt, argv);
		}
	}
	if (optind >= argc)
		return cli_usage_error(cli, NULL, "missing command");

	argc -= optind;
	argv += optind;
	if (strcmp(argv[0], "help") == 0)
		return cli_help(cli, argc, argv);

	cmd = cli_command_find(argv[0]);
	if (cmd == NULL)
		return cli_unknown_command(cli, argv[0]);

	/* optind = 0 makes getopt_long() start afresh on the command's arguments. */
	optind = 0;
	return cmd->run(cli, argc, argv);
}

int
main(int argc, char **argv)
{
	struct cli cli;
	int rc;

	memset(&cli, 0, sizeof(cli));
	cli.progname = "relayq";
	log_init(cli.progname, LOG_LEVEL_WARNING);
	cli.config_path = config_default_path();

	rc = cli_run(&cli, argc, argv);

	queue_store_close(cli.store);
	config_free(cli.config);

	if (fflush(stdout) == EOF || ferror(stdout)) {
		cli_warn(&cli, "cannot write to standard output: %s", strerror(errno));
		if (rc == EX_OK)
			rc = EX_IOERR;
	}
	return rc;
}
