/*
 * Unit tests for the Event Log message table in relayqd.exe: the Event
 * Viewer loads the EventMessageFile as a data file and formats each
 * event's message id with its insertion strings, and this test does the
 * same. $RELAYQD_EXE names relayqd.exe (tests/unit/meson.build sets it).
 */
#include "compat.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "relayqd_messages.h"
#include "util.h"

static HMODULE
test_load_relayqd(void)
{
	const char *exe = getenv("RELAYQD_EXE");
	wchar_t *wide;
	HMODULE module;

	CHECK(exe != NULL);
	if (exe == NULL)
		return NULL;
	wide = compat_utf8_to_wide(exe);
	CHECK(wide != NULL);
	if (wide == NULL)
		return NULL;
	module = LoadLibraryExW(wide, NULL, LOAD_LIBRARY_AS_DATAFILE |
	    LOAD_LIBRARY_AS_IMAGE_RESOURCE);
	CHECK(module != NULL);
	free(wide);
	return module;
}

/* The text of message ID in MODULE with TEXT as %1, as UTF-8, or NULL. */
static char *
test_format(HMODULE module, DWORD id, const wchar_t *text)
{
	DWORD_PTR args[1] = { (DWORD_PTR)text };
	wchar_t buffer[512];
	DWORD n;

	n = FormatMessageW(FORMAT_MESSAGE_FROM_HMODULE |
	    FORMAT_MESSAGE_ARGUMENT_ARRAY, module, id,
	    MAKELANGID(LANG_ENGLISH, SUBLANG_ENGLISH_US), buffer,
	    sizeof(buffer) / sizeof(buffer[0]), (va_list *)args);
	if (n == 0)
		return NULL;
	return compat_wide_to_utf8(buffer);
}

/* Each level's message is exactly the log line, with no line break added. */
static void
test_message_per_level_is_the_line(void)
{
	static const DWORD ids[] = {
		RELAYQD_MSG_ERROR, RELAYQD_MSG_WARNING, RELAYQD_MSG_INFO,
	};
	HMODULE module = test_load_relayqd();
	char *text;
	size_t i;

	if (module == NULL)
		return;
	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		text = test_format(module, ids[i],
		    L"event=started version=1 listen=127.0.0.1:25");
		CHECK_STR_EQ(text, "event=started version=1 listen=127.0.0.1:25");
		free(text);
	}
	FreeLibrary(module);
}

/* The severity bits of the ids match the event types they are used with. */
static void
test_message_ids_carry_severity(void)
{
	CHECK_UINT_EQ(RELAYQD_MSG_ERROR >> 30, 3);
	CHECK_UINT_EQ(RELAYQD_MSG_WARNING >> 30, 2);
	CHECK_UINT_EQ(RELAYQD_MSG_INFO >> 30, 1);
}

/* An id outside the table is not found, so the test above can fail. */
static void
test_unknown_id_not_found(void)
{
	HMODULE module = test_load_relayqd();
	char *text;

	if (module == NULL)
		return;
	text = test_format(module, 0x40000063, L"x");
	CHECK(text == NULL);
	CHECK_UINT_EQ(GetLastError(), ERROR_MR_MID_NOT_FOUND);
	free(text);
	FreeLibrary(module);
}

static const struct check_case check_cases[] = {
	CHECK_CASE(test_message_per_level_is_the_line),
	CHECK_CASE(test_message_ids_carry_severity),
	CHECK_CASE(test_unknown_id_not_found),
};

CHECK_MAIN(check_cases)
