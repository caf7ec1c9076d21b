/*
 * mime.c - entities and header blocks (see mime.h).  Content-Type is in
 * mime_ctype.c, multipart bodies and base64 in mime_body.c.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mime.h"
#include "mime_int.h"

struct mime_field {
	char	*name;
	char	*value;
};

struct mime_headers {
	struct mime_field *f;
	size_t	 n;
	size_t	 cap;
};

/* mime_entity_split - find the end of the header block and the body start */
enum km_status
mime_entity_split(const char *buf, size_t len, size_t *hdr_len,
    size_t *body_off, struct kmerr *err)
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
	kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
	    "no empty line after the header block");
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

/*
 * field_name_end - find the colon that ends the field name of the line at i
 * Sets *colon and *end (the name without trailing white space); a reason
 * into err and KM_PROTO when the line has no valid name and colon.
 */
static enum km_status
field_name_end(const char *buf, size_t len, size_t i, size_t lineno,
    size_t *colonp, size_t *endp, struct kmerr *err)
{
	size_t start = i, colon, end;

	/* The name: printable US-ASCII up to the colon. */
	for (colon = i; colon < len; colon++) {
		unsigned char c = (unsigned char)buf[colon];

		if (c == ':')
			break;
		if (c == '\r' || c == '\n') {
			kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
			    "header line %zu: no "
			    "colon", lineno);
			return KM_PROTO;
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
				kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
				    "header line "
				    "%zu: no colon after the field "
				    "name", lineno);
			else
				kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
				    "header line "
				    "%zu: invalid byte 0x%02x in field "
				    "name", lineno, c);
			return KM_PROTO;
		}
	}
	if (colon == len) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "header line %zu: no colon",
		    lineno);
		return KM_PROTO;
	}
	end = colon;
	while (end > start && (buf[end - 1] == ' ' ||
	    buf[end - 1] == '\t'))
		end--;
	if (end == start) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "header line %zu: empty field "
		    "name", lineno);
		return KM_PROTO;
	}
	*colonp = colon;
	*endp = end;
	return KM_OK;
}

/* field_value_end - the offset after the value that starts at from */
static size_t
field_value_end(const char *buf, size_t len, size_t from)
{
	size_t next = from;

	/* The value: up to a line break not followed by WSP. */
	for (;;) {
		const char *nl = memchr(buf + next, '\n', len - next);

		if (nl == NULL)
			return len;
		next = (size_t)(nl - buf) + 1;
		if (next < len && (buf[next] == ' ' ||
		    buf[next] == '\t'))
			continue;
		return next;
	}
}

/* field_add - copy name and unfolded value into h */
static enum km_status
field_add(struct mime_headers *h, const char *name, size_t namelen,
    const char *value, size_t valuelen)
{
	char *n, *v;

	if ((n = dupn(name, namelen)) == NULL)
		return KM_NOMEM;
	if ((v = unfold(value, valuelen)) == NULL) {
		free(n);
		return KM_NOMEM;
	}
	if (headers_add(h, n, v) != KM_OK) {
		free(n);
		free(v);
		return KM_NOMEM;
	}
	return KM_OK;
}

/* mime_headers_parse - parse a header block into ordered fields */
enum km_status
mime_headers_parse(const char *buf, size_t len, struct mime_headers **out,
    struct kmerr *err)
{
	struct mime_headers *h;
	enum km_status st = KM_PROTO;
	size_t i = 0, lineno = 0;

	*out = NULL;
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return KM_NOMEM;
	}
	if (memchr(buf, '\0', len) != NULL) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "NUL byte in header block");
		goto fail;
	}
	while (i < len) {
		size_t colon, end, next;

		lineno++;
		/* End of the block: an empty line. */
		if (buf[i] == '\n' || (buf[i] == '\r' && i + 1 < len &&
		    buf[i + 1] == '\n'))
			break;
		if (buf[i] == ' ' || buf[i] == '\t') {
			kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
			    "header line %zu: continuation "
			    "line without a field before it", lineno);
			st = KM_PROTO;
			goto fail;
		}
		if ((st = field_name_end(buf, len, i, lineno, &colon, &end,
		    err)) != KM_OK)
			goto fail;
		next = field_value_end(buf, len, colon + 1);
		if (field_add(h, buf + i, end - i, buf + colon + 1,
		    next - colon - 1) != KM_OK)
			goto nomem;
		i = next;
	}
	*out = h;
	return KM_OK;
nomem:
	kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
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
