/*
 * Service manager integration on Windows: the service "relayq" under the
 * service control manager (SCM), its install and uninstall commands,
 * and the console's stop requests.
 *
 * "relayqd install" registers "relayqd.exe --service -c CONFIG". With
 * --service, main() hands the process to StartServiceCtrlDispatcherW(),
 * whose ServiceMain runs the daemon's usual main() on its own thread.
 * The SCM's stop and shutdown take the SIGTERM path, and its parameter
 * change the SIGHUP reload. In a console, Ctrl+C, Ctrl+Break, closing the
 * window, logoff and shutdown take the SIGTERM path as well. Install also
 * registers the Event Log source "relayq" that the service logs to
 * (service_log.h).
 *
 * systemd's watchdog and socket activation have no counterpart here, and
 * the account is chosen when the service is installed, so those
 * functions do nothing.
 */
#include "compat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "acl.h"
#include "config.h"
#include "eventlog.h"
#include "exit_codes.h"
#include "log.h"
#include "service.h"
#include "service_log.h"
#include "util.h"

#define SERVICE_NAME		L"relayq"
#define SERVICE_DISPLAY_NAME	L"relayq mail relay"
#define SERVICE_DESCRIPTION	L"Relays mail from local applications to the " \
	L"configured smart host, with a durable queue."

/*
 * Wait hints for the SCM, in milliseconds: the time a start and a stop
 * may take. A stop lets sessions finish for up to 20 s (main.c).
 */
#define SERVICE_START_WAIT_HINT	30000
#define SERVICE_STOP_WAIT_HINT	30000

/* Seconds "relayqd uninstall" waits for a running service to stop. */
#define SERVICE_UNINSTALL_WAIT	60

/*
 * State shared between the SCM's control handler (the dispatcher thread)
 * and the daemon (the ServiceMain thread): guarded by service_lock.
 */
static CRITICAL_SECTION service_lock;
static struct event *service_stop_event;	/* the SIGTERM event of main.c */
static struct event *service_reload_event;	/* the SIGHUP counterpart of main.c */
static bool service_stop_requested;		/* a stop came before the events existed */

/* Set only under the SCM. */
static SERVICE_STATUS_HANDLE service_status_handle;
static SERVICE_STATUS service_status;
static service_run_fn *service_run;
static int service_argc;
static char **service_argv;
static int service_exit_code;

/* --- status reports to the SCM --- */

static void
service_report(DWORD state, DWORD wait_hint)
{
	if (service_status_handle == NULL)
		return;
	service_status.dwServiceType = SERVICE_WIN32_OWN_PROCESS;
	service_status.dwCurrentState = state;
	service_status.dwWaitHint = wait_hint;
	service_status.dwControlsAccepted = state == SERVICE_RUNNING ?
	    SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN |
	    SERVICE_ACCEPT_PARAMCHANGE : 0;
	if (state == SERVICE_RUNNING || state == SERVICE_STOPPED)
		service_status.dwCheckPoint = 0;
	else
		service_status.dwCheckPoint++;
	SetServiceStatus(service_status_handle, &service_status);
}

int
service_notify(const char *state)
{
	(void)state;
	return 0;
}

void
service_ready(const char *status)
{
	(void)status;
	service_report(SERVICE_RUNNING, 0);
}

void
service_reloading(void)
{
}

void
service_stopping(void)
{
	service_report(SERVICE_STOP_PENDING, SERVICE_STOP_WAIT_HINT);
}

void
service_watchdog_start(struct event_base *base)
{
	(void)base;
}

void
service_watchdog_stop(void)
{
}

int
service_listen_fds(int **fds, char **errstr)
{
	(void)errstr;
	*fds = NULL;
	return 0;
}

int
service_drop_privileges(const char *user, const char *queue_path,
    const char *control_socket, char **errstr)
{
	(void)queue_path;
	(void)control_socket;
	(void)errstr;
	log_warning("event=user_unchanged user=%s reason=\"Windows has no user "
	    "switch; the service runs as the account chosen at installation\"",
	    user);
	return 0;
}

/* --- stop and reload requests --- */

/* Activate the SIGTERM path, or remember the request until it exists. */
static void
service_request_stop(void)
{
	EnterCriticalSection(&service_lock);
	if (service_stop_event != NULL)
		event_active(service_stop_event, EV_SIGNAL, 1);
	else
		service_stop_requested = true;
	LeaveCriticalSection(&service_lock);
}

static void
service_request_reload(void)
{
	EnterCriticalSection(&service_lock);
	if (service_reload_event != NULL)
		event_active(service_reload_event, EV_SIGNAL, 1);
	LeaveCriticalSection(&service_lock);
}

/* Runs on a thread that Windows creates for each console event. */
static BOOL WINAPI
service_console_handler(DWORD type)
{
	switch (type) {
	case CTRL_C_EVENT:
	case CTRL_BREAK_EVENT:
		service_request_stop();
		return TRUE;
	case CTRL_CLOSE_EVENT:
	case CTRL_LOGOFF_EVENT:
	case CTRL_SHUTDOWN_EVENT:
		/*
		 * Windows ends the process when this handler returns, so it
		 * waits while main() shuts down and exits. Windows still kills
		 * the process after its own timeout (about 5 s for a closed
		 * console window), but every acknowledged message is already in
		 * the queue by then.
		 */
		service_request_stop();
		Sleep(INFINITE);
		return TRUE;
	default:
		return FALSE;
	}
}

int
service_control_events(struct event *stop, struct event *reload, char **errstr)
{
	char *text;

	EnterCriticalSection(&service_lock);
	service_stop_event = stop;
	service_reload_event = reload;
	if (service_stop_requested)
		event_active(stop, EV_SIGNAL, 1);
	LeaveCriticalSection(&service_lock);

	/* A service has no console; its stop requests come from the SCM. */
	if (service_status_handle != NULL)
		return 0;
	if (SetConsoleCtrlHandler(service_console_handler, TRUE))
		return 0;
	text = compat_win32_strerror(GetLastError());
	set_error(errstr, "cannot install the console control handler: %s", text);
	free(text);
	return -1;
}

/* --- running under the SCM --- */

static DWORD WINAPI
service_control_handler(DWORD control, DWORD type, void *data, void *context)
{
	(void)type;
	(void)data;
	(void)context;
	switch (control) {
	case SERVICE_CONTROL_STOP:
	case SERVICE_CONTROL_SHUTDOWN:
		service_report(SERVICE_STOP_PENDING, SERVICE_STOP_WAIT_HINT);
		service_request_stop();
		return NO_ERROR;
	case SERVICE_CONTROL_PARAMCHANGE:
		service_request_reload();
		return NO_ERROR;
	case SERVICE_CONTROL_INTERROGATE:
		return NO_ERROR;
	default:
		return ERROR_CALL_NOT_IMPLEMENTED;
	}
}

/* A service has no standard error: its log goes to a file and the Event Log. */
static void
service_open_log(void)
{
	char *error = NULL;

	/* main() calls log_init() again; this names the program in the lines before. */
	log_init("relayqd", LOG_LEVEL_INFO);
	if (service_log_start(&error) == -1) {
		log_error("event=log_open_failed error=\"%s\"", error);
		free(error);
	}
}

/*
 * Log why the config named by "-c FILE" in ARGV cannot be loaded.
 * main() prints that error to stderr, which a service does not have, so
 * without this the admin would see only exit code 78 in the SCM.
 */
static void
service_check_config(int argc, char **argv)
{
	const char *path = config_default_path();
	struct config *config = NULL;
	char *error = NULL;
	int i;

	for (i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], "-c") == 0)
			path = argv[i + 1];
	if (config_load(path, &config, &error) == -1) {
		log_error("event=config_invalid error=\"%s\"", error);
		free(error);
	}
	config_free(config);
}

static void WINAPI
service_main_w(DWORD argc, wchar_t **argv)
{
	(void)argc;
	(void)argv;
	service_status_handle = RegisterServiceCtrlHandlerExW(SERVICE_NAME,
	    service_control_handler, NULL);
	if (service_status_handle == NULL) {
		service_exit_code = EX_OSERR;
		return;
	}
	service_report(SERVICE_START_PENDING, SERVICE_START_WAIT_HINT);
	service_open_log();
	service_check_config(service_argc, service_argv);

	service_exit_code = service_run(service_argc, service_argv);
	service_log_stop();

	/* A status other than 0 shows as a service-specific error code in the SCM. */
	if (service_exit_code != 0) {
		service_status.dwWin32ExitCode = ERROR_SERVICE_SPECIFIC_ERROR;
		service_status.dwServiceSpecificExitCode = (DWORD)service_exit_code;
	}
	service_report(SERVICE_STOPPED, 0);
}

/* ARGV without its "--service" at index 1: the daemon's own options. */
static int
service_dispatch(int argc, char **argv)
{
	SERVICE_TABLE_ENTRYW table[] = {
		{ SERVICE_NAME, service_main_w },
		{ NULL, NULL },
	};
	char *text;
	int i;

	service_argv = xcalloc((size_t)argc, sizeof(*service_argv));
	service_argv[0] = argv[0];
	for (i = 2; i < argc; i++)
		service_argv[i - 1] = argv[i];
	service_argc = argc - 1;

	if (!StartServiceCtrlDispatcherW(table)) {
		text = compat_win32_strerror(GetLastError());
		fprintf(stderr, "relayqd: --service is for the service control "
		    "manager, which did not start this process (%s); run relayqd "
		    "-f in a console instead\n", text);
		free(text);
		free(service_argv);
		return EX_USAGE;
	}
	free(service_argv);
	return service_exit_code;
}

/* --- install and uninstall --- */

static int
service_fail(const char *what, DWORD code)
{
	char *text = compat_win32_strerror(code);

	fprintf(stderr, "relayqd: %s: %s%s\n", what, text, code ==
	    ERROR_ACCESS_DENIED ? " (run it from an elevated command prompt)" : "");
	free(text);
	return code == ERROR_ACCESS_DENIED ? EX_NOPERM : EX_OSERR;
}

/* "EXE" --service -c "CONFIG", with both paths made absolute. */
static wchar_t *
service_command_line(const char *config_path)
{
	wchar_t exe[MAX_PATH], config_full[MAX_PATH], *config_wide, *line;
	DWORD n;
	size_t size;

	n = GetModuleFileNameW(NULL, exe, MAX_PATH);
	if (n == 0 || n >= MAX_PATH)
		return NULL;
	config_wide = compat_utf8_to_wide(config_path);
	if (config_wide == NULL)
		return NULL;
	n = GetFullPathNameW(config_wide, MAX_PATH, config_full, NULL);
	free(config_wide);
	if (n == 0 || n >= MAX_PATH)
		return NULL;

	/* Quoted, because an unquoted path with spaces lets C:\Program.exe run instead. */
	size = wcslen(exe) + wcslen(config_full) + 32;
	line = xcalloc(size, sizeof(*line));
	_snwprintf(line, size, L"\"%ls\" --service -c \"%ls\"", exe, config_full);
	return line;
}

/* Restart after a failure: after 5 s, 30 s and then every 60 s; the count resets after a day. */
static void
service_set_recovery(SC_HANDLE service)
{
	SC_ACTION actions[] = {
		{ SC_ACTION_RESTART, 5000 },
		{ SC_ACTION_RESTART, 30000 },
		{ SC_ACTION_RESTART, 60000 },
	};
	SERVICE_FAILURE_ACTIONSW failure;
	SERVICE_DESCRIPTIONW description;

	memset(&failure, 0, sizeof(failure));
	failure.dwResetPeriod = 24 * 3600;
	failure.cActions = sizeof(actions) / sizeof(actions[0]);
	failure.lpsaActions = actions;
	if (!ChangeServiceConfig2W(service, SERVICE_CONFIG_FAILURE_ACTIONS, &failure))
		fprintf(stderr, "relayqd: warning: cannot set the restart on failure "
		    "(error %lu)\n", GetLastError());

	description.lpDescription = SERVICE_DESCRIPTION;
	ChangeServiceConfig2W(service, SERVICE_CONFIG_DESCRIPTION, &description);
}

/*
 * Create %ProgramData%\relayq, or reset its ACL, so that only SYSTEM and
 * Administrators can read the config, the queue and the service's log.
 */
static int
service_protect_data_dir(void)
{
	char *dir = acl_data_dir(), *error = NULL;
	int rc;

	rc = acl_protect_data_dir(dir, true, &error);
	if (rc == -1)
		fprintf(stderr, "relayqd: %s\n", error);
	else if (rc == 1)
		fprintf(stderr, "relayqd: warning: the ACL of %s still lets the "
		    "accounts above read it\n", dir);
	else
		printf("Set the ACL of %s: full control for SYSTEM and "
		    "Administrators only\n", dir);
	free(error);
	free(dir);
	return rc == -1 ? -1 : 0;
}

/* Without the source the service still logs to its file, so a failure only warns. */
static void
service_register_eventlog(void)
{
	char *error = NULL;

	if (eventlog_register(&error) == -1) {
		fprintf(stderr, "relayqd: warning: %s; the Event Log will show "
		    "relayq's events without their text\n", error);
		free(error);
		return;
	}
	printf("Registered the Event Log source relayq\n");
}

static void
service_unregister_eventlog(void)
{
	char *error = NULL;

	if (eventlog_unregister(&error) == -1) {
		fprintf(stderr, "relayqd: warning: %s\n", error);
		free(error);
	}
}

static int
service_install(const char *config_path)
{
	struct config *config = NULL;
	char *error = NULL;
	SC_HANDLE scm, service;
	wchar_t *line;
	DWORD err;

	if (config_load(config_path, &config, &error) == -1) {
		fprintf(stderr, "relayqd: warning: %s; the service will not start "
		    "until the configuration is valid\n", error);
		free(error);
	}
	config_free(config);

	if (service_protect_data_dir() == -1)
		return EX_CANTCREAT;

	line = service_command_line(config_path);
	if (line == NULL) {
		fprintf(stderr, "relayqd: cannot build the service's command line "
		    "from %s\n", config_path);
		return EX_USAGE;
	}

	scm = OpenSCManagerW(NULL, NULL, SC_MANAGER_CREATE_SERVICE);
	if (scm == NULL) {
		free(line);
		return service_fail("cannot open the service control manager",
		    GetLastError());
	}
	/* NOTE: the service runs as LocalSystem until the queue directory gets its own ACL. */
	service = CreateServiceW(scm, SERVICE_NAME, SERVICE_DISPLAY_NAME,
	    SERVICE_ALL_ACCESS, SERVICE_WIN32_OWN_PROCESS, SERVICE_AUTO_START,
	    SERVICE_ERROR_NORMAL, line, NULL, NULL, NULL, NULL, NULL);
	err = GetLastError();
	if (service == NULL) {
		CloseServiceHandle(scm);
		free(line);
		if (err == ERROR_SERVICE_EXISTS) {
			fprintf(stderr, "relayqd: the service relayq is already "
			    "installed; run relayqd uninstall first\n");
			return EX_UNAVAILABLE;
		}
		return service_fail("cannot create the service relayq", err);
	}
	service_set_recovery(service);
	printf("Installed the service relayq: %ls\n", line);
	service_register_eventlog();
	printf("Start it with: sc start relayq\n");
	CloseServiceHandle(service);
	CloseServiceHandle(scm);
	free(line);
	return EX_OK;
}

/* Stop SERVICE when it runs, and wait until it has stopped. */
static void
service_stop_and_wait(SC_HANDLE service)
{
	SERVICE_STATUS status;
	int i;

	if (!QueryServiceStatus(service, &status) ||
	    status.dwCurrentState == SERVICE_STOPPED)
		return;
	printf("Stopping the service relayq\n");
	ControlService(service, SERVICE_CONTROL_STOP, &status);
	for (i = 0; i < SERVICE_UNINSTALL_WAIT * 4; i++) {
		if (!QueryServiceStatus(service, &status) ||
		    status.dwCurrentState == SERVICE_STOPPED)
			return;
		Sleep(250);
	}
	fprintf(stderr, "relayqd: warning: the service relayq did not stop within "
	    "%d s; it is removed once it stops\n", SERVICE_UNINSTALL_WAIT);
}

static int
service_uninstall(void)
{
	SC_HANDLE scm, service;
	DWORD err;

	scm = OpenSCManagerW(NULL, NULL, SC_MANAGER_CONNECT);
	if (scm == NULL)
		return service_fail("cannot open the service control manager",
		    GetLastError());
	service = OpenServiceW(scm, SERVICE_NAME, SERVICE_STOP |
	    SERVICE_QUERY_STATUS | DELETE);
	if (service == NULL) {
		err = GetLastError();
		CloseServiceHandle(scm);
		if (err == ERROR_SERVICE_DOES_NOT_EXIST) {
			/* A key left by an earlier install goes as well. */
			service_unregister_eventlog();
			fprintf(stderr, "relayqd: the service relayq is not installed\n");
			return EX_UNAVAILABLE;
		}
		return service_fail("cannot open the service relayq", err);
	}
	service_stop_and_wait(service);
	if (!DeleteService(service)) {
		err = GetLastError();
		CloseServiceHandle(service);
		CloseServiceHandle(scm);
		return service_fail("cannot remove the service relayq", err);
	}
	printf("Removed the service relayq\n");
	service_unregister_eventlog();
	CloseServiceHandle(service);
	CloseServiceHandle(scm);
	return EX_OK;
}

static int
service_usage(void)
{
	fprintf(stderr, "usage: relayqd install [--config FILE]\n"
	    "       relayqd uninstall\n");
	return EX_USAGE;
}

/* "relayqd install [--config FILE | -c FILE]" */
static int
service_install_command(int argc, char **argv)
{
	const char *config_path = config_default_path();

	if (argc == 4 && (strcmp(argv[2], "--config") == 0 ||
	    strcmp(argv[2], "-c") == 0))
		config_path = argv[3];
	else if (argc != 2)
		return service_usage();
	return service_install(config_path);
}

int
service_main(int argc, char **argv, service_run_fn *run)
{
	InitializeCriticalSection(&service_lock);
	service_run = run;
	if (argc >= 2 && strcmp(argv[1], "install") == 0)
		return service_install_command(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "uninstall") == 0)
		return argc == 2 ? service_uninstall() : service_usage();
	if (argc >= 2 && strcmp(argv[1], "--service") == 0)
		return service_dispatch(argc, argv);
	return run(argc, argv);
}
