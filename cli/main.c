/*
 * relayq: the admin tool. Global options, the command table, usage
 * messages and dispatch; the helpers that the command files share are in
 * cli_util.c.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "compat.h"
#include "exit_codes.h"
#include "log.h"
#include "util.h"

/* Windows program names: '\\' separators, any case, a final ".exe". */
#ifdef _WIN32
#define CLI_WINDOWS 1
#else
#define CLI_WINDOWS 0
#endif

#ifndef RELAYQ_VERSION
#define RELAYQ_VERSION "unknown"
#endif

static const struct cli_command cli_commands[] = {
	{ "list", cmd_list, "[--state STATE] [--to ADDR] [--from ADDR] "
	    "[--since TIME] [--limit N] [--offset N] [--json]",
	    "list messages in the queue, oldest first" },
	{ "show", cmd_show, "ID [--json] [--body]",
	    "show one message with its recipients and attempts" },
	{ "hold", cmd_hold, "ID... | --all | --state STATE",
	    "set messages aside so that they are not sent" },
	{ "release", cmd_release, "ID... | --all",
	    "put held messages back in the queue, due now" },
	{ "retry", cmd_retry, "ID... | --all | --state STATE",
	    "make deferred, uncertain or failed messages due now" },
	{ "flush", cmd_flush, "",
	    "make every deferred message due now" },
	{ "delete", cmd_delete, "ID... | --state STATE",
	    "remove messages from the queue" },
	{ "stats", cmd_stats, "[--json]",
	    "show counts per state, delivery rate, smart host status and last error" },
	{ "diagnose", cmd_diagnose, "[--send-test ADDR [--from ADDR]] [--json]",
	    "check each smart host endpoint step by step and name the failing one" },
	{ "history", cmd_history, "[--to ADDR] [--from ADDR] [--message-id ID] "
	    "[--since TIME] [--until TIME] [--limit N] [--json]",
	    "show sent messages: when the smart host accepted them, and its queue id" },
	{ "send", cmd_send, "--from ADDR --to ADDR [--to ADDR...] "
	    "[--subject TEXT] [FILE | -]",
	    "submit a message to the queue" },
	{ "config", cmd_config, "check",
	    "validate the config file" },
	{ "sendmail", cmd_sendmail, "[-t] [-i] [-f ADDR] [-F NAME] "
	    "[-bm | -bs | -bp | -q] [RECIPIENT...]",
	    "submit a message as sendmail does; see `relayq sendmail --help`" },
};

#define CLI_COMMAND_COUNT (sizeof(cli_commands) / sizeof(cli_commands[0]))

#define CLI_TIME_HELP \
	"TIME is a duration back from now (30m, 2h, 7d) or an RFC 3339 time\n" \
	"(2026-03-01T09:00:00Z, 2026-03-01T10:00:00+01:00, or 2026-03-01 for\n" \
	"midnight UTC).\n"

/* Longer help printed by `relayq help COMMAND` and `relayq COMMAND --help`. */
static const struct {
	const char *command;
	const char *text;
} cli_details[] = {
	{ "list",
	    "Without --state every message except sent ones is listed.\n"
	    "  --state STATE  list only messages in STATE: queued, deferred, sending,\n"
	    "                 held, sent, uncertain, failed, or all\n"
	    "  --to ADDR      only messages with a recipient that contains ADDR\n"
	    "  --from ADDR    only messages whose sender contains ADDR\n"
	    "  --since TIME   only messages received at TIME or later\n"
	    "  --limit N      list at most N messages\n"
	    "  --offset N     skip the first N messages that match\n"
	    "  --json         print {\"messages\": [...]} instead of a table\n"
	    "ADDR matches any part of an address, ignoring case: --to example.net\n"
	    "lists mail for the whole domain.\n"
	    CLI_TIME_HELP },
	{ "show",
	    "  --json         print one JSON object instead of text\n"
	    "  --body         include the whole message instead of only its header;\n"
	    "                 with --json as \"body\" (a string) when the message is\n"
	    "                 valid UTF-8, else as \"body_base64\"\n"
	    "Text output escapes control characters and invalid UTF-8 as \\xHH.\n" },
	{ "hold",
	    "Queued, deferred, uncertain and failed messages can be held.\n"
	    "  --all          hold every message that can be held\n"
	    "  --state STATE  hold every message in STATE\n"
	    "A message that relayqd is sending cannot be held: the command exits\n"
	    "with 75 and the message is left as it is.\n" },
	{ "release",
	    "  --all          release every held message\n"
	    "A released message is due at once. When it has no pending recipient\n"
	    "left (it had failed before it was held), its failed recipients are\n"
	    "tried again.\n" },
	{ "retry",
	    "  --all          retry every deferred, uncertain and failed message\n"
	    "  --state STATE  retry every message in STATE (deferred, uncertain\n"
	    "                 or failed)\n"
	    "A failed message gets its failed recipients back and one more attempt;\n"
	    "when that fails temporarily after retry.max_age, it fails again.\n"
	    "Retrying an uncertain message can deliver a duplicate.\n" },
	{ "flush",
	    "Deferred messages become due now, like `postqueue -f`. Uncertain\n"
	    "messages too when smarthost.on_uncertain is retry; with hold they\n"
	    "wait for `relayq retry ID`.\n" },
	{ "delete",
	    "  --state STATE  delete every message in STATE\n"
	    "A message that relayqd is sending cannot be deleted: the command exits\n"
	    "with 75 and the message is left as it is.\n" },
	{ "stats",
	    "  --json         print one JSON object instead of text\n" },
	{ "history",
	    "Sent messages, newest first, with the time the smart host accepted\n"
	    "them, its queue id (taken from its final reply) and relayq's id.\n"
	    "  --to ADDR           only messages with a recipient that contains ADDR\n"
	    "  --from ADDR         only messages whose sender contains ADDR\n"
	    "  --message-id ID     only the message with this Message-ID\n"
	    "  --since TIME        only messages sent at TIME or later\n"
	    "  --until TIME        only messages sent before TIME\n"
	    "  --limit N           show at most N messages (default 50, 0: all)\n"
	    "  --json              print {\"messages\": [...]} instead of a table\n"
	    "ADDR matches any part of an address, ignoring case.\n"
	    CLI_TIME_HELP },
	{ "send",
	    "Reads the message from FILE, or from standard input without FILE or\n"
	    "with -. Input without a header section becomes the body of a new\n"
	    "message. From:, To: and Subject: are added where the input lacks\n"
	    "them; Date: and Message-ID: too. relayqd need not be running.\n"
	    "  --from ADDR     the envelope sender and the default From:\n"
	    "  --to ADDR       a recipient; repeat it for more\n"
	    "  --subject TEXT  the default Subject:\n"
	    "Prints the queue id. Exits with 65 for invalid input and 75 when the\n"
	    "queue cannot take the message now.\n" },
	{ "config",
	    "  check          load and validate the config file; print\n"
	    "                 FILE:LINE:COLUMN and exit with 78 when it is invalid\n" },
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

/* --- usage --- */

static void
cli_print_command_usage(struct cli *cli, FILE *fp, const struct cli_command *cmd)
{
	size_t i;

	fprintf(fp, "usage: %s %s%s%s\n", cli->progname, cmd->name,
	    cmd->usage[0] != '\0' ? " " : "", cmd->usage);
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
	size_t i, width = 0;

	fprintf(fp, "usage: %s [-c FILE] COMMAND [ARGUMENTS]\n"
	    "       %s --version | --help | help [COMMAND]\n\n"
	    "Commands:\n", cli->progname, cli->progname);
	for (i = 0; i < CLI_COMMAND_COUNT; i++)
		if (strlen(cli_commands[i].name) > width)
			width = strlen(cli_commands[i].name);
	for (i = 0; i < CLI_COMMAND_COUNT; i++)
		fprintf(fp, "  %-*s  %s\n", (int)width, cli_commands[i].name,
		    cli_commands[i].summary);
	fprintf(fp, "\n`%s help COMMAND` shows the arguments of COMMAND.\n",
	    cli->progname);
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

	/* A setgid install keeps its group for mail submission only. */
	if (cmd->run != cmd_sendmail && cmd_sendmail_drop_privileges() == -1) {
		cli_warn(cli, "cannot give up the setgid group: %s", strerror(errno));
		return EX_OSERR;
	}

	/* optind = 0 makes getopt_long() start afresh on the command's arguments. */
	optind = 0;
	return cmd->run(cli, argc, argv);
}

/*
 * Return "sendmail" or "mailq" when the last component of ARGV0 names one
 * of them, else NULL. On Windows the separator may also be '\\', the
 * name's case does not matter and a final ".exe" is ignored, so that
 * sendmail.exe and MAILQ.EXE are recognised.
 */
static const char *
cli_sendmail_name(const char *argv0)
{
	static const char *const names[] = { "sendmail", "mailq" };
	const char *base = argv0, *p;
	size_t len, i;

	for (p = argv0; *p != '\0'; p++)
		if (*p == '/' || (CLI_WINDOWS && *p == '\\'))
			base = p + 1;
	len = strlen(base);
	if (CLI_WINDOWS && len > 4 && strcasecmp(base + len - 4, ".exe") == 0)
		len -= 4;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (len != strlen(names[i]))
			continue;
		if (CLI_WINDOWS ? strncasecmp(base, names[i], len) == 0 :
		    strncmp(base, names[i], len) == 0)
			return names[i];
	}
	return NULL;
}

int
main(int argc, char **argv)
{
	struct cli cli;
	const char *name;
	char *error = NULL;
	int rc;

	memset(&cli, 0, sizeof(cli));
	cli.progname = "relayq";
	log_init(cli.progname, LOG_LEVEL_WARNING);
	if (compat_init(&error) == -1)
		fatal("%s", error);
	cli.config_path = config_default_path();

	/* Invoked through a link or a copy named sendmail or mailq: the sendmail interface. */
	name = cli_sendmail_name(argv[0]);
	if (name != NULL) {
		cli.progname = name;
		rc = cmd_sendmail(&cli, argc, argv);
	} else
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
