#ifndef KMILTER_MILTER_SMIME_INT_H
#define KMILTER_MILTER_SMIME_INT_H
/*
 * NAME
 *	smime_int - internals shared by the smime family (smime.c,
 *	smime_cms.c, smime_envelope.c, smime_verify.c)
 * SUMMARY
 *	Private to the smime family: nothing else includes this header.
 *	Error helpers: seterr(), ossl_fail(), ossl_drain() (static inline).
 *	Reading CMS inputs (smime_cms.c): smime_der_to_cms(),
 *	smime_body_to_cms(), smime_open_entity().
 * DESCRIPTION
 *	smime_der_to_cms() parses DER (or BER) bytes as a CMS ContentInfo;
 *	smime_body_to_cms() decodes a CMS body by its transfer encoding
 *	(base64 or binary; unknown: base64 first, then raw DER);
 *	smime_open_entity() finds the Content-Type, the transfer encoding and
 *	the body of an input given as in smime.h (ctype, body, len).
 * OWNERSHIP
 *	*out CMS_ContentInfo: the caller frees it (CMS_ContentInfo_free).
 *	smime_open_entity(): *ct (mime_ctype_free) and *hp (mime_headers_free)
 *	are the caller's; *cte and *b point into *hp or body.
 * ERRORS
 *	KM_OK; KM_PROTO malformed MIME or CMS; KM_NOMEM; reason in errstr,
 *	OpenSSL errors drained (ossl_fail: first error in errstr, all logged
 *	at debug level 1).
 * THREADS
 *	Thread-safe.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/cms.h>
#include <openssl/err.h>

#include "log.h"
#include "mime.h"
#include "status.h"

/* seterr - format a reason into errstr when there is one */
static inline KM_PRINTF(3, 4) void
seterr(char *errstr, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errstr == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errstr, errlen, fmt, ap);
	va_end(ap);
}

/*
 * ossl_fail - drain the OpenSSL error queue into errstr and the log
 * Returns st.  The first (root-cause) error goes into errstr after what;
 * every error is logged at debug level 1.
 */
static inline enum km_status
ossl_fail(enum km_status st, char *errstr, size_t errlen, const char *what)
{
	const char *file, *func, *data;
	unsigned long e;
	int line, flags, first = 1;
	char buf[256];

	while ((e = ERR_get_error_all(&file, &line, &func, &data,
	    &flags)) != 0) {
		const char *r = ERR_reason_error_string(e);
		const char *d = (flags & ERR_TXT_STRING) && data ? data : "";

		if (first) {
			seterr(errstr, errlen, "%s: %s%s%s%s", what,
			    r ? r : "error", func && *func ? " in " : "",
			    func ? func : "", *d ? " " : "");
			if (*d && errstr != NULL) {
				size_t n = strlen(errstr);

				if (n < errlen)
					snprintf(errstr + n, errlen - n, "(%s)", d);
			}
			first = 0;
		}
		ERR_error_string_n(e, buf, sizeof(buf));
		log_debug(1, "smime: %s: %s", what, buf);
	}
	if (first)
		seterr(errstr, errlen, "%s", what);
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
		    CMS_ContentInfo **out, char *errstr, size_t errlen);
enum km_status	 smime_body_to_cms(const char *cte, const char *body,
		    size_t len, CMS_ContentInfo **out, char *errstr,
		    size_t errlen);
enum km_status	 smime_open_entity(const char *ctype, const char *body,
		    size_t len, struct mime_ctype **ct, const char **cte,
		    const char **b, size_t *blen, struct mime_headers **hp,
		    char *errstr, size_t errlen);

#endif
