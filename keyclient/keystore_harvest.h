#ifndef KMILTER_KEYCLIENT_KEYSTORE_HARVEST_H
#define KMILTER_KEYCLIENT_KEYSTORE_HARVEST_H
/*
 * NAME
 *	keystore_harvest - store a harvested certificate through the key
 *	store: KM write, then cache invalidation on every gateway
 * SUMMARY
 *	keystore_harvest()
 * DESCRIPTION
 *	keystore_harvest() first asks the key store for addr's current
 *	certificate (usually an L1 or L2 hit): when it is the same
 *	certificate, nothing else is done (KMERR_EXISTS), so a
 *	correspondent's every signed message costs no KM work.  Otherwise
 *	keymodel_harvest_cert() decides and writes (keymodel_harvest.h),
 *	and a stored certificate is followed by keystore_invalidate(addr),
 *	which publishes the invalidation to the other gateways.
 * OWNERSHIP
 *	Everything borrowed.
 * ERRORS
 *	As keymodel_harvest_cert(); KM_PERMFAIL, KMERR_REFUSED "no KM
 *	configured" when the key store has no KM (a refusal like the
 *	others: logged once, not a failure).
 * THREADS
 *	Thread-safe as keystore.h; two harvests of one address at once may
 *	both add a generation (keymodel_harvest.h).
 */
#include <openssl/x509.h>

#include "kmerr.h"
#include "status.h"

struct keystore;
struct keymodel_harvest_rules;

enum km_status	 keystore_harvest(struct keystore *, const char *addr,
		    X509 *cert, const struct keymodel_harvest_rules *,
		    int *generation, struct kmerr *err);

#endif
