#ifndef KMILTER_KEYCLIENT_KEYSTORE_CERTCHECK_H
#define KMILTER_KEYCLIENT_KEYSTORE_CERTCHECK_H
/*
 * NAME
 *	keystore_certcheck - is a certificate usable to encrypt to an address?
 * SUMMARY
 *	keystore_cert_check(), keystore_cert_check_time(),
 *	keystore_cert_check_fixed().
 *	Part of the keystore family (keystore_int.h); outside it
 *	milter/harvest.c calls it (the same checks before a certificate is
 *	harvested), and the directories (ldapdir.c, smimea.c) before they
 *	hand a certificate to the key store.
 * DESCRIPTION
 *	Checks, in order: not expired, already valid, extendedKeyUsage
 *	emailProtection (absent means any), a key CMS can encrypt to with a
 *	keyUsage that allows it (certenc.h: RSA with keyEncipherment, EC
 *	with keyAgreement; DSA and other signing-only keys never), and the
 *	address is named in the SAN (rfc822Name) or the subject
 *	(emailAddress), compared case-insensitively as clients do
 *	(certenc_names).
 *	keystore_cert_check() is keystore_cert_check_time() (the first two,
 *	whose answer changes with the time) then keystore_cert_check_fixed()
 *	(the others, whose answer never changes for one certificate and
 *	address: the key store's memory keeps it beside the certificate).
 * OWNERSHIP
 *	Everything borrowed.
 * ERRORS
 *	KM_OK; KM_PERMFAIL with the reason in err (the caller treats it
 *	as "no usable certificate"); KM_NOMEM.
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
enum km_status	 keystore_cert_check_time(X509 *cert, const char *addr,
		    struct kmerr *err);
enum km_status	 keystore_cert_check_fixed(X509 *cert, const char *addr,
		    struct kmerr *err);

#endif
