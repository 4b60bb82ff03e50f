/*
 * Queue administration: the state changes, statistics and history behind
 * relayq's admin commands, the clean-up of old sent messages that relayqd
 * runs daily, and the smart host status that relayqd records for
 * `relayq stats`.
 *
 * Every change to a message runs in its own short write transaction that
 * reads the state and updates with "WHERE id = ? AND state = <that state>",
 * so it never races relayqd: a message that relayqd has claimed is in
 * state "sending", and no function here changes or deletes it.
 *
 * The smart host status lives in the meta table under the keys
 * relay_status ("ok", "deferring" or "auth failing"), relay_status_time
 * (Unix seconds when that status began) and relay_error (the session
 * error, empty for "ok").
 *
 * Functions return 0 on success, or -1 with a message in *ERRSTR. When the
 * database stayed locked beyond the busy timeout they return
 * QUEUE_ADMIN_BUSY instead, which is worth trying again.
 */
#ifndef RELAYQ_QUEUE_ADMIN_H
#define RELAYQ_QUEUE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue_store.h"

#define QUEUE_ADMIN_BUSY (-2)

/* --- state changes --- */

enum queue_admin_action {
	QUEUE_ADMIN_HOLD,	/* queued, deferred, uncertain, failed -> held */
	QUEUE_ADMIN_RELEASE,	/* held -> queued, due now */
	QUEUE_ADMIN_RETRY,	/* deferred, uncertain, failed -> queued, due now */
	QUEUE_ADMIN_DELETE,	/* any state but sending -> removed */
};

enum queue_admin_result {
	QUEUE_ADMIN_CHANGED,
	QUEUE_ADMIN_UNCHANGED,		/* already in the target state */
	QUEUE_ADMIN_SENDING,		/* being sent now: try again later */
	QUEUE_ADMIN_WRONG_STATE,	/* the action does not apply to this state */
	QUEUE_ADMIN_NOT_FOUND,
};

/* The action's name as a past participle for messages: "held", "deleted". */
const char *queue_admin_action_done(enum queue_admin_action action);

/*
 * True when ACTION applies to messages in STATE, which the bulk forms
 * (relayq hold --state S) use to check their argument.
 */
bool queue_admin_action_applies(enum queue_admin_action action,
    enum msg_state state);

/*
 * Apply ACTION to message ID at time NOW. *RESULT receives the outcome and
 * *STATE the message's state before the change (when it exists).
 * Releasing or retrying a message that has no pending recipient left
 * makes its failed recipients pending again, so that the next attempt
 * sends to them. A failed message never has a pending recipient, so
 * retrying one always does this.
 */
int queue_admin_apply(struct queue_store *qs, enum queue_admin_action action,
    int64_t id, int64_t now, enum queue_admin_result *result,
    enum msg_state *state, char **errstr);

/* Outcome of a bulk change. */
struct queue_admin_counts {
	int64_t changed;
	int64_t sending;	/* skipped because relayqd is sending them */
	int64_t vanished;	/* deleted or changed by someone else meanwhile */
};

/* Bit of STATE in a set of states. */
#define QUEUE_ADMIN_STATE(state) (1u << (state))

/*
 * Apply ACTION to every message whose state is in the set STATES (bits
 * from QUEUE_ADMIN_STATE()), or with STATES 0 to every message the action
 * applies to. The messages are those in these states when the call
 * starts, and each is changed only while it is still in one of them.
 * They are changed in batches of short transactions, so relayqd keeps
 * running meanwhile. For QUEUE_ADMIN_HOLD with STATES 0, messages being
 * sent at the start count in counts->sending.
 */
int queue_admin_apply_all(struct queue_store *qs, enum queue_admin_action action,
    unsigned int states, int64_t now, struct queue_admin_counts *counts,
    char **errstr);

/*
 * Make every deferred message (and uncertain one, with INCLUDE_UNCERTAIN)
 * queued and due at NOW, as QUEUE_ADMIN_RETRY does. *LEFT receives how
 * many uncertain messages were left alone.
 */
int queue_admin_flush(struct queue_store *qs, bool include_uncertain,
    int64_t now, struct queue_admin_counts *counts, int64_t *left,
    char **errstr);

/* --- statistics --- */

struct queue_admin_stats {
	int64_t states[MSG_STATE_COUNT];	/* "receiving" is always 0 */

	bool has_oldest;		/* a queued or deferred message exists */
	int64_t oldest_id;
	int64_t oldest_created;

	int64_t sent_last_hour;		/* messages with sent_at in the last 3600 s */
	int64_t sent_last_day;

	bool has_last_error;		/* the latest attempt that failed */
	int64_t last_error_time;
	int64_t last_error_message;
	char *last_error_host;
	char *last_error_text;		/* "451 4.3.0 text" or the local error */

	char *relay_status;		/* "ok", "deferring", "auth failing" or "unknown" */
	bool has_relay_since;
	int64_t relay_since;
	char *relay_error;		/* NULL when the status is ok or unknown */
};

/* Collect the statistics in one read transaction. */
int queue_admin_stats(struct queue_store *qs, int64_t now,
    struct queue_admin_stats *stats, char **errstr);
void queue_admin_stats_clear(struct queue_admin_stats *stats);

/* --- history --- */

struct queue_admin_history_filter {
	const char *to;		/* case-insensitive substring of a recipient */
	const char *from;	/* case-insensitive substring of the sender */
	const char *message_id;	/* with or without the angle brackets */
	bool has_since;
	int64_t since;		/* sent_at >= since */
	bool has_until;
	int64_t until;		/* sent_at < until */
	int64_t limit;		/* the newest LIMIT messages; 0: all */
};

struct queue_admin_history_entry {
	int64_t id;
	char *sender;
	char **rcpts;
	size_t rcpt_count;
	char *message_id;	/* NULL when unknown */
	int64_t size;
	int64_t created;
	int64_t sent_at;
	char *final_reply;	/* NULL when unknown */
	bool body_purged;	/* the body was removed after queue.keep_sent */
};

/*
 * Turn TEXT into a LIKE pattern (with ESCAPE '\\') that matches any
 * text containing it; SQLite's LIKE ignores ASCII case. Allocated.
 */
char *queue_admin_like_pattern(const char *text);

/*
 * Find sent messages that match FILTER, newest first by queue id.
 * *ENTRIES receives an allocated array of *COUNT entries, and *MORE
 * whether the limit left matching messages out.
 */
int queue_admin_history(struct queue_store *qs,
    const struct queue_admin_history_filter *filter,
    struct queue_admin_history_entry **entries, size_t *count, bool *more,
    char **errstr);
void queue_admin_history_free(struct queue_admin_history_entry *entries,
    size_t count);

/*
 * Extract the smart host's queue id from its final reply to DATA, such as
 * "250 2.0.0 Ok: queued as 4XyZ1" (Postfix), "250 OK id=1rAbC-0001" (Exim),
 * "250 2.0.0 8A1B2C3 Message accepted for delivery" (Sendmail) or
 * "250 2.6.0 <id@host> [InternalId=123] Queued mail for delivery"
 * (Exchange). Returns an allocated token, or NULL when the reply names none.
 */
char *queue_admin_reply_queue_id(const char *reply);

/* --- clean-up (relayqd) --- */

/*
 * Examine up to LIMIT messages with an id above *CURSOR: remove the body
 * of sent messages with sent_at before BODY_BEFORE, and whole sent
 * messages with sent_at before RECORD_BEFORE. *CURSOR advances past the
 * messages examined, *DONE is set after the last message, and the counts
 * of removed bodies and messages are added to *BODIES and *RECORDS.
 */
int queue_admin_purge_batch(struct queue_store *qs, int64_t body_before,
    int64_t record_before, int limit, int64_t *cursor, bool *done,
    int64_t *bodies, int64_t *records, char **errstr);

/* --- smart host status (relayqd) --- */

enum queue_admin_relay {
	QUEUE_ADMIN_RELAY_OK,
	QUEUE_ADMIN_RELAY_DEFERRING,
	QUEUE_ADMIN_RELAY_AUTH_FAILING,
};

/*
 * Record the smart host status at NOW with ERROR (NULL for none). Writes
 * only when the status or error differs from the last one this process
 * recorded, so calling it after every delivery costs nothing.
 */
int queue_admin_set_relay_status(struct queue_store *qs,
    enum queue_admin_relay status, const char *error, int64_t now,
    char **errstr);

#endif
