#ifndef KMILTER_MILTER_RUNTIME_H
#define KMILTER_MILTER_RUNTIME_H
/*
 * NAME
 *	runtime - the long-lived objects every message uses: key store,
 *	trust store and revocation checker
 * SUMMARY
 *	runtime_init(), runtime_reload_trust(),
 *	runtime_reload(), runtime_pin(), runtime_unpin(), runtime_keystore(),
 *	runtime_trust(),
 *	runtime_revcheck(), runtime_free()
 * DESCRIPTION
 *	runtime_init() is called at start-up, before privileges are
 *	dropped: it makes the key store (keyclient: caches and the KM) and
 *	the trust store for signature verification (the organization CA,
 *	km.org_ca_cert, and policy.inbound.ca_file), and fetches the
 *	algorithms every message uses (algs.h).  A reload rebuilds the
 *	trust store (and the org CA chain, orgchain.h), and runtime_reload()
 *	builds a key store (km, cache, hook groups), a revocation checker
 *	(revocation group) or both from the new configuration beside the
 *	running ones and swaps them in: both are built before either is
 *	swapped in, and one that cannot be built leaves both running ones.
 *
 *	The key store and the revocation checker are reference counted:
 *	runtime_pin() holds the current ones for the calling thread (one
 *	callback's work on a message) until runtime_unpin();
 *	runtime_keystore() and runtime_revcheck() return the pinned one,
 *	else the current one.  One replaced by a reload is freed when the
 *	last thread that pinned it unpins.  Pins nest (counted per thread).
 * OWNERSHIP
 *	runtime_keystore() is borrowed: between runtime_pin() and
 *	runtime_unpin() in the same thread; without a pin, until the next
 *	reload (start-up and tests only); the same for runtime_revcheck().
 *	runtime_trust() returns a new reference: X509_STORE_free() it.
 * ERRORS
 *	runtime_init(), runtime_reload_trust() and runtime_reload() return -1 and fill err
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
int		 runtime_reload(const struct kmilter_conf *, int keystore, int revcheck,
		    struct kmerr *err);
void		 runtime_pin(void);
void		 runtime_unpin(void);
struct keystore	*runtime_keystore(void);
X509_STORE	*runtime_trust(void);
struct revcheck	*runtime_revcheck(void);
void		 runtime_free(void);

#endif
