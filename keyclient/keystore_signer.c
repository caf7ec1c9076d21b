/*
 * keystore_signer.c - keystore_get_signer(): this gateway's signing key
 * and certificate for an address (signstore.h), kept in L1 only; a key
 * that follows the user's protection password is unlocked through the
 * hook (keystore_hook.c).  See keystore.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "keymodel.h"
#include "keymodel_name.h"
#include "kmip.h"
#include "keystore.h"
#include "keystore_int.h"
#include "log.h"
#include "memcache.h"
#include "seal.h"
#include "secmem.h"

/* A cached signing key (L1 only), or a remembered wrong password. */
struct signer {
	X509		*cert;
	EVP_PKEY	*key;
	STACK_OF(X509)	*chain;
	int		 locked;
	char		 reason[REASON_MAX];
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

	if (s->locked)
		return kmerr_set(err, KM_PERMFAIL, KMERR_LOCKED,
		    "signing key of %s locked: %s", norm, s->reason);
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

/* escrow_level - the level of addr's escrowed key: 1 enhanced (the
 * current generation's), 0 default or no escrowed key, -1 not known now;
 * the generations in *g (keystore_gens_free) */
static int
escrow_level(struct keystore *ks, const char *norm, const char *hash,
    struct keymodel_gen **g, size_t *n)
{
	struct revc rc;
	struct kmerr e;
	enum km_status st;
	int level = 0;

	*g = NULL;
	*n = 0;
	if (!ks->has_km || ks->be.km_keys == NULL)
		return -1;		/* no escrow to follow */
	(void)keystore_revc(ks, norm, hash, &rc);
	kmerr_clear(&e);
	st = keystore_raw_keys(ks, &rc, norm, hash, g, n, &e);
	if (st == KM_PERMFAIL && kmerr_is(&e, KMERR_NOTFOUND))
		return 0;
	if (st != KM_OK)
		return -1;
	for (size_t i = 0; i < *n; i++)
		if ((*g)[i].state == KMIP_STATE_ACTIVE)
			level = (*g)[i].enhanced;
	return level;
}

/* put_signer - s into L1 for ttl_ms (or freed) */
static void
put_signer(struct keystore *ks, const char *hash, struct signer *s,
    int64_t ttl_ms)
{
	if (ks->l1 == NULL || memcache_put(ks->l1, K_SIGNER, hash, s,
	    signer_free, ttl_ms) != KM_OK)
		signer_free(s);
}

/*
 * unlock - s's key through the hook when it is protected (enc) or ought
 * to be (level 1); KM_OK with s->key set, else the lookup's answer (a
 * wrong password remembered in L1)
 */
static enum km_status
unlock(struct keystore *ks, const char *norm, const char *hash,
    const char *queue_id, struct signer *s, const unsigned char *enc,
    size_t enclen, int level, struct keymodel_gen *g, size_t gn,
    struct kmerr *err)
{
	const char *qid = queue_id != NULL ? queue_id : "-";
	struct signer *l;
	struct kmerr why;
	int wrongpw = 0;
	enum km_status st;

	kmerr_clear(&why);
	st = keystore_unlock_signer(ks, norm, queue_id, s->cert, enc, enclen, g,
	    gn, level, &s->key, &wrongpw, &why);
	if (st == KM_OK) {
		bump(&ks->hook_unlocked);
		log_info("%s keystore: %s: signing key unlocked by hook", qid,
		    norm);
		return KM_OK;
	}
	if (st != KM_PERMFAIL) {
		kmerr_set(err, st, why.reason, "signing key of %s: %s", norm,
		    why.msg);
		return st;
	}
	bump(&ks->hook_locked);
	log_info("%s keystore: %s: signing key locked: %s", qid, norm,
	    why.msg);
	EVP_PKEY_free(s->key);	/* a plain key of an enhanced user too */
	s->key = NULL;
	if (wrongpw && (l = calloc(1, sizeof(*l))) != NULL) {
		l->locked = 1;
		snprintf(l->reason, sizeof(l->reason), "%.*s", REASON_MAX - 1,
		    why.msg);
		put_signer(ks, hash, l, min_ms(ks->memory_ttl,
		    ks->negative_ttl));
	}
	return kmerr_set(err, KM_PERMFAIL, KMERR_LOCKED,
	    "signing key of %s locked: %s", norm, why.msg);
}

/* keystore_get_signer - this gateway's signing key for an internal sender */
enum km_status
keystore_get_signer(struct keystore *ks, const char *addr,
    const char *queue_id, X509 **cert, EVP_PKEY **key, STACK_OF(X509) **chain,
    struct kmerr *err)
{
	char norm[KEYMODEL_ADDR_MAX + 1], hash[SEAL_HASH_HEXLEN + 1];
	struct memcache_ref *ref;
	struct keymodel_gen *g = NULL;
	struct signer *s;
	unsigned char *enc = NULL;
	size_t enclen = 0, gn = 0;
	int64_t ttl;
	int level;
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
	st = ks->be.signer(ks->be.arg, norm, &s->cert, &s->key, &enc, &enclen,
	    &s->chain, err);
	if (st != KM_OK) {
		signer_free(s);
		free(enc);
		if (st == KM_PERMFAIL) {
			bump(&ks->misses);
			if (ks->l1 != NULL)
				memcache_put_negative(ks->l1, K_SIGNER, hash,
				    min_ms(ks->memory_ttl, ks->negative_ttl));
		}
		return st;
	}
	ttl = (int64_t)ks->memory_ttl * 1000;
	level = escrow_level(ks, norm, hash, &g, &gn);
	if (enc != NULL || level == 1) {
		st = unlock(ks, norm, hash, queue_id, s, enc, enclen, level, g,
		    gn, err);
		ttl = (int64_t)ks->unlocked_ttl * 1000;
	}
	free(enc);
	keystore_gens_free(g, gn);
	if (st != KM_OK) {
		signer_free(s);
		return st;
	}
	st = signer_out(s, norm, cert, key, chain, err);
	put_signer(ks, hash, s, ttl);
	return st;
}

/* keystore_has_signer - has this gateway a signing key for addr, locked or
 * not?  Never asks the hook. */
enum km_status
keystore_has_signer(struct keystore *ks, const char *addr, struct kmerr *err)
{
	char norm[KEYMODEL_ADDR_MAX + 1], hash[SEAL_HASH_HEXLEN + 1];
	struct memcache_ref *ref;
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	STACK_OF(X509) *chain = NULL;
	unsigned char *enc = NULL;
	size_t enclen = 0;
	enum km_status st;

	if ((st = keystore_prepare(ks, addr, norm, sizeof(norm), hash,
	    err)) != KM_OK)
		return st;
	if (keystore_l1_get(ks, K_SIGNER, hash, &ref) == KM_OK) {
		st = memcache_is_negative(ref) ? kmerr_set(err, KM_PERMFAIL,
		    KMERR_NOTFOUND, "no signing key for %s here", norm) : KM_OK;
		memcache_release(ref);
		return st;
	}
	if (ks->be.signer == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "no signing store");
	st = ks->be.signer(ks->be.arg, norm, &cert, &key, &enc, &enclen,
	    &chain, err);
	X509_free(cert);
	EVP_PKEY_free(key);
	sk_X509_pop_free(chain, X509_free);
	free(enc);
	return st;
}
