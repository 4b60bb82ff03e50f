/*
 * The queue store: one SQLite database in WAL mode holding every message,
 * its recipients, its body in chunks and its delivery attempts. The daemon
 * and the CLI open it independently; SQLite's locking serialises writers.
 *
 * Schema (version 1):
 *   message(id INTEGER PRIMARY KEY AUTOINCREMENT, state TEXT, sender TEXT,
 *           message_id TEXT, size INTEGER, created INTEGER,
 *           next_attempt INTEGER, attempt_count INTEGER, last_error TEXT,
 *           client TEXT, sent_at INTEGER, final_reply TEXT)
 *   recipient(message INTEGER, idx INTEGER, address TEXT, state TEXT,
 *             code INTEGER, status TEXT, text TEXT, updated INTEGER)
 *             state is pending, sent or failed
 *   chunk(message INTEGER, seq INTEGER, data BLOB)     body, CRLF lines,
 *             not dot-stuffed, seq from 0
 *   attempt(id INTEGER PRIMARY KEY, message INTEGER, time INTEGER,
 *           host TEXT, code INTEGER, status TEXT, text TEXT)
 * Times are Unix seconds (UTC). Ids are never reused (AUTOINCREMENT).
 */
#ifndef RELAYQ_QUEUE_STORE_H
#define RELAYQ_QUEUE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

struct evbuffer;

/* Size of one body chunk: the unit of writing and reading a body. */
#define QUEUE_CHUNK_SIZE (64 * 1024)

enum msg_state {
	MSG_RECEIVING,	/* intake in progress, not yet acknowledged; invisible */
	MSG_QUEUED,
	MSG_DEFERRED,
	MSG_SENDING,
	MSG_HELD,
	MSG_SENT,
	MSG_UNCERTAIN,
	MSG_FAILED,
};
#define MSG_STATE_COUNT (MSG_FAILED + 1)

enum rcpt_state {
	RCPT_PENDING,
	RCPT_SENT,
	RCPT_FAILED,
};

const char *msg_state_name(enum msg_state state);
int msg_state_parse(const char *text, enum msg_state *state);
const char *rcpt_state_name(enum rcpt_state state);

enum queue_store_flags {
	QUEUE_STORE_CREATE = 1,		/* create the file and schema if missing */
	QUEUE_STORE_READONLY = 2,
};

struct queue_store;

/*
 * Open the database at PATH. With QUEUE_STORE_CREATE the file is created
 * with mode 0600 and its directory with 0700 when missing. Returns 0, or
 * -1 with a message naming the path and what to do in *ERRSTR.
 */
int queue_store_open(const char *path, int flags, struct queue_store **out,
    char **errstr);
void queue_store_close(struct queue_store *qs);

/* The underlying handle, for read-only queries in the CLI. */
sqlite3 *queue_store_db(struct queue_store *qs);

/*
 * Explicit transactions. Store functions called inside one join it
 * instead of committing on their own. With DURABLE the commit returns
 * only after the WAL has reached the disk (synchronous=FULL); without it
 * a crash of the process loses nothing, but a power loss may.
 */
int queue_store_begin(struct queue_store *qs, bool durable, char **errstr);
int queue_store_commit(struct queue_store *qs, char **errstr);
void queue_store_rollback(struct queue_store *qs);

/*
 * With DEFER, a durable transaction commits without a sync, like any
 * other, and the caller must sync the WAL file (queue_store_wal_path())
 * before it treats the commit as durable. One sync of the WAL file covers
 * every commit made before it started.
 */
void queue_store_defer_sync(struct queue_store *qs, bool defer);

/* The path of the database's WAL file, allocated. */
char *queue_store_wal_path(const struct queue_store *qs);

/* True when the last error was a full disk or a read-only file (reply 452, not 451). */
bool queue_store_error_is_space(const struct queue_store *qs);

/* --- intake --- */

/*
 * Create a message in state "receiving" with its recipients. Not durable
 * and not visible until queue_store_accept() commits it.
 */
int queue_store_message_create(struct queue_store *qs, const char *sender,
    char *const *rcpts, size_t rcpt_count, const char *client, int64_t now,
    int64_t *id, char **errstr);

/* Append body chunk number SEQ (from 0) to message ID. */
int queue_store_chunk_append(struct queue_store *qs, int64_t id, int seq,
    const void *data, size_t len, char **errstr);

/* Mark a received message "queued" with its size and Message-ID (no commit of its own). */
int queue_store_message_accept(struct queue_store *qs, int64_t id,
    uint64_t size, const char *message_id, char **errstr);

/* Remove a message and everything that belongs to it. */
int queue_store_message_delete(struct queue_store *qs, int64_t id, char **errstr);

/*
 * Start-up recovery: drop messages left "receiving" (never acknowledged)
 * and put messages left "sending" back to "queued". Counts go to the
 * out parameters.
 */
int queue_store_recover(struct queue_store *qs, int *dropped, int *requeued,
    char **errstr);

/* --- delivery --- */

struct queue_recipient {
	int idx;
	char *address;
	/* Result of the current attempt, filled by the SMTP client. */
	enum rcpt_state state;	/* RCPT_PENDING: temporary failure or not tried */
	int code;
	char status[16];
	char *text;
};

/* A message claimed for delivery: state "sending", pending recipients only. */
struct queue_message {
	int64_t id;
	char *sender;		/* NULL only in a damaged row */
	char *message_id;
	uint64_t size;
	int64_t created;
	int attempt_count;	/* attempts before this one */
	int failed_before;	/* recipients that failed in earlier attempts */
	enum msg_state previous_state;
	struct queue_recipient *rcpts;
	size_t rcpt_count;
};

void queue_message_free(struct queue_message *msg);

/*
 * Claim a due message (queued, or deferred/uncertain with next_attempt
 * <= NOW; uncertain only when INCLUDE_UNCERTAIN), the one due longest
 * first, which for mail never deferred is the oldest: set it "sending"
 * and load it. Returns 1 with *OUT set, 0 when none is due,
 * -1 on error.
 */
int queue_store_claim_due(struct queue_store *qs, int64_t now,
    bool include_uncertain, struct queue_message **out, char **errstr);

/* Count due messages (same rule as queue_store_claim_due). */
int queue_store_count_due(struct queue_store *qs, int64_t now,
    bool include_uncertain, int64_t *count, char **errstr);

/*
 * Earliest next_attempt among deferred (and uncertain, when asked)
 * messages. Returns 1 with *WHEN set, 0 when there is none, -1 on error.
 */
int queue_store_next_due(struct queue_store *qs, bool include_uncertain,
    int64_t *when, char **errstr);

/*
 * Read body chunk SEQ of message ID into OUT. Returns 1 when a chunk was
 * read, 0 after the last chunk, -1 on error.
 */
int queue_store_chunk_read(struct queue_store *qs, int64_t id, int seq,
    struct evbuffer *out, char **errstr);

/*
 * Check that the stored parts of claimed message MSG are whole: a sender,
 * recipients with addresses, and body chunks numbered from 0 without a
 * gap whose sizes add up to the size accepted. Returns 0 when they are,
 * 1 with a description in *REASON when not, -1 on error.
 */
int queue_store_message_check(struct queue_store *qs,
    const struct queue_message *msg, char **reason, char **errstr);

/* One delivery attempt, as recorded in the "attempt" table. */
struct queue_attempt {
	int64_t time;
	const char *host;	/* "host:port" */
	int code;		/* 0 when there was no reply (connection, TLS, timeout) */
	const char *status;	/* enhanced status or "" */
	const char *text;	/* reply text or the local error */
};

/*
 * Store the outcome of an attempt: the recipients' results from MSG, the
 * new message STATE, NEXT_ATTEMPT, LAST_ERROR (NULL to clear), FINAL_REPLY
 * (the success reply, NULL otherwise) and the attempt record. Increments
 * attempt_count. Joins an open transaction, or commits durably on its own.
 */
int queue_store_finish(struct queue_store *qs, const struct queue_message *msg,
    enum msg_state state, int64_t next_attempt, const char *last_error,
    const char *final_reply, const struct queue_attempt *attempt, char **errstr);

#endif
