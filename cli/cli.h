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

#include "config.h"
#include "json.h"
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

/* Print "PROGNAME: message" on stderr. */
void cli_warn(struct cli *cli, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Print the message and the usage of COMMAND on stderr; returns EX_USAGE. */
int cli_usage_error(struct cli *cli, const char *command, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Print the usage of COMMAND on stdout for its --help; returns EX_OK. */
int cli_usage(struct cli *cli, const char *command);

/*
 * Report the getopt_long() failure that returned OPT (':' or '?') for
 * COMMAND, whose arguments are ARGV. Returns EX_USAGE.
 */
int cli_option_error(struct cli *cli, const char *command, int opt,
    char **argv);

/*
 * Load the config and open the queue store with FLAGS (QUEUE_STORE_*).
 * On failure the reason is printed and the exit status returned:
 * EX_CONFIG for the config, EX_UNAVAILABLE for the store. Returns EX_OK
 * with cli->store set otherwise.
 */
int cli_open_store(struct cli *cli, int flags);

/*
 * Report the failed SQLite call on the store, with WHAT describing the
 * operation. Returns EX_TEMPFAIL when the database was busy or locked beyond
 * the busy timeout, EX_UNAVAILABLE otherwise.
 */
int cli_store_error(struct cli *cli, const char *what);

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
