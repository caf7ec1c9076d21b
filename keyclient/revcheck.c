/*
 * revcheck.c - revocation status of certificates.  See revcheck.h.
 */
#include <stdlib.h>

#include "conf.h"
#include "revcheck.h"

struct revcheck {
	int	 enabled;
};

/* revcheck_new - the revocation settings of the configuration */
struct revcheck *
revcheck_new(const struct kmilter_conf *conf, struct kmerr *err)
{
	struct revcheck *rv;

	(void)conf;
	if ((rv = calloc(1, sizeof(*rv))) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return NULL;
	}
	return rv;
}

/* revcheck_free - free the handle */
struct revcheck *
revcheck_free(struct revcheck *rv)
{
	free(rv);
	return NULL;
}

/* revcheck_cert - KM_OK unless cert is known to be revoked */
enum km_status
revcheck_cert(struct revcheck *rv, X509 *cert, STACK_OF(X509) *chain,
    X509_STORE *trust, struct kmerr *err)
{
	(void)rv;
	(void)cert;
	(void)chain;
	(void)trust;
	kmerr_clear(err);
	return KM_OK;
}
