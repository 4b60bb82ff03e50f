/* Unit tests for SMTP path parsing and mailbox checks. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "check.h"
#include "util.h"

/* Repeat C N times, for length limits. */
static char *
repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	if (s == NULL)
		abort();
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static void
test_path_valid(void)
{
	static const struct {
		const char *text;
		const char *address;
		const char *rest;
	} cases[] = {
		{ "<user@example.com>", "user@example.com", "" },
		{ "<user@example.com> SIZE=100", "user@example.com", " SIZE=100" },
		{ "<first.last+tag@mail.example.com>", "first.last+tag@mail.example.com", "" },
		{ "<!#$%&'*+-/=?^_`{|}~@example.com>", "!#$%&'*+-/=?^_`{|}~@example.com", "" },
		{ "<\"john doe\"@example.com>", "\"john doe\"@example.com", "" },
		{ "<\"a\\\"b\"@example.com>", "\"a\\\"b\"@example.com", "" },
		{ "<\"a>b\"@example.com>", "\"a>b\"@example.com", "" },
		{ "<\"\"@example.com>", "\"\"@example.com", "" },
		{ "<user@localhost>", "user@localhost", "" },
		{ "<user@[192.0.2.1]>", "user@[192.0.2.1]", "" },
		{ "<user@[IPv6:2001:db8::1]>", "user@[IPv6:2001:db8::1]", "" },
		{ "<user@[ipv6:::1]>", "user@[ipv6:::1]", "" },
		{ "<user@[x-tag:anything]>", "user@[x-tag:anything]", "" },
		{ "<@relay.example:user@example.com>", "user@example.com", "" },
		{ "<@a.example,@b.example:user@example.com>", "user@example.com", "" },
		{ "<@[192.0.2.1]:user@example.com>", "user@example.com", "" },
		{ "<user@xn--bcher-kva.example>", "user@xn--bcher-kva.example", "" },
		{ "<a-b@a-b.example>", "a-b@a-b.example", "" },
		{ "<1@2.3>", "1@2.3", "" },
		/* SMTPUTF8 (RFC 6531): UTF-8 in the local part and in U-labels. */
		{ "<j\xc3\xb6rg@example.com>", "j\xc3\xb6rg@example.com", "" },
		{ "<user@b\xc3\xbc" "cher.example>", "user@b\xc3\xbc" "cher.example", "" },
		{ "<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\x85\xac\xe5\x8f\xb8>",
		    "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\x85\xac\xe5\x8f\xb8", "" },
		{ "<\"\xc3\xa9 x\"@example.com>", "\"\xc3\xa9 x\"@example.com", "" },
		{ "<u@\xf0\x9f\x98\x80.example>", "u@\xf0\x9f\x98\x80.example", "" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *address = NULL, *errstr = NULL;
		const char *rest = NULL;

		CHECK_INT_EQ(address_parse_path(cases[i].text, false, &address, &rest,
		    &errstr), 0);
		CHECK_STR_EQ(address, cases[i].address);
		CHECK_STR_EQ(rest, cases[i].rest);
		CHECK_STR_EQ(errstr, NULL);
		free(address);
		free(errstr);
	}
}

static void
test_path_null(void)
{
	char *address = NULL, *errstr = NULL;
	const char *rest = NULL;

	CHECK_INT_EQ(address_parse_path("<> BODY=8BITMIME", true, &address, &rest,
	    &errstr), 0);
	CHECK_STR_EQ(address, "");
	CHECK_STR_EQ(rest, " BODY=8BITMIME");
	free(address);

	address = NULL;
	CHECK_INT_EQ(address_parse_path("<>", false, &address, &rest, &errstr), -1);
	CHECK_STR_EQ(errstr, "Null address <> not allowed here");
	CHECK_STR_EQ(address, NULL);
	free(errstr);
}

static void
test_path_invalid(void)
{
	static const struct {
		const char *text;
		const char *reason;
	} cases[] = {
		{ "", "Missing \"<\" before the address" },
		{ "user@example.com", "Missing \"<\" before the address" },
		{ " <user@example.com>", "Missing \"<\" before the address" },
		{ "<user@example.com", "Missing \">\" after the address" },
		{ "<user>", "Missing \"@domain\" in the address" },
		{ "<user@>", "Missing domain after \"@\"" },
		{ "<@example.com>", "Invalid source route" },
		{ "<@example.com,user@example.com>", "Invalid source route" },
		{ "<@:user@example.com>", "Invalid character \":\" in the domain" },
		{ "<.user@example.com>", "Empty part before \".\" in the local part" },
		{ "<user.@example.com>", "Empty part before \"@\" in the local part" },
		{ "<us..er@example.com>", "Empty part before \".\" in the local part" },
		{ "<us er@example.com>", "Invalid character space in the local part" },
		{ "<us(er@example.com>", "Invalid character \"(\" in the local part" },
		{ "<user@exa mple.com>", "Invalid character space in the domain" },
		{ "<user@example..com>", "Empty label in the domain" },
		{ "<user@.example.com>", "Empty label in the domain" },
		{ "<user@example.com.>", "Invalid character \">\" in the domain" },
		{ "<user@-example.com>", "Domain label starts or ends with \"-\"" },
		{ "<user@example-.com>", "Domain label starts or ends with \"-\"" },
		{ "<user@exa_mple.com>", "Invalid character \"_\" in the domain" },
		{ "<user@example.com >", "Invalid character space in the domain" },
		{ "< user@example.com>", "Invalid character space in the local part" },
		{ "<user@@example.com>", "Invalid character \"@\" in the domain" },
		{ "<a@b@example.com>", "Invalid character \"@\" in the domain" },
		{ "<user\x01@example.com>", "Invalid character 0x01 in the local part" },
		{ "<user@exam\x7fple.com>", "Invalid character 0x7F in the domain" },
		{ "<user\n@example.com>", "Invalid character 0x0A in the local part" },
		{ "<\"unterminated@example.com>", "Address ends too early in the quoted local part" },
		{ "<\"a\x01\"@example.com>", "Invalid character 0x01 in the quoted local part" },
		{ "<\"a\\\x01\"@example.com>", "Invalid character 0x01 in the quoted local part" },
		{ "<\"a\"b@example.com>", "Invalid character \"b\" in the local part" },
		{ "<user@[192.0.2.256]>", "Invalid IPv4 address literal" },
		{ "<user@[IPv6:2001:db8::g]>", "Invalid IPv6 address literal" },
		{ "<user@[]>", "Invalid IPv4 address literal" },
		{ "<user@[tag]>", "Invalid address literal" },
		{ "<user@[tag:]>", "Invalid address literal" },
		{ "<user@[192.0.2.1>", "Unterminated or too long address literal" },
		/* Malformed UTF-8: a lone continuation, overlong, surrogate, too high, cut. */
		{ "<j\x80rg@example.com>", "Invalid UTF-8 in the local part" },
		{ "<j\xc0\xafrg@example.com>", "Invalid UTF-8 in the local part" },
		{ "<j\xed\xa0\x80rg@example.com>", "Invalid UTF-8 in the local part" },
		{ "<j\xf4\x90\x80\x80rg@example.com>", "Invalid UTF-8 in the local part" },
		{ "<j\xc3@example.com>", "Invalid UTF-8 in the local part" },
		{ "<\"\xff\"@example.com>", "Invalid UTF-8 in the local part" },
		{ "<user@b\xfc" "cher.example>", "Invalid UTF-8 in the domain" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *address = NULL, *errstr = NULL;
		const char *rest = NULL;

		CHECK_INT_EQ(address_parse_path(cases[i].text, true, &address, &rest,
		    &errstr), -1);
		CHECK_STR_EQ(errstr, cases[i].reason);
		CHECK_STR_EQ(address, NULL);
		free(errstr);
	}
}

static void
test_path_length_limits(void)
{
	char *local64 = repeat('a', 64), *local65 = repeat('a', 65);
	char *label63 = repeat('b', 63), *label64 = repeat('b', 64);
	char *text, *address = NULL, *errstr = NULL;
	const char *rest;

	/* 64 + 1 + 63 * 3 + 2 dots = 256 octets: above the mailbox limit of 254. */
	text = xasprintf("<%s@%s.%s.%s>", local64, label63, label63, label63);
	CHECK_INT_EQ(address_parse_path(text, false, &address, &rest, &errstr), -1);
	CHECK_STR_EQ(errstr, "Address longer than 254 octets");
	free(text);
	free(errstr);
	errstr = NULL;

	/* 64 + 1 + 63 * 3 + 2 dots - 2 = 254 octets: exactly the limit. */
	text = xasprintf("<%s@%s.%s.%s>", local64, label63, label63, label63 + 2);
	CHECK_INT_EQ(address_parse_path(text, false, &address, &rest, &errstr), 0);
	CHECK_UINT_EQ(address != NULL ? strlen(address) : 0, 254);
	free(text);
	free(address);
	address = NULL;

	text = xasprintf("<%s@example.com>", local65);
	CHECK_INT_EQ(address_parse_path(text, false, &address, &rest, &errstr), -1);
	CHECK_STR_EQ(errstr, "Local part longer than 64 octets");
	free(text);
	free(errstr);
	errstr = NULL;

	text = xasprintf("<user@%s.example>", label64);
	CHECK_INT_EQ(address_parse_path(text, false, &address, &rest, &errstr), -1);
	CHECK_STR_EQ(errstr, "Domain label longer than 63 octets");
	free(text);
	free(errstr);
	errstr = NULL;

	/* A long source route does not count against the mailbox limit. */
	text = xasprintf("<@%s.%s.%s:%s@%s.%s>", label63, label63, label63, local64,
	    label63, label63);
	CHECK_INT_EQ(address_parse_path(text, false, &address, &rest, &errstr), 0);
	free(text);
	free(address);

	free(local64);
	free(local65);
	free(label63);
	free(label64);
}

static void
test_path_null_errstr(void)
{
	char *address = NULL;
	const char *rest;

	CHECK_INT_EQ(address_parse_path("<bad", false, &address, &rest, NULL), -1);
	CHECK_STR_EQ(address, NULL);
}

static void
test_is_valid(void)
{
	CHECK(address_is_valid("user@example.com"));
	CHECK(address_is_valid("\"john doe\"@example.com"));
	CHECK(address_is_valid("user@[192.0.2.1]"));
	CHECK(address_is_valid("j\xc3\xb6rg@example.com"));
	CHECK(!address_is_valid(""));
	CHECK(!address_is_valid("user"));
	CHECK(!address_is_valid("user@"));
	CHECK(!address_is_valid("@example.com"));
	CHECK(!address_is_valid("<user@example.com>"));
	CHECK(!address_is_valid("user@example.com "));
	CHECK(!address_is_valid("user@example.com>"));
	CHECK(!address_is_valid("us er@example.com"));
	CHECK(!address_is_valid("user@example.com\n"));
	CHECK(!address_is_valid("j\xff@example.com"));
}

static void
test_is_8bit(void)
{
	CHECK(!address_is_8bit(""));
	CHECK(!address_is_8bit("user@example.com"));
	CHECK(address_is_8bit("j\xc3\xb6rg@example.com"));
	CHECK(address_is_8bit("user@b\xc3\xbc" "cher.example"));
}

static const struct check_case check_cases[] = {
	CHECK_CASE(test_path_valid),
	CHECK_CASE(test_path_null),
	CHECK_CASE(test_path_invalid),
	CHECK_CASE(test_path_length_limits),
	CHECK_CASE(test_path_null_errstr),
	CHECK_CASE(test_is_valid),
	CHECK_CASE(test_is_8bit),
};

CHECK_MAIN(check_cases)
