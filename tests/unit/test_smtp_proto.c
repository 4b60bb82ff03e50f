/* Unit tests for SMTP command and reply parsing (smtp_proto.c). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "smtp_proto.h"

static void
test_command_verbs(void)
{
	static const struct {
		const char *line;
		enum smtp_verb verb;
		const char *arg;
	} cases[] = {
		{ "EHLO client.example", SMTP_VERB_EHLO, "client.example" },
		{ "ehlo x", SMTP_VERB_EHLO, "x" },
		{ "MAIL FROM:<a@b>", SMTP_VERB_MAIL, "FROM:<a@b>" },
		{ "DATA", SMTP_VERB_DATA, "" },
		{ "QUIT", SMTP_VERB_QUIT, "" },
		{ "STARTTLS", SMTP_VERB_STARTTLS, "" },
		{ "MAILX FROM:<a@b>", SMTP_VERB_UNKNOWN, "FROM:<a@b>" },
		{ "", SMTP_VERB_UNKNOWN, "" },
	};
	struct smtp_command cmd;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		smtp_command_parse(cases[i].line, &cmd);
		CHECK_INT_EQ(cmd.verb, cases[i].verb);
		CHECK_STR_EQ(cmd.arg, cases[i].arg);
	}
}

static void
test_mail_parameters(void)
{
	struct smtp_path_command cmd;
	char *error = NULL;

	CHECK_INT_EQ(smtp_path_command_parse("FROM:<a@example.com> SIZE=1000 BODY=8BITMIME",
	    true, &cmd, &error), 0);
	CHECK_STR_EQ(cmd.address, "a@example.com");
	CHECK_UINT_EQ(cmd.size, 1000);
	CHECK(cmd.body_8bitmime);
	smtp_path_command_clear(&cmd);

	CHECK_INT_EQ(smtp_path_command_parse("FROM:<>", true, &cmd, &error), 0);
	CHECK_STR_EQ(cmd.address, "");
	smtp_path_command_clear(&cmd);

	CHECK_INT_EQ(smtp_path_command_parse("FROM: <a@example.com>", true, &cmd, &error), 0);
	CHECK_STR_EQ(cmd.address, "a@example.com");
	smtp_path_command_clear(&cmd);
}

static void
test_path_errors(void)
{
	static const struct {
		const char *arg;
		int is_mail;
		const char *reply_prefix;
	} cases[] = {
		{ "FROM:a@example.com", 1, "501 5.1.7" },
		{ "TO:<>", 0, "501 5.1.3" },
		{ "FROM:<a@example.com> SIZE=abc", 1, "501 5.5.4" },
		{ "FROM:<a@example.com> FOO=1", 1, "555 5.5.4" },
		{ "TO:<a@example.com> NOTIFY=NEVER", 0, "555 5.5.4" },
		{ "TOO:<a@example.com>", 0, "501 5.5.4" },
	};
	struct smtp_path_command cmd;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *error = NULL;

		CHECK_INT_EQ(smtp_path_command_parse(cases[i].arg, cases[i].is_mail,
		    &cmd, &error), -1);
		CHECK(error != NULL && strncmp(error, cases[i].reply_prefix,
		    strlen(cases[i].reply_prefix)) == 0);
		if (error != NULL && strncmp(error, cases[i].reply_prefix,
		    strlen(cases[i].reply_prefix)) != 0)
			fprintf(stderr, "    case %s gave \"%s\"\n", cases[i].arg, error);
		free(error);
	}
}

static enum smtp_reply_feed
feed(struct smtp_reply_parser *p, const char *line)
{
	return smtp_reply_parser_feed(p, line, strlen(line));
}

static void
test_reply_multiline(void)
{
	struct smtp_reply_parser p;
	struct smtp_reply reply;
	size_t len;
	const char *param;

	smtp_reply_parser_init(&p);
	CHECK_INT_EQ(feed(&p, "250-mail.example.net Hello"), SMTP_REPLY_MORE);
	CHECK_INT_EQ(feed(&p, "250-SIZE 10240000"), SMTP_REPLY_MORE);
	CHECK_INT_EQ(feed(&p, "250-AUTH PLAIN LOGIN"), SMTP_REPLY_MORE);
	CHECK_INT_EQ(feed(&p, "250 STARTTLS"), SMTP_REPLY_DONE);
	smtp_reply_parser_take(&p, &reply);
	CHECK_INT_EQ(reply.code, 250);

	param = smtp_ehlo_find(reply.text, "SIZE", &len);
	CHECK(param != NULL && len == 8 && strncmp(param, "10240000", len) == 0);
	param = smtp_ehlo_find(reply.text, "auth", &len);
	CHECK(param != NULL && strncmp(param, "PLAIN LOGIN", len) == 0);
	CHECK(smtp_ehlo_find(reply.text, "STARTTLS", &len) != NULL && len == 0);
	CHECK(smtp_ehlo_find(reply.text, "PIPELINING", NULL) == NULL);
	/* The greeting line is not a keyword. */
	CHECK(smtp_ehlo_find(reply.text, "mail.example.net", NULL) == NULL);
	smtp_reply_clear(&reply);
}

static void
test_reply_status(void)
{
	struct smtp_reply_parser p;
	struct smtp_reply reply;
	char *formatted;

	smtp_reply_parser_init(&p);
	CHECK_INT_EQ(feed(&p, "550-5.1.1 No such user"), SMTP_REPLY_MORE);
	CHECK_INT_EQ(feed(&p, "550 5.1.1 here"), SMTP_REPLY_DONE);
	smtp_reply_parser_take(&p, &reply);
	CHECK_STR_EQ(reply.status, "5.1.1");
	CHECK_STR_EQ(reply.text, "No such user\nhere");
	formatted = smtp_reply_format(&reply);
	CHECK_STR_EQ(formatted, "550 5.1.1 No such user / here");
	free(formatted);
	smtp_reply_clear(&reply);

	/* A status whose class differs from the code's is text, not a status. */
	CHECK_INT_EQ(feed(&p, "250 5.0.0 odd"), SMTP_REPLY_DONE);
	smtp_reply_parser_take(&p, &reply);
	CHECK_STR_EQ(reply.status, "");
	CHECK_STR_EQ(reply.text, "5.0.0 odd");
	smtp_reply_clear(&reply);

	CHECK_INT_EQ(feed(&p, "354"), SMTP_REPLY_DONE);
	smtp_reply_parser_take(&p, &reply);
	CHECK_INT_EQ(reply.code, 354);
	CHECK_STR_EQ(reply.text, "");
	smtp_reply_clear(&reply);
}

static void
test_reply_invalid(void)
{
	static const char *const lines[] = { "", "25", "abc", "2500 x", "099 x",
	    "250x", "600 too high" };
	struct smtp_reply_parser p;
	size_t i;

	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		smtp_reply_parser_init(&p);
		CHECK_INT_EQ(feed(&p, lines[i]), SMTP_REPLY_INVALID);
		smtp_reply_parser_clear(&p);
	}

	/* The code must not change between the lines of one reply. */
	smtp_reply_parser_init(&p);
	CHECK_INT_EQ(feed(&p, "250-a"), SMTP_REPLY_MORE);
	CHECK_INT_EQ(feed(&p, "251 b"), SMTP_REPLY_INVALID);
	smtp_reply_parser_clear(&p);
}

static const struct check_case check_cases[] = {
	CHECK_CASE(test_command_verbs),
	CHECK_CASE(test_mail_parameters),
	CHECK_CASE(test_path_errors),
	CHECK_CASE(test_reply_multiline),
	CHECK_CASE(test_reply_status),
	CHECK_CASE(test_reply_invalid),
};
CHECK_MAIN(check_cases)
