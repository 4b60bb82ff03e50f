/*
 * Unit tests for config_load(): defaults, every key, and the exact
 * FILE:LINE:COLUMN message of each kind of error. The tests run inside a
 * private temporary directory and load "relayq.yaml" by its relative
 * name, so that messages start with "relayq.yaml:".
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config.h"

/* config.c's defaults, which are under %ProgramData% on Windows. */
#ifdef _WIN32
#define TEST_DEFAULT_QUEUE	"C:\\ProgramData\\relayq\\queue.db"
#define TEST_DEFAULT_CONFIG	"C:\\ProgramData\\relayq\\relayq.yaml"
/* The Windows C runtime cannot open a directory, and reports EACCES. */
#define TEST_DIRECTORY_ERROR	"dir.yaml: cannot open: Permission denied. Make " \
	"the file readable by the user that runs relayq"
#else
#define TEST_DEFAULT_QUEUE	"/var/lib/relayq/queue.db"
#define TEST_DEFAULT_CONFIG	"/etc/relayq/relayq.yaml"
#define TEST_DIRECTORY_ERROR	"dir.yaml: cannot read: Is a directory"
#endif

static char test_dir[PATH_MAX];

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void
remove_test_dir(void)
{
	if (test_dir[0] != '\0' && chdir("/") == 0)
		nftw(test_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Create the temporary directory on first use and make it the working directory. */
static void
enter_test_dir(void)
{
	const char *tmp = getenv("TMPDIR");
	char *cwd;

	if (test_dir[0] != '\0')
		return;
	snprintf(test_dir, sizeof(test_dir), "%s/relayq-test-config.XXXXXX",
	    tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (mkdtemp(test_dir) == NULL || chdir(test_dir) == -1) {
		perror(test_dir);
		exit(2);
	}
	atexit(remove_test_dir);

	/* config_load() builds absolute paths from getcwd(), which resolves symlinks. */
	cwd = getcwd(NULL, 0);
	if (cwd == NULL) {
		perror("getcwd");
		exit(2);
	}
	snprintf(test_dir, sizeof(test_dir), "%s", cwd);
	free(cwd);
}

static void
write_file(const char *path, const char *text)
{
	FILE *fp;

	enter_test_dir();
	fp = fopen(path, "w");
	if (fp == NULL || fputs(text, fp) == EOF || fclose(fp) != 0) {
		perror(path);
		exit(2);
	}
}

/* Load TEXT as relayq.yaml and return the config, or NULL with *ERRSTR set. */
static struct config *
load_text(const char *text, char **errstr)
{
	struct config *cfg = NULL;

	*errstr = NULL;
	write_file("relayq.yaml", text);
	if (config_load("relayq.yaml", &cfg, errstr) == -1)
		return NULL;
	return cfg;
}

/* Path under the test directory, in a static buffer. */
static const char *
in_test_dir(const char *name)
{
	static char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s", test_dir, name);
	return path;
}

static void
test_minimal_defaults(void)
{
	char *errstr;
	struct config *cfg = load_text("smarthost:\n  host: mail.example.com\n", &errstr);
	const struct config_smarthost *sh;

	CHECK_STR_EQ(errstr, NULL);
	CHECK(cfg != NULL);
	if (cfg == NULL)
		return;
	sh = &cfg->smarthost;

	CHECK_STR_EQ(cfg->path, "relayq.yaml");
	CHECK_STR_EQ(cfg->queue_path, TEST_DEFAULT_QUEUE);
	CHECK_UINT_EQ(cfg->listen_count, 1);
	CHECK_STR_EQ(cfg->listen[0].host, "127.0.0.1");
	CHECK_STR_EQ(cfg->listen[0].port, "25");
	CHECK_STR_EQ(cfg->listen[0].text, "127.0.0.1:25");
	CHECK_STR_EQ(cfg->pickup_path, NULL);

	CHECK_STR_EQ(sh->host, "mail.example.com");
	CHECK_INT_EQ(sh->port, 25);
	CHECK_INT_EQ(sh->tls, TLS_MODE_STARTTLS);
	CHECK(sh->tls_verify);
	CHECK_STR_EQ(sh->ca_file, NULL);
	CHECK_STR_EQ(sh->username, NULL);
	CHECK_STR_EQ(sh->password_file, NULL);
	CHECK_STR_EQ(sh->helo_name, NULL);
	CHECK_INT_EQ(sh->max_connections, 2);
	CHECK_INT_EQ(sh->max_messages_per_connection, 100);
	CHECK_INT_EQ(sh->on_uncertain, UNCERTAIN_RETRY);
	CHECK_INT_EQ(sh->timeouts.connect, 30);
	CHECK_INT_EQ(sh->timeouts.greeting, 300);
	CHECK_INT_EQ(sh->timeouts.command, 300);
	CHECK_INT_EQ(sh->timeouts.mail, 300);
	CHECK_INT_EQ(sh->timeouts.rcpt, 300);
	CHECK_INT_EQ(sh->timeouts.data_init, 120);
	CHECK_INT_EQ(sh->timeouts.data_block, 180);
	CHECK_INT_EQ(sh->timeouts.data_end, 600);
	CHECK_UINT_EQ(sh->fallback_count, 0);

	CHECK_INT_EQ(cfg->retry.initial, 60);
	CHECK_INT_EQ(cfg->retry.max, 3600);
	CHECK_INT_EQ(cfg->retry.max_age, 5 * 86400);

	CHECK_STR_EQ(cfg->smtpd.hostname, NULL);
	CHECK_UINT_EQ(cfg->smtpd.max_message_size, 50 * 1024 * 1024);
	CHECK_INT_EQ(cfg->smtpd.max_recipients, 1000);
	CHECK_INT_EQ(cfg->smtpd.max_connections, 100);
	CHECK_INT_EQ(cfg->smtpd.timeout, 300);

	CHECK_INT_EQ(cfg->log_level, LOG_LEVEL_INFO);
	config_free(cfg);
}

static const char full_config[] =
    "# Every key, none at its default.\n"
    "queue:\n"
    "  path: /srv/relayq/queue.db\n"
    "listen:\n"
    "  - 127.0.0.1:2525\n"
    "  - \"[::1]:2525\"\n"
    "  - 0.0.0.0:587\n"
    "pickup:\n"
    "  path: /srv/relayq/pickup\n"
    "smarthost:\n"
    "  host: relay.example.net\n"
    "  port: 587\n"
    "  tls: implicit\n"
    "  tls_verify: false\n"
    "  ca_file: /etc/relayq/ca.pem\n"
    "  username: payments\n"
    "  password_file: /etc/relayq/smarthost.secret\n"
    "  helo_name: app1.example.net\n"
    "  max_connections: 100\n"
    "  max_messages_per_connection: 1\n"
    "  on_uncertain: hold\n"
    "  timeouts:\n"
    "    connect: 10s\n"
    "    greeting: 1m\n"
    "    command: 2m\n"
    "    mail: 3m\n"
    "    rcpt: 4m\n"
    "    data_init: 5m\n"
    "    data_block: 6m\n"
    "    data_end: 1h30m\n"
    "  fallback:\n"
    "    - host: relay2.example.net\n"
    "      port: 25\n"
    "      tls: none\n"
    "retry:\n"
    "  initial: 30s\n"
    "  max: 2h\n"
    "  max_age: 1w\n"
    "smtpd:\n"
    "  hostname: relay.local\n"
    "  max_message_size: 10M\n"
    "  max_recipients: 50\n"
    "  max_connections: 7\n"
    "  timeout: 90\n"
    "log:\n"
    "  level: debug\n";

static void
test_full_config(void)
{
	char *errstr;
	struct config *cfg = load_text(full_config, &errstr);
	const struct config_smarthost *sh;

	CHECK_STR_EQ(errstr, NULL);
	CHECK(cfg != NULL);
	if (cfg == NULL)
		return;
	sh = &cfg->smarthost;

	CHECK_STR_EQ(cfg->queue_path, "/srv/relayq/queue.db");
	CHECK_UINT_EQ(cfg->listen_count, 3);
	if (cfg->listen_count == 3) {
		CHECK_STR_EQ(cfg->listen[0].host, "127.0.0.1");
		CHECK_STR_EQ(cfg->listen[0].port, "2525");
		CHECK_STR_EQ(cfg->listen[1].host, "::1");
		CHECK_STR_EQ(cfg->listen[1].port, "2525");
		CHECK_STR_EQ(cfg->listen[1].text, "[::1]:2525");
		CHECK_STR_EQ(cfg->listen[2].host, "0.0.0.0");
		CHECK_STR_EQ(cfg->listen[2].port, "587");
	}
	CHECK_STR_EQ(cfg->pickup_path, "/srv/relayq/pickup");

	CHECK_STR_EQ(sh->host, "relay.example.net");
	CHECK_INT_EQ(sh->port, 587);
	CHECK_INT_EQ(sh->tls, TLS_MODE_IMPLICIT);
	CHECK(!sh->tls_verify);
	CHECK_STR_EQ(sh->ca_file, "/etc/relayq/ca.pem");
	CHECK_STR_EQ(sh->username, "payments");
	CHECK_STR_EQ(sh->password_file, "/etc/relayq/smarthost.secret");
	CHECK_STR_EQ(sh->helo_name, "app1.example.net");
	CHECK_INT_EQ(sh->max_connections, 100);
	CHECK_INT_EQ(sh->max_messages_per_connection, 1);
	CHECK_INT_EQ(sh->on_uncertain, UNCERTAIN_HOLD);
	CHECK_INT_EQ(sh->timeouts.connect, 10);
	CHECK_INT_EQ(sh->timeouts.greeting, 60);
	CHECK_INT_EQ(sh->timeouts.command, 120);
	CHECK_INT_EQ(sh->timeouts.mail, 180);
	CHECK_INT_EQ(sh->timeouts.rcpt, 240);
	CHECK_INT_EQ(sh->timeouts.data_init, 300);
	CHECK_INT_EQ(sh->timeouts.data_block, 360);
	CHECK_INT_EQ(sh->timeouts.data_end, 5400);
	CHECK_UINT_EQ(sh->fallback_count, 1);
	if (sh->fallback_count == 1) {
		CHECK_STR_EQ(sh->fallback[0].host, "relay2.example.net");
		CHECK_INT_EQ(sh->fallback[0].port, 25);
		CHECK_INT_EQ(sh->fallback[0].tls, TLS_MODE_NONE);
	}

	CHECK_INT_EQ(cfg->retry.initial, 30);
	CHECK_INT_EQ(cfg->retry.max, 7200);
	CHECK_INT_EQ(cfg->retry.max_age, 7 * 86400);

	CHECK_STR_EQ(cfg->smtpd.hostname, "relay.local");
	CHECK_UINT_EQ(cfg->smtpd.max_message_size, 10 * 1024 * 1024);
	CHECK_INT_EQ(cfg->smtpd.max_recipients, 50);
	CHECK_INT_EQ(cfg->smtpd.max_connections, 7);
	CHECK_INT_EQ(cfg->smtpd.timeout, 90);

	CHECK_INT_EQ(cfg->log_level, LOG_LEVEL_DEBUG);
	config_free(cfg);
}

static void
test_implicit_tls_port(void)
{
	char *errstr;
	struct config *cfg;

	cfg = load_text("smarthost:\n  host: a.example\n  tls: implicit\n", &errstr);
	CHECK_STR_EQ(errstr, NULL);
	if (cfg != NULL) {
		CHECK_INT_EQ(cfg->smarthost.port, 465);
		CHECK_INT_EQ(cfg->smarthost.tls, TLS_MODE_IMPLICIT);
	}
	config_free(cfg);

	cfg = load_text("smarthost:\n  host: a.example\n  tls: none\n", &errstr);
	CHECK_STR_EQ(errstr, NULL);
	if (cfg != NULL)
		CHECK_INT_EQ(cfg->smarthost.port, 25);
	config_free(cfg);

	/* An explicit port wins over the mode's standard port. */
	cfg = load_text("smarthost:\n  port: 2465\n  tls: implicit\n  host: a.example\n",
	    &errstr);
	CHECK_STR_EQ(errstr, NULL);
	if (cfg != NULL)
		CHECK_INT_EQ(cfg->smarthost.port, 2465);
	config_free(cfg);
}

static void
test_fallback_defaults(void)
{
	static const struct {
		const char *host;
		int port;
		enum tls_mode tls;
	} expected[] = {
		{ "primary.example", 2525, TLS_MODE_STARTTLS },
		{ "relay2.example", 465, TLS_MODE_IMPLICIT },
		{ "primary.example", 465, TLS_MODE_IMPLICIT },
		{ "relay3.example", 587, TLS_MODE_STARTTLS },
		{ "primary.example", 25, TLS_MODE_NONE },
		{ "primary.example", 587, TLS_MODE_STARTTLS },
	};
	char *errstr;
	struct config *cfg;
	size_t i;

	cfg = load_text(
	    "smarthost:\n"
	    "  host: primary.example\n"
	    "  port: 587\n"
	    "  fallback:\n"
	    "    - port: 2525\n"
	    "    - host: relay2.example\n"
	    "      port: 465\n"
	    "      tls: implicit\n"
	    "    - tls: implicit\n"
	    "    - host: relay3.example\n"
	    "    - tls: none\n"
	    "    - {}\n", &errstr);
	CHECK_STR_EQ(errstr, NULL);
	if (cfg == NULL)
		return;

	CHECK_UINT_EQ(cfg->smarthost.fallback_count, 6);
	for (i = 0; i < cfg->smarthost.fallback_count && i < 6; i++) {
		CHECK_STR_EQ(cfg->smarthost.fallback[i].host, expected[i].host);
		CHECK_INT_EQ(cfg->smarthost.fallback[i].port, expected[i].port);
		CHECK_INT_EQ(cfg->smarthost.fallback[i].tls, expected[i].tls);
	}
	config_free(cfg);
}

static void
test_relative_paths(void)
{
	char *errstr = NULL;
	struct config *cfg = NULL;
	char expected[PATH_MAX + 64];

	enter_test_dir();
	if (mkdir("sub", 0700) == -1 && errno != EEXIST)
		perror("mkdir sub");
	write_file("sub/relayq.yaml",
	    "queue:\n"
	    "  path: data/queue.db\n"
	    "pickup:\n"
	    "  path: ./pickup\n"
	    "smarthost:\n"
	    "  host: a.example\n"
	    "  ca_file: ../ca.pem\n"
	    "  username: u\n"
	    "  password_file: /abs/secret\n");

	CHECK_INT_EQ(config_load("sub/relayq.yaml", &cfg, &errstr), 0);
	CHECK_STR_EQ(errstr, NULL);
	if (cfg == NULL)
		return;
	CHECK_STR_EQ(cfg->path, "sub/relayq.yaml");
	snprintf(expected, sizeof(expected), "%s/sub/data/queue.db", test_dir);
	CHECK_STR_EQ(cfg->queue_path, expected);
	snprintf(expected, sizeof(expected), "%s/sub/pickup", test_dir);
	CHECK_STR_EQ(cfg->pickup_path, expected);
	snprintf(expected, sizeof(expected), "%s/sub/../ca.pem", test_dir);
	CHECK_STR_EQ(cfg->smarthost.ca_file, expected);
	CHECK_STR_EQ(cfg->smarthost.password_file, "/abs/secret");
	config_free(cfg);

	/* A config given by absolute path resolves against its own directory too. */
	cfg = NULL;
	CHECK_INT_EQ(config_load(in_test_dir("sub/relayq.yaml"), &cfg, &errstr), 0);
	if (cfg == NULL)
		return;
	snprintf(expected, sizeof(expected), "%s/sub/data/queue.db", test_dir);
	CHECK_STR_EQ(cfg->queue_path, expected);
	config_free(cfg);
}

static void
test_empty_values_keep_defaults(void)
{
	char *errstr;
	struct config *cfg = load_text(
	    "queue:\n"
	    "listen:\n"
	    "pickup: ~\n"
	    "smarthost:\n"
	    "  host: a.example\n"
	    "  port:\n"
	    "  tls: null\n"
	    "  timeouts:\n"
	    "retry: {}\n"
	    "log:\n", &errstr);

	CHECK_STR_EQ(errstr, NULL);
	if (cfg == NULL)
		return;
	CHECK_STR_EQ(cfg->queue_path, TEST_DEFAULT_QUEUE);
	CHECK_UINT_EQ(cfg->listen_count, 1);
	CHECK_STR_EQ(cfg->pickup_path, NULL);
	CHECK_INT_EQ(cfg->smarthost.port, 25);
	CHECK_INT_EQ(cfg->smarthost.tls, TLS_MODE_STARTTLS);
	CHECK_INT_EQ(cfg->smarthost.timeouts.connect, 30);
	CHECK_INT_EQ(cfg->retry.initial, 60);
	CHECK_INT_EQ(cfg->log_level, LOG_LEVEL_INFO);
	config_free(cfg);
}

static void
test_value_spellings(void)
{
	char *errstr;
	struct config *cfg = load_text(
	    "smarthost: {host: \"a.example\", port: \"2525\", tls: STARTTLS, "
	    "tls_verify: yes, on_uncertain: Hold}\n"
	    "smtpd: {max_message_size: 52428800, hostname: \"[192.0.2.1]\"}\n"
	    "log: {level: Warning}\n", &errstr);

	CHECK_STR_EQ(errstr, NULL);
	if (cfg == NULL)
		return;
	CHECK_INT_EQ(cfg->smarthost.port, 2525);
	CHECK_INT_EQ(cfg->smarthost.tls, TLS_MODE_STARTTLS);
	CHECK(cfg->smarthost.tls_verify);
	CHECK_INT_EQ(cfg->smarthost.on_uncertain, UNCERTAIN_HOLD);
	CHECK_UINT_EQ(cfg->smtpd.max_message_size, 52428800);
	CHECK_STR_EQ(cfg->smtpd.hostname, "[192.0.2.1]");
	CHECK_INT_EQ(cfg->log_level, LOG_LEVEL_WARNING);
	config_free(cfg);

	cfg = load_text("smarthost: {host: \"2001:db8::25\", tls_verify: No}\n", &errstr);
	CHECK_STR_EQ(errstr, NULL);
	if (cfg == NULL)
		return;
	CHECK_STR_EQ(cfg->smarthost.host, "2001:db8::25");
	CHECK(!cfg->smarthost.tls_verify);
	config_free(cfg);
}

/* A config that fails, and the exact message it must produce. */
struct error_case {
	const char *yaml;
	const char *message;
};

static const struct error_case error_cases[] = {
	/* Missing required values. */
	{ "",
	  "relayq.yaml: smarthost.host: missing: expected the smart host's name, "
	  "such as mail.example.com" },
	{ "---\n",
	  "relayq.yaml: smarthost.host: missing: expected the smart host's name, "
	  "such as mail.example.com" },
	{ "log:\n  level: debug\n",
	  "relayq.yaml: smarthost.host: missing: expected the smart host's name, "
	  "such as mail.example.com" },
	{ "queue:\n  path: /q.db\nsmarthost:\n  port: 25\n",
	  "relayq.yaml:3:1: smarthost.host: missing: expected the smart host's name, "
	  "such as mail.example.com" },
	{ "smarthost:\n  host:\n",
	  "relayq.yaml:2:3: smarthost.host: missing: expected the smart host's name, "
	  "such as mail.example.com" },
	{ "smarthost:\n  host: a.example\n  username: payments\n",
	  "relayq.yaml:1:1: smarthost.password_file: missing: expected the file that "
	  "contains the password for smarthost.username (or set password_command or "
	  "password_env)" },
	{ "smarthost:\n  host: a.example\n  password_file: /etc/secret\n",
	  "relayq.yaml:1:1: smarthost.username: missing: expected the user name that "
	  "goes with smarthost.password_file" },

	/* Unknown and duplicate keys. */
	{ "smarthot:\n  host: a.example\n",
	  "relayq.yaml:1:1: unknown key \"smarthot\" in top level (did you mean "
	  "\"smarthost\"?)" },
	{ "smarthost:\n  host: a.example\n  colour: blue\n",
	  "relayq.yaml:3:3: unknown key \"colour\" in smarthost (valid keys: host, port, "
	  "tls, tls_verify, ca_file, username, password_file, password_command, "
	  "password_env, auth_mechanisms, tls_min_version, tls_ciphers, "
	  "tls_ciphersuites, ca_path, tls_fingerprint, tls_client_cert, "
	  "tls_client_key, endpoint_cooldown, max_messages_per_minute, helo_name, "
	  "max_connections, max_messages_per_connection, on_uncertain, timeouts, "
	  "fallback)" },
	{ "retry:\n  intial: 1m\n",
	  "relayq.yaml:2:3: unknown key \"intial\" in retry (did you mean \"initial\"?)" },
	{ "smarthost:\n  host: a.example\n  timeouts:\n    data: 1m\n",
	  "relayq.yaml:4:5: unknown key \"data\" in smarthost.timeouts (valid keys: "
	  "connect, greeting, command, mail, rcpt, data_init, data_block, data_end, "
	  "session)" },
	{ "smarthost:\n  host: a\n  host: b\n",
	  "relayq.yaml:3:3: smarthost.host: duplicate key (first given at line 2)" },
	{ "smarthost:\n  host: a\n  port:\n  port: 25\n",
	  "relayq.yaml:4:3: smarthost.port: duplicate key (first given at line 3)" },
	{ "? [a, b]\n: c\n",
	  "relayq.yaml:1:3: expected a key name, found a sequence" },

	/* Wrong node types. */
	{ "- a\n- b\n",
	  "relayq.yaml:1:1: top level: expected a mapping, found a sequence" },
	{ "just text\n",
	  "relayq.yaml:1:1: top level: expected a mapping, found the scalar \"just text\"" },
	{ "smarthost:\n  - host: a.example\n",
	  "relayq.yaml:2:3: smarthost: expected a mapping, found a sequence" },
	{ "smarthost: mail.example.com\n",
	  "relayq.yaml:1:12: smarthost: expected a mapping, found the scalar "
	  "\"mail.example.com\"" },
	{ "smarthost:\n  host:\n    name: a.example\n",
	  "relayq.yaml:3:5: smarthost.host: expected a host name or IP address, "
	  "found a mapping" },
	{ "smarthost:\n  host: a.example\n  port: [25, 587]\n",
	  "relayq.yaml:3:9: smarthost.port: expected a port number 1-65535, "
	  "found a sequence" },
	{ "smarthost:\n  host: a.example\n  timeouts: 5m\n",
	  "relayq.yaml:3:13: smarthost.timeouts: expected a mapping, found the scalar "
	  "\"5m\"" },

	/* Invalid values, one per kind. */
	{ "# relayq\nqueue:\n  path: q.db\n\nsmarthost:\n  host: mail.example.com\n"
	  "  port: abc\n",
	  "relayq.yaml:7:9: smarthost.port: invalid value \"abc\": expected a port "
	  "number 1-65535" },
	{ "smarthost:\n  host: a.example\n  port: 0\n",
	  "relayq.yaml:3:9: smarthost.port: invalid value \"0\": expected a port "
	  "number 1-65535" },
	{ "smarthost:\n  host: a.example\n  port: 65536\n",
	  "relayq.yaml:3:9: smarthost.port: invalid value \"65536\": expected a port "
	  "number 1-65535" },
	{ "smarthost:\n  host: a.example\n  port: -25\n",
	  "relayq.yaml:3:9: smarthost.port: invalid value \"-25\": expected a port "
	  "number 1-65535" },
	{ "smarthost:\n  host: a.example\n  port: 025\n",
	  "relayq.yaml:3:9: smarthost.port: invalid value \"025\": expected a port "
	  "number 1-65535" },
	{ "smarthost:\n  host: a.example\n  port: 0x19\n",
	  "relayq.yaml:3:9: smarthost.port: invalid value \"0x19\": expected a port "
	  "number 1-65535" },
	{ "smarthost:\n  host: a.example\n  tls: ssl\n",
	  "relayq.yaml:3:8: smarthost.tls: invalid value \"ssl\": expected none, "
	  "starttls, implicit or opportunistic" },
	{ "smarthost:\n  host: a.example\n  tls_verify: maybe\n",
	  "relayq.yaml:3:15: smarthost.tls_verify: invalid value \"maybe\": expected "
	  "true or false" },
	{ "smarthost:\n  host: a.example\n  tls_verify: 1\n",
	  "relayq.yaml:3:15: smarthost.tls_verify: invalid value \"1\": expected "
	  "true or false" },
	{ "smarthost:\n  host: a.example\n  max_connections: 101\n",
	  "relayq.yaml:3:20: smarthost.max_connections: invalid value \"101\": expected "
	  "an integer 1-100" },
	{ "smarthost:\n  host: a.example\n  max_connections: 0\n",
	  "relayq.yaml:3:20: smarthost.max_connections: invalid value \"0\": expected "
	  "an integer 1-100" },
	{ "smarthost:\n  host: a.example\n  max_messages_per_connection: 1.5\n",
	  "relayq.yaml:3:32: smarthost.max_messages_per_connection: invalid value "
	  "\"1.5\": expected an integer 1-100000" },
	{ "smarthost:\n  host: a.example\n  on_uncertain: resend\n",
	  "relayq.yaml:3:17: smarthost.on_uncertain: invalid value \"resend\": expected "
	  "retry or hold" },
	{ "smarthost:\n  host: mail.example.com:587\n",
	  "relayq.yaml:2:9: smarthost.host: invalid value \"mail.example.com:587\": "
	  "expected a host name without a port (set the port with the \"port\" key)" },
	{ "smarthost:\n  host: \"[2001:db8::1]\"\n",
	  "relayq.yaml:2:9: smarthost.host: invalid value \"[2001:db8::1]\": expected "
	  "a host name or IP address without brackets" },
	{ "smarthost:\n  host: \"mail example.com\"\n",
	  "relayq.yaml:2:9: smarthost.host: invalid value \"mail example.com\": "
	  "expected a host name or IP address, such as mail.example.com" },
	{ "smarthost:\n  host: \"\"\n",
	  "relayq.yaml:2:9: smarthost.host: invalid value \"\": expected a host name "
	  "or IP address, such as mail.example.com" },
	{ "smarthost:\n  host: a.example\n  helo_name: my host\n",
	  "relayq.yaml:3:14: smarthost.helo_name: invalid value \"my host\": expected "
	  "a domain name such as mail.example.com, or an address literal such as "
	  "[192.0.2.1]" },
	{ "smarthost:\n  host: a.example\n  username: \"pay\\tments\"\n",
	  "relayq.yaml:3:13: smarthost.username: invalid value \"pay\\x09ments\": "
	  "expected a non-empty text without control characters" },
	{ "queue:\n  path: \"\"\nsmarthost: {host: a.example}\n",
	  "relayq.yaml:2:9: queue.path: invalid value \"\": expected a file name" },
	{ "smarthost: {host: a.example}\nsmtpd:\n  max_message_size: 50MB\n",
	  "relayq.yaml:3:21: smtpd.max_message_size: invalid value \"50MB\": expected "
	  "a size such as 512K, 50M or 1G" },
	{ "smarthost: {host: a.example}\nsmtpd:\n  max_message_size: 0\n",
	  "relayq.yaml:3:21: smtpd.max_message_size: invalid value \"0\": expected "
	  "a size above zero" },
	{ "smarthost: {host: a.example}\nsmtpd:\n  max_recipients: 100001\n",
	  "relayq.yaml:3:19: smtpd.max_recipients: invalid value \"100001\": expected "
	  "an integer 1-100000" },
	{ "smarthost: {host: a.example}\nsmtpd:\n  timeout: 5 minutes\n",
	  "relayq.yaml:3:12: smtpd.timeout: invalid value \"5 minutes\": expected "
	  "a duration such as 30s, 5m, 2h or 5d" },
	{ "smarthost: {host: a.example}\nlog:\n  level: verbose\n",
	  "relayq.yaml:3:10: log.level: invalid value \"verbose\": expected error, "
	  "warning, info or debug" },
	{ "smarthost: {host: a.example}\nlog: {level: \"warn\\ning\"}\n",
	  "relayq.yaml:2:14: log.level: invalid value \"warn\\x0Aing\": expected error, "
	  "warning, info or debug" },
	{ "smarthost:\n  host: a.example\n  port: "
	  "\"123456789012345678901234567890123456789012345678901234567890123\"\n",
	  "relayq.yaml:3:9: smarthost.port: invalid value "
	  "\"123456789012345678901234567890123456789012345678901234567890...\": "
	  "expected a port number 1-65535" },

	/* Durations. */
	{ "smarthost: {host: a.example}\nretry:\n  initial: 0s\n",
	  "relayq.yaml:3:12: retry.initial: invalid value \"0s\": expected a duration "
	  "above zero" },
	{ "smarthost: {host: a.example}\nretry:\n  initial: 2h\n  max: 1h\n",
	  "relayq.yaml:3:12: retry.initial: invalid value \"2h\": expected at most "
	  "retry.max (1h)" },
	{ "smarthost: {host: a.example}\nretry: {max: 90, initial: 1m31s}\n",
	  "relayq.yaml:2:27: retry.initial: invalid value \"1m31s\": expected at most "
	  "retry.max (90)" },
	{ "smarthost: {host: a.example}\nretry:\n  max: 30s\n",
	  "relayq.yaml:3:8: retry.max: invalid value \"30s\": expected at least "
	  "retry.initial (1m)" },
	{ "smarthost: {host: a.example}\nretry:\n  max_age: -5d\n",
	  "relayq.yaml:3:12: retry.max_age: invalid value \"-5d\": expected a duration "
	  "such as 30s, 5m, 2h or 5d" },
	{ "smarthost: {host: a.example, timeouts: {connect: 99999d}}\n",
	  "relayq.yaml:1:50: smarthost.timeouts.connect: invalid value \"99999d\": "
	  "expected a duration of at most 3650d" },

	/* Errors come in file order, before the missing smart host. */
	{ "retry:\n  initial: 0s\nsmarthost:\n  port: x\n",
	  "relayq.yaml:2:12: retry.initial: invalid value \"0s\": expected a duration "
	  "above zero" },
	{ "log: {level: info}\nqueue: {paht: /q.db}\n",
	  "relayq.yaml:2:9: unknown key \"paht\" in queue (did you mean \"path\"?)" },

	/* Fallback entries. */
	{ "smarthost:\n  host: a.example\n  fallback:\n    - port: x\n",
	  "relayq.yaml:4:13: smarthost.fallback[0].port: invalid value \"x\": expected "
	  "a port number 1-65535" },
	{ "smarthost:\n  host: a.example\n  fallback:\n    - port: 2525\n    - hots: b\n",
	  "relayq.yaml:5:7: unknown key \"hots\" in smarthost.fallback[1] (did you "
	  "mean \"host\"?)" },
	{ "smarthost:\n  host: a.example\n  fallback:\n    port: 2525\n",
	  "relayq.yaml:4:5: smarthost.fallback: expected a sequence of mappings such "
	  "as \"- port: 2525\", found a mapping" },
	{ "smarthost:\n  host: a.example\n  fallback:\n    - relay2.example\n",
	  "relayq.yaml:4:7: smarthost.fallback[0]: expected a mapping with host, port "
	  "or tls, found the scalar \"relay2.example\"" },

	/* Listen addresses. */
	{ "listen:\n  - localhost:25\nsmarthost: {host: a.example}\n",
	  "relayq.yaml:2:5: listen[0]: invalid value \"localhost:25\": expected a "
	  "numeric IP address and port such as 127.0.0.1:25, because host names are "
	  "not resolved here" },
	{ "listen:\n  - 127.0.0.1\nsmarthost: {host: a.example}\n",
	  "relayq.yaml:2:5: listen[0]: invalid value \"127.0.0.1\": expected an address "
	  "and port such as 127.0.0.1:25" },
	{ "listen:\n  - 127.0.0.1:0\nsmarthost: {host: a.example}\n",
	  "relayq.yaml:2:5: listen[0]: invalid value \"127.0.0.1:0\": expected a port "
	  "number 1-65535 after the address" },
	{ "listen:\n  - 127.0.0.1:smtp\nsmarthost: {host: a.example}\n",
	  "relayq.yaml:2:5: listen[0]: invalid value \"127.0.0.1:smtp\": expected a "
	  "port number 1-65535 after the address" },
	{ "listen:\n  - 127.0.0.1:25\n  - ::1:25\nsmarthost: {host: a.example}\n",
	  "relayq.yaml:3:5: listen[1]: invalid value \"::1:25\": expected an IPv6 "
	  "address in brackets, such as [::1]:25" },
	{ "listen:\n  - \"[::1]\"\nsmarthost: {host: a.example}\n",
	  "relayq.yaml:2:5: listen[0]: invalid value \"[::1]\": expected an IPv6 "
	  "address and port such as [::1]:25" },
	{ "listen:\n  - \"[localhost]:25\"\nsmarthost: {host: a.example}\n",
	  "relayq.yaml:2:5: listen[0]: invalid value \"[localhost]:25\": expected a "
	  "numeric IPv6 address in the brackets, such as [::1]:25" },
	{ "listen:\n  - 127.0.0.1:25\n  - 127.0.0.1:25\nsmarthost: {host: a.example}\n",
	  "relayq.yaml:3:5: listen[1]: duplicate address \"127.0.0.1:25\" (first given "
	  "at line 2)" },
	{ "listen: 127.0.0.1:25\nsmarthost: {host: a.example}\n",
	  "relayq.yaml:1:9: listen: expected a sequence of addresses such as "
	  "\"- 127.0.0.1:25\", found the scalar \"127.0.0.1:25\"" },
	{ "listen: []\nsmarthost: {host: a.example}\n",
	  "relayq.yaml:1:9: listen: expected at least one address such as 127.0.0.1:25" },
	{ "listen:\n  - {host: 127.0.0.1}\nsmarthost: {host: a.example}\n",
	  "relayq.yaml:2:6: unknown key \"host\" in listen[0] (valid keys: address, "
	  "allow, tls_cert, tls_key, starttls, auth, users_file, "
	  "auth_plaintext_loopback, max_message_size, max_recipients, "
	  "max_connections, max_connections_per_client, smtputf8)" },

	/* YAML syntax and structure. */
	{ "smarthost:\n\thost: a.example\n",
	  "relayq.yaml:2:1: invalid YAML: found character that cannot start any token "
	  "(while scanning for the next token at line 2, column 1). YAML does not allow "
	  "tabs for indentation, so use spaces" },
	{ "listen:\n  - [::1]:25\n",
	  "relayq.yaml:2:6: invalid YAML: did not find expected node content (while "
	  "parsing a flow node at line 2, column 6). Put an IPv6 address with a port "
	  "in quotes, such as \"[::1]:25\"" },
	{ "smarthost:\n  host: a.example\n port: 25\n",
	  "relayq.yaml:3:2: invalid YAML: did not find expected key (while parsing a "
	  "block mapping at line 1, column 1)" },
	{ "smarthost: {host: a.example\n",
	  "relayq.yaml:2:1: invalid YAML: did not find expected ',' or '}' (while "
	  "parsing a flow mapping at line 1, column 12)" },
	{ "smarthost:\n  host: \xff\n",
	  "relayq.yaml:2:9: invalid YAML: invalid leading UTF-8 octet" },
	{ "smarthost:\n  host: \"a\\0b\"\n",
	  "relayq.yaml:2:9: invalid value: contains a NUL character" },
	{ "smarthost: &primary\n  host: a.example\nretry: *primary\n",
	  "relayq.yaml:3:8: YAML aliases (*name) are not supported, so write the "
	  "value out" },
	{ "smarthost: {host: a.example}\n---\nlog: {level: info}\n",
	  "relayq.yaml:2:1: found a second YAML document, but a config file contains "
	  "only one" },
	{ "a: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
	  "relayq.yaml:1:35: nesting deeper than 32 levels" },
};

static void
test_errors(void)
{
	size_t i;

	for (i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
		char *errstr;
		struct config *cfg = load_text(error_cases[i].yaml, &errstr);

		CHECK(cfg == NULL);
		CHECK_STR_EQ(errstr, error_cases[i].message);
		if (!check_str_equal(errstr, error_cases[i].message))
			fprintf(stderr, "    in case %zu:\n%s", i, error_cases[i].yaml);
		config_free(cfg);
		free(errstr);
	}
}

static void
test_unreadable_files(void)
{
	struct config *cfg = NULL;
	char *errstr = NULL;

	enter_test_dir();
	CHECK_INT_EQ(config_load("missing.yaml", &cfg, &errstr), -1);
	CHECK_STR_EQ(errstr, "missing.yaml: cannot open: No such file or directory. "
	    "Create the file, or name another one with -c FILE or the RELAYQ_CONFIG "
	    "environment variable");
	CHECK(cfg == NULL);
	free(errstr);

	errstr = NULL;
	if (mkdir("dir.yaml", 0700) == -1 && errno != EEXIST)
		perror("mkdir dir.yaml");
	CHECK_INT_EQ(config_load("dir.yaml", &cfg, &errstr), -1);
	CHECK_STR_EQ(errstr, TEST_DIRECTORY_ERROR);
	free(errstr);
}

static void
test_default_path(void)
{
	char *saved = getenv("RELAYQ_CONFIG") ? strdup(getenv("RELAYQ_CONFIG")) : NULL;

	unsetenv("RELAYQ_CONFIG");
	CHECK_STR_EQ(config_default_path(), TEST_DEFAULT_CONFIG);
	setenv("RELAYQ_CONFIG", "", 1);
	CHECK_STR_EQ(config_default_path(), TEST_DEFAULT_CONFIG);
	setenv("RELAYQ_CONFIG", "/tmp/other.yaml", 1);
	CHECK_STR_EQ(config_default_path(), "/tmp/other.yaml");

	if (saved != NULL)
		setenv("RELAYQ_CONFIG", saved, 1);
	else
		unsetenv("RELAYQ_CONFIG");
	free(saved);
}

static void
test_tls_mode_names(void)
{
	CHECK_STR_EQ(tls_mode_name(TLS_MODE_NONE), "none");
	CHECK_STR_EQ(tls_mode_name(TLS_MODE_STARTTLS), "starttls");
	CHECK_STR_EQ(tls_mode_name(TLS_MODE_IMPLICIT), "implicit");
}

static void
test_free_null(void)
{
	config_free(NULL);
}

static const struct check_case check_cases[] = {
	CHECK_CASE(test_minimal_defaults),
	CHECK_CASE(test_full_config),
	CHECK_CASE(test_implicit_tls_port),
	CHECK_CASE(test_fallback_defaults),
	CHECK_CASE(test_relative_paths),
	CHECK_CASE(test_empty_values_keep_defaults),
	CHECK_CASE(test_value_spellings),
	CHECK_CASE(test_errors),
	CHECK_CASE(test_unreadable_files),
	CHECK_CASE(test_default_path),
	CHECK_CASE(test_tls_mode_names),
	CHECK_CASE(test_free_null),
};

CHECK_MAIN(check_cases)
