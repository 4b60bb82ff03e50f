/*
 * SMTP AUTH (RFC 4954) client responses for the SASL mechanisms relayq
 * supports: PLAIN (RFC 4616), LOGIN, CRAM-MD5 (RFC 2195) and XOAUTH2
 * (Google and Microsoft). Responses are returned base64-encoded in
 * allocated buffers; the caller wipes them with secret_free() because
 * each one carries the secret.
 */
#ifndef RELAYQ_SASL_H
#define RELAYQ_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* True when the EHLO AUTH parameters OFFERED (LEN bytes) list MECHANISM. */
bool sasl_offered(const char *offered, size_t len, enum auth_mechanism mechanism);

/*
 * Find the first of the COUNT mechanisms in PREFERENCE, from index START
 * on, that OFFERED lists. Returns its index, or -1 when none is offered.
 */
int sasl_choose(const enum auth_mechanism *preference, size_t count,
    size_t start, const char *offered, size_t len);

/* Base64 of LEN bytes of DATA (RFC 4648, with padding). */
char *sasl_base64(const void *data, size_t len);

/*
 * Decode the base64 TEXT of a server challenge into an allocated buffer
 * with a NUL after its *OUT_LEN bytes. Returns NULL when TEXT is invalid.
 */
unsigned char *sasl_base64_decode(const char *text, size_t *out_len);

/* PLAIN initial response: base64 of NUL user NUL secret. */
char *sasl_plain_response(const char *user, const char *secret, size_t len);

/*
 * CRAM-MD5 response to the base64 CHALLENGE: base64 of the user, a space
 * and the lowercase hex HMAC-MD5 of the challenge keyed with the secret.
 * Returns NULL when the challenge is not valid base64.
 */
char *sasl_cram_md5_response(const char *user, const char *secret, size_t len,
    const char *challenge);

/* XOAUTH2 initial response: base64 of "user=U^Aauth=Bearer TOKEN^A^A". */
char *sasl_xoauth2_response(const char *user, const char *token, size_t len);

#endif
