/*
 * pkcs8pw.c - password-protected private keys: PKCS#8 EncryptedPrivateKeyInfo
 * with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC).  See pkcs8pw.h.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "log.h"
#include "pkcs8pw.h"
#include "secmem.h"

#define SALT_LEN	16

/* drain - empty the OpenSSL error queue (into the log when verbose) */
static void
drain(const char *what)
{
	if (log_verbose() >= 2)
		log_openssl(what);
	else
		ERR_clear_error();
}

/* pkcs8pw_kind_name - printable name of a kind */
const char *
pkcs8pw_kind_name(enum pkcs8pw_kind k)
{
	switch (k) {
	case PKCS8PW_PLAIN:
		return "plain";
	case PKCS8PW_ENCRYPTED:
		return "encrypted";
	case PKCS8PW_UNKNOWN:
		break;
	}
	return "unknown";
}

/* pkcs8pw_detect - whether DER is an EncryptedPrivateKeyInfo or a plain one */
enum pkcs8pw_kind
pkcs8pw_detect(const unsigned char *der, size_t len)
{
	const unsigned char *p;
	X509_SIG *sig;
	PKCS8_PRIV_KEY_INFO *inf;
	enum pkcs8pw_kind k = PKCS8PW_UNKNOWN;

	if (der == NULL || len == 0 || len > LONG_MAX)
		return PKCS8PW_UNKNOWN;
	p = der;
	if ((sig = d2i_X509_SIG(NULL, &p, (long)len)) != NULL) {
		if (p == der + len)
			k = PKCS8PW_ENCRYPTED;
		X509_SIG_free(sig);
	}
	if (k == PKCS8PW_UNKNOWN) {
		p = der;
		if ((inf = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len)) != NULL) {
			if (p == der + len)
				k = PKCS8PW_PLAIN;
			PKCS8_PRIV_KEY_INFO_free(inf);	/* wipes the key */
		}
	}
	ERR_clear_error();
	return k;
}

/* wrap_inf - encrypt a PrivateKeyInfo into DER EncryptedPrivateKeyInfo */
static enum km_status
wrap_inf(PKCS8_PRIV_KEY_INFO *inf, const char *pw, size_t pwlen, int iter,
    unsigned char **out, size_t *outlen, struct kmerr *err)
{
	unsigned char salt[SALT_LEN], *buf = NULL;
	X509_ALGOR *pbe = NULL;
	X509_SIG *sig = NULL;
	enum km_status st = KM_PROTO;
	int n;

	*out = NULL;
	*outlen = 0;
	if (iter == 0)
		iter = PKCS8PW_ITER_DEFAULT;
	if (iter < PKCS8PW_ITER_MIN || iter > PKCS8PW_ITER_MAX)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "iteration count %d out of range "
		    "%d..%d", iter, PKCS8PW_ITER_MIN, PKCS8PW_ITER_MAX);
	if (pw == NULL || pwlen == 0 || pwlen > INT_MAX)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "empty or over-long password");
	if (RAND_bytes(salt, sizeof(salt)) != 1) {
		st = kmerr_set(err, KM_TEMPFAIL, KMERR_NONE,
		    "no random bytes for the salt");
		goto fail;
	}
	if ((pbe = PKCS5_pbe2_set_iv_ex(EVP_aes_256_cbc(), iter, salt,
	    sizeof(salt), NULL, NID_hmacWithSHA256, NULL)) == NULL) {
		st = kmerr_set(err, KM_NOMEM, KMERR_NONE,
		    "cannot set up PBES2");
		goto fail;
	}
	if ((sig = PKCS8_set0_pbe(pw, (int)pwlen, inf, pbe)) == NULL) {
		st = kmerr_set(err, KM_NOMEM, KMERR_NONE,
		    "cannot encrypt the key");
		goto fail;
	}
	pbe = NULL;	/* now owned by sig */
	if ((n = i2d_X509_SIG(sig, &buf)) <= 0) {
		st = kmerr_set(err, KM_NOMEM, KMERR_NONE,
		    "cannot encode the encrypted key");
		goto fail;
	}
	*out = buf;
	*outlen = (size_t)n;
	X509_SIG_free(sig);
	return KM_OK;

fail:
	drain("pkcs8pw wrap");
	X509_ALGOR_free(pbe);
	X509_SIG_free(sig);
	return st;
}

/* pkcs8pw_wrap - encrypt a private key under a password */
enum km_status
pkcs8pw_wrap(EVP_PKEY *key, const char *pw, size_t pwlen, int iter,
    unsigned char **out, size_t *outlen, struct kmerr *err)
{
	PKCS8_PRIV_KEY_INFO *inf;
	enum km_status st;

	*out = NULL;
	*outlen = 0;
	if (key == NULL || (inf = EVP_PKEY2PKCS8(key)) == NULL) {
		drain("pkcs8pw wrap");
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "cannot encode the private key");
	}
	st = wrap_inf(inf, pw, pwlen, iter, out, outlen, err);
	PKCS8_PRIV_KEY_INFO_free(inf);	/* wipes the key bytes */
	return st;
}

/* pkcs8pw_wrap_der - encrypt a DER PrivateKeyInfo under a password */
enum km_status
pkcs8pw_wrap_der(const unsigned char *p8, size_t p8len, const char *pw,
    size_t pwlen, int iter, unsigned char **out, size_t *outlen,
    struct kmerr *err)
{
	const unsigned char *p = p8;
	PKCS8_PRIV_KEY_INFO *inf = NULL;
	enum km_status st;

	*out = NULL;
	*outlen = 0;
	if (p8 == NULL || p8len == 0 || p8len > LONG_MAX ||
	    (inf = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)p8len)) == NULL ||
	    p != p8 + p8len) {
		PKCS8_PRIV_KEY_INFO_free(inf);
		drain("pkcs8pw wrap");
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "not a DER PrivateKeyInfo");
	}
	st = wrap_inf(inf, pw, pwlen, iter, out, outlen, err);
	PKCS8_PRIV_KEY_INFO_free(inf);
	return st;
}

/* check_pbes2 - refuse anything but PBES2/PBKDF2/AES-CBC with sane counts */
static enum km_status
check_pbes2(const X509_SIG *sig, struct kmerr *err)
{
	const X509_ALGOR *alg = NULL;
	const ASN1_OBJECT *oid = NULL;
	const void *pval = NULL;
	PBE2PARAM *pbe2 = NULL;
	PBKDF2PARAM *kdf = NULL;
	enum km_status st = KM_PROTO;
	int ptype = 0, cnid;
	long iter;

	X509_SIG_get0(sig, &alg, NULL);
	X509_ALGOR_get0(&oid, &ptype, &pval, alg);
	if (OBJ_obj2nid(oid) != NID_pbes2) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "not a PBES2-encrypted key");
		goto out;
	}
	if (ptype != V_ASN1_SEQUENCE || (pbe2 = ASN1_item_unpack(pval,
	    ASN1_ITEM_rptr(PBE2PARAM))) == NULL) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "malformed PBES2 parameters");
		goto out;
	}
	if (OBJ_obj2nid(pbe2->keyfunc->algorithm) != NID_id_pbkdf2) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "unsupported key derivation "
		    "(only PBKDF2)");
		goto out;
	}
	cnid = OBJ_obj2nid(pbe2->encryption->algorithm);
	if (cnid != NID_aes_256_cbc && cnid != NID_aes_192_cbc &&
	    cnid != NID_aes_128_cbc) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "unsupported cipher (only AES-CBC)");
		goto out;
	}
	if (pbe2->keyfunc->parameter == NULL ||
	    pbe2->keyfunc->parameter->type != V_ASN1_SEQUENCE ||
	    (kdf = ASN1_item_unpack(pbe2->keyfunc->parameter->value.sequence,
	    ASN1_ITEM_rptr(PBKDF2PARAM))) == NULL) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "malformed PBKDF2 parameters");
		goto out;
	}
	iter = ASN1_INTEGER_get(kdf->iter);
	if (iter < 1 || iter > PKCS8PW_ITER_MAX) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "PBKDF2 iteration count out of range "
		    "1..%d", PKCS8PW_ITER_MAX);
		goto out;
	}
	st = KM_OK;
out:
	PBKDF2PARAM_free(kdf);
	PBE2PARAM_free(pbe2);
	return st;
}

/* decrypt_inf - check and decrypt DER EncryptedPrivateKeyInfo */
static enum km_status
decrypt_inf(const unsigned char *der, size_t len, const char *pw, size_t pwlen,
    PKCS8_PRIV_KEY_INFO **out, struct kmerr *err)
{
	const unsigned char *p = der;
	X509_SIG *sig = NULL;
	enum km_status st;

	*out = NULL;
	if (der == NULL || len == 0 || len > LONG_MAX ||
	    (sig = d2i_X509_SIG(NULL, &p, (long)len)) == NULL ||
	    p != der + len) {
		st = kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "not a DER EncryptedPrivateKeyInfo");
		goto out;
	}
	if ((st = check_pbes2(sig, err)) != KM_OK)
		goto out;
	if (pw == NULL || pwlen == 0 || pwlen > INT_MAX) {
		st = kmerr_set(err, KM_PERMFAIL, KMERR_BADPASSWORD,
		    "wrong password (empty)");
		goto out;
	}
	/* Bad padding or an undecodable plaintext: the password is wrong
	 * (or the ciphertext damaged, which looks the same). */
	if ((*out = PKCS8_decrypt(sig, pw, (int)pwlen)) == NULL) {
		st = kmerr_set(err, KM_PERMFAIL, KMERR_BADPASSWORD,
		    "wrong password");
		goto out;
	}
	st = KM_OK;
out:
	drain("pkcs8pw unwrap");
	X509_SIG_free(sig);
	return st;
}

/* pkcs8pw_unwrap - decrypt to DER PrivateKeyInfo in secure memory */
enum km_status
pkcs8pw_unwrap(const unsigned char *der, size_t len, const char *pw,
    size_t pwlen, unsigned char **out, size_t *outlen, struct kmerr *err)
{
	PKCS8_PRIV_KEY_INFO *inf = NULL;
	unsigned char *buf = NULL, *q;
	enum km_status st;
	int n;

	*out = NULL;
	*outlen = 0;
	if ((st = decrypt_inf(der, len, pw, pwlen, &inf, err))
	    != KM_OK)
		return st;
	if ((n = i2d_PKCS8_PRIV_KEY_INFO(inf, NULL)) <= 0) {
		st = kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "cannot encode the decrypted key");
		goto out;
	}
	if ((buf = secmem_alloc((size_t)n)) == NULL) {
		st = kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		goto out;
	}
	q = buf;
	if (i2d_PKCS8_PRIV_KEY_INFO(inf, &q) != n) {
		st = kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "cannot encode the decrypted key");
		buf = secmem_free(buf, (size_t)n);
		goto out;
	}
	*out = buf;
	*outlen = (size_t)n;
out:
	drain("pkcs8pw unwrap");
	PKCS8_PRIV_KEY_INFO_free(inf);	/* wipes the key bytes */
	return st;
}

/* pkcs8pw_unwrap_pkey - decrypt to an EVP_PKEY */
enum km_status
pkcs8pw_unwrap_pkey(const unsigned char *der, size_t len, const char *pw,
    size_t pwlen, EVP_PKEY **out, struct kmerr *err)
{
	PKCS8_PRIV_KEY_INFO *inf = NULL;
	enum km_status st;

	*out = NULL;
	if ((st = decrypt_inf(der, len, pw, pwlen, &inf, err))
	    != KM_OK)
		return st;
	if ((*out = EVP_PKCS82PKEY(inf)) == NULL) {
		st = kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "decrypted key cannot be decoded");
	}
	drain("pkcs8pw unwrap");
	PKCS8_PRIV_KEY_INFO_free(inf);
	return st;
}
