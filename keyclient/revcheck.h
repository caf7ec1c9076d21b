#ifndef KMILTER_KEYCLIENT_REVCHECK_H
#define KMILTER_KEYCLIENT_REVCHECK_H
/*
 * NAME
 *	revcheck - is a certificate revoked? (CRL and OCSP)
 * SUMMARY
 *	revcheck_new(), revcheck_free(), revcheck_cert()
 * DESCRIPTION
 *	revcheck_cert() tells whether cert, issued by a certificate in
 *	chain or in the trust store, has been revoked by its CA.  It is
 *	asked before mail is encrypted to an outside certificate, when a
 *	signature is verified, and before a certificate is harvested.
 *
 *	With revocation checking off (the default of this first version),
 *	every certificate is KM_OK.
 * OWNERSHIP
 *	revcheck_new() copies what it needs from the configuration; free
 *	with revcheck_free(), which returns NULL.  revcheck_cert() borrows
 *	its arguments.
 * ERRORS
 *	KM_OK: not revoked, or its status could not be learned and the
 *	configuration says soft-fail (logged); KM_PERMFAIL, KMERR_REFUSED:
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

#endif
