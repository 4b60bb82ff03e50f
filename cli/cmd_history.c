/*
 * relayq history: sent messages, newest first, with the time the smart
 * host accepted each one, the queue id it gave in its final reply and
 * relayq's id. `relayq history --to customer@example.net` shows whether
 * the remittance to that customer went out, and when.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "duration.h"
#include "exit_codes.h"
#include "util.h"

#define CMD_HISTORY_DEFAULT_LIMIT 50

/* Display limit of the address columns, in characters. */
#define CMD_HISTORY_ADDRESS_WIDTH 40

enum cmd_history_column {
	CMD_HISTORY_SENT,
	CMD_HISTORY_ID,
	CMD_HISTORY_FROM,
	CMD_HISTORY_TO,
	CMD_HISTORY_QUEUE_ID,
	CMD_HISTORY_COLUMNS,
};

static const char *const cmd_history_headings[CMD_HISTORY_COLUMNS] = {
	"SENT (UTC)", "ID", "FROM", "TO", "SMART HOST ID",
};

struct cmd_history_cell {
	char *text;
	size_t width;		/* in characters, for alignment */
};

static const struct option cmd_history_options[] = {
	{ "to", required_argument, NULL, 't' },
	{ "from", required_argument, NULL, 'f' },
	{ "message-id", required_argument, NULL, 'm' },
	{ "since", required_argument, NULL, 's' },
	{ "until", required_argument, NULL, 'u' },
	{ "limit", required_argument, NULL, 'l' },
	{ "json", no_argument, NULL, 'j' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* --- JSON --- */

static void
cmd_history_json_time(struct json_writer *w, int64_t t)
{
	char text[CLI_TIME_SIZE];

	time_format_rfc3339(t, text, sizeof(text));
	json_string(w, text);
}

static void
cmd_history_json_entry(struct json_writer *w,
    const struct queue_admin_history_entry *entry)
{
	char *queue_id = queue_admin_reply_queue_id(entry->final_reply);
	size_t i;

	json_object_begin(w);
	json_key(w, "id");
	json_int(w, entry->id);
	json_key(w, "sender");
	json_string(w, entry->sender);
	json_key(w, "recipients");
	json_array_begin(w);
	for (i = 0; i < entry->rcpt_count; i++)
		json_string(w, entry->rcpts[i]);
	json_array_end(w);
	json_key(w, "message_id");
	json_string(w, entry->message_id);
	json_key(w, "size");
	json_int(w, entry->size);
	json_key(w, "created");
	cmd_history_json_time(w, entry->created);
	json_key(w, "sent_at");
	cmd_history_json_time(w, entry->sent_at);
	json_key(w, "smarthost_queue_id");
	json_string(w, queue_id);
	json_key(w, "final_reply");
	json_string(w, entry->final_reply);
	json_key(w, "body_purged");
	json_bool(w, entry->body_purged);
	json_object_end(w);
	free(queue_id);
}

static void
cmd_history_json(const struct queue_admin_history_entry *entries, size_t count,
    bool more)
{
	struct json_writer *w = json_writer_new(stdout, JSON_PRETTY);
	size_t i;

	json_object_begin(w);
	json_key(w, "messages");
	json_array_begin(w);
	for (i = 0; i < count; i++)
		cmd_history_json_entry(w, &entries[i]);
	json_array_end(w);
	json_key(w, "more");
	json_bool(w, more);
	json_object_end(w);
	json_writer_free(w);
}

/* --- table --- */

static void
cmd_history_cell_escape(struct cmd_history_cell *cell, const char *text,
    size_t max_width)
{
	cell->text = cli_escape(text, strlen(text), max_width, &cell->width);
}

static void
cmd_history_row(struct cmd_history_cell *row,
    const struct queue_admin_history_entry *entry)
{
	char time[CLI_TIME_SIZE], *queue_id, *first;

	time_format_rfc3339(entry->sent_at, time, sizeof(time));
	cmd_history_cell_escape(&row[CMD_HISTORY_SENT], time, 0);
	row[CMD_HISTORY_ID].text = xasprintf("%" PRId64, entry->id);
	row[CMD_HISTORY_ID].width = strlen(row[CMD_HISTORY_ID].text);
	cmd_history_cell_escape(&row[CMD_HISTORY_FROM],
	    entry->sender[0] != '\0' ? entry->sender : "<>",
	    CMD_HISTORY_ADDRESS_WIDTH);

	/* The first recipient, and "+N" for the others. */
	cmd_history_cell_escape(&row[CMD_HISTORY_TO], entry->rcpt_count > 0 ?
	    entry->rcpts[0] : "-", CMD_HISTORY_ADDRESS_WIDTH);
	if (entry->rcpt_count > 1) {
		first = row[CMD_HISTORY_TO].text;
		row[CMD_HISTORY_TO].text = xasprintf("%s+%zu", first,
		    entry->rcpt_count - 1);
		row[CMD_HISTORY_TO].width += strlen(row[CMD_HISTORY_TO].text) -
		    strlen(first);
		free(first);
	}

	queue_id = queue_admin_reply_queue_id(entry->final_reply);
	cmd_history_cell_escape(&row[CMD_HISTORY_QUEUE_ID],
	    queue_id != NULL ? queue_id : "-", 0);
	free(queue_id);
}

/* Print ROWS with columns two spaces apart and the ids aligned right; frees them. */
static void
cmd_history_print_rows(struct cmd_history_cell (*rows)[CMD_HISTORY_COLUMNS],
    size_t count)
{
	size_t widths[CMD_HISTORY_COLUMNS] = { 0 }, i, c;
	struct cmd_history_cell *cell;

	for (i = 0; i < count; i++)
		for (c = 0; c < CMD_HISTORY_COLUMNS; c++)
			if (rows[i][c].width > widths[c])
				widths[c] = rows[i][c].width;

	for (i = 0; i < count; i++) {
		for (c = 0; c < CMD_HISTORY_COLUMNS; c++) {
			cell = &rows[i][c];
			if (c > 0)
				fputs("  ", stdout);
			if (c == CMD_HISTORY_ID)
				printf("%*s", (int)(widths[c] - cell->width), "");
			fputs(cell->text, stdout);
			if (c != CMD_HISTORY_ID && c + 1 < CMD_HISTORY_COLUMNS)
				printf("%*s", (int)(widths[c] - cell->width), "");
			free(cell->text);
		}
		putchar('\n');
	}
}

static void
cmd_history_table(struct cli *cli, const struct queue_admin_history_entry *entries,
    size_t count, bool more)
{
	struct cmd_history_cell (*rows)[CMD_HISTORY_COLUMNS];
	char keep[CLI_TIME_SIZE];
	size_t i, c;

	if (count == 0) {
		duration_format(cli->config->keep_history, keep, sizeof(keep));
		printf("No sent messages match (relayq keeps sent messages for %s, "
		    "queue.keep_history).\n", keep);
		return;
	}

	rows = xcalloc(count + 1, sizeof(*rows));
	for (c = 0; c < CMD_HISTORY_COLUMNS; c++)
		cmd_history_cell_escape(&rows[0][c], cmd_history_headings[c], 0);
	for (i = 0; i < count; i++)
		cmd_history_row(rows[i + 1], &entries[i]);
	cmd_history_print_rows(rows, count + 1);
	free(rows);

	if (more)
		printf("Older messages match; see them with --limit or --until.\n");
}

/* --- command --- */

static int
cmd_history_option(struct cli *cli, int opt,
    struct queue_admin_history_filter *filter, bool *json)
{
	int64_t now = now_seconds();

	switch (opt) {
	case 't':
		filter->to = optarg;
		return EX_OK;
	case 'f':
		filter->from = optarg;
		return EX_OK;
	case 'm':
		filter->message_id = optarg;
		return EX_OK;
	case 's':
		filter->has_since = true;
		return cli_parse_time(cli, "history", "--since", optarg, now,
		    &filter->since);
	case 'u':
		filter->has_until = true;
		return cli_parse_time(cli, "history", "--until", optarg, now,
		    &filter->until);
	case 'l':
		return cli_parse_count(cli, "history", "--limit", optarg,
		    &filter->limit);
	case 'j':
		*json = true;
		return EX_OK;
	default:
		return EX_USAGE;
	}
}

static int
cmd_history_run(struct cli *cli, const struct queue_admin_history_filter *filter,
    bool json)
{
	struct queue_admin_history_entry *entries;
	char *errstr = NULL;
	size_t count;
	bool more;
	int rc;

	rc = cli_open_store(cli, QUEUE_STORE_READONLY);
	if (rc != EX_OK)
		return rc;
	rc = queue_admin_history(cli->store, filter, &entries, &count, &more,
	    &errstr);
	if (rc != 0)
		return cli_admin_error(cli, rc, errstr);

	if (json)
		cmd_history_json(entries, count, more);
	else
		cmd_history_table(cli, entries, count, more);
	queue_admin_history_free(entries, count);
	return EX_OK;
}

int
cmd_history(struct cli *cli, int argc, char **argv)
{
	struct queue_admin_history_filter filter;
	bool json = false;
	int opt, rc;

	memset(&filter, 0, sizeof(filter));
	filter.limit = CMD_HISTORY_DEFAULT_LIMIT;
	while ((opt = getopt_long(argc, argv, ":h", cmd_history_options,
	    NULL)) != -1) {
		if (opt == 'h')
			return cli_usage(cli, "history");
		if (opt == ':' || opt == '?')
			return cli_option_error(cli, "history", opt, argv);
		rc = cmd_history_option(cli, opt, &filter, &json);
		if (rc != EX_OK)
			return rc;
	}
	if (optind < argc)
		return cli_unexpected_argument(cli, "history", argv[optind]);
	if (filter.has_since && filter.has_until && filter.since >= filter.until)
		return cli_usage_error(cli, "history", "--since must be before --until");

	return cmd_history_run(cli, &filter, json);
}
