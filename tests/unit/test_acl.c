/*
 * Tests of common/acl_win32.c: the DACL walk on security descriptors
 * built from SDDL, and the DACLs of real files and directories in a
 * private temporary directory. Windows only.
 *
 * Wine 8 keeps no security descriptors: it maps a DACL to the Unix mode
 * (owner, the groups of its own token, Everyone) and builds a DACL from
 * the mode when asked. Cases that need more than that are skipped under
 * Wine, each with the reason.
 */
#include "compat.h"

#include <aclapi.h>
#include <sddl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl.h"
#include "check.h"
#include "secret.h"
#include "util.h"

#define EVERYONE_READ_SDDL	L"D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FR;;;WD)"
#define PRIVATE_SDDL		L"D:P(A;;FA;;;SY)(A;;FA;;;BA)"

/* The private directory that contains every file the tests create. */
static char test_dir[MAX_PATH * 3];

/* Whether TEXT is set and contains PART. */
static bool
contains(const char *text, const char *part)
{
	return text != NULL && strstr(text, part) != NULL;
}

static bool
running_under_wine(void)
{
	HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");

	return ntdll != NULL && GetProcAddress(ntdll, "wine_get_version") != NULL;
}

/* Print why a case does not run here; the case still counts as passed. */
static void
skip_case(const char *name, const char *reason)
{
	printf("SKIP %s: %s\n", name, reason);
}

/* Number of readers acl_find_readers() finds in the descriptor of SDDL, with their SIDs. */
static int
readers_of_sddl(const wchar_t *sddl, char **sids)
{
	PSECURITY_DESCRIPTOR sd = NULL;
	char *readers = NULL, *error = NULL;
	int count;

	*sids = NULL;
	if (!ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl,
	    SDDL_REVISION_1, &sd, NULL)) {
		fprintf(stderr, "invalid test SDDL %ls\n", sddl);
		return -2;
	}
	count = acl_find_readers(sd, &readers, sids, &error);
	if (count == -1)
		fprintf(stderr, "acl_find_readers: %s\n", error);
	LocalFree(sd);
	free(readers);
	free(error);
	return count;
}

/* Number of readers of the file or directory PATH, -1 when its DACL cannot be read. */
static int
readers_of_path(const char *path)
{
	PSECURITY_DESCRIPTOR sd = NULL;
	wchar_t *wide = compat_utf8_to_wide(path);
	char *readers = NULL, *sids = NULL, *error = NULL;
	int count = -1;

	if (GetNamedSecurityInfoW(wide, SE_FILE_OBJECT, OWNER_SECURITY_INFORMATION |
	    DACL_SECURITY_INFORMATION, NULL, NULL, NULL, NULL, &sd) == ERROR_SUCCESS) {
		count = acl_find_readers(sd, &readers, &sids, &error);
		LocalFree(sd);
	}
	free(wide);
	free(readers);
	free(sids);
	free(error);
	return count;
}

/*
 * Give PATH the DACL of SDDL with SetFileSecurityW(), which Wine maps to
 * the Unix mode faithfully. Wine's SetNamedSecurityInfoW() would add the
 * parent's inheritable entries, even to a protected DACL.
 */
static bool
set_dacl(const char *path, const wchar_t *sddl)
{
	PSECURITY_DESCRIPTOR sd = NULL;
	wchar_t *wide = compat_utf8_to_wide(path);
	BOOL ok;

	if (!ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl,
	    SDDL_REVISION_1, &sd, NULL)) {
		free(wide);
		return false;
	}
	ok = SetFileSecurityW(wide, DACL_SECURITY_INFORMATION, sd);
	LocalFree(sd);
	free(wide);
	return ok;
}

static void make_test_dir(void);

/* PATH below the test directory, which the first call creates. */
static char *
test_path(const char *name)
{
	if (test_dir[0] == '\0')
		make_test_dir();
	return xasprintf("%s\\%s", test_dir, name);
}

static bool
create_file(const char *path)
{
	FILE *fp = fopen(path, "wb");

	if (fp == NULL)
		return false;
	fputs("secret\n", fp);
	fclose(fp);
	return true;
}

static bool
create_dir(const char *path)
{
	wchar_t *wide = compat_utf8_to_wide(path);
	BOOL ok = CreateDirectoryW(wide, NULL);

	free(wide);
	return ok;
}

/* --- the DACL walk --- */

struct readers_case {
	const char *name;
	const wchar_t *sddl;
	int readers;
	const char *sids;	/* expected *SIDS, NULL for none */
};

static const struct readers_case readers_cases[] = {
	{ "system and administrators", PRIVATE_SDDL, 0, NULL },
	{ "everyone reads", EVERYONE_READ_SDDL, 1, "*S-1-1-0" },
	{ "users read", L"D:P(A;;FA;;;SY)(A;;FR;;;BU)", 1, "*S-1-5-32-545" },
	{ "authenticated users read", L"D:P(A;;FA;;;SY)(A;;0x1;;;AU)", 1,
	    "*S-1-5-11" },
	{ "generic read", L"D:P(A;;GR;;;WD)", 1, "*S-1-1-0" },
	{ "generic all", L"D:P(A;;GA;;;WD)", 1, "*S-1-1-0" },
	{ "write dac counts as read", L"D:P(A;;WD;;;BU)", 1, "*S-1-5-32-545" },
	{ "write only", L"D:P(A;;FA;;;SY)(A;;0x2;;;WD)", 0, NULL },
	{ "deny ace ignored", L"D:P(D;;FA;;;WD)(A;;FA;;;SY)", 0, NULL },
	{ "inherit only ignored", L"D:P(A;;FA;;;SY)(A;OICIIO;FR;;;WD)", 0, NULL },
	{ "inherited ace counts", L"D:(A;ID;FR;;;BU)", 1, "*S-1-5-32-545" },
	{ "owner reads", L"O:S-1-5-21-1-2-3-1001D:P(A;;FA;;;SY)"
	    L"(A;;FR;;;S-1-5-21-1-2-3-1001)", 0, NULL },
	{ "owner rights", L"O:S-1-5-21-1-2-3-1001D:P(A;;FR;;;OW)", 0, NULL },
	{ "other user reads", L"O:S-1-5-21-1-2-3-1001D:P(A;;FA;;;SY)"
	    L"(A;;FR;;;S-1-5-21-1-2-3-1002)", 1, "*S-1-5-21-1-2-3-1002" },
	{ "owner everyone", L"O:WDD:P(A;;FR;;;WD)", 1, "*S-1-1-0" },
	{ "listed once", L"D:(A;;FR;;;WD)(A;ID;FR;;;WD)", 1, "*S-1-1-0" },
	{ "two readers", L"D:P(A;;FR;;;WD)(A;;FR;;;BU)", 2,
	    "*S-1-1-0 *S-1-5-32-545" },
	{ "empty dacl", L"D:P", 0, NULL },
};

static void
test_find_readers_table(void)
{
	size_t i;
	char *sids;

	for (i = 0; i < sizeof(readers_cases) / sizeof(readers_cases[0]); i++) {
		const struct readers_case *c = &readers_cases[i];
		int count = readers_of_sddl(c->sddl, &sids);

		if (count != c->readers)
			fprintf(stderr, "case \"%s\"\n", c->name);
		CHECK_INT_EQ(count, c->readers);
		CHECK_STR_EQ(sids, c->sids);
		free(sids);
	}
}

static void
test_find_readers_names_account(void)
{
	PSECURITY_DESCRIPTOR sd = NULL;
	char *readers = NULL, *sids = NULL, *error = NULL;

	CHECK(ConvertStringSecurityDescriptorToSecurityDescriptorW(
	    EVERYONE_READ_SDDL, SDDL_REVISION_1, &sd, NULL));
	CHECK_INT_EQ(acl_find_readers(sd, &readers, &sids, &error), 1);
	CHECK_STR_EQ(readers, "Everyone (S-1-1-0)");
	LocalFree(sd);
	free(readers);
	free(sids);
	free(error);
}

/* A NULL DACL, built by hand: Wine 8 turns the SDDL "D:NO_ACCESS_CONTROL" into an empty DACL. */
static PSECURITY_DESCRIPTOR
null_dacl_descriptor(void)
{
	PSECURITY_DESCRIPTOR sd = xcalloc(1, SECURITY_DESCRIPTOR_MIN_LENGTH);

	if (!InitializeSecurityDescriptor(sd, SECURITY_DESCRIPTOR_REVISION) ||
	    !SetSecurityDescriptorDacl(sd, TRUE, NULL, FALSE))
		fprintf(stderr, "cannot build a NULL DACL: error %lu\n", GetLastError());
	return sd;
}

static void
test_find_readers_null_dacl(void)
{
	PSECURITY_DESCRIPTOR sd = null_dacl_descriptor();
	char *readers = NULL, *sids = NULL, *error = NULL;

	CHECK_INT_EQ(acl_find_readers(sd, &readers, &sids, &error), 1);
	CHECK_STR_EQ(readers, "Everyone (S-1-1-0), because it has a NULL DACL");
	CHECK_STR_EQ(sids, "*S-1-1-0");
	free(sd);
	free(readers);
	free(sids);
	free(error);
}

/* --- files --- */

static void
test_check_file_everyone_rejected(void)
{
	char *path = test_path("everyone.txt"), *error = NULL;

	CHECK(create_file(path));
	CHECK(set_dacl(path, EVERYONE_READ_SDDL));
	/* The precondition: the DACL read back still lets Everyone read. */
	CHECK_INT_EQ(readers_of_path(path), 1);

	CHECK_INT_EQ(acl_check_private_file(path, "test file", &error), -1);
	CHECK(contains(error, path));
	CHECK(contains(error, "Everyone (S-1-1-0)"));
	CHECK(contains(error, "/remove:g *S-1-1-0"));
	free(error);

	error = NULL;
	CHECK_INT_EQ(secret_check_file_mode(path, &error), -1);
	CHECK(contains(error, "smarthost.password_file "));
	CHECK(contains(error, "icacls \""));
	free(error);
	free(path);
}

static void
test_check_file_private_accepted(void)
{
	char *path = test_path("private.txt"), *error = NULL;

	CHECK(create_file(path));
	CHECK(set_dacl(path, PRIVATE_SDDL));
	CHECK_INT_EQ(readers_of_path(path), 0);

	CHECK_INT_EQ(acl_check_private_file(path, "test file", &error), 0);
	CHECK_STR_EQ(error, NULL);
	CHECK_INT_EQ(secret_check_file_mode(path, &error), 0);
	CHECK_STR_EQ(error, NULL);
	free(error);
	free(path);
}

static void
test_check_file_null_dacl_rejected(void)
{
	PSECURITY_DESCRIPTOR sd = null_dacl_descriptor();
	char *path = test_path("null-dacl.txt"), *error = NULL;
	wchar_t *wide = compat_utf8_to_wide(path);

	CHECK(create_file(path));
	CHECK(SetFileSecurityW(wide, DACL_SECURITY_INFORMATION, sd));
	/* Windows returns the NULL DACL; Wine returns an entry for Everyone. */
	CHECK_INT_EQ(acl_check_private_file(path, "test file", &error), -1);
	CHECK(contains(error, "Everyone (S-1-1-0)"));
	free(error);
	free(wide);
	free(path);
	free(sd);
}

static void
test_check_file_missing(void)
{
	char *path = test_path("missing.txt"), *error = NULL;

	CHECK_INT_EQ(acl_check_private_file(path, "test file", &error), -1);
	CHECK(contains(error, "cannot read the ACL of"));
	free(error);
	free(path);
}

/* --- the queue and the data directory --- */

static void
test_prepare_queue_creates_private(void)
{
	char *dir = test_path("queue-new"), *path, *error = NULL;

	path = xasprintf("%s\\queue.db", dir);
	CHECK_INT_EQ(acl_prepare_queue(path, &error), 0);
	CHECK_STR_EQ(error, NULL);
	CHECK(GetFileAttributesA(dir) != INVALID_FILE_ATTRIBUTES);
	CHECK(GetFileAttributesA(path) != INVALID_FILE_ATTRIBUTES);
	CHECK_INT_EQ(readers_of_path(dir), 0);
	CHECK_INT_EQ(readers_of_path(path), 0);

	/* A second start finds both and succeeds. */
	CHECK_INT_EQ(acl_prepare_queue(path, &error), 0);
	CHECK_STR_EQ(error, NULL);
	free(error);
	free(path);
	free(dir);
}

static void
test_prepare_queue_keeps_existing_dir(void)
{
	char *dir = test_path("queue-admin"), *path, *error = NULL;

	path = xasprintf("%s\\queue.db", dir);
	CHECK(create_dir(dir));
	CHECK(set_dacl(dir, L"D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FR;;;WD)"));
	CHECK_INT_EQ(readers_of_path(dir), 1);

	CHECK_INT_EQ(acl_prepare_queue(path, &error), 0);
	CHECK_STR_EQ(error, NULL);
	/* The administrator's directory keeps its DACL; the new database is private. */
	CHECK_INT_EQ(readers_of_path(dir), 1);
	CHECK_INT_EQ(readers_of_path(path), 0);
	free(error);
	free(path);
	free(dir);
}

static void
test_prepare_queue_keeps_existing_file(void)
{
	char *path = test_path("existing.db"), *error = NULL;

	CHECK(create_file(path));
	CHECK(set_dacl(path, EVERYONE_READ_SDDL));
	CHECK_INT_EQ(acl_prepare_queue(path, &error), 0);
	CHECK_STR_EQ(error, NULL);
	CHECK_INT_EQ(readers_of_path(path), 1);
	free(error);
	free(path);
}

static void
test_data_dir_from_environment(void)
{
	char *dir;

	_putenv_s("ProgramData", "D:\\Data");
	dir = acl_data_dir();
	CHECK_STR_EQ(dir, "D:\\Data\\relayq");
	free(dir);

	_putenv_s("ProgramData", "");
	dir = acl_data_dir();
	CHECK_STR_EQ(dir, "C:\\ProgramData\\relayq");
	free(dir);
}

/* A queue in %ProgramData%\relayq makes relayqd create that directory with its DACL. */
static void
test_prepare_queue_creates_data_dir(void)
{
	char *data_dir, *path, *error = NULL;

	free(test_path("unused"));
	_putenv_s("ProgramData", test_dir);
	data_dir = acl_data_dir();
	path = xasprintf("%s\\queue.db", data_dir);
	CHECK_INT_EQ(acl_prepare_queue(path, &error), 0);
	CHECK_STR_EQ(error, NULL);
	CHECK(GetFileAttributesA(data_dir) != INVALID_FILE_ATTRIBUTES);
	CHECK_INT_EQ(readers_of_path(data_dir), 0);
	CHECK_INT_EQ(readers_of_path(path), 0);
	_putenv_s("ProgramData", "");
	free(error);
	free(path);
	free(data_dir);
}

static void
test_protect_data_dir_existing(void)
{
	char *dir = test_path("data-existing"), *error = NULL;

	CHECK(create_dir(dir));
	CHECK(set_dacl(dir, L"D:(A;OICI;FA;;;SY)(A;OICI;FR;;;WD)"));
	CHECK_INT_EQ(readers_of_path(dir), 1);

	CHECK_INT_EQ(acl_protect_data_dir(dir, true, &error), 0);
	CHECK_STR_EQ(error, NULL);
	CHECK_INT_EQ(readers_of_path(dir), 0);
	free(error);
	free(dir);
}

static void
test_protect_data_dir_reaches_files(void)
{
	char *dir = test_path("data-files"), *file, *error = NULL;

	if (running_under_wine()) {
		skip_case("test_protect_data_dir_reaches_files", "Wine 8's "
		    "SetNamedSecurityInfoW does not pass a directory's new "
		    "inheritable entries on to the files inside");
		free(dir);
		return;
	}
	file = xasprintf("%s\\relayq.yaml", dir);
	CHECK(create_dir(dir));
	CHECK(set_dacl(dir, L"D:(A;OICI;FA;;;SY)(A;OICI;FR;;;WD)"));
	CHECK(create_file(file));
	CHECK_INT_EQ(readers_of_path(file), 1);

	CHECK_INT_EQ(acl_protect_data_dir(dir, true, &error), 0);
	CHECK_INT_EQ(readers_of_path(file), 0);
	free(error);
	free(file);
	free(dir);
}

static void
test_protect_data_dir_public_parent(void)
{
	char *parent = test_path("public"), *dir, *error = NULL;

	if (running_under_wine()) {
		skip_case("test_protect_data_dir_public_parent", "Wine 8's "
		    "SetNamedSecurityInfoW adds the parent directory's inheritable "
		    "entries also with PROTECTED_DACL_SECURITY_INFORMATION, so "
		    "Everyone keeps read access below a public parent");
		free(parent);
		return;
	}
	dir = xasprintf("%s\\relayq", parent);
	CHECK(create_dir(parent));
	CHECK(set_dacl(parent, L"D:P(A;OICI;FA;;;SY)(A;OICI;FR;;;WD)"));
	CHECK(create_dir(dir));
	CHECK_INT_EQ(readers_of_path(dir), 1);

	CHECK_INT_EQ(acl_protect_data_dir(dir, true, &error), 0);
	CHECK_INT_EQ(readers_of_path(dir), 0);
	free(error);
	free(dir);
	free(parent);
}

/* --- setup --- */

static void remove_test_dir(void);

/* Create the private test directory below %TEMP%; exits when it cannot. */
static void
make_test_dir(void)
{
	wchar_t temp[MAX_PATH];
	PSECURITY_DESCRIPTOR sd = NULL;
	SECURITY_ATTRIBUTES sa = { sizeof(sa), NULL, FALSE };
	char *base;

	if (GetTempPathW(MAX_PATH, temp) == 0 ||
	    (base = compat_wide_to_utf8(temp)) == NULL) {
		fprintf(stderr, "cannot find the temporary directory\n");
		exit(1);
	}
	snprintf(test_dir, sizeof(test_dir), "%srelayq-acl-%lu-%lu", base,
	    GetCurrentProcessId(), GetTickCount());
	free(base);

	ConvertStringSecurityDescriptorToSecurityDescriptorW(ACL_PRIVATE_DIR_SDDL,
	    SDDL_REVISION_1, &sd, NULL);
	sa.lpSecurityDescriptor = sd;
	if (!CreateDirectoryA(test_dir, &sa)) {
		fprintf(stderr, "cannot create %s: error %lu\n", test_dir,
		    GetLastError());
		exit(1);
	}
	LocalFree(sd);
	atexit(remove_test_dir);
}

/* Remove the test directory; files that the DACLs keep from us stay behind. */
static void
remove_tree(const char *dir)
{
	WIN32_FIND_DATAA entry;
	char *pattern = xasprintf("%s\\*", dir), *child;
	HANDLE find = FindFirstFileA(pattern, &entry);

	free(pattern);
	if (find != INVALID_HANDLE_VALUE) {
		do {
			if (strcmp(entry.cFileName, ".") == 0 ||
			    strcmp(entry.cFileName, "..") == 0)
				continue;
			child = xasprintf("%s\\%s", dir, entry.cFileName);
			if (entry.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY)
				remove_tree(child);
			else
				DeleteFileA(child);
			free(child);
		} while (FindNextFileA(find, &entry));
		FindClose(find);
	}
	RemoveDirectoryA(dir);
}

static void
remove_test_dir(void)
{
	remove_tree(test_dir);
}

static const struct check_case check_cases[] = {
	CHECK_CASE(test_find_readers_table),
	CHECK_CASE(test_find_readers_names_account),
	CHECK_CASE(test_find_readers_null_dacl),
	CHECK_CASE(test_check_file_everyone_rejected),
	CHECK_CASE(test_check_file_private_accepted),
	CHECK_CASE(test_check_file_null_dacl_rejected),
	CHECK_CASE(test_check_file_missing),
	CHECK_CASE(test_prepare_queue_creates_private),
	CHECK_CASE(test_prepare_queue_keeps_existing_dir),
	CHECK_CASE(test_prepare_queue_keeps_existing_file),
	CHECK_CASE(test_data_dir_from_environment),
	CHECK_CASE(test_prepare_queue_creates_data_dir),
	CHECK_CASE(test_protect_data_dir_existing),
	CHECK_CASE(test_protect_data_dir_reaches_files),
	CHECK_CASE(test_protect_data_dir_public_parent),
};
CHECK_MAIN(check_cases)
