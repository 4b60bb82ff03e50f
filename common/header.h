/*
 * The header section of a message held in memory (RFC 5322 sections 2.2
 * and 3.4): finding where it ends, walking its fields, parsing address
 * lists, and deriving an envelope from To/Cc/Bcc as `sendmail -t` and
 * the pickup directory do. Text may use LF or CRLF line ends. Every
 * function works on a length, so NUL bytes never cut the text short.
 */
#ifndef RELAYQ_HEADER_H
#define RELAYQ_HEADER_H

#include <stdbool.h>
#include <stddef.h>

/* Largest header section that sendmail and the pickup directory accept. */
#define HEADER_SECTION_MAX (1024 * 1024)

/* One field of a header section; pointers refer to the section text. */
struct header_field {
	const char *name;	/* NULL for a line that is not a field */
	size_t name_len;
	const char *value;	/* after the colon, folds kept, final line end removed */
	size_t value_len;
	size_t offset;		/* the whole field in the section, line ends included */
	size_t length;
};

/* Addresses (addr-spec, without angle brackets) in order, without duplicates. */
struct header_addresses {
	char **items;
	size_t count;
};

/*
 * Find where the header section at the start of TEXT ends: after its
 * empty line, or before the first line that is neither a field nor a
 * folded continuation. Returns 1 with *END at the first body byte, or 0
 * when TEXT ends before the decision (more input is needed). With
 * AT_EOF, text without an end is all header section.
 */
int header_section_end(const char *text, size_t len, bool at_eof, size_t *end);

/*
 * Read the field at *POS of SECTION (LEN bytes, as header_section_end()
 * delimits it) and move *POS past it. Returns 1 with *FIELD set, or 0
 * at the empty line or the end of the section.
 */
int header_field_next(const char *section, size_t len, size_t *pos,
    struct header_field *field);

/* True when FIELD is named NAME, compared case-insensitively. */
bool header_field_is(const struct header_field *field, const char *name);

/* True when SECTION has a field named NAME. */
bool header_section_has(const char *section, size_t len, const char *name);

/*
 * Parse VALUE as an RFC 5322 address-list (mailboxes, groups, display
 * names, quoted strings, comments, folding) and append each addr-spec to
 * LIST. A bare local name ("root") gets "@DEFAULT_DOMAIN", or is an error
 * when DEFAULT_DOMAIN is NULL. Returns 0, or -1 with the reason in
 * *ERRSTR; LIST may have grown before the error.
 */
int header_address_list_parse(const char *value, size_t len,
    const char *default_domain, struct header_addresses *list, char **errstr);

/* Append ADDRESS unless LIST has it already (compared case-insensitively). */
void header_addresses_add(struct header_addresses *list, const char *address);
void header_addresses_clear(struct header_addresses *list);

/*
 * Collect the recipients named in SECTION as `sendmail -t` does: from
 * Resent-To, Resent-Cc and Resent-Bcc when any of them exists (a resent
 * message, RFC 5322 section 3.6.6), otherwise from To, Cc and Bcc.
 * Errors name the field. Returns 0 or -1.
 */
int header_recipients(const char *section, size_t len,
    const char *default_domain, struct header_addresses *list, char **errstr);

/*
 * Find the envelope sender that SECTION names: Return-Path ("<>" gives
 * ""), else Sender, else the first mailbox of From. Returns 1 with
 * *SENDER allocated, 0 when none of these fields exists, -1 when the
 * field that decides is malformed.
 */
int header_sender(const char *section, size_t len, const char *default_domain,
    char **sender, char **errstr);

/*
 * Fields never passed on from a local submission: Bcc and Resent-Bcc
 * name hidden recipients, and Return-Path belongs to final delivery
 * (RFC 5321 section 4.4). NULL-terminated.
 */
extern const char *const header_submission_drop[];

/*
 * Copy SECTION without the fields named in DROP (NULL-terminated names,
 * compared case-insensitively), folded lines included. The copy always
 * ends with an empty line: CRLF is added where SECTION ends without one,
 * so that the body cannot run into the header section. Returns the
 * allocated copy and its length in *OUT_LEN.
 */
char *header_section_remove(const char *section, size_t len,
    const char *const *drop, size_t *out_len);

#endif
