/*
 * cms_certs.c - a SignedData parsed with its certificates kept from an
 * earlier message (see cms_certs.h).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "algs.h"
#include "cms_certs.h"
#include "secmem.h"

/* ContentInfo's contentType id-signedData, header and all */
static const unsigned char oid_signed[] = {
	0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02
};

/* One kept certificates field: the SHA-256 of its DER, its certificates. */
struct slot {
	unsigned char	 key[32];
	STACK_OF(X509)	*certs;
};

static struct slot slots[CMS_CERTS_SLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* One DER header: tag octet, header length, definite value length. */
struct der {
	unsigned char	 tag;
	size_t		 hl, len;
};

/* Where the parts of a SignedData ContentInfo are. */
struct layout {
	const unsigned char	*pre, *certs, *post;	/* SignedData fields around the certificates */
	size_t			 prelen, certslen, postlen;
	size_t			 certshl;		/* the certificates field's header */
};

/* der_hdr - the header at p (n bytes there): low tag, definite length within n; 0 if not */
static int
der_hdr(const unsigned char *p, size_t n, struct der *d)
{
	size_t k, l = 0;

	if (n < 2 || (p[0] & 0x1f) == 0x1f)
		return 0;
	d->tag = p[0];
	if (p[1] < 0x80) {
		l = p[1];
		d->hl = 2;
	} else {
		k = p[1] & 0x7f;
		if (k == 0 || k > 4 || n < 2 + k)	/* indefinite, or over 4 GB */
			return 0;
		for (size_t i = 0; i < k; i++)
			l = (l << 8) | p[2 + i];
		d->hl = 2 + k;
	}
	if (l > n - d->hl)
		return 0;
	d->len = l;
	return 1;
}

/* put_hdr - a DER header for tag and n value bytes at b (b NULL: only count); its length */
static size_t
put_hdr(unsigned char *b, unsigned char tag, size_t n)
{
	size_t k = 0;

	if (n < 0x80) {
		if (b != NULL) {
			b[0] = tag;
			b[1] = (unsigned char)n;
		}
		return 2;
	}
	for (size_t t = n; t > 0; t >>= 8)
		k++;
	if (b != NULL) {
		b[0] = tag;
		b[1] = (unsigned char)(0x80 | k);
		for (size_t i = 0; i < k; i++)
			b[2 + i] = (unsigned char)(n >> (8 * (k - 1 - i)));
	}
	return 2 + k;
}

/*
 * layout_of - find the certificates field of a SignedData ContentInfo:
 * SEQUENCE { id-signedData, [0] { SEQUENCE { version, digestAlgorithms,
 * encapContentInfo, [0] certificates, ... } } }, definite lengths; 0 if not
 */
static int
layout_of(const unsigned char *der, size_t len, struct layout *lo)
{
	const unsigned char *p, *end;
	struct der d;

	if (!der_hdr(der, len, &d) || d.tag != 0x30)
		return 0;
	p = der + d.hl;
	end = p + d.len;
	if ((size_t)(end - p) < sizeof(oid_signed) ||
	    memcmp(p, oid_signed, sizeof(oid_signed)) != 0)
		return 0;
	p += sizeof(oid_signed);
	if (!der_hdr(p, (size_t)(end - p), &d) || d.tag != 0xa0 || p + d.hl + d.len != end)
		return 0;
	p += d.hl;
	if (!der_hdr(p, (size_t)(end - p), &d) || d.tag != 0x30 || p + d.hl + d.len != end)
		return 0;
	p += d.hl;
	lo->pre = p;
	for (int i = 0; i < 3; i++) {	/* version, digestAlgorithms, encapContentInfo */
		if (!der_hdr(p, (size_t)(end - p), &d))
			return 0;
		p += d.hl + d.len;
	}
	if (!der_hdr(p, (size_t)(end - p), &d) || d.tag != 0xa0 || d.len == 0)
		return 0;
	lo->prelen = (size_t)(p - lo->pre);
	lo->certs = p;
	lo->certshl = d.hl;
	lo->certslen = d.hl + d.len;
	lo->post = p + lo->certslen;
	lo->postlen = (size_t)(end - lo->post);
	return lo->postlen > 0;
}

/* parse_certs - each element of the certificates field as an X509; NULL if one is not a plain certificate */
static STACK_OF(X509) *
parse_certs(const struct layout *lo)
{
	const unsigned char *p = lo->certs + lo->certshl, *end = lo->certs + lo->certslen;
	STACK_OF(X509) *sk = sk_X509_new_null();
	struct der d;
	X509 *x;

	while (sk != NULL && p < end) {
		const unsigned char *q = p;

		if (!der_hdr(p, (size_t)(end - p), &d) || d.tag != 0x30 ||
		    (x = d2i_X509(NULL, &q, (long)(d.hl + d.len))) == NULL)
			goto fail;
		if (q != p + d.hl + d.len || !sk_X509_push(sk, x)) {
			X509_free(x);
			goto fail;
		}
		p += d.hl + d.len;
	}
	return sk;
fail:
	sk_X509_pop_free(sk, X509_free);
	return NULL;
}

/* kept_certs - the certificates of this field, from the table or parsed and kept; NULL if unusable */
static STACK_OF(X509) *
kept_certs(const struct layout *lo)
{
	unsigned char key[32];
	unsigned int klen = 0;
	STACK_OF(X509) *sk = NULL, *old = NULL;
	struct slot *s;

	if (EVP_Digest(lo->certs, lo->certslen, key, &klen, algs_sha256(), NULL) != 1 ||
	    klen != sizeof(key))
		return NULL;
	s = &slots[(key[0] | (size_t)key[1] << 8) % CMS_CERTS_SLOTS];
	pthread_mutex_lock(&lock);
	if (s->certs != NULL && memcmp(s->key, key, sizeof(key)) == 0)
		sk = X509_chain_up_ref(s->certs);
	pthread_mutex_unlock(&lock);
	if (sk != NULL)
		return sk;
	if ((sk = parse_certs(lo)) == NULL)
		return NULL;
	pthread_mutex_lock(&lock);
	old = s->certs;
	memcpy(s->key, key, sizeof(key));
	s->certs = X509_chain_up_ref(sk);
	pthread_mutex_unlock(&lock);
	sk_X509_pop_free(old, X509_free);
	return sk;
}

/* stripped_d2i - parse the ContentInfo without its certificates field */
static CMS_ContentInfo *
stripped_d2i(const struct layout *lo)
{
	size_t sdlen = lo->prelen + lo->postlen;
	size_t exlen = put_hdr(NULL, 0x30, sdlen) + sdlen;
	size_t cilen = sizeof(oid_signed) + put_hdr(NULL, 0xa0, exlen) + exlen;
	size_t total = put_hdr(NULL, 0x30, cilen) + cilen, o;
	const unsigned char *p;
	unsigned char *buf;
	CMS_ContentInfo *cms = NULL;

	if ((buf = malloc(total)) == NULL)
		return NULL;
	o = put_hdr(buf, 0x30, cilen);
	memcpy(buf + o, oid_signed, sizeof(oid_signed));
	o += sizeof(oid_signed);
	o += put_hdr(buf + o, 0xa0, exlen);
	o += put_hdr(buf + o, 0x30, sdlen);
	memcpy(buf + o, lo->pre, lo->prelen);
	memcpy(buf + o + lo->prelen, lo->post, lo->postlen);
	p = buf;
	if (total <= 0x7fffffff && (cms = d2i_CMS_ContentInfo(NULL, &p, (long)total)) != NULL &&
	    p != buf + total) {
		CMS_ContentInfo_free(cms);
		cms = NULL;
	}
	secmem_wipe(buf, total);	/* an opaque signed-data holds its content */
	free(buf);
	return cms;
}

/* cms_certs_d2i - parse der reusing kept certificates (see cms_certs.h) */
int
cms_certs_d2i(const unsigned char *der, size_t len, CMS_ContentInfo **out)
{
	struct layout lo;
	STACK_OF(X509) *sk;
	CMS_ContentInfo *cms = NULL;
	int ok = 0;

	*out = NULL;
	if (!layout_of(der, len, &lo) || (sk = kept_certs(&lo)) == NULL)
		return 0;
	ERR_set_mark();
	if ((cms = stripped_d2i(&lo)) != NULL) {
		ok = 1;
		for (int i = 0; ok && i < sk_X509_num(sk); i++)
			ok = CMS_add1_cert(cms, sk_X509_value(sk, i));	/* 0: a duplicate */
	}
	ERR_pop_to_mark();
	sk_X509_pop_free(sk, X509_free);
	if (!ok) {
		CMS_ContentInfo_free(cms);
		return 0;
	}
	*out = cms;
	return 1;
}

/* cms_certs_flush - forget every kept certificate */
void
cms_certs_flush(void)
{
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < CMS_CERTS_SLOTS; i++) {
		sk_X509_pop_free(slots[i].certs, X509_free);
		slots[i].certs = NULL;
	}
	pthread_mutex_unlock(&lock);
}
