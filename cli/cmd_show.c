/*
 * relayq show: one message in detail. Text output gives the envelope,
 * per-recipient results, the attempt history and the header block (or
 * the whole message with --body); --json gives the same as one object.
 * The body is streamed chunk by chunk and never held in memory whole.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "exit_codes.h"
#include "queue_admin.h"
#include "util.h"

/* Text output shows at most this much of the header block. */
#define CMD_SHOW_HEADER_MAX (64 * 1024)

/* Width of the envelope labels in text output, colon included. */
#define CMD_SHOW_LABEL_WIDTH 16

struct cmd_show_message {
	int64_t id;
	char *state;
	char *sender;
	char *message_id;
	int64_t size;
	int64_t created;
	int64_t next_attempt;
	int64_t attempt_count;
	char *last_error;
	char *client;
	bool has_sent_at;
	int64_t sent_at;
	char *final_reply;
	char *queue_id;		/* the smart host's, from FINAL_REPLY; NULL if none */
	bool body_purged;	/* sent, and the body removed after queue.keep_sent */
};

/* Rows of a text listing: two aligned columns, then the rest of the line. */
struct cmd_show_rows {
	struct cmd_show_row {
		char *cells[3];
		size_t widths[2];
	} *rows;
	size_t count;
};

static const char cmd_show_message_sql[] =
    "SELECT id, state, sender, message_id, size, created, next_attempt,"
    "  attempt_count, last_error, client, sent_at, final_reply,"
    "  NOT EXISTS (SELECT 1 FROM chunk WHERE chunk.message = message.id)"
    " FROM message WHERE id = ?1 AND state <> 'receiving'";

/* Both keep the reply in columns 2 to 4 (code, status, text). */
static const char cmd_show_recipient_sql[] =
    "SELECT address, state, code, status, text FROM recipient"
    " WHERE message = ?1 ORDER BY idx";
static const char cmd_show_attempt_sql[] =
    "SELECT time, host, code, status, text FROM attempt"
    " WHERE message = ?1 ORDER BY id";

static const char cmd_show_chunk_sql[] =
    "SELECT data FROM chunk WHERE message = ?1 ORDER BY seq";

static const struct option cmd_show_options[] = {
	{ "json", no_argument, NULL, 'j' },
	{ "body", no_argument, NULL, 'b' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int
cmd_show_not_found(struct cli *cli, const char *id_text)
{
	char *text = cli_escape(id_text, strlen(id_text), 64, NULL);

	cli_warn(cli, "message %s not found", text);
	free(text);
	return CLI_EXIT_NOT_FOUND;
}

static int
cmd_show_store_error(struct cli *cli, int64_t id)
{
	char what[64];

	snprintf(what, sizeof(what), "cannot read message %" PRId64, id);
	return cli_store_error(cli, what);
}

static int
cmd_show_prepare(struct cli *cli, const char *sql, int64_t id,
    sqlite3_stmt **stmt)
{
	if (sqlite3_prepare_v2(queue_store_db(cli->store), sql, -1, stmt,
	    NULL) != SQLITE_OK)
		return cmd_show_store_error(cli, id);
	sqlite3_bind_int64(*stmt, 1, id);
	return EX_OK;
}

static char *
cmd_show_column_strdup(sqlite3_stmt *stmt, int col)
{
	const char *text = cli_column_text(stmt, col);

	return text != NULL ? xstrdup(text) : NULL;
}

static void
cmd_show_message_clear(struct cmd_show_message *msg)
{
	free(msg->state);
	free(msg->sender);
	free(msg->message_id);
	free(msg->last_error);
	free(msg->client);
	free(msg->final_reply);
	free(msg->queue_id);
	memset(msg, 0, sizeof(*msg));
}

/* Load message ID. Returns EX_OK, CLI_EXIT_NOT_FOUND or a store error (reported). */
static int
cmd_show_load(struct cli *cli, int64_t id, const char *id_text,
    struct cmd_show_message *msg)
{
	sqlite3_stmt *stmt;
	int rc, step_rc;

	rc = cmd_show_prepare(cli, cmd_show_message_sql, id, &stmt);
	if (rc != EX_OK)
		return rc;

	step_rc = sqlite3_step(stmt);
	if (step_rc == SQLITE_ROW) {
		msg->id = sqlite3_column_int64(stmt, 0);
		msg->state = cmd_show_column_strdup(stmt, 1);
		msg->sender = cmd_show_column_strdup(stmt, 2);
		msg->message_id = cmd_show_column_strdup(stmt, 3);
		msg->size = sqlite3_column_int64(stmt, 4);
		msg->created = sqlite3_column_int64(stmt, 5);
		msg->next_attempt = sqlite3_column_int64(stmt, 6);
		msg->attempt_count = sqlite3_column_int64(stmt, 7);
		msg->last_error = cmd_show_column_strdup(stmt, 8);
		msg->client = cmd_show_column_strdup(stmt, 9);
		msg->has_sent_at = sqlite3_column_type(stmt, 10) != SQLITE_NULL;
		msg->sent_at = sqlite3_column_int64(stmt, 10);
		msg->final_reply = cmd_show_column_strdup(stmt, 11);
		msg->queue_id = queue_admin_reply_queue_id(msg->final_reply);
		msg->body_purged = strcmp(msg->state != NULL ? msg->state : "",
		    "sent") == 0 && sqlite3_column_int(stmt, 12) != 0;
		if (msg->state == NULL)
			msg->state = xstrdup("unknown");
		if (msg->sender == NULL)
			msg->sender = xstrdup("");
		rc = EX_OK;
	} else if (step_rc == SQLITE_DONE) {
		rc = cmd_show_not_found(cli, id_text);
	} else {
		rc = cmd_show_store_error(cli, id);
	}
	sqlite3_finalize(stmt);
	return rc;
}

/* --- JSON --- */

/* Write column COL as a string, or null when it is NULL or empty. */
static void
cmd_show_json_text(struct json_writer *w, sqlite3_stmt *stmt, int col)
{
	const char *text = cli_column_text(stmt, col);

	json_string(w, text != NULL && text[0] != '\0' ? text : NULL);
}

/* Write column COL as a reply code, or null when there was no reply. */
static void
cmd_show_json_code(struct json_writer *w, sqlite3_stmt *stmt, int col)
{
	if (sqlite3_column_type(stmt, col) == SQLITE_NULL ||
	    sqlite3_column_int64(stmt, col) == 0)
		json_null(w);
	else
		json_int(w, sqlite3_column_int64(stmt, col));
}

static void
cmd_show_json_time(struct json_writer *w, int64_t t)
{
	char text[CLI_TIME_SIZE];

	time_format_rfc3339(t, text, sizeof(text));
	json_string(w, text);
}

static void
cmd_show_json_envelope(struct json_writer *w, const struct cmd_show_message *msg)
{
	int64_t next;

	json_key(w, "id");
	json_int(w, msg->id);
	json_key(w, "state");
	json_string(w, msg->state);
	json_key(w, "sender");
	json_string(w, msg->sender);
	json_key(w, "message_id");
	json_string(w, msg->message_id);
	json_key(w, "client");
	json_string(w, msg->client);
	json_key(w, "size");
	json_int(w, msg->size);
	json_key(w, "created");
	cmd_show_json_time(w, msg->created);
	json_key(w, "attempt_count");
	json_int(w, msg->attempt_count);

	json_key(w, "next_attempt");
	if (cli_next_attempt(msg->state, msg->next_attempt, msg->created, &next))
		cmd_show_json_time(w, next);
	else
		json_null(w);

	json_key(w, "last_error");
	json_string(w, msg->last_error != NULL && msg->last_error[0] != '\0' ?
	    msg->last_error : NULL);
	json_key(w, "sent_at");
	if (msg->has_sent_at)
		cmd_show_json_time(w, msg->sent_at);
	else
		json_null(w);
	json_key(w, "final_reply");
	json_string(w, msg->final_reply);
	json_key(w, "smarthost_queue_id");
	json_string(w, msg->queue_id);
	json_key(w, "body_purged");
	json_bool(w, msg->body_purged);
}

static int
cmd_show_json_recipients(struct cli *cli, struct json_writer *w, int64_t id)
{
	sqlite3_stmt *stmt;
	int rc;

	rc = cmd_show_prepare(cli, cmd_show_recipient_sql, id, &stmt);
	if (rc != EX_OK)
		return rc;

	json_key(w, "recipients");
	json_array_begin(w);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		json_object_begin(w);
		json_key(w, "address");
		json_string(w, cli_column_text(stmt, 0));
		json_key(w, "state");
		json_string(w, cli_column_text(stmt, 1));
		json_key(w, "code");
		cmd_show_json_code(w, stmt, 2);
		json_key(w, "status");
		cmd_show_json_text(w, stmt, 3);
		json_key(w, "text");
		cmd_show_json_text(w, stmt, 4);
		json_object_end(w);
	}

	if (rc == SQLITE_DONE) {
		json_array_end(w);
		rc = EX_OK;
	} else {
		rc = cmd_show_store_error(cli, id);
	}
	sqlite3_finalize(stmt);
	return rc;
}

static int
cmd_show_json_attempts(struct cli *cli, struct json_writer *w, int64_t id)
{
	sqlite3_stmt *stmt;
	int rc;

	rc = cmd_show_prepare(cli, cmd_show_attempt_sql, id, &stmt);
	if (rc != EX_OK)
		return rc;

	json_key(w, "attempts");
	json_array_begin(w);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		json_object_begin(w);
		json_key(w, "time");
		cmd_show_json_time(w, sqlite3_column_int64(stmt, 0));
		json_key(w, "host");
		cmd_show_json_text(w, stmt, 1);
		json_key(w, "code");
		cmd_show_json_code(w, stmt, 2);
		json_key(w, "status");
		cmd_show_json_text(w, stmt, 3);
		json_key(w, "text");
		cmd_show_json_text(w, stmt, 4);
		json_object_end(w);
	}

	if (rc == SQLITE_DONE) {
		json_array_end(w);
		rc = EX_OK;
	} else {
		rc = cmd_show_store_error(cli, id);
	}
	sqlite3_finalize(stmt);
	return rc;
}

/*
 * Write "body" when the message is valid UTF-8, else "body_base64". The
 * first pass over the chunks only checks the encoding, so neither pass
 * keeps more than one chunk in memory. The read transaction gives both
 * passes the same data.
 */
static int
cmd_show_json_body(struct cli *cli, struct json_writer *w, int64_t id)
{
	struct json_utf8_check check;
	sqlite3_stmt *stmt;
	const void *data;
	size_t len;
	bool utf8;
	int rc;

	rc = cmd_show_prepare(cli, cmd_show_chunk_sql, id, &stmt);
	if (rc != EX_OK)
		return rc;

	json_utf8_check_init(&check);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
		json_utf8_check_update(&check, sqlite3_column_blob(stmt, 0),
		    (size_t)sqlite3_column_bytes(stmt, 0));
	if (rc != SQLITE_DONE)
		goto fail;
	utf8 = json_utf8_check_finish(&check);
	sqlite3_reset(stmt);

	json_key(w, utf8 ? "body" : "body_base64");
	if (utf8)
		json_string_begin(w);
	else
		json_base64_begin(w);
	/* Stop at a write error such as a full disk; main() reports it. */
	rc = SQLITE_DONE;
	while (!ferror(stdout) && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		data = sqlite3_column_blob(stmt, 0);
		len = (size_t)sqlite3_column_bytes(stmt, 0);
		if (len == 0)
			continue;
		if (utf8)
			json_string_append(w, data, len);
		else
			json_base64_append(w, data, len);
	}
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		goto fail;
	if (utf8)
		json_string_end(w);
	else
		json_base64_end(w);

	sqlite3_finalize(stmt);
	return EX_OK;

fail:
	rc = cmd_show_store_error(cli, id);
	sqlite3_finalize(stmt);
	return rc;
}

/* After an error the document stays unfinished, so no parser accepts it. */
static int
cmd_show_json(struct cli *cli, const struct cmd_show_message *msg, bool body)
{
	struct json_writer *w = json_writer_new(stdout, JSON_PRETTY);
	int rc;

	json_object_begin(w);
	cmd_show_json_envelope(w, msg);
	rc = cmd_show_json_recipients(cli, w, msg->id);
	if (rc == EX_OK)
		rc = cmd_show_json_attempts(cli, w, msg->id);
	if (rc == EX_OK && body && msg->body_purged) {
		json_key(w, "body");
		json_null(w);
	} else if (rc == EX_OK && body) {
		rc = cmd_show_json_body(cli, w, msg->id);
	}
	if (rc == EX_OK)
		json_object_end(w);
	json_writer_free(w);
	return rc;
}

/* --- text --- */

static void
cmd_show_field(const char *label, const char *value)
{
	printf("%s:%*s%s\n", label, (int)(CMD_SHOW_LABEL_WIDTH - strlen(label) - 1),
	    "", value);
}

/* Print an untrusted value escaped, or "-" when it is NULL or empty. */
static void
cmd_show_field_text(const char *label, const char *value)
{
	char *text;

	if (value == NULL || value[0] == '\0') {
		cmd_show_field(label, "-");
		return;
	}
	text = cli_escape(value, strlen(value), 0, NULL);
	cmd_show_field(label, text);
	free(text);
}

static void
cmd_show_print_envelope(const struct cmd_show_message *msg, int64_t now)
{
	char time[CLI_TIME_SIZE], span[CLI_TIME_SIZE], line[128];
	int64_t next;

	snprintf(line, sizeof(line), "%" PRId64, msg->id);
	cmd_show_field("ID", line);
	cmd_show_field_text("State", msg->state);
	cmd_show_field_text("Sender", msg->sender[0] != '\0' ? msg->sender : "<>");

	time_format_rfc3339(msg->created, time, sizeof(time));
	cli_format_age(msg->created, now, span, sizeof(span));
	snprintf(line, sizeof(line), "%s (%s ago)", time, span);
	cmd_show_field("Created", line);

	snprintf(line, sizeof(line), "%" PRId64 " bytes", msg->size);
	cmd_show_field("Size", line);
	cmd_show_field_text("Message-ID", msg->message_id);
	cmd_show_field_text("Client", msg->client);
	snprintf(line, sizeof(line), "%" PRId64, msg->attempt_count);
	cmd_show_field("Attempts", line);

	if (cli_next_attempt(msg->state, msg->next_attempt, msg->created, &next)) {
		time_format_rfc3339(next, time, sizeof(time));
		cli_format_relative(next, now, span, sizeof(span));
		snprintf(line, sizeof(line), "%s (%s)", time, span);
		cmd_show_field("Next attempt", line);
	} else {
		cmd_show_field("Next attempt", "-");
	}

	cmd_show_field_text("Last error", msg->last_error);
	if (msg->has_sent_at) {
		time_format_rfc3339(msg->sent_at, time, sizeof(time));
		cmd_show_field("Sent at", time);
	} else {
		cmd_show_field("Sent at", "-");
	}
	cmd_show_field_text("Final reply", msg->final_reply);
	cmd_show_field_text("Smart host ID", msg->queue_id);
}

/*
 * Join the escaped reply in columns 2 to 4 (code, status, text), or
 * return "-" when there was none.
 */
static char *
cmd_show_reply(sqlite3_stmt *stmt)
{
	const char *parts[3];
	char code[24] = "", *out = xstrdup(""), *escaped, *joined;
	size_t i;

	if (sqlite3_column_int64(stmt, 2) != 0)
		snprintf(code, sizeof(code), "%" PRId64,
		    (int64_t)sqlite3_column_int64(stmt, 2));
	parts[0] = code;
	parts[1] = cli_column_text(stmt, 3);
	parts[2] = cli_column_text(stmt, 4);

	for (i = 0; i < 3; i++) {
		if (parts[i] == NULL || parts[i][0] == '\0')
			continue;
		escaped = cli_escape(parts[i], strlen(parts[i]), 0, NULL);
		joined = xasprintf("%s%s%s", out, out[0] != '\0' ? " " : "", escaped);
		free(escaped);
		free(out);
		out = joined;
	}

	if (out[0] == '\0') {
		free(out);
		out = xstrdup("-");
	}
	return out;
}

static void
cmd_show_rows_add(struct cmd_show_rows *rows, char *first, char *second,
    char *rest)
{
	struct cmd_show_row *row;

	rows->rows = xrealloc(rows->rows, (rows->count + 1) * sizeof(*rows->rows));
	row = &rows->rows[rows->count++];
	row->cells[0] = first;
	row->cells[1] = second;
	row->cells[2] = rest;
}

/* Print the rows indented under TITLE; frees them. */
static void
cmd_show_rows_print(struct cmd_show_rows *rows, const char *title)
{
	size_t widths[2] = { 0, 0 }, i, c;
	struct cmd_show_row *row;

	printf("\n%s:\n", title);
	if (rows->count == 0)
		printf("  none\n");

	for (i = 0; i < rows->count; i++)
		for (c = 0; c < 2; c++)
			if (rows->rows[i].widths[c] > widths[c])
				widths[c] = rows->rows[i].widths[c];

	for (i = 0; i < rows->count; i++) {
		row = &rows->rows[i];
		printf("  %s%*s  %s%*s  %s\n",
		    row->cells[0], (int)(widths[0] - row->widths[0]), "",
		    row->cells[1], (int)(widths[1] - row->widths[1]), "",
		    row->cells[2]);
		for (c = 0; c < 3; c++)
			free(row->cells[c]);
	}
	free(rows->rows);
	rows->rows = NULL;
	rows->count = 0;
}

static void
cmd_show_rows_free(struct cmd_show_rows *rows)
{
	size_t i, c;

	for (i = 0; i < rows->count; i++)
		for (c = 0; c < 3; c++)
			free(rows->rows[i].cells[c]);
	free(rows->rows);
}

/* Print the recipients, or with ATTEMPTS the attempt history. */
static int
cmd_show_print_rows(struct cli *cli, int64_t id, bool attempts)
{
	const char *sql = attempts ? cmd_show_attempt_sql : cmd_show_recipient_sql;
	struct cmd_show_rows rows = { NULL, 0 };
	char time[CLI_TIME_SIZE], *first, *second;
	const char *text;
	sqlite3_stmt *stmt;
	size_t widths[2];
	int rc;

	rc = cmd_show_prepare(cli, sql, id, &stmt);
	if (rc != EX_OK)
		return rc;

	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (attempts) {
			time_format_rfc3339(sqlite3_column_int64(stmt, 0), time,
			    sizeof(time));
			first = xstrdup(time);
			widths[0] = strlen(first);
		} else {
			text = cli_column_text(stmt, 0);
			first = cli_escape(text ? text : "", text ? strlen(text) : 0,
			    0, &widths[0]);
		}
		text = cli_column_text(stmt, 1);
		second = cli_escape(text ? text : "-", text ? strlen(text) : 1, 0,
		    &widths[1]);
		cmd_show_rows_add(&rows, first, second, cmd_show_reply(stmt));
		memcpy(rows.rows[rows.count - 1].widths, widths, sizeof(widths));
	}

	if (rc == SQLITE_DONE) {
		cmd_show_rows_print(&rows, attempts ? "Attempts" : "Recipients");
		rc = EX_OK;
	} else {
		cmd_show_rows_free(&rows);
		rc = cmd_show_store_error(cli, id);
	}
	sqlite3_finalize(stmt);
	return rc;
}

/*
 * Return the length of the header block, which is the text before the
 * first empty line (LF or CRLF). FROM is where new data starts in BUF.
 */
static size_t
cmd_show_header_end(const char *buf, size_t len, size_t from, bool *found)
{
	size_t p = from >= 2 ? from - 2 : 0;

	for (; p < len; p++) {
		if (p > 0 && buf[p - 1] != '\n')
			continue;
		if (buf[p] == '\n' ||
		    (buf[p] == '\r' && p + 1 < len && buf[p + 1] == '\n')) {
			*found = true;
			return p;
		}
	}
	*found = false;
	return len;
}

static int
cmd_show_print_header(struct cli *cli, int64_t id)
{
	struct cli_text_output out;
	sqlite3_stmt *stmt;
	char *buf;
	size_t len = 0, end = 0, n;
	bool found = false;
	int rc;

	rc = cmd_show_prepare(cli, cmd_show_chunk_sql, id, &stmt);
	if (rc != EX_OK)
		return rc;

	/* Collect chunks up to the empty line after the header block, or up to the cap. */
	buf = xmalloc(CMD_SHOW_HEADER_MAX);
	while (!found && len < CMD_SHOW_HEADER_MAX &&
	    (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		n = (size_t)sqlite3_column_bytes(stmt, 0);
		if (n > CMD_SHOW_HEADER_MAX - len)
			n = CMD_SHOW_HEADER_MAX - len;
		if (n > 0)
			memcpy(buf + len, sqlite3_column_blob(stmt, 0), n);
		end = cmd_show_header_end(buf, len + n, len, &found);
		len += n;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		free(buf);
		sqlite3_finalize(stmt);
		return cmd_show_store_error(cli, id);
	}

	printf("\nHeader:\n");
	cli_text_begin(&out, stdout);
	cli_text_write(&out, buf, end);
	cli_text_end(&out);
	if (end > 0 && buf[end - 1] != '\n')
		putchar('\n');
	if (!found && len == CMD_SHOW_HEADER_MAX)
		printf("[header block cut at %d KiB, use --body to see all of it]\n",
		    CMD_SHOW_HEADER_MAX / 1024);

	free(buf);
	sqlite3_finalize(stmt);
	return EX_OK;
}

static int
cmd_show_print_body(struct cli *cli, int64_t id)
{
	struct cli_text_output out;
	sqlite3_stmt *stmt;
	const char *data;
	char last = '\n';
	size_t len;
	int rc;

	rc = cmd_show_prepare(cli, cmd_show_chunk_sql, id, &stmt);
	if (rc != EX_OK)
		return rc;

	printf("\nMessage:\n");
	cli_text_begin(&out, stdout);
	rc = SQLITE_DONE;
	while (!ferror(stdout) && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		data = sqlite3_column_blob(stmt, 0);
		len = (size_t)sqlite3_column_bytes(stmt, 0);
		if (len == 0)
			continue;
		cli_text_write(&out, data, len);
		last = data[len - 1];
	}
	cli_text_end(&out);
	if (last != '\n')
		putchar('\n');

	rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? EX_OK :
	    cmd_show_store_error(cli, id);
	sqlite3_finalize(stmt);
	return rc;
}

static int
cmd_show_text(struct cli *cli, const struct cmd_show_message *msg, bool body)
{
	int rc;

	cmd_show_print_envelope(msg, now_seconds());
	rc = cmd_show_print_rows(cli, msg->id, false);
	if (rc == EX_OK)
		rc = cmd_show_print_rows(cli, msg->id, true);
	if (rc == EX_OK && msg->body_purged)
		printf("\nThe message text was removed after queue.keep_sent; "
		    "the record above stays until queue.keep_history.\n");
	else if (rc == EX_OK && body)
		rc = cmd_show_print_body(cli, msg->id);
	else if (rc == EX_OK)
		rc = cmd_show_print_header(cli, msg->id);
	return rc;
}

/* --- command --- */

static int
cmd_show_run(struct cli *cli, const char *id_text, bool json, bool body)
{
	struct cmd_show_message msg;
	int64_t id;
	int rc;

	if (!cli_parse_id(id_text, &id))
		return cmd_show_not_found(cli, id_text);

	rc = cli_open_store(cli, QUEUE_STORE_READONLY);
	if (rc != EX_OK)
		return rc;
	rc = cli_read_begin(cli);
	if (rc != EX_OK)
		return rc;

	memset(&msg, 0, sizeof(msg));
	rc = cmd_show_load(cli, id, id_text, &msg);
	if (rc == EX_OK && json)
		rc = cmd_show_json(cli, &msg, body);
	else if (rc == EX_OK)
		rc = cmd_show_text(cli, &msg, body);

	cmd_show_message_clear(&msg);
	cli_read_end(cli);
	return rc;
}

int
cmd_show(struct cli *cli, int argc, char **argv)
{
	bool json = false, body = false;
	char *text;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, ":h", cmd_show_options,
	    NULL)) != -1) {
		switch (opt) {
		case 'j':
			json = true;
			break;
		case 'b':
			body = true;
			break;
		case 'h':
			return cli_usage(cli, "show");
		default:
			return cli_option_error(cli, "show", opt, argv);
		}
	}

	if (optind >= argc)
		return cli_usage_error(cli, "show", "missing message ID");
	if (optind + 1 < argc) {
		text = cli_escape(argv[optind + 1], strlen(argv[optind + 1]), 64,
		    NULL);
		rc = cli_usage_error(cli, "show", "unexpected argument '%s'", text);
		free(text);
		return rc;
	}
	return cmd_show_run(cli, argv[optind], json, body);
}
