/* Unit tests for duration_parse() and duration_format(). */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "duration.h"

static void
test_parse_valid(void)
{
	static const struct {
		const char *text;
		int64_t seconds;
	} cases[] = {
		{ "0", 0 },
		{ "45", 45 },
		{ "30s", 30 },
		{ "5m", 300 },
		{ "2h", 7200 },
		{ "5d", 432000 },
		{ "1w", 604800 },
		{ "1h30m", 5400 },
		{ "1d2h3m4s", 93784 },
		{ "0s", 0 },
		{ "90m", 5400 },
		{ "9223372036854775807", INT64_MAX },
		{ "9223372036854775807s", INT64_MAX },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *errstr = NULL;
		int64_t seconds = -1;

		CHECK_INT_EQ(duration_parse(cases[i].text, &seconds, &errstr), 0);
		CHECK_INT_EQ(seconds, cases[i].seconds);
		CHECK_STR_EQ(errstr, NULL);
		free(errstr);
	}
}

static void
test_parse_invalid(void)
{
	static const char *const cases[] = {
		"",
		"s",
		"-5m",
		"+5m",
		" 5m",
		"5m ",
		"5 m",
		"5x",
		"5M",
		"1h30",
		"1.5h",
		"h1",
		"5mm",
		"9223372036854775808",
		"9223372036854775807m",
		"15250284452472w",
		"9223372036854775807s1s",
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *errstr = NULL;
		int64_t seconds = 12345;

		CHECK_INT_EQ(duration_parse(cases[i], &seconds, &errstr), -1);
		CHECK(errstr != NULL);
		CHECK_INT_EQ(seconds, 12345);
		free(errstr);
	}
}

static void
test_parse_error_message(void)
{
	char *errstr = NULL;
	int64_t seconds;

	CHECK_INT_EQ(duration_parse("5x", &seconds, &errstr), -1);
	CHECK_STR_EQ(errstr, "invalid duration \"5x\": expected a number followed by "
	    "s, m, h, d or w, such as 30s, 5m or 1h30m");
	free(errstr);

	errstr = NULL;
	CHECK_INT_EQ(duration_parse("99999999999999999999", &seconds, &errstr), -1);
	CHECK_STR_EQ(errstr, "invalid duration \"99999999999999999999\": too large");
	free(errstr);
}

static void
test_parse_null_errstr(void)
{
	int64_t seconds;

	CHECK_INT_EQ(duration_parse("abc", &seconds, NULL), -1);
}

static void
test_format(void)
{
	static const struct {
		int64_t seconds;
		const char *text;
	} cases[] = {
		{ 0, "0s" },
		{ 45, "45s" },
		{ 60, "1m" },
		{ 61, "1m1s" },
		{ 300, "5m" },
		{ 3600, "1h" },
		{ 3605, "1h" },
		{ 7800, "2h10m" },
		{ 86400, "1d" },
		{ 273600, "3d4h" },
		{ 273600 + 59 * 60 + 59, "3d4h" },
		{ 432000, "5d" },
		{ 604800, "7d" },
		{ -90, "-1m30s" },
		{ INT64_MIN, "-106751991167300d15h" },
		{ INT64_MAX, "106751991167300d15h" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[64];

		duration_format(cases[i].seconds, buf, sizeof(buf));
		CHECK_STR_EQ(buf, cases[i].text);
	}
}

static void
test_format_truncates(void)
{
	char buf[4];

	duration_format(7800, buf, sizeof(buf));
	CHECK_STR_EQ(buf, "2h1");
	duration_format(7800, buf, 0);
}

static void
test_format_round_trip(void)
{
	static const int64_t cases[] = { 1, 59, 60, 90, 3600, 5400, 86400, 90000 };
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[32], *errstr = NULL;
		int64_t seconds = -1;

		duration_format(cases[i], buf, sizeof(buf));
		CHECK_INT_EQ(duration_parse(buf, &seconds, &errstr), 0);
		CHECK_INT_EQ(seconds, cases[i]);
		free(errstr);
	}
}

static const struct check_case check_cases[] = {
	CHECK_CASE(test_parse_valid),
	CHECK_CASE(test_parse_invalid),
	CHECK_CASE(test_parse_error_message),
	CHECK_CASE(test_parse_null_errstr),
	CHECK_CASE(test_format),
	CHECK_CASE(test_format_truncates),
	CHECK_CASE(test_format_round_trip),
};

CHECK_MAIN(check_cases)
