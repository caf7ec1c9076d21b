/*
 * orgchain.c - the org CA certificates published with our users'
 * encryption certificates (see orgchain.h).
 */
#include <pthread.h>

#include "keymodel_p12.h"
#include "orgchain.h"

static STACK_OF(X509) *chain;
static pthread_mutex_t chain_mtx = PTHREAD_MUTEX_INITIALIZER;

/* orgchain_load - read km.org_ca_cert and make it the current chain */
int
orgchain_load(const struct kmilter_conf *c, struct kmerr *err)
{
	STACK_OF(X509) *sk = keymodel_read_chain(c->org_ca_cert, err), *old;

	if (sk == NULL)
		return -1;
	pthread_mutex_lock(&chain_mtx);
	old = chain;
	chain = sk;
	pthread_mutex_unlock(&chain_mtx);
	sk_X509_pop_free(old, X509_free);
	return 0;
}

/* orgchain_get - new references to the current chain (empty when none) */
STACK_OF(X509) *
orgchain_get(void)
{
	STACK_OF(X509) *sk;

	pthread_mutex_lock(&chain_mtx);
	sk = chain != NULL ? X509_chain_up_ref(chain) : sk_X509_new_null();
	pthread_mutex_unlock(&chain_mtx);
	return sk;
}

/* orgchain_free - forget the chain at exit */
void
orgchain_free(void)
{
	pthread_mutex_lock(&chain_mtx);
	sk_X509_pop_free(chain, X509_free);
	chain = NULL;
	pthread_mutex_unlock(&chain_mtx);
}
