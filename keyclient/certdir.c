/*
 * certdir.c - ask the configured directories for a certificate.  See
 * certdir.h.
 */
#include <stdlib.h>

#include "certdir.h"
#include "conf.h"
#include "ldapdir.h"

struct certdir {
	int		 nsources;	/* directories configured */
	struct ldapdir	*ldap;		/* directory.ldap */
};

/* certdir_new - the directories of the configuration */
struct certdir *
certdir_new(const struct kmilter_conf *conf, struct kmerr *err)
{
	struct certdir *cd;

	if ((cd = calloc(1, sizeof(*cd))) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return NULL;
	}
	if ((cd->ldap = ldapdir_new(conf, err)) == NULL)
		return certdir_free(cd);
	cd->nsources += ldapdir_count(cd->ldap);
	return cd;
}

/* certdir_free - free the handle */
struct certdir *
certdir_free(struct certdir *cd)
{
	if (cd == NULL)
		return NULL;
	ldapdir_free(cd->ldap);
	free(cd);
	return NULL;
}

/* certdir_configured - whether any directory is configured */
int
certdir_configured(const struct certdir *cd)
{
	return cd != NULL && cd->nsources > 0;
}

/* certdir_lookup - addr's certificate from the first directory that has
 * one: LDAP first.  A directory that did not answer makes the whole
 * answer KM_TEMPFAIL unless a later one has a certificate. */
enum km_status
certdir_lookup(struct certdir *cd, const char *addr, X509 **cert,
    struct kmerr *err)
{
	enum km_status st;

	*cert = NULL;
	if (cd == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no directory has a certificate for %s", addr);
	st = ldapdir_lookup(cd->ldap, addr, cert, err);
	return st;
}
