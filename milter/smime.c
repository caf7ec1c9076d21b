/*
 * smime.c - S/MIME with OpenSSL 3 CMS: sign and encrypt (see smime.h).
 * Decryption is in smime_envelope.c, verification in smime_verify.c,
 * reading CMS inputs in smime_cms.c, the CRLF base64 output filter in
 * smime_b64.c.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "algs.h"
#include "log.h"
#include "secmem.h"
#include "smime.h"
#include "smime_b64.h"
#include "smime_int.h"

/* puts_out - write a C string to a BIO completely */
static int
puts_out(BIO *out, const char *s)
{
	return smime_b64_emit(out, (const unsigned char *)s, strlen(s));
}

/*
 * to_crlf - the entity with CRLF line ends
 * *copy is set to a new buffer when bare LFs had to be converted (the
 * caller frees it with secmem_free(*copy, *copylen)), else left NULL.
 */
static enum km_status
to_crlf(const char *in, size_t len, char **copy, size_t *copylen)
{
	size_t bare = 0, i, o = 0;
	const char *p = in, *nl;
	char *buf;

	*copy = NULL;
	*copylen = 0;
	while ((nl = memchr(p, '\n', len - (size_t)(p - in))) != NULL) {
		if (nl == in || nl[-1] != '\r')
			bare++;
		p = nl + 1;
	}
	if (bare == 0)
		return KM_OK;
	if ((buf = secmem_alloc(len + bare)) == NULL)
		return KM_NOMEM;
	for (i = 0; i < len; i++) {
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			buf[o++] = '\r';
		buf[o++] = in[i];
	}
	*copy = buf;
	*copylen = o;
	return KM_OK;
}

/*
 * crlf_input - the entity as signed or encrypted: CRLF line ends (*entity
 * and *len may then point to *copy, which the caller frees with
 * secmem_free), at most INT_MAX bytes
 */
static enum km_status
crlf_input(const char *what, const char **entity, size_t *len, char **copy,
    size_t *copylen, struct kmerr *err)
{
	enum km_status st;

	if ((st = to_crlf(*entity, *len, copy, copylen)) != KM_OK) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "%s: out of memory", what);
		return st;
	}
	if (*copy != NULL) {
		*entity = *copy;
		*len = *copylen;
	}
	if (*len > INT_MAX) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s: entity too large", what);
		return KM_PERMFAIL;
	}
	return KM_OK;
}

/*
 * Content in.  CMS_final() and i2d_CMS_bio_stream() copy the content
 * through SMIME_crlf_copy(), which pushes a buffer BIO and frees it with
 * up to 4 KB of plaintext in it, unwiped.  The content here is already a
 * CRLF buffer in memory (CMS_BINARY: copied as it is), so it is written
 * into OpenSSL's BIO chain directly: the same bytes, no copy left behind.
 */

/* write_all - write len bytes (at most INT_MAX) to a BIO chain */
static int
write_all(BIO *b, const char *data, size_t len)
{
	return len == 0 || BIO_write(b, data, (int)len) == (int)len;
}

/* final_content - CMS_final() for detached content held in memory */
static int
final_content(CMS_ContentInfo *cms, const char *data, size_t len)
{
	BIO *cmsbio;
	int ok;

	if ((cmsbio = CMS_dataInit(cms, NULL)) == NULL)
		return 0;
	ok = write_all(cmsbio, data, len);
	(void)BIO_flush(cmsbio);
	ok = ok && CMS_dataFinal(cms, cmsbio);
	BIO_free_all(cmsbio);
	return ok;
}

/*
 * stream_content - i2d_CMS_bio_stream() for content held in memory: the
 * CMS streamed to out (BER, indefinite lengths) with data as its content
 */
static int
stream_content(BIO *out, CMS_ContentInfo *cms, const char *data, size_t len)
{
	BIO *ndef, *next;
	int ok;

	if ((ndef = BIO_new_NDEF(out, (ASN1_VALUE *)cms,
	    ASN1_ITEM_rptr(CMS_ContentInfo))) == NULL)
		return 0;
	ok = write_all(ndef, data, len);
	(void)BIO_flush(ndef);
	/* Free the BIOs BIO_new_NDEF() pushed, up to out (the caller's). */
	while (ndef != NULL && ndef != out) {
		next = BIO_pop(ndef);
		BIO_free(ndef);
		ndef = next;
	}
	return ok;
}

/* make_boundary - a random boundary that does not occur in the data */
static enum km_status
make_boundary(char *bd, size_t bdlen, const char *data, size_t len)
{
	unsigned char rnd[16];
	int tries;

	for (tries = 0; tries < 8; tries++) {
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			return KM_TEMPFAIL;
		snprintf(bd, bdlen, "----=_km_%02x%02x%02x%02x%02x%02x%02x%02x"
		    "%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
		    rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], rnd[8],
		    rnd[9], rnd[10], rnd[11], rnd[12], rnd[13], rnd[14],
		    rnd[15]);
		if (memmem(data, len, bd, strlen(bd)) == NULL)
			return KM_OK;
	}
	return KM_TEMPFAIL;
}

/* sign_digest - the digest and its micalg name, NULL when unknown */
static const EVP_MD *
sign_digest(enum smime_digest digest, const char **micalg)
{
	switch (digest) {
	case SMIME_MD_SHA256: *micalg = "sha-256"; return algs_sha256();
	case SMIME_MD_SHA384: *micalg = "sha-384"; return EVP_sha384();
	case SMIME_MD_SHA512: *micalg = "sha-512"; return EVP_sha512();
	}
	return NULL;
}

/* add_certs - every certificate of certs into the set, duplicates skipped */
static void
add_certs(CMS_ContentInfo *cms, STACK_OF(X509) *certs)
{
	int i;

	for (i = 0; certs != NULL && i < sk_X509_num(certs); i++) {
		if (!CMS_add1_cert(cms, sk_X509_value(certs, i))) {
			/* Adding a certificate twice is not an error. */
			ossl_drain("sign: chain");
		}
	}
}

/*
 * publish - the encryption certificate and its chain into the set, and
 * the encKeyPref attribute naming it; KM_OK or KM_PERMFAIL (err set)
 */
static enum km_status
publish(CMS_ContentInfo *cms, CMS_SignerInfo *si,
    const struct smime_publish *pub, struct kmerr *err)
{
	if (pub == NULL || pub->enc == NULL)
		return KM_OK;
	if (!CMS_add1_cert(cms, pub->enc))
		ossl_drain("sign: encryption certificate");	/* the signer's own */
	add_certs(cms, pub->chain);
	if (!smime_add_enckeypref(si, pub->enc))
		return smime_ossl(err, KM_PERMFAIL,
		    "sign: encryption key preference");
	return KM_OK;
}

/*
 * sign_cms - a CMS SignedData with one signer, the chain, our
 * capabilities and what pub publishes, not final
 * NULL on failure (reason in err, *st set).
 */
static CMS_ContentInfo *
sign_cms(X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain,
    const struct smime_publish *pub, const EVP_MD *md, unsigned int flags,
    enum km_status *st, struct kmerr *err)
{
	CMS_ContentInfo *cms;
	CMS_SignerInfo *si;

	if ((cms = CMS_sign(NULL, NULL, NULL, NULL, flags)) == NULL) {
		*st = smime_ossl(err, KM_NOMEM, "sign: CMS_sign");
		return NULL;
	}
	/* OpenSSL's own capability list is replaced by ours. */
	if ((si = CMS_add1_signer(cms, cert, key, md,
	    CMS_BINARY | CMS_NOSMIMECAP)) == NULL) {
		*st = smime_ossl(err, KM_PERMFAIL,
		    "sign: unusable signer certificate or key");
		CMS_ContentInfo_free(cms);
		return NULL;
	}
	if (!smime_add_caps(si)) {
		*st = smime_ossl(err, KM_NOMEM, "sign: SMIMECapabilities");
		CMS_ContentInfo_free(cms);
		return NULL;
	}
	add_certs(cms, chain);
	if ((*st = publish(cms, si, pub, err)) != KM_OK) {
		CMS_ContentInfo_free(cms);
		return NULL;
	}
	return cms;
}

/*
 * sign_detached - finish cms over the entity and write multipart/signed:
 * the entity unchanged, then smime.p7s
 */
static enum km_status
sign_detached(CMS_ContentInfo *cms, const char *entity, size_t len,
    const char *micalg, BIO *out, struct kmerr *err)
{
	BIO *b64 = NULL;
	char bd[64], hdr[512];
	enum km_status st;

	if (!final_content(cms, entity, len))
		return smime_ossl(err, KM_PERMFAIL,
		    "sign: CMS_final");
	if ((st = make_boundary(bd, sizeof(bd), entity, len)) != KM_OK) {
		kmerr_set(err, st, KMERR_NONE, "sign: no random boundary");
		return st;
	}
	snprintf(hdr, sizeof(hdr),
	    "Content-Type: multipart/signed;\r\n"
	    "\tprotocol=\"application/pkcs7-signature\";\r\n"
	    "\tmicalg=%s; boundary=\"%s\"\r\n"
	    "\r\n"
	    "This is an S/MIME signed message\r\n"
	    "\r\n"
	    "--%s\r\n", micalg, bd, bd);
	if (!puts_out(out, hdr) ||
	    !smime_b64_emit(out, (const unsigned char *)entity, len))
		goto write_fail;
	snprintf(hdr, sizeof(hdr),
	    "\r\n--%s\r\n"
	    "Content-Type: application/pkcs7-signature; "
	    "name=\"smime.p7s\"\r\n"
	    "Content-Transfer-Encoding: base64\r\n"
	    "Content-Disposition: attachment; "
	    "filename=\"smime.p7s\"\r\n"
	    "Content-Description: S/MIME Cryptographic Signature\r\n"
	    "\r\n", bd);
	if (!puts_out(out, hdr))
		goto write_fail;
	if ((b64 = smime_b64_new(out)) == NULL)
		return smime_ossl(err, KM_NOMEM, "sign: BIO");
	if (!i2d_CMS_bio(b64, cms) || !smime_b64_finish(b64))
		goto write_fail;
	smime_b64_free(b64);
	b64 = NULL;
	snprintf(hdr, sizeof(hdr), "\r\n--%s--\r\n", bd);
	if (!puts_out(out, hdr))
		goto write_fail;
	return KM_OK;
write_fail:
	smime_b64_free(b64);
	return smime_ossl(err, KM_TEMPFAIL, "sign: writing output");
}

/* sign_opaque - stream in through cms as opaque signed-data */
static enum km_status
sign_opaque(CMS_ContentInfo *cms, const char *entity, size_t len, BIO *out,
    struct kmerr *err)
{
	BIO *b64;
	int ok;

	if (!puts_out(out,
	    "Content-Type: application/pkcs7-mime; "
	    "smime-type=signed-data;\r\n\tname=\"smime.p7m\"\r\n"
	    "Content-Transfer-Encoding: base64\r\n"
	    "Content-Disposition: attachment; "
	    "filename=\"smime.p7m\"\r\n"
	    "Content-Description: S/MIME Signed Message\r\n"
	    "\r\n"))
		return smime_ossl(err, KM_TEMPFAIL,
		    "sign: writing output");
	if ((b64 = smime_b64_new(out)) == NULL)
		return smime_ossl(err, KM_NOMEM, "sign: BIO");
	ok = stream_content(b64, cms, entity, len) &&
	    smime_b64_finish(b64);
	smime_b64_free(b64);
	if (!ok)
		return smime_ossl(err, KM_TEMPFAIL,
		    "sign: writing output");
	return KM_OK;
}

/* smime_sign - sign an entity: multipart/signed or opaque signed-data */
enum km_status
smime_sign(const char *entity, size_t len, X509 *cert, EVP_PKEY *key,
    STACK_OF(X509) *chain, enum smime_digest digest,
    enum smime_sign_mode mode, BIO *out, struct kmerr *err)
{
	return smime_sign_publish(entity, len, cert, key, chain, NULL, digest,
	    mode, out, err);
}

/* smime_sign_publish - sign, publishing the signer's encryption certificate */
enum km_status
smime_sign_publish(const char *entity, size_t len, X509 *cert, EVP_PKEY *key,
    STACK_OF(X509) *chain, const struct smime_publish *pub,
    enum smime_digest digest, enum smime_sign_mode mode, BIO *out,
    struct kmerr *err)
{
	const EVP_MD *md;
	const char *micalg = NULL;
	CMS_ContentInfo *cms = NULL;
	char *copy = NULL;
	size_t copylen = 0;
	unsigned int flags = CMS_BINARY | CMS_PARTIAL;
	enum km_status st;

	ERR_clear_error();
	if ((md = sign_digest(digest, &micalg)) == NULL) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "sign: unknown digest %d", (int)digest);
		return KM_PERMFAIL;
	}
	if (cert == NULL || key == NULL || out == NULL) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "sign: no signer certificate or key");
		return KM_PERMFAIL;
	}
	if ((st = crlf_input("sign", &entity, &len, &copy, &copylen, err)) != KM_OK)
		goto out;
	if (mode == SMIME_MODE_DETACHED)
		flags |= CMS_DETACHED;
	else
		flags |= CMS_STREAM;
	if ((cms = sign_cms(cert, key, chain, pub, md, flags, &st, err)) == NULL)
		goto out;
	if (mode == SMIME_MODE_DETACHED)
		st = sign_detached(cms, entity, len, micalg, out, err);
	else
		st = sign_opaque(cms, entity, len, out, err);
	if (st == KM_OK && BIO_flush(out) != 1)
		st = smime_ossl(err, KM_TEMPFAIL,
		    "sign: writing output");
out:
	CMS_ContentInfo_free(cms);
	secmem_free(copy, copylen);
	return st;
}

/* encrypt_cipher - the cipher and the smime-type, NULL when unknown */
static const EVP_CIPHER *
encrypt_cipher(enum smime_cipher cipher, const char **stype)
{
	*stype = "enveloped-data";
	switch (cipher) {
	case SMIME_CIPHER_AES256_CBC: return algs_aes_256_cbc();
	case SMIME_CIPHER_AES128_CBC: return algs_aes_128_cbc();
	case SMIME_CIPHER_AES256_GCM:
		*stype = "authEnveloped-data";
		return algs_aes_256_gcm();
	}
	return NULL;
}

/* add_recipients - one RecipientInfo per certificate, OAEP if asked */
static enum km_status
add_recipients(CMS_ContentInfo *cms, X509 *const *rcpts, size_t nrcpts,
    enum smime_padding padding, struct kmerr *err)
{
	size_t i;

	for (i = 0; i < nrcpts; i++) {
		EVP_PKEY *pk = X509_get0_pubkey(rcpts[i]);
		CMS_RecipientInfo *ri;
		int oaep = padding == SMIME_PAD_OAEP && pk != NULL &&
		    EVP_PKEY_is_a(pk, "RSA");

		ri = CMS_add1_recipient_cert(cms, rcpts[i],
		    oaep ? CMS_KEY_PARAM : 0);
		if (ri == NULL) {
			char what[64];

			snprintf(what, sizeof(what), "encrypt: unusable "
			    "recipient certificate %zu", i);
			return smime_ossl(err, KM_PERMFAIL, what);
		}
		if (oaep) {
			EVP_PKEY_CTX *pctx = CMS_RecipientInfo_get0_pkey_ctx(ri);

			if (pctx == NULL ||
			    EVP_PKEY_CTX_set_rsa_padding(pctx,
			    RSA_PKCS1_OAEP_PADDING) <= 0 ||
			    EVP_PKEY_CTX_set_rsa_oaep_md(pctx,
			    EVP_sha256()) <= 0)
				return smime_ossl(err, KM_PERMFAIL,
				    "encrypt: OAEP parameters");
		}
	}
	return KM_OK;
}

/* smime_encrypt - encrypt an entity to every certificate in rcpts */
enum km_status
smime_encrypt(const char *entity, size_t len, X509 *const *rcpts,
    size_t nrcpts, enum smime_cipher cipher, enum smime_padding padding,
    BIO *out, struct kmerr *err)
{
	const EVP_CIPHER *ciph;
	const char *stype;
	CMS_ContentInfo *cms = NULL;
	BIO *b64 = NULL;
	char *copy = NULL, hdr[512];
	size_t copylen = 0;
	unsigned int flags = CMS_BINARY | CMS_PARTIAL | CMS_STREAM;
	enum km_status st;

	ERR_clear_error();
	if ((ciph = encrypt_cipher(cipher, &stype)) == NULL) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "encrypt: unknown cipher %d",
		    (int)cipher);
		return KM_PERMFAIL;
	}
	if (padding != SMIME_PAD_PKCS1 && padding != SMIME_PAD_OAEP) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "encrypt: unknown padding %d",
		    (int)padding);
		return KM_PERMFAIL;
	}
	if (nrcpts == 0 || rcpts == NULL || out == NULL) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "encrypt: no recipients");
		return KM_PERMFAIL;
	}
	if ((st = crlf_input("encrypt", &entity, &len, &copy, &copylen,
	    err)) != KM_OK)
		goto out;
	if ((cms = CMS_encrypt(NULL, NULL, ciph, flags)) == NULL) {
		st = smime_ossl(err, KM_PERMFAIL,
		    "encrypt: CMS_encrypt");
		goto out;
	}
	if ((st = add_recipients(cms, rcpts, nrcpts, padding, err)) != KM_OK)
		goto out;
	snprintf(hdr, sizeof(hdr),
	    "Content-Type: application/pkcs7-mime; smime-type=%s;\r\n"
	    "\tname=\"smime.p7m\"\r\n"
	    "Content-Transfer-Encoding: base64\r\n"
	    "Content-Disposition: attachment; filename=\"smime.p7m\"\r\n"
	    "Content-Description: S/MIME Encrypted Message\r\n"
	    "\r\n", stype);
	if (!puts_out(out, hdr))
		goto write_fail;
	if ((b64 = smime_b64_new(out)) == NULL) {
		st = smime_ossl(err, KM_NOMEM, "encrypt: BIO");
		goto out;
	}
	if (!stream_content(b64, cms, entity, len) ||
	    !smime_b64_finish(b64) || BIO_flush(out) != 1)
		goto write_fail;
	st = KM_OK;
	goto out;
write_fail:
	st = smime_ossl(err, KM_TEMPFAIL,
	    "encrypt: writing output");
out:
	smime_b64_free(b64);
	CMS_ContentInfo_free(cms);
	secmem_free(copy, copylen);
	return st;
}
