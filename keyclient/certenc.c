/*
 * certenc.c - can a message be encrypted to this certificate?  See
 * certenc.h.
 */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "algs.h"
#include "certenc.h"

/* key_name - a key type for people ("DSA", "ED25519") */
static const char *
key_name(EVP_PKEY *pk)
{
	const char *n = EVP_PKEY_get0_type_name(pk);

	return n != NULL ? n : OBJ_nid2sn(EVP_PKEY_get_base_id(pk));
}

/* cms_accepts - does OpenSSL set up a RecipientInfo for the certificate? */
static enum km_status
cms_accepts(X509 *cert, const char *kind, struct kmerr *err)
{
	CMS_ContentInfo *cms;
	enum km_status st = KM_OK;

	ERR_clear_error();
	if ((cms = CMS_encrypt(NULL, NULL, algs_aes_256_cbc(),
	    CMS_BINARY | CMS_PARTIAL)) == NULL) {
		ERR_clear_error();
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	}
	if (CMS_add1_recipient_cert(cms, cert, 0) == NULL) {
		st = kmerr_ossl(err, KM_PERMFAIL, "OpenSSL");
		if (err != NULL)
			err->reason = KMERR_REFUSED;
		kmerr_prefix(err, "cannot encrypt to this %s key: ", kind);
	}
	CMS_ContentInfo_free(cms);
	return st;
}

/* certenc_check - can CMS encrypt to the certificate's key? */
enum km_status
certenc_check(X509 *cert, struct kmerr *err)
{
	EVP_PKEY *pk = X509_get0_pubkey(cert);
	uint32_t ku = X509_get_key_usage(cert);	/* UINT32_MAX: no extension */
	const char *kind;

	if (pk == NULL) {
		ERR_clear_error();
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "cannot encrypt: the certificate's public key is "
		    "unreadable or of an unknown type");
	}
	kind = key_name(pk);
	if (EVP_PKEY_is_a(pk, "RSA")) {
		if (!(ku & KU_KEY_ENCIPHERMENT))
			return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
			    "cannot encrypt: the RSA certificate's keyUsage "
			    "lacks keyEncipherment");
	} else if (EVP_PKEY_is_a(pk, "EC")) {
		if (!(ku & KU_KEY_AGREEMENT))
			return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
			    "cannot encrypt: the EC certificate's keyUsage "
			    "lacks keyAgreement");
	} else
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "cannot encrypt: a %s key cannot receive encrypted "
		    "mail (RSA or EC only)%s", kind,
		    ku != UINT32_MAX && (ku & (KU_KEY_ENCIPHERMENT |
		    KU_KEY_AGREEMENT)) ? " (its keyUsage claims otherwise)" :
		    "");
	return cms_accepts(cert, kind, err);
}

/* addr_eq - addresses equal, case-insensitively */
static int
addr_eq(const char *a, size_t alen, const char *addr)
{
	if (memchr(a, '@', alen) == NULL || memchr(a, '\0', alen) != NULL)
		return 0;
	return strlen(addr) == alen && strncasecmp(a, addr, alen) == 0;
}

/* certenc_names - SAN rfc822Name or subject emailAddress is addr */
int
certenc_names(X509 *cert, const char *addr)
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

/* certenc_chain - does cert verify to trust (untrusted: intermediates)? */
enum km_status
certenc_chain(X509 *cert, STACK_OF(X509) *untrusted, X509_STORE *trust,
    int purpose, struct kmerr *err)
{
	X509_STORE_CTX *ctx;
	enum km_status st = KM_OK;

	if ((ctx = X509_STORE_CTX_new()) == NULL ||
	    !X509_STORE_CTX_init(ctx, trust, cert, untrusted) ||
	    (purpose != 0 && !X509_STORE_CTX_set_purpose(ctx, purpose)))
		st = kmerr_set(err, KM_NOMEM, KMERR_NONE,
		    "cannot set up chain verification");
	else if (X509_verify_cert(ctx) != 1)
		st = kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED, "%s",
		    X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
	X509_STORE_CTX_free(ctx);
	ERR_clear_error();
	return st;
}
