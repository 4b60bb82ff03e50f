/* Fuzz target: the SMTP reply parser and EHLO keyword lookup. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_proto.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_reply_parser p;
	struct smtp_reply reply;
	const char *text = (const char *)data;
	size_t start = 0, i;

	smtp_reply_parser_init(&p);
	for (i = 0; i <= size; i++) {
		enum smtp_reply_feed rc;
		char *formatted;

		if (i < size && data[i] != '\n')
			continue;
		rc = smtp_reply_parser_feed(&p, text + start, i - start);
		start = i + 1;
		if (rc == SMTP_REPLY_INVALID) {
			smtp_reply_parser_clear(&p);
			continue;
		}
		if (rc == SMTP_REPLY_MORE)
			continue;
		smtp_reply_parser_take(&p, &reply);
		if (reply.code < 200 || reply.code > 599)
			abort();
		formatted = smtp_reply_format(&reply);
		if (strchr(formatted, '\n') != NULL)
			abort();
		free(formatted);
		smtp_ehlo_find(reply.text, "AUTH", NULL);
		smtp_ehlo_find(reply.text, "SIZE", NULL);
		smtp_reply_clear(&reply);
	}
	smtp_reply_parser_clear(&p);
	return 0;
}
