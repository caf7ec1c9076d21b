/*
 * keymodel_p12.c - read a PKCS#12 key file as real exporters write it,
 * and write one for kmctl export.  See keymodel_p12.h.
 */
#include <limits.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>

#include "keymodel_p12.h"
#include "secmem.h"

#define P12_ARMOR	"PKCS12"
#define P12_ITER	200000	/* PBKDF2 and MAC iterations of an export */

/* unarmor - the DER inside "-----BEGIN PKCS12-----"; 0 when there is none */
static int
unarmor(const unsigned char *buf, size_t len, unsigned char **der,
    long *derlen)
{
	BIO *b;
	char *name = NULL, *hdr = NULL;
	int found = 0;

	*der = NULL;
	if (len > INT_MAX || (b = BIO_new_mem_buf(buf, (int)len)) == NULL)
		return 0;
	while (!found && PEM_read_bio(b, &name, &hdr, der, derlen) == 1) {
		found = strcmp(name, P12_ARMOR) == 0;
		if (!found) {
			OPENSSL_free(*der);
			*der = NULL;
		}
		OPENSSL_free(name);
		OPENSSL_free(hdr);
	}
	BIO_free(b);
	ERR_clear_error();
	return found;
}

/* decode - the PKCS12 structure of a DER or armored buffer, or NULL */
static PKCS12 *
decode(const unsigned char *buf, size_t len)
{
	const unsigned char *p = buf;
	unsigned char *der = NULL;
	PKCS12 *p12 = NULL;
	long derlen = 0;

	if (len <= LONG_MAX && (p12 = d2i_PKCS12(NULL, &p, (long)len)) ==
	    NULL && unarmor(buf, len, &der, &derlen)) {
		p = der;
		p12 = d2i_PKCS12(NULL, &p, derlen);
	}
	OPENSSL_free(der);
	ERR_clear_error();
	return p12;
}

/* keymodel_p12_sniff - DER or armored PKCS#12? */
int
keymodel_p12_sniff(const unsigned char *buf, size_t len)
{
	PKCS12 *p12 = decode(buf, len);

	PKCS12_free(p12);
	return p12 != NULL;
}

/* mac_matches - 1 the password opens the MAC, 0 it does not, -1 the MAC
 * could not be computed (why in err) */
static int
mac_matches(PKCS12 *p12, const char *pw, size_t pwlen, struct kmerr *err)
{
	int ok;

	ERR_clear_error();
	/* an empty password is, depending on the exporter, none or "" */
	if (pwlen == 0)
		ok = PKCS12_verify_mac(p12, NULL, 0) == 1 ||
		    PKCS12_verify_mac(p12, "", 0) == 1;
	else
		ok = PKCS12_verify_mac(p12, pw, -1) == 1;
	if (ok) {
		ERR_clear_error();
		return 1;
	}
	if (ERR_peek_error() == 0)
		return 0;
	kmerr_ossl(err, KM_PERMFAIL, "the PKCS#12 integrity check uses "
	    "an algorithm this OpenSSL cannot compute");
	if (err != NULL)
		err->reason = KMERR_BADINPUT;
	return -1;
}

/* content_alg - the algorithm that encrypts the certificates, or "" */
static void
content_alg(PKCS12 *p12, char *out, size_t outlen)
{
	STACK_OF(PKCS7) *safes = PKCS12_unpack_authsafes(p12);
	int i;

	*out = '\0';
	for (i = 0; safes != NULL && i < sk_PKCS7_num(safes); i++) {
		PKCS7 *p7 = sk_PKCS7_value(safes, i);

		if (OBJ_obj2nid(p7->type) == NID_pkcs7_encrypted &&
		    p7->d.encrypted != NULL &&
		    p7->d.encrypted->enc_data != NULL) {
			OBJ_obj2txt(out, (int)outlen, p7->d.encrypted->enc_data->
			    algorithm->algorithm, 0);
			break;
		}
	}
	sk_PKCS7_pop_free(safes, PKCS7_free);
}

/* cannot_decrypt - the password is right but the contents do not open */
static enum km_status
cannot_decrypt(PKCS12 *p12, struct kmerr *err)
{
	char alg[80], what[160];

	ERR_set_mark();		/* keep PKCS12_parse's reason for below */
	content_alg(p12, alg, sizeof(alg));
	ERR_pop_to_mark();
	snprintf(what, sizeof(what), "the password is right, but the "
	    "PKCS#12 file uses %s%s, which this OpenSSL cannot decrypt%s",
	    *alg ? "" : "an algorithm", alg,
	    OSSL_PROVIDER_available(NULL, "legacy") ? "" :
	    " (legacy provider not loaded)");
	kmerr_ossl(err, KM_PERMFAIL, what);
	if (err != NULL)
		err->reason = KMERR_BADINPUT;
	return KM_PERMFAIL;
}

/* keymodel_p12_parse - the key and certificate of a PKCS#12 file */
enum km_status
keymodel_p12_parse(const unsigned char *buf, size_t len, const char *pw,
    size_t pwlen, EVP_PKEY **key, X509 **cert, struct kmerr *err)
{
	PKCS12 *p12;
	EVP_PKEY *k = NULL;
	X509 *c = NULL;
	char *pwz = NULL;
	enum km_status st = KM_OK;
	int mac = -2;

	if ((p12 = decode(buf, len)) == NULL)
		return kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "not a PKCS#12 file (DER or -----BEGIN PKCS12-----)");
	if ((pwz = secmem_alloc(pwlen + 1)) == NULL) {
		st = kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		goto out;
	}
	if (pwlen > 0)
		memcpy(pwz, pw, pwlen);
	if (PKCS12_mac_present(p12) &&
	    (mac = mac_matches(p12, pwz, pwlen, err)) <= 0) {
		if (mac == 0)
			st = kmerr_set(err, KM_PERMFAIL, KMERR_BADPASSWORD,
			    "wrong password for the PKCS#12 file (its "
			    "integrity check does not match)");
		else
			st = KM_PERMFAIL;
		goto out;
	}
	ERR_clear_error();
	if (PKCS12_parse(p12, pwz, &k, &c, NULL) != 1) {
		if (mac == 1)
			st = cannot_decrypt(p12, err);
		else {
			/* OpenSSL opens no MAC-less file with a password */
			st = kmerr_ossl(err, KM_PERMFAIL, "cannot open the "
			    "PKCS#12 file: it has no integrity check (MAC); "
			    "export it again with one");
			if (err != NULL)
				err->reason = KMERR_BADINPUT;
		}
		goto out;
	}
	if (k == NULL || c == NULL) {
		st = kmerr_set(err, KM_PROTO, KMERR_BADINPUT, "the PKCS#12 "
		    "file needs both a private key and its certificate");
		goto out;
	}
	*key = k;
	*cert = c;
	k = NULL;
	c = NULL;
out:
	secmem_free(pwz, pwz != NULL ? pwlen + 1 : 0);
	EVP_PKEY_free(k);
	X509_free(c);
	PKCS12_free(p12);
	ERR_clear_error();
	return st;
}

/* legacy_key_bag - the key as a shrouded key bag: PBES2 with AES-128-CBC
 * and PBKDF2 with HMAC-SHA1 (the PRF then left out, its default), what
 * GnuPG before 2.2.42 can read */
static PKCS12_SAFEBAG *
legacy_key_bag(EVP_PKEY *key, const char *pw, size_t pwlen)
{
	PKCS8_PRIV_KEY_INFO *p8;
	X509_ALGOR *pbe = NULL;
	X509_SIG *sig = NULL;
	PKCS12_SAFEBAG *bag = NULL;

	if ((p8 = EVP_PKEY2PKCS8(key)) == NULL)	/* wiped by its free */
		return NULL;
	if ((pbe = PKCS5_pbe2_set_iv(EVP_aes_128_cbc(), P12_ITER, NULL, 0,
	    NULL, NID_hmacWithSHA1)) != NULL &&
	    (sig = PKCS8_set0_pbe(pw, (int)pwlen, p8, pbe)) != NULL)
		pbe = NULL;		/* sig holds it now */
	if (sig != NULL && (bag = PKCS12_SAFEBAG_create0_pkcs8(sig)) == NULL)
		X509_SIG_free(sig);
	X509_ALGOR_free(pbe);
	PKCS8_PRIV_KEY_INFO_free(p8);
	return bag;
}

/* legacy_p12 - the PKCS#12 of legacy_key_bag() with the certificates in
 * a plain (unencrypted: they are public) safe; no MAC yet */
static PKCS12 *
legacy_p12(EVP_PKEY *key, X509 *cert, STACK_OF(X509) *chain,
    const char *friendly, const char *pw, size_t pwlen)
{
	STACK_OF(PKCS12_SAFEBAG) *certs = NULL, *keys = NULL;
	STACK_OF(PKCS7) *safes = NULL;
	PKCS12_SAFEBAG *bag, *kbag = NULL;
	PKCS12 *p12 = NULL;
	PKCS7 *p7;
	unsigned char id[EVP_MAX_MD_SIZE];
	unsigned int idlen;
	int i;

	if (!X509_digest(cert, EVP_sha1(), id, &idlen) ||
	    (safes = sk_PKCS7_new_null()) == NULL)
		goto out;
	for (i = -1; i < sk_X509_num(chain); i++) {
		if ((bag = PKCS12_add_cert(&certs, i < 0 ? cert :
		    sk_X509_value(chain, i))) == NULL)
			goto out;
		if (i < 0 && (!PKCS12_add_friendlyname_asc(bag, friendly, -1) ||
		    !PKCS12_add_localkeyid(bag, id, (int)idlen)))
			goto out;
	}
	if ((kbag = legacy_key_bag(key, pw, pwlen)) == NULL ||
	    !PKCS12_add_friendlyname_asc(kbag, friendly, -1) ||
	    !PKCS12_add_localkeyid(kbag, id, (int)idlen) ||
	    (keys = sk_PKCS12_SAFEBAG_new_null()) == NULL ||
	    !sk_PKCS12_SAFEBAG_push(keys, kbag))
		goto out;
	kbag = NULL;
	for (i = 0; i < 2; i++)
		if ((p7 = PKCS12_pack_p7data(i == 0 ? certs : keys)) == NULL ||
		    !sk_PKCS7_push(safes, p7)) {
			PKCS7_free(p7);
			goto out;
		}
	p12 = PKCS12_add_safes(safes, 0);
out:
	PKCS12_SAFEBAG_free(kbag);
	sk_PKCS12_SAFEBAG_pop_free(certs, PKCS12_SAFEBAG_free);
	sk_PKCS12_SAFEBAG_pop_free(keys, PKCS12_SAFEBAG_free);
	sk_PKCS7_pop_free(safes, PKCS7_free);
	return p12;
}

/* keymodel_p12_build - key, certificate and chain as a PKCS#12 under pw:
 * both bags AES-256-CBC under PBES2 (PBKDF2 with HMAC-SHA256), or with
 * legacy as legacy_p12() says; the MAC HMAC-SHA256 */
enum km_status
keymodel_p12_build(EVP_PKEY *key, X509 *cert, STACK_OF(X509) *chain,
    const char *friendly, int legacy, const char *pw, size_t pwlen,
    unsigned char **out, size_t *outlen, struct kmerr *err)
{
	PKCS12 *p12;
	unsigned char *der = NULL;
	int len;

	*out = NULL;
	*outlen = 0;
	if (pwlen == 0 || pwlen > INT_MAX || strlen(pw) != pwlen)
		return kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "the transport password is empty or holds a NUL byte");
	/* no MAC here (mac_iter -1): PKCS12_create's is HMAC-SHA1 */
	if (legacy)
		p12 = legacy_p12(key, cert, chain, friendly, pw, pwlen);
	else
		p12 = PKCS12_create(pw, friendly, key, cert, chain,
		    NID_aes_256_cbc, NID_aes_256_cbc, P12_ITER, -1, 0);
	if (p12 == NULL || PKCS12_set_mac(p12, pw, (int)pwlen, NULL, 0,
	    P12_ITER, EVP_sha256()) != 1 || (len = i2d_PKCS12(p12, &der)) <= 0) {
		PKCS12_free(p12);
		ERR_clear_error();
		return kmerr_set(err, KM_NOMEM, KMERR_NONE,
		    "cannot make the PKCS#12 file");
	}
	PKCS12_free(p12);
	*out = der;
	*outlen = (size_t)len;
	return KM_OK;
}

/* keymodel_read_chain - every certificate of the PEM file path (none
 * for ""); NULL on failure */
STACK_OF(X509) *
keymodel_read_chain(const char *path, struct kmerr *err)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	BIO *b = NULL;
	X509 *x;

	if (sk == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "org CA: out of memory");
		return NULL;
	}
	if (*path == '\0')
		return sk;
	if ((b = BIO_new_file(path, "r")) == NULL)
		goto fail;
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			goto fail;
		}
	}
	ERR_clear_error();	/* the end of the file */
	BIO_free(b);
	if (sk_X509_num(sk) > 0)
		return sk;
	b = NULL;
fail:
	kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
	    "km.org_ca_cert: cannot load CA certificates from %s", path);
	ERR_clear_error();
	BIO_free(b);
	sk_X509_pop_free(sk, X509_free);
	return NULL;
}
