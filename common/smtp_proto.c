/*
 * SMTP protocol text: client command lines (server side), server replies
 * (client side) and EHLO keywords. Pure functions, fed by the sessions.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "smtp_proto.h"
#include "util.h"

static const struct {
	const char *name;
	enum smtp_verb verb;
} smtp_verbs[] = {
	{ "HELO", SMTP_VERB_HELO },
	{ "EHLO", SMTP_VERB_EHLO },
	{ "MAIL", SMTP_VERB_MAIL },
	{ "RCPT", SMTP_VERB_RCPT },
	{ "DATA", SMTP_VERB_DATA },
	{ "RSET", SMTP_VERB_RSET },
	{ "NOOP", SMTP_VERB_NOOP },
	{ "QUIT", SMTP_VERB_QUIT },
	{ "HELP", SMTP_VERB_HELP },
	{ "VRFY", SMTP_VERB_VRFY },
	{ "EXPN", SMTP_VERB_EXPN },
	{ "STARTTLS", SMTP_VERB_STARTTLS },
	{ "AUTH", SMTP_VERB_AUTH },
	{ "BDAT", SMTP_VERB_BDAT },
};

void
smtp_command_parse(const char *line, struct smtp_command *cmd)
{
	size_t len = 0, i;

	while (line[len] != '\0' && line[len] != ' ')
		len++;

	cmd->verb = SMTP_VERB_UNKNOWN;
	cmd->arg = line[len] == ' ' ? line + len + 1 : line + len;
	for (i = 0; i < sizeof(smtp_verbs) / sizeof(smtp_verbs[0]); i++) {
		if (strlen(smtp_verbs[i].name) == len &&
		    strncasecmp(line, smtp_verbs[i].name, len) == 0) {
			cmd->verb = smtp_verbs[i].verb;
			break;
		}
	}
}

bool
smtp_command_has_control(const char *line, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return true;
	}
	return false;
}

void
smtp_path_command_clear(struct smtp_path_command *cmd)
{
	free(cmd->address);
	memset(cmd, 0, sizeof(*cmd));
}

/* Handle one ESMTP parameter of MAIL FROM ("SIZE=100", "BODY=8BITMIME"). */
static int
smtp_mail_parameter(const char *param, size_t len, struct smtp_path_command *out,
    char **errstr)
{
	char *end;

	if (len > 5 && strncasecmp(param, "SIZE=", 5) == 0) {
		errno = 0;
		out->size = strtoull(param + 5, &end, 10);
		if (errno != 0 || end != param + len || !isdigit((unsigned char)param[5]))
			return set_error(errstr, "501 5.5.4 Invalid SIZE parameter");
		return 0;
	}
	if (len == 13 && strncasecmp(param, "BODY=8BITMIME", 13) == 0) {
		out->body_8bitmime = true;
		return 0;
	}
	if (len == 9 && strncasecmp(param, "BODY=7BIT", 9) == 0)
		return 0;
	if (len == 8 && strncasecmp(param, "SMTPUTF8", 8) == 0) {
		out->smtputf8 = true;
		return 0;
	}
	/*
	 * AUTH=<mailbox> names who submitted the message (RFC 4954 section
	 * 5). relayq does not pass it on, which the RFC allows.
	 */
	if (len > 5 && strncasecmp(param, "AUTH=", 5) == 0)
		return 0;
	return set_error(errstr, "555 5.5.4 Unsupported MAIL parameter");
}

int
smtp_path_command_parse(const char *arg, bool is_mail,
    struct smtp_path_command *out, char **errstr)
{
	const char *prefix = is_mail ? "FROM:" : "TO:";
	size_t prefix_len = strlen(prefix);
	const char *rest, *p;
	char *reason = NULL;

	memset(out, 0, sizeof(*out));
	if (strncasecmp(arg, prefix, prefix_len) != 0)
		return set_error(errstr, is_mail ?
		    "501 5.5.4 Syntax: MAIL FROM:<address>" :
		    "501 5.5.4 Syntax: RCPT TO:<address>");

	/* Some clients put a space after the colon; RFC 5321 does not, but it is harmless. */
	p = arg + prefix_len;
	if (*p == ' ')
		p++;
	if (address_parse_path(p, is_mail, &out->address, &rest, &reason) == -1) {
		set_error(errstr, "%s %s", is_mail ? "501 5.1.7" : "501 5.1.3",
		    reason != NULL ? reason : "Bad address syntax");
		free(reason);
		return -1;
	}

	while (*rest != '\0') {
		size_t len;

		if (*rest != ' ') {
			smtp_path_command_clear(out);
			return set_error(errstr, "501 5.5.4 Syntax error after the address");
		}
		while (*rest == ' ')
			rest++;
		len = strcspn(rest, " ");
		if (len == 0)
			break;
		if (!is_mail) {
			smtp_path_command_clear(out);
			return set_error(errstr, "555 5.5.4 Unsupported RCPT parameter");
		}
		if (smtp_mail_parameter(rest, len, out, errstr) == -1) {
			smtp_path_command_clear(out);
			return -1;
		}
		rest += len;
	}
	return 0;
}

void
smtp_reply_parser_init(struct smtp_reply_parser *p)
{
	memset(p, 0, sizeof(*p));
}

void
smtp_reply_parser_clear(struct smtp_reply_parser *p)
{
	free(p->text);
	smtp_reply_parser_init(p);
}

void
smtp_reply_clear(struct smtp_reply *reply)
{
	free(reply->text);
	memset(reply, 0, sizeof(*reply));
}

/* Length of an enhanced status code ("2.1.5 ") at the start of S, or 0 (RFC 3463). */
static size_t
smtp_status_length(const char *s, size_t len, char klass)
{
	size_t i = 0, part, digits;

	if (len < 5 || s[0] != klass || s[1] != '.')
		return 0;
	i = 2;
	for (part = 0; part < 2; part++) {
		digits = 0;
		while (i < len && isdigit((unsigned char)s[i]) && digits < 3) {
			i++;
			digits++;
		}
		if (digits == 0)
			return 0;
		if (part == 0) {
			if (i >= len || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && s[i] != ' ')
		return 0;
	return i;
}

static void
smtp_reply_append_text(struct smtp_reply_parser *p, const char *text, size_t len)
{
	size_t extra = len + (p->lines > 0 ? 1 : 0);

	p->text = xrealloc(p->text, p->text_len + extra + 1);
	if (p->lines > 0)
		p->text[p->text_len++] = '\n';
	memcpy(p->text + p->text_len, text, len);
	p->text_len += len;
	p->text[p->text_len] = '\0';
}

enum smtp_reply_feed
smtp_reply_parser_feed(struct smtp_reply_parser *p, const char *line, size_t len)
{
	int code;
	size_t status_len;
	const char *text;
	size_t text_len;

	if (len < 3 || !isdigit((unsigned char)line[0]) ||
	    !isdigit((unsigned char)line[1]) || !isdigit((unsigned char)line[2]))
		return SMTP_REPLY_INVALID;
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return SMTP_REPLY_INVALID;

	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (code < 200 || code > 599)
		return SMTP_REPLY_INVALID;
	if (p->lines > 0 && code != p->code)
		return SMTP_REPLY_INVALID;
	p->code = code;

	text = len > 4 ? line + 4 : "";
	text_len = len > 4 ? len - 4 : 0;
	status_len = smtp_status_length(text, text_len, line[0]);
	if (status_len > 0) {
		if (p->lines == 0)
			memcpy(p->status, text, status_len < sizeof(p->status) ?
			    status_len : sizeof(p->status) - 1);
		text += status_len;
		text_len -= status_len;
		if (text_len > 0 && *text == ' ') {
			text++;
			text_len--;
		}
	}
	smtp_reply_append_text(p, text, text_len);
	p->lines++;

	return (len > 3 && line[3] == '-') ? SMTP_REPLY_MORE : SMTP_REPLY_DONE;
}

void
smtp_reply_parser_take(struct smtp_reply_parser *p, struct smtp_reply *out)
{
	memset(out, 0, sizeof(*out));
	out->code = p->code;
	memcpy(out->status, p->status, sizeof(out->status));
	out->text = p->text != NULL ? p->text : xstrdup("");
	p->text = NULL;
	smtp_reply_parser_init(p);
}

char *
smtp_reply_text_line(const struct smtp_reply *reply)
{
	const char *text = reply->text != NULL ? reply->text : "";
	size_t extra = 0, i, j = 0;
	char *out;

	for (i = 0; text[i] != '\0'; i++)
		if (text[i] == '\n')
			extra += 2;
	out = xmalloc(i + extra + 1);
	for (i = 0; text[i] != '\0'; i++) {
		if (text[i] == '\n') {
			memcpy(out + j, " / ", 3);
			j += 3;
		} else {
			out[j++] = text[i];
		}
	}
	out[j] = '\0';
	return out;
}

char *
smtp_reply_format(const struct smtp_reply *reply)
{
	char *text = smtp_reply_text_line(reply), *out;

	out = xasprintf("%d%s%s %s", reply->code, reply->status[0] ? " " : "",
	    reply->status, text);
	free(text);
	return out;
}

int
smtp_reply_class(int code)
{
	if (code < 200 || code > 599)
		return 0;
	return code / 100;
}

const char *
smtp_ehlo_find(const char *text, const char *keyword, size_t *param_len)
{
	size_t klen = strlen(keyword);
	const char *line = strchr(text, '\n');

	/* The first line is the greeting text, not a keyword. */
	while (line != NULL) {
		const char *start = line + 1, *end = strchr(start, '\n');
		size_t len = end != NULL ? (size_t)(end - start) : strlen(start);

		if (len >= klen && strncasecmp(start, keyword, klen) == 0 &&
		    (len == klen || start[klen] == ' ' || start[klen] == '=')) {
			const char *param = start + klen;

			if (param < start + len)
				param++;
			if (param_len != NULL)
				*param_len = (size_t)(start + len - param);
			return param;
		}
		line = end;
	}
	return NULL;
}
