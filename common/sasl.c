/*
 * SASL client responses for SMTP AUTH. Intermediate buffers that hold
 * the secret are wiped before they are freed.
 */
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sasl.h"
#include "secret.h"
#include "util.h"

bool
sasl_offered(const char *offered, size_t len, enum auth_mechanism mechanism)
{
	const char *name = auth_mechanism_name(mechanism);
	size_t nlen = strlen(name), i = 0, start;

	while (i < len) {
		while (i < len && offered[i] == ' ')
			i++;
		start = i;
		while (i < len && offered[i] != ' ')
			i++;
		if (i - start == nlen && strncasecmp(offered + start, name, nlen) == 0)
			return true;
	}
	return false;
}

int
sasl_choose(const enum auth_mechanism *preference, size_t count, size_t start,
    const char *offered, size_t len)
{
	size_t i;

	for (i = start; i < count; i++)
		if (sasl_offered(offered, len, preference[i]))
			return (int)i;
	return -1;
}

char *
sasl_base64(const void *data, size_t len)
{
	char *out = xmalloc(4 * ((len + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

unsigned char *
sasl_base64_decode(const char *text, size_t *out_len)
{
	size_t len = strlen(text), padding = 0;
	unsigned char *out;
	int n;

	if (len % 4 != 0)
		return NULL;
	out = xmalloc(len / 4 * 3 + 1);
	n = EVP_DecodeBlock(out, (const unsigned char *)text, (int)len);
	if (n < 0) {
		free(out);
		return NULL;
	}
	/* EVP_DecodeBlock() counts the bytes that the padding stands for. */
	while (len > 0 && text[len - 1] == '=') {
		padding++;
		len--;
	}
	*out_len = (size_t)n - padding;
	out[*out_len] = '\0';
	return out;
}

char *
sasl_plain_response(const char *user, const char *secret, size_t len)
{
	size_t ulen = strlen(user), rawlen = ulen + len + 2;
	char *raw = xmalloc(rawlen), *b64;

	raw[0] = '\0';
	memcpy(raw + 1, user, ulen);
	raw[ulen + 1] = '\0';
	memcpy(raw + ulen + 2, secret, len);
	b64 = sasl_base64(raw, rawlen);
	secret_free(raw, rawlen - 1);
	return b64;
}

char *
sasl_cram_md5_response(const char *user, const char *secret, size_t len,
    const char *challenge)
{
	unsigned char *decoded, digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0, i;
	size_t clen = 0, n;
	char *raw, *b64;

	decoded = sasl_base64_decode(challenge, &clen);
	if (decoded == NULL)
		return NULL;
	if (HMAC(EVP_md5(), secret, (int)len, decoded, clen, digest,
	    &dlen) == NULL) {
		free(decoded);
		return NULL;
	}
	free(decoded);

	n = strlen(user) + 1 + 2 * dlen;
	raw = xmalloc(n + 1);
	snprintf(raw, n + 1, "%s ", user);
	for (i = 0; i < dlen; i++)
		snprintf(raw + strlen(user) + 1 + 2 * i, 3, "%02x", digest[i]);
	secure_wipe(digest, sizeof(digest));
	b64 = sasl_base64(raw, n);
	secret_free(raw, n);
	return b64;
}

char *
sasl_xoauth2_response(const char *user, const char *token, size_t len)
{
	size_t ulen = strlen(user), rawlen = 5 + ulen + 1 + 12 + len + 2;
	char *raw = xmalloc(rawlen + 1), *b64;

	snprintf(raw, rawlen + 1, "user=%s\001auth=Bearer ", user);
	memcpy(raw + 5 + ulen + 1 + 12, token, len);
	raw[rawlen - 2] = '\001';
	raw[rawlen - 1] = '\001';
	raw[rawlen] = '\0';
	b64 = sasl_base64(raw, rawlen);
	secret_free(raw, rawlen);
	return b64;
}
