/*
 * The queue store on SQLite; the schema is described in queue_store.h.
 *
 * Durability: the database runs in WAL mode. Ordinary statements run with
 * synchronous=NORMAL, which survives a crash of the process but not a
 * power loss, because the WAL is synced only at checkpoints. Every commit
 * that acknowledges something (a message accepted, a delivery recorded)
 * runs with synchronous=FULL, which syncs the WAL at that commit; the sync
 * covers the whole WAL file, so rows written earlier without a sync (body
 * chunks) reach the disk with it. SQLite reads the level when a
 * transaction starts, so it is set before BEGIN.
 *
 * A process that syncs the WAL file itself can defer the sync:
 * queue_store_defer_sync() makes durable transactions commit like the
 * others, and the caller runs fdatasync() on the WAL before it
 * acknowledges anything (relayqd does so in daemon/disk_sync.c). Every
 * commit reaches the WAL file with write() before COMMIT returns, and a
 * checkpoint syncs the WAL before it copies pages into the database, so
 * one fdatasync() of the WAL file covers every commit made before it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifndef _WIN32
#include <sys/statvfs.h>
#endif
#include <unistd.h>

#include <event2/buffer.h>

#include "acl.h"
#include "queue_store.h"
#include "util.h"

#define QUEUE_SCHEMA_VERSION 1

/*
 * Page cache per connection: 512 KiB instead of SQLite's 2 MiB. The hot
 * pages are the index interior pages, and the kernel's page cache keeps
 * the rest. With the default cache, relayqd's RSS grew by 2 MiB while it
 * received or relayed one large message. With 512 KiB, bench/run measured
 * 0.6 MiB and no change in throughput (docs/benchmarks.md).
 */
#define QUEUE_CACHE_PRAGMA "PRAGMA cache_size=-512"

/*
 * Statements that run again and again, prepared once on first use and
 * kept until queue_store_close(). Every user resets its statement before
 * returning, so no statement keeps a read transaction open between calls.
 */
enum queue_stmt {
	QUEUE_STMT_BEGIN,
	QUEUE_STMT_COMMIT,
	QUEUE_STMT_MESSAGE_INSERT,
	QUEUE_STMT_RECIPIENT_INSERT,
	QUEUE_STMT_CHUNK_INSERT,
	QUEUE_STMT_MESSAGE_ACCEPT,
	QUEUE_STMT_DELETE_CHUNKS,
	QUEUE_STMT_DELETE_RECIPIENTS,
	QUEUE_STMT_DELETE_ATTEMPTS,
	QUEUE_STMT_DELETE_MESSAGE,
	QUEUE_STMT_RECIPIENTS_PENDING,
	QUEUE_STMT_RECIPIENTS_FAILED,
	QUEUE_STMT_CLAIM_SELECT,
	QUEUE_STMT_CLAIM_SELECT_UNCERTAIN,
	QUEUE_STMT_CLAIM_UPDATE,
	QUEUE_STMT_COUNT_DUE,
	QUEUE_STMT_COUNT_DUE_UNCERTAIN,
	QUEUE_STMT_NEXT_DUE,
	QUEUE_STMT_NEXT_DUE_UNCERTAIN,
	QUEUE_STMT_CHUNK_READ,
	QUEUE_STMT_RECIPIENT_UPDATE,
	QUEUE_STMT_ATTEMPT_INSERT,
	QUEUE_STMT_MESSAGE_FINISH,
	QUEUE_STMT_CHECK_CHUNKS,
	QUEUE_STMT_CHECK_RECIPIENTS,
	QUEUE_STMT_COUNT,
};

/*
 * The claim query. It takes the head of each state's range in the index
 * message_by_state(state, next_attempt, id), so it costs a few index
 * lookups however long the queue is. "ORDER BY id" over the whole due set
 * would sort every due row on every claim instead. The message due the
 * longest wins: a queued message is due since its next_attempt (its
 * creation time, or when it was released or retried), and a deferred or
 * uncertain one since its next_attempt came.
 */
#define QUEUE_CLAIM_COLUMNS \
	"SELECT id, sender, message_id, size, created, attempt_count, state " \
	"FROM message WHERE id = (SELECT id FROM ("
#define QUEUE_CLAIM_HEAD(condition) \
	"SELECT * FROM (SELECT id, next_attempt FROM message WHERE " condition \
	" ORDER BY next_attempt, id LIMIT 1)"
#define QUEUE_CLAIM_END ") ORDER BY next_attempt, id LIMIT 1)"

static const char *const queue_stmt_sql[QUEUE_STMT_COUNT] = {
	[QUEUE_STMT_BEGIN] = "BEGIN IMMEDIATE",
	[QUEUE_STMT_COMMIT] = "COMMIT",
	[QUEUE_STMT_MESSAGE_INSERT] = "INSERT INTO message(state, sender, "
	    "created, next_attempt, client) VALUES('receiving', ?1, ?2, ?2, ?3)",
	[QUEUE_STMT_RECIPIENT_INSERT] = "INSERT INTO recipient(message, idx, "
	    "address) VALUES(?1, ?2, ?3)",
	[QUEUE_STMT_CHUNK_INSERT] = "INSERT INTO chunk(message, seq, data) "
	    "VALUES(?1, ?2, ?3)",
	[QUEUE_STMT_MESSAGE_ACCEPT] = "UPDATE message SET state = 'queued', "
	    "size = ?2, message_id = ?3 WHERE id = ?1 AND state = 'receiving'",
	[QUEUE_STMT_DELETE_CHUNKS] = "DELETE FROM chunk WHERE message = ?1",
	[QUEUE_STMT_DELETE_RECIPIENTS] = "DELETE FROM recipient WHERE message = ?1",
	[QUEUE_STMT_DELETE_ATTEMPTS] = "DELETE FROM attempt WHERE message = ?1",
	[QUEUE_STMT_DELETE_MESSAGE] = "DELETE FROM message WHERE id = ?1",
	[QUEUE_STMT_RECIPIENTS_PENDING] = "SELECT idx, address FROM recipient "
	    "WHERE message = ?1 AND state = 'pending' ORDER BY idx",
	[QUEUE_STMT_RECIPIENTS_FAILED] = "SELECT count(*) FROM recipient "
	    "WHERE message = ?1 AND state = 'failed'",
	[QUEUE_STMT_CLAIM_SELECT] = QUEUE_CLAIM_COLUMNS
	    QUEUE_CLAIM_HEAD("state = 'queued'") " UNION ALL "
	    QUEUE_CLAIM_HEAD("state = 'deferred' AND next_attempt <= ?1")
	    QUEUE_CLAIM_END,
	[QUEUE_STMT_CLAIM_SELECT_UNCERTAIN] = QUEUE_CLAIM_COLUMNS
	    QUEUE_CLAIM_HEAD("state = 'queued'") " UNION ALL "
	    QUEUE_CLAIM_HEAD("state = 'deferred' AND next_attempt <= ?1") " UNION ALL "
	    QUEUE_CLAIM_HEAD("state = 'uncertain' AND next_attempt <= ?1")
	    QUEUE_CLAIM_END,
	[QUEUE_STMT_CLAIM_UPDATE] = "UPDATE message SET state = 'sending' "
	    "WHERE id = ?1",
	/*
	 * Queued messages are due at once, the others once next_attempt has
	 * come. Each index range is counted on its own because with OR,
	 * SQLite collects and sorts the rowids of all ranges before counting.
	 */
	[QUEUE_STMT_COUNT_DUE] =
	    "SELECT (SELECT count(*) FROM message WHERE state = 'queued') + "
	    "(SELECT count(*) FROM message WHERE state = 'deferred' AND "
	    "next_attempt <= ?1)",
	[QUEUE_STMT_COUNT_DUE_UNCERTAIN] =
	    "SELECT (SELECT count(*) FROM message WHERE state = 'queued') + "
	    "(SELECT count(*) FROM message WHERE state = 'deferred' AND "
	    "next_attempt <= ?1) + "
	    "(SELECT count(*) FROM message WHERE state = 'uncertain' AND "
	    "next_attempt <= ?1)",
	[QUEUE_STMT_NEXT_DUE] = "SELECT min(next_attempt) FROM message "
	    "WHERE state = 'deferred'",
	[QUEUE_STMT_NEXT_DUE_UNCERTAIN] = "SELECT min(next_attempt) FROM message "
	    "WHERE state IN ('deferred', 'uncertain')",
	[QUEUE_STMT_CHUNK_READ] = "SELECT data FROM chunk "
	    "WHERE message = ?1 AND seq = ?2",
	[QUEUE_STMT_RECIPIENT_UPDATE] = "UPDATE recipient SET state = ?3, "
	    "code = ?4, status = ?5, text = ?6, updated = ?7 "
	    "WHERE message = ?1 AND idx = ?2",
	[QUEUE_STMT_ATTEMPT_INSERT] = "INSERT INTO attempt(message, time, host, "
	    "code, status, text) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
	[QUEUE_STMT_MESSAGE_FINISH] = "UPDATE message SET state = ?2, "
	    "next_attempt = ?3, attempt_count = attempt_count + 1, "
	    "last_error = ?4, final_reply = coalesce(?5, final_reply), "
	    "sent_at = CASE WHEN ?2 = 'sent' THEN ?6 ELSE sent_at END "
	    "WHERE id = ?1",
	/* length() of a BLOB comes from the record header, so no body is read. */
	[QUEUE_STMT_CHECK_CHUNKS] = "SELECT count(*), coalesce(min(seq), 0), "
	    "coalesce(max(seq), -1), coalesce(sum(length(data)), 0), "
	    "coalesce(sum(typeof(data) <> 'blob'), 0) FROM chunk WHERE message = ?1",
	[QUEUE_STMT_CHECK_RECIPIENTS] = "SELECT count(*), "
	    "coalesce(sum(address IS NULL OR address = ''), 0) FROM recipient "
	    "WHERE message = ?1",
};

struct queue_store {
	sqlite3 *db;
	char *path;
	int depth;		/* open explicit transactions (0 or 1) */
	bool sync_full;		/* synchronous=FULL is in effect, for a durable transaction */
	bool defer_sync;	/* the caller syncs the WAL for durable transactions */
	int last_rc;		/* extended code of the last failure */
	sqlite3_stmt *stmts[QUEUE_STMT_COUNT];
};

static const char *const msg_state_names[MSG_STATE_COUNT] = {
	[MSG_RECEIVING] = "receiving",
	[MSG_QUEUED] = "queued",
	[MSG_DEFERRED] = "deferred",
	[MSG_SENDING] = "sending",
	[MSG_HELD] = "held",
	[MSG_SENT] = "sent",
	[MSG_UNCERTAIN] = "uncertain",
	[MSG_FAILED] = "failed",
};

static const char *const rcpt_state_names[] = {
	[RCPT_PENDING] = "pending",
	[RCPT_SENT] = "sent",
	[RCPT_FAILED] = "failed",
};

static const char queue_schema[] =
	"CREATE TABLE IF NOT EXISTS meta("
	"  key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS message("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  state TEXT NOT NULL,"
	"  sender TEXT NOT NULL,"
	"  message_id TEXT,"
	"  size INTEGER NOT NULL DEFAULT 0,"
	"  created INTEGER NOT NULL,"
	"  next_attempt INTEGER NOT NULL DEFAULT 0,"
	"  attempt_count INTEGER NOT NULL DEFAULT 0,"
	"  last_error TEXT,"
	"  client TEXT,"
	"  sent_at INTEGER,"
	"  final_reply TEXT);"
	"CREATE INDEX IF NOT EXISTS message_by_state"
	"  ON message(state, next_attempt, id);"
	"CREATE TABLE IF NOT EXISTS recipient("
	"  message INTEGER NOT NULL,"
	"  idx INTEGER NOT NULL,"
	"  address TEXT NOT NULL,"
	"  state TEXT NOT NULL DEFAULT 'pending',"
	"  code INTEGER,"
	"  status TEXT,"
	"  text TEXT,"
	"  updated INTEGER,"
	"  PRIMARY KEY(message, idx));"
	"CREATE INDEX IF NOT EXISTS recipient_by_address ON recipient(address);"
	"CREATE TABLE IF NOT EXISTS chunk("
	"  id INTEGER PRIMARY KEY,"
	"  message INTEGER NOT NULL,"
	"  seq INTEGER NOT NULL,"
	"  data BLOB NOT NULL);"
	"CREATE UNIQUE INDEX IF NOT EXISTS chunk_by_message ON chunk(message, seq);"
	"CREATE TABLE IF NOT EXISTS attempt("
	"  id INTEGER PRIMARY KEY,"
	"  message INTEGER NOT NULL,"
	"  time INTEGER NOT NULL,"
	"  host TEXT,"
	"  code INTEGER,"
	"  status TEXT,"
	"  text TEXT);"
	"CREATE INDEX IF NOT EXISTS attempt_by_message ON attempt(message, id);";

const char *
msg_state_name(enum msg_state state)
{
	if ((unsigned)state >= MSG_STATE_COUNT)
		return "unknown";
	return msg_state_names[state];
}

int
msg_state_parse(const char *text, enum msg_state *state)
{
	int i;

	for (i = 0; i < MSG_STATE_COUNT; i++) {
		if (strcmp(text, msg_state_names[i]) == 0) {
			*state = (enum msg_state)i;
			return 0;
		}
	}
	return -1;
}

const char *
rcpt_state_name(enum rcpt_state state)
{
	if ((unsigned)state > RCPT_FAILED)
		return "unknown";
	return rcpt_state_names[state];
}

/*
 * Find out from the file system why writes to the queue fail: returns
 * "read-only", "full" or NULL. SQLite reports a file system remounted
 * read-only after an error, and a full disk found during a write, as a
 * plain I/O error.
 */
static const char *
queue_store_fs_problem(const struct queue_store *qs)
{
#ifndef _WIN32
	struct statvfs st;
	char *wal;
	int fd;

	if (statvfs(qs->path, &st) == 0) {
		if (st.f_flag & ST_RDONLY)
			return "read-only";
		if (st.f_bavail == 0)
			return "full";
	}

	/*
	 * ext4's errors=remount-ro leaves the mount flags alone on recent
	 * kernels, so ask for write access. The WAL file is the one to try:
	 * closing a descriptor of the database file itself would drop
	 * SQLite's POSIX locks on it.
	 */
	wal = xasprintf("%s-wal", qs->path);
	fd = open(wal, O_WRONLY | O_CLOEXEC);
	free(wal);
	if (fd == -1 && errno == EROFS)
		return "read-only";
	if (fd != -1)
		close(fd);
#endif
	return NULL;
}

/* Record the SQLite error of the last call and describe it with WHAT. */
static int
queue_store_fail(struct queue_store *qs, char **errstr, const char *what)
{
	int rc = sqlite3_extended_errcode(qs->db);
	const char *problem;

	qs->last_rc = rc;
	switch (rc & 0xff) {
	case SQLITE_IOERR:
	case SQLITE_READONLY:
	case SQLITE_CANTOPEN:
		problem = queue_store_fs_problem(qs);
		if (problem != NULL)
			return set_error(errstr, "%s: the file system of the queue %s is "
			    "%s; %s", what, qs->path, problem, strcmp(problem, "full") == 0 ?
			    "free space there" : "check the disk and remount it read-write");
		break;
	default:
		break;
	}
	switch (rc & 0xff) {
	case SQLITE_FULL:
		return set_error(errstr, "%s: disk full on the queue %s; free space there",
		    what, qs->path);
	case SQLITE_READONLY:
	case SQLITE_CANTOPEN:
	case SQLITE_PERM:
		return set_error(errstr, "%s: queue %s is not writable (%s); check the "
		    "file system and the permissions", what, qs->path, sqlite3_errmsg(qs->db));
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return set_error(errstr, "%s: queue %s is busy; try again", what, qs->path);
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return set_error(errstr, "%s: queue %s is damaged or not a database (%s); "
		    "relayq leaves it untouched: restore it from a backup, or move it and "
		    "its -wal and -shm files aside to start with an empty queue", what,
		    qs->path, sqlite3_errmsg(qs->db));
	case SQLITE_IOERR:
		if (rc == SQLITE_IOERR_WRITE || rc == SQLITE_IOERR_FSYNC)
			return set_error(errstr, "%s: write error on the queue %s (%s); check "
			    "free space and the disk", what, qs->path, sqlite3_errmsg(qs->db));
		break;
	default:
		break;
	}
	return set_error(errstr, "%s: queue %s: %s", what, qs->path, sqlite3_errmsg(qs->db));
}

bool
queue_store_error_is_space(const struct queue_store *qs)
{
	int primary = qs->last_rc & 0xff;

	return primary == SQLITE_FULL || primary == SQLITE_READONLY ||
	    primary == SQLITE_PERM || primary == SQLITE_IOERR;
}

static int
queue_store_exec(struct queue_store *qs, const char *sql, char **errstr)
{
	if (sqlite3_exec(qs->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return queue_store_fail(qs, errstr, "database statement failed");
	return 0;
}

/* The cached statement WHICH, prepared on first use; NULL with *ERRSTR set on failure. */
static sqlite3_stmt *
queue_store_stmt(struct queue_store *qs, enum queue_stmt which, char **errstr)
{
	sqlite3_stmt **stmt = &qs->stmts[which];

	if (*stmt != NULL)
		return *stmt;
	if (sqlite3_prepare_v3(qs->db, queue_stmt_sql[which], -1,
	    SQLITE_PREPARE_PERSISTENT, stmt, NULL) != SQLITE_OK) {
		*stmt = NULL;
		queue_store_fail(qs, errstr, "cannot prepare a query");
		return NULL;
	}
	return *stmt;
}

/*
 * Set synchronous=FULL or NORMAL unless it is in effect already. PRAGMA
 * synchronous acts when it is compiled, so it runs through sqlite3_exec()
 * rather than a cached statement.
 */
static int
queue_store_set_sync(struct queue_store *qs, bool full, char **errstr)
{
	if (qs->sync_full == full)
		return 0;
	if (queue_store_exec(qs, full ? "PRAGMA synchronous=FULL" :
	    "PRAGMA synchronous=NORMAL", errstr) == -1)
		return -1;
	qs->sync_full = full;
	return 0;
}

#ifndef _WIN32
/* Create the directory of PATH with mode 0700 when it is missing. */
static int
queue_store_make_dir(const char *path, char **errstr)
{
	char *dir = xstrdup(path), *slash = strrchr(dir, '/');
	int rc = 0;

	if (slash != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0700) == -1 && errno != EEXIST)
			rc = set_error(errstr, "cannot create the queue directory %s: %s; "
			    "create it or change queue.path", dir, strerror(errno));
	}
	free(dir);
	return rc;
}
#endif

/*
 * Create the queue's directory and file where they are missing, for
 * relayqd's user only: modes 0700 and 0600 whatever the umask, and on
 * Windows, where modes mean nothing, the DACLs of acl_prepare_queue().
 */
static int
queue_store_create(const char *path, char **errstr)
{
#ifdef _WIN32
	return acl_prepare_queue(path, errstr);
#else
	int fd;

	if (queue_store_make_dir(path, errstr) == -1)
		return -1;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd == -1)
		return set_error(errstr, "cannot create the queue %s: %s; check "
		    "queue.path and the directory's permissions", path, strerror(errno));
	close(fd);
	return 0;
#endif
}

static int
queue_store_migrate(struct queue_store *qs, char **errstr)
{
	char sql[128];

	if (queue_store_exec(qs, "BEGIN IMMEDIATE", errstr) == -1)
		return -1;
	if (queue_store_exec(qs, queue_schema, errstr) == -1)
		goto fail;
	snprintf(sql, sizeof(sql), "INSERT OR IGNORE INTO meta(key, value) "
	    "VALUES('schema_version', '%d')", QUEUE_SCHEMA_VERSION);
	if (queue_store_exec(qs, sql, errstr) == -1)
		goto fail;
	return queue_store_exec(qs, "COMMIT", errstr);

fail:
	sqlite3_exec(qs->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/* Check the schema version so an older relayq never writes a newer queue. */
static int
queue_store_check_version(struct queue_store *qs, char **errstr)
{
	sqlite3_stmt *stmt = NULL;
	int version = -1, rc;

	rc = sqlite3_prepare_v2(qs->db,
	    "SELECT value FROM meta WHERE key = 'schema_version'", -1, &stmt, NULL);
	if (rc != SQLITE_OK) {
		queue_store_fail(qs, errstr, "cannot read the queue schema");
		return -1;
	}
	if (sqlite3_step(stmt) == SQLITE_ROW)
		version = sqlite3_column_int(stmt, 0);
	sqlite3_finalize(stmt);

	if (version != QUEUE_SCHEMA_VERSION)
		return set_error(errstr, "queue %s has schema version %d, this relayq "
		    "expects %d; use the matching relayq version", qs->path, version,
		    QUEUE_SCHEMA_VERSION);
	return 0;
}

/*
 * Look at an existing database before anything writes to it: refuse a
 * file that is not a database, a database of another program and one of
 * another schema version. An empty database passes, for
 * queue_store_migrate() to fill.
 */
static int
queue_store_check_existing(struct queue_store *qs, char **errstr)
{
	sqlite3_stmt *stmt = NULL;
	int tables = 0, meta = 0, rc;

	rc = sqlite3_prepare_v2(qs->db, "SELECT count(*), coalesce(sum(name = "
	    "'meta'), 0) FROM sqlite_master WHERE type = 'table'", -1, &stmt, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		tables = sqlite3_column_int(stmt, 0);
		meta = sqlite3_column_int(stmt, 1);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(stmt);
	if (rc != SQLITE_OK)
		return queue_store_fail(qs, errstr, "cannot read the queue");
	if (tables == 0)
		return 0;
	if (meta == 0)
		return set_error(errstr, "%s is an SQLite database but not a relayq "
		    "queue; relayq leaves it untouched: set queue.path to another "
		    "file", qs->path);
	return queue_store_check_version(qs, errstr);
}

int
queue_store_open(const char *path, int flags, struct queue_store **out,
    char **errstr)
{
	struct queue_store *qs;
	int open_flags;

	*out = NULL;
	if ((flags & QUEUE_STORE_CREATE) && queue_store_create(path, errstr) == -1)
		return -1;

	qs = xcalloc(1, sizeof(*qs));
	qs->path = xstrdup(path);
	open_flags = (flags & QUEUE_STORE_READONLY) ? SQLITE_OPEN_READONLY :
	    SQLITE_OPEN_READWRITE;
	if (sqlite3_open_v2(path, &qs->db, open_flags | SQLITE_OPEN_NOMUTEX,
	    NULL) != SQLITE_OK) {
		set_error(errstr, "cannot open the queue %s: %s; check queue.path, "
		    "or start relayqd once to create it", path,
		    qs->db != NULL ? sqlite3_errmsg(qs->db) : "out of memory");
		queue_store_close(qs);
		return -1;
	}
	sqlite3_extended_result_codes(qs->db, 1);
	sqlite3_busy_timeout(qs->db, 5000);
	if (queue_store_check_existing(qs, errstr) == -1)
		goto fail;

	if (!(flags & QUEUE_STORE_READONLY)) {
		if (queue_store_exec(qs, "PRAGMA journal_mode=WAL", errstr) == -1 ||
		    queue_store_exec(qs, "PRAGMA synchronous=NORMAL", errstr) == -1)
			goto fail;
	}
	if (queue_store_exec(qs, QUEUE_CACHE_PRAGMA, errstr) == -1)
		goto fail;
	if ((flags & QUEUE_STORE_CREATE) && queue_store_migrate(qs, errstr) == -1)
		goto fail;
	if (queue_store_check_version(qs, errstr) == -1)
		goto fail;

	*out = qs;
	return 0;

fail:
	queue_store_close(qs);
	return -1;
}

void
queue_store_defer_sync(struct queue_store *qs, bool defer)
{
	qs->defer_sync = defer;
}

char *
queue_store_wal_path(const struct queue_store *qs)
{
	return xasprintf("%s-wal", qs->path);
}

void
queue_store_close(struct queue_store *qs)
{
	size_t i;

	if (qs == NULL)
		return;
	for (i = 0; i < QUEUE_STMT_COUNT; i++)
		sqlite3_finalize(qs->stmts[i]);
	sqlite3_close_v2(qs->db);
	free(qs->path);
	free(qs);
}

sqlite3 *
queue_store_db(struct queue_store *qs)
{
	return qs->db;
}

/*
 * Run a cached statement that returns no rows, then reset it and clear
 * its bindings, which may point into the caller's memory.
 */
static int
queue_store_step_done(struct queue_store *qs, sqlite3_stmt *stmt, char **errstr,
    const char *what)
{
	int rc = sqlite3_step(stmt);

	if (rc != SQLITE_DONE)
		queue_store_fail(qs, errstr, what);
	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Run the cached statement WHICH, which takes no parameters and returns no rows. */
static int
queue_store_run(struct queue_store *qs, enum queue_stmt which, char **errstr)
{
	sqlite3_stmt *stmt = queue_store_stmt(qs, which, errstr);

	if (stmt == NULL)
		return -1;
	return queue_store_step_done(qs, stmt, errstr, "database statement failed");
}

int
queue_store_begin(struct queue_store *qs, bool durable, char **errstr)
{
	if (qs->depth > 0)
		return set_error(errstr, "internal error: nested queue transaction");
	if (durable && !qs->defer_sync && queue_store_set_sync(qs, true, errstr) == -1)
		return -1;
	if (queue_store_run(qs, QUEUE_STMT_BEGIN, errstr) == -1) {
		queue_store_set_sync(qs, false, NULL);
		return -1;
	}
	qs->depth = 1;
	return 0;
}

int
queue_store_commit(struct queue_store *qs, char **errstr)
{
	int rc;

	rc = queue_store_run(qs, QUEUE_STMT_COMMIT, errstr);
	if (rc == -1) {
		/* A failed COMMIT may leave the transaction open: end it. */
		if (!sqlite3_get_autocommit(qs->db))
			sqlite3_exec(qs->db, "ROLLBACK", NULL, NULL, NULL);
	}
	qs->depth = 0;
	queue_store_set_sync(qs, false, NULL);
	return rc;
}

void
queue_store_rollback(struct queue_store *qs)
{
	if (!sqlite3_get_autocommit(qs->db))
		sqlite3_exec(qs->db, "ROLLBACK", NULL, NULL, NULL);
	qs->depth = 0;
	queue_store_set_sync(qs, false, NULL);
}

/* End a transaction that a store function opened for itself: commit after RC 0, else roll back. */
static int
queue_store_end_own(struct queue_store *qs, int rc, char **errstr)
{
	if (rc == 0)
		return queue_store_commit(qs, errstr);
	queue_store_rollback(qs);
	return rc;
}

static int
queue_store_insert_recipients(struct queue_store *qs, int64_t id,
    char *const *rcpts, size_t rcpt_count, char **errstr)
{
	sqlite3_stmt *stmt;
	size_t i;

	stmt = queue_store_stmt(qs, QUEUE_STMT_RECIPIENT_INSERT, errstr);
	if (stmt == NULL)
		return -1;
	for (i = 0; i < rcpt_count; i++) {
		sqlite3_bind_int64(stmt, 1, id);
		sqlite3_bind_int64(stmt, 2, (sqlite3_int64)i);
		sqlite3_bind_text(stmt, 3, rcpts[i], -1, SQLITE_STATIC);
		if (queue_store_step_done(qs, stmt, errstr,
		    "cannot store a recipient") == -1)
			return -1;
	}
	return 0;
}

int
queue_store_message_create(struct queue_store *qs, const char *sender,
    char *const *rcpts, size_t rcpt_count, const char *client, int64_t now,
    int64_t *id, char **errstr)
{
	sqlite3_stmt *stmt;
	bool own = qs->depth == 0;
	int rc = -1;

	if (own && queue_store_begin(qs, false, errstr) == -1)
		return -1;

	stmt = queue_store_stmt(qs, QUEUE_STMT_MESSAGE_INSERT, errstr);
	if (stmt == NULL)
		goto done;
	sqlite3_bind_text(stmt, 1, sender, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 2, now);
	sqlite3_bind_text(stmt, 3, client, -1, SQLITE_STATIC);
	if (queue_store_step_done(qs, stmt, errstr, "cannot store a new message") == -1)
		goto done;
	*id = sqlite3_last_insert_rowid(qs->db);
	rc = queue_store_insert_recipients(qs, *id, rcpts, rcpt_count, errstr);

done:
	return own ? queue_store_end_own(qs, rc, errstr) : rc;
}

int
queue_store_chunk_append(struct queue_store *qs, int64_t id, int seq,
    const void *data, size_t len, char **errstr)
{
	sqlite3_stmt *stmt;

	stmt = queue_store_stmt(qs, QUEUE_STMT_CHUNK_INSERT, errstr);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, id);
	sqlite3_bind_int(stmt, 2, seq);
	sqlite3_bind_blob(stmt, 3, data, (int)len, SQLITE_STATIC);
	return queue_store_step_done(qs, stmt, errstr, "cannot store message data");
}

int
queue_store_message_accept(struct queue_store *qs, int64_t id, uint64_t size,
    const char *message_id, char **errstr)
{
	sqlite3_stmt *stmt;

	stmt = queue_store_stmt(qs, QUEUE_STMT_MESSAGE_ACCEPT, errstr);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, id);
	sqlite3_bind_int64(stmt, 2, (sqlite3_int64)size);
	sqlite3_bind_text(stmt, 3, message_id, -1, SQLITE_STATIC);
	if (queue_store_step_done(qs, stmt, errstr, "cannot accept a message") == -1)
		return -1;
	if (sqlite3_changes(qs->db) != 1)
		return set_error(errstr, "message %lld vanished while it was received",
		    (long long)id);
	return 0;
}

int
queue_store_message_delete(struct queue_store *qs, int64_t id, char **errstr)
{
	static const enum queue_stmt deletes[] = {
		QUEUE_STMT_DELETE_CHUNKS,
		QUEUE_STMT_DELETE_RECIPIENTS,
		QUEUE_STMT_DELETE_ATTEMPTS,
		QUEUE_STMT_DELETE_MESSAGE,
	};
	bool own = qs->depth == 0;
	size_t i;
	int rc = 0;

	if (own && queue_store_begin(qs, false, errstr) == -1)
		return -1;
	for (i = 0; i < sizeof(deletes) / sizeof(deletes[0]) && rc == 0; i++) {
		sqlite3_stmt *stmt = queue_store_stmt(qs, deletes[i], errstr);

		if (stmt == NULL) {
			rc = -1;
			break;
		}
		sqlite3_bind_int64(stmt, 1, id);
		rc = queue_store_step_done(qs, stmt, errstr, "cannot delete a message");
	}
	return own ? queue_store_end_own(qs, rc, errstr) : rc;
}

int
queue_store_recover(struct queue_store *qs, int *dropped, int *requeued,
    char **errstr)
{
	static const char drop_sql[] =
		"DELETE FROM chunk WHERE message IN "
		"  (SELECT id FROM message WHERE state = 'receiving');"
		"DELETE FROM recipient WHERE message IN "
		"  (SELECT id FROM message WHERE state = 'receiving');"
		"DELETE FROM message WHERE state = 'receiving';";

	if (queue_store_begin(qs, true, errstr) == -1)
		return -1;
	if (queue_store_exec(qs, drop_sql, errstr) == -1)
		goto fail;
	*dropped = sqlite3_changes(qs->db);
	if (queue_store_exec(qs, "UPDATE message SET state = 'queued' "
	    "WHERE state = 'sending'", errstr) == -1)
		goto fail;
	*requeued = sqlite3_changes(qs->db);
	return queue_store_commit(qs, errstr);

fail:
	queue_store_rollback(qs);
	return -1;
}

void
queue_message_free(struct queue_message *msg)
{
	size_t i;

	if (msg == NULL)
		return;
	for (i = 0; i < msg->rcpt_count; i++) {
		free(msg->rcpts[i].address);
		free(msg->rcpts[i].text);
	}
	free(msg->rcpts);
	free(msg->sender);
	free(msg->message_id);
	free(msg);
}

static int
queue_store_load_recipients(struct queue_store *qs, struct queue_message *msg,
    char **errstr)
{
	sqlite3_stmt *stmt;
	size_t cap = 4;
	int rc;

	stmt = queue_store_stmt(qs, QUEUE_STMT_RECIPIENTS_PENDING, errstr);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, msg->id);
	msg->rcpts = xcalloc(cap, sizeof(*msg->rcpts));
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		struct queue_recipient *r;

		if (msg->rcpt_count == cap) {
			cap *= 2;
			msg->rcpts = xrealloc(msg->rcpts, cap * sizeof(*msg->rcpts));
		}
		r = &msg->rcpts[msg->rcpt_count++];
		memset(r, 0, sizeof(*r));
		r->idx = sqlite3_column_int(stmt, 0);
		/* A damaged row may lack it; queue_store_message_check() reports that. */
		r->address = sqlite3_column_type(stmt, 1) != SQLITE_NULL ?
		    xstrdup((const char *)sqlite3_column_text(stmt, 1)) : xstrdup("");
		r->state = RCPT_PENDING;
	}
	if (rc != SQLITE_DONE)
		queue_store_fail(qs, errstr, "cannot read recipients");
	sqlite3_reset(stmt);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int
queue_store_count_failed(struct queue_store *qs, struct queue_message *msg,
    char **errstr)
{
	sqlite3_stmt *stmt;
	int rc = -1;

	stmt = queue_store_stmt(qs, QUEUE_STMT_RECIPIENTS_FAILED, errstr);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, msg->id);
	if (sqlite3_step(stmt) == SQLITE_ROW) {
		msg->failed_before = sqlite3_column_int(stmt, 0);
		rc = 0;
	} else {
		queue_store_fail(qs, errstr, "cannot read recipients");
	}
	sqlite3_reset(stmt);
	return rc;
}

static struct queue_message *
queue_message_from_row(sqlite3_stmt *stmt)
{
	struct queue_message *msg = xcalloc(1, sizeof(*msg));
	const char *message_id = (const char *)sqlite3_column_text(stmt, 2);
	const char *sender = (const char *)sqlite3_column_text(stmt, 1);

	msg->id = sqlite3_column_int64(stmt, 0);
	/* NULL only in a damaged row; queue_store_message_check() reports it. */
	msg->sender = sender != NULL ? xstrdup(sender) : NULL;
	msg->message_id = message_id != NULL ? xstrdup(message_id) : NULL;
	msg->size = (uint64_t)sqlite3_column_int64(stmt, 3);
	msg->created = sqlite3_column_int64(stmt, 4);
	msg->attempt_count = sqlite3_column_int(stmt, 5);
	msg_state_parse((const char *)sqlite3_column_text(stmt, 6),
	    &msg->previous_state);
	return msg;
}

/* Find the due message that has waited longest. Returns 1 with *OUT set, 0 when none is due, -1 on error. */
static int
queue_store_find_due(struct queue_store *qs, int64_t now, bool include_uncertain,
    struct queue_message **out, char **errstr)
{
	sqlite3_stmt *stmt;
	int step;

	stmt = queue_store_stmt(qs, include_uncertain ?
	    QUEUE_STMT_CLAIM_SELECT_UNCERTAIN : QUEUE_STMT_CLAIM_SELECT, errstr);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, now);
	step = sqlite3_step(stmt);
	if (step == SQLITE_ROW)
		*out = queue_message_from_row(stmt);
	else if (step != SQLITE_DONE)
		queue_store_fail(qs, errstr, "cannot look for due messages");
	sqlite3_reset(stmt);
	if (step == SQLITE_ROW)
		return 1;
	return step == SQLITE_DONE ? 0 : -1;
}

int
queue_store_claim_due(struct queue_store *qs, int64_t now, bool include_uncertain,
    struct queue_message **out, char **errstr)
{
	struct queue_message *msg = NULL;
	sqlite3_stmt *claim;
	bool own = qs->depth == 0;
	int rc;

	*out = NULL;
	if (own && queue_store_begin(qs, false, errstr) == -1)
		return -1;

	rc = queue_store_find_due(qs, now, include_uncertain, &msg, errstr);
	if (rc != 1)
		goto done;
	rc = -1;
	claim = queue_store_stmt(qs, QUEUE_STMT_CLAIM_UPDATE, errstr);
	if (claim == NULL)
		goto done;
	sqlite3_bind_int64(claim, 1, msg->id);
	if (queue_store_step_done(qs, claim, errstr, "cannot claim a message") == -1)
		goto done;
	if (queue_store_load_recipients(qs, msg, errstr) == -1)
		goto done;
	if (queue_store_count_failed(qs, msg, errstr) == -1)
		goto done;
	rc = 1;

done:
	if (own) {
		if (rc >= 0 && queue_store_commit(qs, errstr) == -1)
			rc = -1;
		else if (rc < 0)
			queue_store_rollback(qs);
	}
	if (rc == 1)
		*out = msg;
	else
		queue_message_free(msg);
	return rc;
}

int
queue_store_count_due(struct queue_store *qs, int64_t now, bool include_uncertain,
    int64_t *count, char **errstr)
{
	sqlite3_stmt *stmt;
	int rc = -1;

	stmt = queue_store_stmt(qs, include_uncertain ?
	    QUEUE_STMT_COUNT_DUE_UNCERTAIN : QUEUE_STMT_COUNT_DUE, errstr);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, now);
	if (sqlite3_step(stmt) == SQLITE_ROW) {
		*count = sqlite3_column_int64(stmt, 0);
		rc = 0;
	} else {
		queue_store_fail(qs, errstr, "cannot count due messages");
	}
	sqlite3_reset(stmt);
	return rc;
}

int
queue_store_next_due(struct queue_store *qs, bool include_uncertain,
    int64_t *when, char **errstr)
{
	sqlite3_stmt *stmt;
	int rc = -1;

	stmt = queue_store_stmt(qs, include_uncertain ?
	    QUEUE_STMT_NEXT_DUE_UNCERTAIN : QUEUE_STMT_NEXT_DUE, errstr);
	if (stmt == NULL)
		return -1;
	if (sqlite3_step(stmt) == SQLITE_ROW) {
		if (sqlite3_column_type(stmt, 0) == SQLITE_NULL) {
			rc = 0;
		} else {
			*when = sqlite3_column_int64(stmt, 0);
			rc = 1;
		}
	} else {
		queue_store_fail(qs, errstr, "cannot find the next due message");
	}
	sqlite3_reset(stmt);
	return rc;
}

int
queue_store_chunk_read(struct queue_store *qs, int64_t id, int seq,
    struct evbuffer *out, char **errstr)
{
	sqlite3_stmt *stmt;
	int rc = -1, step;

	stmt = queue_store_stmt(qs, QUEUE_STMT_CHUNK_READ, errstr);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, id);
	sqlite3_bind_int(stmt, 2, seq);
	step = sqlite3_step(stmt);
	if (step == SQLITE_ROW) {
		const void *data = sqlite3_column_blob(stmt, 0);
		int len = sqlite3_column_bytes(stmt, 0);

		if (len > 0 && evbuffer_add(out, data, (size_t)len) == -1)
			set_error(errstr, "out of memory reading message %lld",
			    (long long)id);
		else
			rc = 1;
	} else if (step == SQLITE_DONE) {
		rc = 0;
	} else {
		queue_store_fail(qs, errstr, "cannot read message data");
	}
	sqlite3_reset(stmt);
	return rc;
}

/* Read the aggregate columns of the one-row check statement WHICH for message ID into VALUES. */
static int
queue_store_check_row(struct queue_store *qs, enum queue_stmt which, int64_t id,
    int64_t *values, int count, char **errstr)
{
	sqlite3_stmt *stmt;
	int rc = -1, i;

	stmt = queue_store_stmt(qs, which, errstr);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, id);
	if (sqlite3_step(stmt) == SQLITE_ROW) {
		for (i = 0; i < count; i++)
			values[i] = sqlite3_column_int64(stmt, i);
		rc = 0;
	} else {
		queue_store_fail(qs, errstr, "cannot check a message");
	}
	sqlite3_reset(stmt);
	return rc;
}

int
queue_store_message_check(struct queue_store *qs, const struct queue_message *msg,
    char **reason, char **errstr)
{
	int64_t chunks[5], rcpts[2];	/* see the CHECK statements for the columns */

	*reason = NULL;
	if (queue_store_check_row(qs, QUEUE_STMT_CHECK_CHUNKS, msg->id, chunks, 5,
	    errstr) == -1 ||
	    queue_store_check_row(qs, QUEUE_STMT_CHECK_RECIPIENTS, msg->id, rcpts, 2,
	    errstr) == -1)
		return -1;

	if (msg->sender == NULL)
		*reason = xstrdup("the sender is missing");
	else if (rcpts[0] == 0)
		*reason = xstrdup("the message has no recipients");
	else if (rcpts[1] > 0)
		*reason = xasprintf("%lld recipient address(es) missing",
		    (long long)rcpts[1]);
	else if (chunks[4] > 0)
		*reason = xasprintf("%lld body chunk(s) are not binary data",
		    (long long)chunks[4]);
	else if (chunks[0] > 0 && (chunks[1] != 0 || chunks[2] != chunks[0] - 1))
		*reason = xasprintf("body chunks are missing: %lld stored, numbered "
		    "%lld to %lld", (long long)chunks[0], (long long)chunks[1],
		    (long long)chunks[2]);
	else if ((uint64_t)chunks[3] != msg->size)
		*reason = xasprintf("the body has %lld bytes in %lld chunk(s), the "
		    "message was accepted with %llu", (long long)chunks[3],
		    (long long)chunks[0], (unsigned long long)msg->size);
	return *reason != NULL ? 1 : 0;
}

static int
queue_store_update_recipients(struct queue_store *qs,
    const struct queue_message *msg, int64_t now, char **errstr)
{
	sqlite3_stmt *stmt;
	size_t i;
	int rc = 0;

	stmt = queue_store_stmt(qs, QUEUE_STMT_RECIPIENT_UPDATE, errstr);
	if (stmt == NULL)
		return -1;
	for (i = 0; i < msg->rcpt_count && rc == 0; i++) {
		const struct queue_recipient *r = &msg->rcpts[i];

		/* A recipient that was never tried keeps its previous result. */
		if (r->code == 0 && r->text == NULL && r->state == RCPT_PENDING)
			continue;
		sqlite3_bind_int64(stmt, 1, msg->id);
		sqlite3_bind_int(stmt, 2, r->idx);
		sqlite3_bind_text(stmt, 3, rcpt_state_name(r->state), -1, SQLITE_STATIC);
		if (r->code != 0)
			sqlite3_bind_int(stmt, 4, r->code);
		else
			sqlite3_bind_null(stmt, 4);
		sqlite3_bind_text(stmt, 5, r->status, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 6, r->text, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 7, now);
		rc = queue_store_step_done(qs, stmt, errstr, "cannot store a recipient result");
	}
	return rc;
}

static int
queue_store_insert_attempt(struct queue_store *qs, int64_t id,
    const struct queue_attempt *attempt, char **errstr)
{
	sqlite3_stmt *stmt;

	stmt = queue_store_stmt(qs, QUEUE_STMT_ATTEMPT_INSERT, errstr);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, id);
	sqlite3_bind_int64(stmt, 2, attempt->time);
	sqlite3_bind_text(stmt, 3, attempt->host, -1, SQLITE_STATIC);
	if (attempt->code != 0)
		sqlite3_bind_int(stmt, 4, attempt->code);
	else
		sqlite3_bind_null(stmt, 4);
	sqlite3_bind_text(stmt, 5, attempt->status, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 6, attempt->text, -1, SQLITE_STATIC);
	return queue_store_step_done(qs, stmt, errstr, "cannot store a delivery attempt");
}

static int
queue_store_update_message(struct queue_store *qs, const struct queue_message *msg,
    enum msg_state state, int64_t next_attempt, const char *last_error,
    const char *final_reply, int64_t now, char **errstr)
{
	sqlite3_stmt *stmt;

	stmt = queue_store_stmt(qs, QUEUE_STMT_MESSAGE_FINISH, errstr);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 1, msg->id);
	sqlite3_bind_text(stmt, 2, msg_state_name(state), -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 3, next_attempt);
	sqlite3_bind_text(stmt, 4, last_error, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 5, final_reply, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 6, now);
	return queue_store_step_done(qs, stmt, errstr, "cannot store a delivery result");
}

int
queue_store_finish(struct queue_store *qs, const struct queue_message *msg,
    enum msg_state state, int64_t next_attempt, const char *last_error,
    const char *final_reply, const struct queue_attempt *attempt, char **errstr)
{
	bool own = qs->depth == 0;
	int rc = -1;

	if (own && queue_store_begin(qs, true, errstr) == -1)
		return -1;
	if (queue_store_update_recipients(qs, msg, attempt->time, errstr) == -1)
		goto done;
	if (queue_store_insert_attempt(qs, msg->id, attempt, errstr) == -1)
		goto done;
	rc = queue_store_update_message(qs, msg, state, next_attempt, last_error,
	    final_reply, attempt->time, errstr);

done:
	return own ? queue_store_end_own(qs, rc, errstr) : rc;
}
