/*
 * Trust anchors from the Windows certificate store for the smart host's
 * client context. OpenSSL 3.0 does not read that store, and
 * SSL_CTX_set_default_verify_paths() looks only in OPENSSLDIR, which
 * contains no certificates on Windows.
 *
 * NOTE: Windows can download a root certificate from Windows Update when
 * its own chain building first needs it, so the ROOT store may lack a root
 * that Windows would trust. Such a smart host needs smarthost.ca_file.
 */
#include "compat.h"

#include <wincrypt.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "tls.h"
#include "util.h"

/*
 * True when the store's properties allow CERT for TLS servers: it has no
 * enhanced key usage property, or the property lists server
 * authentication. Windows applies the same restriction to its own chains.
 */
static bool
tls_windows_allows_server_auth(PCCERT_CONTEXT cert)
{
	PCERT_ENHKEY_USAGE usage;
	DWORD size = 0, error, i;
	bool allowed = false;

	if (!CertGetEnhancedKeyUsage(cert, CERT_FIND_PROP_ONLY_ENHKEY_USAGE_FLAG,
	    NULL, &size))
		return GetLastError() == (DWORD)CRYPT_E_NOT_FOUND;
	usage = xmalloc(size);
	SetLastError(0);
	if (!CertGetEnhancedKeyUsage(cert, CERT_FIND_PROP_ONLY_ENHKEY_USAGE_FLAG,
	    usage, &size)) {
		error = GetLastError();
		free(usage);
		return error == (DWORD)CRYPT_E_NOT_FOUND;
	}
	/*
	 * An empty list with CRYPT_E_NOT_FOUND means no property, so every
	 * usage. An empty list with no error means no usage at all.
	 */
	error = GetLastError();
	if (usage->cUsageIdentifier == 0)
		allowed = error == (DWORD)CRYPT_E_NOT_FOUND;
	for (i = 0; i < usage->cUsageIdentifier; i++)
		if (strcmp(usage->rgpszUsageIdentifier[i],
		    szOID_PKIX_KP_SERVER_AUTH) == 0)
			allowed = true;
	free(usage);
	return allowed;
}

/* True when CERT is also in DISALLOWED, the store of certificates that Windows distrusts. */
static bool
tls_windows_is_disallowed(HCERTSTORE disallowed, PCCERT_CONTEXT cert)
{
	PCCERT_CONTEXT found;

	if (disallowed == NULL)
		return false;
	found = CertFindCertificateInStore(disallowed, X509_ASN_ENCODING, 0,
	    CERT_FIND_EXISTING, cert, NULL);
	if (found == NULL)
		return false;
	CertFreeCertificateContext(found);
	return true;
}

/* Add CERT to STORE. Returns false when OpenSSL cannot parse or add it. */
static bool
tls_windows_add(X509_STORE *store, PCCERT_CONTEXT cert)
{
	const unsigned char *der = cert->pbCertEncoded;
	X509 *x509;
	bool added;

	x509 = d2i_X509(NULL, &der, (long)cert->cbCertEncoded);
	if (x509 == NULL) {
		ERR_clear_error();
		return false;
	}
	/* OpenSSL 3.0 accepts a certificate that the store already has. */
	added = X509_STORE_add_cert(store, x509) == 1;
	if (!added)
		ERR_clear_error();
	X509_free(x509);
	return added;
}

int
tls_windows_load_roots(X509_STORE *store, size_t *loaded, char **errstr)
{
	PCCERT_CONTEXT cert = NULL;
	HCERTSTORE roots, disallowed;
	size_t skipped = 0;
	char *text;

	*loaded = 0;
	roots = CertOpenSystemStoreW(0, L"ROOT");
	if (roots == NULL) {
		text = compat_win32_strerror(GetLastError());
		set_error(errstr, "cannot open the Windows ROOT certificate store: %s "
		    "(set smarthost.ca_file)", text);
		free(text);
		return -1;
	}
	/* Without the DISALLOWED store, no certificate is excluded for being in it. */
	disallowed = CertOpenSystemStoreW(0, L"Disallowed");

	while ((cert = CertEnumCertificatesInStore(roots, cert)) != NULL) {
		if ((cert->dwCertEncodingType & X509_ASN_ENCODING) == 0 ||
		    tls_windows_is_disallowed(disallowed, cert) ||
		    !tls_windows_allows_server_auth(cert) ||
		    !tls_windows_add(store, cert)) {
			skipped++;
			continue;
		}
		(*loaded)++;
	}

	if (disallowed != NULL)
		CertCloseStore(disallowed, 0);
	CertCloseStore(roots, 0);
	log_debug("event=tls_windows_roots loaded=%zu skipped=%zu", *loaded,
	    skipped);
	return 0;
}
