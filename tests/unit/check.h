/*
 * A minimal test harness for the unit tests: CHECK macros that report
 * FILE:LINE, the failing expression and the values, and a main() that
 * runs a table of test functions.
 *
 * Each test program includes this header once, defines its tests as
 * "static void test_name(void)" and ends with:
 *
 *	static const struct check_case check_cases[] = {
 *		CHECK_CASE(test_name),
 *	};
 *	CHECK_MAIN(check_cases)
 *
 * Running the program with test names as arguments runs only those tests.
 * The exit status is 1 when any check failed.
 */
#ifndef RELAYQ_CHECK_H
#define RELAYQ_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct check_case {
	const char *name;
	void (*run)(void);
};

#define CHECK_CASE(fn) { #fn, fn }

/* Failed checks in the current test and in the whole run. */
static int check_failed_in_case;
static int check_failed_total;

static void
check_fail(const char *file, int line, const char *expr, const char *detail)
{
	fprintf(stderr, "%s:%d: check failed: %s%s%s\n", file, line, expr,
	    detail[0] != '\0' ? "\n    " : "", detail);
	check_failed_in_case++;
	check_failed_total++;
}

#define CHECK(expr) do {						\
	if (!(expr))							\
		check_fail(__FILE__, __LINE__, #expr, "");		\
} while (0)

#define CHECK_INT_EQ(actual, expected) do {				\
	intmax_t check_a_ = (intmax_t)(actual);				\
	intmax_t check_e_ = (intmax_t)(expected);			\
	if (check_a_ != check_e_) {					\
		char check_d_[128];					\
		snprintf(check_d_, sizeof(check_d_),			\
		    "got %jd, expected %jd", check_a_, check_e_);	\
		check_fail(__FILE__, __LINE__,				\
		    #actual " == " #expected, check_d_);		\
	}								\
} while (0)

#define CHECK_UINT_EQ(actual, expected) do {				\
	uintmax_t check_a_ = (uintmax_t)(actual);			\
	uintmax_t check_e_ = (uintmax_t)(expected);			\
	if (check_a_ != check_e_) {					\
		char check_d_[128];					\
		snprintf(check_d_, sizeof(check_d_),			\
		    "got %ju, expected %ju", check_a_, check_e_);	\
		check_fail(__FILE__, __LINE__,				\
		    #actual " == " #expected, check_d_);		\
	}								\
} while (0)

/* Compare strings. NULL equals only NULL and prints as (null). */
#define CHECK_STR_EQ(actual, expected) do {				\
	const char *check_a_ = (actual);				\
	const char *check_e_ = (expected);				\
	if (!check_str_equal(check_a_, check_e_)) {			\
		char *check_d_ = check_describe_strings(check_a_, check_e_); \
		check_fail(__FILE__, __LINE__,				\
		    #actual " == " #expected, check_d_);		\
		free(check_d_);						\
	}								\
} while (0)

static int
check_str_equal(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static char *
check_describe_strings(const char *actual, const char *expected)
{
	size_t size = 64 + (actual ? strlen(actual) : 6) + (expected ? strlen(expected) : 6);
	char *out = malloc(size);

	if (out == NULL)
		abort();
	snprintf(out, size, "got      \"%s\"\n    expected \"%s\"",
	    actual ? actual : "(null)", expected ? expected : "(null)");
	return out;
}

static int
check_selected(int argc, char **argv, const char *name)
{
	int i;

	if (argc < 2)
		return 1;
	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return 1;
	return 0;
}

#define CHECK_MAIN(cases)						\
int									\
main(int argc, char **argv)						\
{									\
	size_t check_i_;						\
									\
	setvbuf(stdout, NULL, _IOLBF, 0);				\
	for (check_i_ = 0; check_i_ < sizeof(cases) / sizeof((cases)[0]); check_i_++) { \
		if (!check_selected(argc, argv, (cases)[check_i_].name)) \
			continue;					\
		check_failed_in_case = 0;				\
		(cases)[check_i_].run();				\
		printf("%s %s\n", check_failed_in_case ? "FAIL" : "ok  ", \
		    (cases)[check_i_].name);				\
	}								\
	return check_failed_total != 0;					\
}

#endif
