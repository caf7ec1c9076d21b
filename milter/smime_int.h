#ifndef KMILTER_MILTER_SMIME_INT_H
#define KMILTER_MILTER_SMIME_INT_H
/*
 * NAME
 *	smime_int - internals shared by the smime family (smime.c,
 *	smime_cms.c, smime_envelope.c, smime_verify.c)
 * SUMMARY
 *	Private to the smime family: nothing else includes this header.
 *	Error helpers: smime_ossl(), ossl_drain() (static inline).
 *	Reading CMS inputs (smime_cms.c): smime_der_to_cms(),
 *	smime_body_to_cms(), smime_open_entity().
 *	Signed attributes (smime_attr.c): smime_add_caps(),
 *	smime_add_enckeypref().
 * DESCRIPTION
 *	smime_der_to_cms() parses DER (or BER) bytes as a CMS ContentInfo;
 *	smime_body_to_cms() decodes a CMS body by its transfer encoding
 *	(base64 or binary; unknown: base64 first, then raw DER);
 *	smime_open_entity() finds the Content-Type, the transfer encoding and
 *	the body of an input given as in smime.h (ctype, body, len).
 *
 *	smime_add_caps() adds SMIMECapabilities to a SignerInfo: what
 *	kmilter decrypts, strongest first (AES-256-GCM, AES-256-CBC,
 *	AES-128-CBC, RSAES-OAEP with SHA-256 and MGF1-SHA-256);
 *	smime_add_enckeypref() adds SMIMEEncryptionKeyPreference (RFC 8551
 *	2.5.3) naming a certificate by issuer and serial ([0] choice).
 *	Both return 1, or 0 with OpenSSL's error queued.
 * OWNERSHIP
 *	*out CMS_ContentInfo: the caller frees it (CMS_ContentInfo_free).
 *	smime_open_entity(): *ct (mime_ctype_free) and *hp (mime_headers_free)
 *	are the caller's; *cte and *b point into *hp or body.
 * ERRORS
 *	KM_OK; KM_PROTO malformed MIME or CMS (reason KMERR_BADINPUT);
 *	KM_NOMEM; the message in err, OpenSSL errors drained (smime_ossl:
 *	the first error in err, logged at debug level 1).
 * THREADS
 *	Thread-safe.
 */
#include <openssl/cms.h>
#include <openssl/err.h>

#include "kmerr.h"
#include "log.h"
#include "mime.h"

/*
 * smime_ossl - what failed and OpenSSL's first queued reason into err
 * (kmerr_ossl; just what when nothing is queued), also logged at debug
 * level 1; the queue is emptied.  KM_PROTO means the input is malformed:
 * reason KMERR_BADINPUT.  Returns st.
 */
static inline enum km_status
smime_ossl(struct kmerr *err, enum km_status st, const char *what)
{
	enum kmerr_reason why = st == KM_PROTO ? KMERR_BADINPUT : KMERR_NONE;
	struct kmerr mine;

	if (err == NULL)
		err = &mine;
	if (ERR_peek_error() == 0)
		return kmerr_set(err, st, why, "%s", what);
	kmerr_ossl(err, st, what);
	err->reason = why;
	log_debug(1, "smime: %s", err->msg);
	return st;
}

/* ossl_drain - forget queued OpenSSL errors after an expected failure */
static inline void
ossl_drain(const char *what)
{
	char buf[256];
	unsigned long e;

	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		log_debug(2, "smime: %s: %s", what, buf);
	}
}

enum km_status	 smime_der_to_cms(const unsigned char *der, size_t len,
		    CMS_ContentInfo **out, struct kmerr *err);
enum km_status	 smime_body_to_cms(const char *cte, const char *body,
		    size_t len, CMS_ContentInfo **out, struct kmerr *err);
int		 smime_add_caps(CMS_SignerInfo *);
int		 smime_add_enckeypref(CMS_SignerInfo *, X509 *enc);
enum km_status	 smime_open_entity(const char *ctype, const char *body,
		    size_t len, struct mime_ctype **ct, const char **cte,
		    const char **b, size_t *blen, struct mime_headers **hp,
		    struct kmerr *err);

#endif
