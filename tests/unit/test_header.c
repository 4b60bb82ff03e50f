/* Unit tests for header sections, address lists and envelopes from headers. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "header.h"
#include "util.h"

/* Join LIST's addresses with single spaces, for one comparison per case. */
static char *
joined(const struct header_addresses *list)
{
	size_t i, size = 1;
	char *out;

	for (i = 0; i < list->count; i++)
		size += strlen(list->items[i]) + 1;
	out = xcalloc(1, size);
	for (i = 0; i < list->count; i++) {
		if (i > 0)
			strcat(out, " ");
		strcat(out, list->items[i]);
	}
	return out;
}

static void
test_section_end(void)
{
	static const struct {
		const char *text;
		bool at_eof;
		int found;
		size_t end;
	} cases[] = {
		{ "To: a@b\r\n\r\nbody\r\n", false, 1, 11 },
		{ "To: a@b\n\nbody\n", false, 1, 9 },
		{ "To: a@b\n folded\n\nbody", false, 1, 17 },
		{ "To: a@b\nnot a header line\n", false, 1, 8 },
		{ "To: a@b\n", false, 0, 0 },
		{ "To: a@b\n", true, 1, 8 },
		{ "To: a@b", false, 0, 0 },
		{ "To: a@b", true, 1, 7 },
		{ "body only\n", false, 1, 0 },
		{ " starts folded\n", false, 1, 0 },
		{ "\nbody\n", false, 1, 1 },
		{ "", true, 1, 0 },
		{ "", false, 0, 0 },
		{ "From: x\n\tmore\n\tand more\nSubject: s\n\n", false, 1, 36 },
		{ "X-Empty:\n\n", false, 1, 10 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t end = 0;

		CHECK_INT_EQ(header_section_end(cases[i].text, strlen(cases[i].text),
		    cases[i].at_eof, &end), cases[i].found);
		if (cases[i].found)
			CHECK_UINT_EQ(end, cases[i].end);
	}
}

static void
test_field_next(void)
{
	const char *text = "To: a@b,\r\n c@d\r\nSubject:  hi \r\nX-E:\r\n\r\n";
	struct header_field field;
	size_t pos = 0, len = strlen(text);

	CHECK_INT_EQ(header_field_next(text, len, &pos, &field), 1);
	CHECK(header_field_is(&field, "to"));
	CHECK_UINT_EQ(field.value_len, strlen(" a@b,\r\n c@d"));
	CHECK(memcmp(field.value, " a@b,\r\n c@d", field.value_len) == 0);
	CHECK_UINT_EQ(field.offset, 0);
	CHECK_UINT_EQ(field.length, 16);

	CHECK_INT_EQ(header_field_next(text, len, &pos, &field), 1);
	CHECK(header_field_is(&field, "Subject"));
	CHECK(!header_field_is(&field, "Subjec"));
	CHECK_UINT_EQ(field.value_len, 5);

	CHECK_INT_EQ(header_field_next(text, len, &pos, &field), 1);
	CHECK(header_field_is(&field, "X-E"));
	CHECK_UINT_EQ(field.value_len, 0);

	CHECK_INT_EQ(header_field_next(text, len, &pos, &field), 0);
	CHECK_UINT_EQ(pos, len - 2);
}

static void
test_address_list_valid(void)
{
	static const struct {
		const char *value;
		const char *addresses;
	} cases[] = {
		{ "a@example.com", "a@example.com" },
		{ " a@example.com , b@example.org ", "a@example.com b@example.org" },
		{ "John Doe <john@example.com>", "john@example.com" },
		{ "\"Doe, John\" <john@example.com>, jane@example.com",
		    "john@example.com jane@example.com" },
		{ "john@example.com (John, the boss), jane@example.com",
		    "john@example.com jane@example.com" },
		{ "(comment (nested) here) <a@example.com> (trailing)", "a@example.com" },
		{ "undisclosed-recipients:;", "" },
		{ "undisclosed-recipients: ;", "" },
		{ "team: a@example.com, B <b@example.com>;, c@example.com",
		    "a@example.com b@example.com c@example.com" },
		{ "team: a@example.com", "a@example.com" },
		{ "a@example.com,\r\n\tb@example.com,\r\n c@example.com",
		    "a@example.com b@example.com c@example.com" },
		{ "Long\r\n Name <a@example.com>", "a@example.com" },
		{ ", , a@example.com,,", "a@example.com" },
		{ "", "" },
		{ "   ", "" },
		{ "<@relay.example,@r2.example:a@example.com>", "a@example.com" },
		{ "John Q. Public <jqp@example.com>", "jqp@example.com" },
		{ "first.last@example.com", "first.last@example.com" },
		{ "first . last @ example . com", "first.last@example.com" },
		{ "\"john doe\"@example.com", "\"john doe\"@example.com" },
		{ "\"john\"@example.com", "john@example.com" },
		{ "\"john\".doe@example.com", "john.doe@example.com" },
		{ "\"a\\\"b\"@example.com", "\"a\\\"b\"@example.com" },
		{ "user@[192.0.2.1]", "user@[192.0.2.1]" },
		{ "a@example.com, A@EXAMPLE.COM", "a@example.com" },
		{ "=?UTF-8?B?SsO2cmc=?= <j@example.com>", "j@example.com" },
		{ "J\xc3\xb6rg <j\xc3\xb6rg@b\xc3\xbc" "cher.example>",
		    "j\xc3\xb6rg@b\xc3\xbc" "cher.example" },
		{ "root", "root@host.example" },
		{ "root, Admin <admin>", "root@host.example admin@host.example" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct header_addresses list = { NULL, 0 };
		char *errstr = NULL, *got;

		CHECK_INT_EQ(header_address_list_parse(cases[i].value,
		    strlen(cases[i].value), "host.example", &list, &errstr), 0);
		CHECK_STR_EQ(errstr, NULL);
		got = joined(&list);
		CHECK_STR_EQ(got, cases[i].addresses);
		free(got);
		free(errstr);
		header_addresses_clear(&list);
	}
}

static void
test_address_list_invalid(void)
{
	static const struct {
		const char *value;
		const char *error;
	} cases[] = {
		{ "a@", "expected a domain, found the end of the field" },
		{ "<a@example.com", "expected \">\" after the address, found the end of the field" },
		{ "John Doe a@example.com", "invalid local part: misplaced \".\" or words "
		    "separated only by spaces" },
		{ "a@example.com b@example.com", "expected \",\" between addresses, "
		    "found \"b\"" },
		{ "<>", "empty address <>" },
		{ "\"unterminated@example.com", "unterminated quoted string" },
		{ "a@example.com (open comment", "unterminated comment" },
		{ "g1: g2: a@example.com;;", "a group inside a group" },
		{ "a..b@example.com", "invalid local part: misplaced \".\" or words "
		    "separated only by spaces" },
		{ "a@-bad-.example", "invalid address \"a@-bad-.example\": Domain label "
		    "starts or ends with \"-\"" },
		{ "a\x01@example.com", "invalid character 0x01" },
		{ "a@example.com)", "invalid character \")\"" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct header_addresses list = { NULL, 0 };
		char *errstr = NULL;

		CHECK_INT_EQ(header_address_list_parse(cases[i].value, strlen(cases[i].value),
		    "host.example", &list, &errstr), -1);
		CHECK_STR_EQ(errstr, cases[i].error);
		free(errstr);
		header_addresses_clear(&list);
	}
}

static void
test_address_list_nul(void)
{
	static const char value[] = "a@exa\0mple.com";
	struct header_addresses list = { NULL, 0 };
	char *errstr = NULL;

	CHECK_INT_EQ(header_address_list_parse(value, sizeof(value) - 1, NULL, &list,
	    &errstr), -1);
	CHECK_STR_EQ(errstr, "invalid character 0x00");
	free(errstr);
	header_addresses_clear(&list);
}

static void
test_address_bare_name_without_domain(void)
{
	struct header_addresses list = { NULL, 0 };
	char *errstr = NULL;

	CHECK_INT_EQ(header_address_list_parse("root", 4, NULL, &list, &errstr), -1);
	CHECK_STR_EQ(errstr, "address \"root\" has no domain");
	CHECK_UINT_EQ(list.count, 0);
	free(errstr);
}

static void
test_recipients_to_cc_bcc(void)
{
	const char *text =
	    "From: Sender <s@example.com>\r\n"
	    "To: undisclosed-recipients:;\r\n"
	    "Cc: \"Doe, J\" <j@example.com>,\r\n"
	    "\tk@example.com\r\n"
	    "Bcc: hidden@example.com\r\n"
	    "Reply-To: nobody@example.com\r\n"
	    "\r\n";
	struct header_addresses list = { NULL, 0 };
	char *errstr = NULL, *got;

	CHECK_INT_EQ(header_recipients(text, strlen(text), NULL, &list, &errstr), 0);
	got = joined(&list);
	CHECK_STR_EQ(got, "j@example.com k@example.com hidden@example.com");
	free(got);
	header_addresses_clear(&list);
}

static void
test_recipients_resent(void)
{
	const char *text =
	    "Resent-To: r1@example.com\n"
	    "Resent-Bcc: r2@example.com\n"
	    "To: original@example.com\n"
	    "\n";
	struct header_addresses list = { NULL, 0 };
	char *got;

	CHECK_INT_EQ(header_recipients(text, strlen(text), NULL, &list, NULL), 0);
	got = joined(&list);
	CHECK_STR_EQ(got, "r1@example.com r2@example.com");
	free(got);
	header_addresses_clear(&list);
}

static void
test_recipients_error_names_field(void)
{
	const char *text = "To: ok@example.com\nCc: broken@\n\n";
	struct header_addresses list = { NULL, 0 };
	char *errstr = NULL;

	CHECK_INT_EQ(header_recipients(text, strlen(text), NULL, &list, &errstr), -1);
	CHECK_STR_EQ(errstr, "Cc: expected a domain, found the end of the field");
	free(errstr);
	header_addresses_clear(&list);
}

static void
test_sender_order(void)
{
	static const struct {
		const char *text;
		int rc;
		const char *sender;
	} cases[] = {
		{ "From: f@example.com\nSender: s@example.com\nReturn-Path: <r@example.com>\n\n",
		    1, "r@example.com" },
		{ "From: f@example.com\nSender: S <s@example.com>\n\n", 1, "s@example.com" },
		{ "From: F <f@example.com>, g@example.com\n\n", 1, "f@example.com" },
		{ "Return-Path: <>\nFrom: f@example.com\n\n", 1, "" },
		{ "Return-Path: < >\n\n", 1, "" },
		{ "Subject: none\n\n", 0, NULL },
		{ "From: undisclosed:;\n\n", -1, NULL },
		{ "From: f@\n\n", -1, NULL },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *sender = NULL, *errstr = NULL;

		CHECK_INT_EQ(header_sender(cases[i].text, strlen(cases[i].text), NULL,
		    &sender, &errstr), cases[i].rc);
		CHECK_STR_EQ(sender, cases[i].sender);
		CHECK(cases[i].rc == -1 ? errstr != NULL : errstr == NULL);
		free(sender);
		free(errstr);
	}
}

static void
test_section_remove(void)
{
	const char *text =
	    "To: a@example.com\r\n"
	    "Bcc: hidden@example.com,\r\n"
	    " other@example.com\r\n"
	    "Subject: s\r\n"
	    "return-path: <x@example.com>\r\n"
	    "RESENT-BCC: y@example.com\r\n"
	    "\r\n";
	char *out;
	size_t len;

	out = header_section_remove(text, strlen(text), header_submission_drop, &len);
	CHECK_STR_EQ(out, "To: a@example.com\r\nSubject: s\r\n\r\n");
	CHECK_UINT_EQ(len, strlen(out));
	free(out);
}

static void
test_section_remove_adds_empty_line(void)
{
	static const struct {
		const char *text;
		const char *out;
	} cases[] = {
		{ "Subject: s\nBcc: h@example.com", "Subject: s\n\r\n" },
		{ "Subject: s\n", "Subject: s\n\r\n" },
		{ "Subject: s", "Subject: s\r\n\r\n" },
		{ "Subject: s\n\n", "Subject: s\n\n" },
		{ "", "\r\n" },
	};
	size_t i, len;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = header_section_remove(cases[i].text, strlen(cases[i].text),
		    header_submission_drop, &len);

		CHECK_STR_EQ(out, cases[i].out);
		CHECK_UINT_EQ(len, strlen(cases[i].out));
		free(out);
	}
}

static void
test_section_has(void)
{
	const char *text = "from: a@example.com\nSubject: x\n\nFrom: body@example.com\n";
	size_t end = 0;

	CHECK_INT_EQ(header_section_end(text, strlen(text), false, &end), 1);
	CHECK(header_section_has(text, end, "From"));
	CHECK(!header_section_has(text, end, "Date"));
}

static const struct check_case check_cases[] = {
	CHECK_CASE(test_section_end),
	CHECK_CASE(test_field_next),
	CHECK_CASE(test_address_list_valid),
	CHECK_CASE(test_address_list_invalid),
	CHECK_CASE(test_address_list_nul),
	CHECK_CASE(test_address_bare_name_without_domain),
	CHECK_CASE(test_recipients_to_cc_bcc),
	CHECK_CASE(test_recipients_resent),
	CHECK_CASE(test_recipients_error_names_field),
	CHECK_CASE(test_sender_order),
	CHECK_CASE(test_section_remove),
	CHECK_CASE(test_section_remove_adds_empty_line),
	CHECK_CASE(test_section_has),
};

CHECK_MAIN(check_cases)
