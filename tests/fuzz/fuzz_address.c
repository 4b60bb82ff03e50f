/* Fuzz target: SMTP path parsing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text, *address = NULL, *error = NULL;
	const char *rest = NULL;

	text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';

	if (address_parse_path(text, size > 0 && data[0] & 1, &address, &rest,
	    &error) == 0) {
		if (address == NULL || rest < text || rest > text + size)
			abort();
		if (address[0] != '\0' && !address_is_valid(address))
			abort();
		address_is_8bit(address);
		free(address);
	} else {
		free(error);
	}
	free(text);
	return 0;
}
