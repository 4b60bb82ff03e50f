/*
 * A log file that rotates by size, for the Windows service (Windows only).
 * Before a line would take the file past its maximum size, the file is
 * renamed to PATH.1, PATH.1 to PATH.2 and so on up to PATH.KEEP, which
 * replaces the oldest, and the line goes to a new PATH.
 */
#ifndef RELAYQ_LOG_FILE_H
#define RELAYQ_LOG_FILE_H

#include <stddef.h>

struct log_file;

/*
 * Open PATH (UTF-8) for appending, creating it when missing. MAX_SIZE is
 * the size in bytes at which it rotates, KEEP the number of old files
 * kept (1 to 9). Returns NULL with *ERRSTR when PATH cannot be opened.
 */
struct log_file *log_file_open(const char *path, long long max_size, int keep,
    char **errstr);

/*
 * Append LEN bytes, rotating first when they would take the file past
 * its maximum size. A failed rotation is retried only after the file has
 * grown by another MAX_SIZE, and the line goes to the current file, so
 * no line is lost to a rotation. Returns -1 with *ERRSTR when the write
 * or the rotation fails.
 */
int log_file_write(struct log_file *file, const char *data, size_t len,
    char **errstr);

/*
 * Point descriptor 2 and the stderr stream at the file now and after
 * every rotation, so that text a program prints to stderr lands in the
 * log too. Returns -1 with *ERRSTR when a descriptor cannot be replaced.
 */
int log_file_capture_stderr(struct log_file *file, char **errstr);

void log_file_free(struct log_file *file);

#endif
