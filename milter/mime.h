#ifndef KMILTER_MILTER_MIME_H
#define KMILTER_MILTER_MIME_H
/*
 * NAME
 *	mime - RFC 5322 header blocks, MIME Content-Type, multipart, base64
 * SUMMARY
 *	mime_entity_split(), mime_headers_parse(), mime_headers_count(),
 *	mime_headers_name(), mime_headers_value(), mime_headers_get(),
 *	mime_headers_free() in mime.c; mime_ctype_parse(), mime_ctype_type(),
 *	mime_ctype_subtype(), mime_ctype_param(), mime_ctype_free(),
 *	mime_smime_kind(), mime_smime_kind_name() in mime_ctype.c;
 *	mime_multipart_split(), mime_parts_free(), mime_base64_decode() in
 *	mime_body.c.  Helpers shared by the three: mime_int.h.
 * DESCRIPTION
 *	A pure parser over byte buffers: no libmilter, no I/O.
 *
 *	mime_entity_split() finds where the header block of an entity ends
 *	and where its body starts (after the first empty line; CRLF or LF).
 *
 *	mime_headers_parse() parses a header block (with or without the empty
 *	line that ends it) into an ordered list of (name, value) pairs.
 *	Folded lines are unfolded (the line break before the continuation's
 *	white space is removed), leading and trailing white space of the value
 *	is trimmed.  Lookup by name is case-insensitive.  8-bit bytes are
 *	allowed in values (RFC 6532) but not in names; NUL is refused.
 *
 *	mime_ctype_parse() parses a Content-Type value: type/subtype and
 *	parameters (token or quoted-string values, RFC 5322 comments
 *	anywhere between tokens; RFC 2231 is not decoded).  Type, subtype
 *	and parameter names are lower-cased; parameter values are kept as
 *	written (quotes and backslash escapes removed).
 *
 *	mime_smime_kind() classifies a parsed Content-Type as S/MIME.
 *
 *	mime_multipart_split() splits a multipart body at its boundary
 *	(delimiter lines "--boundary" with CRLF or LF line ends, transport
 *	padding allowed).  Each part is a byte range into the body: it starts
 *	after the delimiter line and ends before the line break that precedes
 *	the next delimiter (RFC 2046: that line break belongs to the
 *	delimiter), so a multipart/signed part 0 is exactly what was signed.
 *	Runs in linear time.
 *
 *	mime_base64_decode() decodes base64, ignoring CR, LF, space and tab;
 *	anything else outside the alphabet, data after the padding, or a
 *	final group that is not complete is an error.
 * OWNERSHIP
 *	mime_headers_parse(), mime_ctype_parse() and mime_multipart_split()
 *	return objects the caller frees with mime_headers_free(),
 *	mime_ctype_free() and mime_parts_free(); each _free accepts NULL and
 *	returns NULL.  Strings returned by the accessors belong to the object
 *	and stay valid until it is freed.  mime_multipart_split() parts point
 *	into the caller's body buffer (no copy): they are valid while it is.
 *	mime_base64_decode() returns a malloc'ed buffer the caller free()s
 *	(or secmem_free()s when it holds a secret).
 * ERRORS
 *	KM_OK, KM_PROTO (malformed input: err says what and where, reason
 *	KMERR_BADINPUT), KM_NOMEM.  Every function that takes err (last
 *	argument, may be NULL) fills it on failure (base/kmerr.h).
 * THREADS
 *	Thread-safe: no shared state.
 */
#include <stddef.h>

#include "kmerr.h"

struct mime_headers;
struct mime_ctype;

/* A byte range inside a caller's buffer. */
struct mime_part {
	size_t	off;	/* offset of the part (its headers) in the body */
	size_t	len;	/* length of the part, headers and body */
};

struct mime_parts {
	struct mime_part *part;
	size_t	 count;
	size_t	 preamble_len;	/* bytes before the first delimiter */
	size_t	 end;		/* offset just past the close delimiter line */
};

enum mime_smime_kind {
	MIME_SMIME_NONE = 0,		/* not S/MIME */
	MIME_SMIME_ENVELOPED,		/* pkcs7-mime; smime-type=enveloped-data */
	MIME_SMIME_AUTH_ENVELOPED,	/* pkcs7-mime; smime-type=authEnveloped-data */
	MIME_SMIME_SIGNED_OPAQUE,	/* pkcs7-mime; smime-type=signed-data */
	MIME_SMIME_SIGNED_DETACHED,	/* multipart/signed; protocol=pkcs7-signature */
	MIME_SMIME_CERTS_ONLY,		/* pkcs7-mime; smime-type=certs-only */
	MIME_SMIME_COMPRESSED,		/* pkcs7-mime; smime-type=compressed-data */
	MIME_SMIME_PKCS7_UNKNOWN	/* pkcs7-mime without (or unknown) smime-type:
					   look inside the CMS to know */
};

/* Entity: header block / body boundary. */
enum km_status	 mime_entity_split(const char *buf, size_t len,
		    size_t *hdr_len, size_t *body_off, struct kmerr *err);

/* Header block. */
enum km_status	 mime_headers_parse(const char *buf, size_t len,
		    struct mime_headers **out, struct kmerr *err);
size_t		 mime_headers_count(const struct mime_headers *);
const char	*mime_headers_name(const struct mime_headers *, size_t i);
const char	*mime_headers_value(const struct mime_headers *, size_t i);
const char	*mime_headers_get(const struct mime_headers *, const char *name);
struct mime_headers *mime_headers_free(struct mime_headers *);

/* Content-Type. */
enum km_status	 mime_ctype_parse(const char *value, struct mime_ctype **out,
		    struct kmerr *err);
const char	*mime_ctype_type(const struct mime_ctype *);	/* "multipart" */
const char	*mime_ctype_subtype(const struct mime_ctype *);	/* "signed" */
const char	*mime_ctype_param(const struct mime_ctype *, const char *name);
struct mime_ctype *mime_ctype_free(struct mime_ctype *);

enum mime_smime_kind mime_smime_kind(const struct mime_ctype *);
const char	*mime_smime_kind_name(enum mime_smime_kind);

/* Multipart. */
enum km_status	 mime_multipart_split(const char *body, size_t len,
		    const char *boundary, struct mime_parts **out,
		    struct kmerr *err);
struct mime_parts *mime_parts_free(struct mime_parts *);

/* Base64. */
enum km_status	 mime_base64_decode(const char *in, size_t len,
		    unsigned char **out, size_t *outlen, struct kmerr *err);

#endif
