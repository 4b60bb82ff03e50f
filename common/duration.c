/* Durations written as NUMBER UNIT groups: "30s", "5m", "1h30m", "5d". */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "duration.h"
#include "util.h"

#define DURATION_HINT "expected a number followed by s, m, h, d or w, such as 30s, 5m or 1h30m"

/* Seconds per unit letter, or 0 for a letter that is no unit. */
static int64_t
duration_unit_seconds(char unit)
{
	switch (unit) {
	case 's':
		return 1;
	case 'm':
		return 60;
	case 'h':
		return 60 * 60;
	case 'd':
		return 24 * 60 * 60;
	case 'w':
		return 7 * 24 * 60 * 60;
	default:
		return 0;
	}
}

/* Parse the digits at *P into *NUMBER and advance *P; false on overflow. */
static bool
duration_parse_number(const char **p, int64_t *number)
{
	int64_t n = 0;

	while (**p >= '0' && **p <= '9') {
		int digit = **p - '0';

		if (n > (INT64_MAX - digit) / 10)
			return false;
		n = n * 10 + digit;
		(*p)++;
	}
	*number = n;
	return true;
}

int
duration_parse(const char *text, int64_t *seconds, char **errstr)
{
	const char *p = text;
	int64_t total = 0;

	if (*p == '\0')
		return set_error(errstr, "invalid duration \"\": " DURATION_HINT);

	/* A lone number means seconds; in "1h30" the unit of 30 is missing. */
	if (text[strspn(text, "0123456789")] == '\0') {
		if (!duration_parse_number(&p, &total))
			return set_error(errstr, "invalid duration \"%s\": too large", text);
		*seconds = total;
		return 0;
	}

	while (*p != '\0') {
		int64_t number, unit;

		if (*p < '0' || *p > '9')
			return set_error(errstr, "invalid duration \"%s\": " DURATION_HINT, text);
		if (!duration_parse_number(&p, &number))
			return set_error(errstr, "invalid duration \"%s\": too large", text);
		unit = duration_unit_seconds(*p);
		if (unit == 0)
			return set_error(errstr, "invalid duration \"%s\": " DURATION_HINT, text);
		p++;

		if (number > INT64_MAX / unit || total > INT64_MAX - number * unit)
			return set_error(errstr, "invalid duration \"%s\": too large", text);
		total += number * unit;
	}

	*seconds = total;
	return 0;
}

/*
 * Only the two largest units are shown, so "3d4h" also stands for
 * 3d4h59m; the second unit is left out when it is zero.
 */
void
duration_format(int64_t seconds, char *buf, size_t size)
{
	static const struct {
		char name;
		uint64_t seconds;
	} units[] = {
		{ 'd', 24 * 60 * 60 },
		{ 'h', 60 * 60 },
		{ 'm', 60 },
		{ 's', 1 },
	};
	const size_t unit_count = sizeof(units) / sizeof(units[0]);
	const char *sign = seconds < 0 ? "-" : "";
	uint64_t rest;
	size_t i;

	if (size == 0)
		return;

	/* Negate in unsigned arithmetic so that INT64_MIN does not overflow. */
	rest = seconds < 0 ? -(uint64_t)seconds : (uint64_t)seconds;
	if (rest == 0) {
		snprintf(buf, size, "0s");
		return;
	}

	for (i = 0; rest < units[i].seconds; i++)
		;
	if (i + 1 < unit_count) {
		uint64_t next = rest % units[i].seconds / units[i + 1].seconds;

		if (next != 0) {
			snprintf(buf, size, "%s%llu%c%llu%c", sign,
			    (unsigned long long)(rest / units[i].seconds), units[i].name,
			    (unsigned long long)next, units[i + 1].name);
			return;
		}
	}
	snprintf(buf, size, "%s%llu%c", sign,
	    (unsigned long long)(rest / units[i].seconds), units[i].name);
}
