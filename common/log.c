/*
 * Logging to stderr, one line per event: "TIME relayqd[PID]: LEVEL: text".
 * When stderr is connected to the systemd journal, lines read
 * "<PRIORITY>LEVEL: text" instead: the journal parses the syslog priority
 * and adds the time, the name and the pid itself.
 * Callers escape peer-supplied strings with log_escape() before logging.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static const char *log_progname = "relayq";
static enum log_level log_max_level = LOG_LEVEL_INFO;
static int log_to_journal;	/* stderr is the journal's stream */
static log_sink_fn *log_sink;	/* NULL: stderr */

static const char *const log_level_names[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARNING] = "warning",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

/* syslog(3) priorities of the levels, for the journal's "<N>" line prefix. */
static const int log_level_priorities[] = {
	[LOG_LEVEL_ERROR] = 3,
	[LOG_LEVEL_WARNING] = 4,
	[LOG_LEVEL_INFO] = 6,
	[LOG_LEVEL_DEBUG] = 7,
};

/*
 * True when stderr is the journal's stream: systemd sets JOURNAL_STREAM
 * to "DEVICE:INODE" of the stream it connects, which is stderr only
 * while nobody has redirected it.
 */
static int
log_stderr_is_journal(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (env == NULL || sscanf(env, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) == -1)
		return 0;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

void
log_init(const char *progname, enum log_level level)
{
	log_progname = progname;
	log_max_level = level;
	log_to_journal = log_stderr_is_journal();
}

void
log_set_level(enum log_level level)
{
	log_max_level = level;
}

int
log_level_parse(const char *text, enum log_level *level)
{
	size_t i;

	for (i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
		if (strcasecmp(text, log_level_names[i]) == 0) {
			*level = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

void
log_set_sink(log_sink_fn *sink)
{
	log_sink = sink;
}

int
log_debug_enabled(void)
{
	return log_max_level >= LOG_LEVEL_DEBUG;
}

/* Write the start of a line at LEVEL into LINE. Returns its length as snprintf() does. */
static int
log_prefix(enum log_level level, char *line, size_t size)
{
	char stamp[32];
	struct timespec ts;
	struct tm tm;

	if (log_to_journal)
		return snprintf(line, size, "<%d>%s: ", log_level_priorities[level],
		    log_level_names[level]);

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	return snprintf(line, size, "%s.%03ldZ %s[%ld]: %s: ", stamp,
	    ts.tv_nsec / 1000000, log_progname, (long)getpid(),
	    log_level_names[level]);
}

static void
log_write(enum log_level level, const char *fmt, va_list ap)
{
	struct log_record record;
	char line[8192];
	int n, prefix_len;

	if (level > log_max_level)
		return;

	/* One write per line keeps lines whole when several processes share stderr. */
	prefix_len = log_prefix(level, line, sizeof(line));
	if (prefix_len < 0 || (size_t)prefix_len >= sizeof(line))
		return;
	vsnprintf(line + prefix_len, sizeof(line) - (size_t)prefix_len - 1, fmt, ap);
	n = (int)strlen(line);
	line[n++] = '\n';

	if (log_sink != NULL) {
		record.level = level;
		record.line = line;
		record.line_len = (size_t)n;
		record.text = line + prefix_len;
		record.text_len = (size_t)(n - 1 - prefix_len);
		log_sink(&record);
		return;
	}
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

#define LOG_FUNCTION(name, level)			\
	void						\
	name(const char *fmt, ...)			\
	{						\
		va_list ap;				\
							\
		va_start(ap, fmt);			\
		log_write(level, fmt, ap);		\
		va_end(ap);				\
	}

LOG_FUNCTION(log_error, LOG_LEVEL_ERROR)
LOG_FUNCTION(log_warning, LOG_LEVEL_WARNING)
LOG_FUNCTION(log_info, LOG_LEVEL_INFO)
LOG_FUNCTION(log_debug, LOG_LEVEL_DEBUG)

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_write(LOG_LEVEL_ERROR, fmt, ap);
	va_end(ap);
	exit(70);
}

char *
log_escape(const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	char *out = xmalloc(len * 4 + 1), *p = out;
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			*p++ = '\\';
			*p++ = (char)c;
		} else if (c >= 0x20 && c < 0x7f) {
			*p++ = (char)c;
		} else {
			*p++ = '\\';
			*p++ = 'x';
			*p++ = hex[c >> 4];
			*p++ = hex[c & 0xf];
		}
	}
	*p = '\0';
	return out;
}
