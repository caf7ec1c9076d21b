/*
 * keystore_harvest.c - store a harvested certificate and invalidate the
 * caches (see keystore_harvest.h).
 */
#include "keymodel.h"
#include "keymodel_harvest.h"
#include "keystore.h"
#include "keystore_harvest.h"
#include "keystore_int.h"

/* same_as_current - is cert addr's current certificate already? */
static int
same_as_current(struct keystore *ks, const char *addr, X509 *cert)
{
	X509 *cur = NULL;
	struct kmerr e;
	int same;

	if (keystore_get_cert(ks, addr, &cur, &e) != KM_OK)
		return 0;
	same = X509_cmp(cur, cert) == 0;
	X509_free(cur);
	return same;
}

/* keystore_harvest - KM write of a harvested certificate, then invalidate */
enum km_status
keystore_harvest(struct keystore *ks, const char *addr, X509 *cert,
    const struct keymodel_harvest_rules *r, int *generation,
    struct kmerr *err)
{
	enum km_status st;

	if (ks->km == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "no KM configured");
	if (same_as_current(ks, addr, cert))
		return kmerr_set(err, KM_PERMFAIL, KMERR_EXISTS,
		    "already the current certificate of %s", addr);
	if ((st = keymodel_harvest_cert(ks->km, addr, cert, r, generation,
	    err)) == KM_OK)
		keystore_invalidate(ks, addr);
	return st;
}
