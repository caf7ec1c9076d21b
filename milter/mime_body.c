/*
 * mime_body.c - multipart bodies and base64 (see mime.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mime.h"
#include "mime_int.h"

/*
 * next_dashline - the next "\n--" at or after b + pos, or NULL.
 * memchr, not memmem: ASan's memmem interceptor reads the whole rest of
 * the body on every call, which made a body of many "--" lines quadratic
 * under check-asan; memchr's reads only up to what it finds.
 */
static const char *
next_dashline(const char *b, size_t len, size_t pos)
{
	const char *p = b + pos, *end = b + len;

	while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		if (end - p >= 3 && p[1] == '-' && p[2] == '-')
			return p;
		p++;
	}
	return NULL;
}

/*
 * find_delim - next delimiter line at or after from.
 * Returns its offset (the first '-') or len when there is none; *close is
 * set for "--boundary--", *next to the offset after its line end (len when
 * the line has no end).
 */
static size_t
find_delim(const char *b, size_t len, size_t from, const char *bd,
    size_t bdlen, int *close, size_t *next)
{
	size_t pos = from;

	while (pos < len) {
		const char *m;
		size_t p, q;

		if (pos == 0 && len >= bdlen + 2 && b[0] == '-' &&
		    b[1] == '-' && memcmp(b + 2, bd, bdlen) == 0) {
			p = 0;
		} else {
			m = next_dashline(b, len, pos);
			if (m == NULL)
				return len;
			p = (size_t)(m - b) + 1;
			pos = p;
			if (len - p < bdlen + 2 ||
			    memcmp(b + p + 2, bd, bdlen) != 0)
				continue;
		}
		q = p + 2 + bdlen;
		*close = 0;
		if (q + 1 < len && b[q] == '-' && b[q + 1] == '-') {
			*close = 1;
			q += 2;
		}
		/* Transport padding, then the line end (or end of body). */
		while (q < len && (b[q] == ' ' || b[q] == '\t'))
			q++;
		if (q < len && b[q] == '\r' && q + 1 < len && b[q + 1] == '\n')
			q += 2;
		else if (q < len && b[q] == '\n')
			q += 1;
		else if (q < len) {
			/* "--boundaryX": a longer line, not a delimiter. */
			pos = p + 1;
			continue;
		}
		*next = q;
		return p;
	}
	return len;
}

/* parts_add - append a part */
static enum km_status
parts_add(struct mime_parts *ps, size_t *cap, size_t off, size_t len)
{
	if (ps->count == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;
		struct mime_part *np = reallocarray(ps->part, ncap,
		    sizeof(*np));

		if (np == NULL)
			return KM_NOMEM;
		ps->part = np;
		*cap = ncap;
	}
	ps->part[ps->count].off = off;
	ps->part[ps->count].len = len;
	ps->count++;
	return KM_OK;
}

/* mime_multipart_split - split a multipart body at its boundary */
enum km_status
mime_multipart_split(const char *body, size_t len, const char *boundary,
    struct mime_parts **out, struct kmerr *err)
{
	struct mime_parts *ps;
	size_t bdlen, cap = 0, d, next, start;
	int close = 0;

	*out = NULL;
	if (boundary == NULL || (bdlen = strlen(boundary)) == 0) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "multipart without a boundary");
		return KM_PROTO;
	}
	if (bdlen > 70) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "boundary longer than 70 characters");
		return KM_PROTO;
	}
	if ((ps = calloc(1, sizeof(*ps))) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return KM_NOMEM;
	}
	d = find_delim(body, len, 0, boundary, bdlen, &close, &next);
	if (d == len) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "no delimiter line for boundary "
		    "\"%s\"", boundary);
		goto fail;
	}
	if (close) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "close delimiter before any part");
		goto fail;
	}
	ps->preamble_len = d;
	for (;;) {
		size_t end;

		start = next;
		d = find_delim(body, len, start ? start - 1 : 0, boundary,
		    bdlen, &close, &next);
		if (d == len) {
			kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
			    "body truncated before the "
			    "closing boundary \"--%s--\"", boundary);
			goto fail;
		}
		/* The line break before the delimiter is not content. */
		end = d;
		if (end > start && body[end - 1] == '\n')
			end--;
		if (end > start && body[end - 1] == '\r')
			end--;
		if (parts_add(ps, &cap, start, end - start) != KM_OK) {
			kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
			mime_parts_free(ps);
			return KM_NOMEM;
		}
		if (close)
			break;
	}
	ps->end = next;
	*out = ps;
	return KM_OK;
fail:
	mime_parts_free(ps);
	return KM_PROTO;
}

/* mime_parts_free - free a part list; returns NULL */
struct mime_parts *
mime_parts_free(struct mime_parts *ps)
{
	if (ps != NULL) {
		free(ps->part);
		free(ps);
	}
	return NULL;
}

/* b64val - value of a base64 character, -1 if not in the alphabet */
static int
b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* mime_base64_decode - strict base64 decoding, white space ignored */
enum km_status
mime_base64_decode(const char *in, size_t len, unsigned char **out,
    size_t *outlen, struct kmerr *err)
{
	unsigned char *buf;
	size_t i, o = 0;
	unsigned int acc = 0;
	int n = 0, pad = 0;

	*out = NULL;
	*outlen = 0;
	if ((buf = malloc(len / 4 * 3 + 3)) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return KM_NOMEM;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		int v;

		if (c == '\r' || c == '\n' || c == ' ' || c == '\t')
			continue;
		if (c == '=') {
			if (n < 2) {
				kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
				    "base64: misplaced "
				    "'=' at offset %zu", i);
				goto fail;
			}
			pad++;
			n++;
			if (n == 4) {
				if (pad == 2)
					buf[o++] = (unsigned char)(acc >> 4);
				else
					buf[o++] = (unsigned char)(acc >> 10),
					buf[o++] = (unsigned char)(acc >> 2);
				n = 0;
				/* Only white space may follow. */
				for (i++; i < len; i++) {
					c = (unsigned char)in[i];
					if (c != '\r' && c != '\n' &&
					    c != ' ' && c != '\t') {
						kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
						    "base64: data after the "
						    "padding at offset %zu", i);
						goto fail;
					}
				}
				break;
			}
			continue;
		}
		if (pad) {
			kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
			    "base64: data inside the "
			    "padding at offset %zu", i);
			goto fail;
		}
		if ((v = b64val(c)) < 0) {
			kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
			    "base64: invalid byte 0x%02x at "
			    "offset %zu", c, i);
			goto fail;
		}
		acc = (acc << 6) | (unsigned int)v;
		if (++n == 4) {
			buf[o++] = (unsigned char)(acc >> 16);
			buf[o++] = (unsigned char)(acc >> 8);
			buf[o++] = (unsigned char)acc;
			acc = 0;
			n = 0;
		}
	}
	if (n != 0) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "base64: truncated (%d characters in "
		    "the last group)", n);
		goto fail;
	}
	*out = buf;
	*outlen = o;
	return KM_OK;
fail:
	free(buf);
	return KM_PROTO;
}
