/*
 * keystore_lookup.c - the path every keystore lookup shares: the address
 * normalized and hashed, the L1 lookup, the user's revocation counter and
 * the sealed L2 entries bound to it.  See keystore_int.h.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "keymodel_name.h"
#include "keystore.h"
#include "keystore_int.h"
#include "log.h"
#include "memcache.h"
#include "seal.h"
#include "secmem.h"

/* keystore_prepare - normalize the address and compute its keyed hash */
enum km_status
keystore_prepare(struct keystore *ks, const char *addr, char *norm, size_t normlen,
    char hash[SEAL_HASH_HEXLEN + 1], struct kmerr *err)
{
	enum km_status st;

	bump(&ks->lookups);
	if (addr == NULL)
		return kmerr_set(err, KM_PROTO, KMERR_NONE, "no address");
	if ((st = keymodel_addr_normalize(addr, norm, normlen, err)) != KM_OK)
		return st;
	if ((st = seal_name_hash(ks->seal, norm, hash)) != KM_OK)
		kmerr_set(err, st, KMERR_NONE, "cannot hash address");
	return st;
}

/* keystore_l1_get - L1 lookup; KM_OK with *ref on a hit (positive or negative) */
enum km_status
keystore_l1_get(struct keystore *ks, const char *kind, const char *hash,
    struct memcache_ref **ref)
{
	*ref = NULL;
	if (ks->l1 == NULL)
		return KM_PERMFAIL;
	return memcache_get(ks->l1, kind, hash, ref);
}

/* ---- L2 entries bound to the revocation counter ---- */

/* revc_free - free a cached counter (memcache free callback) */
static void
revc_free(void *p)
{
	free(p);
}

/* revc_fetch - read addr's revocation counter from the KM, keep it */
static enum km_status
revc_fetch(struct keystore *ks, const char *norm, const char *hash,
    struct revc *rc)
{
	struct kmerr err;
	uint32_t n = 0, *v;
	enum km_status st;

	rc->known = 0;
	rc->cached = 0;
	if (ks->be.km_revcount == NULL) {
		/* keystore_new said so once: "KM not configured" */
		log_debug(1, "keystore: %s: no KM to read the revocation "
		    "counter from; L2 entries not used", norm);
		return KM_PERMFAIL;
	}
	bump(&ks->revc_fetches);
	kmerr_clear(&err);
	st = ks->be.km_revcount(ks->be.arg, norm, &n, &err);
	if (st != KM_OK) {
		log_warnx("keystore: %s: revocation counter: %s; L2 entries "
		    "not used", norm, err.msg[0] ? err.msg :
		    km_status_name(st));
		return st;
	}
	rc->known = 1;
	rc->n = n;
	if ((v = malloc(sizeof(*v))) == NULL)
		return KM_OK;
	*v = n;
	if (memcache_put(ks->revc, K_REVC, hash, v, revc_free,
	    (int64_t)ks->memory_ttl * 1000) != KM_OK)
		free(v);
	return KM_OK;
}

/*
 * keystore_revc - addr's revocation counter for one lookup: from memory,
 * else one Locate on the KM.  Without L2 there is nothing to check and
 * nothing is asked.  Not known (rc->known 0) when the KM cannot answer.
 */
enum km_status
keystore_revc(struct keystore *ks, const char *norm, const char *hash,
    struct revc *rc)
{
	struct memcache_ref *ref;

	memset(rc, 0, sizeof(*rc));
	if (!ks->has_l2)
		return KM_OK;
	if (memcache_get(ks->revc, K_REVC, hash, &ref) == KM_OK) {
		if (!memcache_is_negative(ref)) {
			rc->n = *(const uint32_t *)memcache_value(ref);
			rc->known = 1;
			rc->cached = 1;
		}
		memcache_release(ref);
		if (rc->known)
			return KM_OK;
	}
	return revc_fetch(ks, norm, hash, rc);
}

/* l2_refuse - log why an L2 entry is not used and delete it */
static void
l2_refuse(struct keystore *ks, const char *kind, const char *norm,
    const char *what, const char *why)
{
	char name[SEAL_NAME_MAX];

	if (seal_entry_name(ks->seal, kind, norm, name) != KM_OK)
		snprintf(name, sizeof(name), "?");
	log_warnx("keystore: %s: %s %s entry %s in L2 (%s), deleted; asking "
	    "the KM", norm, what, kind, name, why);
	ks->be.l2_del(ks->be.arg, kind, norm);
}

/*
 * keystore_l2_get - an L2 entry of addr, checked against the lookup's
 * revocation counter: KM_OK (check *negative; *body secmem, free with
 * secmem_free(*body, *len)), KM_PERMFAIL miss (also a refused entry:
 * old format, malformed, or a counter that is not the KM's, deleted and
 * logged), KM_TEMPFAIL (Redis failing, or the counter is not known: the
 * entry cannot be checked and is not used), KM_NOMEM.
 */
enum km_status
keystore_l2_get(struct keystore *ks, struct revc *rc, const char *kind,
    const char *norm, const char *hash, unsigned char **body, size_t *len,
    int *negative)
{
	unsigned char *buf = NULL;
	const unsigned char *b;
	size_t blen = 0, bl;
	uint32_t n;
	int neg = 0;
	char why[128];
	struct kmerr uerr;
	enum km_status st;

	*body = NULL;
	*len = 0;
	*negative = 0;
	if (!ks->has_l2)
		return KM_PERMFAIL;
	if (!rc->known)
		return KM_TEMPFAIL;
	st = ks->be.l2_get(ks->be.arg, kind, norm, &buf, &blen, &neg);
	if (st == KM_TEMPFAIL)
		bump(&ks->l2_errors);
	if (st != KM_OK)
		return st;
	if (neg) {
		l2_refuse(ks, kind, norm, "old-format", "negative entry "
		    "without a revocation counter");
		return KM_PERMFAIL;
	}
	if (keystore_env_unwrap(buf, blen, &n, &neg, &b, &bl, &uerr) !=
	    KM_OK) {
		secmem_free(buf, blen);
		l2_refuse(ks, kind, norm, "unusable", uerr.msg);
		return KM_PERMFAIL;
	}
	if (n != rc->n && rc->cached) {
		/* our counter may be the old one: ask the KM once */
		memcache_invalidate(ks->revc, hash);
		if ((st = revc_fetch(ks, norm, hash, rc)) != KM_OK) {
			secmem_free(buf, blen);
			return KM_TEMPFAIL;
		}
	}
	if (n != rc->n) {
		secmem_free(buf, blen);
		bump(&ks->l2_stale);
		snprintf(why, sizeof(why), "revocation counter %lu, the KM's "
		    "is %lu", (unsigned long)n, (unsigned long)rc->n);
		l2_refuse(ks, kind, norm, "stale or replayed", why);
		return KM_PERMFAIL;
	}
	*negative = neg;
	if ((*body = secmem_alloc(bl ? bl : 1)) == NULL) {
		secmem_free(buf, blen);
		return KM_NOMEM;
	}
	if (bl > 0)
		memcpy(*body, b, bl);
	*len = bl;
	secmem_free(buf, blen);
	return KM_OK;
}

/* keystore_l2_put - put an entry (or a negative one) bound to the counter */
void
keystore_l2_put(struct keystore *ks, const struct revc *rc, const char *kind,
    const char *norm, const unsigned char *body, size_t len, int negative,
    int ttl)
{
	unsigned char *buf = NULL;
	size_t blen = 0;

	if (!ks->has_l2 || !rc->known)
		return;
	if (keystore_env_wrap(rc->n, negative, body, len, &buf, &blen) !=
	    KM_OK)
		return;
	ks->be.l2_put(ks->be.arg, kind, norm, buf, blen, ttl);
	secmem_free(buf, blen);
}
