/* The Windows side of compat.h: POSIX functions that mingw-w64 lacks. */
#include "compat.h"

#include <bcrypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/thread.h>
#include <event2/util.h>
#include <openssl/ssl.h>

#include "util.h"

int
compat_init(char **errstr)
{
	WSADATA wsa;
	int rc;

	rc = WSAStartup(MAKEWORD(2, 2), &wsa);
	if (rc != 0)
		return set_error(errstr, "cannot start Winsock: error %d", rc);

	_setmode(_fileno(stdin), _O_BINARY);
	_setmode(_fileno(stdout), _O_BINARY);
	_setmode(_fileno(stderr), _O_BINARY);
	_fmode = _O_BINARY;

	if (evthread_use_windows_threads() == -1)
		return set_error(errstr, "cannot enable libevent's thread support");

	/*
	 * OpenSSL would read openssl.cnf from the OPENSSLDIR compiled into it
	 * (below C:\Program Files\relayq). When Windows is not on drive C:,
	 * any user may create that directory.
	 */
	if (OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_CONFIG, NULL) != 1)
		return set_error(errstr, "cannot initialise OpenSSL");
	return 0;
}

int
compat_mkdir(const char *path, int mode)
{
	(void)mode;
	return _mkdir(path);
}

char *
strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *copy = malloc(len + 1);

	if (copy == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	memcpy(copy, s, len);
	copy[len] = '\0';
	return copy;
}

void *
memmem(const void *haystack, size_t haystack_len, const void *needle,
    size_t needle_len)
{
	const unsigned char *h = haystack, *end;

	if (needle_len == 0)
		return (void *)haystack;
	if (haystack_len < needle_len)
		return NULL;

	end = h + (haystack_len - needle_len);
	for (; h <= end; h++) {
		h = memchr(h, *(const unsigned char *)needle, (size_t)(end - h) + 1);
		if (h == NULL)
			return NULL;
		if (memcmp(h, needle, needle_len) == 0)
			return (void *)h;
	}
	return NULL;
}

ssize_t
getrandom(void *buf, size_t len, unsigned int flags)
{
	unsigned char *p = buf;
	size_t left = len;

	(void)flags;
	/* BCryptGenRandom takes a ULONG length, so large requests go in pieces. */
	while (left > 0) {
		ULONG chunk = left > 0x10000000 ? 0x10000000 : (ULONG)left;

		if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, p, chunk,
		    BCRYPT_USE_SYSTEM_PREFERRED_RNG))) {
			errno = EIO;
			return -1;
		}
		p += chunk;
		left -= chunk;
	}
	return (ssize_t)len;
}

long
random(void)
{
	unsigned long value = 0;

	if (getrandom(&value, sizeof(value), 0) == -1)
		abort();
	return (long)(value & 0x7fffffffUL);
}

int
setenv(const char *name, const char *value, int overwrite)
{
	if (name == NULL || name[0] == '\0' || strchr(name, '=') != NULL) {
		errno = EINVAL;
		return -1;
	}
	if (!overwrite && getenv(name) != NULL)
		return 0;
	if (_putenv_s(name, value) != 0) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

int
unsetenv(const char *name)
{
	if (name == NULL || name[0] == '\0' || strchr(name, '=') != NULL) {
		errno = EINVAL;
		return -1;
	}
	/* An empty value removes the variable. */
	if (_putenv_s(name, "") != 0) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

char *
mkdtemp(char *template)
{
	static const char letters[] =
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	size_t len = strlen(template), i;
	unsigned char random_bytes[6];
	int attempt;

	if (len < 6 || strcmp(template + len - 6, "XXXXXX") != 0) {
		errno = EINVAL;
		return NULL;
	}
	for (attempt = 0; attempt < 100; attempt++) {
		if (getrandom(random_bytes, sizeof(random_bytes), 0) == -1)
			return NULL;
		for (i = 0; i < 6; i++)
			template[len - 6 + i] =
			    letters[random_bytes[i] % (sizeof(letters) - 1)];
		if (_mkdir(template) == 0)
			return template;
		if (errno != EEXIST)
			return NULL;
	}
	errno = EEXIST;
	return NULL;
}

/* Set errno from a Windows error code, for the errors that callers check. */
static void
compat_set_errno(DWORD code)
{
	switch (code) {
	case ERROR_FILE_NOT_FOUND:
	case ERROR_PATH_NOT_FOUND:
		errno = ENOENT;
		break;
	case ERROR_ALREADY_EXISTS:
	case ERROR_FILE_EXISTS:
		errno = EEXIST;
		break;
	case ERROR_ACCESS_DENIED:
	case ERROR_SHARING_VIOLATION:
		errno = EACCES;
		break;
	case ERROR_NOT_SAME_DEVICE:
		errno = EXDEV;
		break;
	default:
		errno = EIO;
		break;
	}
}

int
renameat2(int old_dir, const char *old_path, int new_dir, const char *new_path,
    unsigned int flags)
{
	wchar_t *from, *to;
	DWORD move_flags = MOVEFILE_WRITE_THROUGH;
	BOOL ok;

	if (old_dir != AT_FDCWD || new_dir != AT_FDCWD ||
	    (flags & ~(unsigned int)RENAME_NOREPLACE) != 0) {
		errno = EINVAL;
		return -1;
	}
	if ((flags & RENAME_NOREPLACE) == 0)
		move_flags |= MOVEFILE_REPLACE_EXISTING;

	from = compat_utf8_to_wide(old_path);
	to = compat_utf8_to_wide(new_path);
	if (from == NULL || to == NULL) {
		free(from);
		free(to);
		errno = EINVAL;
		return -1;
	}
	ok = MoveFileExW(from, to, move_flags);
	if (!ok)
		compat_set_errno(GetLastError());
	free(from);
	free(to);
	return ok ? 0 : -1;
}

struct passwd *
getpwuid(uid_t uid)
{
	static char name[257];
	static struct passwd pw;
	wchar_t wide[257];
	DWORD len = sizeof(wide) / sizeof(wide[0]);
	char *utf8;

	(void)uid;
	if (!GetUserNameW(wide, &len))
		return NULL;
	utf8 = compat_wide_to_utf8(wide);
	if (utf8 == NULL)
		return NULL;
	snprintf(name, sizeof(name), "%s", utf8);
	free(utf8);
	pw.pw_name = name;
	pw.pw_uid = 0;
	pw.pw_gid = 0;
	return &pw;
}

uid_t
getuid(void)
{
	return 0;
}

uid_t
geteuid(void)
{
	return 0;
}

gid_t
getgid(void)
{
	return 0;
}

gid_t
getegid(void)
{
	return 0;
}

int
setresuid(uid_t ruid, uid_t euid, uid_t suid)
{
	(void)ruid;
	(void)euid;
	(void)suid;
	return 0;
}

int
setresgid(gid_t rgid, gid_t egid, gid_t sgid)
{
	(void)rgid;
	(void)egid;
	(void)sgid;
	return 0;
}

wchar_t *
compat_utf8_to_wide(const char *text)
{
	wchar_t *wide;
	int n;

	n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, text, -1, NULL, 0);
	if (n <= 0)
		return NULL;
	wide = xcalloc((size_t)n, sizeof(*wide));
	if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, text, -1, wide, n) != n) {
		free(wide);
		return NULL;
	}
	return wide;
}

char *
compat_wide_to_utf8(const wchar_t *text)
{
	char *utf8;
	int n;

	n = WideCharToMultiByte(CP_UTF8, WC_ERR_INVALID_CHARS, text, -1, NULL, 0,
	    NULL, NULL);
	if (n <= 0)
		return NULL;
	utf8 = xmalloc((size_t)n);
	if (WideCharToMultiByte(CP_UTF8, WC_ERR_INVALID_CHARS, text, -1, utf8, n,
	    NULL, NULL) != n) {
		free(utf8);
		return NULL;
	}
	return utf8;
}

char *
compat_win32_strerror(unsigned long code)
{
	wchar_t *wide = NULL;
	char *text;
	size_t len;

	if (FormatMessageW(FORMAT_MESSAGE_ALLOCATE_BUFFER |
	    FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL,
	    (DWORD)code, 0, (LPWSTR)&wide, 0, NULL) == 0 || wide == NULL)
		return xasprintf("Windows error %lu", code);
	text = compat_wide_to_utf8(wide);
	LocalFree(wide);
	if (text == NULL)
		return xasprintf("Windows error %lu", code);

	/* FormatMessage ends the text with ".\r\n"; callers put it inside a sentence. */
	len = strlen(text);
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' ||
	    text[len - 1] == ' ' || text[len - 1] == '.'))
		text[--len] = '\0';
	return text;
}

int
compat_socket_error(void)
{
	return WSAGetLastError();
}

bool
compat_socket_connect_pending(int err)
{
	return err == WSAEWOULDBLOCK || err == WSAEINPROGRESS;
}

const char *
compat_socket_strerror(int err)
{
	return evutil_socket_error_to_string(err);
}

int
compat_socket_close(int fd)
{
	return closesocket((SOCKET)fd) == 0 ? 0 : -1;
}

int
compat_socket_set_nonblocking(int fd, bool nonblocking)
{
	u_long mode = nonblocking ? 1 : 0;

	return ioctlsocket((SOCKET)fd, FIONBIO, &mode) == 0 ? 0 : -1;
}

int
compat_socket_set_timeouts(int fd, int seconds)
{
	/* Winsock takes the timeouts as a DWORD of milliseconds, not a struct timeval. */
	DWORD ms = (DWORD)seconds * 1000;

	if (setsockopt((SOCKET)fd, SOL_SOCKET, SO_RCVTIMEO, (const char *)&ms,
	    sizeof(ms)) != 0)
		return -1;
	return setsockopt((SOCKET)fd, SOL_SOCKET, SO_SNDTIMEO, (const char *)&ms,
	    sizeof(ms)) == 0 ? 0 : -1;
}

/*
 * select() rather than WSAPoll(), because WSAPoll() before Windows 10
 * version 2004 does not report a connect() that failed. A failed connect
 * shows in the exception set.
 */
int
compat_socket_wait_writable(int fd, int timeout_ms)
{
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	fd_set writable, failed;
	int rc;

	FD_ZERO(&writable);
	FD_ZERO(&failed);
	FD_SET((SOCKET)fd, &writable);
	FD_SET((SOCKET)fd, &failed);
	rc = select(0, NULL, &writable, &failed, &tv);
	return rc == SOCKET_ERROR ? -1 : rc > 0;
}
