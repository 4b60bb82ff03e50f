/*
 * Fuzz target: the header section functions that `sendmail -t` and the
 * pickup directory run on text a local user controls. The first byte
 * picks the options; the rest is the message text. Checked on top of
 * memory safety:
 *   - header_section_end() and header_field_next() stay inside the text
 *     and always make progress;
 *   - no address taken from a header has a CR, LF or NUL, which would
 *     let a header smuggle SMTP commands into RCPT TO or MAIL FROM;
 *   - header_section_remove() leaves none of the dropped fields and
 *     returns a section that ends with its empty line.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "header.h"

static void
check_address(const char *address)
{
	if (address == NULL || strpbrk(address, "\r\n") != NULL)
		abort();
}

static void
check_addresses(const struct header_addresses *list)
{
	size_t i;

	for (i = 0; i < list->count; i++)
		check_address(list->items[i]);
}

static void
walk_fields(const char *section, size_t len)
{
	struct header_field field;
	size_t pos = 0, before;

	for (;;) {
		before = pos;
		if (header_field_next(section, len, &pos, &field) != 1)
			break;
		if (pos <= before || pos > len)
			abort();
		if (field.offset + field.length > len)
			abort();
		if (field.name != NULL && (field.name < section ||
		    field.name + field.name_len > section + len))
			abort();
		if (field.value != NULL && (field.value < section ||
		    field.value + field.value_len > section + len))
			abort();
		header_field_is(&field, "Bcc");
	}
}

static void
check_remove(const char *section, size_t len)
{
	const char *const *drop;
	size_t out_len = 0;
	char *out;

	out = header_section_remove(section, len, header_submission_drop, &out_len);
	if (out == NULL)
		abort();
	for (drop = header_submission_drop; *drop != NULL; drop++)
		if (header_section_has(out, out_len, *drop))
			abort();
	if (out_len < 1 || out[out_len - 1] != '\n')
		abort();
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct header_addresses list = { NULL, 0 };
	const char *text, *domain;
	char *copy, *sender = NULL, *error = NULL;
	size_t len, end = 0;
	bool at_eof;

	if (size == 0)
		return 0;
	at_eof = (data[0] & 1) != 0;
	domain = (data[0] & 2) != 0 ? "example.org" : NULL;

	/* A private copy, so that reads past the end are caught. */
	len = size - 1;
	copy = malloc(len > 0 ? len : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data + 1, len);
	text = copy;

	if (header_section_end(text, len, at_eof, &end) == 1) {
		if (end > len)
			abort();
		walk_fields(text, end);
		header_section_has(text, end, "To");

		if (header_recipients(text, end, domain, &list, &error) == 0)
			check_addresses(&list);
		free(error);
		error = NULL;
		header_addresses_clear(&list);

		if (header_sender(text, end, domain, &sender, &error) == 1)
			check_address(sender);
		free(sender);
		free(error);
		error = NULL;

		check_remove(text, end);
	}

	/* The whole text as one address list, as in a To: value. */
	header_address_list_parse(text, len, domain, &list, &error);
	check_addresses(&list);
	header_addresses_clear(&list);
	free(error);

	free(copy);
	return 0;
}
