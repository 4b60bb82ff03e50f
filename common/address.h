/* Mail addresses as they appear in SMTP paths (RFC 5321 section 4.1.2). */
#ifndef RELAYQ_ADDRESS_H
#define RELAYQ_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Parse an SMTP path at the start of TEXT: "<>" (only when ALLOW_NULL),
 * "<local@domain>", or "<@route,@route:local@domain>" (the source route is
 * dropped). Quoted local parts are accepted. *ADDRESS receives the
 * allocated address without brackets ("" for the null path) and *REST
 * points after the closing bracket. Returns 0, or -1 with a reason in
 * *ERRSTR.
 */
int address_parse_path(const char *text, bool allow_null, char **address,
    const char **rest, char **errstr);

/* True when ADDRESS (without brackets) is a plausible local@domain mailbox. */
bool address_is_valid(const char *address);

/* True when ADDRESS contains octets above 127 (needs SMTPUTF8). */
bool address_is_8bit(const char *address);

#endif
