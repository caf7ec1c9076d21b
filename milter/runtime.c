/*
 * runtime.c - key store, trust store and revocation checker shared by all
 * messages (see runtime.h).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include "algs.h"
#include "keystore.h"
#include "orgchain.h"
#include "revcheck.h"
#include "runtime.h"

/*
 * An object every message uses (the key store, the revocation checker)
 * with the messages that use it: freed by the last one out.  A reload
 * puts a new one in the slot; threads that pinned the old one keep it.
 */
struct ref {
	void		*obj;
	void		(*dtor)(void *);
	int		 refs;		/* the slot's own + one per pin */
};

enum { SLOT_KS, SLOT_RC, NSLOTS };

static struct ref *current[NSLOTS];
static pthread_mutex_t ref_mtx = PTHREAD_MUTEX_INITIALIZER;
static __thread struct ref *pinned[NSLOTS];
static __thread int pin_depth;
static X509_STORE *trust;
static pthread_mutex_t trust_mtx = PTHREAD_MUTEX_INITIALIZER;

/* load_trust - a store with the org CA and the configured CA bundle */
static X509_STORE *
load_trust(const struct kmilter_conf *c, struct kmerr *err)
{
	X509_STORE *st = X509_STORE_new();
	const char *files[] = { c->org_ca_cert, c->in_ca_file };

	if (st == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE,
		    "trust store: out of memory");
		return NULL;
	}
	for (size_t i = 0; i < 2; i++) {
		if (*files[i] == '\0')
			continue;
		if (X509_STORE_load_file(st, files[i]) != 1) {
			kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
			    "%s: cannot load CA certificates from %s", i == 0 ? "km.org_ca_cert" : "policy.inbound.ca_file", files[i]);
			ERR_clear_error();
			X509_STORE_free(st);
			return NULL;
		}
	}
	return st;
}

/* ks_dtor, rc_dtor - free a key store, a revocation checker */
static void
ks_dtor(void *p)
{
	keystore_free(p);
}

static void
rc_dtor(void *p)
{
	revcheck_free(p);
}

/* ref_new - obj (NULL: err says why) with the slot's reference */
static struct ref *
ref_new(void *obj, void (*dtor)(void *), struct kmerr *err)
{
	struct ref *r;

	if (obj == NULL)
		return NULL;
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		dtor(obj);
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "runtime: out of memory");
		return NULL;
	}
	r->obj = obj;
	r->dtor = dtor;
	r->refs = 1;
	return r;
}

/* ref_drop - one reference less; the last frees the object */
static void
ref_drop(struct ref *r)
{
	int last;

	if (r == NULL)
		return;
	pthread_mutex_lock(&ref_mtx);
	last = --r->refs == 0;
	pthread_mutex_unlock(&ref_mtx);
	if (last) {
		r->dtor(r->obj);
		free(r);
	}
}

/* ref_swap - r goes in slot; the slot's reference to the old one is dropped */
static void
ref_swap(int slot, struct ref *r)
{
	struct ref *old;

	pthread_mutex_lock(&ref_mtx);
	old = current[slot];
	current[slot] = r;
	pthread_mutex_unlock(&ref_mtx);
	ref_drop(old);		/* freed now, or by the last message using it */
}

/* ref_get - the pinned object of slot, else the current one */
static void *
ref_get(int slot)
{
	void *obj;

	if (pinned[slot] != NULL)
		return pinned[slot]->obj;
	pthread_mutex_lock(&ref_mtx);
	obj = current[slot] != NULL ? current[slot]->obj : NULL;
	pthread_mutex_unlock(&ref_mtx);
	return obj;
}

/* runtime_init - make the key store and the trust store */
int
runtime_init(const struct kmilter_conf *c, struct kmerr *err)
{
	/* every algorithm fetched now, not by the first messages (a missing
	 * one is logged; its uses fail as they would have) */
	(void)algs_init();
	if ((trust = load_trust(c, err)) == NULL)
		return -1;
	if (orgchain_load(c, err) != 0)
		return -1;
	if ((current[SLOT_KS] = ref_new(keystore_new(c, err), ks_dtor, err)) == NULL)
		return -1;
	if ((current[SLOT_RC] = ref_new(revcheck_new(c, err), rc_dtor, err)) == NULL)
		return -1;
	return 0;
}

/* runtime_reload_trust - rebuild the trust store from a new configuration */
int
runtime_reload_trust(const struct kmilter_conf *c, struct kmerr *err)
{
	X509_STORE *st = load_trust(c, err), *old;

	if (st == NULL)
		return -1;
	if (orgchain_load(c, err) != 0) {
		X509_STORE_free(st);
		return -1;
	}
	pthread_mutex_lock(&trust_mtx);
	old = trust;
	trust = st;
	pthread_mutex_unlock(&trust_mtx);
	X509_STORE_free(old);
	return 0;
}

/*
 * runtime_reload - what a new configuration changed, built beside the
 * running ones: the key store if keystore, the revocation checker if
 * revcheck.  Both are built before either is swapped in: one that cannot
 * be built leaves both running ones in place.
 */
int
runtime_reload(const struct kmilter_conf *c, int keystore, int revcheck,
    struct kmerr *err)
{
	struct ref *ks = NULL, *rc = NULL;

	if (keystore && (ks = ref_new(keystore_new(c, err), ks_dtor, err)) == NULL)
		return -1;
	if (revcheck && (rc = ref_new(revcheck_new(c, err), rc_dtor, err)) == NULL) {
		ref_drop(ks);
		return -1;
	}
	if (ks != NULL)
		ref_swap(SLOT_KS, ks);
	if (rc != NULL)
		ref_swap(SLOT_RC, rc);
	return 0;
}

/* runtime_pin - this thread's key store and revocation checker stay until runtime_unpin */
void
runtime_pin(void)
{
	if (pin_depth++ > 0)
		return;
	pthread_mutex_lock(&ref_mtx);
	for (int i = 0; i < NSLOTS; i++)
		if ((pinned[i] = current[i]) != NULL)
			pinned[i]->refs++;
	pthread_mutex_unlock(&ref_mtx);
}

/* runtime_unpin - release what runtime_pin took */
void
runtime_unpin(void)
{
	if (pin_depth == 0 || --pin_depth > 0)
		return;
	for (int i = 0; i < NSLOTS; i++) {
		struct ref *r = pinned[i];

		pinned[i] = NULL;
		ref_drop(r);
	}
}

/* runtime_keystore - the pinned key store, else the current one */
struct keystore *
runtime_keystore(void)
{
	return ref_get(SLOT_KS);
}

/* runtime_revcheck - the pinned revocation checker, else the current one */
struct revcheck *
runtime_revcheck(void)
{
	return ref_get(SLOT_RC);
}

/* runtime_trust - a reference to the current trust store */
X509_STORE *
runtime_trust(void)
{
	X509_STORE *st;

	pthread_mutex_lock(&trust_mtx);
	st = trust;
	if (st != NULL)
		X509_STORE_up_ref(st);
	pthread_mutex_unlock(&trust_mtx);
	return st;
}

/* runtime_free - release everything at exit */
void
runtime_free(void)
{
	ref_swap(SLOT_KS, NULL);
	ref_swap(SLOT_RC, NULL);
	X509_STORE_free(trust);
	trust = NULL;
	orgchain_free();
}
