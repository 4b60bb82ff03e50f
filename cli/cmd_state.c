/*
 * relayq hold, release, retry and flush: state changes on messages named
 * by id, or on every message in a state. The per-id and bulk runners are
 * shared with relayq delete. Each change runs in a short transaction of
 * its own and leaves a message that relayqd is sending alone, so these
 * commands never race the daemon.
 */
#include <ctype.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "exit_codes.h"
#include "queue_admin.h"
#include "util.h"

/* Exit status of a state change on an id that does not exist or does not fit. */
#define CMD_STATE_EXIT_REJECTED CLI_EXIT_NOT_FOUND

static const struct cli_change cmd_state_hold = {
	"hold", QUEUE_ADMIN_HOLD, true, true,
};
static const struct cli_change cmd_state_release = {
	"release", QUEUE_ADMIN_RELEASE, true, false,
};
static const struct cli_change cmd_state_retry = {
	"retry", QUEUE_ADMIN_RETRY, true, true,
};

static const struct option cmd_state_options[] = {
	{ "all", no_argument, NULL, 'a' },
	{ "state", required_argument, NULL, 's' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const struct option cmd_state_flush_options[] = {
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* The states ACTION applies to, for messages: "queued, deferred or failed". */
static char *
cmd_state_applicable(enum queue_admin_action action)
{
	const char *names[MSG_STATE_COUNT];
	size_t count = 0, i;
	char *text = xstrdup(""), *next;
	int s;

	for (s = 0; s < MSG_STATE_COUNT; s++)
		if (queue_admin_action_applies(action, (enum msg_state)s))
			names[count++] = msg_state_name((enum msg_state)s);
	for (i = 0; i < count; i++) {
		next = xasprintf("%s%s%s", text, i == 0 ? "" :
		    i + 1 == count ? " or " : ", ", names[i]);
		free(text);
		text = next;
	}
	return text;
}

/* Explain why ACTION does not apply to message ID in STATE. */
static void
cmd_state_wrong_state(struct cli *cli, const struct cli_change *cmd,
    int64_t id, enum msg_state state)
{
	char *states;

	if (cmd->action == QUEUE_ADMIN_RETRY && state == MSG_HELD) {
		cli_warn(cli, "message %" PRId64 " is held; put it back with "
		    "`%s release %" PRId64 "`", id, cli->progname, id);
		return;
	}
	states = cmd_state_applicable(cmd->action);
	cli_warn(cli, "message %" PRId64 " is %s; only messages that are %s can "
	    "be %s", id, msg_state_name(state), states,
	    cmd->action == QUEUE_ADMIN_RETRY ? "retried" :
	    queue_admin_action_done(cmd->action));
	free(states);
}

/* The exit status that ranks higher: a rejected id over a busy message over success. */
static int
cmd_state_worse(int a, int b)
{
	if (a == CMD_STATE_EXIT_REJECTED || b == CMD_STATE_EXIT_REJECTED)
		return CMD_STATE_EXIT_REJECTED;
	if (a == EX_TEMPFAIL || b == EX_TEMPFAIL)
		return EX_TEMPFAIL;
	return EX_OK;
}

/* Report the outcome for one id and return its exit status. */
static int
cmd_state_report(struct cli *cli, const struct cli_change *cmd,
    int64_t id, enum queue_admin_result result, enum msg_state state)
{
	switch (result) {
	case QUEUE_ADMIN_CHANGED:
		printf("%" PRId64 ": %s\n", id, queue_admin_action_done(cmd->action));
		return EX_OK;
	case QUEUE_ADMIN_UNCHANGED:
		printf("%" PRId64 ": already %s\n", id, msg_state_name(state));
		return EX_OK;
	case QUEUE_ADMIN_SENDING:
		cli_warn(cli, "message %" PRId64 " is being sent now; try again in "
		    "a few seconds", id);
		return EX_TEMPFAIL;
	case QUEUE_ADMIN_WRONG_STATE:
		cmd_state_wrong_state(cli, cmd, id, state);
		return CMD_STATE_EXIT_REJECTED;
	case QUEUE_ADMIN_NOT_FOUND:
		break;
	}
	cli_warn(cli, "message %" PRId64 " not found", id);
	return CMD_STATE_EXIT_REJECTED;
}

static int
cmd_state_not_an_id(struct cli *cli, const char *text)
{
	char *escaped = cli_escape(text, strlen(text), 64, NULL);

	cli_warn(cli, "message %s not found: a message ID is a number such as 12",
	    escaped);
	free(escaped);
	return CMD_STATE_EXIT_REJECTED;
}

/*
 * Apply the command to each id in IDS. Every id is tried even after one
 * fails, except after a database error.
 */
static int
cmd_state_ids(struct cli *cli, const struct cli_change *cmd,
    char **ids, int count)
{
	enum queue_admin_result result;
	enum msg_state state = MSG_QUEUED;
	int64_t id, now = now_seconds();
	char *errstr = NULL;
	bool changed = false;
	int i, rc, status = EX_OK;

	rc = cli_open_store(cli, 0);
	if (rc != EX_OK)
		return rc;

	for (i = 0; i < count; i++) {
		if (!cli_parse_id(ids[i], &id)) {
			status = cmd_state_worse(status, cmd_state_not_an_id(cli, ids[i]));
			continue;
		}
		rc = queue_admin_apply(cli->store, cmd->action, id, now, &result,
		    &state, &errstr);
		if (rc != 0) {
			status = cli_admin_error(cli, rc, errstr);
			break;
		}
		changed = changed || result == QUEUE_ADMIN_CHANGED;
		status = cmd_state_worse(status,
		    cmd_state_report(cli, cmd, id, result, state));
	}

	if (changed)
		cli_wake(cli);
	return status;
}

/* Print the outcome of a bulk change and return its exit status. */
static int
cmd_state_report_all(struct cli *cli, const struct cli_change *cmd,
    const struct queue_admin_counts *counts)
{
	const char *done = queue_admin_action_done(cmd->action);

	if (counts->changed == 0 && counts->sending == 0 && counts->vanished == 0)
		printf("No messages to %s.\n", cmd->name);
	else
		printf("%c%s %" PRId64 " message%s.\n", toupper((unsigned char)done[0]),
		    done + 1, counts->changed, counts->changed == 1 ? "" : "s");
	if (counts->vanished > 0)
		printf("%" PRId64 " message%s changed state meanwhile and %s left "
		    "alone.\n", counts->vanished, counts->vanished == 1 ? "" : "s",
		    counts->vanished == 1 ? "was" : "were");
	if (counts->sending == 0)
		return EX_OK;

	cli_warn(cli, "%" PRId64 " message%s %s being sent now and %s not %s; "
	    "run the command again in a few seconds", counts->sending,
	    counts->sending == 1 ? "" : "s", counts->sending == 1 ? "is" : "are",
	    counts->sending == 1 ? "was" : "were", done);
	return EX_TEMPFAIL;
}

/* Apply the command to every message in the states STATES (0: every state it applies to). */
static int
cmd_state_all(struct cli *cli, const struct cli_change *cmd,
    unsigned int states)
{
	struct queue_admin_counts counts;
	char *errstr = NULL;
	int rc;

	rc = cli_open_store(cli, 0);
	if (rc != EX_OK)
		return rc;

	rc = queue_admin_apply_all(cli->store, cmd->action, states, now_seconds(),
	    &counts, &errstr);
	if (counts.changed > 0)
		cli_wake(cli);
	if (rc != 0)
		return cli_admin_error(cli, rc, errstr);
	return cmd_state_report_all(cli, cmd, &counts);
}

/* Check a --state value: a state the command applies to. */
static int
cmd_state_parse_state(struct cli *cli, const struct cli_change *cmd,
    const char *text, unsigned int *states)
{
	char *applicable;
	int state, rc;

	rc = cli_parse_state(cli, cmd->name, text, false, &state);
	if (rc != EX_OK)
		return rc;
	if (queue_admin_action_applies(cmd->action, (enum msg_state)state)) {
		*states = QUEUE_ADMIN_STATE(state);
		return EX_OK;
	}

	applicable = cmd_state_applicable(cmd->action);
	rc = cli_usage_error(cli, cmd->name, "%s --state takes %s, not %s",
	    cmd->name, applicable, text);
	free(applicable);
	return rc;
}

int
cli_change_main(struct cli *cli, const struct cli_change *cmd,
    int argc, char **argv)
{
	unsigned int states = 0;
	bool all = false, by_state = false;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, ":h", cmd_state_options,
	    NULL)) != -1) {
		switch (opt) {
		case 'a':
			if (!cmd->allow_all)
				return cli_usage_error(cli, cmd->name,
				    "%s takes no --all", cmd->name);
			all = true;
			break;
		case 's':
			if (!cmd->allow_state)
				return cli_usage_error(cli, cmd->name,
				    "%s takes no --state", cmd->name);
			rc = cmd_state_parse_state(cli, cmd, optarg, &states);
			if (rc != EX_OK)
				return rc;
			by_state = true;
			break;
		case 'h':
			return cli_usage(cli, cmd->name);
		default:
			return cli_option_error(cli, cmd->name, opt, argv);
		}
	}

	if (all && by_state)
		return cli_usage_error(cli, cmd->name, "use either --all or --state");
	if ((all || by_state) && optind < argc)
		return cli_usage_error(cli, cmd->name, "give message IDs or %s, not "
		    "both", all ? "--all" : "--state");
	if (all || by_state)
		return cmd_state_all(cli, cmd, states);
	if (optind >= argc)
		return cli_usage_error(cli, cmd->name, "missing message ID");
	return cmd_state_ids(cli, cmd, argv + optind, argc - optind);
}

int
cmd_hold(struct cli *cli, int argc, char **argv)
{
	return cli_change_main(cli, &cmd_state_hold, argc, argv);
}

int
cmd_release(struct cli *cli, int argc, char **argv)
{
	return cli_change_main(cli, &cmd_state_release, argc, argv);
}

int
cmd_retry(struct cli *cli, int argc, char **argv)
{
	return cli_change_main(cli, &cmd_state_retry, argc, argv);
}

int
cmd_flush(struct cli *cli, int argc, char **argv)
{
	struct queue_admin_counts counts;
	char *errstr = NULL;
	int64_t left = 0;
	bool uncertain;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, ":h", cmd_state_flush_options,
	    NULL)) != -1) {
		if (opt == 'h')
			return cli_usage(cli, "flush");
		return cli_option_error(cli, "flush", opt, argv);
	}
	if (optind < argc)
		return cli_unexpected_argument(cli, "flush", argv[optind]);

	rc = cli_open_store(cli, 0);
	if (rc != EX_OK)
		return rc;

	/* With on_uncertain: hold, an uncertain message waits for an explicit retry. */
	uncertain = cli->config->smarthost.on_uncertain == UNCERTAIN_RETRY;
	rc = queue_admin_flush(cli->store, uncertain, now_seconds(), &counts, &left,
	    &errstr);
	if (counts.changed > 0)
		cli_wake(cli);
	if (rc != 0)
		return cli_admin_error(cli, rc, errstr);

	if (counts.changed == 0)
		printf("No deferred messages.\n");
	else
		printf("Flushed %" PRId64 " message%s: due now.\n", counts.changed,
		    counts.changed == 1 ? "" : "s");
	if (left > 0)
		printf("%" PRId64 " uncertain message%s left alone because "
		    "smarthost.on_uncertain is hold; `%s retry ID` sends one again.\n",
		    left, left == 1 ? " was" : "s were", cli->progname);
	return EX_OK;
}
