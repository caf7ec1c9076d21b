#ifndef KMILTER_MILTER_RUNTIME_H
#define KMILTER_MILTER_RUNTIME_H
/*
 * NAME
 *	runtime - the long-lived objects every message uses: key store,
 *	trust store and revocation checker
 * SUMMARY
 *	runtime_init(), runtime_reload_trust(), runtime_keystore(),
 *	runtime_trust(), runtime_revcheck(), runtime_free()
 * DESCRIPTION
 *	runtime_init() is called at start-up, before privileges are
 *	dropped: it makes the key store (keyclient: caches and the KM) and
 *	the trust store for signature verification (the organization CA,
 *	km.org_ca_cert, and policy.inbound.ca_file).  A reload rebuilds the
 *	trust store (and the org CA chain, orgchain.h); the key store's
 *	servers change only at restart.
 * OWNERSHIP
 *	runtime_keystore() and runtime_revcheck() are borrowed for the life
 *	of the process.
 *	runtime_trust() returns a new reference: X509_STORE_free() it.
 * ERRORS
 *	runtime_init() and runtime_reload_trust() return -1 and fill err
 *	(a CA file that does not load: KM_PERMFAIL, KMERR_BADINPUT; the key
 *	store's own errors otherwise).
 * THREADS
 *	Thread-safe after runtime_init().
 */
#include <stddef.h>

#include <openssl/x509_vfy.h>

#include "conf.h"
#include "kmerr.h"

struct keystore;
struct revcheck;

int		 runtime_init(const struct kmilter_conf *, struct kmerr *err);
int		 runtime_reload_trust(const struct kmilter_conf *, struct kmerr *err);
struct keystore	*runtime_keystore(void);
X509_STORE	*runtime_trust(void);
struct revcheck	*runtime_revcheck(void);
void		 runtime_free(void);

#endif
