/*
 * keymodel_harvest.c - store an outside correspondent's certificate taken
 * from a verified signature (see keymodel_harvest.h).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "certenc.h"
#include "keymodel.h"
#include "keymodel_cert.h"
#include "keymodel_harvest.h"
#include "keymodel_int.h"
#include "kmip.h"
#include "secmem.h"

/* gone - a state whose generation no longer counts */
static int
gone(int state)
{
	return state == KMIP_STATE_COMPROMISED ||
	    state == KMIP_STATE_DESTROYED ||
	    state == KMIP_STATE_DESTROYED_COMPROMISED;
}

/* keymodel_harvest_decide - may a new certificate be stored for addr? */
enum km_status
keymodel_harvest_decide(const struct keymodel_harvest_gen *v, size_t n,
    const char *addr, const char *sha256, time_t nb,
    const struct keymodel_harvest_rules *r, struct kmerr *err)
{
	const struct keymodel_harvest_gen *cur = NULL;
	int kept = 0;
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(v[i].sha256, sha256) == 0)
			return gone(v[i].state) ?
			    kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
			    "the same certificate is generation %d of %s, "
			    "revoked in the KM", v[i].generation, addr) :
			    kmerr_set(err, KM_PERMFAIL, KMERR_EXISTS,
			    "already generation %d of %s", v[i].generation,
			    addr);
	for (i = 0; i < n; i++) {
		if (v[i].has_key)
			return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
			    "%s has a key pair of its own in the KM "
			    "(generation %d)", addr, v[i].generation);
		if (cur == NULL && v[i].state == KMIP_STATE_ACTIVE &&
		    v[i].sha256[0] != '\0')
			cur = &v[i];
		if (v[i].harvested && !gone(v[i].state))
			kept++;
	}
	if (cur != NULL && !cur->harvested && !r->replace_imported)
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "an administrator imported the current certificate of %s "
		    "(generation %d) and harvest_replace_imported is off",
		    addr, cur->generation);
	if (cur != NULL && nb <= cur->not_before)
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "not newer than the current certificate of %s "
		    "(generation %d)", addr, cur->generation);
	if (kept >= r->max_per_address)
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "%s has %d harvested certificates already "
		    "(harvest_max_per_address %d): kmctl revoke makes room",
		    addr, kept, r->max_per_address);
	return KM_OK;
}

/* describe - what decide needs of each generation of an admin session;
 * fetches each generation's certificate */
static enum km_status
describe(struct admin *a, struct keymodel_harvest_gen *v, struct kmerr *err)
{
	enum km_status st;
	size_t i;

	for (i = 0; i < a->nrecs; i++) {
		struct genrec *r = &a->recs[i];
		int srv = r->ncert[0] > 0 ? 0 : 1;
		X509 *x;

		v[i].generation = r->gen;
		v[i].state = r->state;
		v[i].has_key = r->nshare[0] + r->nshare[1] > 0;
		v[i].harvested = r->harvested;
		if (r->ncert[srv] == 0)
			continue;
		if ((st = keymodel_fetch_cert(a->c[srv], r->cert[srv]->uid,
		    &x, err)) != KM_OK)
			return st;
		if (x != NULL) {
			keymodel_cert_fingerprint(x, v[i].sha256,
			    sizeof(v[i].sha256));
			v[i].not_before = keymodel_cert_time(
			    X509_get0_notBefore(x));
			X509_free(x);
		}
	}
	return KM_OK;
}

/* keymodel_harvest_cert - decide, then install a harvested generation */
enum km_status
keymodel_harvest_cert(struct keymodel *km, const char *addr, X509 *cert,
    const struct keymodel_harvest_rules *r, int *generation,
    struct kmerr *err)
{
	struct keymodel_harvest_gen *v = NULL;
	struct admin a;
	char fp[96];
	enum km_status st;
	int gen;

	if ((st = keymodel_admin_open(&a, km, addr, err)) != KM_OK)
		return st;
	if (a.nrecs > 0 && (v = calloc(a.nrecs, sizeof(*v))) == NULL) {
		st = kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		goto out;
	}
	keymodel_cert_fingerprint(cert, fp, sizeof(fp));
	/* the caller checked it; what is stored for addr names addr, always */
	if (!certenc_names(cert, a.norm)) {
		st = kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "the certificate is not issued to %s", a.norm);
		goto out;
	}
	if ((st = certenc_check(cert, err)) != KM_OK ||
	    (st = describe(&a, v, err)) != KM_OK ||
	    (st = keymodel_harvest_decide(v, a.nrecs, a.norm, fp,
	    keymodel_cert_time(X509_get0_notBefore(cert)), r, err)) != KM_OK)
		goto out;
	gen = keymodel_admin_next_gen(&a);
	if ((st = keymodel_admin_install(&a, gen, cert, NULL, 0, 0, 1,
	    err)) == KM_OK && generation != NULL)
		*generation = gen;
out:
	free(v);
	keymodel_admin_close(&a);
	return st;
}
