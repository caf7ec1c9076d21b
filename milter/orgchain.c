/*
 * orgchain.c - the org CA certificates published with our users'
 * encryption certificates (see orgchain.h).
 */
#include <pthread.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "orgchain.h"

static STACK_OF(X509) *chain;
static pthread_mutex_t chain_mtx = PTHREAD_MUTEX_INITIALIZER;

/* read_chain - every certificate of the PEM file path; NULL on failure */
static STACK_OF(X509) *
read_chain(const char *path, struct kmerr *err)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	BIO *b = NULL;
	X509 *x;

	if (sk == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "org CA: out of memory");
		return NULL;
	}
	if (*path == '\0')
		return sk;
	if ((b = BIO_new_file(path, "r")) == NULL)
		goto fail;
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			goto fail;
		}
	}
	ERR_clear_error();	/* the end of the file */
	BIO_free(b);
	if (sk_X509_num(sk) > 0)
		return sk;
	b = NULL;
fail:
	kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
	    "km.org_ca_cert: cannot load CA certificates from %s", path);
	ERR_clear_error();
	BIO_free(b);
	sk_X509_pop_free(sk, X509_free);
	return NULL;
}

/* orgchain_load - read km.org_ca_cert and make it the current chain */
int
orgchain_load(const struct kmilter_conf *c, struct kmerr *err)
{
	STACK_OF(X509) *sk = read_chain(c->org_ca_cert, err), *old;

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
