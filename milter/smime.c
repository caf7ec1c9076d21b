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
#include "spool.h"

/* puts_out - write a C string to a BIO completely */
static int
puts_out(BIO *out, const char *s)
{
	return smime_b64_emit(out, (const unsigned char *)s, strlen(s));
}

/*
 * Content in.  The content is read from a source (smime.h: bytes in
 * memory, then a spool from an offset) in bounded chunks, converted to
 * CRLF line ends on the way (a bare LF gets a CR in front), and written
 * into OpenSSL's BIO chain directly: CMS_final() and i2d_CMS_bio_stream()
 * would copy it through SMIME_crlf_copy(), which frees a buffer BIO with
 * up to 4 KB of plaintext in it, unwiped.  So the working set is two
 * chunk buffers, wiped, whatever the size of the content.
 */
#define FEED_CHUNK	32768	/* source bytes per read */
#define FEED_KEEP	128	/* bytes kept across chunks for the boundary check */

/* src_read - up to len bytes of the source from pos; *got = 0 at its end */
static enum km_status
src_read(const struct smime_source *src, size_t pos, unsigned char *buf, size_t len,
    size_t *got, struct kmerr *err)
{
	*got = 0;
	if (pos < src->headlen) {
		*got = src->headlen - pos < len ? src->headlen - pos : len;
		memcpy(buf, src->head + pos, *got);
		return KM_OK;
	}
	if (src->body == NULL)
		return KM_OK;
	return spool_read(src->body, src->off + (pos - src->headlen), buf, len, got, err);
}

/* crlf_chunk - raw bytes to buf with CRLF line ends; *prev is the last byte seen */
static size_t
crlf_chunk(const unsigned char *raw, size_t n, unsigned char *buf, int *prev)
{
	const unsigned char *p = raw, *end = raw + n, *nl;
	size_t o = 0, run;

	if (n == 0)
		return 0;
	/* copy runs up to each LF, inserting CR where the byte before is not one */
	while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		run = (size_t)(nl - p);
		memcpy(buf + o, p, run);
		o += run;
		if ((run > 0 ? nl[-1] : *prev) != '\r')
			buf[o++] = '\r';
		buf[o++] = '\n';
		*prev = '\n';
		p = nl + 1;
	}
	memcpy(buf + o, p, (size_t)(end - p));
	o += (size_t)(end - p);
	*prev = raw[n - 1];
	return o;
}

/*
 * feed - the source, CRLF, written completely to b (NULL: only read); with
 * avoid, *found says whether that string occurs in the CRLF content.
 * KM_OK; KM_TEMPFAIL when the source cannot be read (err says why) or b
 * refused a write (err: "writing"); KM_NOMEM.
 */
static enum km_status
feed(BIO *b, const struct smime_source *src, const char *avoid, int *found,
    struct kmerr *err)
{
	unsigned char *raw = malloc(FEED_CHUNK), *buf = malloc(2 * FEED_CHUNK + FEED_KEEP);
	size_t pos = 0, got, keep = 0, alen = avoid != NULL ? strlen(avoid) : 0, o;
	enum km_status st = KM_OK;
	int prev = 0;

	if (found != NULL)
		*found = 0;
	if (raw == NULL || buf == NULL) {
		st = kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		goto out;
	}
	if (alen >= FEED_KEEP) {	/* a boundary is 41 bytes */
		st = kmerr_set(err, KM_PERMFAIL, KMERR_NONE, "boundary too long");
		goto out;
	}
	for (;;) {
		if ((st = src_read(src, pos, raw, FEED_CHUNK, &got, err)) != KM_OK || got == 0)
			break;
		pos += got;
		o = keep + crlf_chunk(raw, got, buf + keep, &prev);
		if (alen > 0 && memmem(buf, o, avoid, alen) != NULL)
			*found = 1;
		if (b != NULL && !smime_b64_emit(b, buf + keep, o - keep)) {
			st = kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "writing");
			break;
		}
		keep = alen > 0 ? (o < alen - 1 ? o : alen - 1) : 0;
		memmove(buf, buf + o - keep, keep);
	}
out:
	/* malloc'd, not secmem: wiped and freed without secmem's lock */
	secmem_wipe(raw, FEED_CHUNK);
	secmem_wipe(buf, 2 * FEED_CHUNK + FEED_KEEP);
	free(raw);
	free(buf);
	return st;
}

/* final_content - CMS_final() for detached content read from a source */
static enum km_status
final_content(CMS_ContentInfo *cms, const struct smime_source *src, const char *avoid,
    int *found, struct kmerr *err)
{
	BIO *cmsbio;
	enum km_status st;

	if ((cmsbio = CMS_dataInit(cms, NULL)) == NULL)
		return smime_ossl(err, KM_PERMFAIL, "sign: CMS_final");
	st = feed(cmsbio, src, avoid, found, err);
	(void)BIO_flush(cmsbio);
	if (st == KM_OK && !CMS_dataFinal(cms, cmsbio))
		st = smime_ossl(err, KM_PERMFAIL, "sign: CMS_final");
	BIO_free_all(cmsbio);
	return st;
}

/*
 * stream_content - i2d_CMS_bio_stream() for content read from a source: the
 * CMS streamed to out (BER, indefinite lengths) with the source as its content
 */
static enum km_status
stream_content(BIO *out, CMS_ContentInfo *cms, const struct smime_source *src,
    struct kmerr *err)
{
	BIO *ndef, *next;
	enum km_status st;

	if ((ndef = BIO_new_NDEF(out, (ASN1_VALUE *)cms,
	    ASN1_ITEM_rptr(CMS_ContentInfo))) == NULL)
		return smime_ossl(err, KM_NOMEM, "BIO_new_NDEF");
	st = feed(ndef, src, NULL, NULL, err);
	if (st == KM_OK && BIO_flush(ndef) != 1)
		st = kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "writing");
	/* Free the BIOs BIO_new_NDEF() pushed, up to out (the caller's). */
	while (ndef != NULL && ndef != out) {
		next = BIO_pop(ndef);
		BIO_free(ndef);
		ndef = next;
	}
	return st;
}

/* random_boundary - a fresh random multipart boundary in bd */
static enum km_status
random_boundary(char *bd, size_t bdlen)
{
	unsigned char rnd[16];

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return KM_TEMPFAIL;
	snprintf(bd, bdlen, "----=_km_%02x%02x%02x%02x%02x%02x%02x%02x"
	    "%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
	    rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], rnd[8],
	    rnd[9], rnd[10], rnd[11], rnd[12], rnd[13], rnd[14],
	    rnd[15]);
	return KM_OK;
}

/*
 * digest_and_boundary - finish cms over the content (first pass) and find
 * a boundary that does not occur in it: the first one is checked during
 * that pass, another (almost never) in a pass of its own
 */
static enum km_status
digest_and_boundary(CMS_ContentInfo *cms, const struct smime_source *src, char *bd,
    size_t bdlen, struct kmerr *err)
{
	enum km_status st;
	int found = 0;

	for (int tries = 0; tries < 8; tries++) {
		if (random_boundary(bd, bdlen) != KM_OK)
			break;
		st = tries == 0 ? final_content(cms, src, bd, &found, err) :
		    feed(NULL, src, bd, &found, err);
		if (st != KM_OK)
			return st;
		if (!found)
			return KM_OK;
	}
	return kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "sign: no random boundary");
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

/* write_failed - err for a failed write (the source's reason when it was the source) */
static enum km_status
write_failed(enum km_status st, struct kmerr *err, const char *what)
{
	if (st == KM_NOMEM || (st == KM_TEMPFAIL && err->msg[0] != '\0' &&
	    strcmp(err->msg, "writing") != 0))
		return st;
	return smime_ossl(err, KM_TEMPFAIL, what);
}

/*
 * sign_detached - finish cms over the content and write multipart/signed:
 * the content (CRLF) unchanged, then smime.p7s; the source is read twice
 */
static enum km_status
sign_detached(CMS_ContentInfo *cms, const struct smime_source *src,
    const char *micalg, BIO *out, struct kmerr *err)
{
	BIO *b64 = NULL;
	char bd[64], hdr[512];
	enum km_status st;

	if ((st = digest_and_boundary(cms, src, bd, sizeof(bd), err)) != KM_OK)
		return st;
	snprintf(hdr, sizeof(hdr),
	    "Content-Type: multipart/signed;\r\n"
	    "\tprotocol=\"application/pkcs7-signature\";\r\n"
	    "\tmicalg=%s; boundary=\"%s\"\r\n"
	    "\r\n"
	    "This is an S/MIME signed message\r\n"
	    "\r\n"
	    "--%s\r\n", micalg, bd, bd);
	st = KM_TEMPFAIL;
	if (!puts_out(out, hdr) || (st = feed(out, src, NULL, NULL, err)) != KM_OK)
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
	st = KM_TEMPFAIL;
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
	return write_failed(st, err, "sign: writing output");
}

/* sign_opaque - stream the source through cms as opaque signed-data */
static enum km_status
sign_opaque(CMS_ContentInfo *cms, const struct smime_source *src, BIO *out,
    struct kmerr *err)
{
	BIO *b64;
	enum km_status st = KM_TEMPFAIL;

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
	if ((st = stream_content(b64, cms, src, err)) == KM_OK && !smime_b64_finish(b64))
		st = KM_TEMPFAIL;
	smime_b64_free(b64);
	if (st != KM_OK)
		return write_failed(st, err, "sign: writing output");
	return KM_OK;
}

/* memory_source - a source for an entity held in memory */
static struct smime_source
memory_source(const char *entity, size_t len)
{
	struct smime_source src = { .head = entity, .headlen = len };

	return src;
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
	struct smime_source src = memory_source(entity, len);

	return smime_sign_source(&src, cert, key, chain, pub, digest, mode, out, err);
}

/* smime_sign_source - sign what a source holds (see smime.h) */
enum km_status
smime_sign_source(const struct smime_source *src, X509 *cert, EVP_PKEY *key,
    STACK_OF(X509) *chain, const struct smime_publish *pub,
    enum smime_digest digest, enum smime_sign_mode mode, BIO *out,
    struct kmerr *err)
{
	const EVP_MD *md;
	const char *micalg = NULL;
	CMS_ContentInfo *cms = NULL;
	unsigned int flags = CMS_BINARY | CMS_PARTIAL;
	struct kmerr mine;
	enum km_status st;

	if (err == NULL)
		err = &mine;
	kmerr_clear(err);
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
	if (mode == SMIME_MODE_DETACHED)
		flags |= CMS_DETACHED;
	else
		flags |= CMS_STREAM;
	if ((cms = sign_cms(cert, key, chain, pub, md, flags, &st, err)) == NULL)
		goto out;
	if (mode == SMIME_MODE_DETACHED)
		st = sign_detached(cms, src, micalg, out, err);
	else
		st = sign_opaque(cms, src, out, err);
	if (st == KM_OK && BIO_flush(out) != 1)
		st = smime_ossl(err, KM_TEMPFAIL,
		    "sign: writing output");
out:
	CMS_ContentInfo_free(cms);
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
	struct smime_source src = memory_source(entity, len);

	return smime_encrypt_source(&src, rcpts, nrcpts, cipher, padding, out, err);
}

/* smime_encrypt_source - encrypt what a source holds (see smime.h) */
enum km_status
smime_encrypt_source(const struct smime_source *src, X509 *const *rcpts,
    size_t nrcpts, enum smime_cipher cipher, enum smime_padding padding,
    BIO *out, struct kmerr *err)
{
	const EVP_CIPHER *ciph;
	const char *stype;
	CMS_ContentInfo *cms = NULL;
	BIO *b64 = NULL;
	char hdr[512];
	unsigned int flags = CMS_BINARY | CMS_PARTIAL | CMS_STREAM;
	struct kmerr mine;
	enum km_status st;

	if (err == NULL)
		err = &mine;
	kmerr_clear(err);
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
	st = KM_TEMPFAIL;
	if (!puts_out(out, hdr))
		goto write_fail;
	if ((b64 = smime_b64_new(out)) == NULL) {
		st = smime_ossl(err, KM_NOMEM, "encrypt: BIO");
		goto out;
	}
	if ((st = stream_content(b64, cms, src, err)) != KM_OK)
		goto write_fail;
	st = KM_TEMPFAIL;
	if (!smime_b64_finish(b64) || BIO_flush(out) != 1)
		goto write_fail;
	st = KM_OK;
	goto out;
write_fail:
	st = write_failed(st, err, "encrypt: writing output");
out:
	smime_b64_free(b64);
	CMS_ContentInfo_free(cms);
	return st;
}
