/*
 * keystore_certcheck.c - is a certificate usable to encrypt to an
 * address?  See keystore_certcheck.h.
 */
#include <stdint.h>

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certenc.h"
#include "keystore_certcheck.h"
#include "keystore_int.h"

/* keystore_cert_check - usable encryption certificate for addr? */
enum km_status
keystore_cert_check(X509 *cert, const char *addr, struct kmerr *err)
{
	enum km_status st;

	if ((st = keystore_cert_check_time(cert, addr, err)) != KM_OK)
		return st;
	return keystore_cert_check_fixed(cert, addr, err);
}

/* keystore_cert_check_time - the checks that depend on the time */
enum km_status
keystore_cert_check_time(X509 *cert, const char *addr, struct kmerr *err)
{
	if (X509_cmp_time(X509_get0_notAfter(cert), NULL) <= 0)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "certificate for %s expired", addr);
	if (X509_cmp_time(X509_get0_notBefore(cert), NULL) >= 0)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "certificate for %s not yet valid",
		    addr);
	return KM_OK;
}

/* keystore_cert_check_fixed - the checks whose answer never changes for
 * one certificate and address */
enum km_status
keystore_cert_check_fixed(X509 *cert, const char *addr, struct kmerr *err)
{
	enum km_status st;
	uint32_t eku;

	/* X509_get_extended_key_usage() caches the extensions; absent
	 * EKU means any. */
	eku = X509_get_extended_key_usage(cert);
	if (!(eku & XKU_SMIME)) {
		ERR_clear_error();
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "certificate for %s is not for "
		    "emailProtection encryption", addr);
	}
	/* a key CMS cannot encrypt to is no certificate at all, never a
	 * temporary failure at encryption time */
	if ((st = certenc_check(cert, err)) != KM_OK) {
		kmerr_prefix(err, "certificate for %s: ", addr);
		return st;
	}
	if (!certenc_names(cert, addr))
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "certificate does not name %s", addr);
	return KM_OK;
}
