/*
 * smime_cms.c - reading S/MIME inputs as CMS: DER, a transfer-encoded
 * body, an entity's Content-Type and body (see smime_int.h).  Shared by
 * decryption (smime_envelope.c) and verification (smime_verify.c).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/cms.h>
#include <openssl/err.h>

#include "cms_certs.h"
#include "log.h"
#include "mime.h"
#include "secmem.h"
#include "smime_int.h"

/* smime_der_to_cms - parse DER (or BER) bytes as a CMS ContentInfo */
enum km_status
smime_der_to_cms(const unsigned char *der, size_t len, CMS_ContentInfo **out,
    struct kmerr *err)
{
	const unsigned char *p = der;

	*out = NULL;
	if (len == 0) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "malformed CMS: empty");
		return KM_PROTO;
	}
	if (len > INT_MAX) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "malformed CMS: too large");
		return KM_PROTO;
	}
	/* A signature's certificates, parsed once per sender (cms_certs.h). */
	if (cms_certs_d2i(der, len, out))
		return KM_OK;
	/* d2i straight from the buffer: d2i_CMS_bio() would copy it. */
	*out = d2i_CMS_ContentInfo(NULL, &p, (long)len);
	if (*out == NULL)
		return smime_ossl(err, KM_PROTO, "malformed CMS");
	return KM_OK;
}

/*
 * smime_body_to_cms - decode a CMS body: base64 (white space allowed) or binary
 * cte is the Content-Transfer-Encoding or NULL when unknown (then base64
 * is tried first, raw DER second).
 */
enum km_status
smime_body_to_cms(const char *cte, const char *body, size_t len,
    CMS_ContentInfo **out, struct kmerr *err)
{
	unsigned char *der = NULL;
	size_t derlen = 0;
	enum km_status st;

	*out = NULL;
	if (cte != NULL && (strcasecmp(cte, "binary") == 0 ||
	    strcasecmp(cte, "8bit") == 0 || strcasecmp(cte, "7bit") == 0))
		return smime_der_to_cms((const unsigned char *)body, len, out,
		    err);
	if (cte != NULL && strcasecmp(cte, "base64") != 0) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "malformed S/MIME: unsupported "
		    "Content-Transfer-Encoding \"%s\"", cte);
		return KM_PROTO;
	}
	st = mime_base64_decode(body, len, &der, &derlen, err);
	if (st == KM_PROTO && cte == NULL && len > 0 &&
	    (unsigned char)body[0] == 0x30)
		return smime_der_to_cms((const unsigned char *)body, len, out,
		    err);
	if (st != KM_OK)
		return st;
	st = smime_der_to_cms(der, derlen, out, err);
	/* Opaque signed-data holds its content in clear: wipe it. */
	secmem_wipe(der, derlen);
	free(der);
	return st;
}

/*
 * smime_open_entity - the Content-Type, transfer encoding and body of an input
 * Given ctype, body is the body and the encoding is unknown (NULL); given
 * none, body is a full entity.  *hp (to free) holds the strings.
 */
enum km_status
smime_open_entity(const char *ctype, const char *body, size_t len,
    struct mime_ctype **ct, const char **cte, const char **b, size_t *blen,
    struct mime_headers **hp, struct kmerr *err)
{
	size_t hlen, boff;
	enum km_status st;

	*ct = NULL;
	*hp = NULL;
	*cte = NULL;
	*b = body;
	*blen = len;
	if (ctype == NULL) {
		if ((st = mime_entity_split(body, len, &hlen, &boff,
		    err)) != KM_OK) {
			kmerr_prefix(err, "malformed MIME: ");
			return st;
		}
		if ((st = mime_headers_parse(body, hlen, hp, err)) != KM_OK) {
			kmerr_prefix(err, "malformed MIME: ");
			return st;
		}
		if ((ctype = mime_headers_get(*hp, "Content-Type")) == NULL) {
			kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
			    "malformed MIME: no "
			    "Content-Type");
			*hp = mime_headers_free(*hp);
			return KM_PROTO;
		}
		*cte = mime_headers_get(*hp, "Content-Transfer-Encoding");
		*b = body + boff;
		*blen = len - boff;
	}
	if ((st = mime_ctype_parse(ctype, ct, err)) != KM_OK) {
		kmerr_prefix(err, "malformed Content-Type: ");
		*hp = mime_headers_free(*hp);
		return st;
	}
	return KM_OK;
}
