/*
 * relayq list: one table line or JSON object per message, oldest first,
 * optionally filtered by state, recipient, sender and age, and paged.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "exit_codes.h"
#include "util.h"

/* Display limits of the table's free-text columns, in characters. */
#define CMD_LIST_ADDRESS_WIDTH 40
#define CMD_LIST_ERROR_WIDTH 60

enum cmd_list_column {
	CMD_LIST_ID,
	CMD_LIST_STATE,
	CMD_LIST_AGE,
	CMD_LIST_ATTEMPTS,
	CMD_LIST_NEXT,
	CMD_LIST_FROM,
	CMD_LIST_TO,
	CMD_LIST_ERROR,
	CMD_LIST_COLUMNS,
};

static const char *const cmd_list_headings[CMD_LIST_COLUMNS] = {
	"ID", "STATE", "AGE", "ATTEMPTS", "NEXT", "FROM", "TO", "LAST ERROR",
};

struct cmd_list_cell {
	char *text;
	size_t width;		/* in characters, for alignment */
};

struct cmd_list_table {
	struct cmd_list_cell (*rows)[CMD_LIST_COLUMNS];
	size_t count;
	size_t capacity;
};

/* One message with its recipients, assembled from the rows of the join. */
struct cmd_list_message {
	int64_t id;
	char *state;
	char *sender;
	int64_t size;
	int64_t created;
	int64_t next_attempt;
	int64_t attempt_count;
	char *last_error;	/* NULL when there is none */
	char **rcpts;
	size_t rcpt_count;
};

struct cmd_list_reader {
	sqlite3_stmt *stmt;
	int step_rc;		/* result of the last sqlite3_step() */
	int64_t limit;		/* messages to return; 0: all */
	int64_t count;		/* messages returned so far */
	bool more;		/* the limit left matching messages out */
};

struct cmd_list_filter {
	const char *state_text;	/* as given, for messages */
	int state;		/* a state, -1 for all, -2 for all but sent */
	char *to;		/* a LIKE pattern; NULL: any */
	char *from;		/* a LIKE pattern; NULL: any */
	bool has_since;
	int64_t since;
	int64_t limit;		/* 0: no limit */
	int64_t offset;
};

#define CMD_LIST_ALL (-1)
#define CMD_LIST_DEFAULT (-2)

static const struct option cmd_list_options[] = {
	{ "state", required_argument, NULL, 's' },
	{ "to", required_argument, NULL, 't' },
	{ "from", required_argument, NULL, 'f' },
	{ "since", required_argument, NULL, 'S' },
	{ "limit", required_argument, NULL, 'l' },
	{ "offset", required_argument, NULL, 'o' },
	{ "json", no_argument, NULL, 'j' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/*
 * Build the query for FILTER. The parameters are ?1 the state, ?2 the
 * --to text, ?3 the --from text, ?4 --since, ?5 the row limit and ?6 the
 * offset. The filters select messages in a subquery, so that LIMIT and
 * OFFSET count messages, not recipients. The default listing names the
 * states it wants, so SQLite reads them from the state index instead of
 * scanning every sent message. Messages still being received are never
 * listed.
 */
static char *
cmd_list_sql(const struct cmd_list_filter *filter)
{
	const char *state, *to;

	if (filter->state == CMD_LIST_ALL)
		state = "state <> 'receiving'";
	else if (filter->state == CMD_LIST_DEFAULT)
		state = "state IN ('queued', 'deferred', 'sending', 'held', "
		    "'uncertain', 'failed')";
	else
		state = "state = ?1";

	/*
	 * Sent messages can be most of the queue: reading the recipient table
	 * once is faster than a lookup per message, which is faster for the
	 * few messages in the other states.
	 */
	if (filter->to == NULL)
		to = "";
	else if (filter->state == CMD_LIST_ALL || filter->state == MSG_SENT)
		to = " AND id IN (SELECT message FROM recipient"
		    " WHERE address LIKE ?2 ESCAPE '\\')";
	else
		to = " AND EXISTS (SELECT 1 FROM recipient AS t"
		    " WHERE t.message = message.id AND t.address LIKE ?2 ESCAPE '\\')";

	return xasprintf("SELECT m.id, m.state, m.sender, m.size, m.created,"
	    " m.next_attempt, m.attempt_count, m.last_error, r.address"
	    " FROM (SELECT id, state, sender, size, created, next_attempt,"
	    " attempt_count, last_error FROM message WHERE %s%s%s%s"
	    " ORDER BY id LIMIT ?5 OFFSET ?6) AS m"
	    " LEFT JOIN recipient AS r ON r.message = m.id"
	    " ORDER BY m.id, r.idx", state, to,
	    filter->from != NULL ? " AND sender LIKE ?3 ESCAPE '\\'" : "",
	    filter->has_since ? " AND created >= ?4" : "");
}

static void
cmd_list_bind(sqlite3_stmt *stmt, const struct cmd_list_filter *filter)
{
	if (filter->state >= 0)
		sqlite3_bind_text(stmt, 1, msg_state_name((enum msg_state)filter->state),
		    -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, filter->to, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, filter->from, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 4, filter->since);
	/* One message more than asked shows whether the limit cut the list. */
	sqlite3_bind_int64(stmt, 5, filter->limit > 0 ? filter->limit + 1 : -1);
	sqlite3_bind_int64(stmt, 6, filter->offset);
}

static void
cmd_list_message_clear(struct cmd_list_message *msg)
{
	size_t i;

	free(msg->state);
	free(msg->sender);
	free(msg->last_error);
	for (i = 0; i < msg->rcpt_count; i++)
		free(msg->rcpts[i]);
	free(msg->rcpts);
	memset(msg, 0, sizeof(*msg));
}

static char *
cmd_list_column_strdup(sqlite3_stmt *stmt, int col)
{
	const char *text = cli_column_text(stmt, col);

	return text != NULL ? xstrdup(text) : NULL;
}

/*
 * Read the next message and its recipients into MSG. Returns 1, 0 after
 * the last message, or -1 on a database error.
 */
static int
cmd_list_read(struct cmd_list_reader *reader, struct cmd_list_message *msg)
{
	sqlite3_stmt *stmt = reader->stmt;
	const char *text;

	cmd_list_message_clear(msg);
	if (reader->step_rc == SQLITE_DONE)
		return 0;
	if (reader->step_rc != SQLITE_ROW)
		return -1;
	if (reader->limit > 0 && reader->count == reader->limit) {
		reader->more = true;
		return 0;
	}
	reader->count++;

	msg->id = sqlite3_column_int64(stmt, 0);
	msg->state = cmd_list_column_strdup(stmt, 1);
	msg->sender = cmd_list_column_strdup(stmt, 2);
	msg->size = sqlite3_column_int64(stmt, 3);
	msg->created = sqlite3_column_int64(stmt, 4);
	msg->next_attempt = sqlite3_column_int64(stmt, 5);
	msg->attempt_count = sqlite3_column_int64(stmt, 6);
	msg->last_error = cmd_list_column_strdup(stmt, 7);
	if (msg->state == NULL)
		msg->state = xstrdup("unknown");
	if (msg->sender == NULL)
		msg->sender = xstrdup("");

	/* The join yields one row per recipient, or one row with a NULL address. */
	do {
		text = cli_column_text(stmt, 8);
		if (text != NULL) {
			msg->rcpts = xrealloc(msg->rcpts,
			    (msg->rcpt_count + 1) * sizeof(*msg->rcpts));
			msg->rcpts[msg->rcpt_count++] = xstrdup(text);
		}
		reader->step_rc = sqlite3_step(stmt);
	} while (reader->step_rc == SQLITE_ROW &&
	    sqlite3_column_int64(stmt, 0) == msg->id);

	if (reader->step_rc != SQLITE_ROW && reader->step_rc != SQLITE_DONE)
		return -1;
	return 1;
}

/* --- JSON --- */

static void
cmd_list_json_message(struct json_writer *w, const struct cmd_list_message *msg)
{
	char time[CLI_TIME_SIZE];
	int64_t next;
	size_t i;

	json_object_begin(w);
	json_key(w, "id");
	json_int(w, msg->id);
	json_key(w, "state");
	json_string(w, msg->state);
	json_key(w, "sender");
	json_string(w, msg->sender);

	json_key(w, "recipients");
	json_array_begin(w);
	for (i = 0; i < msg->rcpt_count; i++)
		json_string(w, msg->rcpts[i]);
	json_array_end(w);

	json_key(w, "size");
	json_int(w, msg->size);
	json_key(w, "created");
	time_format_rfc3339(msg->created, time, sizeof(time));
	json_string(w, time);
	json_key(w, "attempt_count");
	json_int(w, msg->attempt_count);

	json_key(w, "next_attempt");
	if (cli_next_attempt(msg->state, msg->next_attempt, msg->created, &next)) {
		time_format_rfc3339(next, time, sizeof(time));
		json_string(w, time);
	} else {
		json_null(w);
	}

	json_key(w, "last_error");
	if (msg->last_error != NULL && msg->last_error[0] != '\0')
		json_string(w, msg->last_error);
	else
		json_null(w);
	json_object_end(w);
}

static int
cmd_list_json(struct cmd_list_reader *reader)
{
	struct cmd_list_message msg;
	struct json_writer *w;
	int rc;

	memset(&msg, 0, sizeof(msg));
	w = json_writer_new(stdout, JSON_PRETTY);
	json_object_begin(w);
	json_key(w, "messages");
	json_array_begin(w);
	while ((rc = cmd_list_read(reader, &msg)) == 1)
		cmd_list_json_message(w, &msg);

	/* After an error the document stays unfinished, so no parser accepts it. */
	if (rc == 0) {
		json_array_end(w);
		json_key(w, "more");
		json_bool(w, reader->more);
		json_object_end(w);
	}
	json_writer_free(w);
	cmd_list_message_clear(&msg);
	return rc;
}

/* --- table --- */

static void
cmd_list_cell_set(struct cmd_list_cell *cell, char *text)
{
	cell->text = text;
	cell->width = strlen(text);
}

static struct cmd_list_cell *
cmd_list_table_add(struct cmd_list_table *table)
{
	if (table->count == table->capacity) {
		table->capacity = table->capacity == 0 ? 64 : table->capacity * 2;
		table->rows = xrealloc(table->rows,
		    table->capacity * sizeof(*table->rows));
	}
	return table->rows[table->count++];
}

static void
cmd_list_table_free(struct cmd_list_table *table)
{
	size_t i, c;

	for (i = 0; i < table->count; i++)
		for (c = 0; c < CMD_LIST_COLUMNS; c++)
			free(table->rows[i][c].text);
	free(table->rows);
}

/* Fill FROM ("<>" for the null sender) and TO (the first recipient, "+N" for the rest). */
static void
cmd_list_set_addresses(struct cmd_list_cell *row,
    const struct cmd_list_message *msg)
{
	struct cmd_list_cell *to = &row[CMD_LIST_TO];
	char *first;

	if (msg->sender[0] == '\0')
		cmd_list_cell_set(&row[CMD_LIST_FROM], xstrdup("<>"));
	else
		row[CMD_LIST_FROM].text = cli_escape(msg->sender,
		    strlen(msg->sender), CMD_LIST_ADDRESS_WIDTH,
		    &row[CMD_LIST_FROM].width);

	if (msg->rcpt_count == 0) {
		cmd_list_cell_set(to, xstrdup("-"));
		return;
	}
	to->text = cli_escape(msg->rcpts[0], strlen(msg->rcpts[0]),
	    CMD_LIST_ADDRESS_WIDTH, &to->width);
	if (msg->rcpt_count > 1) {
		first = to->text;
		to->text = xasprintf("%s+%zu", first, msg->rcpt_count - 1);
		to->width += strlen(to->text) - strlen(first);
		free(first);
	}
}

static void
cmd_list_table_message(struct cmd_list_table *table,
    const struct cmd_list_message *msg, int64_t now)
{
	struct cmd_list_cell *row = cmd_list_table_add(table);
	char text[CLI_TIME_SIZE];
	int64_t next;

	cmd_list_cell_set(&row[CMD_LIST_ID], xasprintf("%" PRId64, msg->id));
	row[CMD_LIST_STATE].text = cli_escape(msg->state, strlen(msg->state), 0,
	    &row[CMD_LIST_STATE].width);
	cli_format_age(msg->created, now, text, sizeof(text));
	cmd_list_cell_set(&row[CMD_LIST_AGE], xstrdup(text));
	cmd_list_cell_set(&row[CMD_LIST_ATTEMPTS],
	    xasprintf("%" PRId64, msg->attempt_count));

	if (cli_next_attempt(msg->state, msg->next_attempt, msg->created, &next))
		cli_format_relative(next, now, text, sizeof(text));
	else
		snprintf(text, sizeof(text), "-");
	cmd_list_cell_set(&row[CMD_LIST_NEXT], xstrdup(text));

	cmd_list_set_addresses(row, msg);

	if (msg->last_error != NULL && msg->last_error[0] != '\0')
		row[CMD_LIST_ERROR].text = cli_escape(msg->last_error,
		    strlen(msg->last_error), CMD_LIST_ERROR_WIDTH,
		    &row[CMD_LIST_ERROR].width);
	else
		cmd_list_cell_set(&row[CMD_LIST_ERROR], xstrdup("-"));
}

static void
cmd_list_pad(size_t count)
{
	while (count-- > 0)
		putchar(' ');
}

/* Print the table with columns two spaces apart and numbers aligned right. */
static void
cmd_list_table_print(const struct cmd_list_table *table)
{
	size_t widths[CMD_LIST_COLUMNS] = { 0 };
	const struct cmd_list_cell *cell;
	size_t i, c;

	for (i = 0; i < table->count; i++)
		for (c = 0; c < CMD_LIST_COLUMNS; c++)
			if (table->rows[i][c].width > widths[c])
				widths[c] = table->rows[i][c].width;

	for (i = 0; i < table->count; i++) {
		for (c = 0; c < CMD_LIST_COLUMNS; c++) {
			cell = &table->rows[i][c];
			if (c > 0)
				fputs("  ", stdout);
			if (c == CMD_LIST_ID || c == CMD_LIST_ATTEMPTS)
				cmd_list_pad(widths[c] - cell->width);
			fputs(cell->text, stdout);
			if (c != CMD_LIST_ID && c != CMD_LIST_ATTEMPTS &&
			    c + 1 < CMD_LIST_COLUMNS)
				cmd_list_pad(widths[c] - cell->width);
		}
		putchar('\n');
	}
}

static void
cmd_list_print_empty(const struct cmd_list_filter *filter)
{
	if (filter->to != NULL || filter->from != NULL || filter->has_since ||
	    filter->offset > 0)
		printf("No messages match.\n");
	else if (filter->state == CMD_LIST_DEFAULT)
		printf("No messages (sent messages are listed with --state sent).\n");
	else if (filter->state == CMD_LIST_ALL)
		printf("No messages.\n");
	else
		printf("No messages in state %s.\n", filter->state_text);
}

static int
cmd_list_table(struct cmd_list_reader *reader,
    const struct cmd_list_filter *filter)
{
	struct cmd_list_table table;
	struct cmd_list_message msg;
	int64_t now = now_seconds();
	struct cmd_list_cell *row;
	size_t c;
	int rc;

	memset(&table, 0, sizeof(table));
	memset(&msg, 0, sizeof(msg));
	row = cmd_list_table_add(&table);
	for (c = 0; c < CMD_LIST_COLUMNS; c++)
		cmd_list_cell_set(&row[c], xstrdup(cmd_list_headings[c]));

	while ((rc = cmd_list_read(reader, &msg)) == 1)
		cmd_list_table_message(&table, &msg, now);

	if (rc == 0 && table.count == 1)
		cmd_list_print_empty(filter);
	else if (rc == 0)
		cmd_list_table_print(&table);
	if (rc == 0 && reader->more)
		printf("More messages match; see them with --offset %" PRId64 ".\n",
		    filter->offset + reader->count);
	cmd_list_table_free(&table);
	cmd_list_message_clear(&msg);
	return rc;
}

/* --- command --- */

static int
cmd_list_query(struct cli *cli, const struct cmd_list_filter *filter, bool json)
{
	struct cmd_list_reader reader;
	char *sql;
	int rc;

	memset(&reader, 0, sizeof(reader));
	reader.limit = filter->limit;
	sql = cmd_list_sql(filter);
	rc = sqlite3_prepare_v2(queue_store_db(cli->store), sql, -1, &reader.stmt,
	    NULL);
	free(sql);
	if (rc != SQLITE_OK)
		return cli_store_error(cli, "cannot list messages");
	cmd_list_bind(reader.stmt, filter);

	rc = cli_read_begin(cli);
	if (rc != EX_OK) {
		sqlite3_finalize(reader.stmt);
		return rc;
	}

	reader.step_rc = sqlite3_step(reader.stmt);
	if (json)
		rc = cmd_list_json(&reader);
	else
		rc = cmd_list_table(&reader, filter);
	rc = rc == -1 ? cli_store_error(cli, "cannot list messages") : EX_OK;

	sqlite3_finalize(reader.stmt);
	cli_read_end(cli);
	return rc;
}

static int
cmd_list_option(struct cli *cli, int opt, struct cmd_list_filter *filter,
    bool *json)
{
	switch (opt) {
	case 's':
		filter->state_text = optarg;
		return cli_parse_state(cli, "list", optarg, true, &filter->state);
	case 't':
		free(filter->to);
		filter->to = queue_admin_like_pattern(optarg);
		return EX_OK;
	case 'f':
		free(filter->from);
		filter->from = queue_admin_like_pattern(optarg);
		return EX_OK;
	case 'S':
		filter->has_since = true;
		return cli_parse_time(cli, "list", "--since", optarg, now_seconds(),
		    &filter->since);
	case 'l':
		return cli_parse_count(cli, "list", "--limit", optarg, &filter->limit);
	case 'o':
		return cli_parse_count(cli, "list", "--offset", optarg,
		    &filter->offset);
	case 'j':
		*json = true;
		return EX_OK;
	default:
		return EX_USAGE;
	}
}

int
cmd_list(struct cli *cli, int argc, char **argv)
{
	struct cmd_list_filter filter;
	bool json = false;
	int opt, rc = EX_OK;

	memset(&filter, 0, sizeof(filter));
	filter.state = CMD_LIST_DEFAULT;
	while ((opt = getopt_long(argc, argv, ":h", cmd_list_options,
	    NULL)) != -1) {
		if (opt == 'h')
			rc = cli_usage(cli, "list");
		else if (opt == ':' || opt == '?')
			rc = cli_option_error(cli, "list", opt, argv);
		else
			rc = cmd_list_option(cli, opt, &filter, &json);
		if (opt == 'h' || rc != EX_OK)
			goto done;
	}
	if (optind < argc) {
		rc = cli_unexpected_argument(cli, "list", argv[optind]);
		goto done;
	}

	rc = cli_open_store(cli, QUEUE_STORE_READONLY);
	if (rc == EX_OK)
		rc = cmd_list_query(cli, &filter, json);

done:
	free(filter.to);
	free(filter.from);
	return rc;
}
