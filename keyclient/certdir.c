/*
 * certdir.c - ask the configured directories for a certificate.  See
 * certdir.h.
 */
#include <stdlib.h>

#include "certdir.h"
#include "conf.h"

struct certdir {
	int	 nsources;	/* directories configured */
};

/* certdir_new - the directories of the configuration */
struct certdir *
certdir_new(const struct kmilter_conf *conf, struct kmerr *err)
{
	struct certdir *cd;

	(void)conf;
	if ((cd = calloc(1, sizeof(*cd))) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return NULL;
	}
	return cd;
}

/* certdir_free - free the handle */
struct certdir *
certdir_free(struct certdir *cd)
{
	free(cd);
	return NULL;
}

/* certdir_configured - whether any directory is configured */
int
certdir_configured(const struct certdir *cd)
{
	return cd != NULL && cd->nsources > 0;
}

/* certdir_lookup - addr's certificate from the first directory that has one */
enum km_status
certdir_lookup(struct certdir *cd, const char *addr, X509 **cert,
    struct kmerr *err)
{
	(void)cd;
	*cert = NULL;
	return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
	    "no directory has a certificate for %s", addr);
}
