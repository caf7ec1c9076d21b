/*
 * keymodel_cert.c - key generation, certificate issuance by the
 * organization's CA, PKCS#8 encodings and rewrapping for the key model.
 * See keymodel_cert.h.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "keymodel_cert.h"
#include "kmerr.h"
#include "keymodel_name.h"
#include "pkcs8pw.h"
#include "secmem.h"

/* keymodel_check_pair - is key the private half of cert's public key? */
enum km_status
keymodel_check_pair(X509 *cert, EVP_PKEY *key, struct kmerr *err)
{
	EVP_PKEY *pub;

	if (cert == NULL || key == NULL ||
	    (pub = X509_get0_pubkey(cert)) == NULL) {
		ERR_clear_error();
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "no key or certificate to compare");
	}
	if (EVP_PKEY_eq(pub, key) != 1) {
		ERR_clear_error();
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "private key does not match the "
		    "certificate");
	}
	return KM_OK;
}

/* keymodel_keygen - generate a key pair of a named type */
enum km_status
keymodel_keygen(const char *type, EVP_PKEY **out, struct kmerr *err)
{
	EVP_PKEY *k = NULL;

	*out = NULL;
	if (type == NULL || strcmp(type, "rsa2048") == 0)
		k = EVP_RSA_gen(2048);
	else if (strcmp(type, "rsa3072") == 0)
		k = EVP_RSA_gen(3072);
	else if (strcmp(type, "ec-p256") == 0)
		k = EVP_EC_gen("P-256");
	else {
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "unknown key type \"%.32s\" (rsa2048, "
		    "rsa3072 or ec-p256)", type);
	}
	if (k == NULL)
		return kmerr_ossl(err, KM_NOMEM, "key generation");
	*out = k;
	return KM_OK;
}

/* add_ext - add one extension given in OpenSSL's config syntax */
static int
add_ext(X509 *x, X509 *ca, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&ctx, ca, x, NULL, NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)) == NULL)
		return 0;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok;
}

/* keymodel_issue_cert - have the organization's CA certify key for addr */
enum km_status
keymodel_issue_cert(EVP_PKEY *key, const char *addr, X509 *ca_cert,
    EVP_PKEY *ca_key, int days, enum keymodel_usage usage, X509 **out,
    struct kmerr *err)
{
	char norm[KEYMODEL_ADDR_MAX + 1], san[KEYMODEL_ADDR_MAX + 8];
	unsigned char rnd[20];
	const char *ku;
	X509 *x = NULL;
	X509_NAME *subj;
	BIGNUM *bn = NULL;
	enum km_status st;

	*out = NULL;
	if ((st = keymodel_addr_normalize(addr, norm, sizeof(norm),
	    err)) != KM_OK)
		return st;
	if (key == NULL || ca_cert == NULL || ca_key == NULL)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "no key or CA to issue a certificate");
	if (X509_check_private_key(ca_cert, ca_key) != 1) {
		ERR_clear_error();
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "the organization CA key does not "
		    "match the CA certificate");
	}
	if (days <= 0)
		days = usage == KEYMODEL_USE_SIGN ? KEYMODEL_DAYS_SIGN :
		    KEYMODEL_DAYS_ENC;
	if (usage == KEYMODEL_USE_SIGN)
		ku = "critical,digitalSignature,nonRepudiation";
	else if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC)
		ku = "critical,keyAgreement";
	else
		ku = "critical,keyEncipherment";
	snprintf(san, sizeof(san), "email:%s", norm);
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return kmerr_ossl(err, KM_TEMPFAIL, "RAND_bytes");
	rnd[0] = (rnd[0] & 0x7f) | 0x40;	/* positive, 159 bits */
	if ((x = X509_new()) == NULL ||
	    (bn = BN_bin2bn(rnd, sizeof(rnd), NULL)) == NULL ||
	    X509_set_version(x, X509_VERSION_3) != 1 ||
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
	    X509_gmtime_adj(X509_getm_notBefore(x), -300) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) == NULL ||
	    X509_set_issuer_name(x, X509_get_subject_name(ca_cert)) != 1 ||
	    X509_set_pubkey(x, key) != 1) {
		st = kmerr_ossl(err, KM_NOMEM, "certificate setup");
		goto fail;
	}
	subj = X509_get_subject_name(x);
	if (X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC,
	    (const unsigned char *)norm, -1, -1, 0) != 1 ||
	    X509_NAME_add_entry_by_txt(subj, "emailAddress", MBSTRING_ASC,
	    (const unsigned char *)norm, -1, -1, 0) != 1 ||
	    !add_ext(x, ca_cert, NID_basic_constraints, "critical,CA:FALSE") ||
	    !add_ext(x, ca_cert, NID_key_usage, ku) ||
	    !add_ext(x, ca_cert, NID_ext_key_usage, "emailProtection") ||
	    !add_ext(x, ca_cert, NID_subject_alt_name, san) ||
	    !add_ext(x, ca_cert, NID_subject_key_identifier, "hash") ||
	    !add_ext(x, ca_cert, NID_authority_key_identifier,
	    "keyid,issuer")) {
		st = kmerr_ossl(err, KM_PROTO, "certificate "
		    "extensions");
		goto fail;
	}
	if (X509_sign(x, ca_key, EVP_sha256()) <= 0) {
		st = kmerr_ossl(err, KM_PERMFAIL, "certificate "
		    "signature");
		goto fail;
	}
	BN_free(bn);
	*out = x;
	return KM_OK;
fail:
	BN_free(bn);
	X509_free(x);
	return st;
}

/* keymodel_cert_time - an ASN1_TIME as time_t, 0 when absent or bad */
time_t
keymodel_cert_time(const ASN1_TIME *t)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return timegm(&tm);
}

/* keymodel_cert_fingerprint - "AB:CD:..." SHA-256 of a certificate */
void
keymodel_cert_fingerprint(X509 *cert, char *out, size_t outlen)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0, i;
	size_t o = 0;

	if (outlen == 0)
		return;
	out[0] = '\0';
	if (cert == NULL || X509_digest(cert, EVP_sha256(), md, &n) != 1)
		return;
	for (i = 0; i < n && o + 4 <= outlen; i++)
		o += (size_t)snprintf(out + o, outlen - o, "%s%02X",
		    i ? ":" : "", md[i]);
}

/* keymodel_key_type_name - "RSA-2048", "EC-prime256v1" */
void
keymodel_key_type_name(EVP_PKEY *k, char *out, size_t outlen)
{
	char grp[24];

	if (k == NULL) {
		snprintf(out, outlen, "?");
	} else if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC &&
	    EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, grp,
	    sizeof(grp), NULL) == 1) {
		snprintf(out, outlen, "EC-%s", grp);
	} else {
		snprintf(out, outlen, "%s-%d",
		    EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA ? "RSA" :
		    OBJ_nid2sn(EVP_PKEY_get_base_id(k)), EVP_PKEY_get_bits(k));
	}
	ERR_clear_error();
}

/* keymodel_keytype_of - the keymodel_keygen() type of a certificate's key,
 * or NULL */
const char *
keymodel_keytype_of(X509 *cert)
{
	EVP_PKEY *k = X509_get0_pubkey(cert);

	if (k == NULL)
		return NULL;
	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC)
		return "ec-p256";
	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA)
		return EVP_PKEY_get_bits(k) >= 3072 ? "rsa3072" : "rsa2048";
	return NULL;
}

/* keymodel_pkey_to_der - PKCS#8 PrivateKeyInfo DER of a key, in secmem */
enum km_status
keymodel_pkey_to_der(EVP_PKEY *key, unsigned char **out, size_t *outlen,
    struct kmerr *err)
{
	PKCS8_PRIV_KEY_INFO *p8;
	unsigned char *buf, *p;
	int n;

	*out = NULL;
	*outlen = 0;
	if ((p8 = EVP_PKEY2PKCS8(key)) == NULL ||
	    (n = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL)) <= 0) {
		PKCS8_PRIV_KEY_INFO_free(p8);
		return kmerr_ossl(err, KM_PROTO, "PKCS#8 encoding");
	}
	if ((buf = secmem_alloc((size_t)n)) == NULL) {
		PKCS8_PRIV_KEY_INFO_free(p8);
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	}
	p = buf;
	if (i2d_PKCS8_PRIV_KEY_INFO(p8, &p) != n) {
		PKCS8_PRIV_KEY_INFO_free(p8);
		secmem_free(buf, (size_t)n);
		return kmerr_ossl(err, KM_PROTO, "PKCS#8 encoding");
	}
	PKCS8_PRIV_KEY_INFO_free(p8);
	*out = buf;
	*outlen = (size_t)n;
	return KM_OK;
}

/* keymodel_der_to_pkey - parse a plain PKCS#8 PrivateKeyInfo DER (whole
 * input) */
EVP_PKEY *
keymodel_der_to_pkey(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	PKCS8_PRIV_KEY_INFO *p8;
	EVP_PKEY *k = NULL;

	if (len > LONG_MAX)
		return NULL;
	p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
	if (p8 != NULL && p == der + len)
		k = EVP_PKCS82PKEY(p8);
	PKCS8_PRIV_KEY_INFO_free(p8);
	ERR_clear_error();
	return k;
}

/* --- protection level conversion ------------------------------------ */

/* keymodel_rewrap - one generation's PKCS#8 DER from one protection level
 * to the other: oldpw NULL takes a plain PrivateKeyInfo, else an
 * EncryptedPrivateKeyInfo that oldpw opens; newpw NULL gives a plain one,
 * else one encrypted under newpw.  The key is checked against cert (when
 * not NULL).  *out is secmem: secmem_free(*out, *outlen). */
enum km_status
keymodel_rewrap(X509 *cert, const unsigned char *der, size_t len,
    const char *oldpw, size_t oldlen, const char *newpw, size_t newlen,
    int iter, unsigned char **out, size_t *outlen, struct kmerr *err)
{
	enum pkcs8pw_kind kind = pkcs8pw_detect(der, len);
	unsigned char *plain = NULL, *wrapped = NULL;
	size_t plainlen = 0, wlen = 0;
	EVP_PKEY *key = NULL;
	enum km_status st;

	*out = NULL;
	*outlen = 0;
	if (kind != (oldpw != NULL ? PKCS8PW_ENCRYPTED : PKCS8PW_PLAIN))
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "the key is %s, expected %s",
		    pkcs8pw_kind_name(kind), oldpw != NULL ?
		    pkcs8pw_kind_name(PKCS8PW_ENCRYPTED) :
		    pkcs8pw_kind_name(PKCS8PW_PLAIN));
	if (oldpw != NULL) {
		if ((st = pkcs8pw_unwrap(der, len, oldpw, oldlen, &plain,
		    &plainlen, err)) != KM_OK)
			return st;
	} else {
		if ((plain = secmem_alloc(len)) == NULL)
			return kmerr_set(err, KM_NOMEM, KMERR_NONE,
			    "out of memory");
		memcpy(plain, der, len);
		plainlen = len;
	}
	if ((key = keymodel_der_to_pkey(plain, plainlen)) == NULL) {
		st = kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "the key does not parse");
		goto out;
	}
	if (cert != NULL && keymodel_check_pair(cert, key, NULL) != KM_OK) {
		st = kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "the key does not match its "
		    "certificate");
		goto out;
	}
	if (newpw == NULL) {
		*out = plain;
		*outlen = plainlen;
		plain = NULL;
		st = KM_OK;
		goto out;
	}
	if ((st = pkcs8pw_wrap_der(plain, plainlen, newpw, newlen, iter,
	    &wrapped, &wlen, err)) != KM_OK)
		goto out;
	if ((*out = secmem_alloc(wlen)) == NULL) {
		st = kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		goto out;
	}
	memcpy(*out, wrapped, wlen);
	*outlen = wlen;
	st = KM_OK;
out:
	OPENSSL_free(wrapped);
	EVP_PKEY_free(key);
	secmem_free(plain, plainlen);
	return st;
}
