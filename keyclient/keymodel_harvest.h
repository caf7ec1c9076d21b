#ifndef KMILTER_KEYCLIENT_KEYMODEL_HARVEST_H
#define KMILTER_KEYCLIENT_KEYMODEL_HARVEST_H
/*
 * NAME
 *	keymodel_harvest - store an outside correspondent's certificate
 *	taken from a verified signature, as a harvested generation
 * SUMMARY
 *	keymodel_harvest_decide() (pure), keymodel_harvest_cert() (KM).
 * DESCRIPTION
 *	The caller (milter/harvest.c) has checked the certificate itself:
 *	it names the address, chains to a trust anchor, is valid now, is
 *	not revoked and can be encrypted to; the first and the last are
 *	checked here again (refused: KMERR_REFUSED), so nothing stored for
 *	an address ever names another.  What is decided here depends on
 *	what the KM already holds for the address:
 *	  - the same certificate (SHA-256) in any generation: nothing to do
 *	    (KMERR_EXISTS); in a Compromised generation: refused;
 *	  - an address with a key pair of its own in the KM (an internal
 *	    user): refused, never touched;
 *	  - a current (Active) generation an administrator imported: refused
 *	    unless rules->replace_imported;
 *	  - a certificate not newer (notBefore) than the current one:
 *	    refused (an older certificate never replaces a newer one);
 *	  - rules->max_per_address harvested generations that are not
 *	    Compromised already: refused (an attacker with a trusted
 *	    certificate for the address can make us store that many at
 *	    most; kmctl revoke makes room);
 *	  - else a new generation, certificate only, Object Group
 *	    "kmilter:gen:N:harvested", on both servers, installed as
 *	    kmctl import installs one: the older Active generation becomes
 *	    Deactivated and is kept.
 * OWNERSHIP
 *	Everything borrowed.
 * ERRORS
 *	KM_OK: stored, *generation is the new generation.  KM_PERMFAIL with
 *	reason KMERR_EXISTS: the same certificate is there (nothing done);
 *	KMERR_REFUSED: refused by a rule above (err says which).  KM_PROTO
 *	(malformed address), KM_TEMPFAIL (a KM server did not answer),
 *	KM_NOMEM, KM_PERMFAIL (a server refused an operation).
 * THREADS
 *	keymodel_harvest_decide() is thread-safe.  keymodel_harvest_cert()
 *	is an administration session (keymodel_admin.h): two writers for
 *	one address at once may both add a generation.
 */
#include <stddef.h>
#include <time.h>

#include <openssl/x509.h>

#include "kmerr.h"
#include "status.h"

struct keymodel;

struct keymodel_harvest_rules {
	int	 replace_imported;	/* may replace an imported current one */
	int	 max_per_address;	/* harvested generations kept, >= 1 */
};

/* What the decision looks at, per generation, newest first. */
struct keymodel_harvest_gen {
	int	 generation;
	int	 state;			/* enum kmip_state */
	int	 has_key;		/* shares exist: the address's own pair */
	int	 harvested;
	char	 sha256[96];		/* keymodel_cert_fingerprint(), or "" */
	time_t	 not_before;
};

enum km_status	 keymodel_harvest_decide(const struct keymodel_harvest_gen *,
		    size_t n, const char *addr, const char *sha256,
		    time_t not_before, const struct keymodel_harvest_rules *,
		    struct kmerr *err);
enum km_status	 keymodel_harvest_cert(struct keymodel *, const char *addr,
		    X509 *cert, const struct keymodel_harvest_rules *,
		    int *generation, struct kmerr *err);

#endif
