/*
 * Portability layer. On POSIX systems this header includes the socket
 * headers and defines RELAYQ_PRINTF and a few inline helpers; nothing
 * else changes there.
 *
 * On Windows (mingw-w64) it includes Winsock and the CRT headers, and
 * maps the POSIX names that relayq uses onto Windows functions, so that
 * most files need no #ifdef. Every system header that declares a name
 * redefined below is included first, because a later include of that
 * header would otherwise see the macro. The build defines
 * __USE_MINGW_ANSI_STDIO, __USE_MINGW_ACCESS and
 * _POSIX_THREAD_SAFE_FUNCTIONS for Windows (see meson.build).
 */
#ifndef RELAYQ_COMPAT_H
#define RELAYQ_COMPAT_H

/*
 * printf format checking. GCC for mingw checks format(printf) as
 * Microsoft's printf, which rejects %zu and %lld, while relayq is built
 * with the C99 printf of mingw-w64 (__USE_MINGW_ANSI_STDIO). mingw-w64's
 * stdio.h defines __MINGW_PRINTF_FORMAT, and a file may include this
 * header before stdio.h.
 */
#ifdef _WIN32
#include <stdio.h>
#endif
#ifdef __MINGW_PRINTF_FORMAT
#define RELAYQ_PRINTF(fmt, args) __attribute__((format(__MINGW_PRINTF_FORMAT, fmt, args)))
#else
#define RELAYQ_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#endif

#ifndef _WIN32

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* Start the platform's services; nothing to do on POSIX systems. */
static inline int
compat_init(char **errstr)
{
	(void)errstr;
	return 0;
}

/* Make a write to a closed pipe or socket fail with EPIPE instead of killing the process. */
static inline void
compat_ignore_sigpipe(void)
{
	signal(SIGPIPE, SIG_IGN);
}

/*
 * Socket helpers for the code that uses sockets without libevent
 * (relayq diagnose). Sockets are plain descriptors here; on Windows they
 * are SOCKET handles with their own error codes and close function.
 */

/* True when PATH does not depend on the working directory. */
static inline bool
compat_path_is_absolute(const char *path)
{
	return path[0] == '/';
}

/* The error code of the last failed socket call. */
static inline int
compat_socket_error(void)
{
	return errno;
}

/* True when ERR means that a non-blocking connect() goes on in the background. */
static inline bool
compat_socket_connect_pending(int err)
{
	return err == EINPROGRESS;
}

static inline const char *
compat_socket_strerror(int err)
{
	return strerror(err);
}

static inline int
compat_socket_close(int fd)
{
	return close(fd);
}

static inline int
compat_socket_set_nonblocking(int fd, bool nonblocking)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags == -1)
		return -1;
	flags = nonblocking ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
	return fcntl(fd, F_SETFL, flags);
}

/* Make blocking sends and receives on FD fail after SECONDS. */
static inline int
compat_socket_set_timeouts(int fd, int seconds)
{
	struct timeval tv = { seconds, 0 };

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == -1)
		return -1;
	return setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Wait until FD is writable (a connect() has ended). Returns 1, 0 on a timeout, or -1. */
static inline int
compat_socket_wait_writable(int fd, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };

	return poll(&pfd, 1, timeout_ms);
}

#else /* _WIN32 */

#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

#include <direct.h>
#include <fcntl.h>
#include <io.h>
#include <process.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/*
 * Start Winsock and initialise OpenSSL without a configuration file.
 * Switch stdin, stdout and stderr to binary mode and make open() and
 * fopen() binary by default, because message bodies must pass without
 * CRLF translation. Enable libevent's locking, so that threads may
 * activate events in relayqd's loop. Call it first in main(), before any
 * socket or event base exists. Returns 0, or -1 with *ERRSTR.
 */
int compat_init(char **errstr);

/* Windows has no SIGPIPE: a write to a closed socket fails with an error. */
static inline void
compat_ignore_sigpipe(void)
{
}

/* True for "\\server\share", "\dir" and "C:\dir", with either kind of slash. */
static inline bool
compat_path_is_absolute(const char *path)
{
	if (path[0] == '/' || path[0] == '\\')
		return true;
	return ((path[0] >= 'A' && path[0] <= 'Z') ||
	    (path[0] >= 'a' && path[0] <= 'z')) && path[1] == ':' &&
	    (path[2] == '/' || path[2] == '\\');
}

/* Socket helpers; see the POSIX versions above. */
int compat_socket_error(void);
bool compat_socket_connect_pending(int err);
const char *compat_socket_strerror(int err);
int compat_socket_close(int fd);
int compat_socket_set_nonblocking(int fd, bool nonblocking);
int compat_socket_set_timeouts(int fd, int seconds);
int compat_socket_wait_writable(int fd, int timeout_ms);

/* The type of tv_usec in Winsock's struct timeval. */
typedef long suseconds_t;

typedef unsigned int uid_t;
typedef unsigned int gid_t;

/* _O_NOINHERIT keeps a CRT descriptor out of child processes, as O_CLOEXEC does. */
#define O_CLOEXEC	_O_NOINHERIT
#define O_NOCTTY	0
#define O_NONBLOCK	0
/* NOTE: open() follows reparse points (symbolic links, junctions); nothing checks for them. */
#define O_NOFOLLOW	0

#define SOCK_CLOEXEC	0
#define MSG_NOSIGNAL	0

/*
 * stat() follows symbolic links. relayq calls lstat() only to check
 * whether a name is taken (pickup.c), where only a dangling link differs.
 */
#define lstat(path, st)	stat(path, st)

#ifndef timegm
#define timegm _mkgmtime
#endif

/* mkdir() with a POSIX mode, which Windows ignores: the directory inherits its parent's ACL. */
int compat_mkdir(const char *path, int mode);
#define mkdir(path, mode) compat_mkdir(path, mode)

char *strndup(const char *s, size_t n);
void *memmem(const void *haystack, size_t haystack_len, const void *needle,
    size_t needle_len);

/* Random bytes from BCryptGenRandom(). FLAGS is ignored, and the call never blocks. */
ssize_t getrandom(void *buf, size_t len, unsigned int flags);
/* A random number in [0, 2^31), also from BCryptGenRandom(). */
long random(void);

int setenv(const char *name, const char *value, int overwrite);
int unsetenv(const char *name);

/* Create a directory from TEMPLATE, whose last six characters are XXXXXX. */
char *mkdtemp(char *template);

/* renameat2() for AT_FDCWD only; RENAME_NOREPLACE fails with EEXIST when NEW exists. */
#define AT_FDCWD		(-100)
#define RENAME_NOREPLACE	1
int renameat2(int old_dir, const char *old_path, int new_dir,
    const char *new_path, unsigned int flags);

/*
 * Windows has no user ids. getuid() and its relatives return 0, the
 * set*id() functions succeed without doing anything, and getpwuid()
 * returns the account that runs the process, by name only.
 */
struct passwd {
	char *pw_name;
	uid_t pw_uid;
	gid_t pw_gid;
};

struct passwd *getpwuid(uid_t uid);
uid_t getuid(void);
uid_t geteuid(void);
gid_t getgid(void);
gid_t getegid(void);
int setresuid(uid_t ruid, uid_t euid, uid_t suid);
int setresgid(gid_t rgid, gid_t egid, gid_t sgid);

/*
 * Convert between UTF-8 and UTF-16 for the wide Windows API. Both return
 * an allocated string, or NULL when TEXT is not valid.
 */
wchar_t *compat_utf8_to_wide(const char *text);
char *compat_wide_to_utf8(const wchar_t *text);

/* The text of Windows error CODE (from GetLastError()), allocated, without its final period and line break. */
char *compat_win32_strerror(unsigned long code);

/*
 * Run COMMAND with "cmd.exe /d /s /c", standard input from NUL, and
 * collect up to SIZE bytes of its standard output in OUT (*USED bytes).
 * Its standard error goes to ours when SHOW_STDERR, else to NUL. Waits
 * at most TIMEOUT seconds, or until the event CANCEL (may be NULL) is
 * set, and then ends the command and every process it started. Returns
 * 0 with its *EXIT_CODE, or -1 with *ERRSTR.
 */
int compat_run_command(const char *command, int timeout, bool show_stderr,
    HANDLE cancel, char *out, size_t size, size_t *used,
    unsigned long *exit_code, char **errstr);

#endif /* _WIN32 */

#endif
