/*
 * Windows DACLs of relayq's data directory and queue database, and the
 * check of a password file's DACL. Deny ACEs are not evaluated: an
 * allow ACE for another account is reported even when a deny ACE before
 * it would win, so the check can only err on the strict side.
 */
#include "acl.h"

#include <aclapi.h>
#include <sddl.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "log.h"
#include "util.h"

/*
 * Rights that let an account read a file: reading itself, and changing
 * the DACL or the owner, with which it can grant itself reading.
 * FILE_READ_DATA is FILE_LIST_DIRECTORY on a directory.
 */
#define ACL_READ_RIGHTS \
	(FILE_READ_DATA | GENERIC_READ | GENERIC_ALL | WRITE_DAC | WRITE_OWNER)

/* The icacls arguments that leave full control to SYSTEM and Administrators only. */
#define ACL_ICACLS_PRIVATE \
	"/inheritance:r /grant:r *S-1-5-18:F *S-1-5-32-544:F"

/* Groups that contain every user: an owner of this kind does not make a file private. */
static const WELL_KNOWN_SID_TYPE acl_broad_groups[] = {
	WinWorldSid,
	WinAuthenticatedUserSid,
	WinBuiltinUsersSid,
	WinInteractiveSid,
	WinAnonymousSid,
	WinBuiltinGuestsSid,
};

/*
 * Set *ERRSTR to "WHAT PATH: ERROR" followed by NEXT, with a hint when
 * the rights are missing.
 */
static int
acl_fail_then(char **errstr, const char *what, const char *path, DWORD code,
    const char *next)
{
	char *text = compat_win32_strerror(code);
	const char *hint = "";
	int rc;

	if (code == ERROR_ACCESS_DENIED || code == ERROR_INVALID_OWNER)
		hint = " (run relayqd as the service or from an elevated command "
		    "prompt)";
	rc = set_error(errstr, "%s %s: %s%s%s", what, path, text, hint, next);
	free(text);
	return rc;
}

static int
acl_fail(char **errstr, const char *what, const char *path, DWORD code)
{
	return acl_fail_then(errstr, what, path, code, "");
}

/* Security descriptor for SDDL, freed with LocalFree(). */
static PSECURITY_DESCRIPTOR
acl_descriptor(const wchar_t *sddl, char **errstr)
{
	PSECURITY_DESCRIPTOR sd = NULL;

	if (!ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl,
	    SDDL_REVISION_1, &sd, NULL)) {
		acl_fail(errstr, "cannot build the security descriptor",
		    "from SDDL", GetLastError());
		return NULL;
	}
	return sd;
}

char *
acl_data_dir(void)
{
	/* The same rule as config.c's default config and queue paths. */
	const char *dir = getenv("ProgramData");

	if (dir == NULL || dir[0] == '\0')
		dir = "C:\\ProgramData";
	return xasprintf("%s\\relayq", dir);
}

/* PATH made absolute, without a trailing separator unless it is a root; NULL when invalid. */
static wchar_t *
acl_full_path(const char *path)
{
	wchar_t *wide = compat_utf8_to_wide(path), *full = NULL;
	DWORD size, len;

	if (wide == NULL)
		return NULL;
	size = GetFullPathNameW(wide, 0, NULL, NULL);
	if (size > 0) {
		full = xcalloc(size, sizeof(*full));
		len = GetFullPathNameW(wide, size, full, NULL);
		if (len == 0 || len >= size) {
			free(full);
			full = NULL;
		}
	}
	free(wide);
	if (full == NULL)
		return NULL;

	len = (DWORD)wcslen(full);
	while (len > 3 && (full[len - 1] == L'\\' || full[len - 1] == L'/'))
		full[--len] = L'\0';
	return full;
}

/* Whether A and B name the same path, compared as Windows does: case-insensitively. */
static bool
acl_same_path(const char *a, const char *b)
{
	wchar_t *full_a = acl_full_path(a), *full_b = acl_full_path(b);
	bool same;

	same = full_a != NULL && full_b != NULL && _wcsicmp(full_a, full_b) == 0;
	free(full_a);
	free(full_b);
	return same;
}

/* "DOMAIN\name (S-1-...)", or the SID string alone when the account is unknown. */
static char *
acl_sid_name(PSID sid)
{
	wchar_t name[256], domain[256], *sid_wide = NULL;
	DWORD name_len = 256, domain_len = 256;
	SID_NAME_USE use;
	char *sid_text, *name_text, *domain_text, *out;

	if (!ConvertSidToStringSidW(sid, &sid_wide))
		return xstrdup("an unreadable SID");
	sid_text = compat_wide_to_utf8(sid_wide);
	LocalFree(sid_wide);
	if (sid_text == NULL)
		return xstrdup("an unreadable SID");

	if (!LookupAccountSidW(NULL, sid, name, &name_len, domain, &domain_len, &use))
		return sid_text;
	name_text = compat_wide_to_utf8(name);
	domain_text = compat_wide_to_utf8(domain);
	if (name_text == NULL || domain_text == NULL)
		out = xstrdup(sid_text);
	else if (domain_text[0] == '\0')
		out = xasprintf("%s (%s)", name_text, sid_text);
	else
		out = xasprintf("%s\\%s (%s)", domain_text, name_text, sid_text);
	free(name_text);
	free(domain_text);
	free(sid_text);
	return out;
}

/* "*S-1-..." for icacls, which takes a SID instead of a name after "*". */
static char *
acl_sid_argument(PSID sid)
{
	wchar_t *sid_wide = NULL;
	char *sid_text, *out;

	if (!ConvertSidToStringSidW(sid, &sid_wide))
		return NULL;
	sid_text = compat_wide_to_utf8(sid_wide);
	LocalFree(sid_wide);
	if (sid_text == NULL)
		return NULL;
	out = xasprintf("*%s", sid_text);
	free(sid_text);
	return out;
}

static bool
acl_sid_is_broad_group(PSID sid)
{
	size_t i;

	for (i = 0; i < sizeof(acl_broad_groups) / sizeof(acl_broad_groups[0]); i++)
		if (IsWellKnownSid(sid, acl_broad_groups[i]))
			return true;
	return false;
}

/* SYSTEM, Administrators, OWNER RIGHTS and the owner itself may read a private file. */
static bool
acl_sid_is_trusted(PSID sid, PSID owner)
{
	if (IsWellKnownSid(sid, WinLocalSystemSid) ||
	    IsWellKnownSid(sid, WinBuiltinAdministratorsSid))
		return true;
	if (owner == NULL || acl_sid_is_broad_group(owner))
		return false;
	return IsWellKnownSid(sid, WinCreatorOwnerRightsSid) || EqualSid(sid, owner);
}

/*
 * The SID of an allow ACE that applies to the object itself and grants
 * one of ACL_READ_RIGHTS, else NULL. Object ACEs are skipped: Active
 * Directory objects use them, files do not.
 */
static PSID
acl_ace_reader(ACE_HEADER *header)
{
	ACCESS_ALLOWED_ACE *ace = (ACCESS_ALLOWED_ACE *)header;

	if (header->AceFlags & INHERIT_ONLY_ACE)
		return NULL;
	/* A callback ACE has the layout of ACCESS_ALLOWED_ACE; its condition is ignored. */
	if (header->AceType != ACCESS_ALLOWED_ACE_TYPE &&
	    header->AceType != ACCESS_ALLOWED_CALLBACK_ACE_TYPE)
		return NULL;
	if ((ace->Mask & ACL_READ_RIGHTS) == 0)
		return NULL;
	return (PSID)&ace->SidStart;
}

/* Append the account of SID to *READERS and *SIDS unless *SIDS lists it already. */
static bool
acl_add_reader(PSID sid, char **readers, char **sids)
{
	char *argument = acl_sid_argument(sid), *name, *joined, *padded;
	bool listed;

	if (argument == NULL)
		argument = xstrdup("*S-unknown");
	padded = xasprintf(" %s ", *sids != NULL ? *sids : "");
	joined = xasprintf(" %s ", argument);
	listed = strstr(padded, joined) != NULL;
	free(padded);
	free(joined);
	if (listed) {
		free(argument);
		return false;
	}

	name = acl_sid_name(sid);
	joined = *readers == NULL ? xstrdup(name) : xasprintf("%s, %s", *readers, name);
	free(*readers);
	*readers = joined;
	joined = *sids == NULL ? xstrdup(argument) : xasprintf("%s %s", *sids, argument);
	free(*sids);
	*sids = joined;
	free(name);
	free(argument);
	return true;
}

int
acl_find_readers(PSECURITY_DESCRIPTOR sd, char **readers, char **sids,
    char **errstr)
{
	BOOL present = FALSE, defaulted = FALSE;
	PACL dacl = NULL;
	PSID owner = NULL, sid;
	ACE_HEADER *header;
	DWORD i;
	int count = 0;

	*readers = NULL;
	*sids = NULL;
	if (!GetSecurityDescriptorDacl(sd, &present, &dacl, &defaulted) ||
	    !GetSecurityDescriptorOwner(sd, &owner, &defaulted))
		return acl_fail(errstr, "cannot read the DACL or owner", "of the "
		    "security descriptor", GetLastError());

	if (!present || dacl == NULL) {
		*readers = xstrdup("Everyone (S-1-1-0), because it has a NULL DACL");
		*sids = xstrdup("*S-1-1-0");
		return 1;
	}

	for (i = 0; i < dacl->AceCount; i++) {
		if (!GetAce(dacl, i, (void **)&header))
			return acl_fail(errstr, "cannot read an entry", "of the DACL",
			    GetLastError());
		sid = acl_ace_reader(header);
		if (sid == NULL || acl_sid_is_trusted(sid, owner))
			continue;
		if (acl_add_reader(sid, readers, sids))
			count++;
	}
	return count;
}

/* The owner and DACL of the file or directory PATH (wide WIDE), freed with LocalFree(). */
static PSECURITY_DESCRIPTOR
acl_read_descriptor(const wchar_t *wide, const char *path, char **errstr)
{
	PSECURITY_DESCRIPTOR sd = NULL;
	DWORD err;

	err = GetNamedSecurityInfoW(wide, SE_FILE_OBJECT,
	    OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION, NULL, NULL,
	    NULL, NULL, &sd);
	if (err != ERROR_SUCCESS) {
		acl_fail(errstr, "cannot read the ACL of", path, err);
		return NULL;
	}
	return sd;
}

int
acl_check_private_file(const char *path, const char *what, char **errstr)
{
	wchar_t *wide = compat_utf8_to_wide(path);
	PSECURITY_DESCRIPTOR sd;
	char *readers = NULL, *sids = NULL;
	int count, rc = 0;

	if (wide == NULL)
		return set_error(errstr, "%s %s is not a valid file name", what, path);
	sd = acl_read_descriptor(wide, path, errstr);
	free(wide);
	if (sd == NULL)
		return -1;

	count = acl_find_readers(sd, &readers, &sids, errstr);
	LocalFree(sd);
	if (count == -1)
		return -1;
	if (count > 0)
		rc = set_error(errstr, "%s %s can be read by %s according to its ACL, "
		    "so it is not secret: run icacls \"%s\" " ACL_ICACLS_PRIVATE
		    " /remove:g %s", what, path, readers, path, sids);
	free(readers);
	free(sids);
	return rc;
}

/*
 * Log a warning when the DACL of PATH lets anyone but SYSTEM,
 * Administrators and the owner read it, and return 1; else 0. A DACL
 * that cannot be read logs nothing, because this is only a warning.
 */
static int
acl_warn_readers(const char *path, const char *event, const char *why)
{
	wchar_t *wide = compat_utf8_to_wide(path);
	PSECURITY_DESCRIPTOR sd = NULL;
	char *readers = NULL, *sids = NULL, *error = NULL;
	int found = 0;

	if (wide != NULL)
		sd = acl_read_descriptor(wide, path, &error);
	free(wide);
	free(error);
	if (sd == NULL)
		return 0;

	error = NULL;
	if (acl_find_readers(sd, &readers, &sids, &error) > 0) {
		log_warning("event=%s path=\"%s\" readers=\"%s\" reason=\"%s\" "
		    "fix=\"icacls PATH " ACL_ICACLS_PRIVATE " /T\"", event, path,
		    readers, why);
		found = 1;
	}
	LocalFree(sd);
	free(readers);
	free(sids);
	free(error);
	return found;
}

/* Whether the DACL of the directory WIDE is protected from inheritance. */
static bool
acl_is_protected(const wchar_t *wide)
{
	PSECURITY_DESCRIPTOR sd = NULL;
	SECURITY_DESCRIPTOR_CONTROL control = 0;
	DWORD revision;
	bool protected = false;

	if (GetNamedSecurityInfoW(wide, SE_FILE_OBJECT, DACL_SECURITY_INFORMATION,
	    NULL, NULL, NULL, NULL, &sd) != ERROR_SUCCESS)
		return false;
	if (GetSecurityDescriptorControl(sd, &control, &revision))
		protected = (control & SE_DACL_PROTECTED) != 0;
	LocalFree(sd);
	return protected;
}

/* Give the existing WIDE (PATH) the owner and protected DACL of SD. */
static int
acl_apply(const wchar_t *wide, const char *path, PSECURITY_DESCRIPTOR sd,
    char **errstr)
{
	BOOL present = FALSE, defaulted = FALSE;
	SECURITY_INFORMATION info;
	PACL dacl = NULL;
	PSID owner = NULL;
	DWORD err;

	GetSecurityDescriptorDacl(sd, &present, &dacl, &defaulted);
	GetSecurityDescriptorOwner(sd, &owner, &defaulted);
	info = DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION;
	if (owner != NULL)
		info |= OWNER_SECURITY_INFORMATION;

	/* SetNamedSecurityInfoW, unlike SetFileSecurityW, passes the change on to the files inside. */
	err = SetNamedSecurityInfoW((wchar_t *)wide, SE_FILE_OBJECT, info, owner,
	    NULL, dacl, NULL);
	if (err != ERROR_SUCCESS)
		return acl_fail(errstr, "cannot set the ACL of", path, err);
	return 0;
}

/* Create the directory WIDE with SD: ERROR_SUCCESS when created, else the Windows error. */
static DWORD
acl_create_dir(const wchar_t *wide, PSECURITY_DESCRIPTOR sd)
{
	SECURITY_ATTRIBUTES sa = { sizeof(sa), sd, FALSE };

	return CreateDirectoryW(wide, &sa) ? ERROR_SUCCESS : GetLastError();
}

int
acl_protect_data_dir(const char *dir, bool force, char **errstr)
{
	wchar_t *wide = compat_utf8_to_wide(dir);
	PSECURITY_DESCRIPTOR sd;
	DWORD err;
	int rc = 0;

	if (wide == NULL)
		return set_error(errstr, "%s is not a valid directory name", dir);
	sd = acl_descriptor(ACL_DATA_DIR_SDDL, errstr);
	if (sd == NULL) {
		free(wide);
		return -1;
	}

	err = acl_create_dir(wide, sd);
	if (err != ERROR_SUCCESS && err != ERROR_ALREADY_EXISTS)
		rc = acl_fail(errstr, "cannot create the directory", dir, err);
	else if (err == ERROR_ALREADY_EXISTS && (force || !acl_is_protected(wide))) {
		rc = acl_apply(wide, dir, sd, errstr);
		if (rc == 0)
			rc = acl_warn_readers(dir, "acl_not_applied", "the ACL read "
			    "back after setting it still grants these accounts access");
	}
	LocalFree(sd);
	free(wide);
	return rc;
}

/* Create the queue directory DIR elsewhere than the data directory when it is missing. */
static int
acl_make_private_dir(const char *dir, char **errstr)
{
	wchar_t *wide = compat_utf8_to_wide(dir);
	PSECURITY_DESCRIPTOR sd;
	DWORD err;

	if (wide == NULL)
		return set_error(errstr, "queue directory %s is not a valid name", dir);
	sd = acl_descriptor(ACL_PRIVATE_DIR_SDDL, errstr);
	if (sd == NULL) {
		free(wide);
		return -1;
	}

	err = acl_create_dir(wide, sd);
	LocalFree(sd);
	free(wide);
	if (err != ERROR_SUCCESS && err != ERROR_ALREADY_EXISTS)
		return acl_fail_then(errstr, "cannot create the queue directory", dir,
		    err, "; create it or change queue.path");
	/* An administrator chose this directory, so its DACL stays as it is. */
	if (err == ERROR_ALREADY_EXISTS)
		acl_warn_readers(dir, "queue_dir_readable", "the queue's -wal and "
		    "-shm files inherit this directory's ACL");
	return 0;
}

/* Create the queue database PATH with ACL_PRIVATE_FILE_SDDL when it is missing. */
static int
acl_create_private_file(const char *path, char **errstr)
{
	wchar_t *wide = compat_utf8_to_wide(path);
	SECURITY_ATTRIBUTES sa = { sizeof(sa), NULL, FALSE };
	HANDLE file;
	DWORD err = ERROR_SUCCESS;

	if (wide == NULL)
		return set_error(errstr, "queue %s is not a valid file name", path);
	sa.lpSecurityDescriptor = acl_descriptor(ACL_PRIVATE_FILE_SDDL, errstr);
	if (sa.lpSecurityDescriptor == NULL) {
		free(wide);
		return -1;
	}

	file = CreateFileW(wide, GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ |
	    FILE_SHARE_WRITE | FILE_SHARE_DELETE, &sa, CREATE_NEW,
	    FILE_ATTRIBUTE_NORMAL, NULL);
	if (file == INVALID_HANDLE_VALUE)
		err = GetLastError();
	else
		CloseHandle(file);
	LocalFree(sa.lpSecurityDescriptor);
	free(wide);

	/* An existing queue keeps its DACL, as an existing Linux queue keeps its mode. */
	if (err == ERROR_SUCCESS || err == ERROR_FILE_EXISTS)
		return 0;
	return acl_fail_then(errstr, "cannot create the queue", path, err,
	    "; check queue.path and the directory's permissions");
}

/*
 * The directory part of PATH, or NULL when PATH has none. A root such as
 * "C:\" keeps its separator, because "C:" names the current directory
 * of drive C:.
 */
static char *
acl_parent_dir(const char *path)
{
	const char *slash = strrchr(path, '/'), *backslash = strrchr(path, '\\');
	size_t len;

	if (backslash != NULL && (slash == NULL || backslash > slash))
		slash = backslash;
	if (slash == NULL)
		return NULL;
	len = (size_t)(slash - path);
	if (len == 0 || (len == 2 && path[1] == ':'))
		len++;
	return xstrndup(path, len);
}

int
acl_prepare_queue(const char *path, char **errstr)
{
	char *dir = acl_parent_dir(path), *data_dir = acl_data_dir();
	int rc = 0;

	if (dir != NULL && acl_same_path(dir, data_dir))
		rc = acl_protect_data_dir(dir, false, errstr);
	else if (dir != NULL)
		rc = acl_make_private_dir(dir, errstr);
	free(dir);
	free(data_dir);
	if (rc == -1)
		return -1;
	return acl_create_private_file(path, errstr);
}
