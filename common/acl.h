/*
 * Windows access control for relayq's data: the protected DACL of
 * %ProgramData%\relayq and of the queue database, and the check that
 * only SYSTEM, Administrators and the owner can read a password file.
 * Windows only: on POSIX systems file modes do this job (queue_store.c,
 * secret.c).
 */
#ifndef RELAYQ_ACL_H
#define RELAYQ_ACL_H

#ifdef _WIN32

#include <stdbool.h>

#include "compat.h"

/*
 * %ProgramData%\relayq: full control for SYSTEM and Administrators,
 * inherited by files and subdirectories (OICI), nothing inherited from
 * %ProgramData%, which lets every user read. Administrators own it, so
 * that a user who created the directory first cannot change the DACL back.
 */
#define ACL_DATA_DIR_SDDL	L"O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"

/* A directory relayqd creates elsewhere: the same DACL, owned by its creator. */
#define ACL_PRIVATE_DIR_SDDL	L"D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"

/* The queue database that relayqd creates, wherever it is. */
#define ACL_PRIVATE_FILE_SDDL	L"D:P(A;;FA;;;SY)(A;;FA;;;BA)"

/* %ProgramData%\relayq (C:\ProgramData\relayq without the variable); allocated. */
char *acl_data_dir(void);

/*
 * Create DIR with ACL_DATA_DIR_SDDL, or give the existing DIR that DACL.
 * Without FORCE an existing DIR whose DACL is already protected is left
 * alone, because an administrator set it. SetNamedSecurityInfoW() also
 * passes the new inherited entries on to the files already inside.
 * Returns 0, or 1 with a warning logged when the DACL read back after
 * setting it still lets others read, or -1 on error.
 */
int acl_protect_data_dir(const char *dir, bool force, char **errstr);

/*
 * Prepare the queue database at PATH before SQLite opens it: the data
 * directory gets acl_protect_data_dir() without FORCE, any other missing
 * directory is created with ACL_PRIVATE_DIR_SDDL, and a missing database
 * file is created with ACL_PRIVATE_FILE_SDDL. An existing directory
 * elsewhere keeps its DACL; a warning names who else can read it, because
 * SQLite's -wal and -shm files inherit that DACL.
 */
int acl_prepare_queue(const char *path, char **errstr);

/*
 * List the accounts other than SYSTEM, Administrators and the owner to
 * which the DACL of SD grants read access, as "NAME (SID), ..." in
 * *READERS and as icacls arguments "*SID *SID" in *SIDS (both allocated,
 * NULL when there are none). Returns their number, or -1 on error. A
 * missing or NULL DACL grants everyone full access and counts as one
 * reader, Everyone.
 */
int acl_find_readers(PSECURITY_DESCRIPTOR sd, char **readers, char **sids,
    char **errstr);

/*
 * Reject the file PATH, called WHAT in the message, when its DACL lets
 * anyone but SYSTEM, Administrators and its owner read it: returns -1
 * with a message that names the accounts and the icacls command to run.
 */
int acl_check_private_file(const char *path, const char *what, char **errstr);

#endif /* _WIN32 */

#endif
