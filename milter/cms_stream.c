/*
 * cms_stream.c - read a CMS EnvelopedData or AuthEnvelopedData from a
 * rewindable BIO through a small window: the small fields kept, the
 * encrypted content given as a BIO of its own (see cms_stream.h).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>

#include "cms_stream.h"

#define WIN		16384		/* decoded bytes held at most */
#define RAW		16384		/* input bytes read at a time */
#define MAXDEPTH	24		/* BER nesting followed */
#define SMALL_MAX	(1024 * 1024)	/* all the fields but the content */
#define INDEF		UINT64_MAX	/* end of an indefinite-length value */

/* Universal tags and classes (X.690) */
#define C_UNIV	0
#define C_CTX	2
#define T_INT	2
#define T_OCTET	4
#define T_OID	6
#define T_SEQ	16
#define T_SET	17

/* The DER of id-envelopedData and id-ct-authEnvelopedData (with tag and length). */
static const unsigned char oid_env[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
    0x0d, 0x01, 0x07, 0x03 };
static const unsigned char oid_auth[] = { 0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7,
    0x0d, 0x01, 0x09, 0x10, 0x01, 0x17 };
static const unsigned char oid_signed[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
    0x0d, 0x01, 0x07, 0x02 };

struct buf {
	unsigned char	*p;
	size_t		 len, cap;
};

/* The small fields, as they came (BER kept). */
struct parts {
	struct buf	oid, version, orig, ris, ctype, alg, attrs, mac, unauth;
	struct buf	digests, certs, crls, signers;		/* SignedData */
};

/* One TLV header. */
struct tlv {
	int		 cls, cons, tag, indef;
	uint64_t	 len;
	unsigned char	 h[10];
	size_t		 hl;
};

struct cms_stream {
	BIO		*in;		/* borrowed */
	int		 b64;		/* decode base64 (else raw) */
	unsigned char	 raw[RAW];	/* input not yet decoded */
	size_t		 rawpos, rawlen;
	int		 ineof;
	unsigned int	 acc;		/* base64: bits of the group */
	int		 nq, pad, padded;
	unsigned char	 win[WIN];	/* decoded, not consumed: [wlo, whi) */
	size_t		 wlo, whi;
	uint64_t	 pos;		/* decoded octets consumed */
	uint64_t	 end[MAXDEPTH];	/* open values: where each ends */
	int		 depth;
	int		 bad;
	struct kmerr	 err;
	int		 cprim, cdone;	/* the encrypted content being read */
	uint64_t	 cleft, cgot, ctlen;
	int		 auth;
	int		 sd;		/* SignedData (else enveloped) */
	struct buf	 der;		/* the ContentInfo, content detached */
	BIO		*content;
};

static int	fail(struct cms_stream *, enum km_status, const char *, ...)
		    KM_PRINTF(3, 4);

/* fail - record the first error; -1 */
static int
fail(struct cms_stream *cs, enum km_status st, const char *fmt, ...)
{
	va_list ap;
	char msg[200];

	if (!cs->bad) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		kmerr_set(&cs->err, st, st == KM_PROTO ? KMERR_BADINPUT : KMERR_NONE,
		    "CMS stream: %s", msg);
		cs->bad = 1;
	}
	return -1;
}

/* buf_add - append bytes (the small fields are bounded) */
static int
buf_add(struct cms_stream *cs, struct buf *b, const void *p, size_t n)
{
	if (b->len + n > SMALL_MAX)
		return fail(cs, KM_PROTO, "fields around the content exceed %d octets",
		    SMALL_MAX);
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		unsigned char *q;

		while (cap < b->len + n)
			cap *= 2;
		if ((q = realloc(b->p, cap)) == NULL)
			return fail(cs, KM_NOMEM, "out of memory");
		b->p = q;
		b->cap = cap;
	}
	if (p != NULL)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static void
buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static void
parts_free(struct parts *p)
{
	struct buf *all[] = { &p->oid, &p->version, &p->orig, &p->ris, &p->ctype,
	    &p->alg, &p->attrs, &p->mac, &p->unauth, &p->digests, &p->certs, &p->crls,
	    &p->signers };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		buf_free(all[i]);
}

/* The value of each base64 character; 0xff for any other byte. */
static unsigned char sextets[256];
static pthread_once_t sextets_once = PTHREAD_ONCE_INIT;

static void
sextets_init(void)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	memset(sextets, 0xff, sizeof(sextets));
	for (int i = 0; i < 64; i++)
		sextets[(unsigned char)alphabet[i]] = (unsigned char)i;
}

/* b64_char - feed one input character to the decoder; -1 on bad base64 */
static int
b64_char(struct cms_stream *cs, unsigned char c)
{
	int v;

	if (c == '\r' || c == '\n' || c == ' ' || c == '\t')
		return 0;
	if (cs->padded)
		return fail(cs, KM_PROTO, "base64: data after the padding");
	if (c == '=') {
		if (cs->nq < 2)
			return fail(cs, KM_PROTO, "base64: misplaced '='");
		cs->pad++;
		if (++cs->nq == 4) {
			cs->win[cs->whi++] = (unsigned char)(cs->pad == 2 ? cs->acc >> 4 :
			    cs->acc >> 10);
			if (cs->pad == 1)
				cs->win[cs->whi++] = (unsigned char)(cs->acc >> 2);
			cs->padded = 1;
		}
		return 0;
	}
	if (cs->pad)
		return fail(cs, KM_PROTO, "base64: data inside the padding");
	if ((v = sextets[c]) == 0xff)
		return fail(cs, KM_PROTO, "base64: invalid byte 0x%02x", c);
	cs->acc = (cs->acc << 6) | (unsigned int)v;
	if (++cs->nq == 4) {
		cs->win[cs->whi++] = (unsigned char)(cs->acc >> 16);
		cs->win[cs->whi++] = (unsigned char)(cs->acc >> 8);
		cs->win[cs->whi++] = (unsigned char)cs->acc;
		cs->acc = 0;
		cs->nq = 0;
	}
	return 0;
}

/*
 * fill - decode more input into the window.  1 when something was read,
 * 0 at the end of the input, -1 on an error.
 */
static int
fill(struct cms_stream *cs)
{
	int n;

	if (cs->bad)
		return -1;
	if (cs->wlo > 0) {
		memmove(cs->win, cs->win + cs->wlo, cs->whi - cs->wlo);
		cs->whi -= cs->wlo;
		cs->wlo = 0;
	}
	if (cs->rawpos == cs->rawlen) {
		if (cs->ineof)
			return 0;
		if ((n = BIO_read(cs->in, cs->raw, sizeof(cs->raw))) < 0)
			return fail(cs, KM_TEMPFAIL, "reading the message failed");
		if (n == 0) {
			cs->ineof = 1;
			if (cs->b64 && cs->nq != 0 && !cs->padded)
				return fail(cs, KM_PROTO, "base64: truncated (incomplete "
				    "last group)");
			return 0;
		}
		cs->rawpos = 0;
		cs->rawlen = (size_t)n;
	}
	if (!cs->b64) {
		size_t k = cs->rawlen - cs->rawpos;

		if (k > WIN - cs->whi)
			k = WIN - cs->whi;
		memcpy(cs->win + cs->whi, cs->raw + cs->rawpos, k);
		cs->whi += k;
		cs->rawpos += k;
		return 1;
	}
	while (cs->rawpos < cs->rawlen && cs->whi + 3 <= WIN) {
		const unsigned char *q = cs->raw + cs->rawpos;
		unsigned int a, b, c, d;

		/* Whole groups of four in a line: the common case, no state. */
		if (cs->nq == 0 && cs->rawpos + 4 <= cs->rawlen &&
		    ((a = sextets[q[0]]) | (b = sextets[q[1]]) | (c = sextets[q[2]]) |
		    (d = sextets[q[3]])) < 64 && !cs->padded) {
			cs->win[cs->whi++] = (unsigned char)(a << 2 | b >> 4);
			cs->win[cs->whi++] = (unsigned char)(b << 4 | c >> 2);
			cs->win[cs->whi++] = (unsigned char)(c << 6 | d);
			cs->rawpos += 4;
			continue;
		}
		if (b64_char(cs, cs->raw[cs->rawpos++]) != 0)
			return -1;
	}
	return 1;
}

/* ensure - n decoded octets ready: 1; 0 when the input ends first; -1 */
static int
ensure(struct cms_stream *cs, size_t n)
{
	while (cs->whi - cs->wlo < n) {
		int r = fill(cs);

		if (r <= 0)
			return r;
	}
	return 1;
}

/* limit - where the innermost value of definite length ends */
static uint64_t
limit(const struct cms_stream *cs)
{
	for (int i = cs->depth - 1; i >= 0; i--)
		if (cs->end[i] != INDEF)
			return cs->end[i];
	return INDEF;
}

/*
 * take - consume up to n octets (into dst unless NULL), at least one;
 * exact: all n.  Never past the end of the enclosing value.  Returns how
 * many, or -1 (truncated, or past a length).
 */
static int64_t
take(struct cms_stream *cs, unsigned char *dst, size_t n, int exact)
{
	uint64_t lim = limit(cs);
	size_t done = 0;

	if (lim != INDEF && n > lim - cs->pos)
		return fail(cs, KM_PROTO, "a value runs past the length of the one "
		    "holding it (at octet %llu)", (unsigned long long)cs->pos);
	while (done < n) {
		size_t k;
		int r;

		if (cs->whi == cs->wlo && (r = ensure(cs, 1)) <= 0) {
			if (r == 0)
				fail(cs, KM_PROTO, "truncated: the input ends at octet "
				    "%llu inside a value", (unsigned long long)cs->pos);
			return -1;
		}
		k = cs->whi - cs->wlo;
		if (k > n - done)
			k = n - done;
		if (dst != NULL)
			memcpy(dst + done, cs->win + cs->wlo, k);
		cs->wlo += k;
		cs->pos += k;
		done += k;
		if (!exact)
			break;
	}
	return (int64_t)done;
}

/* tlv_read - read a TLV header, its length checked against its container */
static int
tlv_read(struct cms_stream *cs, struct tlv *t)
{
	unsigned char b;
	uint64_t lim;
	int n;

	memset(t, 0, sizeof(*t));
	if (take(cs, &b, 1, 1) < 0)
		return -1;
	t->h[t->hl++] = b;
	t->cls = b >> 6;
	t->cons = (b >> 5) & 1;
	t->tag = b & 0x1f;
	if (t->tag == 0x1f)
		return fail(cs, KM_PROTO, "unsupported high tag number at octet %llu",
		    (unsigned long long)cs->pos - 1);
	if (take(cs, &b, 1, 1) < 0)
		return -1;
	t->h[t->hl++] = b;
	if (b == 0x80) {
		if (!t->cons)
			return fail(cs, KM_PROTO, "indefinite length on a primitive value");
		t->indef = 1;
		return 0;
	}
	if (b < 0x80) {
		t->len = b;
	} else {
		if ((n = b & 0x7f) > 8)
			return fail(cs, KM_PROTO, "a length of %d octets", n);
		while (n-- > 0) {
			if (take(cs, &b, 1, 1) < 0)
				return -1;
			t->h[t->hl++] = b;
			t->len = (t->len << 8) | b;
		}
	}
	lim = limit(cs);
	if (lim != INDEF && t->len > lim - cs->pos)
		return fail(cs, KM_PROTO, "a length says %llu octets where only %llu "
		    "remain in the value holding it", (unsigned long long)t->len,
		    (unsigned long long)(lim - cs->pos));
	return 0;
}

/* expect - the header is of this class, form and tag */
static int
expect(struct cms_stream *cs, const struct tlv *t, int cls, int cons, int tag,
    const char *what)
{
	if (t->cls == cls && t->cons == cons && t->tag == tag)
		return 0;
	return fail(cs, KM_PROTO, "%s expected, found identifier 0x%02x", what, t->h[0]);
}

/* enter - open a constructed value (or the primitive content) */
static int
enter(struct cms_stream *cs, const struct tlv *t)
{
	if (cs->depth == MAXDEPTH)
		return fail(cs, KM_PROTO, "nested deeper than %d", MAXDEPTH);
	cs->end[cs->depth++] = t->indef ? INDEF : cs->pos + t->len;
	return 0;
}

/* more - another value inside the open one: 1; 0 at its end; -1 */
static int
more(struct cms_stream *cs)
{
	uint64_t e = cs->end[cs->depth - 1];
	int r;

	if (e != INDEF)
		return cs->pos < e;
	if ((r = ensure(cs, 2)) <= 0) {
		if (r == 0)
			fail(cs, KM_PROTO, "truncated: end-of-contents missing at the "
			    "end of the input");
		return -1;
	}
	return cs->win[cs->wlo] != 0 || cs->win[cs->wlo + 1] != 0;
}

/* leave - close the open value: its length matched, or its end-of-contents */
static int
leave(struct cms_stream *cs)
{
	uint64_t e = cs->end[--cs->depth];
	unsigned char eoc[2];

	if (e == INDEF) {
		if (take(cs, eoc, 2, 1) < 0)
			return -1;
		if (eoc[0] != 0 || eoc[1] != 0)
			return fail(cs, KM_PROTO, "end-of-contents expected at octet %llu",
			    (unsigned long long)cs->pos - 2);
		return 0;
	}
	if (cs->pos != e)
		return fail(cs, KM_PROTO, "a length says the value ends at octet %llu, "
		    "its fields end at %llu", (unsigned long long)e,
		    (unsigned long long)cs->pos);
	return 0;
}

static int capture(struct cms_stream *, struct buf *);

/* capture_rest - keep a value whose header was just read, as it came */
static int
capture_rest(struct cms_stream *cs, const struct tlv *t, struct buf *b)
{
	int r;

	if (buf_add(cs, b, t->h, t->hl) != 0)
		return -1;
	if (!t->indef) {
		size_t at = b->len;

		if (t->len > SMALL_MAX || buf_add(cs, b, NULL, (size_t)t->len) != 0)
			return fail(cs, KM_PROTO, "a field of %llu octets is too large",
			    (unsigned long long)t->len);
		return take(cs, b->p + at, (size_t)t->len, 1) < 0 ? -1 : 0;
	}
	if (enter(cs, t) != 0)
		return -1;
	while ((r = more(cs)) == 1)
		if (capture(cs, b) != 0)
			return -1;
	if (r < 0 || leave(cs) != 0)
		return -1;
	return buf_add(cs, b, "\0\0", 2);
}

/* capture - read and keep the next value */
static int
capture(struct cms_stream *cs, struct buf *b)
{
	struct tlv t;

	if (tlv_read(cs, &t) != 0)
		return -1;
	return capture_rest(cs, &t, b);
}

/* open_value - read a header of this kind and enter it */
static int
open_value(struct cms_stream *cs, int cls, int tag, const char *what)
{
	struct tlv t;

	if (tlv_read(cs, &t) != 0 || expect(cs, &t, cls, 1, tag, what) != 0)
		return -1;
	return enter(cs, &t);
}

/* take_field - read and keep a value of this kind */
static int
take_field(struct cms_stream *cs, struct buf *b, int cls, int cons, int tag,
    const char *what)
{
	struct tlv t;

	if (tlv_read(cs, &t) != 0 || expect(cs, &t, cls, cons, tag, what) != 0)
		return -1;
	return capture_rest(cs, &t, b);
}

/* content_start - the content's header was read: enter it */
static int
content_start(struct cms_stream *cs, const struct tlv *t)
{
	cs->cprim = !t->cons;
	cs->cleft = t->cons ? 0 : t->len;
	cs->cdone = 0;
	cs->cgot = 0;
	return enter(cs, t);
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

	if (open_value(cs, C_UNIV, T_SEQ, "SignedData SEQUENCE") != 0 ||
	    take_field(cs, &p->version, C_UNIV, 0, T_INT, "version") != 0 ||
	    take_field(cs, &p->digests, C_UNIV, 1, T_SET, "digestAlgorithms SET") != 0 ||
	    open_value(cs, C_UNIV, T_SEQ, "EncapsulatedContentInfo SEQUENCE") != 0 ||
	    take_field(cs, &p->ctype, C_UNIV, 0, T_OID, "content type") != 0 ||
	    (r = more(cs)) < 0)
		return -1;
	if (r == 0)
		return fail(cs, KM_PROTO, "no encapsulated content (a detached "
		    "signature)");
	if (open_value(cs, C_CTX, 0, "[0] eContent") != 0 || tlv_read(cs, &t) != 0)
		return -1;
	if (t.cls != C_UNIV || t.tag != T_OCTET)
		return fail(cs, KM_PROTO, "eContent OCTET STRING expected, found "
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

	if (leave(cs) != 0 || leave(cs) != 0 || (r = more(cs)) < 0)
		return -1;
	if (r == 1 && tlv_read(cs, &t) != 0)
		return -1;
	if (r == 1 && t.cls == C_CTX && t.cons && t.tag == 0 &&
	    (capture_rest(cs, &t, &p->certs) != 0 || (r = more(cs)) < 0 ||
	    (r == 1 && tlv_read(cs, &t) != 0)))
		return -1;
	if (r == 1 && t.cls == C_CTX && t.cons && t.tag == 1 &&
	    (capture_rest(cs, &t, &p->crls) != 0 || (r = more(cs)) < 0 ||
	    (r == 1 && tlv_read(cs, &t) != 0)))
		return -1;
	if (r == 0)
		return fail(cs, KM_PROTO, "signed data without SignerInfos");
	if (expect(cs, &t, C_UNIV, 1, T_SET, "SignerInfos SET") != 0 ||
	    capture_rest(cs, &t, &p->signers) != 0)
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

	if (open_value(cs, C_UNIV, T_SEQ, "ContentInfo SEQUENCE") != 0 ||
	    take_field(cs, &p->oid, C_UNIV, 0, T_OID, "content type") != 0)
		return -1;
	if (p->oid.len == sizeof(oid_auth) && memcmp(p->oid.p, oid_auth,
	    sizeof(oid_auth)) == 0)
		cs->auth = 1;
	else if (p->oid.len == sizeof(oid_signed) && memcmp(p->oid.p, oid_signed,
	    sizeof(oid_signed)) == 0)
		cs->sd = 1;
	else if (p->oid.len != sizeof(oid_env) || memcmp(p->oid.p, oid_env,
	    sizeof(oid_env)) != 0)
		return fail(cs, KM_PROTO, "not enveloped or signed data");
	if (open_value(cs, C_CTX, 0, "[0] content") != 0)
		return -1;
	if (cs->sd)
		return head_signed(cs, p);
	if (open_value(cs, C_UNIV, T_SEQ, "EnvelopedData SEQUENCE") != 0 ||
	    take_field(cs, &p->version, C_UNIV, 0, T_INT, "version") != 0 ||
	    tlv_read(cs, &t) != 0)
		return -1;
	if (t.cls == C_CTX && t.cons && t.tag == 0 &&
	    (capture_rest(cs, &t, &p->orig) != 0 || tlv_read(cs, &t) != 0))
		return -1;
	if (expect(cs, &t, C_UNIV, 1, T_SET, "RecipientInfos SET") != 0 ||
	    capture_rest(cs, &t, &p->ris) != 0 ||
	    open_value(cs, C_UNIV, T_SEQ, "EncryptedContentInfo SEQUENCE") != 0 ||
	    take_field(cs, &p->ctype, C_UNIV, 0, T_OID, "content type") != 0 ||
	    take_field(cs, &p->alg, C_UNIV, 1, T_SEQ, "content-encryption "
	    "algorithm") != 0 || (r = more(cs)) < 0)
		return -1;
	if (r == 0)
		return fail(cs, KM_PROTO, "no encrypted content (detached content "
		    "is not taken)");
	if (tlv_read(cs, &t) != 0)
		return -1;
	if (t.cls != C_CTX || t.tag != 0)
		return fail(cs, KM_PROTO, "[0] encryptedContent expected, found "
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
			if ((got = take(cs, dst, cs->cleft < n ? (size_t)cs->cleft : n,
			    0)) < 0)
				return -1;
			cs->cleft -= (uint64_t)got;
			cs->cgot += (uint64_t)got;
			return got;
		}
		if (!cs->cprim) {
			if ((r = more(cs)) < 0)
				return -1;
			if (r == 1) {
				if (tlv_read(cs, &t) != 0 || expect(cs, &t, C_UNIV, 0,
				    T_OCTET, "encrypted content chunk (OCTET STRING)") != 0)
					return -1;
				cs->cleft = t.len;
				continue;
			}
		}
		if (leave(cs) != 0)
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
	if (leave(cs) != 0 || (r = more(cs)) < 0)	/* EncryptedContentInfo */
		return -1;
	if (r == 1 && tlv_read(cs, &t) != 0)
		return -1;
	if (r == 1 && t.cls == C_CTX && t.cons && t.tag == 1) {
		if (capture_rest(cs, &t, &p->attrs) != 0 || (r = more(cs)) < 0 ||
		    (r == 1 && tlv_read(cs, &t) != 0))
			return -1;
	}
	if (cs->auth) {
		if (r == 0)
			return fail(cs, KM_PROTO, "auth-enveloped data without its mac");
		if (expect(cs, &t, C_UNIV, 0, T_OCTET, "mac (OCTET STRING)") != 0 ||
		    capture_rest(cs, &t, &p->mac) != 0 || (r = more(cs)) < 0)
			return -1;
		if (r == 1 && (tlv_read(cs, &t) != 0 || expect(cs, &t, C_CTX, 1, 2,
		    "[2] unauthAttrs") != 0 || capture_rest(cs, &t, &p->unauth) != 0))
			return -1;
	} else if (r == 1)
		return fail(cs, KM_PROTO, "unexpected field 0x%02x after the encrypted "
		    "content", t.h[0]);
end:
	if (leave(cs) != 0 || leave(cs) != 0 || leave(cs) != 0)
		return -1;
	if ((r = ensure(cs, 1)) < 0)
		return -1;
	if (r == 1)
		return fail(cs, KM_PROTO, "data after the CMS structure (at octet %llu): "
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
	return buf_add(cs, out, h, hl) != 0 || buf_add(cs, out, in->p, in->len) != 0 ?
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
	if (buf_add(cs, &eci, p->ctype.p, p->ctype.len) != 0 ||
	    buf_add(cs, &eci, p->alg.p, p->alg.len) != 0 ||
	    der_wrap(cs, &ecs, 0x30, &eci) != 0)
		goto out;
	for (size_t i = 0; i < sizeof(envd) / sizeof(envd[0]); i++)
		if (body[i]->len > 0 && buf_add(cs, &env, body[i]->p, body[i]->len) != 0)
			goto out;
	if (der_wrap(cs, &envs, 0x30, &env) != 0 || der_wrap(cs, &ctx, 0xa0, &envs) != 0 ||
	    buf_add(cs, &ci, p->oid.p, p->oid.len) != 0 ||
	    buf_add(cs, &ci, ctx.p, ctx.len) != 0 || der_wrap(cs, &cs->der, 0x30, &ci) != 0)
		goto out;
	r = 0;
out:
	buf_free(&eci);
	buf_free(&ecs);
	buf_free(&env);
	buf_free(&envs);
	buf_free(&ctx);
	buf_free(&ci);
	return r;
}

/* rewind_input - back to the start of the input, nothing decoded */
static int
rewind_input(struct cms_stream *cs)
{
	cs->rawpos = cs->rawlen = cs->wlo = cs->whi = 0;
	cs->ineof = cs->nq = cs->pad = cs->padded = cs->depth = cs->bad = 0;
	cs->acc = 0;
	cs->pos = 0;
	kmerr_clear(&cs->err);
	if (BIO_reset(cs->in) <= 0)
		return fail(cs, KM_TEMPFAIL, "cannot rewind the message");
	return 0;
}

/* detect - raw DER when the input starts with a SEQUENCE of long or indefinite length */
static int
detect(struct cms_stream *cs)
{
	int n = BIO_read(cs->in, cs->raw, sizeof(cs->raw));

	if (n < 0)
		return fail(cs, KM_TEMPFAIL, "reading the message failed");
	cs->rawlen = (size_t)n;
	cs->ineof = n == 0;
	cs->b64 = !(n >= 2 && cs->raw[0] == 0x30 && cs->raw[1] >= 0x80);
	return 0;
}

/* cms_stream_open - check the whole structure once, keep its small fields */
enum km_status
cms_stream_open(BIO *in, enum cms_in_mode mode, struct cms_stream **out,
    struct kmerr *err)
{
	struct cms_stream *cs;
	struct parts p = { 0 };
	enum km_status st;
	int64_t got;

	*out = NULL;
	pthread_once(&sextets_once, sextets_init);
	if ((cs = calloc(1, sizeof(*cs))) == NULL)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	cs->in = in;
	cs->b64 = mode != CMS_IN_DER;
	if (rewind_input(cs) != 0 || (mode == CMS_IN_AUTO && detect(cs) != 0) ||
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
		fail(cs, KM_TEMPFAIL, "the message changed between two readings");
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
	r = rewind_input(cs) == 0 ? walk_head(cs, &p) : -1;
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
	buf_free(&cs->der);
	free(cs);
	return NULL;
}
