/*
 * certdir.c - ask the configured directories for a certificate.  See
 * certdir.h.
 */
#include <stdlib.h>
#include <string.h>

#include "certdir.h"
#include "conf.h"
#include "ldapdir.h"
#include "smimea.h"

struct certdir {
	int		 nsources;	/* directories configured */
	struct ldapdir	*ldap;		/* directory.ldap */
	struct smimea	*smimea;	/* directory.smimea; NULL: off */
};

/* smimea_source - DNS SMIMEA as a source, when enabled */
static int
smimea_source(struct certdir *cd, const struct kmilter_conf *conf,
    struct kmerr *err)
{
	struct smimea_opts o;

	if (!conf->smimea_enabled)
		return 0;
	memset(&o, 0, sizeof(o));
	o.resolver = conf->smimea_resolver;
	o.stub = conf->smimea_stub;
	o.trust_anchor_file = conf->smimea_trust_anchor_file;
	o.pkix_ca_file = conf->in_ca_file;	/* usage 1 (PKIX-EE) */
	o.timeout_ms = conf->smimea_timeout_ms;
	o.backoff_ms = conf->dir_backoff_ms;	/* shared with LDAP */
	o.domains = conf->smimea_domains;
	o.ndomains = conf->n_smimea_domains;
	if ((cd->smimea = smimea_new(&o, err)) == NULL)
		return -1;
	cd->nsources++;
	return 0;
}

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
	if (smimea_source(cd, conf, err) != 0)
		return certdir_free(cd);
	return cd;
}

/* certdir_free - free the handle */
struct certdir *
certdir_free(struct certdir *cd)
{
	if (cd == NULL)
		return NULL;
	ldapdir_free(cd->ldap);
	smimea_free(cd->smimea);
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
 * one: LDAP first, then DNS SMIMEA.  A directory that did not answer
 * makes the whole answer KM_TEMPFAIL unless a later one has a
 * certificate. */
enum km_status
certdir_lookup(struct certdir *cd, const char *addr, X509 **cert,
    struct kmerr *err)
{
	enum km_status st, dst;
	struct kmerr derr;

	*cert = NULL;
	if (cd == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no directory has a certificate for %s", addr);
	st = ldapdir_lookup(cd->ldap, addr, cert, err);
	if (st == KM_OK || st == KM_NOMEM || cd->smimea == NULL ||
	    !smimea_wants(cd->smimea, addr))
		return st;
	kmerr_clear(&derr);
	dst = smimea_lookup(cd->smimea, addr, cert, &derr);
	/* LDAP's "did not answer" stands unless SMIMEA found one */
	if (dst == KM_OK || dst == KM_NOMEM || st != KM_TEMPFAIL) {
		*err = derr;
		return dst;
	}
	return st;
}
