/*
 * Queue administration on SQLite; the contract is in queue_admin.h.
 *
 * Changes made for an admin commit with synchronous=FULL, like every
 * other commit that someone relies on: a hold that a power loss undoes
 * could let a message go out. Statistics and history read in one read
 * transaction, which in WAL mode does not block relayqd's writes.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "queue_admin.h"
#include "util.h"

/* Messages changed per transaction by the bulk forms: each batch is short. */
#define QUEUE_ADMIN_BATCH 200

/* Queue ids longer than this are not taken from a reply. */
#define QUEUE_ADMIN_QUEUE_ID_MAX 128

/* The relay status and error last read or written by this process. */
static struct {
	bool known;
	char *status;
	char *error;
} queue_admin_relay_last;

static const char *const queue_admin_relay_names[] = {
	[QUEUE_ADMIN_RELAY_OK] = "ok",
	[QUEUE_ADMIN_RELAY_DEFERRING] = "deferring",
	[QUEUE_ADMIN_RELAY_AUTH_FAILING] = "auth failing",
};

/* --- errors and transactions --- */

/*
 * Describe the failed SQLite call on DB with WHAT. Returns
 * QUEUE_ADMIN_BUSY when the database was locked, -1 otherwise.
 */
static int
queue_admin_fail(sqlite3 *db, char **errstr, const char *what)
{
	int code = sqlite3_errcode(db) & 0xff;
	const char *path = sqlite3_db_filename(db, "main");

	if (path == NULL || path[0] == '\0')
		path = "(unknown)";
	if (code == SQLITE_BUSY || code == SQLITE_LOCKED) {
		set_error(errstr, "%s: the queue %s is busy; try again", what, path);
		return QUEUE_ADMIN_BUSY;
	}
	if (code == SQLITE_READONLY || code == SQLITE_PERM ||
	    code == SQLITE_CANTOPEN) {
		set_error(errstr, "%s: the queue %s is not writable (%s); run as "
		    "the user of relayqd or as root", what, path, sqlite3_errmsg(db));
		return -1;
	}
	set_error(errstr, "%s: queue %s: %s", what, path, sqlite3_errmsg(db));
	return -1;
}

static int
queue_admin_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **stmt,
    char **errstr)
{
	if (sqlite3_prepare_v2(db, sql, -1, stmt, NULL) != SQLITE_OK) {
		*stmt = NULL;
		return queue_admin_fail(db, errstr, "cannot prepare a query");
	}
	return 0;
}

/* Start a write transaction whose commit reaches the disk. */
static int
queue_admin_begin(sqlite3 *db, char **errstr)
{
	int rc;

	if (sqlite3_exec(db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) !=
	    SQLITE_OK)
		return queue_admin_fail(db, errstr, "cannot change the queue");
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		rc = queue_admin_fail(db, errstr, "cannot change the queue");
		sqlite3_exec(db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
		return rc;
	}
	return 0;
}

/* Commit when RC is 0, else roll back. Returns RC, or the commit's failure. */
static int
queue_admin_end(sqlite3 *db, int rc, char **errstr)
{
	if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = queue_admin_fail(db, errstr, "cannot commit the change");
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_exec(db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
	return rc;
}

static int
queue_admin_read_begin(sqlite3 *db, char **errstr)
{
	if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return queue_admin_fail(db, errstr, "cannot read the queue");
	return 0;
}

static void
queue_admin_read_end(sqlite3 *db)
{
	/* A read transaction has nothing to commit, so a failure changes nothing. */
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
}

static char *
queue_admin_column_strdup(sqlite3_stmt *stmt, int col)
{
	const unsigned char *text = sqlite3_column_text(stmt, col);

	return text != NULL ? xstrdup((const char *)text) : NULL;
}

/* --- state changes --- */

const char *
queue_admin_action_done(enum queue_admin_action action)
{
	switch (action) {
	case QUEUE_ADMIN_HOLD:
		return "held";
	case QUEUE_ADMIN_RELEASE:
		return "released";
	case QUEUE_ADMIN_RETRY:
		return "queued";
	case QUEUE_ADMIN_DELETE:
		return "deleted";
	}
	return "changed";
}

bool
queue_admin_action_applies(enum queue_admin_action action, enum msg_state state)
{
	switch (action) {
	case QUEUE_ADMIN_HOLD:
		return state == MSG_QUEUED || state == MSG_DEFERRED ||
		    state == MSG_UNCERTAIN || state == MSG_FAILED;
	case QUEUE_ADMIN_RELEASE:
		return state == MSG_HELD;
	case QUEUE_ADMIN_RETRY:
		return state == MSG_DEFERRED || state == MSG_UNCERTAIN ||
		    state == MSG_FAILED;
	case QUEUE_ADMIN_DELETE:
		return state != MSG_SENDING && state != MSG_RECEIVING;
	}
	return false;
}

/* The state that ACTION leaves a message in, or -1 for a deletion. */
static int
queue_admin_target(enum queue_admin_action action)
{
	switch (action) {
	case QUEUE_ADMIN_HOLD:
		return MSG_HELD;
	case QUEUE_ADMIN_RELEASE:
	case QUEUE_ADMIN_RETRY:
		return MSG_QUEUED;
	case QUEUE_ADMIN_DELETE:
		break;
	}
	return -1;
}

static unsigned int
queue_admin_applicable_states(enum queue_admin_action action)
{
	unsigned int states = 0;
	int s;

	for (s = 0; s < MSG_STATE_COUNT; s++)
		if (queue_admin_action_applies(action, (enum msg_state)s))
			states |= QUEUE_ADMIN_STATE(s);
	return states;
}

/*
 * Read the state of message ID. Returns 1 with *STATE set, 0 when there
 * is no such message (or it is still being received), or an error.
 */
static int
queue_admin_read_state(sqlite3 *db, int64_t id, enum msg_state *state,
    char **errstr)
{
	sqlite3_stmt *stmt;
	const char *text;
	int rc, step;

	rc = queue_admin_prepare(db, "SELECT state FROM message WHERE id = ?1",
	    &stmt, errstr);
	if (rc != 0)
		return rc;
	sqlite3_bind_int64(stmt, 1, id);

	step = sqlite3_step(stmt);
	if (step == SQLITE_ROW) {
		text = (const char *)sqlite3_column_text(stmt, 0);
		if (text == NULL || msg_state_parse(text, state) == -1)
			rc = set_error(errstr, "message %lld has the unknown state "
			    "'%s'; the queue was written by another relayq version",
			    (long long)id, text != NULL ? text : "");
		else
			rc = *state == MSG_RECEIVING ? 0 : 1;
	} else if (step == SQLITE_DONE) {
		rc = 0;
	} else {
		rc = queue_admin_fail(db, errstr, "cannot read a message");
	}
	sqlite3_finalize(stmt);
	return rc;
}

/* Run SQL with ?1 = ID, ?2 = the state name FROM and ?3 = NOW; *CHANGES gets the rows changed. */
static int
queue_admin_run(sqlite3 *db, const char *sql, int64_t id, enum msg_state from,
    int64_t now, int *changes, char **errstr)
{
	sqlite3_stmt *stmt;
	int rc;

	rc = queue_admin_prepare(db, sql, &stmt, errstr);
	if (rc != 0)
		return rc;
	if (sqlite3_bind_parameter_count(stmt) >= 1)
		sqlite3_bind_int64(stmt, 1, id);
	if (sqlite3_bind_parameter_count(stmt) >= 2)
		sqlite3_bind_text(stmt, 2, msg_state_name(from), -1, SQLITE_STATIC);
	if (sqlite3_bind_parameter_count(stmt) >= 3)
		sqlite3_bind_int64(stmt, 3, now);

	if (sqlite3_step(stmt) != SQLITE_DONE)
		rc = queue_admin_fail(db, errstr, "cannot change a message");
	else if (changes != NULL)
		*changes = sqlite3_changes(db);
	sqlite3_finalize(stmt);
	return rc;
}

static int
queue_admin_delete(sqlite3 *db, int64_t id, enum msg_state from, int *changes,
    char **errstr)
{
	static const char *const children[] = {
		"DELETE FROM chunk WHERE message = ?1",
		"DELETE FROM recipient WHERE message = ?1",
		"DELETE FROM attempt WHERE message = ?1",
	};
	size_t i;
	int rc;

	rc = queue_admin_run(db, "DELETE FROM message WHERE id = ?1 AND state = ?2",
	    id, from, 0, changes, errstr);
	for (i = 0; i < sizeof(children) / sizeof(children[0]) && rc == 0 &&
	    *changes == 1; i++)
		rc = queue_admin_run(db, children[i], id, from, 0, NULL, errstr);
	return rc;
}

/* Apply ACTION to message ID in state FROM, inside the open transaction. */
static int
queue_admin_change(sqlite3 *db, enum queue_admin_action action, int64_t id,
    enum msg_state from, int64_t now, int *changes, char **errstr)
{
	int rc;

	switch (action) {
	case QUEUE_ADMIN_HOLD:
		return queue_admin_run(db, "UPDATE message SET state = 'held' "
		    "WHERE id = ?1 AND state = ?2", id, from, now, changes, errstr);
	case QUEUE_ADMIN_RELEASE:
	case QUEUE_ADMIN_RETRY:
		rc = queue_admin_run(db, "UPDATE message SET state = 'queued', "
		    "next_attempt = ?3 WHERE id = ?1 AND state = ?2", id, from, now,
		    changes, errstr);
		if (rc != 0 || *changes != 1)
			return rc;
		/*
		 * Only pending recipients are sent to. A message without any
		 * (a failed one) would otherwise go straight back to failed.
		 */
		return queue_admin_run(db, "UPDATE recipient SET state = 'pending' "
		    "WHERE message = ?1 AND state = 'failed' AND NOT EXISTS "
		    "(SELECT 1 FROM recipient WHERE message = ?1 AND state = 'pending')",
		    id, from, now, NULL, errstr);
	case QUEUE_ADMIN_DELETE:
		return queue_admin_delete(db, id, from, changes, errstr);
	}
	return set_error(errstr, "internal error: unknown admin action %d",
	    (int)action);
}

/*
 * Apply ACTION to message ID inside an open transaction, when its state
 * is in ALLOWED.
 */
static int
queue_admin_apply_one(sqlite3 *db, enum queue_admin_action action, int64_t id,
    unsigned int allowed, int64_t now, enum queue_admin_result *result,
    enum msg_state *state, char **errstr)
{
	int rc, changes = 0;

	rc = queue_admin_read_state(db, id, state, errstr);
	if (rc < 0)
		return rc;
	if (rc == 0) {
		*result = QUEUE_ADMIN_NOT_FOUND;
		return 0;
	}

	if (*state == MSG_SENDING)
		*result = QUEUE_ADMIN_SENDING;
	else if ((int)*state == queue_admin_target(action))
		*result = QUEUE_ADMIN_UNCHANGED;
	else if (!(allowed & QUEUE_ADMIN_STATE(*state)) ||
	    !queue_admin_action_applies(action, *state))
		*result = QUEUE_ADMIN_WRONG_STATE;
	else
		*result = QUEUE_ADMIN_CHANGED;
	if (*result != QUEUE_ADMIN_CHANGED)
		return 0;

	rc = queue_admin_change(db, action, id, *state, now, &changes, errstr);
	if (rc == 0 && changes != 1)
		rc = set_error(errstr, "message %lld changed while it was being "
		    "updated; try again", (long long)id);
	return rc;
}

int
queue_admin_apply(struct queue_store *qs, enum queue_admin_action action,
    int64_t id, int64_t now, enum queue_admin_result *result,
    enum msg_state *state, char **errstr)
{
	sqlite3 *db = queue_store_db(qs);
	int rc;

	rc = queue_admin_begin(db, errstr);
	if (rc != 0)
		return rc;
	rc = queue_admin_apply_one(db, action, id,
	    queue_admin_applicable_states(action), now, result, state, errstr);
	return queue_admin_end(db, rc, errstr);
}

/* Append to BUF the SQL list of the state names in STATES: 'queued','held'. */
static void
queue_admin_state_list(unsigned int states, char *buf, size_t size)
{
	size_t len = 0;
	int s;

	buf[0] = '\0';
	for (s = 0; s < MSG_STATE_COUNT; s++) {
		if (!(states & QUEUE_ADMIN_STATE(s)))
			continue;
		len += (size_t)snprintf(buf + len, size - len, "%s'%s'",
		    len > 0 ? "," : "", msg_state_name((enum msg_state)s));
		if (len >= size)
			fatal("queue_admin_state_list: buffer too small");
	}
}

/* Collect the ids of the messages in STATES, oldest first. */
static int
queue_admin_select_ids(sqlite3 *db, unsigned int states, int64_t **ids,
    size_t *count, char **errstr)
{
	char list[256], *sql;
	sqlite3_stmt *stmt;
	size_t cap = 0;
	int rc, step;

	*ids = NULL;
	*count = 0;
	queue_admin_state_list(states, list, sizeof(list));
	sql = xasprintf("SELECT id FROM message WHERE state IN (%s) ORDER BY id",
	    list);
	rc = queue_admin_prepare(db, sql, &stmt, errstr);
	free(sql);
	if (rc != 0)
		return rc;

	while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (*count == cap) {
			cap = cap == 0 ? 256 : cap * 2;
			*ids = xrealloc(*ids, cap * sizeof(**ids));
		}
		(*ids)[(*count)++] = sqlite3_column_int64(stmt, 0);
	}
	if (step != SQLITE_DONE) {
		rc = queue_admin_fail(db, errstr, "cannot list messages");
		free(*ids);
		*ids = NULL;
		*count = 0;
	}
	sqlite3_finalize(stmt);
	return rc;
}

static int
queue_admin_count_state(sqlite3 *db, enum msg_state state, int64_t *count,
    char **errstr)
{
	sqlite3_stmt *stmt;
	int rc;

	rc = queue_admin_prepare(db, "SELECT count(*) FROM message WHERE state = ?1",
	    &stmt, errstr);
	if (rc != 0)
		return rc;
	sqlite3_bind_text(stmt, 1, msg_state_name(state), -1, SQLITE_STATIC);
	if (sqlite3_step(stmt) == SQLITE_ROW)
		*count = sqlite3_column_int64(stmt, 0);
	else
		rc = queue_admin_fail(db, errstr, "cannot count messages");
	sqlite3_finalize(stmt);
	return rc;
}

/* Apply ACTION to IDS in batches, each in its own transaction. */
static int
queue_admin_apply_ids(sqlite3 *db, enum queue_admin_action action,
    const int64_t *ids, size_t count, unsigned int allowed, int64_t now,
    struct queue_admin_counts *counts, char **errstr)
{
	struct queue_admin_counts batch;
	enum queue_admin_result result;
	enum msg_state state;
	size_t i, j, end;
	int rc = 0;

	for (i = 0; i < count && rc == 0; i = end) {
		end = i + QUEUE_ADMIN_BATCH < count ? i + QUEUE_ADMIN_BATCH : count;
		rc = queue_admin_begin(db, errstr);
		if (rc != 0)
			break;

		memset(&batch, 0, sizeof(batch));
		for (j = i; j < end && rc == 0; j++) {
			rc = queue_admin_apply_one(db, action, ids[j], allowed, now,
			    &result, &state, errstr);
			if (rc != 0)
				break;
			if (result == QUEUE_ADMIN_CHANGED)
				batch.changed++;
			else if (result == QUEUE_ADMIN_SENDING)
				batch.sending++;
			else
				batch.vanished++;
		}
		rc = queue_admin_end(db, rc, errstr);
		if (rc == 0) {
			counts->changed += batch.changed;
			counts->sending += batch.sending;
			counts->vanished += batch.vanished;
		}
	}
	return rc;
}

int
queue_admin_apply_all(struct queue_store *qs, enum queue_admin_action action,
    unsigned int states, int64_t now, struct queue_admin_counts *counts,
    char **errstr)
{
	sqlite3 *db = queue_store_db(qs);
	unsigned int applicable = queue_admin_applicable_states(action);
	int64_t *ids = NULL, sending = 0;
	size_t count = 0;
	int rc;

	memset(counts, 0, sizeof(*counts));
	if (states == 0)
		states = applicable;
	states &= applicable;
	if (states == 0)
		return 0;

	rc = queue_admin_read_begin(db, errstr);
	if (rc != 0)
		return rc;
	rc = queue_admin_select_ids(db, states, &ids, &count, errstr);
	if (rc == 0 && action == QUEUE_ADMIN_HOLD && states == applicable)
		rc = queue_admin_count_state(db, MSG_SENDING, &sending, errstr);
	queue_admin_read_end(db);

	if (rc == 0)
		rc = queue_admin_apply_ids(db, action, ids, count, states, now,
		    counts, errstr);
	counts->sending += sending;
	free(ids);
	return rc;
}

int
queue_admin_flush(struct queue_store *qs, bool include_uncertain, int64_t now,
    struct queue_admin_counts *counts, int64_t *left, char **errstr)
{
	unsigned int states = QUEUE_ADMIN_STATE(MSG_DEFERRED);
	int rc;

	*left = 0;
	if (include_uncertain)
		states |= QUEUE_ADMIN_STATE(MSG_UNCERTAIN);
	rc = queue_admin_apply_all(qs, QUEUE_ADMIN_RETRY, states, now, counts,
	    errstr);
	if (rc == 0 && !include_uncertain)
		rc = queue_admin_count_state(queue_store_db(qs), MSG_UNCERTAIN, left,
		    errstr);
	return rc;
}

/* --- statistics --- */

static int
queue_admin_stats_states(sqlite3 *db, struct queue_admin_stats *stats,
    char **errstr)
{
	enum msg_state state;
	sqlite3_stmt *stmt;
	const char *name;
	int rc, step;

	rc = queue_admin_prepare(db, "SELECT state, count(*) FROM message "
	    "GROUP BY state", &stmt, errstr);
	if (rc != 0)
		return rc;
	while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
		name = (const char *)sqlite3_column_text(stmt, 0);
		if (name != NULL && msg_state_parse(name, &state) == 0 &&
		    state != MSG_RECEIVING)
			stats->states[state] = sqlite3_column_int64(stmt, 1);
	}
	if (step != SQLITE_DONE)
		rc = queue_admin_fail(db, errstr, "cannot count messages");
	sqlite3_finalize(stmt);
	return rc;
}

/*
 * Ids grow with arrival time, so the lowest id is the oldest message.
 * The unary plus keeps SQLite from using the state index, which would
 * sort every queued row; walking the rowid stops at the first match.
 */
static int
queue_admin_stats_oldest(sqlite3 *db, struct queue_admin_stats *stats,
    char **errstr)
{
	sqlite3_stmt *stmt;
	int rc, step;

	rc = queue_admin_prepare(db, "SELECT id, created FROM message "
	    "WHERE +state IN ('queued', 'deferred') ORDER BY id LIMIT 1",
	    &stmt, errstr);
	if (rc != 0)
		return rc;
	step = sqlite3_step(stmt);
	if (step == SQLITE_ROW) {
		stats->has_oldest = true;
		stats->oldest_id = sqlite3_column_int64(stmt, 0);
		stats->oldest_created = sqlite3_column_int64(stmt, 1);
	} else if (step != SQLITE_DONE) {
		rc = queue_admin_fail(db, errstr, "cannot find the oldest message");
	}
	sqlite3_finalize(stmt);
	return rc;
}

static int
queue_admin_stats_sent(sqlite3 *db, int64_t now, struct queue_admin_stats *stats,
    char **errstr)
{
	sqlite3_stmt *stmt;
	int rc;

	rc = queue_admin_prepare(db, "SELECT count(*), "
	    "coalesce(sum(sent_at >= ?1), 0) FROM message "
	    "WHERE state = 'sent' AND sent_at >= ?2", &stmt, errstr);
	if (rc != 0)
		return rc;
	sqlite3_bind_int64(stmt, 1, now - 3600);
	sqlite3_bind_int64(stmt, 2, now - 24 * 3600);
	if (sqlite3_step(stmt) == SQLITE_ROW) {
		stats->sent_last_day = sqlite3_column_int64(stmt, 0);
		stats->sent_last_hour = sqlite3_column_int64(stmt, 1);
	} else {
		rc = queue_admin_fail(db, errstr, "cannot count sent messages");
	}
	sqlite3_finalize(stmt);
	return rc;
}

/* Join "code status text" of columns COL to COL + 2; the text alone when there was no reply. */
static char *
queue_admin_reply_text(sqlite3_stmt *stmt, int col)
{
	const char *status = (const char *)sqlite3_column_text(stmt, col + 1);
	const char *text = (const char *)sqlite3_column_text(stmt, col + 2);
	int64_t code = sqlite3_column_int64(stmt, col);

	if (text == NULL)
		text = "";
	if (code == 0)
		return xstrdup(text);
	if (status == NULL || status[0] == '\0')
		return xasprintf("%lld %s", (long long)code, text);
	return xasprintf("%lld %s %s", (long long)code, status, text);
}

/*
 * A failed attempt has no reply code (connection, TLS, timeout) or one of
 * 400 and above; the latest by id is the last error.
 */
static int
queue_admin_stats_last_error(sqlite3 *db, struct queue_admin_stats *stats,
    char **errstr)
{
	sqlite3_stmt *stmt;
	int rc, step;

	rc = queue_admin_prepare(db, "SELECT time, message, host, code, status, text "
	    "FROM attempt WHERE code IS NULL OR code = 0 OR code >= 400 "
	    "ORDER BY id DESC LIMIT 1", &stmt, errstr);
	if (rc != 0)
		return rc;
	step = sqlite3_step(stmt);
	if (step == SQLITE_ROW) {
		stats->has_last_error = true;
		stats->last_error_time = sqlite3_column_int64(stmt, 0);
		stats->last_error_message = sqlite3_column_int64(stmt, 1);
		stats->last_error_host = queue_admin_column_strdup(stmt, 2);
		stats->last_error_text = queue_admin_reply_text(stmt, 3);
	} else if (step != SQLITE_DONE) {
		rc = queue_admin_fail(db, errstr, "cannot read the attempts");
	}
	sqlite3_finalize(stmt);
	return rc;
}

/* The relay status rows of the meta table; absent ones stay NULL. */
struct queue_admin_meta {
	char *status;
	char *time;
	char *error;
};

static int
queue_admin_read_meta(sqlite3 *db, struct queue_admin_meta *meta, char **errstr)
{
	sqlite3_stmt *stmt;
	const char *key;
	char **field;
	int rc, step;

	rc = queue_admin_prepare(db, "SELECT key, value FROM meta WHERE key IN "
	    "('relay_status', 'relay_status_time', 'relay_error')", &stmt, errstr);
	if (rc != 0)
		return rc;
	while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
		key = (const char *)sqlite3_column_text(stmt, 0);
		if (key == NULL)
			continue;
		if (strcmp(key, "relay_status") == 0)
			field = &meta->status;
		else if (strcmp(key, "relay_status_time") == 0)
			field = &meta->time;
		else
			field = &meta->error;
		free(*field);
		*field = queue_admin_column_strdup(stmt, 1);
	}
	if (step != SQLITE_DONE)
		rc = queue_admin_fail(db, errstr, "cannot read the relay status");
	sqlite3_finalize(stmt);
	return rc;
}

/* The latest attempt: 1 with its time and whether it failed temporarily, 0 when none. */
static int
queue_admin_latest_attempt(sqlite3 *db, int64_t *time, bool *temporary,
    char **text, char **errstr)
{
	sqlite3_stmt *stmt;
	int64_t code;
	int rc, step;

	rc = queue_admin_prepare(db, "SELECT time, code, status, text FROM attempt "
	    "ORDER BY id DESC LIMIT 1", &stmt, errstr);
	if (rc != 0)
		return rc;
	step = sqlite3_step(stmt);
	if (step == SQLITE_ROW) {
		*time = sqlite3_column_int64(stmt, 0);
		code = sqlite3_column_int64(stmt, 1);
		*temporary = code == 0 || (code >= 400 && code < 500);
		*text = queue_admin_reply_text(stmt, 1);
		rc = 1;
	} else if (step != SQLITE_DONE) {
		rc = queue_admin_fail(db, errstr, "cannot read the attempts");
	}
	sqlite3_finalize(stmt);
	return rc;
}

/*
 * Decide the smart host status. "auth failing" comes only from relayqd's
 * record, because an attempt record does not show the stage that failed.
 * Otherwise the latest attempt decides, because relayqd records a status
 * only when a session ends or a message is sent. A temporary failure
 * means "deferring". Anything else (a 2xx, or a 5xx for one message)
 * shows that the smart host replies, so it means "ok".
 */
static int
queue_admin_stats_relay(sqlite3 *db, struct queue_admin_stats *stats,
    char **errstr)
{
	struct queue_admin_meta meta = { NULL, NULL, NULL };
	char *attempt_text = NULL;
	int64_t attempt_time = 0;
	bool temporary = false;
	int rc, found;

	rc = queue_admin_read_meta(db, &meta, errstr);
	if (rc != 0)
		goto done;
	found = queue_admin_latest_attempt(db, &attempt_time, &temporary,
	    &attempt_text, errstr);
	if (found < 0) {
		rc = found;
		goto done;
	}

	if (meta.status != NULL && strcmp(meta.status, "auth failing") == 0) {
		stats->relay_status = xstrdup(meta.status);
		stats->relay_error = meta.error != NULL && meta.error[0] != '\0' ?
		    xstrdup(meta.error) : NULL;
	} else if (found && temporary) {
		stats->relay_status = xstrdup("deferring");
		stats->relay_error = attempt_text;
		attempt_text = NULL;
	} else if (found) {
		stats->relay_status = xstrdup("ok");
	} else if (meta.status != NULL) {
		stats->relay_status = xstrdup(meta.status);
		if (meta.error != NULL && meta.error[0] != '\0')
			stats->relay_error = xstrdup(meta.error);
	} else {
		stats->relay_status = xstrdup("unknown");
	}

	/* The recorded time is the start of the status, when it records the same one. */
	if (meta.status != NULL && meta.time != NULL &&
	    strcmp(meta.status, stats->relay_status) == 0) {
		stats->has_relay_since = true;
		stats->relay_since = strtoll(meta.time, NULL, 10);
	} else if (found) {
		stats->has_relay_since = true;
		stats->relay_since = attempt_time;
	}

done:
	free(attempt_text);
	free(meta.status);
	free(meta.time);
	free(meta.error);
	return rc;
}

int
queue_admin_stats(struct queue_store *qs, int64_t now,
    struct queue_admin_stats *stats, char **errstr)
{
	sqlite3 *db = queue_store_db(qs);
	int rc;

	memset(stats, 0, sizeof(*stats));
	rc = queue_admin_read_begin(db, errstr);
	if (rc != 0)
		return rc;

	rc = queue_admin_stats_states(db, stats, errstr);
	if (rc == 0)
		rc = queue_admin_stats_oldest(db, stats, errstr);
	if (rc == 0)
		rc = queue_admin_stats_sent(db, now, stats, errstr);
	if (rc == 0)
		rc = queue_admin_stats_last_error(db, stats, errstr);
	if (rc == 0)
		rc = queue_admin_stats_relay(db, stats, errstr);

	queue_admin_read_end(db);
	if (rc != 0)
		queue_admin_stats_clear(stats);
	return rc;
}

void
queue_admin_stats_clear(struct queue_admin_stats *stats)
{
	free(stats->last_error_host);
	free(stats->last_error_text);
	free(stats->relay_status);
	free(stats->relay_error);
	memset(stats, 0, sizeof(*stats));
}

/* --- history --- */

char *
queue_admin_like_pattern(const char *text)
{
	char *out = xmalloc(strlen(text) * 2 + 3), *o = out;

	*o++ = '%';
	for (; *text != '\0'; text++) {
		if (*text == '%' || *text == '_' || *text == '\\')
			*o++ = '\\';
		*o++ = *text;
	}
	*o++ = '%';
	*o = '\0';
	return out;
}

/*
 * The query for FILTER. The parameters are ?1 the --to pattern, ?2 the
 * --from pattern, ?3 the message id, ?4 since, ?5 until and ?6 the row
 * limit. "+m.state" keeps SQLite from the state index, so that it walks
 * the table newest first and stops at the limit instead of sorting every
 * sent message. The recipient filter reads the recipient table once,
 * which is several times faster than a lookup per message.
 */
static char *
queue_admin_history_sql(const struct queue_admin_history_filter *filter)
{
	return xasprintf("SELECT m.id, m.sender, m.message_id, m.size, m.created,"
	    " m.sent_at, m.final_reply,"
	    " NOT EXISTS (SELECT 1 FROM chunk WHERE chunk.message = m.id)"
	    " FROM message AS m WHERE +m.state = 'sent'%s%s%s%s%s"
	    " ORDER BY m.id DESC LIMIT ?6",
	    filter->to != NULL ? " AND m.id IN (SELECT message FROM recipient"
	    " WHERE address LIKE ?1 ESCAPE '\\')" : "",
	    filter->from != NULL ? " AND m.sender LIKE ?2 ESCAPE '\\'" : "",
	    filter->message_id != NULL ? " AND m.message_id = ?3" : "",
	    filter->has_since ? " AND m.sent_at >= ?4" : "",
	    filter->has_until ? " AND m.sent_at < ?5" : "");
}

static void
queue_admin_history_bind(sqlite3_stmt *stmt,
    const struct queue_admin_history_filter *filter, char **to, char **from,
    char **message_id)
{
	const char *id = filter->message_id;
	size_t len;

	if (filter->to != NULL) {
		*to = queue_admin_like_pattern(filter->to);
		sqlite3_bind_text(stmt, 1, *to, -1, SQLITE_STATIC);
	}
	if (filter->from != NULL) {
		*from = queue_admin_like_pattern(filter->from);
		sqlite3_bind_text(stmt, 2, *from, -1, SQLITE_STATIC);
	}
	if (id != NULL) {
		/* The queue keeps the Message-ID with its angle brackets. */
		len = strlen(id);
		if (len >= 2 && id[0] == '<' && id[len - 1] == '>')
			*message_id = xstrdup(id);
		else
			*message_id = xasprintf("<%s>", id);
		sqlite3_bind_text(stmt, 3, *message_id, -1, SQLITE_STATIC);
	}
	sqlite3_bind_int64(stmt, 4, filter->since);
	sqlite3_bind_int64(stmt, 5, filter->until);
	/* One row more than asked shows whether the limit cut the list. */
	sqlite3_bind_int64(stmt, 6, filter->limit > 0 ? filter->limit + 1 : -1);
}

static int
queue_admin_history_recipients(sqlite3_stmt *stmt,
    struct queue_admin_history_entry *entry)
{
	const char *address;
	int step;

	sqlite3_bind_int64(stmt, 1, entry->id);
	while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
		address = (const char *)sqlite3_column_text(stmt, 0);
		entry->rcpts = xrealloc(entry->rcpts,
		    (entry->rcpt_count + 1) * sizeof(*entry->rcpts));
		entry->rcpts[entry->rcpt_count++] = xstrdup(address != NULL ?
		    address : "");
	}
	sqlite3_reset(stmt);
	return step == SQLITE_DONE ? 0 : -1;
}

static void
queue_admin_history_row(sqlite3_stmt *stmt,
    struct queue_admin_history_entry *entry)
{
	memset(entry, 0, sizeof(*entry));
	entry->id = sqlite3_column_int64(stmt, 0);
	entry->sender = queue_admin_column_strdup(stmt, 1);
	if (entry->sender == NULL)
		entry->sender = xstrdup("");
	entry->message_id = queue_admin_column_strdup(stmt, 2);
	entry->size = sqlite3_column_int64(stmt, 3);
	entry->created = sqlite3_column_int64(stmt, 4);
	entry->sent_at = sqlite3_column_int64(stmt, 5);
	entry->final_reply = queue_admin_column_strdup(stmt, 6);
	entry->body_purged = sqlite3_column_int(stmt, 7) != 0;
}

/* Read the matching messages and their recipients into *ENTRIES. */
static int
queue_admin_history_read(sqlite3 *db, sqlite3_stmt *stmt, sqlite3_stmt *rcpt,
    int64_t limit, struct queue_admin_history_entry **entries, size_t *count,
    bool *more, char **errstr)
{
	size_t cap = 0;
	int step;

	while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (limit > 0 && (int64_t)*count == limit) {
			*more = true;
			break;
		}
		if (*count == cap) {
			cap = cap == 0 ? 32 : cap * 2;
			*entries = xrealloc(*entries, cap * sizeof(**entries));
		}
		queue_admin_history_row(stmt, &(*entries)[*count]);
		(*count)++;
		if (queue_admin_history_recipients(rcpt, &(*entries)[*count - 1]) == -1)
			return queue_admin_fail(db, errstr, "cannot read recipients");
	}
	if (step != SQLITE_DONE && step != SQLITE_ROW)
		return queue_admin_fail(db, errstr, "cannot read the history");
	return 0;
}

int
queue_admin_history(struct queue_store *qs,
    const struct queue_admin_history_filter *filter,
    struct queue_admin_history_entry **entries, size_t *count, bool *more,
    char **errstr)
{
	sqlite3 *db = queue_store_db(qs);
	sqlite3_stmt *stmt = NULL, *rcpt = NULL;
	char *sql, *to = NULL, *from = NULL, *message_id = NULL;
	int rc;

	*entries = NULL;
	*count = 0;
	*more = false;

	sql = queue_admin_history_sql(filter);
	rc = queue_admin_prepare(db, sql, &stmt, errstr);
	free(sql);
	if (rc == 0)
		rc = queue_admin_prepare(db, "SELECT address FROM recipient "
		    "WHERE message = ?1 ORDER BY idx", &rcpt, errstr);
	if (rc == 0)
		rc = queue_admin_read_begin(db, errstr);
	if (rc == 0) {
		queue_admin_history_bind(stmt, filter, &to, &from, &message_id);
		rc = queue_admin_history_read(db, stmt, rcpt, filter->limit, entries,
		    count, more, errstr);
		queue_admin_read_end(db);
	}

	sqlite3_finalize(stmt);
	sqlite3_finalize(rcpt);
	free(to);
	free(from);
	free(message_id);
	if (rc != 0) {
		queue_admin_history_free(*entries, *count);
		*entries = NULL;
		*count = 0;
	}
	return rc;
}

void
queue_admin_history_free(struct queue_admin_history_entry *entries, size_t count)
{
	size_t i, j;

	for (i = 0; i < count; i++) {
		free(entries[i].sender);
		for (j = 0; j < entries[i].rcpt_count; j++)
			free(entries[i].rcpts[j]);
		free(entries[i].rcpts);
		free(entries[i].message_id);
		free(entries[i].final_reply);
	}
	free(entries);
}

/* --- the smart host's queue id --- */

static bool
queue_admin_id_char(char c)
{
	return isalnum((unsigned char)c) || strchr("._-=@+/:$", c) != NULL;
}

/*
 * Copy the token that starts at P (after blanks), without surrounding
 * brackets and trailing punctuation. Returns NULL when it is empty.
 */
static char *
queue_admin_token(const char *p)
{
	const char *end;
	size_t len;

	while (*p == ' ' || *p == '\t')
		p++;
	while (*p == '<' || *p == '[' || *p == '(')
		p++;
	for (end = p; *end != '\0' && queue_admin_id_char(*end); end++)
		;
	len = (size_t)(end - p);
	while (len > 0 && strchr(".,;:", p[len - 1]) != NULL)
		len--;
	if (len == 0 || len > QUEUE_ADMIN_QUEUE_ID_MAX)
		return NULL;
	return xstrndup(p, len);
}

/* The token that ends right before END (blanks and brackets skipped) in TEXT. */
static char *
queue_admin_token_before(const char *text, const char *end)
{
	const char *start;

	while (end > text && strchr(" \t>])", end[-1]) != NULL)
		end--;
	for (start = end; start > text && queue_admin_id_char(start[-1]); start--)
		;
	if (start == end)
		return NULL;
	return queue_admin_token(start);
}

/* Case-insensitive strstr() for ASCII, which not every C library has. */
static const char *
queue_admin_find(const char *text, const char *word)
{
	size_t len = strlen(word);

	for (; *text != '\0'; text++)
		if (strncasecmp(text, word, len) == 0)
			return text;
	return NULL;
}

/* Skip "250", "250-" and an enhanced status code such as "2.0.0". */
static const char *
queue_admin_skip_codes(const char *p)
{
	const char *q;

	if (isdigit((unsigned char)p[0]) && isdigit((unsigned char)p[1]) &&
	    isdigit((unsigned char)p[2]) && (p[3] == ' ' || p[3] == '-' ||
	    p[3] == '\0'))
		p += p[3] == '\0' ? 3 : 4;
	while (*p == ' ')
		p++;
	q = p;
	if (isdigit((unsigned char)*q) && q[1] == '.') {
		q += 2;
		while (isdigit((unsigned char)*q))
			q++;
		if (*q == '.' && isdigit((unsigned char)q[1])) {
			q++;
			while (isdigit((unsigned char)*q))
				q++;
			if (*q == ' ' || *q == '\0')
				p = q;
		}
	}
	while (*p == ' ')
		p++;
	return p;
}

/* A token is a plausible queue id when it has a digit and is not a short number. */
static bool
queue_admin_plausible_id(const char *token)
{
	size_t len = strlen(token), digits = 0, i;

	for (i = 0; i < len; i++)
		if (isdigit((unsigned char)token[i]))
			digits++;
	if (digits == 0 || len < 5)
		return false;
	return digits < len || len >= 8;
}

/* Markers after which servers put their queue id, matched case-insensitively. */
static const char *const queue_admin_id_after[] = {
	"queued as ",		/* Postfix, many others */
	"InternalId=",		/* Exchange */
	" id=",			/* Exim */
	" qp ",			/* qmail */
};

/* Markers before which servers put their queue id. */
static const char *const queue_admin_id_before[] = {
	" Message accepted for delivery",	/* Sendmail */
	" - gsmtp",				/* Gmail */
	" Queued mail for delivery",		/* Exchange without InternalId */
};

char *
queue_admin_reply_queue_id(const char *reply)
{
	const char *text, *hit, *word;
	char *token;
	size_t i;

	if (reply == NULL)
		return NULL;
	text = queue_admin_skip_codes(reply);

	for (i = 0; i < sizeof(queue_admin_id_after) / sizeof(queue_admin_id_after[0]); i++) {
		hit = queue_admin_find(text, queue_admin_id_after[i]);
		if (hit != NULL && (token = queue_admin_token(hit +
		    strlen(queue_admin_id_after[i]))) != NULL)
			return token;
	}
	for (i = 0; i < sizeof(queue_admin_id_before) / sizeof(queue_admin_id_before[0]); i++) {
		hit = queue_admin_find(text, queue_admin_id_before[i]);
		if (hit != NULL && (token = queue_admin_token_before(text, hit)) != NULL)
			return token;
	}

	/* Otherwise the first word that looks like an id: "Ok 0100018e2a...". */
	for (word = text; *word != '\0'; ) {
		while (*word == ' ' || *word == '\t')
			word++;
		token = queue_admin_token(word);
		if (token != NULL && queue_admin_plausible_id(token))
			return token;
		free(token);
		while (*word != '\0' && *word != ' ' && *word != '\t')
			word++;
	}
	return NULL;
}

/* --- clean-up --- */

static int
queue_admin_purge_body(sqlite3 *db, int64_t id, int64_t *bodies, char **errstr)
{
	sqlite3_stmt *stmt;
	int rc;

	rc = queue_admin_prepare(db, "DELETE FROM chunk WHERE message = ?1", &stmt,
	    errstr);
	if (rc != 0)
		return rc;
	sqlite3_bind_int64(stmt, 1, id);
	if (sqlite3_step(stmt) != SQLITE_DONE)
		rc = queue_admin_fail(db, errstr, "cannot remove a message body");
	else if (sqlite3_changes(db) > 0)
		(*bodies)++;
	sqlite3_finalize(stmt);
	return rc;
}

/* Read up to LIMIT (id, sent_at) pairs of sent messages after *CURSOR. */
static int
queue_admin_purge_scan(sqlite3 *db, int64_t *cursor, int limit, bool *done,
    int64_t *ids, int64_t *sent_at, int *found, char **errstr)
{
	sqlite3_stmt *stmt;
	int rc, step, seen = 0;

	*found = 0;
	rc = queue_admin_prepare(db, "SELECT id, state = 'sent', sent_at FROM message "
	    "WHERE id > ?1 ORDER BY id LIMIT ?2", &stmt, errstr);
	if (rc != 0)
		return rc;
	sqlite3_bind_int64(stmt, 1, *cursor);
	sqlite3_bind_int(stmt, 2, limit);
	while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
		seen++;
		*cursor = sqlite3_column_int64(stmt, 0);
		if (sqlite3_column_int(stmt, 1) == 0 ||
		    sqlite3_column_type(stmt, 2) == SQLITE_NULL)
			continue;
		ids[*found] = *cursor;
		sent_at[*found] = sqlite3_column_int64(stmt, 2);
		(*found)++;
	}
	if (step != SQLITE_DONE)
		rc = queue_admin_fail(db, errstr, "cannot look for old messages");
	*done = rc == 0 && seen < limit;
	sqlite3_finalize(stmt);
	return rc;
}

int
queue_admin_purge_batch(struct queue_store *qs, int64_t body_before,
    int64_t record_before, int limit, int64_t *cursor, bool *done,
    int64_t *bodies, int64_t *records, char **errstr)
{
	sqlite3 *db = queue_store_db(qs);
	int64_t *ids = xcalloc((size_t)limit, sizeof(*ids));
	int64_t *sent_at = xcalloc((size_t)limit, sizeof(*sent_at));
	int found = 0, i, rc;
	bool any = false;

	rc = queue_admin_purge_scan(db, cursor, limit, done, ids, sent_at, &found,
	    errstr);
	for (i = 0; i < found; i++)
		if (sent_at[i] < body_before || sent_at[i] < record_before)
			any = true;
	if (rc != 0 || !any)
		goto done;

	/* Losing a removal to a crash only delays it to the next run. */
	if (queue_store_begin(qs, false, errstr) == -1) {
		rc = -1;
		goto done;
	}
	for (i = 0; i < found && rc == 0; i++) {
		if (sent_at[i] < record_before) {
			rc = queue_store_message_delete(qs, ids[i], errstr);
			if (rc == 0)
				(*records)++;
		} else if (sent_at[i] < body_before) {
			rc = queue_admin_purge_body(db, ids[i], bodies, errstr);
		}
	}
	if (rc == 0)
		rc = queue_store_commit(qs, errstr);
	else
		queue_store_rollback(qs);

done:
	free(ids);
	free(sent_at);
	return rc;
}

/* --- smart host status --- */

/* Load what the queue records, so a restart does not reset the time. */
static int
queue_admin_relay_load(sqlite3 *db, char **errstr)
{
	struct queue_admin_meta meta = { NULL, NULL, NULL };
	int rc;

	rc = queue_admin_read_meta(db, &meta, errstr);
	if (rc == 0) {
		free(queue_admin_relay_last.status);
		free(queue_admin_relay_last.error);
		queue_admin_relay_last.status = meta.status != NULL ? meta.status :
		    xstrdup("");
		queue_admin_relay_last.error = meta.error != NULL ? meta.error :
		    xstrdup("");
		queue_admin_relay_last.known = true;
		meta.status = meta.error = NULL;
	}
	free(meta.status);
	free(meta.time);
	free(meta.error);
	return rc;
}

int
queue_admin_set_relay_status(struct queue_store *qs,
    enum queue_admin_relay status, const char *error, int64_t now,
    char **errstr)
{
	const char *name = queue_admin_relay_names[status];
	sqlite3 *db = queue_store_db(qs);
	sqlite3_stmt *stmt;
	bool same_status;
	int rc;

	if (error == NULL)
		error = "";
	if (!queue_admin_relay_last.known &&
	    (rc = queue_admin_relay_load(db, errstr)) != 0)
		return rc;
	same_status = strcmp(queue_admin_relay_last.status, name) == 0;
	if (same_status && strcmp(queue_admin_relay_last.error, error) == 0)
		return 0;

	/*
	 * One statement is atomic. The time stays when only the error changes,
	 * because it is the time the status began.
	 */
	rc = queue_admin_prepare(db, same_status ?
	    "INSERT INTO meta(key, value) VALUES('relay_error', ?3) "
	    "ON CONFLICT(key) DO UPDATE SET value = excluded.value" :
	    "INSERT INTO meta(key, value) VALUES('relay_status', ?1), "
	    "('relay_status_time', ?2), ('relay_error', ?3) "
	    "ON CONFLICT(key) DO UPDATE SET value = excluded.value", &stmt, errstr);
	if (rc != 0)
		return rc;
	if (!same_status) {
		sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 2, now);
	}
	sqlite3_bind_text(stmt, 3, error, -1, SQLITE_STATIC);
	if (sqlite3_step(stmt) != SQLITE_DONE)
		rc = queue_admin_fail(db, errstr, "cannot record the relay status");
	sqlite3_finalize(stmt);
	if (rc != 0)
		return rc;

	free(queue_admin_relay_last.status);
	free(queue_admin_relay_last.error);
	queue_admin_relay_last.status = xstrdup(name);
	queue_admin_relay_last.error = xstrdup(error);
	return 0;
}
