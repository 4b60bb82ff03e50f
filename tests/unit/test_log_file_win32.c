/* Unit tests for the rotating log file of the Windows service (log_file.h). */
#include "compat.h"

#include <io.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "log_file.h"
#include "util.h"

#define TEST_MAX_SIZE	100
#define TEST_KEEP	3

/* A new empty directory under %TEMP% and the path of a log file in it. */
struct test_dir {
	char dir[MAX_PATH];
	char path[MAX_PATH + 16];
};

static void
test_dir_make(struct test_dir *t)
{
	char base[MAX_PATH];
	DWORD n = GetTempPathA(sizeof(base), base);

	if (n == 0 || n >= sizeof(base))
		abort();
	snprintf(t->dir, sizeof(t->dir), "%srelayq-logfile-XXXXXX", base);
	if (mkdtemp(t->dir) == NULL)
		abort();
	snprintf(t->path, sizeof(t->path), "%s\\test.log", t->dir);
}

/* PATH with suffix ".N", or PATH itself for 0. */
static char *
test_name(const struct test_dir *t, int n)
{
	return n == 0 ? xstrdup(t->path) : xasprintf("%s.%d", t->path, n);
}

/* The whole content of file N, or NULL when it does not exist. */
static char *
test_read(const struct test_dir *t, int n)
{
	char *name = test_name(t, n), *data;
	FILE *f = fopen(name, "rb");
	long size;

	free(name);
	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, 0, SEEK_SET);
	data = xcalloc((size_t)size + 1, 1);
	if (fread(data, 1, (size_t)size, f) != (size_t)size)
		abort();
	fclose(f);
	return data;
}

static void
test_dir_remove(struct test_dir *t)
{
	char *name;
	int i;

	for (i = 0; i <= 9; i++) {
		name = test_name(t, i);
		DeleteFileA(name);
		free(name);
	}
	RemoveDirectoryA(t->dir);
}

/* "line NN xxxx...\n", 30 bytes, so three lines fit into TEST_MAX_SIZE. */
static char *
test_line(int i)
{
	return xasprintf("line %02d abcdefghijklmnopqrstu\n", i);
}

static void
test_write_line(struct log_file *file, int i, int expected_rc)
{
	char *line = test_line(i), *error = NULL;

	CHECK_INT_EQ(strlen(line), 30);
	CHECK_INT_EQ(log_file_write(file, line, strlen(line), &error), expected_rc);
	if (expected_rc == 0)
		CHECK_STR_EQ(error, NULL);
	else
		CHECK(error != NULL);
	free(error);
	free(line);
}

static void
test_open_rejects_bad_keep(void)
{
	struct test_dir t;
	char *error = NULL;

	test_dir_make(&t);
	CHECK(log_file_open(t.path, TEST_MAX_SIZE, 0, &error) == NULL);
	CHECK(error != NULL && strstr(error, "1 to 9") != NULL);
	free(error);
	error = NULL;
	CHECK(log_file_open(t.path, 0, TEST_KEEP, &error) == NULL);
	CHECK(error != NULL);
	free(error);
	test_dir_remove(&t);
}

static void
test_write_appends_to_existing(void)
{
	struct test_dir t;
	struct log_file *file;
	char *data;
	FILE *f;

	test_dir_make(&t);
	f = fopen(t.path, "wb");
	CHECK(f != NULL);
	fputs("from before\n", f);
	fclose(f);

	file = log_file_open(t.path, TEST_MAX_SIZE, TEST_KEEP, NULL);
	CHECK(file != NULL);
	test_write_line(file, 1, 0);
	log_file_free(file);

	data = test_read(&t, 0);
	CHECK_STR_EQ(data, "from before\nline 01 abcdefghijklmnopqrstu\n");
	free(data);
	test_dir_remove(&t);
}

/*
 * Writing 20 lines of 30 bytes at a maximum of 100 bytes: each file holds
 * three whole lines, the newest are in PATH, and only TEST_KEEP old files
 * remain, which together hold the last lines without a gap.
 */
static void
test_rotation_keeps_newest_lines(void)
{
	struct test_dir t;
	struct log_file *file;
	char *data, *expected, *line;
	int i, n, first;

	test_dir_make(&t);
	file = log_file_open(t.path, TEST_MAX_SIZE, TEST_KEEP, NULL);
	CHECK(file != NULL);
	for (i = 1; i <= 20; i++)
		test_write_line(file, i, 0);
	log_file_free(file);

	/* Lines 19-20 in PATH, 16-18 in .1, 13-15 in .2, 10-12 in .3. */
	for (n = 0; n <= TEST_KEEP; n++) {
		first = n == 0 ? 19 : 19 - 3 * n;
		expected = xstrdup("");
		for (i = first; i < first + 3 && i <= 20; i++) {
			line = test_line(i);
			data = xasprintf("%s%s", expected, line);
			free(expected);
			free(line);
			expected = data;
		}
		data = test_read(&t, n);
		CHECK_STR_EQ(data, expected);
		CHECK(data == NULL || strlen(data) <= TEST_MAX_SIZE);
		free(data);
		free(expected);
	}
	CHECK(test_read(&t, TEST_KEEP + 1) == NULL);
	test_dir_remove(&t);
}

/*
 * A reader that shares read and delete access does not stop a rotation
 * and keeps reading the old file under its new name.
 */
static void
test_rotation_with_open_reader(void)
{
	struct test_dir t;
	struct log_file *file;
	char buffer[64] = "", *data, *line;
	HANDLE reader;
	DWORD got = 0;
	int i;

	test_dir_make(&t);
	file = log_file_open(t.path, TEST_MAX_SIZE, TEST_KEEP, NULL);
	CHECK(file != NULL);
	test_write_line(file, 1, 0);
	reader = CreateFileA(t.path, GENERIC_READ, FILE_SHARE_READ |
	    FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL, OPEN_EXISTING, 0, NULL);
	CHECK(reader != INVALID_HANDLE_VALUE);

	for (i = 2; i <= 4; i++)
		test_write_line(file, i, 0);
	CHECK(ReadFile(reader, buffer, 30, &got, NULL));
	CHECK_INT_EQ(got, 30);
	line = test_line(1);
	CHECK(memcmp(buffer, line, 30) == 0);
	free(line);
	CloseHandle(reader);
	log_file_free(file);

	data = test_read(&t, 0);
	line = test_line(4);
	CHECK_STR_EQ(data, line);
	free(line);
	free(data);
	test_dir_remove(&t);
}

/*
 * A reader without FILE_SHARE_DELETE blocks the rename: the write
 * reports the failed rotation, but the line is in the file, and the next
 * rotation waits until the file has grown by another maximum size.
 */
static void
test_failed_rotation_keeps_line(void)
{
	struct test_dir t;
	struct log_file *file;
	char *data, *line;
	HANDLE reader;
	int i;

	test_dir_make(&t);
	file = log_file_open(t.path, TEST_MAX_SIZE, TEST_KEEP, NULL);
	CHECK(file != NULL);
	for (i = 1; i <= 3; i++)
		test_write_line(file, i, 0);
	reader = CreateFileA(t.path, GENERIC_READ, FILE_SHARE_READ |
	    FILE_SHARE_WRITE, NULL, OPEN_EXISTING, 0, NULL);
	CHECK(reader != INVALID_HANDLE_VALUE);

	test_write_line(file, 4, -1);
	CloseHandle(reader);
	/* 120 bytes now; no new try before 90 + 100 bytes. */
	for (i = 5; i <= 6; i++)
		test_write_line(file, i, 0);
	CHECK(test_read(&t, 1) == NULL);
	test_write_line(file, 7, 0);
	log_file_free(file);

	data = test_read(&t, 1);
	CHECK(data != NULL && strlen(data) == 6 * 30);
	line = test_line(4);
	CHECK(data != NULL && strstr(data, line) != NULL);
	free(line);
	free(data);
	data = test_read(&t, 0);
	line = test_line(7);
	CHECK_STR_EQ(data, line);
	free(line);
	free(data);
	test_dir_remove(&t);
}

/* Text printed to stderr lands in the current file, also after a rotation. */
static void
test_capture_stderr_follows_rotation(void)
{
	struct test_dir t;
	struct log_file *file;
	char *data, *error = NULL;
	int saved = _dup(2);
	int i;

	test_dir_make(&t);
	file = log_file_open(t.path, TEST_MAX_SIZE, TEST_KEEP, NULL);
	CHECK(file != NULL);
	CHECK_INT_EQ(log_file_capture_stderr(file, &error), 0);
	fputs("printed before\n", stderr);
	for (i = 1; i <= 3; i++)
		test_write_line(file, i, 0);
	fputs("printed after\n", stderr);
	log_file_free(file);
	_dup2(saved, 2);
	_close(saved);
	CHECK_STR_EQ(error, NULL);

	data = test_read(&t, 1);
	CHECK(data != NULL && strncmp(data, "printed before\n", 15) == 0);
	free(data);
	data = test_read(&t, 0);
	CHECK(data != NULL && strstr(data, "printed after\n") != NULL);
	free(data);
	test_dir_remove(&t);
}

static const struct check_case check_cases[] = {
	CHECK_CASE(test_open_rejects_bad_keep),
	CHECK_CASE(test_write_appends_to_existing),
	CHECK_CASE(test_rotation_keeps_newest_lines),
	CHECK_CASE(test_rotation_with_open_reader),
	CHECK_CASE(test_failed_rotation_keeps_line),
	CHECK_CASE(test_capture_stderr_follows_rotation),
};

CHECK_MAIN(check_cases)
