/* Durations in config files and on the command line: "30s", "5m", "2h", "5d". */
#ifndef RELAYQ_DURATION_H
#define RELAYQ_DURATION_H

#include <stddef.h>
#include <stdint.h>

/*
 * Parse TEXT into seconds. Accepts one or more NUMBER UNIT groups
 * ("1h30m"), units s, m, h, d, w; a bare number means seconds.
 * Returns 0, or -1 with a reason in *ERRSTR.
 */
int duration_parse(const char *text, int64_t *seconds, char **errstr);

/* Format SECONDS for humans: "45s", "5m", "2h10m", "3d4h". */
void duration_format(int64_t seconds, char *buf, size_t size);

#endif
