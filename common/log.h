/*
 * Logging: one line per event on stderr (foreground) with a level.
 * Every string that came from a peer must pass log_escape() first.
 */
#ifndef RELAYQ_LOG_H
#define RELAYQ_LOG_H

#include <stddef.h>

#include "compat.h"

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARNING,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

void log_init(const char *progname, enum log_level level);
void log_set_level(enum log_level level);
int log_level_parse(const char *text, enum log_level *level);

void log_error(const char *fmt, ...) RELAYQ_PRINTF(1, 2);
void log_warning(const char *fmt, ...) RELAYQ_PRINTF(1, 2);
void log_info(const char *fmt, ...) RELAYQ_PRINTF(1, 2);
void log_debug(const char *fmt, ...) RELAYQ_PRINTF(1, 2);
int log_debug_enabled(void);

/*
 * A log line as a sink receives it. LINE is the whole line with its
 * prefix and final newline. TEXT points into LINE at the message after
 * "LEVEL: " and is TEXT_LEN bytes long, without the newline.
 */
struct log_record {
	enum log_level level;
	const char *line;
	size_t line_len;
	const char *text;
	size_t text_len;
};

typedef void log_sink_fn(const struct log_record *record);

/*
 * Send every line that passes the level filter to SINK instead of stderr,
 * or to stderr again when SINK is NULL. The Windows service uses it for
 * its log file and the Event Log. SINK may run on any thread that logs.
 */
void log_set_sink(log_sink_fn *sink);

/*
 * Escape LEN bytes of S for a log line: printable ASCII stays, a double
 * quote and a backslash get a backslash, everything else becomes \xHH.
 * Returns an allocated string the caller frees.
 */
char *log_escape(const char *s, size_t len);

/* Abort the program: only for broken invariants and start-up failures. */
void fatal(const char *fmt, ...) RELAYQ_PRINTF(1, 2) __attribute__((noreturn));

#endif
