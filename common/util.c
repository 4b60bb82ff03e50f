/* Small helpers shared by every module: checked allocation, time, strings. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "log.h"
#include "util.h"

void *
xmalloc(size_t size)
{
	void *ptr = malloc(size == 0 ? 1 : size);

	if (ptr == NULL)
		fatal("out of memory allocating %zu bytes", size);
	return ptr;
}

void *
xcalloc(size_t count, size_t size)
{
	void *ptr = calloc(count == 0 ? 1 : count, size == 0 ? 1 : size);

	if (ptr == NULL)
		fatal("out of memory allocating %zu x %zu bytes", count, size);
	return ptr;
}

void *
xrealloc(void *ptr, size_t size)
{
	void *n = realloc(ptr, size == 0 ? 1 : size);

	if (n == NULL)
		fatal("out of memory reallocating %zu bytes", size);
	return n;
}

char *
xstrdup(const char *s)
{
	char *copy = strdup(s);

	if (copy == NULL)
		fatal("out of memory copying a string");
	return copy;
}

char *
xstrndup(const char *s, size_t len)
{
	char *copy = strndup(s, len);

	if (copy == NULL)
		fatal("out of memory copying a string");
	return copy;
}

char *
path_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

char *
xvasprintf(const char *fmt, va_list ap)
{
	char *out;

	if (vasprintf(&out, fmt, ap) < 0)
		fatal("out of memory formatting a string");
	return out;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *out;

	va_start(ap, fmt);
	out = xvasprintf(fmt, ap);
	va_end(ap);
	return out;
}

int
set_error(char **errstr, const char *fmt, ...)
{
	va_list ap;

	if (errstr == NULL)
		return -1;
	free(*errstr);
	va_start(ap, fmt);
	*errstr = xvasprintf(fmt, ap);
	va_end(ap);
	return -1;
}

void
secure_wipe(void *ptr, size_t len)
{
	volatile unsigned char *p = ptr;

	while (len-- > 0)
		*p++ = 0;
}

int64_t
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

int64_t
now_millis(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
time_format_rfc3339(int64_t t, char *buf, size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void
time_format_rfc5322(int64_t t, char *buf, size_t size)
{
	static const char *days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t tt = (time_t)t;
	struct tm tm;

	/* Day and month names are fixed by RFC 5322 3.3, so no locale is involved. */
	gmtime_r(&tt, &tm);
	snprintf(buf, size, "%s, %02d %s %04d %02d:%02d:%02d +0000",
	    days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
	    tm.tm_hour, tm.tm_min, tm.tm_sec);
}

const char *
host_fqdn(void)
{
	static char name[256];
	struct addrinfo hints, *res = NULL;

	if (name[0] != '\0')
		return name;

	if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') {
		snprintf(name, sizeof(name), "localhost");
		return name;
	}

	/* A dot means the name is already qualified; else ask the resolver (hosts file first). */
	if (strchr(name, '.') != NULL)
		return name;
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_CANONNAME;
	if (getaddrinfo(name, NULL, &hints, &res) == 0 && res != NULL &&
	    res->ai_canonname != NULL && strchr(res->ai_canonname, '.') != NULL)
		snprintf(name, sizeof(name), "%s", res->ai_canonname);
	if (res != NULL)
		freeaddrinfo(res);
	return name;
}

uint64_t
random_below(uint64_t bound)
{
	uint64_t value, limit;

	if (bound <= 1)
		return 0;

	/* Reject the top values that would bias the modulo. */
	limit = UINT64_MAX - UINT64_MAX % bound;
	do {
		if (getrandom(&value, sizeof(value), 0) != sizeof(value))
			value = (uint64_t)random() << 32 ^ (uint64_t)random();
	} while (value >= limit);
	return value % bound;
}
