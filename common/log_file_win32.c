/*
 * The service's log file with rotation by size (see log_file.h). The file
 * is opened with FILE_SHARE_READ | FILE_SHARE_DELETE, so that an
 * administrator can read it and relayqd can rename it while it is open.
 * A rotation is at most KEEP + 1 renames and one open, so it holds up the
 * logging thread (usually the event loop) only briefly. Not thread-safe:
 * the caller serialises the calls.
 */
#include "compat.h"

#include <fcntl.h>
#include <io.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <wchar.h>

#include "log_file.h"
#include "util.h"

#define LOG_FILE_MAX_KEEP	9

struct log_file {
	char *path;		/* UTF-8, for messages */
	wchar_t *wide_path;
	HANDLE handle;
	long long max_size;
	long long rotate_at;	/* the size at which the next rotation is tried */
	int keep;
	bool capture_stderr;
	int stderr_fd;		/* the descriptor of the stderr stream, also redirected */
};

static int
log_file_win32_error(char **errstr, const char *what, const char *path)
{
	char *text = compat_win32_strerror(GetLastError());

	set_error(errstr, "%s %s: %s", what, path, text);
	free(text);
	return -1;
}

/*
 * FILE_APPEND_DATA without FILE_WRITE_DATA makes every write go to the
 * end of the file, also those through the stderr descriptor.
 */
static HANDLE
log_file_create(const wchar_t *path)
{
	return CreateFileW(path, FILE_APPEND_DATA | FILE_READ_ATTRIBUTES |
	    SYNCHRONIZE, FILE_SHARE_READ | FILE_SHARE_DELETE, NULL, OPEN_ALWAYS,
	    FILE_ATTRIBUTE_NORMAL, NULL);
}

struct log_file *
log_file_open(const char *path, long long max_size, int keep, char **errstr)
{
	struct log_file *file;

	if (keep < 1 || keep > LOG_FILE_MAX_KEEP || max_size <= 0) {
		set_error(errstr, "invalid log rotation for %s: size %lld, %d old "
		    "files (1 to %d)", path, max_size, keep, LOG_FILE_MAX_KEEP);
		return NULL;
	}

	file = xcalloc(1, sizeof(*file));
	file->path = xstrdup(path);
	file->max_size = max_size;
	file->rotate_at = max_size;
	file->keep = keep;
	file->wide_path = compat_utf8_to_wide(path);
	if (file->wide_path == NULL) {
		set_error(errstr, "invalid log file path %s: not UTF-8", path);
		log_file_free(file);
		return NULL;
	}

	file->handle = log_file_create(file->wide_path);
	if (file->handle == INVALID_HANDLE_VALUE) {
		log_file_win32_error(errstr, "cannot open the log file", path);
		log_file_free(file);
		return NULL;
	}
	return file;
}

/* Make descriptor 2 a duplicate of the current file's handle. */
static int
log_file_redirect_stderr(struct log_file *file, char **errstr)
{
	HANDLE copy;
	int fd;

	if (!DuplicateHandle(GetCurrentProcess(), file->handle,
	    GetCurrentProcess(), &copy, 0, FALSE, DUPLICATE_SAME_ACCESS))
		return log_file_win32_error(errstr,
		    "cannot duplicate the handle of", file->path);

	/* _open_osfhandle() owns COPY from here on, and _close() closes it. */
	fd = _open_osfhandle((intptr_t)copy, _O_WRONLY | _O_APPEND | _O_BINARY);
	if (fd == -1) {
		CloseHandle(copy);
		return set_error(errstr, "cannot make a descriptor for %s", file->path);
	}
	/* Text still buffered for the old file goes there first. */
	fflush(stderr);
	if (_dup2(fd, 2) == -1 || (file->stderr_fd != 2 &&
	    _dup2(fd, file->stderr_fd) == -1)) {
		_close(fd);
		return set_error(errstr, "cannot send stderr to %s", file->path);
	}
	_close(fd);
	return 0;
}

int
log_file_capture_stderr(struct log_file *file, char **errstr)
{
	/*
	 * The C runtime buffers stderr fully when it is not a character
	 * device, which would delay lines and mix their order with the log's.
	 * NOTE: in a process started without standard handles, such as a
	 * service, Wine 8's C runtime gives the stderr stream no descriptor
	 * (_fileno() returns -2) and freopen() fails on it. There only
	 * descriptor 2 reaches the file, and fprintf(stderr) writes nowhere.
	 */
	setvbuf(stderr, NULL, _IONBF, 0);
	file->stderr_fd = _fileno(stderr) >= 0 ? _fileno(stderr) : 2;
	file->capture_stderr = true;
	return log_file_redirect_stderr(file, errstr);
}

/* Rename PATH.FROM to PATH.TO (FROM 0: PATH itself), replacing PATH.TO. */
static int
log_file_shift(struct log_file *file, int from, int to, char **errstr)
{
	size_t size = wcslen(file->wide_path) + 8;
	wchar_t *old_name = xcalloc(size, sizeof(wchar_t));
	wchar_t *new_name = xcalloc(size, sizeof(wchar_t));
	int rc = 0;

	if (from == 0)
		_snwprintf(old_name, size, L"%ls", file->wide_path);
	else
		_snwprintf(old_name, size, L"%ls.%d", file->wide_path, from);
	_snwprintf(new_name, size, L"%ls.%d", file->wide_path, to);

	/* A missing old file leaves a gap, which the next rotations fill. */
	if (!MoveFileExW(old_name, new_name, MOVEFILE_REPLACE_EXISTING) &&
	    GetLastError() != ERROR_FILE_NOT_FOUND)
		rc = log_file_win32_error(errstr, "cannot rotate the log file", file->path);
	free(old_name);
	free(new_name);
	return rc;
}

/*
 * Shift the old files up by one, dropping PATH.KEEP, rename PATH to
 * PATH.1 while it is still open, then open a new PATH. Until the new
 * file is open, the old handle stays, so a failure leaves a file to
 * write to.
 */
static int
log_file_rotate(struct log_file *file, char **errstr)
{
	HANDLE fresh;
	int i;

	for (i = file->keep - 1; i >= 0; i--)
		if (log_file_shift(file, i, i + 1, errstr) == -1)
			return -1;

	fresh = log_file_create(file->wide_path);
	if (fresh == INVALID_HANDLE_VALUE)
		return log_file_win32_error(errstr, "cannot open the new log file",
		    file->path);
	CloseHandle(file->handle);
	file->handle = fresh;

	if (file->capture_stderr)
		return log_file_redirect_stderr(file, errstr);
	return 0;
}

/*
 * Rotate when LEN more bytes would take the file past its maximum size.
 * The size is read from the file, because writes to the stderr
 * descriptor add to it as well.
 */
static int
log_file_rotate_if_full(struct log_file *file, size_t len, char **errstr)
{
	LARGE_INTEGER size;

	if (!GetFileSizeEx(file->handle, &size))
		return log_file_win32_error(errstr, "cannot read the size of", file->path);
	if (size.QuadPart == 0 || size.QuadPart + (long long)len <= file->rotate_at)
		return 0;

	if (log_file_rotate(file, errstr) == -1) {
		/* Try again once the file has grown by another MAX_SIZE, not on every line. */
		file->rotate_at = size.QuadPart + file->max_size;
		return -1;
	}
	file->rotate_at = file->max_size;
	return 0;
}

int
log_file_write(struct log_file *file, const char *data, size_t len, char **errstr)
{
	int rc = log_file_rotate_if_full(file, len, errstr);
	DWORD written;

	/* The line goes out even when the rotation failed: it must not be lost. */
	while (len > 0) {
		if (!WriteFile(file->handle, data, (DWORD)len, &written, NULL) ||
		    written == 0) {
			if (rc == -1 && errstr != NULL) {
				free(*errstr);
				*errstr = NULL;
			}
			return log_file_win32_error(errstr, "cannot write to", file->path);
		}
		data += written;
		len -= written;
	}
	return rc;
}

void
log_file_free(struct log_file *file)
{
	if (file == NULL)
		return;
	if (file->handle != NULL && file->handle != INVALID_HANDLE_VALUE)
		CloseHandle(file->handle);
	free(file->wide_path);
	free(file->path);
	free(file);
}
