/*
 * mime_ctype.c - the Content-Type parser and the S/MIME classification
 * (see mime.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mime.h"
#include "mime_int.h"

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

/* Content-Type lexer state. */
struct lex {
	const char *s;
	size_t	 i;
	struct kmerr *err;
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
					kmerr_set(lx->err, KM_PROTO, KMERR_BADINPUT,
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
			kmerr_set(lx->err, KM_PROTO, KMERR_BADINPUT,
			    "missing %s", what);
		else
			kmerr_set(lx->err, KM_PROTO, KMERR_BADINPUT,
			    "invalid byte 0x%02x "
			    "where %s expected", c, what);
		return NULL;
	}
	if ((t = dupn(lx->s + start, lx->i - start)) == NULL) {
		lx->nomem = 1;
		kmerr_set(lx->err, KM_NOMEM, KMERR_NONE, "out of memory");
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
			kmerr_set(lx->err, KM_PROTO, KMERR_BADINPUT,
			    "unterminated quoted "
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
		kmerr_set(lx->err, KM_NOMEM, KMERR_NONE, "out of memory");
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
mime_ctype_parse(const char *value, struct mime_ctype **out, struct kmerr *err)
{
	struct lex lx = { value, 0, err, 0 };
	struct mime_ctype *ct;
	char *name = NULL, *val = NULL;

	*out = NULL;
	if ((ct = calloc(1, sizeof(*ct))) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return KM_NOMEM;
	}
	if (skip_cfws(&lx) == -1 ||
	    (ct->type = lex_token(&lx, 1, "media type")) == NULL ||
	    skip_cfws(&lx) == -1)
		goto fail;
	if (value[lx.i] != '/') {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "no '/' after media type \"%s\"",
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
			kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
			    "unexpected byte 0x%02x after "
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
			kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
			    "parameter \"%s\" without '='",
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
			kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
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
