/*
 * SMTP paths and mailboxes (RFC 5321 section 4.1.2), extended with UTF-8
 * local parts and domain labels (RFC 6531 section 3.3).
 *
 * Limits from RFC 5321 section 4.5.3.1: a local part has at most 64
 * octets, a domain at most 255, and a path at most 256 including the
 * angle brackets, which leaves 254 octets for the mailbox. A source route
 * is dropped before the limit is checked.
 *
 * The reasons given in *ERRSTR end up in SMTP replies, so they are plain
 * ASCII and never quote the peer's bytes.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "compat.h"
#include "util.h"

#define ADDRESS_LOCAL_MAX	64
#define ADDRESS_DOMAIN_MAX	255
#define ADDRESS_MAILBOX_MAX	254
#define ADDRESS_LABEL_MAX	63

/* Describe the octet C for an error message: "\"x\"" when printable, "0x0A" otherwise. */
static const char *
address_octet_name(unsigned char c, char *buf, size_t size)
{
	if (c > 32 && c < 127)
		snprintf(buf, size, "\"%c\"", c);
	else if (c == ' ')
		snprintf(buf, size, "space");
	else
		snprintf(buf, size, "0x%02X", c);
	return buf;
}

static int
address_bad_octet(const char *p, const char *where, char **errstr)
{
	char name[8];

	if (*p == '\0')
		return set_error(errstr, "Address ends too early in the %s", where);
	return set_error(errstr, "Invalid character %s in the %s",
	    address_octet_name((unsigned char)*p, name, sizeof(name)), where);
}

/*
 * Length of the well-formed UTF-8 sequence of two to four octets at P,
 * or 0. Overlong forms, surrogates and values above U+10FFFF are not
 * well-formed (RFC 3629 section 4).
 */
static size_t
address_utf8_length(const char *text)
{
	const unsigned char *p = (const unsigned char *)text;
	unsigned char lo = 0x80, hi = 0xBF;
	size_t len, i;

	if (p[0] >= 0xC2 && p[0] <= 0xDF)
		len = 2;
	else if (p[0] >= 0xE0 && p[0] <= 0xEF)
		len = 3;
	else if (p[0] >= 0xF0 && p[0] <= 0xF4)
		len = 4;
	else
		return 0;

	/* The second octet's range rules out overlong forms and surrogates. */
	if (p[0] == 0xE0)
		lo = 0xA0;
	else if (p[0] == 0xED)
		hi = 0x9F;
	else if (p[0] == 0xF0)
		lo = 0x90;
	else if (p[0] == 0xF4)
		hi = 0x8F;
	if (p[1] < lo || p[1] > hi)
		return 0;

	for (i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xBF)
			return 0;
	return len;
}

/* atext of RFC 5322 section 3.2.3. */
static bool
address_is_atext(char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool
address_is_let_dig(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Scan a Dot-string local part. Returns the end, or NULL with *ERRSTR set. */
static const char *
address_scan_dot_string(const char *p, char **errstr)
{
	for (;;) {
		const char *atom = p;

		for (;;) {
			size_t len;

			if (address_is_atext(*p)) {
				p++;
				continue;
			}
			if ((unsigned char)*p >= 0x80) {
				len = address_utf8_length(p);
				if (len == 0) {
					set_error(errstr, "Invalid UTF-8 in the local part");
					return NULL;
				}
				p += len;
				continue;
			}
			break;
		}

		if (p == atom) {
			if (*p == '.' || *p == '@')
				set_error(errstr, "Empty part before \"%c\" in the local part", *p);
			else
				address_bad_octet(p, "local part", errstr);
			return NULL;
		}
		if (*p != '.')
			return p;
		p++;
	}
}

/* Scan a Quoted-string local part starting at its opening quote. */
static const char *
address_scan_quoted_string(const char *p, char **errstr)
{
	for (p++; *p != '"'; ) {
		unsigned char c = (unsigned char)*p;

		if (c == '\\') {
			/* quoted-pairSMTP: a backslash and one printable ASCII character. */
			if ((unsigned char)p[1] < 32 || (unsigned char)p[1] > 126) {
				address_bad_octet(p + 1, "quoted local part", errstr);
				return NULL;
			}
			p += 2;
		} else if (c >= 32 && c <= 126) {
			p++;
		} else if (c >= 0x80) {
			size_t len = address_utf8_length(p);

			if (len == 0) {
				set_error(errstr, "Invalid UTF-8 in the local part");
				return NULL;
			}
			p += len;
		} else {
			address_bad_octet(p, "quoted local part", errstr);
			return NULL;
		}
	}
	return p + 1;
}

/* Check the inside of an address literal: IPv4, "IPv6:" or a "tag:" form. */
static int
address_check_literal(const char *text, size_t len, char **errstr)
{
	char buf[ADDRESS_DOMAIN_MAX + 1];
	unsigned char addr[16];
	size_t tag_len;

	memcpy(buf, text, len);
	buf[len] = '\0';

	if (len > 5 && strncasecmp(buf, "IPv6:", 5) == 0) {
		if (inet_pton(AF_INET6, buf + 5, addr) != 1)
			return set_error(errstr, "Invalid IPv6 address literal");
		return 0;
	}
	if (strspn(buf, "0123456789.") == len) {
		if (inet_pton(AF_INET, buf, addr) != 1)
			return set_error(errstr, "Invalid IPv4 address literal");
		return 0;
	}

	/* General-address-literal: Standardized-tag ":" 1*dcontent. */
	tag_len = strspn(buf, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-");
	if (tag_len == 0 || buf[tag_len] != ':' || buf[tag_len + 1] == '\0' ||
	    buf[tag_len - 1] == '-')
		return set_error(errstr, "Invalid address literal");
	for (const char *p = buf + tag_len + 1; *p != '\0'; p++)
		if (*p < 33 || *p > 126 || *p == '[' || *p == '\\' || *p == ']')
			return set_error(errstr, "Invalid address literal");
	return 0;
}

/* Scan an address literal starting at its "[". */
static const char *
address_scan_literal(const char *p, char **errstr)
{
	const char *start = p + 1;
	const char *end = start;

	while (*end != ']' && *end != '\0' && end - start < ADDRESS_DOMAIN_MAX)
		end++;
	if (*end != ']') {
		set_error(errstr, "Unterminated or too long address literal");
		return NULL;
	}
	if (address_check_literal(start, end - start, errstr) == -1)
		return NULL;
	return end + 1;
}

/* Scan one domain label: Let-dig [Ldh-str], or UTF-8 in a U-label. */
static const char *
address_scan_label(const char *p, char **errstr)
{
	const char *start = p;

	for (;;) {
		size_t len;

		if (address_is_let_dig(*p) || *p == '-') {
			p++;
			continue;
		}
		if ((unsigned char)*p >= 0x80) {
			len = address_utf8_length(p);
			if (len == 0) {
				set_error(errstr, "Invalid UTF-8 in the domain");
				return NULL;
			}
			p += len;
			continue;
		}
		break;
	}

	if (p == start) {
		if (*p == '.')
			set_error(errstr, "Empty label in the domain");
		else
			address_bad_octet(p, "domain", errstr);
		return NULL;
	}
	if (*start == '-' || p[-1] == '-') {
		set_error(errstr, "Domain label starts or ends with \"-\"");
		return NULL;
	}
	if (p - start > ADDRESS_LABEL_MAX) {
		set_error(errstr, "Domain label longer than %d octets", ADDRESS_LABEL_MAX);
		return NULL;
	}
	return p;
}

/* Scan a domain name or an address literal. */
static const char *
address_scan_domain(const char *p, char **errstr)
{
	const char *start = p;

	if (*p == '[')
		return address_scan_literal(p, errstr);

	for (;;) {
		p = address_scan_label(p, errstr);
		if (p == NULL)
			return NULL;
		if (p - start > ADDRESS_DOMAIN_MAX) {
			set_error(errstr, "Domain longer than %d octets", ADDRESS_DOMAIN_MAX);
			return NULL;
		}
		if (*p != '.')
			return p;
		p++;
	}
}

/* Scan local@domain and return the end of the domain, or NULL with *ERRSTR set. */
static const char *
address_scan_mailbox(const char *p, char **errstr)
{
	const char *start = p;

	if (*p == '"')
		p = address_scan_quoted_string(p, errstr);
	else
		p = address_scan_dot_string(p, errstr);
	if (p == NULL)
		return NULL;

	if (p - start > ADDRESS_LOCAL_MAX) {
		set_error(errstr, "Local part longer than %d octets", ADDRESS_LOCAL_MAX);
		return NULL;
	}
	if (*p != '@') {
		if (*p == '>' || *p == '\0')
			set_error(errstr, "Missing \"@domain\" in the address");
		else
			address_bad_octet(p, "local part", errstr);
		return NULL;
	}
	p++;
	if (*p == '>' || *p == '\0') {
		set_error(errstr, "Missing domain after \"@\"");
		return NULL;
	}
	return address_scan_domain(p, errstr);
}

/* Skip a source route ("@a,@b:"), obsolete since RFC 5321 but still allowed. */
static const char *
address_skip_route(const char *p, char **errstr)
{
	for (;;) {
		p = address_scan_domain(p + 1, errstr);
		if (p == NULL)
			return NULL;
		if (*p == ':')
			return p + 1;
		if (*p != ',' || p[1] != '@') {
			set_error(errstr, "Invalid source route");
			return NULL;
		}
		p++;
	}
}

int
address_parse_path(const char *text, bool allow_null, char **address,
    const char **rest, char **errstr)
{
	const char *p = text, *start, *end;

	if (*p != '<')
		return set_error(errstr, "Missing \"<\" before the address");
	p++;

	if (*p == '>') {
		if (!allow_null)
			return set_error(errstr, "Null address <> not allowed here");
		*address = xstrdup("");
		*rest = p + 1;
		return 0;
	}

	if (*p == '@') {
		p = address_skip_route(p, errstr);
		if (p == NULL)
			return -1;
	}

	start = p;
	end = address_scan_mailbox(start, errstr);
	if (end == NULL)
		return -1;
	if (*end != '>') {
		if (*end == '\0')
			return set_error(errstr, "Missing \">\" after the address");
		return address_bad_octet(end, "domain", errstr);
	}
	if (end - start > ADDRESS_MAILBOX_MAX)
		return set_error(errstr, "Address longer than %d octets", ADDRESS_MAILBOX_MAX);

	*address = xstrndup(start, end - start);
	*rest = end + 1;
	return 0;
}

bool
address_is_valid(const char *address)
{
	const char *end = address_scan_mailbox(address, NULL);

	return end != NULL && *end == '\0' && end - address <= ADDRESS_MAILBOX_MAX;
}

bool
address_is_8bit(const char *address)
{
	for (const unsigned char *p = (const unsigned char *)address; *p != '\0'; p++)
		if (*p >= 0x80)
			return true;
	return false;
}
