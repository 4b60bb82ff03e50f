/*
 * Fuzz target: the DATA phase state machine. The input is fed in pieces
 * whose sizes come from the input itself, and the output must never
 * contain a bare CR or a bare LF, whatever the split.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_data.h"

struct sink_state {
	size_t len;
	int last_cr;
};

static void
check_sink(void *arg, const char *data, size_t len)
{
	struct sink_state *st = arg;
	size_t i;

	for (i = 0; i < len; i++) {
		if (data[i] == '\n' && !st->last_cr)
			abort();
		if (st->last_cr && data[i] != '\n')
			abort();
		st->last_cr = data[i] == '\r';
	}
	st->len += len;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_data_parser p;
	struct sink_state st = { 0, 0 };
	size_t pos = 0, step;

	if (size == 0)
		return 0;
	step = (data[0] % 16) + 1;
	data++;
	size--;

	smtp_data_init(&p, check_sink, &st);
	while (pos < size && !smtp_data_done(&p)) {
		size_t n = size - pos < step ? size - pos : step;
		size_t used = smtp_data_feed(&p, (const char *)data + pos, n);

		if (used > n)
			abort();
		pos += used;
		if (used < n && !smtp_data_done(&p))
			abort();
	}
	/* A finished message ends with CRLF or is empty. */
	if (smtp_data_done(&p) && st.last_cr)
		abort();
	return 0;
}
