#ifndef KMILTER_KEYCLIENT_REVCHECK_H
#define KMILTER_KEYCLIENT_REVCHECK_H
/*
 * NAME
 *	revcheck - is a certificate revoked? (CRL and OCSP)
 * SUMMARY
 *	revcheck_new(), revcheck_free(), revcheck_cert(), revcheck_stats()
 * DESCRIPTION
 *	revcheck_cert() tells whether cert, issued by a certificate in
 *	chain or in the trust store, has been revoked by its CA.  It is
 *	asked before mail is encrypted to an outside certificate, when a
 *	signature is verified, and before a certificate is harvested.
 *
 *	With revocation.check = off (the default) every certificate is
 *	KM_OK.  Otherwise the sources are asked in this order until one
 *	tells: the configured CRL files (revocation.crl_files) of cert's
 *	issuer, the OCSP responders of its Authority Information Access,
 *	the CRLs of its distribution points (http:// only).  Responses
 *	must be signed by the issuer (or its delegated OCSP responder) and
 *	current.  A definite answer is kept until its nextUpdate
 *	(revocation.cache_ttl when it has none) in a bounded table
 *	(revocation.cache_entries).  A source that does not answer, or
 *	answers garbage, is logged once and not asked again for
 *	revocation.backoff_ms.  A self-signed certificate, or one that
 *	names no source while no CRL file is configured, is not revoked
 *	as far as anyone can tell: KM_OK.  The issuer is looked for in
 *	chain, then in trust.
 *	revcheck_stats() counts OCSP requests sent and CRLs read.
 * OWNERSHIP
 *	revcheck_new() copies what it needs from the configuration; free
 *	with revcheck_free(), which returns NULL.  revcheck_cert() borrows
 *	its arguments.
 * ERRORS
 *	KM_OK: not revoked, or its status could not be learned and the
 *	configuration says soft-fail (err then holds the reason, with
 *	KMERR_UNREACHABLE, for the caller to log); KM_PERMFAIL, KMERR_REFUSED:
 *	revoked (err says by whom and when); KM_TEMPFAIL: the status could
 *	not be learned and the configuration says hard-fail.
 * THREADS
 *	Thread-safe.
 */
#include <openssl/x509.h>

#include "kmerr.h"
#include "status.h"

struct kmilter_conf;
struct revcheck;

struct revcheck	*revcheck_new(const struct kmilter_conf *, struct kmerr *err);
struct revcheck	*revcheck_free(struct revcheck *);
enum km_status	 revcheck_cert(struct revcheck *, X509 *cert,
		    STACK_OF(X509) *chain, X509_STORE *trust,
		    struct kmerr *err);
void		 revcheck_stats(struct revcheck *, unsigned long *ocsp,
		    unsigned long *crl);

#endif
