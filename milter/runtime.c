/*
 * runtime.c - key store, trust store and revocation checker shared by all
 * messages (see runtime.h).
 */
#include <pthread.h>
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include "keystore.h"
#include "orgchain.h"
#include "revcheck.h"
#include "runtime.h"

static struct keystore *keystore;
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

/* runtime_init - make the key store and the trust store */
int
runtime_init(const struct kmilter_conf *c, struct kmerr *err)
{
	if ((trust = load_trust(c, err)) == NULL)
		return -1;
	if (orgchain_load(c, err) != 0)
		return -1;
	if ((keystore = keystore_new(c, err)) == NULL)
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

/* runtime_keystore - the key store */
struct keystore *
runtime_keystore(void)
{
	return keystore;
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

/* runtime_free - release both at exit */
void
runtime_free(void)
{
	keystore = keystore_free(keystore);
	revcheck = revcheck_free(revcheck);
	X509_STORE_free(trust);
	trust = NULL;
	orgchain_free();
}
