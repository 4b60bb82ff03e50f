/*
 * The relayq admin tool. The command table in main.c dispatches to one
 * cmd_NAME() per command file. Each handler receives the arguments after
 * the command name (argv[0] is the command name) and returns the exit
 * status, a sysexits.h code.
 */
#ifndef RELAYQ_CLI_H
#define RELAYQ_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "compat.h"
#include "config.h"
#include "json.h"
#include "queue_admin.h"
#include "queue_store.h"

/* Exit status of `relayq show` for an unknown id, which sysexits.h lacks. */
#define CLI_EXIT_NOT_FOUND 1

struct cli {
	const char *progname;		/* "relayq", or the name it was invoked as */
	const char *config_path;	/* from -c, else config_default_path() */
	struct config *config;		/* loaded by cli_open_store() */
	struct queue_store *store;	/* opened by cli_open_store() */
};

struct cli_command {
	const char *name;
	int (*run)(struct cli *cli, int argc, char **argv);
	const char *usage;		/* the arguments after the name */
	const char *summary;		/* one line for `relayq help` */
};

int cmd_list(struct cli *cli, int argc, char **argv);
int cmd_show(struct cli *cli, int argc, char **argv);
int cmd_hold(struct cli *cli, int argc, char **argv);
int cmd_release(struct cli *cli, int argc, char **argv);
int cmd_retry(struct cli *cli, int argc, char **argv);
int cmd_flush(struct cli *cli, int argc, char **argv);
int cmd_delete(struct cli *cli, int argc, char **argv);
int cmd_stats(struct cli *cli, int argc, char **argv);
int cmd_diagnose(struct cli *cli, int argc, char **argv);
int cmd_history(struct cli *cli, int argc, char **argv);
int cmd_send(struct cli *cli, int argc, char **argv);
int cmd_config(struct cli *cli, int argc, char **argv);
int cmd_sendmail(struct cli *cli, int argc, char **argv);

/*
 * Give up a setgid (or setuid) identity for good; the sendmail interface
 * keeps it only to submit mail. Returns 0, or -1 with errno.
 */
int cmd_sendmail_drop_privileges(void);

/* A command that changes messages: relayq hold, release, retry and delete. */
struct cli_change {
	const char *name;
	enum queue_admin_action action;
	bool allow_all;		/* takes --all */
	bool allow_state;	/* takes --state STATE */
};

/*
 * Run CMD on the message ids in ARGV, or in bulk with --all or --state.
 * Prints one line per id ("12: held"). An unknown id, or one in a state
 * that CMD does not apply to, is reported and gives exit status 1. A
 * message that relayqd is sending gives 75. The other ids are still
 * processed, and relayqd is woken after a change.
 */
int cli_change_main(struct cli *cli, const struct cli_change *cmd, int argc,
    char **argv);

/* Print "PROGNAME: message" on stderr. */
void cli_warn(struct cli *cli, const char *fmt, ...)
    RELAYQ_PRINTF(2, 3);

/* Print the message and the usage of COMMAND on stderr; returns EX_USAGE. */
int cli_usage_error(struct cli *cli, const char *command, const char *fmt, ...)
    RELAYQ_PRINTF(3, 4);

/* Print the usage of COMMAND on stdout for its --help; returns EX_OK. */
int cli_usage(struct cli *cli, const char *command);

/*
 * Report the getopt_long() failure that returned OPT (':' or '?') for
 * COMMAND, whose arguments are ARGV. Returns EX_USAGE.
 */
int cli_option_error(struct cli *cli, const char *command, int opt,
    char **argv);

/* Print "unexpected argument 'ARG'" and the usage of COMMAND; returns EX_USAGE. */
int cli_unexpected_argument(struct cli *cli, const char *command,
    const char *arg);

/*
 * Load the config and open the queue store with FLAGS (QUEUE_STORE_*),
 * with a busy timeout for waiting on relayqd's writes. On failure the
 * reason is printed and the exit status returned: EX_CONFIG for the
 * config, EX_UNAVAILABLE for the store. Returns EX_OK with cli->store set
 * otherwise. Read-only commands do not need relayqd to be running.
 */
int cli_open_store(struct cli *cli, int flags);

/*
 * Report the failed SQLite call on the store, with WHAT describing the
 * operation. Returns EX_TEMPFAIL when the database was busy or locked beyond
 * the busy timeout, EX_UNAVAILABLE otherwise.
 */
int cli_store_error(struct cli *cli, const char *what);

/*
 * Report a failed queue_admin_*() call that returned RC (-1 or
 * QUEUE_ADMIN_BUSY) with ERRSTR, which is freed. Returns EX_TEMPFAIL for
 * a busy queue, EX_UNAVAILABLE otherwise.
 */
int cli_admin_error(struct cli *cli, int rc, char *errstr);

/*
 * Tell a running relayqd to look for due messages now, after a change.
 * A daemon that is not running is fine; a failure is only reported,
 * because the change itself is already committed.
 */
void cli_wake(struct cli *cli);

/* Parse a message id: plain decimal digits, above 0 ("+5", " 5", "0x5" fail). */
bool cli_parse_id(const char *text, int64_t *id);

/*
 * Parse the value of OPTION of COMMAND as a count from 0 up. Returns
 * EX_OK, or EX_USAGE after printing what is wrong.
 */
int cli_parse_count(struct cli *cli, const char *command, const char *option,
    const char *text, int64_t *value);

/*
 * Parse the value of OPTION of COMMAND as a point in time: a duration back
 * from NOW ("2h", "7d") or an RFC 3339 time ("2026-03-01T09:00:00Z",
 * "2026-03-01T10:00:00+01:00", or "2026-03-01" for midnight UTC).
 * Returns EX_OK, or EX_USAGE after printing what is wrong.
 */
int cli_parse_time(struct cli *cli, const char *command, const char *option,
    const char *text, int64_t now, int64_t *when);

/*
 * Parse a --state value for COMMAND: a state name other than the internal
 * "receiving", or "all" when ALLOW_ALL (then *STATE is -1). Returns EX_OK,
 * or EX_USAGE after printing the valid names.
 */
int cli_parse_state(struct cli *cli, const char *command, const char *text,
    bool allow_all, int *state);

/* Begin or end a read transaction, which gives queries one snapshot. */
int cli_read_begin(struct cli *cli);
void cli_read_end(struct cli *cli);

/* Return the text of column COL, or NULL for SQL NULL. */
const char *cli_column_text(sqlite3_stmt *stmt, int col);

/* Buffer size for time_format_rfc3339() and cli_format_relative(). */
#define CLI_TIME_SIZE 32

/*
 * Compute when a message is next due. Only queued, deferred and uncertain
 * messages have a next attempt, so other states return false. A stored
 * time of 0 means "due since CREATED".
 */
bool cli_next_attempt(const char *state, int64_t next_attempt,
    int64_t created, int64_t *when);

/* Format WHEN relative to NOW for humans: "now" once due, else "in 2m". */
void cli_format_relative(int64_t when, int64_t now, char *buf, size_t size);

/* Format the age of a message created at CREATED: "2h10m", or "0s" if in the future. */
void cli_format_age(int64_t created, int64_t now, char *buf, size_t size);

/*
 * Escape S for a terminal: printable text (including valid non-ASCII
 * UTF-8) stays, a backslash is doubled, control characters become \n, \r,
 * \t or \xHH, and invalid bytes become \xHH. At most MAX_WIDTH characters
 * (0: no limit) are kept; a longer text is cut and ends in "...". Returns
 * an allocated string and its width in characters in *WIDTH if not NULL.
 */
char *cli_escape(const char *s, size_t len, size_t max_width, size_t *width);

/*
 * Terminal-safe output of text given in pieces, such as a message body:
 * like cli_escape(), but CRLF and LF end lines, and a tab and a backslash
 * stay as they are.
 * Bytes of an incomplete UTF-8 sequence or a CR are kept for the next piece.
 */
struct cli_text_output {
	FILE *fp;
	unsigned char pending[4];
	size_t pending_len;
};

void cli_text_begin(struct cli_text_output *out, FILE *fp);
void cli_text_write(struct cli_text_output *out, const void *data, size_t len);
void cli_text_end(struct cli_text_output *out);

#endif
