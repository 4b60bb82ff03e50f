/*
 * Loading and validating the YAML config file.
 *
 * The file is read whole, and libyaml's events are built into a small tree
 * of nodes that keep their position, so that every error can name
 * FILE:LINE:COLUMN. The tree is then checked section by section against
 * tables of known keys. Unknown keys, duplicate keys, wrong node types and
 * bad values are errors. A key that is absent or has an empty value
 * ("port:", "port: ~") keeps its default, and an empty file gives the
 * defaults everywhere, but smarthost.host has no default.
 *
 * Relative paths in the file (queue.path, pickup.path, smarthost.ca_file,
 * smtpd.tls_cert and every other file name) are resolved against the
 * directory that contains the config file, not against the working
 * directory, and the result is absolute when the working directory is
 * known.
 *
 * A "listen:" entry may be a mapping whose keys override the "smtpd:"
 * keys of the same name. The entries are merged with "smtpd:" after the
 * whole file is loaded, because "smtpd:" may come after "listen:".
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#endif

#include <yaml.h>

#include "address.h"
#include "config.h"
#include "duration.h"
#include "size.h"
#include "util.h"

/* NOTE: a guessed bound; real config files are a few kilobytes. */
#define CONFIG_FILE_MAX		(1024 * 1024)
#define CONFIG_DEPTH_MAX	32
#define CONFIG_KEYS_MAX		40
/* Ten years: keeps "now + duration" far away from int64_t overflow. */
#define CONFIG_DURATION_MAX	((int64_t)3650 * 24 * 60 * 60)
/* Values longer than this are cut in error messages. */
#define CONFIG_SHOWN_MAX	60

/* --- The node tree --- */

enum config_node_type {
	CONFIG_NODE_SCALAR,
	CONFIG_NODE_SEQUENCE,
	CONFIG_NODE_MAPPING,
};

struct config_node {
	enum config_node_type type;
	char *value;			/* scalar text; NULL for collections */
	bool is_null;			/* plain "", "~" or "null" */
	size_t line;			/* 1-based, of the node's first character */
	size_t column;			/* 1-based, in characters */
	struct config_node **items;	/* sequence items, or mapping keys and values alternating */
	size_t count;
};

struct config_reader {
	yaml_parser_t parser;
	const char *path;
	const char *text;
	size_t len;
	char **errstr;
};

static void
config_node_free(struct config_node *node)
{
	size_t i;

	if (node == NULL)
		return;
	for (i = 0; i < node->count; i++)
		config_node_free(node->items[i]);
	free(node->items);
	free(node->value);
	free(node);
}

static void
config_node_append(struct config_node *parent, struct config_node *child)
{
	parent->items = xrealloc(parent->items,
	    (parent->count + 1) * sizeof(*parent->items));
	parent->items[parent->count++] = child;
}

static const char *
config_node_type_name(const struct config_node *node)
{
	switch (node->type) {
	case CONFIG_NODE_SEQUENCE:
		return "a sequence";
	case CONFIG_NODE_MAPPING:
		return "a mapping";
	default:
		return "a scalar";
	}
}

/* Byte offset of the character at 0-based LINE and COLUMN, or LEN when outside. */
static size_t
config_reader_offset(const struct config_reader *r, size_t line, size_t column)
{
	size_t offset = 0;

	for (; line > 0 && offset < r->len; offset++)
		if (r->text[offset] == '\n')
			line--;
	for (; column > 0 && offset < r->len; column--) {
		offset++;
		while (offset < r->len && ((unsigned char)r->text[offset] & 0xC0) == 0x80)
			offset++;
	}
	return offset;
}

/* Return a hint for a tab in the indentation or an unquoted "- [::1]:25" item, or "". */
static const char *
config_syntax_hint(const struct config_reader *r, const yaml_mark_t *mark)
{
	size_t offset = config_reader_offset(r, mark->line, mark->column);
	size_t line_start = config_reader_offset(r, mark->line, 0);
	const char *line_end;
	const char *item;

	if (offset < r->len && r->text[offset] == '\t')
		return ". YAML does not allow tabs for indentation, so use spaces";

	/* Unquoted, "- [::1]:25" starts a flow sequence, so the entry needs quotes. */
	line_end = memchr(r->text + line_start, '\n', r->len - line_start);
	if (line_end == NULL)
		line_end = r->text + r->len;
	item = r->text + line_start;
	while (item < line_end && *item == ' ')
		item++;
	if (line_end - item > 3 && strncmp(item, "- [", 3) == 0 &&
	    memmem(item, line_end - item, "]:", 2) != NULL)
		return ". Put an IPv6 address with a port in quotes, such as \"[::1]:25\"";
	return "";
}

static int
config_syntax_error(struct config_reader *r)
{
	yaml_parser_t *p = &r->parser;
	size_t line = 1, column = 1, i;

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		return set_error(r->errstr, "%s: out of memory while parsing", r->path);
	case YAML_READER_ERROR:
		/* Reader errors carry a byte offset instead of a mark. */
		for (i = 0; i < p->problem_offset && i < r->len; i++) {
			if (r->text[i] == '\n') {
				line++;
				column = 1;
			} else if (((unsigned char)r->text[i] & 0xC0) != 0x80) {
				column++;
			}
		}
		return set_error(r->errstr, "%s:%zu:%zu: invalid YAML: %s",
		    r->path, line, column, p->problem);
	default:
		break;
	}

	if (p->context != NULL)
		return set_error(r->errstr,
		    "%s:%zu:%zu: invalid YAML: %s (%s at line %zu, column %zu)%s",
		    r->path, p->problem_mark.line + 1, p->problem_mark.column + 1,
		    p->problem, p->context, p->context_mark.line + 1,
		    p->context_mark.column + 1, config_syntax_hint(r, &p->problem_mark));
	return set_error(r->errstr, "%s:%zu:%zu: invalid YAML: %s%s", r->path,
	    p->problem_mark.line + 1, p->problem_mark.column + 1,
	    p->problem != NULL ? p->problem : "syntax error",
	    config_syntax_hint(r, &p->problem_mark));
}

static int
config_reader_next(struct config_reader *r, yaml_event_t *event)
{
	if (!yaml_parser_parse(&r->parser, event))
		return config_syntax_error(r);
	return 0;
}

static bool
config_scalar_is_null(const yaml_event_t *event)
{
	const char *value = (const char *)event->data.scalar.value;

	if (event->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	return value[0] == '\0' || strcmp(value, "~") == 0 ||
	    strcmp(value, "null") == 0 || strcmp(value, "Null") == 0 ||
	    strcmp(value, "NULL") == 0;
}

/* Build the node that starts with EVENT, which this function deletes. */
static int
config_parse_node(struct config_reader *r, yaml_event_t *event, int depth,
    struct config_node **out)
{
	struct config_node *node;
	yaml_event_type_t end_type;

	node = xcalloc(1, sizeof(*node));
	node->line = event->start_mark.line + 1;
	node->column = event->start_mark.column + 1;

	switch (event->type) {
	case YAML_SCALAR_EVENT:
		node->type = CONFIG_NODE_SCALAR;
		node->is_null = config_scalar_is_null(event);
		if (memchr(event->data.scalar.value, '\0', event->data.scalar.length) != NULL) {
			set_error(r->errstr, "%s:%zu:%zu: invalid value: contains a NUL character",
			    r->path, node->line, node->column);
			goto fail;
		}
		node->value = xstrdup((const char *)event->data.scalar.value);
		yaml_event_delete(event);
		*out = node;
		return 0;
	case YAML_SEQUENCE_START_EVENT:
		node->type = CONFIG_NODE_SEQUENCE;
		end_type = YAML_SEQUENCE_END_EVENT;
		break;
	case YAML_MAPPING_START_EVENT:
		node->type = CONFIG_NODE_MAPPING;
		end_type = YAML_MAPPING_END_EVENT;
		break;
	case YAML_ALIAS_EVENT:
		set_error(r->errstr, "%s:%zu:%zu: YAML aliases (*name) are not supported, "
		    "so write the value out", r->path, node->line, node->column);
		goto fail;
	default:
		set_error(r->errstr, "%s:%zu:%zu: unexpected YAML event %d",
		    r->path, node->line, node->column, (int)event->type);
		goto fail;
	}
	yaml_event_delete(event);

	if (depth >= CONFIG_DEPTH_MAX) {
		set_error(r->errstr, "%s:%zu:%zu: nesting deeper than %d levels",
		    r->path, node->line, node->column, CONFIG_DEPTH_MAX);
		config_node_free(node);
		return -1;
	}

	for (;;) {
		struct config_node *child;

		if (config_reader_next(r, event) == -1) {
			config_node_free(node);
			return -1;
		}
		if (event->type == end_type) {
			yaml_event_delete(event);
			break;
		}
		if (config_parse_node(r, event, depth + 1, &child) == -1) {
			config_node_free(node);
			return -1;
		}
		config_node_append(node, child);
	}
	*out = node;
	return 0;

fail:
	yaml_event_delete(event);
	config_node_free(node);
	return -1;
}

/*
 * Parse TEXT into a tree. *ROOT is NULL for an empty file. More than one
 * document is an error, because the second one would be ignored.
 */
static int
config_parse_document(struct config_reader *r, struct config_node **root)
{
	yaml_event_t event;

	*root = NULL;
	if (config_reader_next(r, &event) == -1)
		return -1;
	yaml_event_delete(&event);		/* stream start */
	if (config_reader_next(r, &event) == -1)
		return -1;
	if (event.type == YAML_STREAM_END_EVENT) {
		yaml_event_delete(&event);
		return 0;
	}
	yaml_event_delete(&event);		/* document start */

	if (config_reader_next(r, &event) == -1)
		return -1;
	if (config_parse_node(r, &event, 0, root) == -1)
		return -1;

	if (config_reader_next(r, &event) == -1)
		goto fail;
	yaml_event_delete(&event);		/* document end */
	if (config_reader_next(r, &event) == -1)
		goto fail;
	if (event.type != YAML_STREAM_END_EVENT) {
		set_error(r->errstr, "%s:%zu:%zu: found a second YAML document, but a "
		    "config file contains only one", r->path, event.start_mark.line + 1,
		    event.start_mark.column + 1);
		yaml_event_delete(&event);
		goto fail;
	}
	yaml_event_delete(&event);
	return 0;

fail:
	config_node_free(*root);
	*root = NULL;
	return -1;
}

static int
config_read_file(const char *path, char **text, size_t *len, char **errstr)
{
	FILE *fp;
	char *buf;
	size_t n;
	int saved;

	fp = fopen(path, "rb");
	if (fp == NULL) {
		saved = errno;
		if (saved == ENOENT)
			return set_error(errstr, "%s: cannot open: %s. Create the file, or name "
			    "another one with -c FILE or the RELAYQ_CONFIG environment variable",
			    path, strerror(saved));
		if (saved == EACCES)
			return set_error(errstr, "%s: cannot open: %s. Make the file readable "
			    "by the user that runs relayq", path, strerror(saved));
		return set_error(errstr, "%s: cannot open: %s", path, strerror(saved));
	}

	/* The extra byte distinguishes a file of exactly the maximum size from a larger one. */
	buf = xmalloc(CONFIG_FILE_MAX + 1);
	n = fread(buf, 1, CONFIG_FILE_MAX + 1, fp);
	saved = errno;
	if (ferror(fp)) {
		fclose(fp);
		free(buf);
		return set_error(errstr, "%s: cannot read: %s", path, strerror(saved));
	}
	fclose(fp);
	if (n > CONFIG_FILE_MAX) {
		free(buf);
		return set_error(errstr, "%s: file is larger than %d KiB, which is too large "
		    "for a config file, so check the path", path, CONFIG_FILE_MAX / 1024);
	}

	buf[n] = '\0';
	*text = buf;
	*len = n;
	return 0;
}

/* --- Checking the tree against the known keys --- */

enum config_kind {
	CONFIG_TEXT,		/* char *: non-empty, no control characters */
	CONFIG_HOST,		/* char *: host name or IP address */
	CONFIG_DOMAIN,		/* char *: domain name or address literal, for HELO */
	CONFIG_PATH,		/* char *: file name, resolved against the config's directory */
	CONFIG_PORT,		/* int: 1-65535 */
	CONFIG_INT,		/* int: MIN to MAX */
	CONFIG_BOOL,		/* bool */
	CONFIG_DURATION,	/* int64_t seconds, above zero */
	CONFIG_SIZE,		/* uint64_t bytes, above zero */
	CONFIG_TLS_MODE,	/* enum tls_mode */
	CONFIG_UNCERTAIN,	/* enum uncertain_policy */
	CONFIG_LOG_LEVEL,	/* enum log_level */
	CONFIG_TLS_VERSION,	/* int: 12 or 13, written "1.2" or "1.3" */
	CONFIG_DSN_MODE,	/* enum dsn_mode */
	CONFIG_SMTPD_AUTH,	/* enum smtpd_auth */
	CONFIG_NETWORKS,	/* struct config_networks: one network or a sequence */
	CONFIG_PRIVATE_FILE,	/* char *: like CONFIG_PATH, and group and others must not read it */
	CONFIG_SECTION,		/* a nested section, checked by its own function */
};

struct config_loader;
struct config_node;

/* Loader of a top-level section. VALUE is NULL when the section is absent or empty. */
typedef int config_section_loader(struct config_loader *ld,
    const struct config_node *key, const struct config_node *value,
    struct config *cfg);

struct config_key {
	const char *name;
	enum config_kind kind;
	size_t offset;		/* of the field in the section's structure */
	int min, max;		/* CONFIG_INT only */
	config_section_loader *load;	/* top-level sections only */
};

/* A mapping being checked, and what it contains per known key. */
struct config_section {
	const char *name;			/* key path such as "smarthost", or "" at the top */
	const struct config_node *key;		/* key naming the section; NULL at the top */
	const struct config_node *map;		/* NULL when absent or empty */
	const struct config_key *keys;
	size_t key_count;
	const struct config_node *found_keys[CONFIG_KEYS_MAX];
	const struct config_node *found[CONFIG_KEYS_MAX];	/* value; NULL when absent or null */
};

struct config_loader {
	const char *path;
	char *base_dir;		/* directory that relative paths resolve against */
	char **errstr;
};

struct config_name {
	const char *name;
	int value;
};

static const struct config_name config_tls_modes[] = {
	{ "none", TLS_MODE_NONE },
	{ "starttls", TLS_MODE_STARTTLS },
	{ "implicit", TLS_MODE_IMPLICIT },
	{ "opportunistic", TLS_MODE_OPPORTUNISTIC },
	{ NULL, 0 },
};

static const struct config_name config_tls_versions[] = {
	{ "1.2", 12 },
	{ "1.3", 13 },
	{ NULL, 0 },
};

static const struct config_name config_auth_mechanisms[] = {
	{ "PLAIN", AUTH_MECHANISM_PLAIN },
	{ "LOGIN", AUTH_MECHANISM_LOGIN },
	{ "CRAM-MD5", AUTH_MECHANISM_CRAM_MD5 },
	{ "XOAUTH2", AUTH_MECHANISM_XOAUTH2 },
	{ NULL, 0 },
};

static const struct config_name config_dsn_modes[] = {
	{ "sender", DSN_MODE_SENDER },
	{ "admin", DSN_MODE_ADMIN },
	{ "off", DSN_MODE_OFF },
	{ NULL, 0 },
};

static const struct config_name config_smtpd_auth_modes[] = {
	{ "off", SMTPD_AUTH_OFF },
	{ "optional", SMTPD_AUTH_OPTIONAL },
	{ "required", SMTPD_AUTH_REQUIRED },
	{ NULL, 0 },
};

static const struct config_name config_uncertain_policies[] = {
	{ "retry", UNCERTAIN_RETRY },
	{ "hold", UNCERTAIN_HOLD },
	{ NULL, 0 },
};

static const struct config_name config_log_levels[] = {
	{ "error", LOG_LEVEL_ERROR },
	{ "warning", LOG_LEVEL_WARNING },
	{ "info", LOG_LEVEL_INFO },
	{ "debug", LOG_LEVEL_DEBUG },
	{ NULL, 0 },
};

#define KEY(name, kind, type, field) \
	{ name, kind, offsetof(type, field), 0, 0, NULL }
#define INT_KEY(name, type, field, min, max) \
	{ name, CONFIG_INT, offsetof(type, field), min, max, NULL }
#define SECTION_KEY(name, load) \
	{ name, CONFIG_SECTION, 0, 0, 0, load }
#define COUNT(array) (sizeof(array) / sizeof((array)[0]))

static const struct config_key config_queue_keys[] = {
	KEY("path", CONFIG_PATH, struct config, queue_path),
	KEY("keep_sent", CONFIG_DURATION, struct config, keep_sent),
	KEY("keep_history", CONFIG_DURATION, struct config, keep_history),
};

static const struct config_key config_pickup_keys[] = {
	KEY("path", CONFIG_PATH, struct config, pickup_path),
};

static const struct config_key config_control_keys[] = {
	KEY("socket", CONFIG_PATH, struct config, control_socket),
};

static const struct config_key config_log_keys[] = {
	KEY("level", CONFIG_LOG_LEVEL, struct config, log_level),
};

static const struct config_key config_smarthost_keys[] = {
	KEY("host", CONFIG_HOST, struct config_smarthost, host),
	KEY("port", CONFIG_PORT, struct config_smarthost, port),
	KEY("tls", CONFIG_TLS_MODE, struct config_smarthost, tls),
	KEY("tls_verify", CONFIG_BOOL, struct config_smarthost, tls_verify),
	KEY("ca_file", CONFIG_PATH, struct config_smarthost, ca_file),
	KEY("username", CONFIG_TEXT, struct config_smarthost, username),
	KEY("password_file", CONFIG_PATH, struct config_smarthost, password_file),
	KEY("password_command", CONFIG_TEXT, struct config_smarthost, password_command),
	KEY("password_env", CONFIG_TEXT, struct config_smarthost, password_env),
	SECTION_KEY("auth_mechanisms", NULL),
	KEY("tls_min_version", CONFIG_TLS_VERSION, struct config_smarthost, tls_min_version),
	KEY("tls_ciphers", CONFIG_TEXT, struct config_smarthost, tls_ciphers),
	KEY("tls_ciphersuites", CONFIG_TEXT, struct config_smarthost, tls_ciphersuites),
	KEY("ca_path", CONFIG_PATH, struct config_smarthost, ca_path),
	SECTION_KEY("tls_fingerprint", NULL),
	KEY("tls_client_cert", CONFIG_PATH, struct config_smarthost, tls_client_cert),
	KEY("tls_client_key", CONFIG_PATH, struct config_smarthost, tls_client_key),
	KEY("endpoint_cooldown", CONFIG_DURATION, struct config_smarthost, endpoint_cooldown),
	INT_KEY("max_messages_per_minute", struct config_smarthost,
	    max_messages_per_minute, 0, 100000),
	KEY("helo_name", CONFIG_DOMAIN, struct config_smarthost, helo_name),
	INT_KEY("max_connections", struct config_smarthost, max_connections, 1, 100),
	INT_KEY("max_messages_per_connection", struct config_smarthost,
	    max_messages_per_connection, 1, 100000),
	KEY("on_uncertain", CONFIG_UNCERTAIN, struct config_smarthost, on_uncertain),
	SECTION_KEY("timeouts", NULL),
	SECTION_KEY("fallback", NULL),
};

static const struct config_key config_timeout_keys[] = {
	KEY("connect", CONFIG_DURATION, struct config_timeouts, connect),
	KEY("greeting", CONFIG_DURATION, struct config_timeouts, greeting),
	KEY("command", CONFIG_DURATION, struct config_timeouts, command),
	KEY("mail", CONFIG_DURATION, struct config_timeouts, mail),
	KEY("rcpt", CONFIG_DURATION, struct config_timeouts, rcpt),
	KEY("data_init", CONFIG_DURATION, struct config_timeouts, data_init),
	KEY("data_block", CONFIG_DURATION, struct config_timeouts, data_block),
	KEY("data_end", CONFIG_DURATION, struct config_timeouts, data_end),
	KEY("session", CONFIG_DURATION, struct config_timeouts, session),
};

static const struct config_key config_dsn_keys[] = {
	KEY("mode", CONFIG_DSN_MODE, struct config_dsn, mode),
	KEY("address", CONFIG_TEXT, struct config_dsn, address),
	INT_KEY("max_per_hour", struct config_dsn, max_per_hour, 0, 1000000),
};

static const struct config_key config_fallback_keys[] = {
	KEY("host", CONFIG_HOST, struct config_endpoint, host),
	KEY("port", CONFIG_PORT, struct config_endpoint, port),
	KEY("tls", CONFIG_TLS_MODE, struct config_endpoint, tls),
};

static const struct config_key config_retry_keys[] = {
	KEY("initial", CONFIG_DURATION, struct config_retry, initial),
	KEY("max", CONFIG_DURATION, struct config_retry, max),
	KEY("max_age", CONFIG_DURATION, struct config_retry, max_age),
};

static const struct config_key config_smtpd_keys[] = {
	KEY("hostname", CONFIG_DOMAIN, struct config_smtpd, hostname),
	KEY("max_message_size", CONFIG_SIZE, struct config_smtpd, max_message_size),
	INT_KEY("max_recipients", struct config_smtpd, max_recipients, 1, 100000),
	INT_KEY("max_connections", struct config_smtpd, max_connections, 1, 10000),
	KEY("timeout", CONFIG_DURATION, struct config_smtpd, timeout),
	KEY("data_timeout", CONFIG_DURATION, struct config_smtpd, data_timeout),
	KEY("allow", CONFIG_NETWORKS, struct config_smtpd, allow),
	KEY("tls_cert", CONFIG_PATH, struct config_smtpd, tls_cert),
	KEY("tls_key", CONFIG_PATH, struct config_smtpd, tls_key),
	KEY("starttls", CONFIG_BOOL, struct config_smtpd, starttls),
	KEY("auth", CONFIG_SMTPD_AUTH, struct config_smtpd, auth),
	KEY("users_file", CONFIG_PRIVATE_FILE, struct config_smtpd, users_file),
	KEY("auth_plaintext_loopback", CONFIG_BOOL, struct config_smtpd,
	    auth_plaintext_loopback),
	INT_KEY("max_connections_per_client", struct config_smtpd,
	    max_connections_per_client, 1, 10000),
	KEY("smtputf8", CONFIG_BOOL, struct config_smtpd, smtputf8),
};

/*
 * Keys of a "listen:" mapping. Each key but "address" has a key of the
 * same name and kind in config_smtpd_keys, which gives its default.
 */
static const struct config_key config_listen_keys[] = {
	SECTION_KEY("address", NULL),
	KEY("allow", CONFIG_NETWORKS, struct config_listen, allow),
	KEY("tls_cert", CONFIG_PATH, struct config_listen, tls_cert),
	KEY("tls_key", CONFIG_PATH, struct config_listen, tls_key),
	KEY("starttls", CONFIG_BOOL, struct config_listen, starttls),
	KEY("auth", CONFIG_SMTPD_AUTH, struct config_listen, auth),
	KEY("users_file", CONFIG_PRIVATE_FILE, struct config_listen, users_file),
	KEY("auth_plaintext_loopback", CONFIG_BOOL, struct config_listen,
	    auth_plaintext_loopback),
	KEY("max_message_size", CONFIG_SIZE, struct config_listen, max_message_size),
	INT_KEY("max_recipients", struct config_listen, max_recipients, 1, 100000),
	INT_KEY("max_connections", struct config_listen, max_connections, 1, 10000),
	INT_KEY("max_connections_per_client", struct config_listen,
	    max_connections_per_client, 1, 10000),
	KEY("smtputf8", CONFIG_BOOL, struct config_listen, smtputf8),
};

static int config_error_at(struct config_loader *ld, const struct config_node *node,
    const char *fmt, ...) RELAYQ_PRINTF(3, 4);

/* Report "FILE:LINE:COLUMN: message", or "FILE: message" when NODE is NULL. */
static int
config_error_at(struct config_loader *ld, const struct config_node *node,
    const char *fmt, ...)
{
	va_list ap;
	char *message;

	va_start(ap, fmt);
	message = xvasprintf(fmt, ap);
	va_end(ap);

	if (node != NULL)
		set_error(ld->errstr, "%s:%zu:%zu: %s", ld->path, node->line,
		    node->column, message);
	else
		set_error(ld->errstr, "%s: %s", ld->path, message);
	free(message);
	return -1;
}

/* Quote TEXT for a message: escape quotes and control characters, cut long values. */
static char *
config_quote(const char *text)
{
	size_t len = strlen(text), shown = 0, i;
	char *out = xmalloc(CONFIG_SHOWN_MAX * 4 + 4);
	char *o = out;

	for (i = 0; i < len && shown < CONFIG_SHOWN_MAX; i++, shown++) {
		unsigned char c = (unsigned char)text[i];

		if (c == '"' || c == '\\') {
			*o++ = '\\';
			*o++ = (char)c;
		} else if (c < 32 || c == 127) {
			o += sprintf(o, "\\x%02X", c);
		} else {
			*o++ = (char)c;
		}
	}
	if (i < len)
		o += sprintf(o, "...");
	*o = '\0';
	return out;
}

static int
config_invalid(struct config_loader *ld, const char *keypath,
    const struct config_node *node, const char *expected)
{
	char *quoted = config_quote(node->value);

	config_error_at(ld, node, "%s: invalid value \"%s\": expected %s", keypath,
	    quoted, expected);
	free(quoted);
	return -1;
}

static int
config_wrong_type(struct config_loader *ld, const char *keypath,
    const struct config_node *node, const char *expected)
{
	char *quoted;

	if (node->type != CONFIG_NODE_SCALAR)
		return config_error_at(ld, node, "%s: expected %s, found %s", keypath,
		    expected, config_node_type_name(node));

	quoted = config_quote(node->value);
	config_error_at(ld, node, "%s: expected %s, found the scalar \"%s\"", keypath,
	    expected, quoted);
	free(quoted);
	return -1;
}

static void
config_keypath(const struct config_section *sec, const char *key, char *buf,
    size_t size)
{
	if (sec->name[0] == '\0')
		snprintf(buf, size, "%s", key);
	else
		snprintf(buf, size, "%s.%s", sec->name, key);
}

/* Edit distance between short strings A and B, for "did you mean". */
static size_t
config_edit_distance(const char *a, const char *b)
{
	size_t row[33], la = strlen(a), lb = strlen(b), i, j;

	if (la > 32 || lb > 32)
		return SIZE_MAX;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		size_t diagonal = row[0];

		row[0] = i;
		for (j = 1; j <= lb; j++) {
			size_t above = row[j];
			size_t best = diagonal + (a[i - 1] != b[j - 1]);

			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diagonal = above;
		}
	}
	return row[lb];
}

static int
config_unknown_key(struct config_loader *ld, const struct config_section *sec,
    const struct config_node *key)
{
	const char *where = sec->name[0] == '\0' ? "top level" : sec->name;
	char *quoted = config_quote(key->value);
	char list[512];
	size_t i, used = 0;

	for (i = 0; i < sec->key_count; i++) {
		if (config_edit_distance(key->value, sec->keys[i].name) <= 2) {
			config_error_at(ld, key, "unknown key \"%s\" in %s (did you mean \"%s\"?)",
			    quoted, where, sec->keys[i].name);
			free(quoted);
			return -1;
		}
	}

	list[0] = '\0';
	for (i = 0; i < sec->key_count && used < sizeof(list); i++)
		used += snprintf(list + used, sizeof(list) - used, "%s%s",
		    i == 0 ? "" : ", ", sec->keys[i].name);
	config_error_at(ld, key, "unknown key \"%s\" in %s (valid keys: %s)", quoted,
	    where, list);
	free(quoted);
	return -1;
}

static const struct config_node *
config_section_value(const struct config_section *sec, const char *name)
{
	size_t i;

	for (i = 0; i < sec->key_count; i++)
		if (strcmp(sec->keys[i].name, name) == 0)
			return sec->found[i];
	return NULL;
}

/* Return the key node of NAME, also when its value is empty, or NULL when the key is absent. */
static const struct config_node *
config_section_key(const struct config_section *sec, const char *name)
{
	size_t i;

	for (i = 0; i < sec->key_count; i++)
		if (strcmp(sec->keys[i].name, name) == 0)
			return sec->found_keys[i];
	return NULL;
}

/* Whole decimal number without sign or leading zeros, at most MAX. */
static bool
config_parse_decimal(const char *text, uint64_t max, uint64_t *out)
{
	uint64_t n = 0;
	const char *p;

	if (text[0] < '0' || text[0] > '9' || (text[0] == '0' && text[1] != '\0'))
		return false;
	for (p = text; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return false;
		n = n * 10 + (uint64_t)(*p - '0');
		if (n > max)
			return false;
	}
	*out = n;
	return true;
}

static bool
config_has_control(const char *text)
{
	for (; *text != '\0'; text++)
		if ((unsigned char)*text < 32 || *text == 127)
			return true;
	return false;
}

static bool
config_lookup_name(const struct config_name *names, const char *text, int *value)
{
	for (; names->name != NULL; names++) {
		if (strcasecmp(names->name, text) == 0) {
			*value = names->value;
			return true;
		}
	}
	return false;
}

/*
 * Check a smart host name. Returns NULL when it is acceptable, or what
 * was expected instead.
 */
static const char *
config_check_host(const char *text)
{
	const char *expected = "a host name or IP address, such as mail.example.com";
	unsigned char addr[16];
	size_t colons = 0;
	const char *p;

	if (text[0] == '[')
		return "a host name or IP address without brackets";
	if (text[0] == '\0' || text[0] == '.' || text[0] == '-' || strstr(text, "..") != NULL)
		return expected;
	for (p = text; *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p) && strchr(".-_:", *p) == NULL)
			return expected;
		if (*p == ':')
			colons++;
	}
	if (colons == 1)
		return "a host name without a port (set the port with the \"port\" key)";
	if (colons > 1 && inet_pton(AF_INET6, text, addr) != 1)
		return expected;
	return NULL;
}

/* True for a domain name or an IPv4 or "IPv6:" address literal (RFC 5321 4.1.3). */
static bool
config_is_domain(const char *text)
{
	unsigned char addr[16];
	size_t len = strlen(text), label = 0;
	const char *p;

	if (text[0] == '[') {
		char inner[64];

		if (len < 3 || len - 2 >= sizeof(inner) || text[len - 1] != ']')
			return false;
		memcpy(inner, text + 1, len - 2);
		inner[len - 2] = '\0';
		if (strncasecmp(inner, "IPv6:", 5) == 0)
			return inet_pton(AF_INET6, inner + 5, addr) == 1;
		return inet_pton(AF_INET, inner, addr) == 1;
	}

	if (len == 0 || len > 255)
		return false;
	for (p = text; ; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0 || label > 63 || p[-1] == '-' || p[-label] == '-')
				return false;
			if (*p == '\0')
				return true;
			label = 0;
		} else if (isalnum((unsigned char)*p) || *p == '-') {
			label++;
		} else {
			return false;
		}
	}
}

/* Join BASE and a relative PATH, dropping leading "./" from PATH. */
static char *
config_resolve_path(const struct config_loader *ld, const char *path)
{
	size_t base_len = strlen(ld->base_dir);

#ifdef _WIN32
	if (path[0] == '/' || path[0] == '\\' || (isalpha((unsigned char)path[0]) && path[1] == ':'))
		return xstrdup(path);
#else
	if (path[0] == '/')
		return xstrdup(path);
#endif
	while (path[0] == '.' && path[1] == '/' && path[2] != '\0')
		path += 2;
	if (base_len > 0 && ld->base_dir[base_len - 1] == '/')
		return xasprintf("%s%s", ld->base_dir, path);
	return xasprintf("%s/%s", ld->base_dir, path);
}

/*
 * Check a file that contains secrets, such as smtpd.users_file: group and
 * others must not read it. A file that cannot be examined because a
 * directory is closed to this user passes, so that relayq commands run by
 * another user still load the config. relayqd reports it when it reads
 * the file.
 */
static int
config_check_private_file(struct config_loader *ld, const char *keypath,
    const struct config_node *value, const char *path)
{
#ifdef _WIN32
	/* NOTE: Windows protects the file with ACLs, which this check does not read. */
	(void)ld;
	(void)keypath;
	(void)value;
	(void)path;
	return 0;
#else
	struct stat st;

	if (stat(path, &st) == -1) {
		if (errno == ENOENT)
			return config_error_at(ld, value, "%s: %s not found", keypath, path);
		return 0;
	}
	if (!S_ISREG(st.st_mode))
		return config_error_at(ld, value, "%s: %s is not a regular file",
		    keypath, path);
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		return config_error_at(ld, value, "%s: %s can be read or changed by "
		    "group or others (mode %04o), which exposes its password hashes: "
		    "run \"chmod 600 %s\"", keypath, path,
		    (unsigned int)(st.st_mode & 07777), path);
	return 0;
#endif
}

/* Length of a network's address in bytes. */
static size_t
config_network_length(const struct config_network *net)
{
	return net->family == 4 ? 4 : 16;
}

/* True when NET has bits set after its prefix; CLEARED receives NET without them. */
static bool
config_network_has_host_bits(const struct config_network *net,
    struct config_network *cleared)
{
	size_t len = config_network_length(net), i;
	int bits;

	*cleared = *net;
	for (i = 0; i < len; i++) {
		bits = net->prefix - (int)i * 8;
		if (bits >= 8)
			continue;
		cleared->addr[i] &= bits <= 0 ? 0 : (unsigned char)(0xFF << (8 - bits));
	}
	return memcmp(cleared->addr, net->addr, len) != 0;
}

static void
config_network_format(const struct config_network *net, char *buf, size_t size)
{
	char addr[INET6_ADDRSTRLEN];

	inet_ntop(net->family == 4 ? AF_INET : AF_INET6, net->addr, addr,
	    sizeof(addr));
	snprintf(buf, size, "%s/%d", addr, net->prefix);
}

/* One network: "192.168.1.0/24", "::1/128", or an address alone for one host. */
static int
config_load_network(struct config_loader *ld, const char *keypath,
    const struct config_node *node, struct config_network *net)
{
	const char *expected = "a network such as 192.168.1.0/24 or ::1/128, or an "
	    "IP address";
	char addr[INET6_ADDRSTRLEN], shown[INET6_ADDRSTRLEN + 8], message[160];
	struct config_network cleared;
	const char *slash;
	uint64_t prefix;
	size_t len;

	if (node->type != CONFIG_NODE_SCALAR || node->is_null)
		return config_wrong_type(ld, keypath, node, expected);
	slash = strchr(node->value, '/');
	len = slash != NULL ? (size_t)(slash - node->value) : strlen(node->value);
	if (len == 0 || len >= sizeof(addr))
		return config_invalid(ld, keypath, node, expected);
	memcpy(addr, node->value, len);
	addr[len] = '\0';

	memset(net, 0, sizeof(*net));
	if (inet_pton(AF_INET, addr, net->addr) == 1)
		net->family = 4;
	else if (inet_pton(AF_INET6, addr, net->addr) == 1)
		net->family = 6;
	else
		return config_invalid(ld, keypath, node, expected);

	prefix = net->family == 4 ? 32 : 128;
	if (slash != NULL && !config_parse_decimal(slash + 1, prefix, &prefix))
		return config_invalid(ld, keypath, node, net->family == 4 ?
		    "a prefix length 0-32 after the slash" :
		    "a prefix length 0-128 after the slash");
	net->prefix = (int)prefix;

	if (config_network_has_host_bits(net, &cleared)) {
		config_network_format(&cleared, shown, sizeof(shown));
		snprintf(message, sizeof(message), "a network without host bits, "
		    "such as %s", shown);
		return config_invalid(ld, keypath, node, message);
	}
	return 0;
}

/* An "allow" value: one network, or a non-empty sequence of them. */
static int
config_load_networks(struct config_loader *ld, const char *keypath,
    const struct config_node *value, struct config_networks *field)
{
	struct config_networks nets = { NULL, 0 };
	char itempath[160];
	size_t i;

	if (value->type == CONFIG_NODE_SCALAR) {
		nets.items = xcalloc(1, sizeof(*nets.items));
		if (config_load_network(ld, keypath, value, &nets.items[0]) == -1) {
			free(nets.items);
			return -1;
		}
		nets.count = 1;
	} else if (value->type == CONFIG_NODE_SEQUENCE && value->count > 0) {
		nets.items = xcalloc(value->count, sizeof(*nets.items));
		for (i = 0; i < value->count; i++) {
			snprintf(itempath, sizeof(itempath), "%s[%zu]", keypath, i);
			if (config_load_network(ld, itempath, value->items[i],
			    &nets.items[i]) == -1) {
				free(nets.items);
				return -1;
			}
		}
		nets.count = value->count;
	} else {
		return config_wrong_type(ld, keypath, value, "a network such as "
		    "192.168.1.0/24, or a sequence of at least one");
	}

	free(field->items);
	*field = nets;
	return 0;
}

static int
config_load_string(struct config_loader *ld, const char *keypath,
    const struct config_key *key, const struct config_node *value, char **field)
{
	const char *text = value->value;
	const char *expected;

	switch (key->kind) {
	case CONFIG_HOST:
		expected = config_check_host(text);
		if (expected != NULL)
			return config_invalid(ld, keypath, value, expected);
		break;
	case CONFIG_DOMAIN:
		if (!config_is_domain(text))
			return config_invalid(ld, keypath, value, "a domain name such as "
			    "mail.example.com, or an address literal such as [192.0.2.1]");
		break;
	case CONFIG_PATH:
	case CONFIG_PRIVATE_FILE:
		if (text[0] == '\0' || config_has_control(text))
			return config_invalid(ld, keypath, value, "a file name");
		break;
	default:
		if (text[0] == '\0' || config_has_control(text))
			return config_invalid(ld, keypath, value,
			    "a non-empty text without control characters");
		break;
	}

	free(*field);
	if (key->kind == CONFIG_PATH || key->kind == CONFIG_PRIVATE_FILE)
		*field = config_resolve_path(ld, text);
	else
		*field = xstrdup(text);
	if (key->kind == CONFIG_PRIVATE_FILE)
		return config_check_private_file(ld, keypath, value, *field);
	return 0;
}

static int
config_load_duration(struct config_loader *ld, const char *keypath,
    const struct config_node *value, int64_t *field)
{
	char max[32];
	int64_t seconds;

	if (duration_parse(value->value, &seconds, NULL) == -1)
		return config_invalid(ld, keypath, value,
		    "a duration such as 30s, 5m, 2h or 5d");
	if (seconds == 0)
		return config_invalid(ld, keypath, value, "a duration above zero");
	if (seconds > CONFIG_DURATION_MAX) {
		char expected[64];

		duration_format(CONFIG_DURATION_MAX, max, sizeof(max));
		snprintf(expected, sizeof(expected), "a duration of at most %s", max);
		return config_invalid(ld, keypath, value, expected);
	}
	*field = seconds;
	return 0;
}

static int
config_load_name(struct config_loader *ld, const char *keypath,
    const struct config_node *value, const struct config_name *names,
    const char *expected, int *out)
{
	if (!config_lookup_name(names, value->value, out))
		return config_invalid(ld, keypath, value, expected);
	return 0;
}

/* What a scalar of KEY's kind should look like, for type errors. */
static const char *
config_kind_expected(const struct config_key *key, char *buf, size_t size)
{
	switch (key->kind) {
	case CONFIG_PORT:
		return "a port number 1-65535";
	case CONFIG_INT:
		snprintf(buf, size, "an integer %d-%d", key->min, key->max);
		return buf;
	case CONFIG_BOOL:
		return "true or false";
	case CONFIG_DURATION:
		return "a duration such as 30s, 5m, 2h or 5d";
	case CONFIG_SIZE:
		return "a size such as 512K, 50M or 1G";
	case CONFIG_TLS_MODE:
		return "none, starttls, implicit or opportunistic";
	case CONFIG_TLS_VERSION:
		return "1.2 or 1.3";
	case CONFIG_DSN_MODE:
		return "sender, admin or off";
	case CONFIG_SMTPD_AUTH:
		return "off, optional or required";
	case CONFIG_NETWORKS:
		return "a network such as 192.168.1.0/24, or a sequence of them";
	case CONFIG_UNCERTAIN:
		return "retry or hold";
	case CONFIG_LOG_LEVEL:
		return "error, warning, info or debug";
	case CONFIG_PATH:
	case CONFIG_PRIVATE_FILE:
		return "a file name";
	case CONFIG_HOST:
		return "a host name or IP address";
	case CONFIG_DOMAIN:
		return "a domain name";
	default:
		return "a text";
	}
}

/* Convert the scalar VALUE of KEY and store it in the field at BASE + offset. */
static int
config_load_value(struct config_loader *ld, const char *keypath,
    const struct config_key *key, const struct config_node *value, void *base)
{
	void *field = (char *)base + key->offset;
	char expected[64];
	uint64_t number;
	int named;

	if (key->kind == CONFIG_NETWORKS)
		return config_load_networks(ld, keypath, value, field);
	if (value->type != CONFIG_NODE_SCALAR)
		return config_wrong_type(ld, keypath, value,
		    config_kind_expected(key, expected, sizeof(expected)));

	switch (key->kind) {
	case CONFIG_TEXT:
	case CONFIG_HOST:
	case CONFIG_DOMAIN:
	case CONFIG_PATH:
	case CONFIG_PRIVATE_FILE:
		return config_load_string(ld, keypath, key, value, field);
	case CONFIG_PORT:
		if (!config_parse_decimal(value->value, 65535, &number) || number == 0)
			return config_invalid(ld, keypath, value, "a port number 1-65535");
		*(int *)field = (int)number;
		return 0;
	case CONFIG_INT:
		if (!config_parse_decimal(value->value, (uint64_t)key->max, &number) ||
		    number < (uint64_t)key->min)
			return config_invalid(ld, keypath, value,
			    config_kind_expected(key, expected, sizeof(expected)));
		*(int *)field = (int)number;
		return 0;
	case CONFIG_BOOL:
		if (strcasecmp(value->value, "true") == 0 || strcasecmp(value->value, "yes") == 0)
			*(bool *)field = true;
		else if (strcasecmp(value->value, "false") == 0 || strcasecmp(value->value, "no") == 0)
			*(bool *)field = false;
		else
			return config_invalid(ld, keypath, value, "true or false");
		return 0;
	case CONFIG_DURATION:
		return config_load_duration(ld, keypath, value, field);
	case CONFIG_SIZE:
		if (size_parse(value->value, &number, NULL) == -1)
			return config_invalid(ld, keypath, value, "a size such as 512K, 50M or 1G");
		if (number == 0)
			return config_invalid(ld, keypath, value, "a size above zero");
		*(uint64_t *)field = number;
		return 0;
	case CONFIG_TLS_MODE:
		if (config_load_name(ld, keypath, value, config_tls_modes,
		    "none, starttls, implicit or opportunistic", &named) == -1)
			return -1;
		*(enum tls_mode *)field = named;
		return 0;
	case CONFIG_TLS_VERSION:
		if (config_load_name(ld, keypath, value, config_tls_versions,
		    "1.2 or 1.3", &named) == -1)
			return -1;
		*(int *)field = named;
		return 0;
	case CONFIG_DSN_MODE:
		if (config_load_name(ld, keypath, value, config_dsn_modes,
		    "sender, admin or off", &named) == -1)
			return -1;
		*(enum dsn_mode *)field = named;
		return 0;
	case CONFIG_SMTPD_AUTH:
		if (config_load_name(ld, keypath, value, config_smtpd_auth_modes,
		    "off, optional or required", &named) == -1)
			return -1;
		*(enum smtpd_auth *)field = named;
		return 0;
	case CONFIG_UNCERTAIN:
		if (config_load_name(ld, keypath, value, config_uncertain_policies,
		    "retry or hold", &named) == -1)
			return -1;
		*(enum uncertain_policy *)field = named;
		return 0;
	case CONFIG_LOG_LEVEL:
		if (config_load_name(ld, keypath, value, config_log_levels,
		    "error, warning, info or debug", &named) == -1)
			return -1;
		*(enum log_level *)field = named;
		return 0;
	case CONFIG_NETWORKS:
	case CONFIG_SECTION:
		break;
	}
	return 0;
}

/*
 * Check the keys of SEC->map in file order and store the scalar values
 * into BASE. A section-valued key is loaded at once when it has a loader
 * (BASE is then the struct config), else only recorded in SEC->found for
 * the caller to check afterwards.
 */
static int
config_section_load(struct config_loader *ld, struct config_section *sec, void *base)
{
	const struct config_node *map = sec->map;
	size_t i, k;

	if (map == NULL)
		return 0;
	if (map->type != CONFIG_NODE_MAPPING)
		return config_wrong_type(ld, sec->name[0] == '\0' ? "top level" : sec->name,
		    map, "a mapping");

	for (i = 0; i + 1 < map->count; i += 2) {
		const struct config_node *key = map->items[i];
		const struct config_node *value = map->items[i + 1];
		char keypath[128];

		if (key->type != CONFIG_NODE_SCALAR)
			return config_error_at(ld, key, "expected a key name, found %s",
			    config_node_type_name(key));
		for (k = 0; k < sec->key_count; k++)
			if (strcmp(sec->keys[k].name, key->value) == 0)
				break;
		if (k == sec->key_count)
			return config_unknown_key(ld, sec, key);

		config_keypath(sec, key->value, keypath, sizeof(keypath));
		if (sec->found_keys[k] != NULL)
			return config_error_at(ld, key, "%s: duplicate key (first given at "
			    "line %zu)", keypath, sec->found_keys[k]->line);
		sec->found_keys[k] = key;
		if (value->type == CONFIG_NODE_SCALAR && value->is_null)
			continue;
		sec->found[k] = value;

		if (sec->keys[k].kind != CONFIG_SECTION) {
			if (config_load_value(ld, keypath, &sec->keys[k], value, base) == -1)
				return -1;
		} else if (sec->keys[k].load != NULL) {
			if (sec->keys[k].load(ld, key, value, base) == -1)
				return -1;
		}
	}
	return 0;
}

static void
config_section_init(struct config_section *sec, const char *name,
    const struct config_node *key, const struct config_node *map,
    const struct config_key *keys, size_t key_count)
{
	memset(sec, 0, sizeof(*sec));
	sec->name = name;
	sec->key = key;
	sec->map = map;
	sec->keys = keys;
	sec->key_count = key_count;
}

/*
 * Report a required key NAME of SEC as missing. The position is that of
 * the key when it is present with an empty value, else that of the
 * section's own key, else none.
 */
static int
config_missing(struct config_loader *ld, const struct config_section *sec,
    const char *name, const char *expected)
{
	const struct config_node *where = config_section_key(sec, name);
	char keypath[128];

	if (where == NULL)
		where = sec->key;
	config_keypath(sec, name, keypath, sizeof(keypath));
	return config_error_at(ld, where, "%s: missing: expected %s", keypath, expected);
}

/* --- Sections with more than plain values --- */

/* Split "127.0.0.1:25" or "[::1]:25" into ENTRY and check both parts. */
static int
config_load_listen_entry(struct config_loader *ld, const char *keypath,
    const struct config_node *node, struct config_listen *entry)
{
	const char *text = node->value, *port, *colon;
	unsigned char addr[16];
	struct addrinfo hints, *res;
	uint64_t number;
	char *host;

	if (text[0] == '[') {
		colon = strchr(text, ']');
		if (colon == NULL || colon[1] != ':')
			return config_invalid(ld, keypath, node,
			    "an IPv6 address and port such as [::1]:25");
		host = xstrndup(text + 1, colon - text - 1);
		port = colon + 2;
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_INET6;
		hints.ai_flags = AI_NUMERICHOST;
		if (getaddrinfo(host, NULL, &hints, &res) != 0) {
			free(host);
			return config_invalid(ld, keypath, node,
			    "a numeric IPv6 address in the brackets, such as [::1]:25");
		}
		freeaddrinfo(res);
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL)
			return config_invalid(ld, keypath, node,
			    "an address and port such as 127.0.0.1:25");
		if (strchr(text, ':') != colon)
			return config_invalid(ld, keypath, node,
			    "an IPv6 address in brackets, such as [::1]:25");
		host = xstrndup(text, colon - text);
		port = colon + 1;
		if (inet_pton(AF_INET, host, addr) != 1) {
			free(host);
			return config_invalid(ld, keypath, node, "a numeric IP address and "
			    "port such as 127.0.0.1:25, because host names are not resolved here");
		}
	}

	if (!config_parse_decimal(port, 65535, &number) || number == 0) {
		free(host);
		return config_invalid(ld, keypath, node,
		    "a port number 1-65535 after the address");
	}

	entry->host = host;
	entry->port = xstrdup(port);
	entry->text = xstrdup(text);
	return 0;
}

/* Bit of the listener key NAME in the "set" masks, or 0 when NAME is not one. */
static uint64_t
config_listen_key_bit(const char *name)
{
	size_t k;

	for (k = 0; k < COUNT(config_listen_keys); k++)
		if (strcmp(config_listen_keys[k].name, name) == 0)
			return (uint64_t)1 << k;
	return 0;
}

/* Record in *SET which listener keys the loaded section SEC gave a value. */
static void
config_listen_record_set(const struct config_section *sec, uint64_t *set)
{
	size_t k;

	for (k = 0; k < sec->key_count; k++)
		if (sec->found[k] != NULL)
			*set |= config_listen_key_bit(sec->keys[k].name);
}

/* A "listen:" entry written as a mapping with "address" and listener keys. */
static int
config_load_listen_map(struct config_loader *ld, const char *keypath,
    const struct config_node *node, struct config_listen *entry)
{
	struct config_section sec;
	const struct config_node *address;
	char addresspath[48];

	config_section_init(&sec, keypath, node, node, config_listen_keys,
	    COUNT(config_listen_keys));
	if (config_section_load(ld, &sec, entry) == -1)
		return -1;
	config_listen_record_set(&sec, &entry->set);

	address = config_section_value(&sec, "address");
	if (address == NULL)
		return config_missing(ld, &sec, "address",
		    "an address and port such as 127.0.0.1:587");
	snprintf(addresspath, sizeof(addresspath), "%s.address", keypath);
	if (address->type != CONFIG_NODE_SCALAR)
		return config_wrong_type(ld, addresspath, address,
		    "an address and port such as 127.0.0.1:587");
	return config_load_listen_entry(ld, addresspath, address, entry);
}

static int
config_load_listen(struct config_loader *ld, const struct config_node *key,
    const struct config_node *value, struct config *cfg)
{
	size_t i, j;
	int rc;

	(void)key;
	if (value == NULL)
		return 0;
	if (value->type != CONFIG_NODE_SEQUENCE)
		return config_wrong_type(ld, "listen", value,
		    "a sequence of addresses such as \"- 127.0.0.1:25\"");
	if (value->count == 0)
		return config_error_at(ld, value, "listen: expected at least one address "
		    "such as 127.0.0.1:25");

	cfg->listen = xcalloc(value->count, sizeof(*cfg->listen));
	for (i = 0; i < value->count; i++) {
		const struct config_node *item = value->items[i];
		char keypath[32];

		snprintf(keypath, sizeof(keypath), "listen[%zu]", i);
		cfg->listen[i].line = item->line;
		cfg->listen[i].column = item->column;
		cfg->listen_count++;
		if (item->type == CONFIG_NODE_MAPPING)
			rc = config_load_listen_map(ld, keypath, item, &cfg->listen[i]);
		else if (item->type == CONFIG_NODE_SCALAR && !item->is_null)
			rc = config_load_listen_entry(ld, keypath, item, &cfg->listen[i]);
		else
			rc = config_wrong_type(ld, keypath, item, "an address and port "
			    "such as 127.0.0.1:25, or a mapping with an address");
		if (rc == -1)
			return -1;

		for (j = 0; j < i; j++) {
			if (strcmp(cfg->listen[j].host, cfg->listen[i].host) == 0 &&
			    strcmp(cfg->listen[j].port, cfg->listen[i].port) == 0)
				return config_error_at(ld, item, "%s: duplicate address \"%s\" "
				    "(first given at line %zu)", keypath, cfg->listen[i].text,
				    value->items[j]->line);
		}
	}
	return 0;
}

/* Standard port of a TLS mode: 465 for implicit TLS (SMTPS), else 25. */
static int
config_default_port(enum tls_mode tls)
{
	return tls == TLS_MODE_IMPLICIT ? 465 : 25;
}

/*
 * Fill one fallback endpoint. Host and TLS mode default to the primary's.
 * The port defaults to the primary's when the TLS mode is the same, and
 * to the mode's standard port when the entry changes the mode.
 */
static int
config_load_fallback_entry(struct config_loader *ld, const char *name,
    const struct config_node *node, const struct config_smarthost *sh,
    struct config_endpoint *ep)
{
	struct config_section sec;

	config_section_init(&sec, name, NULL, node, config_fallback_keys,
	    COUNT(config_fallback_keys));
	ep->port = -1;
	ep->tls = sh->tls;

	if (node->type != CONFIG_NODE_MAPPING)
		return config_wrong_type(ld, name, node,
		    "a mapping with host, port or tls");
	if (config_section_load(ld, &sec, ep) == -1)
		return -1;

	if (ep->host == NULL)
		ep->host = xstrdup(sh->host);
	if (ep->port == -1)
		ep->port = ep->tls == sh->tls ? sh->port : config_default_port(ep->tls);
	return 0;
}

static int
config_load_fallback(struct config_loader *ld, const struct config_node *value,
    struct config_smarthost *sh)
{
	size_t i;

	if (value->type != CONFIG_NODE_SEQUENCE)
		return config_wrong_type(ld, "smarthost.fallback", value,
		    "a sequence of mappings such as \"- port: 2525\"");

	sh->fallback = xcalloc(value->count, sizeof(*sh->fallback));
	for (i = 0; i < value->count; i++) {
		char name[48];

		snprintf(name, sizeof(name), "smarthost.fallback[%zu]", i);
		sh->fallback_count++;
		if (config_load_fallback_entry(ld, name, value->items[i], sh,
		    &sh->fallback[i]) == -1)
			return -1;
	}
	return 0;
}

/* The password sources of smarthost.username: exactly one must be set. */
static const char *const config_password_keys[] = {
	"password_file", "password_command", "password_env",
};

static int
config_check_credentials(struct config_loader *ld, const struct config_section *sec,
    const struct config_smarthost *sh)
{
	const char *values[] = { sh->password_file, sh->password_command, sh->password_env };
	const char *first = NULL;
	const struct config_node *node;
	char keypath[64];
	size_t i;

	for (i = 0; i < COUNT(values); i++) {
		if (values[i] == NULL)
			continue;
		if (first != NULL) {
			node = config_section_key(sec, config_password_keys[i]);
			return config_error_at(ld, node, "smarthost.%s: only one of "
			    "password_file, password_command and password_env may be "
			    "set, and smarthost.%s is set already",
			    config_password_keys[i], first);
		}
		first = config_password_keys[i];
	}

	if (sh->username != NULL && first == NULL)
		return config_missing(ld, sec, "password_file",
		    "the file that contains the password for smarthost.username "
		    "(or set password_command or password_env)");
	if (first != NULL && sh->username == NULL) {
		snprintf(keypath, sizeof(keypath), "the user name that goes with "
		    "smarthost.%s", first);
		return config_missing(ld, sec, "username", keypath);
	}

	/* Environment variable names as POSIX shells accept them. */
	if (sh->password_env != NULL) {
		const char *p = sh->password_env;

		for (i = 0; p[i] != '\0'; i++) {
			if (p[i] == '_' || isalpha((unsigned char)p[i]) ||
			    (i > 0 && isdigit((unsigned char)p[i])))
				continue;
			return config_invalid(ld, "smarthost.password_env",
			    config_section_value(sec, "password_env"),
			    "the name of an environment variable, such as "
			    "RELAYQ_SMARTHOST_PASSWORD");
		}
	}
	return 0;
}

/* A client certificate needs its key, and the reverse. */
static int
config_check_smarthost_tls(struct config_loader *ld, const struct config_section *sec,
    const struct config_smarthost *sh)
{
	if (sh->tls_client_cert != NULL && sh->tls_client_key == NULL)
		return config_missing(ld, sec, "tls_client_key",
		    "the private key file of smarthost.tls_client_cert");
	if (sh->tls_client_key != NULL && sh->tls_client_cert == NULL)
		return config_missing(ld, sec, "tls_client_cert",
		    "the certificate file that goes with smarthost.tls_client_key");
	return 0;
}

/* Read one mechanism name of smarthost.auth_mechanisms into SH, refusing repeats. */
static int
config_load_auth_mechanism(struct config_loader *ld, const char *keypath,
    const struct config_node *node, struct config_smarthost *sh)
{
	int named;
	size_t i;

	if (node->type != CONFIG_NODE_SCALAR || node->is_null)
		return config_wrong_type(ld, keypath, node,
		    "a mechanism name: PLAIN, LOGIN, CRAM-MD5 or XOAUTH2");
	if (config_load_name(ld, keypath, node, config_auth_mechanisms,
	    "PLAIN, LOGIN, CRAM-MD5 or XOAUTH2", &named) == -1)
		return -1;
	for (i = 0; i < sh->auth_mechanism_count; i++)
		if (sh->auth_mechanisms[i] == (enum auth_mechanism)named)
			return config_error_at(ld, node, "%s: %s is listed twice",
			    keypath, node->value);
	sh->auth_mechanisms[sh->auth_mechanism_count++] = named;
	return 0;
}

/* smarthost.auth_mechanisms: one name, or a sequence in order of preference. */
static int
config_load_auth_mechanisms(struct config_loader *ld, const struct config_node *value,
    struct config_smarthost *sh)
{
	char keypath[48];
	size_t i;

	sh->auth_mechanism_count = 0;
	if (value->type == CONFIG_NODE_SCALAR)
		return config_load_auth_mechanism(ld, "smarthost.auth_mechanisms",
		    value, sh);
	if (value->type != CONFIG_NODE_SEQUENCE || value->count == 0)
		return config_wrong_type(ld, "smarthost.auth_mechanisms", value,
		    "a sequence of mechanism names such as [PLAIN, LOGIN]");

	for (i = 0; i < value->count; i++) {
		snprintf(keypath, sizeof(keypath), "smarthost.auth_mechanisms[%zu]", i);
		if (config_load_auth_mechanism(ld, keypath, value->items[i], sh) == -1)
			return -1;
	}
	return 0;
}

static int
config_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Parse a SHA-256 fingerprint: 64 hex digits, optionally in pairs
 * separated by colons (as "openssl x509 -fingerprint -sha256" prints
 * them), optionally after "sha256:".
 */
static bool
config_parse_fingerprint(const char *text, struct config_fingerprint *fp)
{
	size_t n = 0;
	int high = -1, digit;

	if (strncasecmp(text, "sha256:", 7) == 0)
		text += 7;
	for (; *text != '\0'; text++) {
		if (*text == ':' && high == -1 && n > 0)
			continue;
		digit = config_hex_value(*text);
		if (digit == -1 || (high == -1 && n == CONFIG_FINGERPRINT_SIZE))
			return false;
		if (high == -1) {
			high = digit;
			continue;
		}
		fp->sha256[n++] = (unsigned char)(high << 4 | digit);
		high = -1;
	}
	return n == CONFIG_FINGERPRINT_SIZE && high == -1;
}

static int
config_load_fingerprint(struct config_loader *ld, const char *keypath,
    const struct config_node *node, struct config_smarthost *sh)
{
	struct config_fingerprint *fp;

	if (node->type != CONFIG_NODE_SCALAR || node->is_null)
		return config_wrong_type(ld, keypath, node,
		    "a SHA-256 fingerprint of 64 hex digits");
	fp = &sh->tls_fingerprints[sh->tls_fingerprint_count];
	if (!config_parse_fingerprint(node->value, fp))
		return config_invalid(ld, keypath, node, "a SHA-256 fingerprint: 64 "
		    "hex digits, with or without colons, such as the output of "
		    "\"openssl x509 -noout -fingerprint -sha256\"");
	sh->tls_fingerprint_count++;
	return 0;
}

/* smarthost.tls_fingerprint: one fingerprint, or a sequence (for a certificate change). */
static int
config_load_fingerprints(struct config_loader *ld, const struct config_node *value,
    struct config_smarthost *sh)
{
	char keypath[48];
	size_t i;

	if (value->type == CONFIG_NODE_SCALAR) {
		sh->tls_fingerprints = xcalloc(1, sizeof(*sh->tls_fingerprints));
		return config_load_fingerprint(ld, "smarthost.tls_fingerprint",
		    value, sh);
	}
	if (value->type != CONFIG_NODE_SEQUENCE || value->count == 0)
		return config_wrong_type(ld, "smarthost.tls_fingerprint", value,
		    "a SHA-256 fingerprint or a sequence of them");

	sh->tls_fingerprints = xcalloc(value->count, sizeof(*sh->tls_fingerprints));
	for (i = 0; i < value->count; i++) {
		snprintf(keypath, sizeof(keypath), "smarthost.tls_fingerprint[%zu]", i);
		if (config_load_fingerprint(ld, keypath, value->items[i], sh) == -1)
			return -1;
	}
	return 0;
}

static int
config_load_smarthost(struct config_loader *ld, const struct config_node *key,
    const struct config_node *value, struct config *cfg)
{
	struct config_smarthost *sh = &cfg->smarthost;
	struct config_section sec, timeouts;
	const struct config_node *node;

	config_section_init(&sec, "smarthost", key, value, config_smarthost_keys,
	    COUNT(config_smarthost_keys));
	sh->port = -1;
	if (config_section_load(ld, &sec, sh) == -1)
		return -1;

	if (sh->host == NULL)
		return config_missing(ld, &sec, "host",
		    "the smart host's name, such as mail.example.com");
	if (sh->port == -1)
		sh->port = config_default_port(sh->tls);
	if (config_check_credentials(ld, &sec, sh) == -1)
		return -1;
	if (config_check_smarthost_tls(ld, &sec, sh) == -1)
		return -1;

	config_section_init(&timeouts, "smarthost.timeouts",
	    config_section_key(&sec, "timeouts"), config_section_value(&sec, "timeouts"),
	    config_timeout_keys, COUNT(config_timeout_keys));
	if (config_section_load(ld, &timeouts, &sh->timeouts) == -1)
		return -1;

	node = config_section_value(&sec, "fallback");
	if (node != NULL && config_load_fallback(ld, node, sh) == -1)
		return -1;
	node = config_section_value(&sec, "auth_mechanisms");
	if (node != NULL && config_load_auth_mechanisms(ld, node, sh) == -1)
		return -1;
	node = config_section_value(&sec, "tls_fingerprint");
	if (node != NULL && config_load_fingerprints(ld, node, sh) == -1)
		return -1;
	return 0;
}

static int
config_load_retry(struct config_loader *ld, const struct config_node *key,
    const struct config_node *value, struct config *cfg)
{
	const struct config_node *initial, *max;
	struct config_section sec;
	char limit[32], expected[96];

	config_section_init(&sec, "retry", key, value, config_retry_keys,
	    COUNT(config_retry_keys));
	if (config_section_load(ld, &sec, &cfg->retry) == -1)
		return -1;

	if (cfg->retry.initial <= cfg->retry.max)
		return 0;

	/* Report retry.initial when the file sets it. Otherwise retry.max is below the default. */
	initial = config_section_value(&sec, "initial");
	max = config_section_value(&sec, "max");
	if (initial != NULL) {
		if (max != NULL)
			snprintf(limit, sizeof(limit), "%s", max->value);
		else
			duration_format(cfg->retry.max, limit, sizeof(limit));
		snprintf(expected, sizeof(expected), "at most retry.max (%s)", limit);
		return config_invalid(ld, "retry.initial", initial, expected);
	}
	duration_format(cfg->retry.initial, limit, sizeof(limit));
	snprintf(expected, sizeof(expected), "at least retry.initial (%s)", limit);
	return config_invalid(ld, "retry.max", max, expected);
}

static int
config_load_plain(struct config_loader *ld, const char *name,
    const struct config_node *key, const struct config_node *value,
    const struct config_key *keys, size_t key_count, void *base)
{
	struct config_section sec;

	config_section_init(&sec, name, key, value, keys, key_count);
	return config_section_load(ld, &sec, base);
}

static int
config_load_queue(struct config_loader *ld, const struct config_node *key,
    const struct config_node *value, struct config *cfg)
{
	return config_load_plain(ld, "queue", key, value, config_queue_keys,
	    COUNT(config_queue_keys), cfg);
}

static int
config_load_pickup(struct config_loader *ld, const struct config_node *key,
    const struct config_node *value, struct config *cfg)
{
	return config_load_plain(ld, "pickup", key, value, config_pickup_keys,
	    COUNT(config_pickup_keys), cfg);
}

static int
config_load_smtpd(struct config_loader *ld, const struct config_node *key,
    const struct config_node *value, struct config *cfg)
{
	struct config_section sec;

	config_section_init(&sec, "smtpd", key, value, config_smtpd_keys,
	    COUNT(config_smtpd_keys));
	if (config_section_load(ld, &sec, &cfg->smtpd) == -1)
		return -1;
	config_listen_record_set(&sec, &cfg->smtpd.set);
	return 0;
}

static int
config_load_control(struct config_loader *ld, const struct config_node *key,
    const struct config_node *value, struct config *cfg)
{
	return config_load_plain(ld, "control", key, value, config_control_keys,
	    COUNT(config_control_keys), cfg);
}

static int
config_load_log(struct config_loader *ld, const struct config_node *key,
    const struct config_node *value, struct config *cfg)
{
	return config_load_plain(ld, "log", key, value, config_log_keys,
	    COUNT(config_log_keys), cfg);
}

/*
 * The "dsn:" section: a mapping with mode, address and max_per_hour, or
 * the mode alone as a scalar ("dsn: off").
 */
static int
config_load_dsn(struct config_loader *ld, const struct config_node *key,
    const struct config_node *value, struct config *cfg)
{
	struct config_section sec;
	const struct config_node *node;
	int named;

	if (value != NULL && value->type == CONFIG_NODE_SCALAR) {
		if (config_load_name(ld, "dsn", value, config_dsn_modes,
		    "sender, off, or a mapping such as {mode: admin, address: "
		    "postmaster@example.com}", &named) == -1)
			return -1;
		if (named == DSN_MODE_ADMIN)
			return config_invalid(ld, "dsn", value, "a mapping with the "
			    "address for mode admin, such as {mode: admin, address: "
			    "postmaster@example.com}");
		cfg->dsn.mode = named;
		return 0;
	}

	config_section_init(&sec, "dsn", key, value, config_dsn_keys,
	    COUNT(config_dsn_keys));
	if (config_section_load(ld, &sec, &cfg->dsn) == -1)
		return -1;

	node = config_section_value(&sec, "address");
	if (node != NULL && !address_is_valid(cfg->dsn.address))
		return config_invalid(ld, "dsn.address", node,
		    "a mail address such as postmaster@example.com");
	if (cfg->dsn.mode == DSN_MODE_ADMIN && cfg->dsn.address == NULL)
		return config_missing(ld, &sec, "address",
		    "the address that receives the notifications in mode admin");
	return 0;
}

static const struct config_key config_top_keys[] = {
	SECTION_KEY("queue", config_load_queue),
	SECTION_KEY("listen", config_load_listen),
	SECTION_KEY("pickup", config_load_pickup),
	SECTION_KEY("smarthost", config_load_smarthost),
	SECTION_KEY("retry", config_load_retry),
	SECTION_KEY("smtpd", config_load_smtpd),
	SECTION_KEY("control", config_load_control),
	SECTION_KEY("log", config_load_log),
	SECTION_KEY("dsn", config_load_dsn),
	KEY("user", CONFIG_TEXT, struct config, user),
};

/*
 * Load the sections in file order, then the absent or empty ones, so
 * that a required key missing from them is reported last.
 */
static int
config_load_top(struct config_loader *ld, const struct config_node *root,
    struct config *cfg)
{
	struct config_section top;
	size_t k;

	config_section_init(&top, "", NULL, root, config_top_keys, COUNT(config_top_keys));
	if (config_section_load(ld, &top, cfg) == -1)
		return -1;

	for (k = 0; k < top.key_count; k++) {
		/* Plain top-level keys such as "user" have no loader and no default to fill. */
		if (top.found[k] != NULL || top.keys[k].load == NULL)
			continue;
		if (top.keys[k].load(ld, top.found_keys[k], NULL, cfg) == -1)
			return -1;
	}
	return 0;
}

/* --- Listener settings: merging "listen:" entries with "smtpd:" --- */

static const struct config_key *
config_find_key(const struct config_key *keys, size_t count, const char *name)
{
	size_t k;

	for (k = 0; k < count; k++)
		if (strcmp(keys[k].name, name) == 0)
			return &keys[k];
	return NULL;
}

/* Copy the value of KEY's kind at FROM into the empty field TO. */
static void
config_copy_value(const struct config_key *key, const void *from, void *to)
{
	const struct config_networks *nets;
	const char *text;

	switch (key->kind) {
	case CONFIG_TEXT:
	case CONFIG_PATH:
	case CONFIG_PRIVATE_FILE:
		text = *(char *const *)from;
		*(char **)to = text != NULL ? xstrdup(text) : NULL;
		break;
	case CONFIG_BOOL:
		*(bool *)to = *(const bool *)from;
		break;
	case CONFIG_INT:
		*(int *)to = *(const int *)from;
		break;
	case CONFIG_SIZE:
		*(uint64_t *)to = *(const uint64_t *)from;
		break;
	case CONFIG_SMTPD_AUTH:
		*(enum smtpd_auth *)to = *(const enum smtpd_auth *)from;
		break;
	case CONFIG_NETWORKS:
		nets = from;
		((struct config_networks *)to)->items = nets->count == 0 ? NULL :
		    xcalloc(nets->count, sizeof(*nets->items));
		if (nets->count > 0)
			memcpy(((struct config_networks *)to)->items, nets->items,
			    nets->count * sizeof(*nets->items));
		((struct config_networks *)to)->count = nets->count;
		break;
	default:
		break;
	}
}

void
config_listen_inherit(struct config_listen *entry, const struct config_smtpd *smtpd)
{
	uint64_t starttls = config_listen_key_bit("starttls");
	const struct config_key *key, *from;
	size_t k;

	for (k = 0; k < COUNT(config_listen_keys); k++) {
		key = &config_listen_keys[k];
		if (key->kind == CONFIG_SECTION || (entry->set & ((uint64_t)1 << k)) != 0)
			continue;
		from = config_find_key(config_smtpd_keys, COUNT(config_smtpd_keys),
		    key->name);
		if (from != NULL)
			config_copy_value(key, (const char *)smtpd + from->offset,
			    (char *)entry + key->offset);
	}

	/* STARTTLS is on by default wherever a certificate is configured. */
	if ((entry->set & starttls) == 0 && (smtpd->set & starttls) == 0)
		entry->starttls = entry->tls_cert != NULL;
}

void
config_listen_clear(struct config_listen *entry)
{
	if (entry == NULL)
		return;
	free(entry->host);
	free(entry->port);
	free(entry->text);
	free(entry->allow.items);
	free(entry->tls_cert);
	free(entry->tls_key);
	free(entry->users_file);
	memset(entry, 0, sizeof(*entry));
}

/*
 * Check the merged settings of listener INDEX. An entry that sets none of
 * its own is reported as "smtpd", where its settings come from.
 */
static int
config_check_listen(struct config_loader *ld, const struct config_listen *entry,
    size_t index)
{
	const char *auth = smtpd_auth_name(entry->auth);
	const struct config_node *where = NULL;
	struct config_node at;
	char keypath[32];

	memset(&at, 0, sizeof(at));
	if (entry->set != 0) {
		at.line = entry->line;
		at.column = entry->column;
		where = &at;
		snprintf(keypath, sizeof(keypath), "listen[%zu]", index);
	} else {
		snprintf(keypath, sizeof(keypath), "smtpd");
	}

	if ((entry->tls_cert == NULL) != (entry->tls_key == NULL))
		return config_error_at(ld, where, "%s: tls_cert and tls_key must be "
		    "set together, but only %s is set", keypath,
		    entry->tls_cert != NULL ? "tls_cert" : "tls_key");
	if (entry->starttls && entry->tls_cert == NULL)
		return config_error_at(ld, where, "%s: starttls needs tls_cert and "
		    "tls_key", keypath);
	if (entry->auth == SMTPD_AUTH_OFF)
		return 0;
	if (entry->users_file == NULL)
		return config_error_at(ld, where, "%s: auth %s needs users_file, the "
		    "file of user names and password hashes", keypath, auth);
	if (!entry->starttls && !entry->auth_plaintext_loopback)
		return config_error_at(ld, where, "%s: auth %s needs starttls, because "
		    "AUTH is offered only over TLS: set tls_cert and tls_key, or set "
		    "auth_plaintext_loopback: true to offer it to loopback clients "
		    "without TLS", keypath, auth);
	return 0;
}

/* Give every listener the "smtpd:" value of each key it leaves out, and check it. */
static int
config_listen_finish(struct config_loader *ld, struct config *cfg)
{
	uint64_t starttls = config_listen_key_bit("starttls");
	size_t i;

	if ((cfg->smtpd.set & starttls) == 0)
		cfg->smtpd.starttls = cfg->smtpd.tls_cert != NULL;
	for (i = 0; i < cfg->listen_count; i++) {
		config_listen_inherit(&cfg->listen[i], &cfg->smtpd);
		if (config_check_listen(ld, &cfg->listen[i], i) == -1)
			return -1;
	}
	return 0;
}

/* --- Defaults and the public interface --- */

#ifdef _WIN32
static const char *
config_program_data(void)
{
	const char *dir = getenv("ProgramData");

	return dir != NULL && dir[0] != '\0' ? dir : "C:\\ProgramData";
}
#endif

static void
config_set_defaults(struct config *cfg)
{
	struct config_timeouts *t = &cfg->smarthost.timeouts;

	cfg->smarthost.tls = TLS_MODE_STARTTLS;
	cfg->smarthost.tls_verify = true;
	cfg->smarthost.max_connections = 2;
	cfg->smarthost.max_messages_per_connection = 100;
	cfg->smarthost.on_uncertain = UNCERTAIN_RETRY;
	t->connect = 30;
	t->greeting = 5 * 60;
	t->command = 5 * 60;
	t->mail = 5 * 60;
	t->rcpt = 5 * 60;
	t->data_init = 2 * 60;
	t->data_block = 3 * 60;
	t->data_end = 10 * 60;
	t->session = 30 * 60;
	cfg->smarthost.tls_min_version = 12;
	cfg->smarthost.endpoint_cooldown = 5 * 60;
	cfg->smarthost.auth_mechanisms[0] = AUTH_MECHANISM_PLAIN;
	cfg->smarthost.auth_mechanisms[1] = AUTH_MECHANISM_LOGIN;
	cfg->smarthost.auth_mechanisms[2] = AUTH_MECHANISM_CRAM_MD5;
	cfg->smarthost.auth_mechanism_count = 3;
	cfg->dsn.mode = DSN_MODE_SENDER;
	cfg->dsn.max_per_hour = 100;

	cfg->retry.initial = 60;
	cfg->retry.max = 60 * 60;
	cfg->retry.max_age = 5 * 24 * 60 * 60;

	cfg->keep_sent = 30 * 24 * 60 * 60;
	cfg->keep_history = 400 * 24 * 60 * 60;

	cfg->smtpd.max_message_size = 50 * 1024 * 1024;
	cfg->smtpd.max_recipients = 1000;
	cfg->smtpd.max_connections = 100;
	cfg->smtpd.timeout = 5 * 60;
	cfg->smtpd.data_timeout = 10 * 60;
	cfg->smtpd.auth = SMTPD_AUTH_OFF;
	/* Half the sessions, as Postfix's per-client limit: one client cannot take them all. */
	cfg->smtpd.max_connections_per_client = 50;
	cfg->smtpd.smtputf8 = false;

	cfg->log_level = LOG_LEVEL_INFO;
}

/*
 * The control socket lives beside the queue: that directory already
 * belongs to the daemon's user with mode 0700, so only that user and
 * root can reach the socket.
 */
static char *
config_control_default(const char *queue_path)
{
#ifdef _WIN32
	(void)queue_path;
	return xstrdup("\\\\.\\pipe\\relayq");
#else
	const char *slash = strrchr(queue_path, '/');

	if (slash == NULL)
		return xstrdup("relayqd.sock");
	return xasprintf("%.*s/relayqd.sock", (int)(slash - queue_path), queue_path);
#endif
}

/* Defaults of allocated fields, set only where the file left them empty. */
static void
config_set_default_strings(struct config *cfg)
{
	if (cfg->queue_path == NULL)
#ifdef _WIN32
		cfg->queue_path = xasprintf("%s\\relayq\\queue.db", config_program_data());
#else
		cfg->queue_path = xstrdup("/var/lib/relayq/queue.db");
#endif
	if (cfg->control_socket == NULL)
		cfg->control_socket = config_control_default(cfg->queue_path);
	if (cfg->smtpd.allow.count == 0) {
		/* Loopback only, also when a listener binds a public address. */
		cfg->smtpd.allow.items = xcalloc(2, sizeof(*cfg->smtpd.allow.items));
		cfg->smtpd.allow.items[0].family = 4;
		cfg->smtpd.allow.items[0].addr[0] = 127;
		cfg->smtpd.allow.items[0].prefix = 8;
		cfg->smtpd.allow.items[1].family = 6;
		cfg->smtpd.allow.items[1].addr[15] = 1;
		cfg->smtpd.allow.items[1].prefix = 128;
		cfg->smtpd.allow.count = 2;
	}
	if (cfg->listen == NULL) {
		cfg->listen = xcalloc(1, sizeof(*cfg->listen));
		cfg->listen[0].host = xstrdup("127.0.0.1");
		cfg->listen[0].port = xstrdup("25");
		cfg->listen[0].text = xstrdup("127.0.0.1:25");
		cfg->listen_count = 1;
	}
}

/* The config file's directory, made absolute when the working directory is known. */
static char *
config_base_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir, *cwd, *joined;

#ifdef _WIN32
	const char *backslash = strrchr(path, '\\');

	if (backslash != NULL && (slash == NULL || backslash > slash))
		slash = backslash;
#endif
	if (slash == NULL)
		dir = xstrdup(".");
	else if (slash == path)
		dir = xstrdup("/");
	else
		dir = xstrndup(path, slash - path);

	if (compat_path_is_absolute(dir))
		return dir;
	cwd = getcwd(NULL, 0);
	if (cwd == NULL)
		return dir;
	if (strcmp(dir, ".") == 0)
		joined = xstrdup(cwd);
	else
		joined = xasprintf("%s/%s", cwd, dir);
	free(cwd);
	free(dir);
	return joined;
}

int
config_load(const char *path, struct config **out, char **errstr)
{
	struct config_reader reader;
	struct config_loader loader;
	struct config_node *root = NULL;
	struct config *cfg;
	char *text = NULL;
	size_t len = 0;
	int rc;

	if (config_read_file(path, &text, &len, errstr) == -1)
		return -1;

	memset(&reader, 0, sizeof(reader));
	reader.path = path;
	reader.text = text;
	reader.len = len;
	reader.errstr = errstr;
	if (!yaml_parser_initialize(&reader.parser)) {
		free(text);
		return set_error(errstr, "%s: cannot initialize the YAML parser", path);
	}
	yaml_parser_set_input_string(&reader.parser, (const unsigned char *)text, len);
	rc = config_parse_document(&reader, &root);
	yaml_parser_delete(&reader.parser);
	free(text);
	if (rc == -1)
		return -1;

	/* An empty file or a lone "---" is an empty mapping. */
	if (root != NULL && root->type == CONFIG_NODE_SCALAR && root->is_null) {
		config_node_free(root);
		root = NULL;
	}

	cfg = xcalloc(1, sizeof(*cfg));
	cfg->refs = 1;
	cfg->path = xstrdup(path);
	config_set_defaults(cfg);
	loader.path = path;
	loader.base_dir = config_base_dir(path);
	loader.errstr = errstr;
	rc = config_load_top(&loader, root, cfg);
	if (rc == 0) {
		config_set_default_strings(cfg);
		rc = config_listen_finish(&loader, cfg);
	}
	free(loader.base_dir);
	config_node_free(root);
	if (rc == -1) {
		config_free(cfg);
		return -1;
	}

	*out = cfg;
	return 0;
}

void
config_free(struct config *config)
{
	size_t i;

	if (config == NULL)
		return;
	if (--config->refs > 0)
		return;
	for (i = 0; i < config->listen_count; i++)
		config_listen_clear(&config->listen[i]);
	free(config->listen);
	for (i = 0; i < config->smarthost.fallback_count; i++)
		free(config->smarthost.fallback[i].host);
	free(config->smarthost.fallback);
	free(config->smarthost.host);
	free(config->smarthost.ca_file);
	free(config->smarthost.username);
	free(config->smarthost.password_file);
	free(config->smarthost.password_command);
	free(config->smarthost.password_env);
	free(config->smarthost.tls_ciphers);
	free(config->smarthost.tls_ciphersuites);
	free(config->smarthost.ca_path);
	free(config->smarthost.tls_fingerprints);
	free(config->smarthost.tls_client_cert);
	free(config->smarthost.tls_client_key);
	free(config->dsn.address);
	free(config->smarthost.helo_name);
	free(config->smtpd.hostname);
	free(config->smtpd.allow.items);
	free(config->smtpd.tls_cert);
	free(config->smtpd.tls_key);
	free(config->smtpd.users_file);
	free(config->pickup_path);
	free(config->control_socket);
	free(config->queue_path);
	free(config->user);
	free(config->path);
	free(config);
}

struct config *
config_ref(struct config *config)
{
	config->refs++;
	return config;
}

const char *
config_default_path(void)
{
	const char *env = getenv("RELAYQ_CONFIG");

	if (env != NULL && env[0] != '\0')
		return env;
#ifdef _WIN32
	static char path[1024];

	snprintf(path, sizeof(path), "%s\\relayq\\relayq.yaml", config_program_data());
	return path;
#else
	return "/etc/relayq/relayq.yaml";
#endif
}

const char *
auth_mechanism_name(enum auth_mechanism mechanism)
{
	const struct config_name *n;

	for (n = config_auth_mechanisms; n->name != NULL; n++)
		if (n->value == (int)mechanism)
			return n->name;
	return "unknown";
}

const char *
smtpd_auth_name(enum smtpd_auth mode)
{
	const struct config_name *n;

	for (n = config_smtpd_auth_modes; n->name != NULL; n++)
		if (n->value == (int)mode)
			return n->name;
	return "unknown";
}

const char *
tls_mode_name(enum tls_mode mode)
{
	const struct config_name *n;

	for (n = config_tls_modes; n->name != NULL; n++)
		if (n->value == (int)mode)
			return n->name;
	return "unknown";
}
