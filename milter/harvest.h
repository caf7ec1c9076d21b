#ifndef KMILTER_MILTER_HARVEST_H
#define KMILTER_MILTER_HARVEST_H
/*
 * NAME
 *	harvest - keep the encryption certificates correspondents send in
 *	their verified signatures
 * SUMMARY
 *	harvest_signature(), harvest_store_keystore(), harvest_forget(),
 *	HARVEST_SET_MAX.
 * DESCRIPTION
 *	harvest_signature() is called by inbound.c for a signature that
 *	verified (signature, chain to a trust anchor with smimesign, signer
 *	address = the message's From; policy.inbound.harvest on).  An
 *	address in policy.internal_domains is never harvested (our own
 *	users' certificates come from the KM).  It chooses the candidates: the certificate the signature's
 *	SMIMEEncryptionKeyPreference names, when the set holds it; else
 *	every end-entity certificate of the set that names the address
 *	(a set of more than HARVEST_SET_MAX certificates is not looked
 *	into).  At most policy.inbound.harvest_max_per_message of them are
 *	kept, newest notBefore first.  Each candidate must pass, in order:
 *	keystore_cert_check() (valid now, emailProtection, a key CMS can
 *	encrypt to, names the address), a chain to the trust store built
 *	from the set (any purpose: an EC encryption certificate has no
 *	keyEncipherment), and revcheck_cert() (KM_TEMPFAIL, status unknown
 *	with hard-fail, is a refusal too).  A candidate that passes goes to
 *	store (keystore_harvest() in the milter; a fake in unit tests),
 *	oldest first, so the newest ends up current.
 *
 *	Logged: each certificate stored at info ("QID: harvest: stored
 *	ADDR sha256=FP generation N"), each refusal once at info with its
 *	reason ("QID: harvest: refused ADDR sha256=FP: why"), a KM error
 *	at warning ("QID: harvest: ADDR sha256=FP: not stored: why");
 *	the same certificate again only at debug level 1.  Nothing here
 *	changes the message's verdict.
 *
 *	Bounded cost: what the KM side answered for a certificate and
 *	address (already there, or refused by its rules) is remembered for
 *	10 minutes and not asked again (a correspondent whose imported
 *	certificate is kept does not cost a KM scan per message, and the
 *	refusal is logged once); after a KM failure (KM_TEMPFAIL) no
 *	certificate is written for 60 s, so a KM outage costs one timeout
 *	per minute, not one per signed message.  One KM write at a time
 *	per process: a harvest while another is being written is skipped
 *	(debug level 1), never waited for.  harvest_forget() clears the
 *	memory and the back-off (tests).
 * OWNERSHIP
 *	Everything borrowed.
 * ERRORS
 *	harvest_signature() returns how many certificates were stored; all
 *	else is logged.
 * THREADS
 *	Thread-safe when store is; store is called by one thread at a time.
 */
#include <openssl/x509_vfy.h>

#include "conf.h"
#include "kmerr.h"
#include "smime_verify.h"
#include "status.h"

#define HARVEST_SET_MAX	32

struct revcheck;
struct keymodel_harvest_rules;

typedef enum km_status (*harvest_store_fn)(void *arg, const char *addr,
    X509 *cert, const struct keymodel_harvest_rules *, int *generation,
    struct kmerr *err);

int		harvest_signature(const struct kmilter_conf *, X509_STORE *trust,
		    struct revcheck *, const char *qid, const char *addr,
		    const struct smime_signer_certs *, harvest_store_fn store,
		    void *arg);
void		harvest_forget(void);
/* store for harvest_signature(): arg is the struct keystore */
enum km_status	harvest_store_keystore(void *arg, const char *addr,
		    X509 *cert, const struct keymodel_harvest_rules *,
		    int *generation, struct kmerr *err);

#endif
