/*
 * SMTP protocol text: parsing client commands (server side) and server
 * replies (client side), and enhanced status codes (RFC 3463).
 */
#ifndef RELAYQ_SMTP_PROTO_H
#define RELAYQ_SMTP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Maximum command line accepted, CRLF included; RFC 5321 4.5.3.1.4 requires at least 512. */
#define SMTP_COMMAND_LINE_MAX 2048
/* Longest reply line accepted from a server, CRLF included. */
#define SMTP_REPLY_LINE_MAX 4096

enum smtp_verb {
	SMTP_VERB_UNKNOWN,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_HELP,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
	SMTP_VERB_BDAT,
};

/* A parsed command line. Strings point into the caller's line buffer. */
struct smtp_command {
	enum smtp_verb verb;
	const char *arg;	/* text after the verb and one space, or "" */
};

/* MAIL FROM / RCPT TO with their parameters (RFC 5321 4.1.1.2, 4.1.1.3). */
struct smtp_path_command {
	char *address;		/* allocated, without brackets; "" for <> */
	uint64_t size;		/* SIZE= value, 0 when absent */
	bool body_8bitmime;	/* BODY=8BITMIME */
	bool smtputf8;		/* SMTPUTF8 */
};

/*
 * Split LINE (without CRLF) into verb and argument. The verb is matched
 * case-insensitively. Never fails: unknown verbs give SMTP_VERB_UNKNOWN.
 */
void smtp_command_parse(const char *line, struct smtp_command *cmd);

/*
 * True when the command LINE (LEN bytes, CRLF removed) contains a control
 * character other than tab, which no SMTP command may carry.
 */
bool smtp_command_has_control(const char *line, size_t len);

/*
 * Parse the argument of MAIL ("FROM:<a@b> SIZE=10") or RCPT ("TO:<a@b>").
 * IS_MAIL selects which. Returns 0, or -1 with an SMTP reply text
 * ("501 5.1.7 Bad sender address syntax") in *ERRSTR.
 */
int smtp_path_command_parse(const char *arg, bool is_mail,
    struct smtp_path_command *out, char **errstr);
void smtp_path_command_clear(struct smtp_path_command *cmd);

/* A complete (possibly multi-line) server reply. */
struct smtp_reply {
	int code;		/* 200..599 */
	char status[16];	/* enhanced status "2.0.0", or "" when absent */
	char *text;		/* lines joined with "\n", status stripped; allocated */
};

/* Incremental reply parser: feed it lines until it returns SMTP_REPLY_DONE. */
struct smtp_reply_parser {
	int code;
	size_t lines;
	char status[16];
	char *text;
	size_t text_len;
};

enum smtp_reply_feed {
	SMTP_REPLY_MORE,	/* a continuation line ("250-"), feed the next line */
	SMTP_REPLY_DONE,	/* the last line ("250 "); take it with smtp_reply_parser_take */
	SMTP_REPLY_INVALID,	/* not a reply line, or the code changed between lines */
};

void smtp_reply_parser_init(struct smtp_reply_parser *p);
/* Feed one line without its CRLF. */
enum smtp_reply_feed smtp_reply_parser_feed(struct smtp_reply_parser *p,
    const char *line, size_t len);
/* Move the finished reply into OUT and reset the parser. */
void smtp_reply_parser_take(struct smtp_reply_parser *p, struct smtp_reply *out);
void smtp_reply_parser_clear(struct smtp_reply_parser *p);
void smtp_reply_clear(struct smtp_reply *reply);

/*
 * Format REPLY for logs and the queue: "550 5.1.1 text, joined by ' / '".
 * Returns an allocated string.
 */
char *smtp_reply_format(const struct smtp_reply *reply);

/* The reply's text alone on one line, lines joined by " / ". Allocated. */
char *smtp_reply_text_line(const struct smtp_reply *reply);

/* Class of a reply code: 2, 3, 4 or 5; 0 for an invalid code. */
int smtp_reply_class(int code);

/*
 * Find the EHLO keyword KEYWORD in an EHLO reply TEXT (lines separated by
 * "\n", greeting line first). Returns the parameters after the keyword
 * ("" when none) or NULL when the keyword is absent. Points into TEXT.
 */
const char *smtp_ehlo_find(const char *text, const char *keyword, size_t *param_len);

#endif
