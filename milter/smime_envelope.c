/*
 * smime_envelope.c - S/MIME decryption with OpenSSL 3 CMS: parse an
 * enveloped message once, match candidates against its RecipientInfos,
 * decrypt with one candidate or prove that every reader opens it (see
 * smime.h).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "cms_stream.h"
#include "log.h"
#include "mime.h"
#include "secmem.h"
#include "smime.h"
#include "smime_int.h"

struct smime_envelope {
	CMS_ContentInfo	*cms;
	unsigned char	*der;		/* cms re-encoded, for fresh copies */
	int		 derlen;
	struct cms_stream *cs;		/* large input read as a stream, or NULL */
	char		**rid;
	size_t		 nrid;
	int		 auth;
};

/*
 * load_cms - an S/MIME input as a CMS ContentInfo
 * Accepts application/(x-)pkcs7-mime entities or raw DER (ctype NULL and a
 * leading SEQUENCE).
 */
static enum km_status
load_cms(const char *ctype, const char *body, size_t len,
    CMS_ContentInfo **cms, struct kmerr *err)
{
	struct mime_headers *h = NULL;
	struct mime_ctype *ct = NULL;
	const char *cte, *b;
	size_t blen;
	enum km_status st;
	enum mime_smime_kind k;

	*cms = NULL;
	if (ctype == NULL && len > 0 && (unsigned char)body[0] == 0x30)
		return smime_der_to_cms((const unsigned char *)body, len, cms,
		    err);
	if ((st = smime_open_entity(ctype, body, len, &ct, &cte, &b, &blen, &h,
	    err)) != KM_OK)
		return st;
	k = mime_smime_kind(ct);
	if (k != MIME_SMIME_ENVELOPED && k != MIME_SMIME_AUTH_ENVELOPED &&
	    k != MIME_SMIME_SIGNED_OPAQUE && k != MIME_SMIME_PKCS7_UNKNOWN) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "not an S/MIME pkcs7-mime entity "
		    "(%s/%s, %s)", mime_ctype_type(ct), mime_ctype_subtype(ct),
		    mime_smime_kind_name(k));
		st = KM_PROTO;
		goto out;
	}
	st = smime_body_to_cms(cte, b, blen, cms, err);
out:
	mime_ctype_free(ct);
	mime_headers_free(h);
	return st;
}

/* hexstr - lower-case hex of bytes into a new string */
static char *
hexstr(const unsigned char *p, size_t n)
{
	char *s = malloc(n * 2 + 1);
	size_t i;

	if (s == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		snprintf(s + 2 * i, 3, "%02x", p[i]);
	s[2 * n] = '\0';
	return s;
}

/* rid_string - printable RecipientIdentifier */
static char *
rid_string(const char *prefix, const ASN1_OCTET_STRING *keyid,
    const X509_NAME *issuer, const ASN1_INTEGER *sno)
{
	char *s = NULL, *hex = NULL, name[256] = "";
	BIO *m = NULL;
	BIGNUM *bn = NULL;
	size_t n;

	if (keyid != NULL) {
		if ((hex = hexstr(ASN1_STRING_get0_data(keyid),
		    (size_t)ASN1_STRING_length(keyid))) == NULL)
			return NULL;
		n = strlen(prefix) + strlen(hex) + 8;
		if ((s = malloc(n)) != NULL)
			snprintf(s, n, "%sski=%s", prefix, hex);
		free(hex);
		return s;
	}
	if (issuer == NULL || sno == NULL)
		return strdup("unknown");
	if ((m = BIO_new(BIO_s_mem())) != NULL &&
	    X509_NAME_print_ex(m, issuer, 0, XN_FLAG_RFC2253) >= 0) {
		int r = BIO_read(m, name, sizeof(name) - 1);

		name[r > 0 ? r : 0] = '\0';
	}
	BIO_free(m);
	if ((bn = ASN1_INTEGER_to_BN(sno, NULL)) == NULL ||
	    (hex = BN_bn2hex(bn)) == NULL) {
		BN_free(bn);
		return NULL;
	}
	n = strlen(prefix) + strlen(name) + strlen(hex) + 24;
	if ((s = malloc(n)) != NULL)
		snprintf(s, n, "%sissuer=%s;serial=%s", prefix, name, hex);
	OPENSSL_free(hex);
	BN_free(bn);
	return s;
}

/* env_add_rid - append a printable recipient id */
static enum km_status
env_add_rid(struct smime_envelope *env, char *s)
{
	char **n;

	if (s == NULL)
		return KM_NOMEM;
	if ((n = reallocarray(env->rid, env->nrid + 1, sizeof(*n))) == NULL) {
		free(s);
		return KM_NOMEM;
	}
	env->rid = n;
	env->rid[env->nrid++] = s;
	return KM_OK;
}

/* env_add_kari - the recipient ids of a key agreement RecipientInfo */
static enum km_status
env_add_kari(struct smime_envelope *env, CMS_RecipientInfo *ri)
{
	STACK_OF(CMS_RecipientEncryptedKey) *reks;
	enum km_status st = KM_OK;
	int j;

	reks = CMS_RecipientInfo_kari_get0_reks(ri);
	for (j = 0; st == KM_OK &&
	    j < sk_CMS_RecipientEncryptedKey_num(reks); j++) {
		CMS_RecipientEncryptedKey *rek =
		    sk_CMS_RecipientEncryptedKey_value(reks, j);
		ASN1_OCTET_STRING *keyid = NULL;
		X509_NAME *issuer = NULL;
		ASN1_INTEGER *sno = NULL;
		ASN1_GENERALIZEDTIME *tm;
		CMS_OtherKeyAttribute *other;
		char *s;

		if (!CMS_RecipientEncryptedKey_get0_id(rek, &keyid, &tm,
		    &other, &issuer, &sno))
			s = strdup("kari:unknown");
		else
			s = rid_string("kari:", keyid, issuer, sno);
		st = env_add_rid(env, s);
	}
	return st;
}

/* env_add_ri - the printable recipient id(s) of one RecipientInfo */
static enum km_status
env_add_ri(struct smime_envelope *env, CMS_RecipientInfo *ri)
{
	ASN1_OCTET_STRING *keyid = NULL;
	X509_NAME *issuer = NULL;
	ASN1_INTEGER *sno = NULL;
	char *s;

	switch (CMS_RecipientInfo_type(ri)) {
	case CMS_RECIPINFO_TRANS:
		if (!CMS_RecipientInfo_ktri_get0_signer_id(ri, &keyid,
		    &issuer, &sno))
			s = strdup("ktri:unknown");
		else
			s = rid_string("", keyid, issuer, sno);
		return env_add_rid(env, s);
	case CMS_RECIPINFO_AGREE:
		return env_add_kari(env, ri);
	case CMS_RECIPINFO_KEK:
		return env_add_rid(env, strdup("kekri"));
	case CMS_RECIPINFO_PASS:
		return env_add_rid(env, strdup("pwri"));
	default:
		return env_add_rid(env, strdup("other"));
	}
}

/* env_setup - the envelope's type and printable recipient ids */
static enum km_status
env_setup(struct smime_envelope *env, struct kmerr *err)
{
	STACK_OF(CMS_RecipientInfo) *ris;
	enum km_status st;
	int nid, i;

	nid = OBJ_obj2nid(CMS_get0_type(env->cms));
	if (nid == NID_id_smime_ct_authEnvelopedData)
		env->auth = 1;
	else if (nid != NID_pkcs7_enveloped) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "not enveloped data: CMS content type "
		    "%s", OBJ_nid2sn(nid));
		return KM_PROTO;
	}
	if ((ris = CMS_get0_RecipientInfos(env->cms)) == NULL ||
	    sk_CMS_RecipientInfo_num(ris) <= 0) {
		ERR_clear_error();
		return kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "malformed CMS: no RecipientInfos");
	}
	for (i = 0; i < sk_CMS_RecipientInfo_num(ris); i++) {
		if ((st = env_add_ri(env, sk_CMS_RecipientInfo_value(ris,
		    i))) != KM_OK)
			return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	}
	ERR_clear_error();
	return KM_OK;
}

/* smime_envelope_open - parse an enveloped message once */
enum km_status
smime_envelope_open(const char *ctype, const char *body, size_t len,
    struct smime_envelope **out, struct kmerr *err)
{
	struct smime_envelope *env;
	enum km_status st;

	*out = NULL;
	ERR_clear_error();
	if ((env = calloc(1, sizeof(*env))) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return KM_NOMEM;
	}
	if ((st = load_cms(ctype, body, len, &env->cms, err)) !=
	    KM_OK || (st = env_setup(env, err)) != KM_OK)
		goto fail;
	*out = env;
	return KM_OK;
fail:
	if (st != KM_OK)
		ossl_drain("envelope");
	smime_envelope_free(env);
	return st;
}

/*
 * smime_envelope_open_stream - parse an enveloped message read from a BIO
 * (cms_stream.h): its encrypted content stays where it is and is read
 * again from in for each decryption, so in must outlive the envelope
 */
enum km_status
smime_envelope_open_stream(BIO *in, enum cms_in_mode mode,
    struct smime_envelope **out, struct kmerr *err)
{
	struct smime_envelope *env;
	const unsigned char *der;
	size_t derlen;
	enum km_status st;

	*out = NULL;
	ERR_clear_error();
	if ((env = calloc(1, sizeof(*env))) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return KM_NOMEM;
	}
	if ((st = cms_stream_open(in, mode, &env->cs, err)) != KM_OK)
		goto fail;
	der = cms_stream_der(env->cs, &derlen);
	if ((st = smime_der_to_cms(der, derlen, &env->cms, err)) != KM_OK ||
	    (st = env_setup(env, err)) != KM_OK)
		goto fail;
	*out = env;
	return KM_OK;
fail:
	ossl_drain("envelope");
	smime_envelope_free(env);
	return st;
}


/* smime_envelope_count - number of recipient identifiers */
size_t
smime_envelope_count(const struct smime_envelope *env)
{
	return env ? env->nrid : 0;
}

/* smime_envelope_rid - printable recipient identifier i */
const char *
smime_envelope_rid(const struct smime_envelope *env, size_t i)
{
	return (env && i < env->nrid) ? env->rid[i] : NULL;
}

/* smime_envelope_is_auth - 1 for AuthEnvelopedData */
int
smime_envelope_is_auth(const struct smime_envelope *env)
{
	return env ? env->auth : 0;
}

/* smime_envelope_match - 1 when cert matches one of the RecipientInfos */
int
smime_envelope_match(const struct smime_envelope *env, X509 *cert)
{
	STACK_OF(CMS_RecipientInfo) *ris;
	int i, j, found = 0;

	if (env == NULL || cert == NULL)
		return 0;
	ris = CMS_get0_RecipientInfos(env->cms);
	for (i = 0; !found && i < sk_CMS_RecipientInfo_num(ris); i++) {
		CMS_RecipientInfo *ri = sk_CMS_RecipientInfo_value(ris, i);
		STACK_OF(CMS_RecipientEncryptedKey) *reks;

		switch (CMS_RecipientInfo_type(ri)) {
		case CMS_RECIPINFO_TRANS:
			if (CMS_RecipientInfo_ktri_cert_cmp(ri, cert) == 0)
				found = 1;
			break;
		case CMS_RECIPINFO_AGREE:
			reks = CMS_RecipientInfo_kari_get0_reks(ri);
			for (j = 0; j < sk_CMS_RecipientEncryptedKey_num(reks);
			    j++)
				if (CMS_RecipientEncryptedKey_cert_cmp(
				    sk_CMS_RecipientEncryptedKey_value(reks, j),
				    cert) == 0)
					found = 1;
			break;
		default:
			break;
		}
	}
	ERR_clear_error();
	return found;
}

/*
 * der_enter - read the header of the TLV at *p (end is the end of the
 * enclosing value); want is its tag (-1: any).  *vlen gets its length;
 * *p then points at its contents.  0 on a mismatch or bad encoding.
 */
static int
der_enter(const unsigned char **p, const unsigned char *end, int want, int wclass,
    long *vlen)
{
	int tag, xclass, r;

	r = ASN1_get_object(p, vlen, &tag, &xclass, end - *p);
	if ((r & 0x80) || (r & 0x01) || *vlen > end - *p)
		return 0;	/* an error, or indefinite length (not DER) */
	return (want < 0 || tag == want) && xclass == wclass;
}

/* der_skip - step over the TLV at *p, whatever its tag */
static int
der_skip(const unsigned char **p, const unsigned char *end)
{
	long vlen;
	int tag, xclass, r;

	r = ASN1_get_object(p, &vlen, &tag, &xclass, end - *p);
	if ((r & 0x80) || (r & 0x01) || vlen > end - *p)
		return 0;
	*p += vlen;
	return 1;
}

/*
 * smime_envelope_cipher - the content-encryption algorithm, as OpenSSL's
 * short name ("AES-256-CBC", "DES-EDE3-CBC", "RC2-CBC", ...) or its
 * dotted OID; NULL when it cannot be read.  Read from the DER encoding:
 * OpenSSL 3 has no getter for EncryptedContentInfo.  Enveloped and
 * AuthEnveloped data have the same fields before it: version,
 * [0] originatorInfo (optional), recipientInfos.
 */
const char *
smime_envelope_cipher(struct smime_envelope *env, char *buf, size_t len)
{
	const unsigned char *p, *end, *q;
	ASN1_OBJECT *oid = NULL;
	long vlen;
	int nid;

	if (env == NULL || (env->der == NULL &&
	    (env->derlen = i2d_CMS_ContentInfo(env->cms, &env->der)) <= 0)) {
		if (env != NULL)
			env->der = NULL;
		return NULL;
	}
	p = env->der;
	end = p + env->derlen;
	/* ContentInfo { contentType, [0] EXPLICIT content } */
	if (!der_enter(&p, end, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, &vlen) ||
	    !der_skip(&p, end))
		return NULL;
	if (!der_enter(&p, end, 0, V_ASN1_CONTEXT_SPECIFIC, &vlen) ||
	    !der_enter(&p, end, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, &vlen))
		return NULL;
	end = p + vlen;
	if (!der_skip(&p, end))				/* version */
		return NULL;
	q = p;
	if (der_enter(&q, end, 0, V_ASN1_CONTEXT_SPECIFIC, &vlen))
		p = q + vlen;				/* originatorInfo */
	if (!der_skip(&p, end) ||			/* recipientInfos */
	    !der_enter(&p, end, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, &vlen) ||
	    !der_skip(&p, end) ||			/* contentType */
	    !der_enter(&p, end, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, &vlen) ||
	    (oid = d2i_ASN1_OBJECT(NULL, &p, end - p)) == NULL) {
		ERR_clear_error();
		return NULL;
	}
	if ((nid = OBJ_obj2nid(oid)) != NID_undef)
		snprintf(buf, len, "%s", OBJ_nid2sn(nid));
	else if (OBJ_obj2txt(buf, (int)len, oid, 1) <= 0)
		snprintf(buf, len, "unknown");
	ASN1_OBJECT_free(oid);
	return buf;
}

/*
 * env_decrypt - CMS_decrypt of cms (the envelope's, or a fresh copy) from
 * its own content or, for a streamed envelope, from a new pass over the
 * input.  1 on success; else 0, with serr set when reading the stream
 * failed (status KM_OK otherwise: OpenSSL's queue says why).
 */
static int
env_decrypt(struct smime_envelope *env, CMS_ContentInfo *cms, BIO *out,
    struct kmerr *serr)
{
	BIO *dcont = NULL;

	kmerr_clear(serr);
	if (env->cs != NULL && (dcont = cms_stream_content(env->cs, serr)) == NULL)
		return 0;
	if (CMS_decrypt(cms, NULL, NULL, dcont, out, CMS_BINARY) == 1)
		return 1;
	if (env->cs != NULL && cms_stream_error(env->cs)->status != KM_OK)
		*serr = *cms_stream_error(env->cs);
	return 0;
}

/* smime_envelope_decrypt - unwrap with the first matching candidate */
enum km_status
smime_envelope_decrypt(struct smime_envelope *env,
    const struct smime_keypair *cands, size_t ncands, BIO *out,
    int *matched, struct kmerr *err)
{
	size_t i;
	int any = 0, got = -1;
	struct kmerr why = { KM_OK, KMERR_NONE, "" };

	if (matched != NULL)
		*matched = -1;
	ERR_clear_error();
	if (env == NULL || out == NULL) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "decrypt: no envelope or output");
		return KM_PERMFAIL;
	}
	/* Unwrap the content-encryption key first: no output until one
	   candidate works, so a failed try cannot leave junk in out. */
	for (i = 0; i < ncands && got < 0; i++) {
		if (cands[i].cert == NULL || cands[i].key == NULL ||
		    !smime_envelope_match(env, cands[i].cert))
			continue;
		any = 1;
		if (matched != NULL)
			*matched = (int)i;
		if (X509_check_private_key(cands[i].cert, cands[i].key) != 1) {
			smime_ossl(&why, KM_PERMFAIL,
			    "decryption failed: candidate key does not match "
			    "its certificate");
			continue;
		}
		/* Without CMS_DEBUG_DECRYPT OpenSSL hides key-unwrap errors
		   (MMA countermeasure): a wrong key shows up below as a
		   content decryption failure. */
		if (CMS_decrypt_set1_pkey(env->cms, cands[i].key,
		    cands[i].cert) == 1)
			got = (int)i;
		else
			smime_ossl(&why, KM_PERMFAIL,
			    "decryption failed");
	}
	if (!any) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no matching recipient: none of %zu "
		    "candidate certificates matches the %zu RecipientInfos",
		    ncands, env->nrid);
		return KM_PERMFAIL;
	}
	if (got < 0) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s", why.msg[0] ? why.msg :
		    "decryption failed");
		return KM_PERMFAIL;
	}
	if (matched != NULL)
		*matched = got;
	if (!env_decrypt(env, env->cms, out, &why)) {
		if (why.status == KM_OK)
			return smime_ossl(err, KM_PERMFAIL, "decryption failed");
		ossl_drain("decrypt stream");
		*err = why;
		return why.status;
	}
	if (BIO_flush(out) != 1)
		return smime_ossl(err, KM_TEMPFAIL,
		    "decrypt: writing output");
	return KM_OK;
}

/*
 * Readers.  smime_envelope_decrypt() proves only that one of the
 * candidates opens the content; smime_envelope_decrypt_readers() proves
 * it for each reader, with that reader's keys alone.
 *
 * How: OpenSSL 3 has no public getter for the content-encryption key
 * (CEK), so each reader decrypts the whole content with its own
 * RecipientInfo, the first into out and all of them through a SHA-256
 * digest, and the digests must be equal.  Same ciphertext, same IV and
 * the same plaintext means the same CEK; a wrong CEK fails the CBC
 * padding or the GCM tag, or yields other bytes.  This matters because
 * of OpenSSL's MMA countermeasure: a RecipientInfo whose wrapped key does
 * not unwrap (random bytes, or a copy of someone else's encryptedKey
 * under this reader's issuer+serial) does not report an error, it yields
 * a random CEK, so "CMS_decrypt_set1_pkey() succeeded" proves nothing.
 * Each try works on a fresh copy of the CMS (decoded again from DER), so
 * no CEK set by an earlier reader can be reused by a later one.
 * (CMS_RecipientInfo_set0_pkey() + CMS_RecipientInfo_decrypt() per RI
 * would unwrap without decrypting the content, but leaves the CEK in a
 * structure with no public getter to compare it: the digest is the
 * honest check.)  Cost: one content decryption per reader; a single
 * reader is simply smime_envelope_decrypt() with its own keys.
 */

/* env_fresh - a new copy of the envelope's CMS, nothing decrypted yet */
static CMS_ContentInfo *
env_fresh(struct smime_envelope *env)
{
	const unsigned char *p;

	if (env->der == NULL) {
		env->derlen = i2d_CMS_ContentInfo(env->cms, &env->der);
		if (env->derlen <= 0) {
			env->der = NULL;
			return NULL;
		}
	}
	p = env->der;
	return d2i_CMS_ContentInfo(NULL, &p, env->derlen);
}

/* mem_discard - wipe and empty a memory BIO after a failed try */
static int
mem_discard(BIO *b)
{
	char *data;
	long n;

	if (BIO_method_type(b) != BIO_TYPE_MEM)
		return 0;
	if ((n = BIO_get_mem_data(b, &data)) > 0)
		secmem_wipe(data, (size_t)n);
	return BIO_reset(b) == 1;
}

/*
 * try_reader_key - decrypt a fresh copy with one (cert, key) into sink
 * (out, or a null BIO), through a SHA-256 digest into md.  1 on success.
 */
static int
try_reader_key(struct smime_envelope *env, const struct smime_keypair *kp,
    BIO *sink, unsigned char *md, unsigned int *mdlen)
{
	CMS_ContentInfo *cms = NULL;
	BIO *dig = NULL;
	struct kmerr serr;
	int ok = 0, n;

	if (X509_check_private_key(kp->cert, kp->key) != 1 ||
	    (cms = env_fresh(env)) == NULL ||
	    (dig = BIO_new(BIO_f_md())) == NULL ||
	    BIO_set_md(dig, EVP_sha256()) != 1)
		goto out;
	BIO_push(dig, sink);
	if (CMS_decrypt_set1_pkey(cms, kp->key, kp->cert) == 1 &&
	    env_decrypt(env, cms, dig, &serr) &&
	    BIO_flush(dig) == 1 &&
	    (n = BIO_gets(dig, (char *)md, EVP_MAX_MD_SIZE)) > 0) {
		*mdlen = (unsigned int)n;
		ok = 1;
	}
	BIO_pop(dig);
out:
	BIO_free(dig);
	CMS_ContentInfo_free(cms);
	ossl_drain("decrypt reader");
	return ok;
}

/* smime_envelope_decrypt_readers - every reader opens it with its own keys */
enum km_status
smime_envelope_decrypt_readers(struct smime_envelope *env,
    const struct smime_reader *readers, size_t nreaders, BIO *out,
    int *failed, int *matched, struct kmerr *err)
{
	unsigned char ref[EVP_MAX_MD_SIZE], md[EVP_MAX_MD_SIZE];
	unsigned int reflen = 0, mdlen = 0;
	const struct smime_keypair *first = NULL;
	BIO *null = NULL;
	size_t r, i;
	int done = 0, wipe;

	if (failed != NULL)
		*failed = -1;
	ERR_clear_error();
	if (env == NULL || out == NULL || readers == NULL || nreaders == 0) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "decrypt: no envelope, output or reader");
		return KM_PERMFAIL;
	}
	if (nreaders == 1) {
		/* One reader: its own keys opening it is all there is to
		   prove; no copy, no digest. */
		enum km_status st = smime_envelope_decrypt(env, readers[0].cands,
		    readers[0].ncands, out, matched, err);

		if (st != KM_OK)
			(void)mem_discard(out);
		if (st == KM_PERMFAIL && failed != NULL)
			*failed = 0;
		return st;
	}
	wipe = BIO_method_type(out) == BIO_TYPE_MEM;
	if ((null = BIO_new(BIO_s_null())) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return KM_NOMEM;
	}
	for (r = 0; r < nreaders; r++) {
		const struct smime_reader *rd = &readers[r];
		int ok = 0;

		if (matched != NULL)
			matched[r] = -1;
		for (i = 0; i < rd->ncands && !ok; i++) {
			const struct smime_keypair *kp = &rd->cands[i];

			if (kp->cert == NULL || kp->key == NULL ||
			    !smime_envelope_match(env, kp->cert))
				continue;
			/* The first reader's plaintext goes to out; a
			   failed try there is wiped before the next.  An
			   out that cannot be wiped (a spool) gets it only
			   at the end, from the key that is proven. */
			ok = try_reader_key(env, kp, done || !wipe ? null : out,
			    md, &mdlen) && (!done || (mdlen == reflen &&
			    CRYPTO_memcmp(md, ref, mdlen) == 0));
			if (ok && matched != NULL)
				matched[r] = (int)i;
			if (ok && !done)
				first = kp;
			if (!ok && !done && wipe && !mem_discard(out))
				break;
		}
		if (!ok) {
			if (failed != NULL)
				*failed = (int)r;
			kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
			    "reader %zu: its RecipientInfo "
			    "does not yield the content key", r);
			BIO_free(null);
			return KM_PERMFAIL;
		}
		if (!done) {
			memcpy(ref, md, mdlen);
			reflen = mdlen;
			done = 1;
		}
	}
	BIO_free(null);
	if (!wipe && (!try_reader_key(env, first, out, md, &mdlen) ||
	    mdlen != reflen || CRYPTO_memcmp(md, ref, mdlen) != 0)) {
		if (failed != NULL)
			*failed = 0;
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "reader 0: decrypting into the output gave other content");
		return KM_PERMFAIL;
	}
	return KM_OK;
}

/* smime_envelope_free - free an envelope; returns NULL */
struct smime_envelope *
smime_envelope_free(struct smime_envelope *env)
{
	size_t i;

	if (env == NULL)
		return NULL;
	for (i = 0; i < env->nrid; i++)
		free(env->rid[i]);
	free(env->rid);
	cms_stream_free(env->cs);
	CMS_ContentInfo_free(env->cms);
	OPENSSL_free(env->der);
	free(env);
	return NULL;
}

/* smime_decrypt - decrypt with the first candidate that matches */
enum km_status
smime_decrypt(const char *ctype, const char *body, size_t len,
    const struct smime_keypair *cands, size_t ncands, BIO *out,
    int *matched, struct kmerr *err)
{
	struct smime_envelope *env = NULL;
	enum km_status st;

	if (matched != NULL)
		*matched = -1;
	if ((st = smime_envelope_open(ctype, body, len, &env, err)) != KM_OK)
		return st;
	st = smime_envelope_decrypt(env, cands, ncands, out, matched,
	    err);
	smime_envelope_free(env);
	return st;
}

