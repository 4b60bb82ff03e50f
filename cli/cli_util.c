/*
 * Helpers that the relayq command files share: messages, opening the
 * queue store, SQLite error reporting, parsing of ids and times, waking
 * relayqd, and terminal-safe text output.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "control.h"
#include "duration.h"
#include "exit_codes.h"
#include "queue_admin.h"
#include "util.h"

/* Time the CLI waits for a writer before it gives up with EX_TEMPFAIL. */
#define CLI_BUSY_TIMEOUT_MS 10000

void
cli_warn(struct cli *cli, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "%s: ", cli->progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* --- store --- */

int
cli_open_store(struct cli *cli, int flags)
{
	char *errstr = NULL;

	if (cli->config == NULL &&
	    config_load(cli->config_path, &cli->config, &errstr) == -1) {
		cli_warn(cli, "%s", errstr);
		free(errstr);
		return EX_CONFIG;
	}

	/* NOTE: queue_store_open() does not say whether it failed on a lock, so a busy open exits 69, not 75. */
	if (queue_store_open(cli->config->queue_path, flags, &cli->store,
	    &errstr) == -1) {
		cli_warn(cli, "%s", errstr);
		free(errstr);
		return EX_UNAVAILABLE;
	}
	sqlite3_busy_timeout(queue_store_db(cli->store), CLI_BUSY_TIMEOUT_MS);
	return EX_OK;
}

/* The one place that maps a locked queue to EX_TEMPFAIL; MESSAGE says what failed. */
static int
cli_report_store_failure(struct cli *cli, bool busy, const char *message)
{
	cli_warn(cli, "%s", message);
	return busy ? EX_TEMPFAIL : EX_UNAVAILABLE;
}

int
cli_store_error(struct cli *cli, const char *what)
{
	sqlite3 *db = queue_store_db(cli->store);
	int code = sqlite3_errcode(db) & 0xff;
	bool busy = code == SQLITE_BUSY || code == SQLITE_LOCKED;
	char *message;
	int rc;

	if (busy)
		message = xasprintf("%s: queue %s is busy; try again", what,
		    cli->config->queue_path);
	else
		message = xasprintf("%s: queue %s: %s", what,
		    cli->config->queue_path, sqlite3_errmsg(db));
	rc = cli_report_store_failure(cli, busy, message);
	free(message);
	return rc;
}

int
cli_admin_error(struct cli *cli, int rc, char *errstr)
{
	int status;

	status = cli_report_store_failure(cli, rc == QUEUE_ADMIN_BUSY,
	    errstr != NULL ? errstr : "cannot use the queue: unknown error");
	free(errstr);
	return status;
}

void
cli_wake(struct cli *cli)
{
	char *errstr = NULL;

	if (control_wake(cli->config, &errstr) == 0)
		return;
	cli_warn(cli, "the change is saved, but relayqd was not told about it "
	    "(%s); it acts on the change at its next queue run or restart",
	    errstr);
	free(errstr);
}

int
cli_read_begin(struct cli *cli)
{
	if (sqlite3_exec(queue_store_db(cli->store), "BEGIN", NULL, NULL,
	    NULL) != SQLITE_OK)
		return cli_store_error(cli, "cannot read the queue");
	return EX_OK;
}

void
cli_read_end(struct cli *cli)
{
	/* A read transaction has nothing to commit, so a failure changes nothing. */
	sqlite3_exec(queue_store_db(cli->store), "COMMIT", NULL, NULL, NULL);
}

const char *
cli_column_text(sqlite3_stmt *stmt, int col)
{
	if (sqlite3_column_type(stmt, col) == SQLITE_NULL)
		return NULL;
	return (const char *)sqlite3_column_text(stmt, col);
}

bool
cli_next_attempt(const char *state, int64_t next_attempt, int64_t created,
    int64_t *when)
{
	if (strcmp(state, "queued") != 0 && strcmp(state, "deferred") != 0 &&
	    strcmp(state, "uncertain") != 0)
		return false;
	*when = next_attempt > 0 ? next_attempt : created;
	return true;
}

void
cli_format_relative(int64_t when, int64_t now, char *buf, size_t size)
{
	char span[CLI_TIME_SIZE];

	if (when <= now) {
		snprintf(buf, size, "now");
		return;
	}
	duration_format(when - now, span, sizeof(span));
	snprintf(buf, size, "in %s", span);
}

void
cli_format_age(int64_t created, int64_t now, char *buf, size_t size)
{
	duration_format(now > created ? now - created : 0, buf, size);
}

/* --- parsing arguments --- */

int
cli_unexpected_argument(struct cli *cli, const char *command, const char *arg)
{
	char *text = cli_escape(arg, strlen(arg), 64, NULL);
	int rc;

	rc = cli_usage_error(cli, command, "unexpected argument '%s'", text);
	free(text);
	return rc;
}

bool
cli_parse_id(const char *text, int64_t *id)
{
	const char *p;
	long long value;

	for (p = text; *p != '\0'; p++)
		if (*p < '0' || *p > '9')
			return false;
	if (p == text)
		return false;

	errno = 0;
	value = strtoll(text, NULL, 10);
	if (errno != 0 || value <= 0)
		return false;
	*id = value;
	return true;
}

int
cli_parse_count(struct cli *cli, const char *command, const char *option,
    const char *text, int64_t *value)
{
	char *escaped;
	int rc;

	if (strcmp(text, "0") == 0) {
		*value = 0;
		return EX_OK;
	}
	if (cli_parse_id(text, value))
		return EX_OK;

	escaped = cli_escape(text, strlen(text), 64, NULL);
	rc = cli_usage_error(cli, command, "invalid %s '%s'; expected a whole "
	    "number from 0 up", option, escaped);
	free(escaped);
	return rc;
}

/* Parse exactly COUNT digits at *P into *VALUE and advance *P. */
static bool
cli_parse_digits(const char **p, int count, int *value)
{
	int i;

	*value = 0;
	for (i = 0; i < count; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return false;
		*value = *value * 10 + ((*p)[i] - '0');
	}
	*p += count;
	return true;
}

/* Parse the time of day and zone of an RFC 3339 time: "09:00:00Z", "10:00:00.5+01:00". */
static bool
cli_parse_clock(const char *p, struct tm *tm, int64_t *offset)
{
	int hours, minutes, sign;

	if (!cli_parse_digits(&p, 2, &tm->tm_hour) || *p++ != ':' ||
	    !cli_parse_digits(&p, 2, &tm->tm_min) || *p++ != ':' ||
	    !cli_parse_digits(&p, 2, &tm->tm_sec))
		return false;
	if (*p == '.') {
		/* Fractions of a second are accepted and dropped. */
		p++;
		if (!isdigit((unsigned char)*p))
			return false;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if (tm->tm_hour > 23 || tm->tm_min > 59 || tm->tm_sec > 60)
		return false;

	if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
		*offset = 0;
		return true;
	}
	if (*p != '+' && *p != '-')
		return false;
	sign = *p++ == '-' ? -1 : 1;
	if (!cli_parse_digits(&p, 2, &hours) || *p++ != ':' ||
	    !cli_parse_digits(&p, 2, &minutes) || *p != '\0' ||
	    hours > 23 || minutes > 59)
		return false;
	*offset = sign * (hours * 3600 + minutes * 60);
	return true;
}

/* Days from 1970-01-01 to a date of the proleptic Gregorian calendar, without timegm(), which Windows lacks. */
static int64_t
cli_days_from_civil(int64_t year, int month, int day)
{
	int64_t era, year_of_era, day_of_year, day_of_era;

	year -= month <= 2;
	era = (year >= 0 ? year : year - 399) / 400;
	year_of_era = year - era * 400;
	day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
	day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 +
	    day_of_year;
	return era * 146097 + day_of_era - 719468;
}

/* Parse an RFC 3339 time, or a date alone for midnight UTC, into Unix seconds. */
static bool
cli_parse_rfc3339(const char *text, int64_t *when)
{
	static const int month_days[12] = {
		31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
	};
	const char *p = text;
	int64_t offset = 0;
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (!cli_parse_digits(&p, 4, &tm.tm_year) || *p++ != '-' ||
	    !cli_parse_digits(&p, 2, &tm.tm_mon) || *p++ != '-' ||
	    !cli_parse_digits(&p, 2, &tm.tm_mday))
		return false;
	if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
	    tm.tm_mday > month_days[tm.tm_mon - 1])
		return false;
	if (tm.tm_mon == 2 && tm.tm_mday == 29 && (tm.tm_year % 4 != 0 ||
	    (tm.tm_year % 100 == 0 && tm.tm_year % 400 != 0)))
		return false;

	if (*p != '\0') {
		if (*p != 'T' && *p != 't' && *p != ' ')
			return false;
		if (!cli_parse_clock(p + 1, &tm, &offset))
			return false;
	}
	*when = cli_days_from_civil(tm.tm_year, tm.tm_mon, tm.tm_mday) * 86400 +
	    tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec - offset;
	return true;
}

int
cli_parse_time(struct cli *cli, const char *command, const char *option,
    const char *text, int64_t now, int64_t *when)
{
	char *escaped, *errstr = NULL;
	int64_t seconds;
	int rc;

	if (isdigit((unsigned char)text[0]) && strlen(text) >= 10 &&
	    text[4] == '-') {
		if (cli_parse_rfc3339(text, when))
			return EX_OK;
	} else if (duration_parse(text, &seconds, &errstr) == 0) {
		*when = now - seconds;
		return EX_OK;
	}
	free(errstr);

	escaped = cli_escape(text, strlen(text), 64, NULL);
	rc = cli_usage_error(cli, command, "invalid %s '%s'; expected a duration "
	    "back from now such as 2h or 7d, or an RFC 3339 time such as "
	    "2026-03-01T09:00:00Z", option, escaped);
	free(escaped);
	return rc;
}

int
cli_parse_state(struct cli *cli, const char *command, const char *text,
    bool allow_all, int *state)
{
	enum msg_state parsed;
	char *escaped;
	int rc;

	if (allow_all && strcmp(text, "all") == 0) {
		*state = -1;
		return EX_OK;
	}
	if (msg_state_parse(text, &parsed) == 0 && parsed != MSG_RECEIVING) {
		*state = (int)parsed;
		return EX_OK;
	}

	escaped = cli_escape(text, strlen(text), 64, NULL);
	rc = cli_usage_error(cli, command, "invalid state '%s'; valid states are "
	    "queued, deferred, sending, held, sent, uncertain%s failed%s", escaped,
	    allow_all ? "," : " and", allow_all ? " and all" : "");
	free(escaped);
	return rc;
}

/* --- terminal-safe text --- */

/*
 * Write the escaped form of the character at S into OUT (16 bytes) and
 * return the bytes of S it spans. Returns 0 when S ends inside a UTF-8
 * sequence and more input may follow (FINAL is false).
 */
static size_t
cli_escape_char(const unsigned char *s, size_t len, bool final, char *out,
    size_t *out_len, size_t *width)
{
	enum json_utf8_result result;
	size_t seqlen, i, n = 0;
	uint32_t cp = 0;

	if (s[0] >= 0x20 && s[0] < 0x7f) {
		if (s[0] == '\\')
			out[n++] = '\\';
		out[n++] = (char)s[0];
		*out_len = *width = n;
		return 1;
	}

	result = json_utf8_scan(s, len, &seqlen, &cp);
	if (result == JSON_UTF8_TRUNCATED && !final)
		return 0;

	/* C1 controls (U+0080 to U+009F) act on terminals like C0 controls. */
	if (result == JSON_UTF8_VALID && cp >= 0xa0) {
		memcpy(out, s, seqlen);
		*out_len = seqlen;
		*width = 1;
		return seqlen;
	}

	if (seqlen == 1 && s[0] == '\n')
		n = (size_t)snprintf(out, 16, "\\n");
	else if (seqlen == 1 && s[0] == '\r')
		n = (size_t)snprintf(out, 16, "\\r");
	else if (seqlen == 1 && s[0] == '\t')
		n = (size_t)snprintf(out, 16, "\\t");
	else
		for (i = 0; i < seqlen; i++)
			n += (size_t)snprintf(out + n, 16 - n, "\\x%02x", s[i]);
	*out_len = *width = n;
	return seqlen;
}

char *
cli_escape(const char *s, size_t len, size_t max_width, size_t *width)
{
	const unsigned char *p = (const unsigned char *)s;
	char *out = xmalloc(len * 4 + 8), unit[16];
	size_t i = 0, n = 0, total = 0, cut_len = 0, cut_width = 0;
	size_t used, unit_len, unit_width;

	while (i < len) {
		used = cli_escape_char(p + i, len - i, true, unit, &unit_len,
		    &unit_width);
		/* Remember where to cut so that the text plus "..." fits MAX_WIDTH. */
		if (max_width > 3 && total + unit_width <= max_width - 3) {
			cut_len = n + unit_len;
			cut_width = total + unit_width;
		}
		memcpy(out + n, unit, unit_len);
		n += unit_len;
		total += unit_width;
		i += used;
		if (max_width > 0 && total > max_width)
			break;
	}

	if (max_width > 0 && total > max_width) {
		n = cut_len;
		memcpy(out + n, "...", 3);
		n += 3;
		total = cut_width + 3;
	}
	out[n] = '\0';
	if (width != NULL)
		*width = total;
	return out;
}

void
cli_text_begin(struct cli_text_output *out, FILE *fp)
{
	memset(out, 0, sizeof(*out));
	out->fp = fp;
}

/*
 * Write the characters of S. Returns the number of bytes at the end left
 * unwritten because the next piece may continue them (only when !FINAL).
 */
static size_t
cli_text_write_some(struct cli_text_output *out, const unsigned char *s,
    size_t len, bool final)
{
	size_t i = 0, run, used, unit_len, unit_width;
	char unit[16];

	while (i < len) {
		/* Printable ASCII, tab and LF go out unchanged, in runs. */
		for (run = i; i < len; i++)
			if ((s[i] < 0x20 || s[i] >= 0x7f) && s[i] != '\t' &&
			    s[i] != '\n')
				break;
		fwrite(s + run, 1, i - run, out->fp);
		if (i == len)
			break;

		if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n') {
			putc('\n', out->fp);
			i += 2;
			continue;
		}
		if (s[i] == '\r' && i + 1 == len && !final)
			return 1;

		used = cli_escape_char(s + i, len - i, final, unit, &unit_len,
		    &unit_width);
		if (used == 0)
			return len - i;
		fwrite(unit, 1, unit_len, out->fp);
		i += used;
	}
	return 0;
}

void
cli_text_write(struct cli_text_output *out, const void *data, size_t len)
{
	const unsigned char *s = data;
	unsigned char buf[8];
	size_t have = out->pending_len, take, left;

	if (len == 0)
		return;

	/* Finish the carried bytes: a character needs at most 3 more bytes. */
	if (have > 0) {
		take = len < 4 ? len : 4;
		memcpy(buf, out->pending, have);
		memcpy(buf + have, s, take);
		left = cli_text_write_some(out, buf, have + take, false);
		out->pending_len = 0;
		if (left > take) {
			/* Still incomplete, so all of S joined the carried bytes. */
			memcpy(out->pending, buf + have + take - left, left);
			out->pending_len = left;
			return;
		}
		/* An unwritten tail lies in S and is written again from there. */
		s += take - left;
		len -= take - left;
	}

	left = cli_text_write_some(out, s, len, false);
	memcpy(out->pending, s + len - left, left);
	out->pending_len = left;
}

void
cli_text_end(struct cli_text_output *out)
{
	cli_text_write_some(out, out->pending, out->pending_len, true);
	out->pending_len = 0;
}

