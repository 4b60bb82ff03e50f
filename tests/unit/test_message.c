/* Unit tests for header handling on intake (message.c). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "message.h"

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

static void
write_message(const char *text, struct collected *out, struct message_writer *w)
{
	out->len = 0;
	out->buf[0] = '\0';
	message_writer_init(w, "Received: x\r\n", "relay.example", collect, out);
	message_writer_write(w, text, strlen(text));
	message_writer_finish(w);
}

static void
test_message_keeps_existing_headers(void)
{
	static const char text[] = "Date: Fri, 04 Dec 2026 20:00:00 +0000\r\n"
	    "Message-ID: <abc@example.com>\r\nSubject: s\r\n\r\nbody\r\n";
	struct message_writer w;
	struct collected out;

	write_message(text, &out, &w);
	CHECK(strncmp(out.buf, "Received: x\r\n", 13) == 0);
	CHECK_STR_EQ(out.buf + 13, text);
	CHECK_STR_EQ(message_writer_message_id(&w), "<abc@example.com>");
	CHECK_UINT_EQ(w.size, strlen(out.buf));
	message_writer_clear(&w);
}

static void
test_message_adds_missing_headers(void)
{
	static const char text[] = "From: a@example.com\r\nTo: b@example.net\r\n"
	    "Subject: s\r\n\r\nbody\r\n";
	struct message_writer w;
	struct collected out;
	const char *sep;

	write_message(text, &out, &w);
	sep = strstr(out.buf, "\r\n\r\n");
	CHECK(sep != NULL);
	/* Both fields go at the end of the header section, before the empty line. */
	CHECK(strstr(out.buf, "\r\nDate: ") != NULL && strstr(out.buf, "\r\nDate: ") < sep);
	CHECK(strstr(out.buf, "\r\nMessage-ID: <") != NULL);
	CHECK(strstr(out.buf, "@relay.example>\r\n\r\nbody\r\n") != NULL);
	CHECK(message_writer_message_id(&w) != NULL &&
	    strstr(out.buf, message_writer_message_id(&w)) != NULL);
	message_writer_clear(&w);
}

static void
test_message_folded_message_id(void)
{
	static const char text[] = "Message-ID:\r\n <folded@example.com>\r\n"
	    "Date: x\r\n\r\nbody\r\n";
	struct message_writer w;
	struct collected out;

	write_message(text, &out, &w);
	CHECK_STR_EQ(message_writer_message_id(&w), "<folded@example.com>");
	CHECK_STR_EQ(out.buf + 13, text);
	message_writer_clear(&w);
}

static void
test_message_header_case_insensitive(void)
{
	static const char text[] = "DATE: x\r\nmessage-id: <m@example.com>\r\n\r\n";
	struct message_writer w;
	struct collected out;

	write_message(text, &out, &w);
	CHECK_STR_EQ(out.buf + 13, text);
	message_writer_clear(&w);
}

static void
test_message_without_body(void)
{
	static const char text[] = "Subject: only headers\r\n";
	struct message_writer w;
	struct collected out;

	write_message(text, &out, &w);
	CHECK(strncmp(out.buf + 13, text, strlen(text)) == 0);
	CHECK(strstr(out.buf, "Date: ") != NULL);
	CHECK(strstr(out.buf, "Message-ID: ") != NULL);
	message_writer_clear(&w);
}

static void
test_message_body_lookalike_ignored(void)
{
	static const char text[] = "Subject: s\r\n\r\nDate: not a header\r\n"
	    "Message-ID: <body@example.com>\r\n";
	struct message_writer w;
	struct collected out;

	write_message(text, &out, &w);
	CHECK(message_writer_message_id(&w) != NULL &&
	    strcmp(message_writer_message_id(&w), "<body@example.com>") != 0);
	message_writer_clear(&w);
}

static const struct check_case check_cases[] = {
	CHECK_CASE(test_message_keeps_existing_headers),
	CHECK_CASE(test_message_adds_missing_headers),
	CHECK_CASE(test_message_folded_message_id),
	CHECK_CASE(test_message_header_case_insensitive),
	CHECK_CASE(test_message_without_body),
	CHECK_CASE(test_message_body_lookalike_ignored),
};
CHECK_MAIN(check_cases)
