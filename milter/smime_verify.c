/*
 * smime_verify.c - check an S/MIME signature with OpenSSL 3 CMS (see
 * smime_verify.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "keymodel_cert.h"
#include "log.h"
#include "mime.h"
#include "revcheck.h"
#include "secmem.h"
#include "smime.h"
#include "smime_verify.h"
#include "smime_b64.h"
#include "smime_int.h"

/* addr_of - the addr-spec inside "Name <addr>" (or the whole string) */
static void
addr_of(const char *from, char *buf, size_t buflen)
{
	const char *lt = strrchr(from, '<'), *gt, *s = from, *e;

	if (lt != NULL && (gt = strchr(lt, '>')) != NULL) {
		s = lt + 1;
		e = gt;
	} else
		e = from + strlen(from);
	while (s < e && isspace((unsigned char)*s))
		s++;
	while (e > s && isspace((unsigned char)e[-1]))
		e--;
	snprintf(buf, buflen, "%.*s", (int)(e - s), s);
}

/* signer_details - fill subject, email, fingerprint, from_match */
static void
signer_details(X509 *signer, const char *from, struct smime_verify_result *r)
{
	STACK_OF(OPENSSL_STRING) *emails;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;
	char addr[256] = "";
	BIO *m;
	int k;

	if ((m = BIO_new(BIO_s_mem())) != NULL &&
	    X509_NAME_print_ex(m, X509_get_subject_name(signer), 0,
	    XN_FLAG_RFC2253) >= 0) {
		int n = BIO_read(m, r->subject, sizeof(r->subject) - 1);

		r->subject[n > 0 ? n : 0] = '\0';
	}
	BIO_free(m);
	if (X509_digest(signer, EVP_sha256(), md, &mdlen) == 1)
		for (i = 0; i < mdlen && i < 32; i++)
			snprintf(r->fingerprint + 2 * i, 3, "%02x", md[i]);
	if (from != NULL)
		addr_of(from, addr, sizeof(addr));
	emails = X509_get1_email(signer);
	for (k = 0; k < sk_OPENSSL_STRING_num(emails); k++) {
		const char *e = sk_OPENSSL_STRING_value(emails, k);

		if (k == 0)
			snprintf(r->email, sizeof(r->email), "%s", e);
		if (addr[0] != '\0' && strcasecmp(e, addr) == 0) {
			r->from_match = 1;
			snprintf(r->email, sizeof(r->email), "%s", e);
		}
	}
	X509_email_free(emails);
}

/* signing_time - the signingTime attribute of a SignerInfo, 0 if none */
static time_t
signing_time(CMS_SignerInfo *si)
{
	int idx = CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1);
	X509_ATTRIBUTE *a;
	ASN1_TYPE *t;

	if (idx < 0 || (a = CMS_signed_get_attr(si, idx)) == NULL ||
	    (t = X509_ATTRIBUTE_get0_type(a, 0)) == NULL)
		return 0;
	if (t->type != V_ASN1_UTCTIME && t->type != V_ASN1_GENERALIZEDTIME)
		return 0;
	return keymodel_cert_time((const ASN1_TIME *)t->value.asn1_string);
}

/* check_revoked - ask revcheck about a signer whose chain verified */
static void
check_revoked(struct revcheck *rv, X509 *signer, X509_STORE_CTX *ctx,
    X509_STORE *store, struct smime_verify_result *r)
{
	STACK_OF(X509) *chain = X509_STORE_CTX_get1_chain(ctx);
	struct kmerr e;
	enum km_status st;

	kmerr_clear(&e);
	st = revcheck_cert(rv, signer, chain, store, &e);
	if (st == KM_PERMFAIL && kmerr_is(&e, KMERR_REFUSED))
		r->revoked = 1;
	else if (st != KM_OK)
		r->rev_unknown = 1;
	if (st != KM_OK || e.msg[0] != '\0')
		snprintf(r->rev_error, sizeof(r->rev_error), "%.159s", e.msg);
	sk_X509_pop_free(chain, X509_free);
}

/* verify_chain - check the signer's chain, purpose smimesign */
static void
verify_chain(CMS_ContentInfo *cms, X509 *signer, X509_STORE *store,
    struct revcheck *rv, struct smime_verify_result *r)
{
	X509_STORE_CTX *ctx = NULL;
	STACK_OF(X509) *certs = CMS_get1_certs(cms);

	if (store == NULL) {
		snprintf(r->chain_error, sizeof(r->chain_error),
		    "no trust store");
		goto out;
	}
	if ((ctx = X509_STORE_CTX_new()) == NULL ||
	    !X509_STORE_CTX_init(ctx, store, signer, certs) ||
	    !X509_STORE_CTX_set_default(ctx, "smime_sign")) {
		snprintf(r->chain_error, sizeof(r->chain_error),
		    "cannot set up chain verification");
		goto out;
	}
	if (X509_verify_cert(ctx) == 1) {
		r->chain_ok = 1;
		if (rv != NULL)
			check_revoked(rv, signer, ctx, store, r);
	} else
		snprintf(r->chain_error, sizeof(r->chain_error), "%s",
		    X509_verify_cert_error_string(
		    X509_STORE_CTX_get_error(ctx)));
out:
	X509_STORE_CTX_free(ctx);
	sk_X509_pop_free(certs, X509_free);
	ossl_drain("verify chain");
}

/*
 * check_digests - refuse a SignerInfo whose digest algorithm no provider
 * implements, before CMS_verify() sees it (OpenSSL 3 leaks its partly
 * built digest context on that path).  KM_PROTO, "unsupported digest
 * algorithm OID x.y.z" in err.
 */
static enum km_status
check_digests(STACK_OF(CMS_SignerInfo) *sis, struct kmerr *err)
{
	for (int i = 0; i < sk_CMS_SignerInfo_num(sis); i++) {
		X509_ALGOR *dig = NULL;
		const ASN1_OBJECT *oid = NULL;
		char txt[80] = "?";
		EVP_MD *md;

		CMS_SignerInfo_get0_algs(sk_CMS_SignerInfo_value(sis, i), NULL, NULL, &dig, NULL);
		if (dig != NULL)
			X509_ALGOR_get0(&oid, NULL, NULL, dig);
		if (oid == NULL || OBJ_obj2txt(txt, sizeof(txt), oid, 1) <= 0) {
			kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
			    "unsupported digest algorithm OID (none)");
			return KM_PROTO;
		}
		/* Providers know each digest by its dotted OID as well. */
		ERR_set_mark();
		md = EVP_MD_fetch(NULL, txt, NULL);
		ERR_pop_to_mark();
		if (md == NULL) {
			kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
			    "unsupported digest algorithm OID %s", txt);
			return KM_PROTO;
		}
		EVP_MD_free(md);
	}
	return KM_OK;
}

/*
 * content_bio - the detached content as a read BIO that is not a memory
 * BIO.  OpenSSL 3.0's CMS_verify copies a memory BIO into a BIO of its own
 * and leaks that copy when CMS_dataInit fails (e.g. a digestAlgorithms
 * entry it cannot fetch; found by fuzz_cms); behind a buffer BIO it reads
 * the caller's BIO directly.
 */
static BIO *
content_bio(const char *content, size_t clen)
{
	BIO *mem = BIO_new_mem_buf(content, (int)clen), *buf = BIO_new(BIO_f_buffer());

	if (mem == NULL || buf == NULL) {
		BIO_free(mem);
		BIO_free(buf);
		return NULL;
	}
	return BIO_push(buf, mem);
}

/*
 * sig_part_cms - the CMS in the second part of a multipart/signed: its
 * Content-Type must be application/(x-)pkcs7-signature
 */
static enum km_status
sig_part_cms(const char *sp, size_t splen, CMS_ContentInfo **cms,
    struct kmerr *err)
{
	struct mime_headers *sh = NULL;
	struct mime_ctype *sct = NULL;
	const char *stype, *scte;
	size_t hlen, boff;
	enum km_status st;

	if ((st = mime_entity_split(sp, splen, &hlen, &boff, err)) !=
	    KM_OK || (st = mime_headers_parse(sp, hlen, &sh, err)) != KM_OK) {
		kmerr_prefix(err, "malformed signature part: ");
		goto out;
	}
	if ((stype = mime_headers_get(sh, "Content-Type")) == NULL ||
	    (st = mime_ctype_parse(stype, &sct, NULL)) != KM_OK ||
	    strcmp(mime_ctype_type(sct), "application") != 0 ||
	    (strcmp(mime_ctype_subtype(sct), "pkcs7-signature") != 0 &&
	    strcmp(mime_ctype_subtype(sct), "x-pkcs7-signature") != 0)) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "malformed multipart/signed: second "
		    "part is not application/pkcs7-signature");
		st = KM_PROTO;
		goto out;
	}
	scte = mime_headers_get(sh, "Content-Transfer-Encoding");
	st = smime_body_to_cms(scte, sp + boff, splen - boff, cms, err);
out:
	mime_ctype_free(sct);
	mime_headers_free(sh);
	return st;
}

/*
 * load_detached - split a multipart/signed body (b, blen): *content is
 * part 0 (a pointer into b), *cms the signature of part 1
 */
static enum km_status
load_detached(const struct mime_ctype *ct, const char *b, size_t blen,
    const char **content, size_t *clen, CMS_ContentInfo **cms,
    struct kmerr *err)
{
	struct mime_parts *parts = NULL;
	enum km_status st;

	if ((st = mime_multipart_split(b, blen, mime_ctype_param(ct,
	    "boundary"), &parts, err)) != KM_OK) {
		kmerr_prefix(err, "malformed multipart/signed: ");
		goto out;
	}
	if (parts->count != 2) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "malformed multipart/signed: %zu "
		    "parts, not 2", parts->count);
		st = KM_PROTO;
		goto out;
	}
	*content = b + parts->part[0].off;
	*clen = parts->part[0].len;
	st = sig_part_cms(b + parts->part[1].off, parts->part[1].len, cms,
	    err);
out:
	mime_parts_free(parts);
	return st;
}

/*
 * load_signed - the CMS of a signed input (raw DER, opaque signed-data or
 * multipart/signed); for multipart/signed *content is the signed part (a
 * pointer into body), else res->opaque is set
 */
static enum km_status
load_signed(const char *ctype, const char *body, size_t len,
    struct smime_verify_result *res, const char **content, size_t *clen,
    CMS_ContentInfo **cms, struct kmerr *err)
{
	struct mime_headers *h = NULL;
	struct mime_ctype *ct = NULL;
	const char *cte, *b;
	size_t blen;
	enum km_status st;
	enum mime_smime_kind k;

	if (ctype == NULL && len > 0 && (unsigned char)body[0] == 0x30) {
		if ((st = smime_der_to_cms((const unsigned char *)body, len,
		    cms, err)) == KM_OK)
			res->opaque = 1;
		return st;
	}
	if ((st = smime_open_entity(ctype, body, len, &ct, &cte, &b,
	    &blen, &h, err)) != KM_OK)
		return st;
	k = mime_smime_kind(ct);
	if (k == MIME_SMIME_SIGNED_DETACHED)
		st = load_detached(ct, b, blen, content, clen, cms, err);
	else if (k == MIME_SMIME_SIGNED_OPAQUE ||
	    k == MIME_SMIME_PKCS7_UNKNOWN) {
		if ((st = smime_body_to_cms(cte, b, blen, cms, err)) == KM_OK)
			res->opaque = 1;
	} else {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "not a signed S/MIME entity "
		    "(%s/%s, %s)", mime_ctype_type(ct),
		    mime_ctype_subtype(ct), mime_smime_kind_name(k));
		st = KM_PROTO;
	}
	mime_ctype_free(ct);
	mime_headers_free(h);
	return st;
}

/*
 * signer_report - the first SignerInfo: digest, signing time, signer
 * details and its chain (sig_ok cleared when the signer certificate is
 * not in the message)
 */
static void
signer_report(CMS_ContentInfo *cms, CMS_SignerInfo *si, X509_STORE *store,
    struct revcheck *rv, const char *from, struct smime_verify_result *res)
{
	X509 *signer = NULL;
	X509_ALGOR *dig = NULL, *sig = NULL;
	EVP_PKEY *pk = NULL;

	CMS_SignerInfo_get0_algs(si, &pk, &signer, &dig, &sig);
	if (signer == NULL) {
		STACK_OF(X509) *certs = CMS_get1_certs(cms);
		int i;

		for (i = 0; certs && i < sk_X509_num(certs); i++)
			if (CMS_SignerInfo_cert_cmp(si,
			    sk_X509_value(certs, i)) == 0) {
				CMS_SignerInfo_set1_signer_cert(si,
				    sk_X509_value(certs, i));
				break;
			}
		sk_X509_pop_free(certs, X509_free);
		CMS_SignerInfo_get0_algs(si, &pk, &signer, &dig, &sig);
	}
	if (dig != NULL)
		snprintf(res->digest, sizeof(res->digest), "%s",
		    OBJ_nid2sn(OBJ_obj2nid(dig->algorithm)));
	for (char *p = res->digest; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	res->signing_time = signing_time(si);
	if (signer != NULL) {
		signer_details(signer, from, res);
		verify_chain(cms, signer, store, rv, res);
	} else {
		res->sig_ok = 0;
		snprintf(res->chain_error, sizeof(res->chain_error),
		    "signer certificate not in the message");
	}
}

/*
 * signed_content - the content that was signed: the encapsulated content
 * of opaque signed-data (*content, *clen), or the detached content as a
 * BIO (*dcont) for CMS_verify
 */
static enum km_status
signed_content(CMS_ContentInfo *cms, int opaque, const char **content,
    size_t *clen, BIO **dcont, struct kmerr *err)
{
	if (opaque) {
		ASN1_OCTET_STRING **pos = CMS_get0_content(cms);

		if (pos == NULL || *pos == NULL) {
			kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
			    "malformed signed-data: no "
			    "encapsulated content");
			return KM_PROTO;
		}
		*content = (const char *)ASN1_STRING_get0_data(*pos);
		*clen = (size_t)ASN1_STRING_length(*pos);
	} else if ((*dcont = content_bio(*content, *clen)) == NULL)
		return smime_ossl(err, KM_NOMEM, "verify: BIO");
	return KM_OK;
}

/* has_bare_lf - does the content hold a line feed without CR before it? */
static int
has_bare_lf(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			return 1;
	return 0;
}

/*
 * canonical_copy - the content in canonical form (RFC 8551 3.1.1): each
 * bare LF becomes CRLF, a CRLF stays one.  secmem_alloc'ed (it may be
 * decrypted text), *outlen its length; NULL when out of memory.
 */
static char *
canonical_copy(const char *p, size_t n, size_t *outlen)
{
	size_t extra = 0, o = 0;
	char *c;

	for (size_t i = 0; i < n; i++)
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			extra++;
	if ((c = secmem_alloc(n + extra)) == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			c[o++] = '\r';
		c[o++] = p[i];
	}
	*outlen = o;
	return c;
}

/*
 * verify_canonical - the detached content failed as it stands and holds
 * bare LFs: check the signature over its canonical CRLF form, which is
 * what RFC 8551 3.1.1 says the signer signed (NSS keeps LF inside the
 * envelope).  1 when that verifies; errstr is kept from the first try
 * otherwise.
 */
static int
verify_canonical(CMS_ContentInfo *cms, const char *content, size_t clen,
    BIO *sink)
{
	size_t cl = 0;
	char *c;
	BIO *b;
	int ok = 0;

	if (!has_bare_lf(content, clen) ||
	    (c = canonical_copy(content, clen, &cl)) == NULL)
		return 0;
	if ((b = content_bio(c, cl)) != NULL)
		ok = CMS_verify(cms, NULL, NULL, b, sink,
		    CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY) == 1;
	ERR_clear_error();
	BIO_free_all(b);
	secmem_free(c, cl);
	return ok;
}

/*
 * pref_matches - does x answer an SMIMEEncryptionKeyPreference value (the
 * whole TLV of the CHOICE): [0] IssuerAndSerialNumber or [2]
 * SubjectKeyIdentifier ([1] RecipientKeyIdentifier is not followed)
 */
static int
pref_matches(const unsigned char *der, long len, X509 *x)
{
	const unsigned char *p = der, *end;
	const ASN1_OCTET_STRING *skid;
	X509_NAME *nm = NULL;
	ASN1_INTEGER *sn = NULL;
	long hl;
	int tag, xclass, r, ok = 0;

	r = ASN1_get_object(&p, &hl, &tag, &xclass, len);
	if ((r & 0x80) != 0 || xclass != V_ASN1_CONTEXT_SPECIFIC)
		return 0;
	end = p + hl;
	if (tag == 0 && (r & V_ASN1_CONSTRUCTED) != 0) {
		if ((nm = d2i_X509_NAME(NULL, &p, end - p)) != NULL &&
		    (sn = d2i_ASN1_INTEGER(NULL, &p, end - p)) != NULL &&
		    p == end)
			ok = X509_NAME_cmp(X509_get_issuer_name(x), nm) == 0 &&
			    ASN1_INTEGER_cmp(X509_get0_serialNumber(x),
			    sn) == 0;
	} else if (tag == 2 && (r & V_ASN1_CONSTRUCTED) == 0 &&
	    (skid = X509_get0_subject_key_id(x)) != NULL)
		ok = ASN1_STRING_length(skid) == hl &&
		    memcmp(ASN1_STRING_get0_data(skid), p, (size_t)hl) == 0;
	X509_NAME_free(nm);
	ASN1_INTEGER_free(sn);
	return ok;
}

/*
 * signer_certs - the certificate set and the certificate the first
 * SignerInfo's encKeyPref attribute names, for harvesting
 */
static void
signer_certs(CMS_ContentInfo *cms, CMS_SignerInfo *si,
    struct smime_signer_certs *sc)
{
	ASN1_OBJECT *oid = OBJ_txt2obj(SMIME_OID_ENCKEYPREF, 1);
	X509_ATTRIBUTE *a;
	ASN1_TYPE *t;
	int idx;

	sc->certs = CMS_get1_certs(cms);
	if (oid == NULL || (idx = CMS_signed_get_attr_by_OBJ(si, oid,
	    -1)) < 0 || (a = CMS_signed_get_attr(si, idx)) == NULL ||
	    (t = X509_ATTRIBUTE_get0_type(a, 0)) == NULL) {
		ASN1_OBJECT_free(oid);
		return;
	}
	ASN1_OBJECT_free(oid);
	sc->has_pref = 1;
	if (t->type != V_ASN1_OTHER && t->type != V_ASN1_SEQUENCE)
		return;
	for (int i = 0; i < sk_X509_num(sc->certs); i++) {
		X509 *x = sk_X509_value(sc->certs, i);

		if (pref_matches(ASN1_STRING_get0_data(t->value.asn1_string),
		    ASN1_STRING_length(t->value.asn1_string), x)) {
			sc->pref = x;
			return;
		}
	}
}

/* smime_signer_certs_clear - free what smime_verify_certs() gave */
void
smime_signer_certs_clear(struct smime_signer_certs *sc)
{
	sk_X509_pop_free(sc->certs, X509_free);
	memset(sc, 0, sizeof(*sc));
}

/* check_type - the CMS is signed data */
static enum km_status
check_type(CMS_ContentInfo *cms, struct kmerr *err)
{
	if (OBJ_obj2nid(CMS_get0_type(cms)) == NID_pkcs7_signed)
		return KM_OK;
	return kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
	    "not signed data: CMS content type %s",
	    OBJ_nid2sn(OBJ_obj2nid(CMS_get0_type(cms))));
}

/*
 * check_signed - the signature of a parsed signed-data over dcont (or its
 * own content), then its first signer; a detached content in memory
 * (content, clen) is tried again in canonical CRLF form when it fails.
 * out (NULL: none) gets the content as the signature is checked.
 */
static enum km_status
check_signed(CMS_ContentInfo *cms, BIO *dcont, const char *content, size_t clen,
    BIO *out, X509_STORE *store, struct revcheck *rv, const char *from,
    struct smime_verify_result *res, struct smime_signer_certs *sc,
    struct kmerr *err)
{
	STACK_OF(CMS_SignerInfo) *sis;
	enum km_status st;
	BIO *sink;

	sis = CMS_get0_SignerInfos(cms);
	res->nsigners = sis ? sk_CMS_SignerInfo_num(sis) : 0;
	if (res->nsigners <= 0) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "signed data without SignerInfos");
		return KM_PROTO;
	}
	if ((st = check_digests(sis, err)) != KM_OK)
		return st;
	/* Signature first, without the chain: the chain is judged apart. */
	if ((sink = BIO_new(BIO_s_null())) == NULL)
		return smime_ossl(err, KM_NOMEM, "verify: BIO");
	if (CMS_verify(cms, NULL, NULL, dcont, out != NULL ? out : sink,
	    CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY) == 1)
		res->sig_ok = 1;
	else {
		smime_ossl(err, KM_OK, "signature");
		/* Byte for byte first: a signer may have signed bare LFs. */
		if (!res->opaque && content != NULL &&
		    verify_canonical(cms, content, clen,
		    sink)) {
			res->sig_ok = 1;
			res->canonical = 1;
			kmerr_clear(err);
		}
	}
	signer_report(cms, sk_CMS_SignerInfo_value(sis, 0), store, rv, from,
	    res);
	if (sc != NULL)
		signer_certs(cms, sk_CMS_SignerInfo_value(sis, 0), sc);
	BIO_free(sink);
	return KM_OK;
}

/* smime_verify - check a signed entity */
enum km_status
smime_verify(const char *ctype, const char *body, size_t len,
    X509_STORE *store, const char *from, struct smime_verify_result *res,
    BIO *content_out, struct kmerr *err)
{
	return smime_verify_rev(ctype, body, len, store, NULL, from, res,
	    content_out, NULL, err);
}

/* smime_verify_certs - check a signed entity; sc gets its certificates */
enum km_status
smime_verify_certs(const char *ctype, const char *body, size_t len,
    X509_STORE *store, const char *from, struct smime_verify_result *res,
    BIO *content_out, struct smime_signer_certs *sc, struct kmerr *err)
{
	return smime_verify_rev(ctype, body, len, store, NULL, from, res,
	    content_out, sc, err);
}

/* smime_verify_rev - check a signed entity and its signer's revocation;
 * sc (may be NULL) gets its certificates */
enum km_status
smime_verify_rev(const char *ctype, const char *body, size_t len,
    X509_STORE *store, struct revcheck *rv, const char *from,
    struct smime_verify_result *res, BIO *content_out,
    struct smime_signer_certs *sc, struct kmerr *err)
{
	CMS_ContentInfo *cms = NULL;
	const char *content = NULL;
	size_t clen = 0;
	BIO *dcont = NULL;
	enum km_status st;

	memset(res, 0, sizeof(*res));
	if (sc != NULL)
		memset(sc, 0, sizeof(*sc));
	ERR_clear_error();
	if ((st = load_signed(ctype, body, len, res, &content, &clen, &cms,
	    err)) != KM_OK)
		goto out;
	if ((st = check_type(cms, err)) != KM_OK ||
	    (st = signed_content(cms, res->opaque, &content, &clen, &dcont,
	    err)) != KM_OK ||
	    (st = check_signed(cms, dcont, content, clen, NULL, store, rv, from,
	    res, sc, err)) != KM_OK)
		goto out;
	if (content_out != NULL && clen > 0 &&
	    (!smime_b64_emit(content_out, (const unsigned char *)content,
	    clen) ||
	    BIO_flush(content_out) != 1)) {
		st = smime_ossl(err, KM_TEMPFAIL,
		    "verify: writing content");
		goto out;
	}
	ossl_drain("verify");
	st = KM_OK;
out:
	if (st != KM_OK)
		ossl_drain("verify");
	BIO_free_all(dcont);
	CMS_ContentInfo_free(cms);
	return st;
}

/*
 * smime_verify_detached - a multipart/signed read in pieces: its signature
 * part (an entity in memory) and its signed part as a read BIO
 */
enum km_status
smime_verify_detached(const char *sigpart, size_t splen, BIO *content,
    X509_STORE *store, struct revcheck *rv, const char *from,
    struct smime_verify_result *res, struct smime_signer_certs *sc,
    struct kmerr *err)
{
	CMS_ContentInfo *cms = NULL;
	enum km_status st;

	memset(res, 0, sizeof(*res));
	if (sc != NULL)
		memset(sc, 0, sizeof(*sc));
	ERR_clear_error();
	if ((st = sig_part_cms(sigpart, splen, &cms, err)) == KM_OK &&
	    (st = check_type(cms, err)) == KM_OK)
		st = check_signed(cms, content, NULL, 0, NULL, store, rv, from, res,
		    sc, err);
	ossl_drain("verify");
	CMS_ContentInfo_free(cms);
	return st;
}

/*
 * smime_verify_stream - opaque signed-data too large for memory, read as a
 * stream (cms_stream.h): the signature checked over the encapsulated
 * content read from in, which goes to content_out (NULL: nowhere) as it
 * is read
 */
enum km_status
smime_verify_stream(BIO *in, enum cms_in_mode mode, X509_STORE *store,
    struct revcheck *rv, const char *from, struct smime_verify_result *res,
    BIO *content_out, struct smime_signer_certs *sc, struct kmerr *err)
{
	struct cms_stream *cs = NULL;
	CMS_ContentInfo *cms = NULL;
	const unsigned char *der;
	size_t derlen;
	enum km_status st;
	BIO *dcont;

	memset(res, 0, sizeof(*res));
	if (sc != NULL)
		memset(sc, 0, sizeof(*sc));
	ERR_clear_error();
	if ((st = cms_stream_open(in, mode, &cs, err)) != KM_OK)
		goto out;
	der = cms_stream_der(cs, &derlen);
	if ((st = smime_der_to_cms(der, derlen, &cms, err)) != KM_OK ||
	    (st = check_type(cms, err)) != KM_OK)
		goto out;
	res->opaque = 1;
	if ((dcont = cms_stream_content(cs, err)) == NULL) {
		st = err->status;
		goto out;
	}
	st = check_signed(cms, dcont, NULL, 0, content_out, store, rv, from, res,
	    sc, err);
	if (st == KM_OK && cms_stream_error(cs)->status != KM_OK) {
		/* the input could not be read again: nothing was checked */
		*err = *cms_stream_error(cs);
		st = err->status;
		memset(res, 0, sizeof(*res));
		res->opaque = 1;
	}
out:
	ossl_drain("verify");
	CMS_ContentInfo_free(cms);
	cms_stream_free(cs);
	return st;
}
