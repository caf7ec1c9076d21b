/*
 * mime.c - header blocks, Content-Type, multipart and base64 (see mime.h).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "mime.h"

struct mime_field {
	char	*name;
	char	*value;
};

struct mime_headers {
	struct mime_field *f;
	size_t	 n;
	size_t	 cap;
};

struct mime_param {
	char	*name;
	char	*value;
};

struct mime_ctype {
	char	*type;
	char	*subtype;
	struct mime_param *p;
	size_t	 n;
	size_t	 cap;
};

/* seterr - format a reason into errstr when there is one */
static KM_PRINTF(3, 4) void
seterr(char *errstr, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errstr == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errstr, errlen, fmt, ap);
	va_end(ap);
}

/* dupn - copy n bytes into a new NUL-terminated string */
static char *
dupn(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p != NULL) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

/* mime_entity_split - find the end of the header block and the body start */
enum km_status
mime_entity_split(const char *buf, size_t len, size_t *hdr_len,
    size_t *body_off, char *errstr, size_t errlen)
{
	size_t i = 0;

	/* Walk line by line: an empty line (CRLF or LF alone) ends it. */
	while (i < len) {
		const char *nl = memchr(buf + i, '\n', len - i);
		size_t eol;

		if (nl == NULL)
			break;
		eol = (size_t)(nl - buf);
		if (eol == i || (eol == i + 1 && buf[i] == '\r')) {
			*hdr_len = i;
			*body_off = eol + 1;
			return KM_OK;
		}
		i = eol + 1;
	}
	seterr(errstr, errlen, "no empty line after the header block");
	return KM_PROTO;
}

/* headers_add - append a field, taking ownership of name and value */
static enum km_status
headers_add(struct mime_headers *h, char *name, char *value)
{
	if (h->n == h->cap) {
		size_t ncap = h->cap ? h->cap * 2 : 16;
		struct mime_field *nf = reallocarray(h->f, ncap, sizeof(*nf));

		if (nf == NULL)
			return KM_NOMEM;
		h->f = nf;
		h->cap = ncap;
	}
	h->f[h->n].name = name;
	h->f[h->n].value = value;
	h->n++;
	return KM_OK;
}

/* unfold - copy a field value without its line breaks, trimmed */
static char *
unfold(const char *v, size_t n)
{
	char *out = malloc(n + 1), *o;
	size_t i;

	if (out == NULL)
		return NULL;
	o = out;
	for (i = 0; i < n; i++) {
		if (v[i] == '\r' || v[i] == '\n')
			continue;
		*o++ = v[i];
	}
	while (o > out && (o[-1] == ' ' || o[-1] == '\t'))
		o--;
	*o = '\0';
	o = out;
	while (*o == ' ' || *o == '\t')
		o++;
	if (o != out)
		memmove(out, o, strlen(o) + 1);
	return out;
}

/* mime_headers_parse - parse a header block into ordered fields */
enum km_status
mime_headers_parse(const char *buf, size_t len, struct mime_headers **out,
    char *errstr, size_t errlen)
{
	struct mime_headers *h;
	enum km_status st = KM_PROTO;
	size_t i = 0, lineno = 0;

	*out = NULL;
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		seterr(errstr, errlen, "out of memory");
		return KM_NOMEM;
	}
	if (memchr(buf, '\0', len) != NULL) {
		seterr(errstr, errlen, "NUL byte in header block");
		goto fail;
	}
	while (i < len) {
		size_t start = i, colon, end, next;
		char *name, *value;

		lineno++;
		/* End of the block: an empty line. */
		if (buf[i] == '\n' || (buf[i] == '\r' && i + 1 < len &&
		    buf[i + 1] == '\n'))
			break;
		if (buf[i] == ' ' || buf[i] == '\t') {
			seterr(errstr, errlen, "header line %zu: continuation "
			    "line without a field before it", lineno);
			goto fail;
		}
		/* The name: printable US-ASCII up to the colon. */
		for (colon = i; colon < len; colon++) {
			unsigned char c = (unsigned char)buf[colon];

			if (c == ':')
				break;
			if (c == '\r' || c == '\n') {
				seterr(errstr, errlen, "header line %zu: no "
				    "colon", lineno);
				goto fail;
			}
			if (c <= 32 || c >= 127) {
				/* Allow white space before the colon
				   (obsolete syntax) but nothing after it. */
				size_t k = colon;

				while (k < len && (buf[k] == ' ' ||
				    buf[k] == '\t'))
					k++;
				if ((c == ' ' || c == '\t') && k < len &&
				    buf[k] == ':') {
					colon = k;
					break;
				}
				if (c == ' ' || c == '\t')
					seterr(errstr, errlen, "header line "
					    "%zu: no colon after the field "
					    "name", lineno);
				else
					seterr(errstr, errlen, "header line "
					    "%zu: invalid byte 0x%02x in field "
					    "name", lineno, c);
				goto fail;
			}
		}
		if (colon == len) {
			seterr(errstr, errlen, "header line %zu: no colon",
			    lineno);
			goto fail;
		}
		end = colon;
		while (end > start && (buf[end - 1] == ' ' ||
		    buf[end - 1] == '\t'))
			end--;
		if (end == start) {
			seterr(errstr, errlen, "header line %zu: empty field "
			    "name", lineno);
			goto fail;
		}
		/* The value: up to a line break not followed by WSP. */
		next = colon + 1;
		for (;;) {
			const char *nl = memchr(buf + next, '\n', len - next);

			if (nl == NULL) {
				next = len;
				break;
			}
			next = (size_t)(nl - buf) + 1;
			if (next < len && (buf[next] == ' ' ||
			    buf[next] == '\t'))
				continue;
			break;
		}
		if ((name = dupn(buf + start, end - start)) == NULL)
			goto nomem;
		if ((value = unfold(buf + colon + 1, next - colon - 1)) ==
		    NULL) {
			free(name);
			goto nomem;
		}
		if (headers_add(h, name, value) != KM_OK) {
			free(name);
			free(value);
			goto nomem;
		}
		i = next;
	}
	*out = h;
	return KM_OK;
nomem:
	seterr(errstr, errlen, "out of memory");
	st = KM_NOMEM;
fail:
	mime_headers_free(h);
	return st;
}

/* mime_headers_count - number of fields */
size_t
mime_headers_count(const struct mime_headers *h)
{
	return h ? h->n : 0;
}

/* mime_headers_name - the name of field i, NULL if out of range */
const char *
mime_headers_name(const struct mime_headers *h, size_t i)
{
	return (h && i < h->n) ? h->f[i].name : NULL;
}

/* mime_headers_value - the unfolded value of field i */
const char *
mime_headers_value(const struct mime_headers *h, size_t i)
{
	return (h && i < h->n) ? h->f[i].value : NULL;
}

/* mime_headers_get - value of the first field with this name, any case */
const char *
mime_headers_get(const struct mime_headers *h, const char *name)
{
	size_t i;

	if (h == NULL)
		return NULL;
	for (i = 0; i < h->n; i++)
		if (strcasecmp(h->f[i].name, name) == 0)
			return h->f[i].value;
	return NULL;
}

/* mime_headers_free - free a parsed header block; returns NULL */
struct mime_headers *
mime_headers_free(struct mime_headers *h)
{
	size_t i;

	if (h == NULL)
		return NULL;
	for (i = 0; i < h->n; i++) {
		free(h->f[i].name);
		free(h->f[i].value);
	}
	free(h->f);
	free(h);
	return NULL;
}

/* Content-Type lexer state. */
struct lex {
	const char *s;
	size_t	 i;
	char	*err;
	size_t	 errlen;
	int	 nomem;
};

/* skip_cfws - skip white space and (nested, escaped) comments */
static int
skip_cfws(struct lex *lx)
{
	for (;;) {
		char c = lx->s[lx->i];

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			lx->i++;
		} else if (c == '(') {
			int depth = 0;

			do {
				c = lx->s[lx->i];
				if (c == '\0') {
					seterr(lx->err, lx->errlen,
					    "unterminated comment");
					return -1;
				}
				if (c == '\\' && lx->s[lx->i + 1] != '\0')
					lx->i++;
				else if (c == '(')
					depth++;
				else if (c == ')')
					depth--;
				lx->i++;
			} while (depth > 0);
		} else
			return 0;
	}
}

/* is_tspecial - RFC 2045 tspecials and what else ends a token */
static int
is_tspecial(unsigned char c)
{
	return c <= 32 || c >= 127 || strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

/* lex_token - read an RFC 2045 token; lower-case it when asked */
static char *
lex_token(struct lex *lx, int lower, const char *what)
{
	size_t start = lx->i;
	char *t;

	while (lx->s[lx->i] != '\0' && !is_tspecial((unsigned char)lx->s[lx->i]))
		lx->i++;
	if (lx->i == start) {
		unsigned char c = (unsigned char)lx->s[lx->i];

		if (c == '\0')
			seterr(lx->err, lx->errlen, "missing %s", what);
		else
			seterr(lx->err, lx->errlen, "invalid byte 0x%02x "
			    "where %s expected", c, what);
		return NULL;
	}
	if ((t = dupn(lx->s + start, lx->i - start)) == NULL) {
		lx->nomem = 1;
		seterr(lx->err, lx->errlen, "out of memory");
		return NULL;
	}
	if (lower)
		for (char *p = t; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	return t;
}

/* lex_quoted - read a quoted-string, removing quotes and escapes */
static char *
lex_quoted(struct lex *lx)
{
	size_t start = ++lx->i, n = 0;
	char *t, *o;

	/* First pass: find the end and check it is terminated. */
	while (lx->s[lx->i] != '"') {
		if (lx->s[lx->i] == '\0') {
			seterr(lx->err, lx->errlen, "unterminated quoted "
			    "string");
			return NULL;
		}
		if (lx->s[lx->i] == '\\' && lx->s[lx->i + 1] != '\0')
			lx->i++;
		lx->i++;
		n++;
	}
	if ((t = malloc(n + 1)) == NULL) {
		lx->nomem = 1;
		seterr(lx->err, lx->errlen, "out of memory");
		return NULL;
	}
	for (o = t; start < lx->i; start++) {
		if (lx->s[start] == '\\')
			start++;
		*o++ = lx->s[start];
	}
	*o = '\0';
	lx->i++;
	return t;
}

/* ctype_add - append a parameter, taking ownership */
static enum km_status
ctype_add(struct mime_ctype *ct, char *name, char *value)
{
	if (ct->n == ct->cap) {
		size_t ncap = ct->cap ? ct->cap * 2 : 4;
		struct mime_param *np = reallocarray(ct->p, ncap, sizeof(*np));

		if (np == NULL)
			return KM_NOMEM;
		ct->p = np;
		ct->cap = ncap;
	}
	ct->p[ct->n].name = name;
	ct->p[ct->n].value = value;
	ct->n++;
	return KM_OK;
}

/* mime_ctype_parse - parse a Content-Type value */
enum km_status
mime_ctype_parse(const char *value, struct mime_ctype **out, char *errstr,
    size_t errlen)
{
	struct lex lx = { value, 0, errstr, errlen, 0 };
	struct mime_ctype *ct;
	char *name = NULL, *val = NULL;

	*out = NULL;
	if ((ct = calloc(1, sizeof(*ct))) == NULL) {
		seterr(errstr, errlen, "out of memory");
		return KM_NOMEM;
	}
	if (skip_cfws(&lx) == -1 ||
	    (ct->type = lex_token(&lx, 1, "media type")) == NULL ||
	    skip_cfws(&lx) == -1)
		goto fail;
	if (value[lx.i] != '/') {
		seterr(errstr, errlen, "no '/' after media type \"%s\"",
		    ct->type);
		goto fail;
	}
	lx.i++;
	if (skip_cfws(&lx) == -1 ||
	    (ct->subtype = lex_token(&lx, 1, "media subtype")) == NULL)
		goto fail;
	for (;;) {
		if (skip_cfws(&lx) == -1)
			goto fail;
		if (value[lx.i] == '\0')
			break;
		if (value[lx.i] != ';') {
			seterr(errstr, errlen, "unexpected byte 0x%02x after "
			    "%s", (unsigned char)value[lx.i],
			    ct->n ? "parameter" : "media type");
			goto fail;
		}
		lx.i++;
		if (skip_cfws(&lx) == -1)
			goto fail;
		if (value[lx.i] == '\0' || value[lx.i] == ';')
			continue;	/* tolerate empty parameters */
		if ((name = lex_token(&lx, 1, "parameter name")) == NULL ||
		    skip_cfws(&lx) == -1)
			goto fail;
		if (value[lx.i] != '=') {
			seterr(errstr, errlen, "parameter \"%s\" without '='",
			    name);
			goto fail;
		}
		lx.i++;
		if (skip_cfws(&lx) == -1)
			goto fail;
		if (value[lx.i] == '"')
			val = lex_quoted(&lx);
		else
			val = lex_token(&lx, 0, "parameter value");
		if (val == NULL)
			goto fail;
		if (mime_ctype_param(ct, name) != NULL) {
			/* First one wins; ignore duplicates. */
			free(name);
			free(val);
		} else if (ctype_add(ct, name, val) != KM_OK) {
			seterr(errstr, errlen, "out of memory");
			free(name);
			free(val);
			mime_ctype_free(ct);
			return KM_NOMEM;
		}
		name = val = NULL;
	}
	*out = ct;
	return KM_OK;
fail:
	free(name);
	free(val);
	mime_ctype_free(ct);
	return lx.nomem ? KM_NOMEM : KM_PROTO;
}

/* mime_ctype_type - the lower-case media type */
const char *
mime_ctype_type(const struct mime_ctype *ct)
{
	return ct ? ct->type : NULL;
}

/* mime_ctype_subtype - the lower-case media subtype */
const char *
mime_ctype_subtype(const struct mime_ctype *ct)
{
	return ct ? ct->subtype : NULL;
}

/* mime_ctype_param - a parameter value by (case-insensitive) name */
const char *
mime_ctype_param(const struct mime_ctype *ct, const char *name)
{
	size_t i;

	if (ct == NULL)
		return NULL;
	for (i = 0; i < ct->n; i++)
		if (strcasecmp(ct->p[i].name, name) == 0)
			return ct->p[i].value;
	return NULL;
}

/* mime_ctype_free - free a parsed Content-Type; returns NULL */
struct mime_ctype *
mime_ctype_free(struct mime_ctype *ct)
{
	size_t i;

	if (ct == NULL)
		return NULL;
	for (i = 0; i < ct->n; i++) {
		free(ct->p[i].name);
		free(ct->p[i].value);
	}
	free(ct->p);
	free(ct->type);
	free(ct->subtype);
	free(ct);
	return NULL;
}

/* mime_smime_kind - which kind of S/MIME object a Content-Type announces */
enum mime_smime_kind
mime_smime_kind(const struct mime_ctype *ct)
{
	const char *st;

	if (ct == NULL)
		return MIME_SMIME_NONE;
	if (strcmp(ct->type, "application") == 0 &&
	    (strcmp(ct->subtype, "pkcs7-mime") == 0 ||
	    strcmp(ct->subtype, "x-pkcs7-mime") == 0)) {
		if ((st = mime_ctype_param(ct, "smime-type")) == NULL)
			return MIME_SMIME_PKCS7_UNKNOWN;
		if (strcasecmp(st, "enveloped-data") == 0)
			return MIME_SMIME_ENVELOPED;
		if (strcasecmp(st, "authEnveloped-data") == 0)
			return MIME_SMIME_AUTH_ENVELOPED;
		if (strcasecmp(st, "signed-data") == 0)
			return MIME_SMIME_SIGNED_OPAQUE;
		if (strcasecmp(st, "certs-only") == 0)
			return MIME_SMIME_CERTS_ONLY;
		if (strcasecmp(st, "compressed-data") == 0)
			return MIME_SMIME_COMPRESSED;
		return MIME_SMIME_PKCS7_UNKNOWN;
	}
	if (strcmp(ct->type, "multipart") == 0 &&
	    strcmp(ct->subtype, "signed") == 0 &&
	    (st = mime_ctype_param(ct, "protocol")) != NULL &&
	    (strcasecmp(st, "application/pkcs7-signature") == 0 ||
	    strcasecmp(st, "application/x-pkcs7-signature") == 0))
		return MIME_SMIME_SIGNED_DETACHED;
	return MIME_SMIME_NONE;
}

/* mime_smime_kind_name - printable name of a kind */
const char *
mime_smime_kind_name(enum mime_smime_kind k)
{
	switch (k) {
	case MIME_SMIME_NONE:		return "none";
	case MIME_SMIME_ENVELOPED:	return "enveloped-data";
	case MIME_SMIME_AUTH_ENVELOPED:	return "authEnveloped-data";
	case MIME_SMIME_SIGNED_OPAQUE:	return "signed-data";
	case MIME_SMIME_SIGNED_DETACHED: return "multipart/signed";
	case MIME_SMIME_CERTS_ONLY:	return "certs-only";
	case MIME_SMIME_COMPRESSED:	return "compressed-data";
	case MIME_SMIME_PKCS7_UNKNOWN:	return "pkcs7-mime";
	}
	return "unknown";
}

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
    struct mime_parts **out, char *errstr, size_t errlen)
{
	struct mime_parts *ps;
	size_t bdlen, cap = 0, d, next, start;
	int close = 0;

	*out = NULL;
	if (boundary == NULL || (bdlen = strlen(boundary)) == 0) {
		seterr(errstr, errlen, "multipart without a boundary");
		return KM_PROTO;
	}
	if (bdlen > 70) {
		seterr(errstr, errlen, "boundary longer than 70 characters");
		return KM_PROTO;
	}
	if ((ps = calloc(1, sizeof(*ps))) == NULL) {
		seterr(errstr, errlen, "out of memory");
		return KM_NOMEM;
	}
	d = find_delim(body, len, 0, boundary, bdlen, &close, &next);
	if (d == len) {
		seterr(errstr, errlen, "no delimiter line for boundary "
		    "\"%s\"", boundary);
		goto fail;
	}
	if (close) {
		seterr(errstr, errlen, "close delimiter before any part");
		goto fail;
	}
	ps->preamble_len = d;
	for (;;) {
		size_t end;

		start = next;
		d = find_delim(body, len, start ? start - 1 : 0, boundary,
		    bdlen, &close, &next);
		if (d == len) {
			seterr(errstr, errlen, "body truncated before the "
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
			seterr(errstr, errlen, "out of memory");
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
    size_t *outlen, char *errstr, size_t errlen)
{
	unsigned char *buf;
	size_t i, o = 0;
	unsigned int acc = 0;
	int n = 0, pad = 0;

	*out = NULL;
	*outlen = 0;
	if ((buf = malloc(len / 4 * 3 + 3)) == NULL) {
		seterr(errstr, errlen, "out of memory");
		return KM_NOMEM;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		int v;

		if (c == '\r' || c == '\n' || c == ' ' || c == '\t')
			continue;
		if (c == '=') {
			if (n < 2) {
				seterr(errstr, errlen, "base64: misplaced "
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
						seterr(errstr, errlen,
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
			seterr(errstr, errlen, "base64: data inside the "
			    "padding at offset %zu", i);
			goto fail;
		}
		if ((v = b64val(c)) < 0) {
			seterr(errstr, errlen, "base64: invalid byte 0x%02x at "
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
		seterr(errstr, errlen, "base64: truncated (%d characters in "
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
