#ifndef KMILTER_KEYCLIENT_LDAPDIR_H
#define KMILTER_KEYCLIENT_LDAPDIR_H
/*
 * NAME
 *	ldapdir - certificates of an address from LDAP directories
 * SUMMARY
 *	ldapdir_new(), ldapdir_free(), ldapdir_count(), ldapdir_lookup(),
 *	ldapdir_escape(), ldapdir_parse_value(), ldapdir_pick()
 * DESCRIPTION
 *	ldapdir_lookup() asks the directories of directory.ldap whose
 *	domains cover the address's domain, in the order of the
 *	configuration, for the entries (mail=ADDR) and their attributes
 *	userSMIMECertificate (a PKCS#7 certs-only SignedData, or one DER
 *	certificate as some directories store it) and userCertificate;binary
 *	(DER).  Of the certificates found, the usable ones compete
 *	(keystore_cert_check(), the test the key store applies to every
 *	certificate it hands out: valid now, emailProtection, a key mail
 *	can be encrypted to, naming the address) and the newest notBefore
 *	wins.  A value that is not a certificate, or a certificate that is
 *	not usable, is logged (one line each, with the reason) and skipped;
 *	at most 64 values and 32 certificates are looked at per lookup.
 *
 *	Each lookup opens its own connection (ldap:// with optional
 *	StartTLS, or ldaps://; the server's certificate checked against
 *	ca_file), binds (simple, or anonymously) and searches with a size
 *	limit, all of it within timeout_ms.  A directory that does not
 *	answer is left alone for directory.backoff_ms: its lookups in that
 *	period are KM_TEMPFAIL at once, so a dead directory costs one
 *	timeout per period (the first lookup after the period is the only
 *	one that tries it).
 *
 *	ldapdir_escape() writes an assertion value for a search filter
 *	(RFC 4515 3: NUL, '(', ')', '*', '\' as \XX); ldapdir_parse_value()
 *	appends the certificates of one attribute value to a stack;
 *	ldapdir_pick() chooses among them.  Exposed for the unit tests.
 * OWNERSHIP
 *	ldapdir_new() copies what it needs from the configuration (the bind
 *	passwords are read then and wiped at ldapdir_free(), which returns
 *	NULL).  ldapdir_lookup(), ldapdir_pick(): *cert is a new reference.
 * ERRORS
 *	ldapdir_new(): NULL with err (a password file that cannot be read,
 *	a bad uri, no memory).  ldapdir_lookup(): KM_OK with *cert;
 *	KM_PERMFAIL, KMERR_NOTFOUND: no directory covers the domain, or
 *	every one that does answered without a usable certificate;
 *	KM_TEMPFAIL: one that might have had one did not answer (err says
 *	which and why); KM_NOMEM.  ldapdir_escape(): -1 when out is too
 *	small.  ldapdir_parse_value(): the number of certificates added, -1
 *	for a value that is neither a certificate nor a certs-only PKCS#7.
 * THREADS
 *	Thread-safe: a connection per lookup; the back-off state of each
 *	directory is under a mutex.
 */
#include <stddef.h>

#include <openssl/x509.h>

#include "kmerr.h"
#include "status.h"

struct kmilter_conf;
struct ldapdir;

struct ldapdir	*ldapdir_new(const struct kmilter_conf *,
		    struct kmerr *err);
struct ldapdir	*ldapdir_free(struct ldapdir *);
int		 ldapdir_count(const struct ldapdir *);
enum km_status	 ldapdir_lookup(struct ldapdir *, const char *addr,
		    X509 **cert, struct kmerr *err);

int		 ldapdir_escape(const char *in, char *out, size_t outlen);
int		 ldapdir_parse_value(const unsigned char *val, size_t len,
		    STACK_OF(X509) *out);
enum km_status	 ldapdir_pick(STACK_OF(X509) *certs, const char *addr,
		    const char *where, X509 **cert);

#endif
