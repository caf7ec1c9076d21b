/*
 * keystore_keys.c - keystore_get_keys(): a user's usable decryption keys
 * through L1, L2 and the KM, released and unlocked by the admin hook
 * (keystore_hook.c) when the configuration asks for it.  See keystore.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "keymodel.h"
#include "keymodel_name.h"
#include "keystore.h"
#include "keystore_int.h"
#include "kmip.h"
#include "log.h"
#include "memcache.h"
#include "pkcs8pw.h"
#include "seal.h"
#include "secmem.h"

/* keyset_free - free a key set (memcache free callback) */
static void
keyset_free(void *p)
{
	struct keyset *s = p;

	if (s == NULL)
		return;
	keystore_keys_free(s->keys, s->n);
	free(s);
}

/* keystore_keys_free - release the references of a key array */
void
keystore_keys_free(struct keystore_key *keys, size_t n)
{
	if (keys == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		X509_free(keys[i].cert);
		EVP_PKEY_free(keys[i].key);
	}
	free(keys);
}

/* keys_copy - new references to every key of a set */
static enum km_status
keys_copy(const struct keyset *s, struct keystore_key **out, size_t *n)
{
	struct keystore_key *k;

	if ((k = calloc(s->n ? s->n : 1, sizeof(*k))) == NULL)
		return KM_NOMEM;
	for (size_t i = 0; i < s->n; i++) {
		k[i] = s->keys[i];
		if (k[i].cert != NULL)
			X509_up_ref(k[i].cert);
		EVP_PKEY_up_ref(k[i].key);
	}
	*out = k;
	*n = s->n;
	return KM_OK;
}

/* ---- decryption keys ---- */

/* raw_set - the set of generations as the KM holds it: L2, else KM */
static enum km_status
raw_set(struct keystore *ks, struct revc *rc, const char *norm,
    const char *hash, struct keymodel_gen **g, size_t *n, struct kmerr *err)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	struct keymodel_gen *kg = NULL;
	size_t kn = 0;
	int neg = 0;
	struct kmerr why;
	enum km_status st;

	if (ks->has_l2) {
		st = keystore_l2_get(ks, rc, K_KEYS, norm, hash, &buf, &len,
		    &neg);
		if (st == KM_OK && neg) {
			secmem_free(buf, len);
			bump(&ks->l2_hits);
			bump(&ks->negative_hits);
			return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
			    "no keys for %s", norm);
		}
		if (st == KM_OK) {
			st = keystore_entry_decode(buf, len, g, n, &why);
			secmem_free(buf, len);
			if (st == KM_OK) {
				bump(&ks->l2_hits);
				return KM_OK;
			}
			if (st == KM_NOMEM)
				return st;
			log_warnx("keystore: %s: bad key set in L2 (%s), "
			    "deleted", norm, why.msg);
			ks->be.l2_del(ks->be.arg, K_KEYS, norm);
		}
	}
	if (!ks->has_km)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "no KM configured");
	bump(&ks->km_fetches);
	kmerr_clear(&why);
	st = ks->be.km_keys(ks->be.arg, norm, &kg, &kn, &why);
	/* KMERR_REFUSED from the keystore means the admin hook decided
	 * (keystore.h): a KM server's Permission Denied is a failure */
	if (st != KM_OK)
		kmerr_set(err, st, why.reason == KMERR_REFUSED ? KMERR_NONE :
		    why.reason, "%s", why.msg);
	if (st == KM_OK && kn == 0) {
		ks->be.km_gens_free(ks->be.arg, kg, kn);
		st = kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no keys for %s", norm);
	}
	if (st == KM_PERMFAIL) {
		bump(&ks->misses);
		keystore_l2_put(ks, rc, K_KEYS, norm, NULL, 0, 1,
		    ks->negative_ttl);
		return st;
	}
	if (st != KM_OK) {
		bump(&ks->km_errors);
		log_warnx("keystore: %s: KM: %s", norm, err != NULL ? err->msg :
		    km_status_name(st));
		return st;
	}
	/* One code path from here: encode, then decode our own copy. */
	st = keystore_entry_encode(kg, kn, &buf, &len);
	ks->be.km_gens_free(ks->be.arg, kg, kn);
	if (st != KM_OK) {
		kmerr_set(err, st, KMERR_NONE, "cannot encode key set");
		return st;
	}
	st = keystore_entry_decode(buf, len, g, n, err);
	if (st == KM_OK)
		keystore_l2_put(ks, rc, K_KEYS, norm, buf, len, 0, ks->key_ttl);
	secmem_free(buf, len);
	return st;
}

/* keystore_raw_keys - raw_set for the signing keys' level (keystore_int.h) */
enum km_status
keystore_raw_keys(struct keystore *ks, struct revc *rc, const char *norm,
    const char *hash, struct keymodel_gen **g, size_t *n, struct kmerr *err)
{
	*g = NULL;
	*n = 0;
	return raw_set(ks, rc, norm, hash, g, n, err);
}

/* gen_cmp - current first, then newest generation first */
static int
gen_cmp(const void *pa, const void *pb)
{
	const struct keystore_key *a = pa, *b = pb;

	if (a->current != b->current)
		return b->current - a->current;
	return b->generation - a->generation;
}

/* build_set - the usable key set, from generations all unlocked */
static struct keyset *
build_set(struct keymodel_gen *g, size_t n)
{
	struct keyset *s;

	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->keys = calloc(n ? n : 1, sizeof(*s->keys))) == NULL) {
		free(s);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		struct keystore_key *k = &s->keys[s->n];

		if (g[i].key == NULL)
			continue;
		k->cert = g[i].cert;
		k->key = g[i].key;
		g[i].cert = NULL;
		g[i].key = NULL;
		k->generation = g[i].generation;
		k->current = g[i].state == KMIP_STATE_ACTIVE;
		s->n++;
	}
	qsort(s->keys, s->n, sizeof(*s->keys), gen_cmp);
	return s;
}

/*
 * locked_result - fail "locked: why"; remember (a wrong password) keeps
 * the answer in L1, and in L2 too when to_l2 (not when it came from L2).
 */
static enum km_status
locked_result(struct keystore *ks, const struct revc *rc, const char *norm,
    const char *hash, const char *why, enum kmerr_reason reason,
    int remember, int to_l2, struct kmerr *err)
{
	struct keyset *s;

	bump(&ks->hook_locked);
	kmerr_set(err, KM_PERMFAIL, reason, "locked: %s", why);
	if (!remember)
		return KM_PERMFAIL;
	if (to_l2)
		keystore_l2_put(ks, rc, K_LOCKED, norm,
		    (const unsigned char *)why, strlen(why), 0,
		    ks->negative_ttl);
	if (ks->l1 != NULL && (s = calloc(1, sizeof(*s))) != NULL) {
		s->locked = 1;
		snprintf(s->reason, sizeof(s->reason), "%s", why);
		if (memcache_put(ks->l1, K_KEYS, hash, s, keyset_free,
		    min_ms(ks->memory_ttl, ks->negative_ttl)) != KM_OK)
			keyset_free(s);
	}
	return KM_PERMFAIL;
}

/* l1_result - the answer of an L1 hit on addr's key set (ref released) */
static enum km_status
l1_result(struct keystore *ks, struct memcache_ref *ref, const char *norm,
    struct keystore_key **keys, size_t *n, struct kmerr *err)
{
	const struct keyset *ls = memcache_value(ref);
	enum km_status st;

	bump(&ks->l1_hits);
	if (memcache_is_negative(ref) || ls->locked)
		bump(&ks->negative_hits);
	if (memcache_is_negative(ref)) {
		st = kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no keys for %s", norm);
	} else if (ls->locked) {
		st = kmerr_set(err, KM_PERMFAIL, KMERR_BADPASSWORD,
		    "locked: %s", ls->reason);	/* only wrong passwords stay */
	} else
		st = keys_copy(ls, keys, n);
	memcache_release(ref);
	return st;
}

/* unlock_enhanced - the keys of the enhanced generations in g: from L2's
 * unlocked entry, else unlocked by the hook's password; KM_PERMFAIL
 * "locked: ..." (remembered) when L2 records a wrong password or the
 * hook's does not open them */
static enum km_status
unlock_enhanced(struct keystore *ks, struct revc *rc,
    const char *norm, const char *hash, const char *queue_id,
    struct keymodel_gen *g, size_t gn, struct kmerr *err)
{
	char why[REASON_MAX] = "";
	struct kmerr uerr;
	int need_hook = 0, wrongpw = 0;
	enum km_status st;

	if (keystore_locked_lookup(ks, rc, norm, hash, why, sizeof(why)))
		return locked_result(ks, rc, norm, hash, why,
		    KMERR_BADPASSWORD, 1, 0, err);
	keystore_use_unlocked(ks, rc, norm, hash, g, gn);
	for (size_t i = 0; i < gn; i++)
		if (g[i].enhanced && g[i].key == NULL)
			need_hook = 1;
	if (!need_hook)
		return KM_OK;
	kmerr_clear(&uerr);
	st = keystore_unlock(ks, rc, norm, queue_id, g, gn, &wrongpw, &uerr);
	if (st == KM_PERMFAIL) {
		st = locked_result(ks, rc, norm, hash, uerr.msg, uerr.reason,
		    wrongpw, 1, err);
		log_info("%s keystore: %s: key locked: %s",
		    queue_id ? queue_id : "-", norm, uerr.msg);
		return st;
	}
	if (st != KM_OK) {		/* KM_TEMPFAIL, KM_NOMEM */
		kmerr_set(err, st, uerr.reason, "%s", uerr.msg);
		return st;
	}
	bump(&ks->hook_unlocked);
	log_info("%s keystore: %s: key unlocked by hook",
	    queue_id ? queue_id : "-", norm);
	return KM_OK;
}

/* keystore_get_keys - every usable decryption key of addr */
enum km_status
keystore_get_keys(struct keystore *ks, const char *addr, const char *queue_id,
    struct keystore_key **keys, size_t *n, struct kmerr *err)
{
	char norm[KEYMODEL_ADDR_MAX + 1], hash[SEAL_HASH_HEXLEN + 1];
	struct memcache_ref *ref;
	struct keymodel_gen *g = NULL;
	struct keyset *s = NULL;
	size_t gn = 0;
	int enhanced = 0, unlocked = 0;
	struct revc rc;
	int64_t ttl;
	enum km_status st;

	*keys = NULL;
	*n = 0;
	if ((st = keystore_prepare(ks, addr, norm, sizeof(norm), hash,
	    err)) != KM_OK)
		return st;
	if (keystore_l1_get(ks, K_KEYS, hash, &ref) == KM_OK)
		return l1_result(ks, ref, norm, keys, n, err);
	(void)keystore_revc(ks, norm, hash, &rc);
	st = raw_set(ks, &rc, norm, hash, &g, &gn, err);
	if (st == KM_PERMFAIL && ks->has_km && ks->l1 != NULL)
		memcache_put_negative(ks->l1, K_KEYS, hash,
		    min_ms(ks->memory_ttl, ks->negative_ttl));
	if (st != KM_OK)
		return st;
	for (size_t i = 0; i < gn; i++)
		if (g[i].enhanced)
			enhanced = 1;
	if ((st = keystore_release_check(ks, norm, hash, enhanced, queue_id,
	    err)) != KM_OK)
		goto out;
	if (enhanced) {
		if ((st = unlock_enhanced(ks, &rc, norm, hash, queue_id, g, gn,
		    err)) != KM_OK)
			goto out;
		unlocked = 1;
	}
	if ((s = build_set(g, gn)) == NULL) {
		st = kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		goto out;
	}
	if ((st = keys_copy(s, keys, n)) != KM_OK) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		goto out;
	}
	ttl = min_ms(ks->memory_ttl, ks->key_ttl);
	if (unlocked && ks->unlocked_ttl > 0 &&
	    (int64_t)ks->unlocked_ttl * 1000 < ttl)
		ttl = (int64_t)ks->unlocked_ttl * 1000;
	if (ks->l1 != NULL && memcache_put(ks->l1, K_KEYS, hash, s,
	    keyset_free, ttl) == KM_OK)
		s = NULL;
out:
	keyset_free(s);
	keystore_gens_free(g, gn);
	return st;
}
