/* Byte sizes: a decimal number with an optional K, M or G suffix (powers of 1024). */
#include <stdint.h>

#include "size.h"
#include "util.h"

#define SIZE_HINT "expected a number of bytes, optionally followed by K, M or G, such as 512K or 50M"

/* Multiplier of a suffix letter (either case), or 0 when it is none. */
static uint64_t
size_suffix_multiplier(char suffix)
{
	switch (suffix) {
	case 'K':
	case 'k':
		return UINT64_C(1) << 10;
	case 'M':
	case 'm':
		return UINT64_C(1) << 20;
	case 'G':
	case 'g':
		return UINT64_C(1) << 30;
	default:
		return 0;
	}
}

int
size_parse(const char *text, uint64_t *bytes, char **errstr)
{
	const char *p = text;
	uint64_t number = 0, multiplier = 1;

	if (*p < '0' || *p > '9')
		return set_error(errstr, "invalid size \"%s\": " SIZE_HINT, text);

	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned digit = *p - '0';

		if (number > (UINT64_MAX - digit) / 10)
			return set_error(errstr, "invalid size \"%s\": too large", text);
		number = number * 10 + digit;
	}

	if (*p != '\0') {
		multiplier = size_suffix_multiplier(*p);
		if (multiplier == 0 || p[1] != '\0')
			return set_error(errstr, "invalid size \"%s\": " SIZE_HINT, text);
	}
	if (number > UINT64_MAX / multiplier)
		return set_error(errstr, "invalid size \"%s\": too large", text);

	*bytes = number * multiplier;
	return 0;
}
