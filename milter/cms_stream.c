/*
 * cms_stream.c - read a CMS EnvelopedData or AuthEnvelopedData from a
 * rewindable BIO through a small window: the small fields kept, the
 * encrypted content given as a BIO of its own (see cms_stream.h).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>

#include "ber.h"
#include "cms_stream.h"

/* The DER of id-envelopedData and id-ct-authEnvelopedData (with tag and length). */
static const unsigned char oid_env[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
    0x0d, 0x01, 0x07, 0x03 };
static const unsigned char oid_auth[] = { 0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7,
    0x0d, 0x01, 0x09, 0x10, 0x01, 0x17 };
static const unsigned char oid_signed[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
    0x0d, 0x01, 0x07, 0x02 };

/* The small fields, as they came (BER kept). */
struct parts {
	struct buf	oid, version, orig, ris, ctype, alg, attrs, mac, unauth;
	struct buf	digests, certs, crls, signers;		/* SignedData */
};

/* parts_free - release the small fields */
static void
parts_free(struct parts *p)
{
	struct buf *all[] = { &p->oid, &p->version, &p->orig, &p->ris, &p->ctype,
	    &p->alg, &p->attrs, &p->mac, &p->unauth, &p->digests, &p->certs, &p->crls,
	    &p->signers };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		ber_buf_free(all[i]);
}

/* content_start - the content's header was read: enter it */
static int
content_start(struct cms_stream *cs, const struct tlv *t)
{
	cs->cprim = !t->cons;
	cs->cleft = t->cons ? 0 : t->len;
	cs->cdone = 0;
	cs->cgot = 0;
	return ber_enter(cs, t);
}

/*
 * head_signed - SignedData { version, digestAlgorithms,
 * EncapsulatedContentInfo { eContentType, [0] EXPLICIT OCTET STRING
 * (primitive, or constructed of primitive chunks)
 */
static int
head_signed(struct cms_stream *cs, struct parts *p)
{
	struct tlv t;
	int r;

	if (ber_open_value(cs, C_UNIV, T_SEQ, "SignedData SEQUENCE") != 0 ||
	    ber_take_field(cs, &p->version, C_UNIV, 0, T_INT, "version") != 0 ||
	    ber_take_field(cs, &p->digests, C_UNIV, 1, T_SET, "digestAlgorithms SET") != 0 ||
	    ber_open_value(cs, C_UNIV, T_SEQ, "EncapsulatedContentInfo SEQUENCE") != 0 ||
	    ber_take_field(cs, &p->ctype, C_UNIV, 0, T_OID, "content type") != 0 ||
	    (r = ber_more(cs)) < 0)
		return -1;
	if (r == 0)
		return ber_fail(cs, KM_PROTO, "no encapsulated content (a detached "
		    "signature)");
	if (ber_open_value(cs, C_CTX, 0, "[0] eContent") != 0 || ber_tlv_read(cs, &t) != 0)
		return -1;
	if (t.cls != C_UNIV || t.tag != T_OCTET)
		return ber_fail(cs, KM_PROTO, "eContent OCTET STRING expected, found "
		    "identifier 0x%02x", t.h[0]);
	return content_start(cs, &t);
}

/*
 * tail_signed - after the content: the [0] and EncapsulatedContentInfo
 * end, then certificates [0], crls [1] (both optional) and signerInfos
 */
static int
tail_signed(struct cms_stream *cs, struct parts *p)
{
	struct tlv t;
	int r;

	if (ber_leave(cs) != 0 || ber_leave(cs) != 0 || (r = ber_more(cs)) < 0)
		return -1;
	if (r == 1 && ber_tlv_read(cs, &t) != 0)
		return -1;
	if (r == 1 && t.cls == C_CTX && t.cons && t.tag == 0 &&
	    (ber_capture_rest(cs, &t, &p->certs) != 0 || (r = ber_more(cs)) < 0 ||
	    (r == 1 && ber_tlv_read(cs, &t) != 0)))
		return -1;
	if (r == 1 && t.cls == C_CTX && t.cons && t.tag == 1 &&
	    (ber_capture_rest(cs, &t, &p->crls) != 0 || (r = ber_more(cs)) < 0 ||
	    (r == 1 && ber_tlv_read(cs, &t) != 0)))
		return -1;
	if (r == 0)
		return ber_fail(cs, KM_PROTO, "signed data without SignerInfos");
	if (ber_expect(cs, &t, C_UNIV, 1, T_SET, "SignerInfos SET") != 0 ||
	    ber_capture_rest(cs, &t, &p->signers) != 0)
		return -1;
	return 0;
}

/*
 * walk_head - from the start to the first octet of the encrypted content:
 * ContentInfo { contentType, [0] { Enveloped/AuthEnvelopedData { version,
 * [0] originatorInfo OPTIONAL, recipientInfos, EncryptedContentInfo {
 * contentType, contentEncryptionAlgorithm, [0] encryptedContent
 */
static int
walk_head(struct cms_stream *cs, struct parts *p)
{
	struct tlv t;
	int r;

	if (ber_open_value(cs, C_UNIV, T_SEQ, "ContentInfo SEQUENCE") != 0 ||
	    ber_take_field(cs, &p->oid, C_UNIV, 0, T_OID, "content type") != 0)
		return -1;
	if (p->oid.len == sizeof(oid_auth) && memcmp(p->oid.p, oid_auth,
	    sizeof(oid_auth)) == 0)
		cs->auth = 1;
	else if (p->oid.len == sizeof(oid_signed) && memcmp(p->oid.p, oid_signed,
	    sizeof(oid_signed)) == 0)
		cs->sd = 1;
	else if (p->oid.len != sizeof(oid_env) || memcmp(p->oid.p, oid_env,
	    sizeof(oid_env)) != 0)
		return ber_fail(cs, KM_PROTO, "not enveloped or signed data");
	if (ber_open_value(cs, C_CTX, 0, "[0] content") != 0)
		return -1;
	if (cs->sd)
		return head_signed(cs, p);
	if (ber_open_value(cs, C_UNIV, T_SEQ, "EnvelopedData SEQUENCE") != 0 ||
	    ber_take_field(cs, &p->version, C_UNIV, 0, T_INT, "version") != 0 ||
	    ber_tlv_read(cs, &t) != 0)
		return -1;
	if (t.cls == C_CTX && t.cons && t.tag == 0 &&
	    (ber_capture_rest(cs, &t, &p->orig) != 0 || ber_tlv_read(cs, &t) != 0))
		return -1;
	if (ber_expect(cs, &t, C_UNIV, 1, T_SET, "RecipientInfos SET") != 0 ||
	    ber_capture_rest(cs, &t, &p->ris) != 0 ||
	    ber_open_value(cs, C_UNIV, T_SEQ, "EncryptedContentInfo SEQUENCE") != 0 ||
	    ber_take_field(cs, &p->ctype, C_UNIV, 0, T_OID, "content type") != 0 ||
	    ber_take_field(cs, &p->alg, C_UNIV, 1, T_SEQ, "content-encryption "
	    "algorithm") != 0 || (r = ber_more(cs)) < 0)
		return -1;
	if (r == 0)
		return ber_fail(cs, KM_PROTO, "no encrypted content (detached content "
		    "is not taken)");
	if (ber_tlv_read(cs, &t) != 0)
		return -1;
	if (t.cls != C_CTX || t.tag != 0)
		return ber_fail(cs, KM_PROTO, "[0] encryptedContent expected, found "
		    "identifier 0x%02x", t.h[0]);
	return content_start(cs, &t);
}

/*
 * content_read - up to n octets of the encrypted content (dst NULL: skip
 * them); 0 at its end, -1 on an error.  A constructed [0] holds primitive
 * OCTET STRINGs, whose contents are joined.
 */
static int64_t
content_read(struct cms_stream *cs, unsigned char *dst, size_t n)
{
	struct tlv t;
	int64_t got;
	int r;

	while (!cs->cdone) {
		if (cs->cleft > 0) {
			if ((got = ber_take(cs, dst, cs->cleft < n ? (size_t)cs->cleft : n,
			    0)) < 0)
				return -1;
			cs->cleft -= (uint64_t)got;
			cs->cgot += (uint64_t)got;
			return got;
		}
		if (!cs->cprim) {
			if ((r = ber_more(cs)) < 0)
				return -1;
			if (r == 1) {
				if (ber_tlv_read(cs, &t) != 0 || ber_expect(cs, &t, C_UNIV, 0,
				    T_OCTET, "encrypted content chunk (OCTET STRING)") != 0)
					return -1;
				cs->cleft = t.len;
				continue;
			}
		}
		if (ber_leave(cs) != 0)
			return -1;
		cs->cdone = 1;
	}
	return 0;
}

/*
 * walk_tail - from the end of the content to the end of the input:
 * unprotectedAttrs [1] (enveloped), or authAttrs [1], mac, unauthAttrs [2]
 * (auth-enveloped), the ends of the values, and nothing after them
 */
static int
walk_tail(struct cms_stream *cs, struct parts *p)
{
	struct tlv t;
	int r;

	if (cs->sd) {
		if (tail_signed(cs, p) != 0)
			return -1;
		goto end;
	}
	if (ber_leave(cs) != 0 || (r = ber_more(cs)) < 0)	/* EncryptedContentInfo */
		return -1;
	if (r == 1 && ber_tlv_read(cs, &t) != 0)
		return -1;
	if (r == 1 && t.cls == C_CTX && t.cons && t.tag == 1) {
		if (ber_capture_rest(cs, &t, &p->attrs) != 0 || (r = ber_more(cs)) < 0 ||
		    (r == 1 && ber_tlv_read(cs, &t) != 0))
			return -1;
	}
	if (cs->auth) {
		if (r == 0)
			return ber_fail(cs, KM_PROTO, "auth-enveloped data without its mac");
		if (ber_expect(cs, &t, C_UNIV, 0, T_OCTET, "mac (OCTET STRING)") != 0 ||
		    ber_capture_rest(cs, &t, &p->mac) != 0 || (r = ber_more(cs)) < 0)
			return -1;
		if (r == 1 && (ber_tlv_read(cs, &t) != 0 || ber_expect(cs, &t, C_CTX, 1, 2,
		    "[2] unauthAttrs") != 0 || ber_capture_rest(cs, &t, &p->unauth) != 0))
			return -1;
	} else if (r == 1)
		return ber_fail(cs, KM_PROTO, "unexpected field 0x%02x after the encrypted "
		    "content", t.h[0]);
end:
	if (ber_leave(cs) != 0 || ber_leave(cs) != 0 || ber_leave(cs) != 0)
		return -1;
	if ((r = ber_ensure(cs, 1)) < 0)
		return -1;
	if (r == 1)
		return ber_fail(cs, KM_PROTO, "data after the CMS structure (at octet %llu): "
		    "its length says less than is there", (unsigned long long)cs->pos);
	return 0;
}

/* der_wrap - append tag, definite length and the bytes of in */
static int
der_wrap(struct cms_stream *cs, struct buf *out, unsigned char tag, const struct buf *in)
{
	unsigned char h[10];
	size_t hl = 0, n = in->len;
	int k = 0;

	h[hl++] = tag;
	if (n < 0x80)
		h[hl++] = (unsigned char)n;
	else {
		for (size_t m = n; m > 0; m >>= 8)
			k++;
		h[hl++] = (unsigned char)(0x80 | k);
		while (k-- > 0)
			h[hl++] = (unsigned char)(n >> (8 * k));
	}
	return ber_buf_add(cs, out, h, hl) != 0 || ber_buf_add(cs, out, in->p, in->len) != 0 ?
	    -1 : 0;
}

/* build_der - the ContentInfo again, definite lengths, content left out */
static int
build_der(struct cms_stream *cs, const struct parts *p)
{
	struct buf eci = { 0 }, ecs = { 0 }, env = { 0 }, envs = { 0 }, ctx = { 0 },
	    ci = { 0 };
	const struct buf *envd[] = { &p->version, &p->orig, &p->ris, &ecs, &p->attrs,
	    &p->mac, &p->unauth };
	const struct buf *sd[] = { &p->version, &p->digests, &ecs, &p->certs, &p->crls,
	    &p->signers, &p->orig };	/* orig: empty, for the same count */
	const struct buf **body = cs->sd ? sd : envd;
	int r = -1;

	/* EncryptedContentInfo { type, alg }, or EncapsulatedContentInfo
	   { type } with its content left out: a detached signature */
	if (ber_buf_add(cs, &eci, p->ctype.p, p->ctype.len) != 0 ||
	    ber_buf_add(cs, &eci, p->alg.p, p->alg.len) != 0 ||
	    der_wrap(cs, &ecs, 0x30, &eci) != 0)
		goto out;
	for (size_t i = 0; i < sizeof(envd) / sizeof(envd[0]); i++)
		if (body[i]->len > 0 && ber_buf_add(cs, &env, body[i]->p, body[i]->len) != 0)
			goto out;
	if (der_wrap(cs, &envs, 0x30, &env) != 0 || der_wrap(cs, &ctx, 0xa0, &envs) != 0 ||
	    ber_buf_add(cs, &ci, p->oid.p, p->oid.len) != 0 ||
	    ber_buf_add(cs, &ci, ctx.p, ctx.len) != 0 || der_wrap(cs, &cs->der, 0x30, &ci) != 0)
		goto out;
	r = 0;
out:
	ber_buf_free(&eci);
	ber_buf_free(&ecs);
	ber_buf_free(&env);
	ber_buf_free(&envs);
	ber_buf_free(&ctx);
	ber_buf_free(&ci);
	return r;
}

enum km_status
cms_stream_open(BIO *in, enum cms_in_mode mode, struct cms_stream **out,
    struct kmerr *err)
{
	struct cms_stream *cs;
	struct parts p = { 0 };
	enum km_status st;
	int64_t got;

	*out = NULL;
	ber_init();
	if ((cs = calloc(1, sizeof(*cs))) == NULL)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	cs->in = in;
	cs->b64 = mode != CMS_IN_DER;
	if (ber_rewind(cs) != 0 || (mode == CMS_IN_AUTO && ber_detect(cs) != 0) ||
	    walk_head(cs, &p) != 0)
		goto fail;
	while ((got = content_read(cs, NULL, SIZE_MAX)) > 0)
		;
	if (got < 0 || walk_tail(cs, &p) != 0 || build_der(cs, &p) != 0)
		goto fail;
	cs->ctlen = cs->cgot;
	parts_free(&p);
	*out = cs;
	return KM_OK;
fail:
	st = cs->err.status;
	if (err != NULL)
		*err = cs->err;
	parts_free(&p);
	cms_stream_free(cs);
	return st;
}

/* cms_stream_der - the ContentInfo without its encrypted content */
const unsigned char *
cms_stream_der(const struct cms_stream *cs, size_t *len)
{
	*len = cs->der.len;
	return cs->der.p;
}

/* cms_stream_is_signed - 1 for SignedData */
int
cms_stream_is_signed(const struct cms_stream *cs)
{
	return cs->sd;
}

/* cms_stream_is_auth - 1 for AuthEnvelopedData */
int
cms_stream_is_auth(const struct cms_stream *cs)
{
	return cs->auth;
}

/* cms_stream_content_length - octets of encrypted content */
uint64_t
cms_stream_content_length(const struct cms_stream *cs)
{
	return cs->ctlen;
}

/* cms_stream_error - why the last read failed */
const struct kmerr *
cms_stream_error(const struct cms_stream *cs)
{
	return &cs->err;
}

/* content BIO: read callback */
static int
content_bio_read(BIO *b, char *buf, int len)
{
	struct cms_stream *cs = BIO_get_data(b);
	int64_t got;

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	if ((got = content_read(cs, (unsigned char *)buf, (size_t)len)) < 0)
		return -1;
	if (got == 0 && cs->cgot != cs->ctlen) {
		ber_fail(cs, KM_TEMPFAIL, "the message changed between two readings");
		return -1;
	}
	return (int)got;
}

/* content BIO: control callback */
static long
content_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct cms_stream *cs = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_EOF:
		return cs->cdone;
	case BIO_CTRL_FLUSH:
		return 1;
	default:
		return 0;
	}
}

static BIO_METHOD *content_method;
static pthread_once_t content_once = PTHREAD_ONCE_INIT;

static void
content_method_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
	    "cms stream content");

	if (m != NULL) {
		BIO_meth_set_read(m, content_bio_read);
		BIO_meth_set_ctrl(m, content_bio_ctrl);
	}
	content_method = m;
}

/* cms_stream_content - rewind and give the encrypted content as a read BIO */
BIO *
cms_stream_content(struct cms_stream *cs, struct kmerr *err)
{
	struct parts p = { 0 };
	int r;

	pthread_once(&content_once, content_method_init);
	if (cs->content == NULL) {
		if (content_method == NULL ||
		    (cs->content = BIO_new(content_method)) == NULL) {
			kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
			return NULL;
		}
		BIO_set_data(cs->content, cs);
		BIO_set_init(cs->content, 1);
	}
	r = ber_rewind(cs) == 0 ? walk_head(cs, &p) : -1;
	parts_free(&p);
	if (r != 0) {
		if (err != NULL)
			*err = cs->err;
		return NULL;
	}
	return cs->content;
}

/* cms_stream_free - free a stream; returns NULL */
struct cms_stream *
cms_stream_free(struct cms_stream *cs)
{
	if (cs == NULL)
		return NULL;
	BIO_free(cs->content);
	ber_buf_free(&cs->der);
	free(cs);
	return NULL;
}
