#ifndef KMILTER_KEYCLIENT_CERTDIR_H
#define KMILTER_KEYCLIENT_CERTDIR_H
/*
 * NAME
 *	certdir - certificates the KM does not have, from directories
 * SUMMARY
 *	certdir_new(), certdir_free(), certdir_configured(),
 *	certdir_lookup()
 * DESCRIPTION
 *	The key store asks certdir_lookup() when the KM has no certificate
 *	for an address.  The directories are asked in the order of the
 *	configuration: the LDAP directories configured for the address's
 *	domain, then DNS SMIMEA records (RFC 8162).  The first certificate
 *	found that mail can be encrypted to (certenc_check()) and that is
 *	for the address is the answer.
 *
 *	With no directory configured, every lookup is KM_PERMFAIL,
 *	KMERR_NOTFOUND, at no cost.
 * OWNERSHIP
 *	certdir_new() copies what it needs from the configuration; free
 *	with certdir_free(), which returns NULL.  certdir_lookup(): *cert
 *	is a new reference (X509_free()).
 * ERRORS
 *	KM_OK with *cert; KM_PERMFAIL, KMERR_NOTFOUND: every directory that
 *	was asked answered and none has a usable certificate (the key store
 *	caches this as a negative answer); KM_TEMPFAIL: a directory that
 *	might have one did not answer (or is in its back-off period): the
 *	key store treats the address as having no certificate for this
 *	message and caches nothing.  err says which directory and why.
 * THREADS
 *	Thread-safe: any number of threads may look up at once.
 */
#include <openssl/x509.h>

#include "kmerr.h"
#include "status.h"

struct kmilter_conf;
struct certdir;

struct certdir	*certdir_new(const struct kmilter_conf *, struct kmerr *err);
struct certdir	*certdir_free(struct certdir *);
int		 certdir_configured(const struct certdir *);
enum km_status	 certdir_lookup(struct certdir *, const char *addr,
		    X509 **cert, struct kmerr *err);

#endif
