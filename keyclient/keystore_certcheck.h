#ifndef KMILTER_KEYCLIENT_KEYSTORE_CERTCHECK_H
#define KMILTER_KEYCLIENT_KEYSTORE_CERTCHECK_H
/*
 * NAME
 *	keystore_certcheck - is a certificate usable to encrypt to an address?
 * SUMMARY
 *	keystore_cert_check().
 *	Part of the keystore family (keystore_int.h); not for other callers.
 * DESCRIPTION
 *	Checks, in order: not expired, already valid, extendedKeyUsage
 *	emailProtection and keyUsage keyEncipherment or keyAgreement
 *	(absent extensions mean any), and the address is named in the SAN
 *	(rfc822Name) or the subject (emailAddress): the local part compared
 *	exactly, the domain case-insensitively.
 * OWNERSHIP
 *	Everything borrowed.
 * ERRORS
 *	KM_OK; KM_PERMFAIL with the reason in err.
 * THREADS
 *	Thread-safe (the certificate's extension cache is filled by OpenSSL
 *	under its own lock).
 */
#include <stddef.h>

#include <openssl/x509.h>

#include "kmerr.h"
#include "status.h"

enum km_status	 keystore_cert_check(X509 *cert, const char *addr,
		    struct kmerr *err);

#endif
