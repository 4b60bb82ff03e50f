/*
 * Fuzz target: header handling on intake. Whatever the text, the
 * output must end with a Message-ID the writer can name, and the
 * writer's byte count must match what it wrote.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"

static void
count_sink(void *arg, const char *data, size_t len)
{
	size_t *total = arg;

	(void)data;
	*total += len;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct message_writer w;
	size_t total = 0, pos = 0, step;

	if (size == 0)
		return 0;
	step = (data[0] % 64) + 1;
	message_writer_init(&w, "Received: fuzz\r\n", "fuzz.example", count_sink, &total);
	while (pos < size) {
		size_t n = size - pos < step ? size - pos : step;

		message_writer_write(&w, (const char *)data + pos, n);
		pos += n;
	}
	message_writer_finish(&w);
	if (w.size != total)
		abort();
	if (!w.has_date || !w.has_message_id)
		abort();
	message_writer_clear(&w);
	return 0;
}
