/*
 * keystore_certcheck.c - is a certificate usable to encrypt to an
 * address?  See keystore_certcheck.h.
 */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "keystore_certcheck.h"
#include "keystore_int.h"

/* addr_eq - local part exact, domain case-insensitive */
static int
addr_eq(const char *a, size_t alen, const char *b)
{
	const char *at_a = memchr(a, '@', alen), *at_b = strrchr(b, '@');
	size_t la, lb;

	if (at_a == NULL || at_b == NULL)
		return 0;
	la = (size_t)(at_a - a);
	lb = (size_t)(at_b - b);
	if (la != lb || memcmp(a, b, la) != 0)
		return 0;
	if (alen - la != strlen(at_b))
		return 0;
	return strncasecmp(at_a, at_b, alen - la) == 0;
}

/* cert_has_addr - SAN rfc822Name or subject emailAddress equals addr */
static int
cert_has_addr(X509 *cert, const char *addr)
{
	GENERAL_NAMES *san;
	X509_NAME *subj;
	int found = 0, idx = -1;

	san = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; san != NULL && i < sk_GENERAL_NAME_num(san); i++) {
		GENERAL_NAME *gn = sk_GENERAL_NAME_value(san, i);

		if (gn->type == GEN_EMAIL && addr_eq((const char *)
		    ASN1_STRING_get0_data(gn->d.rfc822Name),
		    (size_t)ASN1_STRING_length(gn->d.rfc822Name), addr))
			found = 1;
	}
	GENERAL_NAMES_free(san);
	subj = X509_get_subject_name(cert);
	while (!found && (idx = X509_NAME_get_index_by_NID(subj,
	    NID_pkcs9_emailAddress, idx)) >= 0) {
		ASN1_STRING *s = X509_NAME_ENTRY_get_data(
		    X509_NAME_get_entry(subj, idx));

		if (addr_eq((const char *)ASN1_STRING_get0_data(s),
		    (size_t)ASN1_STRING_length(s), addr))
			found = 1;
	}
	return found;
}

/* keystore_cert_check - usable encryption certificate for addr? */
enum km_status
keystore_cert_check(X509 *cert, const char *addr, struct kmerr *err)
{
	uint32_t eku, ku;

	if (X509_cmp_time(X509_get0_notAfter(cert), NULL) <= 0)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "certificate for %s expired", addr);
	if (X509_cmp_time(X509_get0_notBefore(cert), NULL) >= 0)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "certificate for %s not yet valid",
		    addr);
	/* X509_get_extended_key_usage() caches the extensions; absent
	 * EKU/KU mean any. */
	eku = X509_get_extended_key_usage(cert);
	ku = X509_get_key_usage(cert);
	if (!(eku & XKU_SMIME) ||
	    !(ku & (KU_KEY_ENCIPHERMENT | KU_KEY_AGREEMENT))) {
		ERR_clear_error();
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "certificate for %s is not for "
		    "emailProtection encryption", addr);
	}
	if (!cert_has_addr(cert, addr))
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "certificate does not name %s", addr);
	return KM_OK;
}
