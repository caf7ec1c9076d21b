#ifndef KMILTER_KEYCLIENT_REVCHECK_PARSE_H
#define KMILTER_KEYCLIENT_REVCHECK_PARSE_H
/*
 * NAME
 *	revcheck_parse - judge an OCSP response or a CRL about one certificate
 * SUMMARY
 *	revparse_ocsp(), revparse_crl_load(), revparse_crl()
 * DESCRIPTION
 *	revparse_ocsp() reads a DER OCSP response to the request for id and
 *	says what it tells about that certificate: the response must be
 *	successful, signed by issuer or by a responder issuer delegated
 *	(id-kp-OCSPSigning), hold a status for id, and be current
 *	(thisUpdate not in the future beyond 5 minutes, nextUpdate not
 *	passed).  revparse_crl_load() reads a CRL in DER or PEM;
 *	revparse_crl() checks that crl is issuer's (same name, signature
 *	by its key), current, and whether it lists cert.
 *	*until is the answer's nextUpdate (0 when it has none).
 * OWNERSHIP
 *	Everything borrowed; revparse_crl_load() returns a new CRL
 *	(X509_CRL_free).
 * ERRORS
 *	revparse_ocsp() and revparse_crl() return REV_GOOD, REV_REVOKED
 *	(why says when and why), or REV_UNKNOWN with why saying what is
 *	wrong with the answer ("malformed OCSP response", "signature does
 *	not verify", "expired", ...), never a crash on any input.
 *	revparse_crl_load() returns NULL with why set.  The OpenSSL error
 *	queue is left empty.
 * THREADS
 *	Thread-safe.
 */
#include <stddef.h>
#include <time.h>

#include <openssl/ocsp.h>
#include <openssl/x509.h>

#include "revcheck_cache.h"

enum revstatus	 revparse_ocsp(const unsigned char *der, size_t len,
		    OCSP_CERTID *id, X509 *issuer, time_t *until,
		    char *why, size_t whylen);
X509_CRL	*revparse_crl_load(const unsigned char *buf, size_t len,
		    char *why, size_t whylen);
enum revstatus	 revparse_crl(X509_CRL *crl, X509 *cert, X509 *issuer,
		    time_t *until, char *why, size_t whylen);

#endif
