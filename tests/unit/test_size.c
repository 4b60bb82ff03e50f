/* Unit tests for size_parse(). */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "size.h"

static void
test_parse_valid(void)
{
	static const struct {
		const char *text;
		uint64_t bytes;
	} cases[] = {
		{ "0", 0 },
		{ "1", 1 },
		{ "52428800", 52428800 },
		{ "512K", 512 * 1024 },
		{ "512k", 512 * 1024 },
		{ "50M", 50 * 1024 * 1024 },
		{ "50m", 50 * 1024 * 1024 },
		{ "1G", 1024 * 1024 * 1024 },
		{ "1g", 1024 * 1024 * 1024 },
		{ "0K", 0 },
		{ "18446744073709551615", UINT64_MAX },
		{ "17179869183G", UINT64_C(17179869183) << 30 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *errstr = NULL;
		uint64_t bytes = 7;

		CHECK_INT_EQ(size_parse(cases[i].text, &bytes, &errstr), 0);
		CHECK_UINT_EQ(bytes, cases[i].bytes);
		CHECK_STR_EQ(errstr, NULL);
		free(errstr);
	}
}

static void
test_parse_invalid(void)
{
	static const char *const cases[] = {
		"",
		"K",
		"-1",
		"+1",
		" 1",
		"1 ",
		"1.5M",
		"1KB",
		"1T",
		"1MM",
		"0x10",
		"ten",
		"18446744073709551616",
		"17179869184G",
		"99999999999999999999K",
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *errstr = NULL;
		uint64_t bytes = 7;

		CHECK_INT_EQ(size_parse(cases[i], &bytes, &errstr), -1);
		CHECK(errstr != NULL);
		CHECK_UINT_EQ(bytes, 7);
		free(errstr);
	}
}

static void
test_parse_error_message(void)
{
	char *errstr = NULL;
	uint64_t bytes;

	CHECK_INT_EQ(size_parse("50MB", &bytes, &errstr), -1);
	CHECK_STR_EQ(errstr, "invalid size \"50MB\": expected a number of bytes, "
	    "optionally followed by K, M or G, such as 512K or 50M");
	free(errstr);

	errstr = NULL;
	CHECK_INT_EQ(size_parse("17179869184G", &bytes, &errstr), -1);
	CHECK_STR_EQ(errstr, "invalid size \"17179869184G\": too large");
	free(errstr);

	CHECK_INT_EQ(size_parse("x", &bytes, NULL), -1);
}

static const struct check_case check_cases[] = {
	CHECK_CASE(test_parse_valid),
	CHECK_CASE(test_parse_invalid),
	CHECK_CASE(test_parse_error_message),
};

CHECK_MAIN(check_cases)
