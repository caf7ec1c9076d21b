/*
 * runtime.c - key store, trust store and revocation checker shared by all
 * messages (see runtime.h).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include "keystore.h"
#include "orgchain.h"
#include "revcheck.h"
#include "runtime.h"

/* A key store with the messages that use it: freed by the last one out. */
struct ksref {
	struct keystore	*ks;
	int		 refs;		/* runtime's own + one per pin */
};

static struct ksref *current;
static pthread_mutex_t ks_mtx = PTHREAD_MUTEX_INITIALIZER;
static __thread struct ksref *pinned;
static __thread int pin_depth;
static struct revcheck *revcheck;
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

/* ksref_new - a key store of c with the runtime's reference */
static struct ksref *
ksref_new(const struct kmilter_conf *c, struct kmerr *err)
{
	struct ksref *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "key store: out of memory");
		return NULL;
	}
	if ((r->ks = keystore_new(c, err)) == NULL) {
		free(r);
		return NULL;
	}
	r->refs = 1;
	return r;
}

/* ksref_drop - one reference less; the last frees the key store */
static void
ksref_drop(struct ksref *r)
{
	int last;

	if (r == NULL)
		return;
	pthread_mutex_lock(&ks_mtx);
	last = --r->refs == 0;
	pthread_mutex_unlock(&ks_mtx);
	if (last) {
		keystore_free(r->ks);
		free(r);
	}
}

/* runtime_init - make the key store and the trust store */
int
runtime_init(const struct kmilter_conf *c, struct kmerr *err)
{
	if ((trust = load_trust(c, err)) == NULL)
		return -1;
	if (orgchain_load(c, err) != 0)
		return -1;
	if ((current = ksref_new(c, err)) == NULL)
		return -1;
	if ((revcheck = revcheck_new(c, err)) == NULL)
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

/* ksref_swap - r becomes current; the runtime's reference to the old one is dropped */
static void
ksref_swap(struct ksref *r)
{
	struct ksref *old;

	pthread_mutex_lock(&ks_mtx);
	old = current;
	current = r;
	pthread_mutex_unlock(&ks_mtx);
	ksref_drop(old);		/* freed now, or by the last message using it */
}

/* runtime_reload_keystore - a key store of c in place of the current one */
int
runtime_reload_keystore(const struct kmilter_conf *c, struct kmerr *err)
{
	struct ksref *r = ksref_new(c, err);

	if (r == NULL)
		return -1;
	ksref_swap(r);
	return 0;
}

/* runtime_pin - this thread's key store stays until runtime_unpin */
void
runtime_pin(void)
{
	if (pin_depth++ > 0)
		return;
	pthread_mutex_lock(&ks_mtx);
	pinned = current;
	if (pinned != NULL)
		pinned->refs++;
	pthread_mutex_unlock(&ks_mtx);
}

/* runtime_unpin - release what runtime_pin took */
void
runtime_unpin(void)
{
	struct ksref *r;

	if (pin_depth == 0 || --pin_depth > 0)
		return;
	r = pinned;
	pinned = NULL;
	ksref_drop(r);
}

/* runtime_keystore - the pinned key store, else the current one */
struct keystore *
runtime_keystore(void)
{
	struct keystore *ks;

	if (pinned != NULL)
		return pinned->ks;
	pthread_mutex_lock(&ks_mtx);
	ks = current != NULL ? current->ks : NULL;
	pthread_mutex_unlock(&ks_mtx);
	return ks;
}

/* runtime_revcheck - the revocation checker */
struct revcheck *
runtime_revcheck(void)
{
	return revcheck;
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
	ksref_swap(NULL);
	revcheck = revcheck_free(revcheck);
	X509_STORE_free(trust);
	trust = NULL;
	orgchain_free();
}
