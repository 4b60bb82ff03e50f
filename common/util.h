/* Small helpers shared by every module: checked allocation, time, strings. */
#ifndef RELAYQ_UTIL_H
#define RELAYQ_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"

void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t len);
char *xasprintf(const char *fmt, ...) RELAYQ_PRINTF(1, 2);
char *xvasprintf(const char *fmt, va_list ap) RELAYQ_PRINTF(1, 0);

/* The directory part of PATH up to its last '/', allocated: "." when it has none. */
char *path_dirname(const char *path);

/* Store an allocated message in *ERRSTR (if ERRSTR is not NULL) and return -1. */
int set_error(char **errstr, const char *fmt, ...) RELAYQ_PRINTF(2, 3);

/* Overwrite a buffer that held a secret, in a way the compiler keeps. */
void secure_wipe(void *ptr, size_t len);

/* Wall-clock time in seconds and in milliseconds since the epoch. */
int64_t now_seconds(void);
int64_t now_millis(void);

/* Format a Unix time as RFC 3339 UTC ("2026-12-04T20:18:36Z") into BUF. */
void time_format_rfc3339(int64_t t, char *buf, size_t size);

/* Format a Unix time as an RFC 5322 date ("Fri, 04 Dec 2026 20:18:36 +0000"). */
void time_format_rfc5322(int64_t t, char *buf, size_t size);

/* The host's fully qualified name, or its short name when no FQDN is known. */
const char *host_fqdn(void);

/* Uniform random integer in [0, bound). */
uint64_t random_below(uint64_t bound);

#endif
