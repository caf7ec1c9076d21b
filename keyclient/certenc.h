#ifndef KMILTER_KEYCLIENT_CERTENC_H
#define KMILTER_KEYCLIENT_CERTENC_H
/*
 * NAME
 *	certenc - can a message be encrypted to this certificate?
 * SUMMARY
 *	certenc_check(), certenc_names(), certenc_chain()
 * DESCRIPTION
 *	certenc_check() says whether CMS can encrypt to the certificate's
 *	public key as kmilter encrypts (smime_encrypt): an RSA key whose
 *	keyUsage, when present, allows keyEncipherment (key transport), or
 *	an EC key whose keyUsage, when present, allows keyAgreement (ECDH).
 *	Any other key (DSA, Ed25519, X25519, RSA-PSS, ...) cannot receive
 *	mail, whatever its keyUsage claims.  A last check asks OpenSSL to
 *	set up a RecipientInfo for the key, so what passes here never fails
 *	later at encryption for the kind of key.  Used where a certificate
 *	comes in (kmctl import) and where one is used (keystore_get_cert:
 *	a failure is "no usable certificate", never a temporary error).
 *
 *	certenc_names() says whether the certificate names addr in its
 *	SAN (rfc822Name) or subject (emailAddress), compared the way mail
 *	clients match certificates: the whole address case-insensitively
 *	(RFC 5321 lets the local part's case matter, but no client matches
 *	certificates that way, and the KM lookups fold it too).
 *
 *	certenc_chain() says whether an outside certificate verifies to a
 *	trust store (harvest, SMIMEA usage 1), the certificates of untrusted
 *	(may be NULL) serving as intermediates, for purpose (an
 *	X509_PURPOSE_* value; 0: any).
 * OWNERSHIP
 *	Everything borrowed.
 * ERRORS
 *	certenc_check(): KM_OK; KM_PERMFAIL with reason KMERR_REFUSED and
 *	a message naming the key type and what it lacks; KM_NOMEM.
 *	certenc_chain(): KM_OK; KM_PERMFAIL, KMERR_REFUSED with OpenSSL's
 *	reason as the message; KM_NOMEM.  The OpenSSL error queue is left
 *	empty.
 * THREADS
 *	Thread-safe.
 */
#include <stddef.h>

#include <openssl/x509.h>

#include "kmerr.h"

enum km_status	 certenc_check(X509 *cert, struct kmerr *err);
int		 certenc_names(X509 *cert, const char *addr);
enum km_status	 certenc_chain(X509 *cert, STACK_OF(X509) *untrusted,
		    X509_STORE *trust, int purpose, struct kmerr *err);

#endif
