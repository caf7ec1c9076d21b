/*
 * keystore_signer.c - keystore_get_signer(): this gateway's signing key
 * and certificate for an address (signstore.h), kept in L1 only.  See
 * keystore.h.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "keymodel_name.h"
#include "keystore.h"
#include "keystore_int.h"
#include "log.h"
#include "memcache.h"
#include "seal.h"
#include "secmem.h"

/* A cached signing key (L1 only). */
struct signer {
	X509		*cert;
	EVP_PKEY	*key;
	STACK_OF(X509)	*chain;
};

/* signer_free - free a cached signer (memcache free callback) */
static void
signer_free(void *p)
{
	struct signer *s = p;

	if (s == NULL)
		return;
	X509_free(s->cert);
	EVP_PKEY_free(s->key);
	if (s->chain != NULL)
		sk_X509_pop_free(s->chain, X509_free);
	free(s);
}

/* ---- signing keys ---- */

/* signer_out - hand out new references of a cached signer */
static enum km_status
signer_out(const struct signer *s, const char *norm, X509 **cert,
    EVP_PKEY **key, STACK_OF(X509) **chain, struct kmerr *err)
{
	STACK_OF(X509) *ch = NULL;

	if (X509_cmp_time(X509_get0_notAfter(s->cert), NULL) <= 0)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "signing certificate for %s expired",
		    norm);
	if (chain != NULL) {
		ch = s->chain ? X509_chain_up_ref(s->chain) : sk_X509_new_null();
		if (ch == NULL)
			return kmerr_set(err, KM_NOMEM, KMERR_NONE,
			    "out of memory");
		*chain = ch;
	}
	X509_up_ref(s->cert);
	EVP_PKEY_up_ref(s->key);
	*cert = s->cert;
	*key = s->key;
	return KM_OK;
}

/* keystore_get_signer - this gateway's signing key for an internal sender */
enum km_status
keystore_get_signer(struct keystore *ks, const char *addr, X509 **cert,
    EVP_PKEY **key, STACK_OF(X509) **chain, struct kmerr *err)
{
	char norm[KEYMODEL_ADDR_MAX + 1], hash[SEAL_HASH_HEXLEN + 1];
	struct memcache_ref *ref;
	struct signer *s;
	enum km_status st;

	*cert = NULL;
	*key = NULL;
	if (chain != NULL)
		*chain = NULL;
	if ((st = keystore_prepare(ks, addr, norm, sizeof(norm), hash,
	    err)) != KM_OK)
		return st;
	if (keystore_l1_get(ks, K_SIGNER, hash, &ref) == KM_OK) {
		bump(&ks->l1_hits);
		if (memcache_is_negative(ref)) {
			bump(&ks->negative_hits);
			st = kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
			    "no signing key for %s here",
			    norm);
		} else
			st = signer_out(memcache_value(ref), norm, cert, key,
			    chain, err);
		memcache_release(ref);
		return st;
	}
	if (ks->be.signer == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "no signing store");
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	st = ks->be.signer(ks->be.arg, norm, &s->cert, &s->key, &s->chain,
	    err);
	if (st != KM_OK) {
		signer_free(s);
		if (st == KM_PERMFAIL) {
			bump(&ks->misses);
			if (ks->l1 != NULL)
				memcache_put_negative(ks->l1, K_SIGNER, hash,
				    min_ms(ks->memory_ttl, ks->negative_ttl));
		}
		return st;
	}
	st = signer_out(s, norm, cert, key, chain, err);
	if (ks->l1 == NULL || memcache_put(ks->l1, K_SIGNER, hash, s,
	    signer_free, (int64_t)ks->memory_ttl * 1000) != KM_OK)
		signer_free(s);
	return st;
}
