/*
 * ber.c - the reader under cms_stream.c: base64 or raw input decoded
 * through a bounded window, BER TLV headers read with every length
 * checked against the value holding it (see ber.h).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>

#include "ber.h"

/* ber_fail - record the first error; -1 */
int
ber_fail(struct cms_stream *cs, enum km_status st, const char *fmt, ...)
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

/* ber_buf_add - append bytes (the small fields are bounded) */
int
ber_buf_add(struct cms_stream *cs, struct buf *b, const void *p, size_t n)
{
	if (b->len + n > SMALL_MAX)
		return ber_fail(cs, KM_PROTO, "fields around the content exceed %d octets",
		    SMALL_MAX);
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		unsigned char *q;

		while (cap < b->len + n)
			cap *= 2;
		if ((q = realloc(b->p, cap)) == NULL)
			return ber_fail(cs, KM_NOMEM, "out of memory");
		b->p = q;
		b->cap = cap;
	}
	if (p != NULL)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

/* ber_buf_free - release a buffer */
void
ber_buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
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
		return ber_fail(cs, KM_PROTO, "base64: data after the padding");
	if (c == '=') {
		if (cs->nq < 2)
			return ber_fail(cs, KM_PROTO, "base64: misplaced '='");
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
		return ber_fail(cs, KM_PROTO, "base64: data inside the padding");
	if ((v = sextets[c]) == 0xff)
		return ber_fail(cs, KM_PROTO, "base64: invalid byte 0x%02x", c);
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
 * ber_fill - decode more input into the window.  1 when something was read,
 * 0 at the end of the input, -1 on an error.
 */
static int
ber_fill(struct cms_stream *cs)
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
			return ber_fail(cs, KM_TEMPFAIL, "reading the message failed");
		if (n == 0) {
			cs->ineof = 1;
			if (cs->b64 && cs->nq != 0 && !cs->padded)
				return ber_fail(cs, KM_PROTO, "base64: truncated (incomplete "
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

/* ber_ensure - n decoded octets ready: 1; 0 when the input ends first; -1 */
int
ber_ensure(struct cms_stream *cs, size_t n)
{
	while (cs->whi - cs->wlo < n) {
		int r = ber_fill(cs);

		if (r <= 0)
			return r;
	}
	return 1;
}

/* ber_limit - where the innermost value of definite length ends */
static uint64_t
ber_limit(const struct cms_stream *cs)
{
	for (int i = cs->depth - 1; i >= 0; i--)
		if (cs->end[i] != INDEF)
			return cs->end[i];
	return INDEF;
}

/*
 * ber_take - consume up to n octets (into dst unless NULL), at least one;
 * exact: all n.  Never past the end of the enclosing value.  Returns how
 * many, or -1 (truncated, or past a length).
 */
int64_t
ber_take(struct cms_stream *cs, unsigned char *dst, size_t n, int exact)
{
	uint64_t lim = ber_limit(cs);
	size_t done = 0;

	if (lim != INDEF && n > lim - cs->pos)
		return ber_fail(cs, KM_PROTO, "a value runs past the length of the one "
		    "holding it (at octet %llu)", (unsigned long long)cs->pos);
	while (done < n) {
		size_t k;
		int r;

		if (cs->whi == cs->wlo && (r = ber_ensure(cs, 1)) <= 0) {
			if (r == 0)
				ber_fail(cs, KM_PROTO, "truncated: the input ends at octet "
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

/* ber_tlv_read - read a TLV header, its length checked against its container */
int
ber_tlv_read(struct cms_stream *cs, struct tlv *t)
{
	unsigned char b;
	uint64_t lim;
	int n;

	memset(t, 0, sizeof(*t));
	if (ber_take(cs, &b, 1, 1) < 0)
		return -1;
	t->h[t->hl++] = b;
	t->cls = b >> 6;
	t->cons = (b >> 5) & 1;
	t->tag = b & 0x1f;
	if (t->tag == 0x1f)
		return ber_fail(cs, KM_PROTO, "unsupported high tag number at octet %llu",
		    (unsigned long long)cs->pos - 1);
	if (ber_take(cs, &b, 1, 1) < 0)
		return -1;
	t->h[t->hl++] = b;
	if (b == 0x80) {
		if (!t->cons)
			return ber_fail(cs, KM_PROTO, "indefinite length on a primitive value");
		t->indef = 1;
		return 0;
	}
	if (b < 0x80) {
		t->len = b;
	} else {
		if ((n = b & 0x7f) > 8)
			return ber_fail(cs, KM_PROTO, "a length of %d octets", n);
		while (n-- > 0) {
			if (ber_take(cs, &b, 1, 1) < 0)
				return -1;
			t->h[t->hl++] = b;
			t->len = (t->len << 8) | b;
		}
	}
	lim = ber_limit(cs);
	if (lim != INDEF && t->len > lim - cs->pos)
		return ber_fail(cs, KM_PROTO, "a length says %llu octets where only %llu "
		    "remain in the value holding it", (unsigned long long)t->len,
		    (unsigned long long)(lim - cs->pos));
	return 0;
}

/* ber_expect - the header is of this class, form and tag */
int
ber_expect(struct cms_stream *cs, const struct tlv *t, int cls, int cons, int tag,
    const char *what)
{
	if (t->cls == cls && t->cons == cons && t->tag == tag)
		return 0;
	return ber_fail(cs, KM_PROTO, "%s expected, found identifier 0x%02x", what, t->h[0]);
}

/* ber_enter - open a constructed value (or the primitive content) */
int
ber_enter(struct cms_stream *cs, const struct tlv *t)
{
	if (cs->depth == MAXDEPTH)
		return ber_fail(cs, KM_PROTO, "nested deeper than %d", MAXDEPTH);
	cs->end[cs->depth++] = t->indef ? INDEF : cs->pos + t->len;
	return 0;
}

/* ber_more - another value inside the open one: 1; 0 at its end; -1 */
int
ber_more(struct cms_stream *cs)
{
	uint64_t e = cs->end[cs->depth - 1];
	int r;

	if (e != INDEF)
		return cs->pos < e;
	if ((r = ber_ensure(cs, 2)) <= 0) {
		if (r == 0)
			ber_fail(cs, KM_PROTO, "truncated: end-of-contents missing at the "
			    "end of the input");
		return -1;
	}
	return cs->win[cs->wlo] != 0 || cs->win[cs->wlo + 1] != 0;
}

/* ber_leave - close the open value: its length matched, or its end-of-contents */
int
ber_leave(struct cms_stream *cs)
{
	uint64_t e = cs->end[--cs->depth];
	unsigned char eoc[2];

	if (e == INDEF) {
		if (ber_take(cs, eoc, 2, 1) < 0)
			return -1;
		if (eoc[0] != 0 || eoc[1] != 0)
			return ber_fail(cs, KM_PROTO, "end-of-contents expected at octet %llu",
			    (unsigned long long)cs->pos - 2);
		return 0;
	}
	if (cs->pos != e)
		return ber_fail(cs, KM_PROTO, "a length says the value ends at octet %llu, "
		    "its fields end at %llu", (unsigned long long)e,
		    (unsigned long long)cs->pos);
	return 0;
}

/* ber_capture_rest - keep a value whose header was just read, as it came */
int
ber_capture_rest(struct cms_stream *cs, const struct tlv *t, struct buf *b)
{
	int r;

	if (ber_buf_add(cs, b, t->h, t->hl) != 0)
		return -1;
	if (!t->indef) {
		size_t at = b->len;

		if (t->len > SMALL_MAX || ber_buf_add(cs, b, NULL, (size_t)t->len) != 0)
			return ber_fail(cs, KM_PROTO, "a field of %llu octets is too large",
			    (unsigned long long)t->len);
		return ber_take(cs, b->p + at, (size_t)t->len, 1) < 0 ? -1 : 0;
	}
	if (ber_enter(cs, t) != 0)
		return -1;
	while ((r = ber_more(cs)) == 1)
		if (ber_capture(cs, b) != 0)
			return -1;
	if (r < 0 || ber_leave(cs) != 0)
		return -1;
	return ber_buf_add(cs, b, "\0\0", 2);
}

/* ber_capture - read and keep the next value */
int
ber_capture(struct cms_stream *cs, struct buf *b)
{
	struct tlv t;

	if (ber_tlv_read(cs, &t) != 0)
		return -1;
	return ber_capture_rest(cs, &t, b);
}

/* ber_open_value - read a header of this kind and enter it */
int
ber_open_value(struct cms_stream *cs, int cls, int tag, const char *what)
{
	struct tlv t;

	if (ber_tlv_read(cs, &t) != 0 || ber_expect(cs, &t, cls, 1, tag, what) != 0)
		return -1;
	return ber_enter(cs, &t);
}

/* ber_take_field - read and keep a value of this kind */
int
ber_take_field(struct cms_stream *cs, struct buf *b, int cls, int cons, int tag,
    const char *what)
{
	struct tlv t;

	if (ber_tlv_read(cs, &t) != 0 || ber_expect(cs, &t, cls, cons, tag, what) != 0)
		return -1;
	return ber_capture_rest(cs, &t, b);
}

/* ber_rewind - back to the start of the input, nothing decoded */
int
ber_rewind(struct cms_stream *cs)
{
	cs->rawpos = cs->rawlen = cs->wlo = cs->whi = 0;
	cs->ineof = cs->nq = cs->pad = cs->padded = cs->depth = cs->bad = 0;
	cs->acc = 0;
	cs->pos = 0;
	kmerr_clear(&cs->err);
	if (BIO_reset(cs->in) <= 0)
		return ber_fail(cs, KM_TEMPFAIL, "cannot rewind the message");
	return 0;
}

/* ber_detect - raw DER when the input starts with a SEQUENCE of long or indefinite length */
int
ber_detect(struct cms_stream *cs)
{
	int n = BIO_read(cs->in, cs->raw, sizeof(cs->raw));

	if (n < 0)
		return ber_fail(cs, KM_TEMPFAIL, "reading the message failed");
	cs->rawlen = (size_t)n;
	cs->ineof = n == 0;
	cs->b64 = !(n >= 2 && cs->raw[0] == 0x30 && cs->raw[1] >= 0x80);
	return 0;
}

/* ber_init - build the base64 table once (any thread may call it) */
void
ber_init(void)
{
	pthread_once(&sextets_once, sextets_init);
}
