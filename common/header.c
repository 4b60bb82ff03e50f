/*
 * Header sections and address lists (RFC 5322 sections 2.2, 3.2.2 and
 * 3.4, with the obsolete forms of section 4.4 that old mailers still
 * write: empty list elements, source routes, CFWS around dots). A lexer
 * turns a field value into atoms, quoted strings, domain literals and
 * specials, and skips whitespace, folds and comments. The parser reads
 * addresses, groups and mailboxes from those tokens. Addresses leave
 * here in RFC 5321 form, checked by address_parse_path().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "header.h"
#include "log.h"
#include "util.h"

/* Maximum length of address text quoted in an error message. */
#define HEADER_ERROR_TEXT_MAX 80

const char *const header_submission_drop[] = {
	"Bcc", "Resent-Bcc", "Return-Path", NULL,
};

static const char *const header_recipient_fields[] = {
	"To", "Cc", "Bcc", NULL,
};

static const char *const header_resent_fields[] = {
	"Resent-To", "Resent-Cc", "Resent-Bcc", NULL,
};

/* --- header section --- */

/* Length of the field name when LINE starts a field ("Name:"), else 0. */
static size_t
header_name_length(const char *line, size_t len)
{
	size_t i;

	/* RFC 5322 3.6.8: ftext is printable ASCII except the colon. */
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c == ':')
			return i;
		if (c < 33 || c > 126)
			return 0;
	}
	return 0;
}

static bool
header_line_is_empty(const char *line, size_t len)
{
	return (len == 1 && line[0] == '\n') ||
	    (len == 2 && line[0] == '\r' && line[1] == '\n');
}

static bool
header_line_is_fold(const char *line, size_t len)
{
	return len > 0 && (line[0] == ' ' || line[0] == '\t');
}

/* Offset just past the line that starts at POS: after its LF, or LEN. */
static size_t
header_line_end(const char *text, size_t len, size_t pos)
{
	const char *nl = memchr(text + pos, '\n', len - pos);

	return nl != NULL ? (size_t)(nl - text) + 1 : len;
}

int
header_section_end(const char *text, size_t len, bool at_eof, size_t *end)
{
	size_t pos = 0, next;

	while (pos < len) {
		next = header_line_end(text, len, pos);
		if (text[next - 1] != '\n' && !at_eof)
			return 0;

		if (header_line_is_empty(text + pos, next - pos)) {
			*end = next;
			return 1;
		}
		/* A fold continues the field above it, so the first line cannot be one. */
		if (!(pos > 0 && header_line_is_fold(text + pos, next - pos)) &&
		    header_name_length(text + pos, next - pos) == 0) {
			*end = pos;
			return 1;
		}
		pos = next;
	}
	if (!at_eof)
		return 0;
	*end = len;
	return 1;
}

/* Length of the line end at the end of TEXT (LEN bytes): 2 for CRLF, 1 for LF, else 0. */
static size_t
header_eol_length(const char *text, size_t len)
{
	if (len >= 2 && text[len - 2] == '\r' && text[len - 1] == '\n')
		return 2;
	if (len >= 1 && text[len - 1] == '\n')
		return 1;
	return 0;
}

int
header_field_next(const char *section, size_t len, size_t *pos,
    struct header_field *field)
{
	size_t start = *pos, end, name_len;

	if (start >= len)
		return 0;
	end = header_line_end(section, len, start);
	if (header_line_is_empty(section + start, end - start))
		return 0;

	/* The field goes on as long as the following lines are folds. */
	while (end < len) {
		size_t next = header_line_end(section, len, end);

		if (!header_line_is_fold(section + end, next - end))
			break;
		end = next;
	}

	memset(field, 0, sizeof(*field));
	field->offset = start;
	field->length = end - start;
	name_len = header_name_length(section + start, end - start);
	if (name_len > 0) {
		field->name = section + start;
		field->name_len = name_len;
		field->value = section + start + name_len + 1;
		field->value_len = end - start - name_len - 1;
		field->value_len -= header_eol_length(field->value, field->value_len);
	}
	*pos = end;
	return 1;
}

bool
header_field_is(const struct header_field *field, const char *name)
{
	return field->name != NULL && field->name_len == strlen(name) &&
	    strncasecmp(field->name, name, field->name_len) == 0;
}

static bool
header_field_in(const struct header_field *field, const char *const *names)
{
	for (; *names != NULL; names++)
		if (header_field_is(field, *names))
			return true;
	return false;
}

/* Find the first field named NAME; returns 1 with *FIELD set, or 0. */
static int
header_section_find(const char *section, size_t len, const char *name,
    struct header_field *field)
{
	size_t pos = 0;

	while (header_field_next(section, len, &pos, field) == 1)
		if (header_field_is(field, name))
			return 1;
	return 0;
}

bool
header_section_has(const char *section, size_t len, const char *name)
{
	struct header_field field;

	return header_section_find(section, len, name, &field) == 1;
}

char *
header_section_remove(const char *section, size_t len, const char *const *drop,
    size_t *out_len)
{
	struct header_field field;
	char *out = xmalloc(len + 5);
	size_t pos = 0, n = 0;

	while (header_field_next(section, len, &pos, &field) == 1) {
		if (header_field_in(&field, drop))
			continue;
		memcpy(out + n, section + field.offset, field.length);
		n += field.length;
	}
	/* The empty line that ends the section, when there is one. */
	memcpy(out + n, section + pos, len - pos);
	n += len - pos;

	/*
	 * Without its empty line the section would run into the body (or a
	 * last line without a line end into the next field), so add them.
	 */
	if (n > 0 && out[n - 1] != '\n') {
		memcpy(out + n, "\r\n", 2);
		n += 2;
	}
	if (pos == len) {
		memcpy(out + n, "\r\n", 2);
		n += 2;
	}
	out[n] = '\0';
	*out_len = n;
	return out;
}

/* --- address lists: lexer --- */

enum header_token_type {
	HEADER_TOKEN_END,
	HEADER_TOKEN_ATOM,	/* a run of atext; octets above 127 count as atext (RFC 6532) */
	HEADER_TOKEN_QUOTED,	/* quoted-string: the text between the quotes, still escaped */
	HEADER_TOKEN_LITERAL,	/* domain-literal: the text between the brackets */
	HEADER_TOKEN_SPECIAL,	/* one of < > @ , ; : . */
};

struct header_token {
	enum header_token_type type;
	const char *text;
	size_t len;
};

struct header_parser {
	const char *p;
	const char *end;
	struct header_token peeked;
	bool has_peeked;
	const char *default_domain;
	struct header_addresses *list;
	char **errstr;
};

static bool
header_is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c >= 0x80 || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Describe the octet C for an error message. */
static const char *
header_octet_name(unsigned char c, char *buf, size_t size)
{
	if (c > 32 && c < 127)
		snprintf(buf, size, "\"%c\"", c);
	else
		snprintf(buf, size, "0x%02X", c);
	return buf;
}

/* Skip a comment starting at its "(", nested comments and quoted pairs included. */
static int
header_skip_comment(struct header_parser *hp)
{
	int depth = 0;

	for (; hp->p < hp->end; hp->p++) {
		char c = *hp->p;

		if (c == '\\' && hp->p + 1 < hp->end)
			hp->p++;
		else if (c == '(')
			depth++;
		else if (c == ')' && --depth == 0) {
			hp->p++;
			return 0;
		}
	}
	return set_error(hp->errstr, "unterminated comment");
}

/* Skip CFWS: spaces, tabs, line ends of folds, and comments. */
static int
header_skip_cfws(struct header_parser *hp)
{
	while (hp->p < hp->end) {
		char c = *hp->p;

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			hp->p++;
		else if (c == '(') {
			if (header_skip_comment(hp) == -1)
				return -1;
		} else
			break;
	}
	return 0;
}

/* Scan a quoted string or domain literal from its opening CLOSE's partner to CLOSE. */
static int
header_scan_delimited(struct header_parser *hp, char close,
    struct header_token *tok)
{
	const char *start = ++hp->p;

	for (; hp->p < hp->end; hp->p++) {
		if (*hp->p == '\\' && hp->p + 1 < hp->end) {
			hp->p++;
			continue;
		}
		if (*hp->p == close) {
			tok->text = start;
			tok->len = (size_t)(hp->p - start);
			hp->p++;
			return 0;
		}
		if (*hp->p == '\0' || (close == ']' && *hp->p == '['))
			break;
	}
	return set_error(hp->errstr, close == '"' ? "unterminated quoted string" :
	    "unterminated domain literal");
}

static int
header_scan(struct header_parser *hp, struct header_token *tok)
{
	unsigned char c;
	char name[8];

	memset(tok, 0, sizeof(*tok));
	if (header_skip_cfws(hp) == -1)
		return -1;
	if (hp->p == hp->end) {
		tok->type = HEADER_TOKEN_END;
		return 0;
	}

	c = (unsigned char)*hp->p;
	if (header_is_atext(c)) {
		tok->type = HEADER_TOKEN_ATOM;
		tok->text = hp->p;
		while (hp->p < hp->end && header_is_atext((unsigned char)*hp->p))
			hp->p++;
		tok->len = (size_t)(hp->p - tok->text);
		return 0;
	}
	if (c == '"') {
		tok->type = HEADER_TOKEN_QUOTED;
		return header_scan_delimited(hp, '"', tok);
	}
	if (c == '[') {
		tok->type = HEADER_TOKEN_LITERAL;
		return header_scan_delimited(hp, ']', tok);
	}
	if (c != '\0' && strchr("<>@,;:.", c) != NULL) {
		tok->type = HEADER_TOKEN_SPECIAL;
		tok->text = hp->p++;
		tok->len = 1;
		return 0;
	}
	return set_error(hp->errstr, "invalid character %s",
	    header_octet_name(c, name, sizeof(name)));
}

static int
header_peek(struct header_parser *hp, struct header_token *tok)
{
	if (!hp->has_peeked) {
		if (header_scan(hp, &hp->peeked) == -1)
			return -1;
		hp->has_peeked = true;
	}
	*tok = hp->peeked;
	return 0;
}

static void
header_consume(struct header_parser *hp)
{
	hp->has_peeked = false;
}

static bool
header_token_is(const struct header_token *tok, char special)
{
	return tok->type == HEADER_TOKEN_SPECIAL && tok->text[0] == special;
}

/* Describe TOK for an error message. */
static char *
header_token_describe(const struct header_token *tok)
{
	char *text, *out;

	if (tok->type == HEADER_TOKEN_END)
		return xstrdup("the end of the field");
	text = log_escape(tok->text, tok->len > 40 ? 40 : tok->len);
	out = xasprintf("\"%s\"", text);
	free(text);
	return out;
}

static int
header_unexpected(struct header_parser *hp, const struct header_token *tok,
    const char *expected)
{
	char *found = header_token_describe(tok);

	set_error(hp->errstr, "expected %s, found %s", expected, found);
	free(found);
	return -1;
}

/* --- address lists: building addresses --- */

/* Words of a phrase or local part: atoms, quoted strings and dots. */
struct header_words {
	struct header_token *items;
	size_t count;
};

static void
header_words_clear(struct header_words *words)
{
	free(words->items);
	words->items = NULL;
	words->count = 0;
}

static int
header_collect_words(struct header_parser *hp, struct header_words *words)
{
	struct header_token tok;

	for (;;) {
		if (header_peek(hp, &tok) == -1)
			return -1;
		if (tok.type != HEADER_TOKEN_ATOM && tok.type != HEADER_TOKEN_QUOTED &&
		    !header_token_is(&tok, '.'))
			return 0;
		words->items = xrealloc(words->items,
		    (words->count + 1) * sizeof(*words->items));
		words->items[words->count++] = tok;
		header_consume(hp);
	}
}

/* Append the content of a quoted string: quoted pairs resolved, fold line ends removed. */
static void
header_append_unquoted(char *out, size_t *n, const char *text, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (text[i] == '\\' && i + 1 < len)
			out[(*n)++] = text[++i];
		else if (text[i] != '\r' && text[i] != '\n')
			out[(*n)++] = text[i];
	}
}

static bool
header_is_dot_atom(const char *text, size_t len)
{
	size_t i;

	if (len == 0 || text[0] == '.' || text[len - 1] == '.')
		return false;
	for (i = 0; i < len; i++) {
		if (text[i] == '.' && i + 1 < len && text[i + 1] == '.')
			return false;
		if (text[i] != '.' && !header_is_atext((unsigned char)text[i]))
			return false;
	}
	return true;
}

/*
 * Turn the words of a local part into its RFC 5321 form: a dot-string
 * where possible, else one quoted string. The obsolete form that mixes
 * atoms and quoted strings ("john".doe) becomes one quoted string.
 */
static int
header_local_part(struct header_parser *hp, const struct header_words *words,
    char **local)
{
	char *plain, *out;
	size_t total = 0, n = 0, i, j;

	for (i = 0; i < words->count; i++) {
		bool dot = header_token_is(&words->items[i], '.');

		/* Words and dots alternate, starting and ending with a word. */
		if (dot != (i % 2 == 1) || (dot && i + 1 == words->count))
			return set_error(hp->errstr, "invalid local part: misplaced \".\" "
			    "or words separated only by spaces");
		total += words->items[i].len;
	}

	plain = xmalloc(total + 1);
	for (i = 0; i < words->count; i++) {
		const struct header_token *w = &words->items[i];

		if (w->type == HEADER_TOKEN_QUOTED)
			header_append_unquoted(plain, &n, w->text, w->len);
		else {
			memcpy(plain + n, w->text, w->len);
			n += w->len;
		}
	}
	plain[n] = '\0';
	if (header_is_dot_atom(plain, n)) {
		*local = plain;
		return 0;
	}

	/* RFC 5321 4.1.2: quote the whole local part, escaping '"' and '\'. */
	out = xmalloc(n * 2 + 3);
	j = 0;
	out[j++] = '"';
	for (i = 0; i < n; i++) {
		if (plain[i] == '"' || plain[i] == '\\')
			out[j++] = '\\';
		out[j++] = plain[i];
	}
	out[j++] = '"';
	out[j] = '\0';
	free(plain);
	*local = out;
	return 0;
}

/* Read a domain after "@": dot-separated atoms or a domain literal. */
static int
header_domain(struct header_parser *hp, char **domain)
{
	struct header_token tok;
	char *out = NULL;
	size_t n = 0, i;

	if (header_peek(hp, &tok) == -1)
		return -1;
	if (tok.type == HEADER_TOKEN_LITERAL) {
		header_consume(hp);
		/* FWS inside a literal (RFC 5322 3.4.1) is not part of the address. */
		out = xmalloc(tok.len + 3);
		out[n++] = '[';
		for (i = 0; i < tok.len; i++)
			if (tok.text[i] != ' ' && tok.text[i] != '\t' &&
			    tok.text[i] != '\r' && tok.text[i] != '\n')
				out[n++] = tok.text[i];
		out[n++] = ']';
		out[n] = '\0';
		*domain = out;
		return 0;
	}

	for (;;) {
		if (header_peek(hp, &tok) == -1)
			goto fail;
		if (tok.type != HEADER_TOKEN_ATOM) {
			header_unexpected(hp, &tok, "a domain");
			goto fail;
		}
		header_consume(hp);
		out = xrealloc(out, n + tok.len + 2);
		memcpy(out + n, tok.text, tok.len);
		n += tok.len;
		out[n] = '\0';

		if (header_peek(hp, &tok) == -1)
			goto fail;
		if (!header_token_is(&tok, '.'))
			break;
		header_consume(hp);
		out[n++] = '.';
	}
	*domain = out;
	return 0;

fail:
	free(out);
	return -1;
}

/* Check LOCAL@DOMAIN as an SMTP mailbox and append it to the list. */
static int
header_add_mailbox(struct header_parser *hp, const char *local,
    const char *domain)
{
	char *address, *path, *checked = NULL, *reason = NULL, *text;
	const char *rest = NULL;
	int rc = 0;

	if (domain == NULL)
		domain = hp->default_domain;
	if (domain == NULL) {
		text = log_escape(local, strlen(local));
		set_error(hp->errstr, "address \"%.*s\" has no domain", HEADER_ERROR_TEXT_MAX,
		    text);
		free(text);
		return -1;
	}

	address = xasprintf("%s@%s", local, domain);
	path = xasprintf("<%s>", address);
	if (address_parse_path(path, false, &checked, &rest, &reason) == -1 ||
	    *rest != '\0') {
		text = log_escape(address, strlen(address));
		set_error(hp->errstr, "invalid address \"%.*s\": %s",
		    HEADER_ERROR_TEXT_MAX, text, reason != NULL ? reason : "text after \">\"");
		free(text);
		rc = -1;
	} else {
		header_addresses_add(hp->list, checked);
	}
	free(checked);
	free(reason);
	free(path);
	free(address);
	return rc;
}

/* Read an addr-spec's "@domain" after its local-part WORDS and add it. */
static int
header_addr_spec(struct header_parser *hp, const struct header_words *words)
{
	char *local = NULL, *domain = NULL;
	int rc = -1;

	if (header_local_part(hp, words, &local) == 0 &&
	    header_domain(hp, &domain) == 0)
		rc = header_add_mailbox(hp, local, domain);
	free(local);
	free(domain);
	return rc;
}

/* Skip an obsolete source route ("@a,@b:") inside angle brackets. */
static int
header_skip_route(struct header_parser *hp)
{
	struct header_token tok;
	char *domain;

	for (;;) {
		if (header_peek(hp, &tok) == -1)
			return -1;
		if (header_token_is(&tok, ',')) {
			header_consume(hp);
			continue;
		}
		if (header_token_is(&tok, ':')) {
			header_consume(hp);
			return 0;
		}
		if (!header_token_is(&tok, '@'))
			return header_unexpected(hp, &tok, "\"@\" or \":\" in a source route");
		header_consume(hp);
		if (header_domain(hp, &domain) == -1)
			return -1;
		free(domain);
	}
}

/* Read an angle-addr after its "<": [route] addr-spec ">". */
static int
header_angle_addr(struct header_parser *hp)
{
	struct header_words words = { NULL, 0 };
	struct header_token tok;
	char *local = NULL;
	int rc = -1;

	if (header_peek(hp, &tok) == -1)
		return -1;
	if (header_token_is(&tok, '>'))
		return set_error(hp->errstr, "empty address <>");
	if (header_token_is(&tok, '@') && header_skip_route(hp) == -1)
		return -1;

	if (header_collect_words(hp, &words) == -1 || header_peek(hp, &tok) == -1)
		goto done;
	if (words.count == 0) {
		header_unexpected(hp, &tok, "an address");
		goto done;
	}
	if (header_token_is(&tok, '@')) {
		header_consume(hp);
		if (header_addr_spec(hp, &words) == -1)
			goto done;
	} else if (header_token_is(&tok, '>')) {
		/* "<root>": a bare local name, qualified like one outside brackets. */
		if (header_local_part(hp, &words, &local) == -1 ||
		    header_add_mailbox(hp, local, NULL) == -1)
			goto done;
	} else {
		header_unexpected(hp, &tok, "\"@\"");
		goto done;
	}

	if (header_peek(hp, &tok) == -1)
		goto done;
	if (!header_token_is(&tok, '>')) {
		header_unexpected(hp, &tok, "\">\" after the address");
		goto done;
	}
	header_consume(hp);
	rc = 0;
done:
	free(local);
	header_words_clear(&words);
	return rc;
}

static int header_address(struct header_parser *hp, bool in_group);

/* Read the members of a group after its ":", up to and including ";". */
static int
header_group(struct header_parser *hp)
{
	struct header_token tok;

	for (;;) {
		if (header_peek(hp, &tok) == -1)
			return -1;
		/* A missing ";" at the end of the field is forgiven. */
		if (tok.type == HEADER_TOKEN_END)
			return 0;
		if (header_token_is(&tok, ';')) {
			header_consume(hp);
			return 0;
		}
		if (header_token_is(&tok, ',')) {
			header_consume(hp);
			continue;
		}
		if (header_address(hp, true) == -1)
			return -1;

		if (header_peek(hp, &tok) == -1)
			return -1;
		if (!header_token_is(&tok, ',') && !header_token_is(&tok, ';') &&
		    tok.type != HEADER_TOKEN_END)
			return header_unexpected(hp, &tok, "\",\" or \";\" in a group");
	}
}

/*
 * Read one address: a mailbox (addr-spec, or a display name and an
 * angle-addr) or, outside a group, a group.
 */
static int
header_address(struct header_parser *hp, bool in_group)
{
	struct header_words words = { NULL, 0 };
	struct header_token tok;
	char *local = NULL;
	int rc = -1;

	if (header_collect_words(hp, &words) == -1 || header_peek(hp, &tok) == -1)
		goto done;

	if (header_token_is(&tok, '<')) {
		header_consume(hp);
		rc = header_angle_addr(hp);
	} else if (header_token_is(&tok, ':') && words.count > 0) {
		if (in_group) {
			set_error(hp->errstr, "a group inside a group");
			goto done;
		}
		header_consume(hp);
		rc = header_group(hp);
	} else if (header_token_is(&tok, '@') && words.count > 0) {
		header_consume(hp);
		rc = header_addr_spec(hp, &words);
	} else if (words.count > 0 && (tok.type == HEADER_TOKEN_END ||
	    header_token_is(&tok, ',') || header_token_is(&tok, ';'))) {
		/* A bare local name such as "root". */
		if (header_local_part(hp, &words, &local) == 0)
			rc = header_add_mailbox(hp, local, NULL);
	} else {
		header_unexpected(hp, &tok, "an address");
	}
done:
	free(local);
	header_words_clear(&words);
	return rc;
}

static int
header_address_list(struct header_parser *hp)
{
	struct header_token tok;

	for (;;) {
		if (header_peek(hp, &tok) == -1)
			return -1;
		if (tok.type == HEADER_TOKEN_END)
			return 0;
		/* Empty list elements are allowed by obs-addr-list (RFC 5322 4.4). */
		if (header_token_is(&tok, ',')) {
			header_consume(hp);
			continue;
		}
		if (header_address(hp, false) == -1)
			return -1;

		if (header_peek(hp, &tok) == -1)
			return -1;
		if (tok.type != HEADER_TOKEN_END && !header_token_is(&tok, ','))
			return header_unexpected(hp, &tok, "\",\" between addresses");
	}
}

static void
header_parser_init(struct header_parser *hp, const char *value, size_t len,
    const char *default_domain, struct header_addresses *list, char **errstr)
{
	memset(hp, 0, sizeof(*hp));
	hp->p = value;
	hp->end = value + len;
	hp->default_domain = default_domain;
	hp->list = list;
	hp->errstr = errstr;
}

int
header_address_list_parse(const char *value, size_t len,
    const char *default_domain, struct header_addresses *list, char **errstr)
{
	struct header_parser hp;

	header_parser_init(&hp, value, len, default_domain, list, errstr);
	return header_address_list(&hp);
}

void
header_addresses_add(struct header_addresses *list, const char *address)
{
	size_t i;

	/* Case-insensitive: mail systems treat "A@x" and "a@x" as one mailbox in practice. */
	for (i = 0; i < list->count; i++)
		if (strcasecmp(list->items[i], address) == 0)
			return;
	list->items = xrealloc(list->items, (list->count + 1) * sizeof(*list->items));
	list->items[list->count++] = xstrdup(address);
}

void
header_addresses_clear(struct header_addresses *list)
{
	size_t i;

	for (i = 0; i < list->count; i++)
		free(list->items[i]);
	free(list->items);
	list->items = NULL;
	list->count = 0;
}

/* --- envelopes from headers --- */

/* Parse FIELD's value as an address list; errors get the field name in front. */
static int
header_field_addresses(const struct header_field *field,
    const char *default_domain, struct header_addresses *list, char **errstr)
{
	char *reason = NULL;

	if (header_address_list_parse(field->value, field->value_len,
	    default_domain, list, &reason) == 0)
		return 0;
	set_error(errstr, "%.*s: %s", (int)field->name_len, field->name, reason);
	free(reason);
	return -1;
}

static bool
header_section_has_any(const char *section, size_t len, const char *const *names)
{
	for (; *names != NULL; names++)
		if (header_section_has(section, len, *names))
			return true;
	return false;
}

int
header_recipients(const char *section, size_t len, const char *default_domain,
    struct header_addresses *list, char **errstr)
{
	const char *const *names = header_recipient_fields;
	struct header_field field;
	size_t pos = 0;

	if (header_section_has_any(section, len, header_resent_fields))
		names = header_resent_fields;
	while (header_field_next(section, len, &pos, &field) == 1) {
		if (header_field_in(&field, names) &&
		    header_field_addresses(&field, default_domain, list, errstr) == -1)
			return -1;
	}
	return 0;
}

/* True when VALUE is "<>" with optional CFWS around and inside: the null path. */
static bool
header_is_null_path(const char *value, size_t len)
{
	struct header_parser hp;
	struct header_token first, second, third;

	header_parser_init(&hp, value, len, NULL, NULL, NULL);
	if (header_scan(&hp, &first) == -1 || header_scan(&hp, &second) == -1 ||
	    header_scan(&hp, &third) == -1)
		return false;
	return header_token_is(&first, '<') && header_token_is(&second, '>') &&
	    third.type == HEADER_TOKEN_END;
}

/* The first address of FIELD in *SENDER. */
static int
header_field_first(const struct header_field *field, const char *default_domain,
    char **sender, char **errstr)
{
	struct header_addresses list = { NULL, 0 };

	if (header_field_addresses(field, default_domain, &list, errstr) == -1) {
		header_addresses_clear(&list);
		return -1;
	}
	if (list.count == 0) {
		header_addresses_clear(&list);
		return set_error(errstr, "%.*s: no address", (int)field->name_len,
		    field->name);
	}
	*sender = xstrdup(list.items[0]);
	header_addresses_clear(&list);
	return 1;
}

int
header_sender(const char *section, size_t len, const char *default_domain,
    char **sender, char **errstr)
{
	static const char *const names[] = { "Return-Path", "Sender", "From", NULL };
	struct header_field field;
	size_t i;

	*sender = NULL;
	for (i = 0; names[i] != NULL; i++) {
		if (header_section_find(section, len, names[i], &field) == 0)
			continue;
		if (i == 0 && header_is_null_path(field.value, field.value_len)) {
			*sender = xstrdup("");
			return 1;
		}
		return header_field_first(&field, default_domain, sender, errstr);
	}
	return 0;
}
