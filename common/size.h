/* Byte sizes in config files: "52428800", "512K", "50M", "1G" (powers of 1024). */
#ifndef RELAYQ_SIZE_H
#define RELAYQ_SIZE_H

#include <stdint.h>

/* Parse TEXT into bytes. Returns 0, or -1 with a reason in *ERRSTR. */
int size_parse(const char *text, uint64_t *bytes, char **errstr);

#endif
