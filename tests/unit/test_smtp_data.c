/* Unit tests for the DATA phase state machine (smtp_data.c). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "smtp_data.h"

struct collected {
	char buf[8192];
	size_t len;
};

static void
collect(void *arg, const char *data, size_t len)
{
	struct collected *c = arg;

	memcpy(c->buf + c->len, data, len);
	c->len += len;
	c->buf[c->len] = '\0';
}

struct data_case {
	const char *name;
	const char *input;
	int done;		/* end of data expected */
	const char *output;	/* message bytes after the parser */
	const char *rest;	/* bytes left after the end of data */
};

static const struct data_case data_cases[] = {
	{ "plain", "a\r\nb\r\n.\r\n", 1, "a\r\nb\r\n", "" },
	{ "empty message", ".\r\n", 1, "", "" },
	{ "dot unstuffing", "..x\r\n..\r\n.\r\n", 1, ".x\r\n.\r\n", "" },
	{ "single leading dot removed", ".x\r\n.\r\n", 1, "x\r\n", "" },
	{ "pipelined command after end", "a\r\n.\r\nQUIT\r\n", 1, "a\r\n", "QUIT\r\n" },
	{ "bare LF becomes CRLF", "a\nb\r\n.\r\n", 1, "a\r\nb\r\n", "" },
	{ "bare CR becomes CRLF", "a\rb\r\n.\r\n", 1, "a\r\nb\r\n", "" },
	{ "CR CR LF", "a\r\r\n.\r\n", 1, "a\r\n\r\n", "" },
	{ "LF dot CRLF does not end", "x\n.\r\ny\r\n.\r\n", 1, "x\r\n.\r\ny\r\n", "" },
	{ "CRLF dot LF does not end", "x\r\n.\ny\r\n.\r\n", 1, "x\r\n.\r\ny\r\n", "" },
	{ "CR dot CR does not end", "x\r.\ry\r\n.\r\n", 1, "x\r\n.\r\ny\r\n", "" },
	{ "no end yet", "a\r\n.", 0, "", "" },
	{ "NUL passes", "a\0b\r\n.\r\n", 1, NULL, "" },
};

static void
run_data_case(const struct data_case *tc, size_t step)
{
	struct smtp_data_parser p;
	struct collected out = { .len = 0 };
	size_t len = tc->output == NULL ? 8 : strlen(tc->input);
	size_t pos = 0;

	/* The NUL case has an embedded NUL, so its length is given above. */
	smtp_data_init(&p, collect, &out);
	while (pos < len && !smtp_data_done(&p)) {
		size_t n = len - pos < step ? len - pos : step;

		pos += smtp_data_feed(&p, tc->input + pos, n);
	}
	if (smtp_data_done(&p) != tc->done) {
		fprintf(stderr, "case \"%s\" step %zu\n", tc->name, step);
		CHECK_INT_EQ(smtp_data_done(&p), tc->done);
		return;
	}
	if (!tc->done)
		return;
	if (tc->output != NULL) {
		CHECK_STR_EQ(out.buf, tc->output);
	} else {
		CHECK_UINT_EQ(out.len, 5);
		CHECK(memcmp(out.buf, "a\0b\r\n", 5) == 0);
	}
	CHECK_STR_EQ(tc->input + pos, tc->rest);
}

static void
test_data_cases_whole(void)
{
	size_t i;

	for (i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++)
		run_data_case(&data_cases[i], 4096);
}

/* Feeding one byte at a time must give the same result as one buffer. */
static void
test_data_cases_bytewise(void)
{
	size_t i;

	for (i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++)
		run_data_case(&data_cases[i], 1);
}

static void
test_data_smuggling_input(void)
{
	static const char input[] = "Subject: a\r\n\r\nx\n.\r\nMAIL FROM:<x@example.com>\r\n"
	    "RCPT TO:<v@example.net>\r\nDATA\r\n\r\nfake\r\n.\r\n";
	struct smtp_data_parser p;
	struct collected out = { .len = 0 };
	size_t used;

	smtp_data_init(&p, collect, &out);
	used = smtp_data_feed(&p, input, strlen(input));
	CHECK(smtp_data_done(&p));
	CHECK_UINT_EQ(used, strlen(input));
	CHECK(strstr(out.buf, "MAIL FROM:<x@example.com>\r\n") != NULL);
	CHECK(strstr(out.buf, "fake\r\n") != NULL);
}

static void
test_data_long_line(void)
{
	struct smtp_data_parser p;
	struct collected out = { .len = 0 };
	char input[6000];

	memset(input, 'x', 5000);
	memcpy(input + 5000, "\r\n.\r\n", 6);
	smtp_data_init(&p, collect, &out);
	smtp_data_feed(&p, input, strlen(input));
	CHECK(smtp_data_done(&p));
	CHECK_UINT_EQ(out.len, 5002);
}

static const struct check_case check_cases[] = {
	CHECK_CASE(test_data_cases_whole),
	CHECK_CASE(test_data_cases_bytewise),
	CHECK_CASE(test_data_smuggling_input),
	CHECK_CASE(test_data_long_line),
};
CHECK_MAIN(check_cases)
