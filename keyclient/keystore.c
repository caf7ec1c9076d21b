/*
 * keystore.c - the key lookup facade: L1 (memcache) -> L2 (Redis, sealed)
 * -> KM (keymodel): lookup order, caches, construction.  The admin hook
 * for password-protected keys is in keystore_hook.c, the L2 entry format
 * in keystore_entry.c, certificate checks in keystore_certcheck.c.
 * See keystore.h and docs/keystore.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "keymodel_name.h"
#include "keystore.h"
#include "keystore_int.h"
#include "cache.h"
#include "conf.h"
#include "hook.h"
#include "keymodel.h"
#include "kmip.h"
#include "log.h"
#include "memcache.h"
#include "pkcs8pw.h"
#include "seal.h"
#include "secmem.h"
#include "signstore.h"

#define RELEASE_ENTRIES	10000

/* A cached signing key (L1 only). */
struct signer {
	X509		*cert;
	EVP_PKEY	*key;
	STACK_OF(X509)	*chain;
};

/* min_ms - the smaller of two TTLs in seconds, as milliseconds */
static int64_t
min_ms(int a, int b)
{
	return (int64_t)(a < b ? a : b) * 1000;
}

/* ---- default backend: the real KM, signstore, Redis and hook ---- */

/* real_km_cert - keymodel_current_cert */
static enum km_status
real_km_cert(void *arg, const char *addr, X509 **out, char *errstr,
    size_t errlen)
{
	struct keystore *ks = arg;

	return keymodel_current_cert(ks->km, addr, out, errstr, errlen);
}

/* real_km_keys - keymodel_decryption_keys */
static enum km_status
real_km_keys(void *arg, const char *addr, struct keymodel_gen **out,
    size_t *n, char *errstr, size_t errlen)
{
	struct keystore *ks = arg;

	return keymodel_decryption_keys(ks->km, addr, out, n, errstr, errlen);
}

/* real_km_revcount - keymodel_revocation_count */
static enum km_status
real_km_revcount(void *arg, const char *addr, uint32_t *count, char *errstr,
    size_t errlen)
{
	struct keystore *ks = arg;

	return keymodel_revocation_count(ks->km, addr, count, errstr, errlen);
}

/* real_km_gens_free - keymodel_gens_free */
static void
real_km_gens_free(void *arg, struct keymodel_gen *g, size_t n)
{
	(void)arg;
	keymodel_gens_free(g, n);
}

/* real_signer - signstore_load from the state directory */
static enum km_status
real_signer(void *arg, const char *addr, X509 **cert, EVP_PKEY **key,
    STACK_OF(X509) **chain, char *errstr, size_t errlen)
{
	struct keystore *ks = arg;

	if (ks->seal_err[0] != '\0') {
		seterr(errstr, errlen, "no signing key for %s here: %s",
		    addr, ks->seal_err);
		return KM_PERMFAIL;
	}
	return signstore_load(ks->state_dir, ks->seal, addr, cert, key, chain,
	    errstr, errlen);
}

/* real_l2_get - cache_get */
static enum km_status
real_l2_get(void *arg, const char *kind, const char *addr,
    unsigned char **buf, size_t *len, int *negative)
{
	return cache_get(((struct keystore *)arg)->cache, kind, addr, buf, len,
	    negative);
}

/* real_l2_put - cache_put */
static enum km_status
real_l2_put(void *arg, const char *kind, const char *addr,
    const unsigned char *buf, size_t len, int ttl)
{
	return cache_put(((struct keystore *)arg)->cache, kind, addr, buf, len,
	    ttl);
}

/* real_l2_del - cache_del */
static enum km_status
real_l2_del(void *arg, const char *kind, const char *addr)
{
	return cache_del(((struct keystore *)arg)->cache, kind, addr);
}

/* real_l2_invalidate - cache_invalidate (deletes and publishes) */
static enum km_status
real_l2_invalidate(void *arg, const char *addr)
{
	return cache_invalidate(((struct keystore *)arg)->cache, addr);
}

/* ---- value types kept in L1 ---- */

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

/* x509_free_cb - X509_free as a memcache free callback */
static void
x509_free_cb(void *p)
{
	X509_free(p);
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

/* ---- construction ---- */

/* read_secret_file - read a short secret file (password) into secmem */
static char *
read_secret_file(const char *path, char *errstr, size_t errlen)
{
	char buf[512], *s;
	ssize_t r;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		seterr(errstr, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r < 0) {
		seterr(errstr, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	buf[r] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	s = secmem_strdup(buf);
	secmem_wipe(buf, sizeof(buf));
	if (s == NULL)
		seterr(errstr, errlen, "out of memory");
	return s;
}

/* on_invalidate - subscriber callback: drop L1 entries of an address */
static void
on_invalidate(const char *addr_hash, void *arg)
{
	struct keystore *ks = arg;

	if (addr_hash == NULL) {
		if (ks->l1 != NULL)
			memcache_clear(ks->l1);
		memcache_clear(ks->released);
		memcache_clear(ks->revc);
		log_debug(1, "keystore: invalidation resync: L1 cleared");
		return;
	}
	if (ks->l1 != NULL)
		memcache_invalidate(ks->l1, addr_hash);
	memcache_invalidate(ks->released, addr_hash);
	memcache_invalidate(ks->revc, addr_hash);
	log_debug(2, "keystore: invalidated %.12s...", addr_hash);
}

/* load_seal - the gateway seal key, or an ephemeral one without L2 */
static int
load_seal(struct keystore *ks, const struct kmilter_conf *conf, int need,
    char *errstr, size_t errlen)
{
	char path[1024], why[128] = "";
	unsigned char ikm[SEAL_KEY_LEN];

	if (signstore_seal_key_path(conf, path, sizeof(path)) == KM_OK)
		ks->seal = seal_key_load(path, why, sizeof(why));
	else
		snprintf(why, sizeof(why), "seal key path too long");
	if (ks->seal != NULL)
		return 0;
	if (need) {
		seterr(errstr, errlen, "seal key: %s", why);
		return -1;
	}
	/* No Redis: the key only names L1 entries, any key will do; the
	 * signing store cannot be opened without the real one. */
	snprintf(ks->seal_err, sizeof(ks->seal_err), "seal key: %s", why);
	if (RAND_priv_bytes(ikm, sizeof(ikm)) != 1) {
		seterr(errstr, errlen, "no randomness for a seal key");
		return -1;
	}
	ks->seal = seal_key_from_bytes(ikm, sizeof(ikm), errstr, errlen);
	OPENSSL_cleanse(ikm, sizeof(ikm));
	if (ks->seal == NULL)
		return -1;
	log_info("keystore: %s; no signing keys (L1 names use a "
	    "temporary key)", ks->seal_err);
	return 0;
}

/* start_l2 - connect the Redis cache and its invalidation subscriber */
static int
start_l2(struct keystore *ks, const struct kmilter_conf *conf, char *errstr,
    size_t errlen)
{
	struct cache_opts o;
	char *pw = NULL, why[256];
	int rc = -1;

	memset(&o, 0, sizeof(o));
	o.unix_path = conf->redis_socket && *conf->redis_socket ?
	    conf->redis_socket : NULL;
	o.host = conf->redis_host && *conf->redis_host ? conf->redis_host :
	    NULL;
	o.port = conf->redis_port;
	o.database = conf->redis_database;
	o.connect_timeout_ms = conf->redis_connect_timeout_ms;
	o.command_timeout_ms = conf->redis_command_timeout_ms;
	o.key = ks->seal;
	if (conf->redis_password_file && *conf->redis_password_file) {
		if ((pw = read_secret_file(conf->redis_password_file, errstr,
		    errlen)) == NULL)
			goto out;
		o.password = pw;
	}
	if ((ks->cache = cache_new(&o, errstr, errlen)) == NULL)
		goto out;
	ks->sub = cache_subscribe_start(&o, on_invalidate, ks, why,
	    sizeof(why));
	if (ks->sub == NULL)
		log_warnx("keystore: no invalidation subscriber: %s", why);
	rc = 0;
out:
	secmem_strfree(pw);
	return rc;
}

/* keystore_new_backend - a keystore over the given backend functions */
struct keystore *
keystore_new_backend(const struct kmilter_conf *conf,
    const struct keystore_backend *be, char *errstr, size_t errlen)
{
	struct keystore *ks;
	int want_l2 = (conf->redis_socket && *conf->redis_socket) ||
	    (conf->redis_host && *conf->redis_host);

	if ((ks = calloc(1, sizeof(*ks))) == NULL) {
		seterr(errstr, errlen, "out of memory");
		return NULL;
	}
	ks->memory_ttl = conf->memory_ttl > 0 ? conf->memory_ttl : 60;
	ks->cert_ttl = conf->cert_ttl > 0 ? conf->cert_ttl : 3600;
	ks->key_ttl = conf->key_ttl > 0 ? conf->key_ttl : 600;
	ks->negative_ttl = conf->negative_ttl > 0 ? conf->negative_ttl : 60;
	ks->unlocked_ttl = conf->hook_unlocked_key_ttl;
	ks->hook_release = conf->hook_release;
	ks->state_dir = strdup(conf->state_dir ? conf->state_dir : "");
	ks->gateway = conf->gateway_name && *conf->gateway_name ?
	    strdup(conf->gateway_name) : NULL;
	if (ks->state_dir == NULL || (conf->gateway_name &&
	    *conf->gateway_name && ks->gateway == NULL)) {
		seterr(errstr, errlen, "out of memory");
		goto fail;
	}
	if (load_seal(ks, conf, be == NULL && want_l2, errstr, errlen) < 0)
		goto fail;
	if (conf->memory_entries > 0 && (ks->l1 = memcache_new(
	    (size_t)conf->memory_entries, be ? be->clock_ms : NULL,
	    be ? be->arg : NULL)) == NULL) {
		seterr(errstr, errlen, "out of memory");
		goto fail;
	}
	if ((ks->released = memcache_new(RELEASE_ENTRIES,
	    be ? be->clock_ms : NULL, be ? be->arg : NULL)) == NULL ||
	    (ks->revc = memcache_new(REVC_ENTRIES, be ? be->clock_ms : NULL,
	    be ? be->arg : NULL)) == NULL) {
		seterr(errstr, errlen, "out of memory");
		goto fail;
	}
	if (conf->hook_path && *conf->hook_path &&
	    (be == NULL || be->hook_ask == NULL)) {
		struct hook_opts ho;

		memset(&ho, 0, sizeof(ho));
		ho.path = conf->hook_path;
		ho.timeout_ms = conf->hook_timeout_ms;
		ho.max_running = conf->hook_max_running;
		ho.on_failure_unlock = conf->hook_on_failure ==
		    HOOKFAIL_TEMPFAIL ? HOOK_ACTION_TEMPFAIL :
		    HOOK_ACTION_KEEP_ENCRYPTED;
		ho.on_failure_release = HOOK_ACTION_DENY;
		if ((ks->hook = hook_new(&ho, errstr, errlen)) == NULL)
			goto fail;
	}
	if (be != NULL) {
		ks->be = *be;
		if (ks->be.hook_ask == NULL && ks->hook != NULL) {
			ks->be.hook_ask = keystore_real_hook_ask;
			/* the fakes' arg is not ours: route through ks */
		}
		ks->has_km = be->km_cert != NULL;
		ks->has_l2 = be->l2_get != NULL;
		return ks;
	}
	ks->be.arg = ks;
	ks->be.signer = real_signer;
	if (ks->hook != NULL)
		ks->be.hook_ask = keystore_real_hook_ask;
	if (conf->km_nservers > 0) {
		if ((ks->km = keymodel_new(conf, errstr, errlen)) == NULL)
			goto fail;
		ks->be.km_cert = real_km_cert;
		ks->be.km_keys = real_km_keys;
		ks->be.km_gens_free = real_km_gens_free;
		ks->be.km_revcount = real_km_revcount;
		ks->has_km = 1;
	}
	if (want_l2) {
		if (start_l2(ks, conf, errstr, errlen) < 0)
			goto fail;
		ks->be.l2_get = real_l2_get;
		ks->be.l2_put = real_l2_put;
		ks->be.l2_del = real_l2_del;
		ks->be.l2_invalidate = real_l2_invalidate;
		ks->has_l2 = 1;
	}
	log_info("keystore: L1 %s, L2 %s, KM %s, hook %s%s",
	    ks->l1 ? "on" : "off", ks->has_l2 ? "redis" : "off",
	    ks->has_km ? "on" : "not configured", ks->hook ? "on" : "off",
	    ks->hook_release ? " (release)" : "");
	return ks;
fail:
	keystore_free(ks);
	return NULL;
}

/* keystore_new - the keystore of a configuration (real KM, Redis, hook) */
struct keystore *
keystore_new(const struct kmilter_conf *conf, char *errstr, size_t errlen)
{
	return keystore_new_backend(conf, NULL, errstr, errlen);
}

/* keystore_free - stop the subscriber, free caches and handles */
struct keystore *
keystore_free(struct keystore *ks)
{
	if (ks == NULL)
		return NULL;
	ks->sub = cache_subscribe_stop(ks->sub);
	ks->cache = cache_free(ks->cache);
	ks->km = keymodel_free(ks->km);
	ks->hook = hook_free(ks->hook);
	ks->l1 = memcache_free(ks->l1);
	ks->released = memcache_free(ks->released);
	ks->revc = memcache_free(ks->revc);
	ks->seal = seal_key_free(ks->seal);
	free(ks->state_dir);
	free(ks->gateway);
	free(ks);
	return NULL;
}

/* prepare - normalize the address and compute its keyed hash */
static enum km_status
prepare(struct keystore *ks, const char *addr, char *norm, size_t normlen,
    char hash[SEAL_HASH_HEXLEN + 1], char *errstr, size_t errlen)
{
	enum km_status st;

	bump(&ks->lookups);
	if (addr == NULL) {
		seterr(errstr, errlen, "no address");
		return KM_PROTO;
	}
	if ((st = keymodel_addr_normalize(addr, norm, normlen, errstr,
	    errlen)) != KM_OK)
		return st;
	if ((st = seal_name_hash(ks->seal, norm, hash)) != KM_OK)
		seterr(errstr, errlen, "cannot hash address");
	return st;
}

/* l1_get - L1 lookup; KM_OK with *ref on a hit (positive or negative) */
static enum km_status
l1_get(struct keystore *ks, const char *kind, const char *hash,
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
	char err[256] = "";
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
	st = ks->be.km_revcount(ks->be.arg, norm, &n, err, sizeof(err));
	if (st != KM_OK) {
		log_warnx("keystore: %s: revocation counter: %s; L2 entries "
		    "not used", norm, err[0] ? err : km_status_name(st));
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
	if (keystore_env_unwrap(buf, blen, &n, &neg, &b, &bl, why,
	    sizeof(why)) != KM_OK) {
		secmem_free(buf, blen);
		l2_refuse(ks, kind, norm, "unusable", why);
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

/* ---- certificates ---- */

/* cert_result - check a found certificate and hand out a reference */
static enum km_status
cert_result(X509 *c, const char *addr, X509 **cert, char *errstr,
    size_t errlen)
{
	enum km_status st;

	if ((st = keystore_cert_check(c, addr, errstr, errlen)) != KM_OK)
		return st;
	X509_up_ref(c);
	*cert = c;
	return KM_OK;
}

/* keystore_get_cert - the current encryption certificate of addr */
enum km_status
keystore_get_cert(struct keystore *ks, const char *addr, X509 **cert,
    char *errstr, size_t errlen)
{
	char norm[KEYMODEL_ADDR_MAX + 1], hash[SEAL_HASH_HEXLEN + 1];
	struct memcache_ref *ref;
	unsigned char *buf = NULL, *der = NULL;
	size_t len = 0;
	X509 *c = NULL;
	int neg = 0, dl;
	struct revc rc;
	enum km_status st;

	*cert = NULL;
	if ((st = prepare(ks, addr, norm, sizeof(norm), hash, errstr,
	    errlen)) != KM_OK)
		return st;
	if (l1_get(ks, K_CERT, hash, &ref) == KM_OK) {
		bump(&ks->l1_hits);
		if (memcache_is_negative(ref)) {
			bump(&ks->negative_hits);
			seterr(errstr, errlen, "no certificate for %s", norm);
			st = KM_PERMFAIL;
		} else
			st = cert_result(memcache_value(ref), norm, cert,
			    errstr, errlen);
		memcache_release(ref);
		return st;
	}
	if (ks->has_l2) {
		(void)keystore_revc(ks, norm, hash, &rc);
		st = keystore_l2_get(ks, &rc, K_CERT, norm, hash, &buf, &len,
		    &neg);
		if (st == KM_OK && neg) {
			secmem_free(buf, len);
			bump(&ks->l2_hits);
			bump(&ks->negative_hits);
			if (ks->l1)
				memcache_put_negative(ks->l1, K_CERT, hash,
				    min_ms(ks->memory_ttl, ks->negative_ttl));
			seterr(errstr, errlen, "no certificate for %s", norm);
			return KM_PERMFAIL;
		}
		if (st == KM_OK) {
			const unsigned char *p = buf;

			c = d2i_X509(NULL, &p, (long)len);
			if (c == NULL || p != buf + len) {
				X509_free(c);
				c = NULL;
				ERR_clear_error();
				log_warnx("keystore: %s: bad certificate in "
				    "L2, deleted", norm);
				ks->be.l2_del(ks->be.arg, K_CERT, norm);
			} else
				bump(&ks->l2_hits);
			secmem_free(buf, len);
		}
	} else
		memset(&rc, 0, sizeof(rc));
	if (c == NULL) {
		if (!ks->has_km) {
			seterr(errstr, errlen, "no KM configured");
			return KM_PERMFAIL;
		}
		bump(&ks->km_fetches);
		st = ks->be.km_cert(ks->be.arg, norm, &c, errstr, errlen);
		if (st == KM_PERMFAIL) {
			bump(&ks->misses);
			keystore_l2_put(ks, &rc, K_CERT, norm, NULL, 0, 1,
			    ks->negative_ttl);
			if (ks->l1)
				memcache_put_negative(ks->l1, K_CERT, hash,
				    min_ms(ks->memory_ttl, ks->negative_ttl));
			return KM_PERMFAIL;
		}
		if (st != KM_OK) {
			bump(&ks->km_errors);
			log_warnx("keystore: %s: KM: %s", norm, errstr ?
			    errstr : km_status_name(st));
			return st;
		}
		if (ks->has_l2 && (dl = i2d_X509(c, &der)) > 0) {
			keystore_l2_put(ks, &rc, K_CERT, norm, der,
			    (size_t)dl, 0, ks->cert_ttl);
			OPENSSL_free(der);
		}
	}
	st = cert_result(c, norm, cert, errstr, errlen);
	if (ks->l1 == NULL || memcache_put(ks->l1, K_CERT, hash, c,
	    x509_free_cb, min_ms(ks->memory_ttl, ks->cert_ttl)) != KM_OK)
		X509_free(c);
	return st;
}

/* ---- decryption keys ---- */

/* raw_set - the set of generations as the KM holds it: L2, else KM */
static enum km_status
raw_set(struct keystore *ks, struct revc *rc, const char *norm,
    const char *hash, struct keymodel_gen **g, size_t *n, char *errstr,
    size_t errlen)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	struct keymodel_gen *kg = NULL;
	size_t kn = 0;
	int neg = 0;
	char why[160];
	enum km_status st;

	if (ks->has_l2) {
		st = keystore_l2_get(ks, rc, K_KEYS, norm, hash, &buf, &len,
		    &neg);
		if (st == KM_OK && neg) {
			secmem_free(buf, len);
			bump(&ks->l2_hits);
			bump(&ks->negative_hits);
			seterr(errstr, errlen, "no keys for %s", norm);
			return KM_PERMFAIL;
		}
		if (st == KM_OK) {
			st = keystore_entry_decode(buf, len, g, n, why,
			    sizeof(why));
			secmem_free(buf, len);
			if (st == KM_OK) {
				bump(&ks->l2_hits);
				return KM_OK;
			}
			if (st == KM_NOMEM)
				return st;
			log_warnx("keystore: %s: bad key set in L2 (%s), "
			    "deleted", norm, why);
			ks->be.l2_del(ks->be.arg, K_KEYS, norm);
		}
	}
	if (!ks->has_km) {
		seterr(errstr, errlen, "no KM configured");
		return KM_PERMFAIL;
	}
	bump(&ks->km_fetches);
	st = ks->be.km_keys(ks->be.arg, norm, &kg, &kn, errstr, errlen);
	if (st == KM_OK && kn == 0) {
		ks->be.km_gens_free(ks->be.arg, kg, kn);
		seterr(errstr, errlen, "no keys for %s", norm);
		st = KM_PERMFAIL;
	}
	if (st == KM_PERMFAIL) {
		bump(&ks->misses);
		keystore_l2_put(ks, rc, K_KEYS, norm, NULL, 0, 1,
		    ks->negative_ttl);
		return st;
	}
	if (st != KM_OK) {
		bump(&ks->km_errors);
		log_warnx("keystore: %s: KM: %s", norm, errstr ? errstr :
		    km_status_name(st));
		return st;
	}
	/* One code path from here: encode, then decode our own copy. */
	st = keystore_entry_encode(kg, kn, &buf, &len);
	ks->be.km_gens_free(ks->be.arg, kg, kn);
	if (st != KM_OK) {
		seterr(errstr, errlen, "cannot encode key set");
		return st;
	}
	st = keystore_entry_decode(buf, len, g, n, errstr, errlen);
	if (st == KM_OK)
		keystore_l2_put(ks, rc, K_KEYS, norm, buf, len, 0, ks->key_ttl);
	secmem_free(buf, len);
	return st;
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
    const char *hash, const char *why, int remember, int to_l2,
    char *errstr, size_t errlen)
{
	struct keyset *s;

	bump(&ks->hook_locked);
	seterr(errstr, errlen, "locked: %s", why);
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

/* keystore_get_keys - every usable decryption key of addr */
enum km_status
keystore_get_keys(struct keystore *ks, const char *addr, const char *queue_id,
    struct keystore_key **keys, size_t *n, char *errstr, size_t errlen)
{
	char norm[KEYMODEL_ADDR_MAX + 1], hash[SEAL_HASH_HEXLEN + 1];
	char why[REASON_MAX] = "";
	struct memcache_ref *ref;
	struct keymodel_gen *g = NULL;
	struct keyset *s = NULL;
	size_t gn = 0;
	int enhanced = 0, need_hook = 0, unlocked = 0, wrongpw = 0;
	struct revc rc;
	int64_t ttl;
	enum km_status st;

	*keys = NULL;
	*n = 0;
	if ((st = prepare(ks, addr, norm, sizeof(norm), hash, errstr,
	    errlen)) != KM_OK)
		return st;
	if (l1_get(ks, K_KEYS, hash, &ref) == KM_OK) {
		const struct keyset *ls = memcache_value(ref);

		bump(&ks->l1_hits);
		if (memcache_is_negative(ref) || ls->locked)
			bump(&ks->negative_hits);
		if (memcache_is_negative(ref)) {
			seterr(errstr, errlen, "no keys for %s", norm);
			st = KM_PERMFAIL;
		} else if (ls->locked) {
			seterr(errstr, errlen, "locked: %s", ls->reason);
			st = KM_PERMFAIL;
		} else
			st = keys_copy(ls, keys, n);
		memcache_release(ref);
		return st;
	}
	(void)keystore_revc(ks, norm, hash, &rc);
	st = raw_set(ks, &rc, norm, hash, &g, &gn, errstr, errlen);
	if (st == KM_PERMFAIL && ks->has_km && ks->l1 != NULL)
		memcache_put_negative(ks->l1, K_KEYS, hash,
		    min_ms(ks->memory_ttl, ks->negative_ttl));
	if (st != KM_OK)
		return st;
	for (size_t i = 0; i < gn; i++)
		if (g[i].enhanced)
			enhanced = 1;
	if ((st = keystore_release_check(ks, norm, hash, enhanced, queue_id,
	    errstr, errlen)) != KM_OK)
		goto out;
	if (enhanced) {
		if (keystore_locked_lookup(ks, &rc, norm, hash, why,
		    sizeof(why))) {
			st = locked_result(ks, &rc, norm, hash, why, 1, 0,
			    errstr, errlen);
			goto out;
		}
		keystore_use_unlocked(ks, &rc, norm, hash, g, gn);
		for (size_t i = 0; i < gn; i++)
			if (g[i].enhanced && g[i].key == NULL)
				need_hook = 1;
		if (need_hook) {
			st = keystore_unlock(ks, &rc, norm, queue_id, g, gn,
			    &wrongpw, why, sizeof(why));
			if (st == KM_TEMPFAIL) {
				seterr(errstr, errlen, "%s", why);
				goto out;
			}
			if (st == KM_PERMFAIL) {
				st = locked_result(ks, &rc, norm, hash, why,
				    wrongpw, 1, errstr, errlen);
				log_info("%s keystore: %s: key locked: %s",
				    queue_id ? queue_id : "-", norm, why);
				goto out;
			}
			if (st != KM_OK) {
				seterr(errstr, errlen, "%s", why);
				goto out;
			}
			bump(&ks->hook_unlocked);
			log_info("%s keystore: %s: key unlocked by hook",
			    queue_id ? queue_id : "-", norm);
		}
		unlocked = 1;
	}
	if ((s = build_set(g, gn)) == NULL) {
		seterr(errstr, errlen, "out of memory");
		st = KM_NOMEM;
		goto out;
	}
	if ((st = keys_copy(s, keys, n)) != KM_OK) {
		seterr(errstr, errlen, "out of memory");
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

/* ---- signing keys ---- */

/* signer_out - hand out new references of a cached signer */
static enum km_status
signer_out(const struct signer *s, const char *norm, X509 **cert,
    EVP_PKEY **key, STACK_OF(X509) **chain, char *errstr, size_t errlen)
{
	STACK_OF(X509) *ch = NULL;

	if (X509_cmp_time(X509_get0_notAfter(s->cert), NULL) <= 0) {
		seterr(errstr, errlen, "signing certificate for %s expired",
		    norm);
		return KM_PERMFAIL;
	}
	if (chain != NULL) {
		ch = s->chain ? X509_chain_up_ref(s->chain) : sk_X509_new_null();
		if (ch == NULL) {
			seterr(errstr, errlen, "out of memory");
			return KM_NOMEM;
		}
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
    EVP_PKEY **key, STACK_OF(X509) **chain, char *errstr, size_t errlen)
{
	char norm[KEYMODEL_ADDR_MAX + 1], hash[SEAL_HASH_HEXLEN + 1];
	struct memcache_ref *ref;
	struct signer *s;
	enum km_status st;

	*cert = NULL;
	*key = NULL;
	if (chain != NULL)
		*chain = NULL;
	if ((st = prepare(ks, addr, norm, sizeof(norm), hash, errstr,
	    errlen)) != KM_OK)
		return st;
	if (l1_get(ks, K_SIGNER, hash, &ref) == KM_OK) {
		bump(&ks->l1_hits);
		if (memcache_is_negative(ref)) {
			bump(&ks->negative_hits);
			seterr(errstr, errlen, "no signing key for %s here",
			    norm);
			st = KM_PERMFAIL;
		} else
			st = signer_out(memcache_value(ref), norm, cert, key,
			    chain, errstr, errlen);
		memcache_release(ref);
		return st;
	}
	if (ks->be.signer == NULL) {
		seterr(errstr, errlen, "no signing store");
		return KM_PERMFAIL;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		seterr(errstr, errlen, "out of memory");
		return KM_NOMEM;
	}
	st = ks->be.signer(ks->be.arg, norm, &s->cert, &s->key, &s->chain,
	    errstr, errlen);
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
	st = signer_out(s, norm, cert, key, chain, errstr, errlen);
	if (ks->l1 == NULL || memcache_put(ks->l1, K_SIGNER, hash, s,
	    signer_free, (int64_t)ks->memory_ttl * 1000) != KM_OK)
		signer_free(s);
	return st;
}

/* ---- administration ---- */

/* keystore_invalidate - drop L1 and L2 entries of addr and publish */
void
keystore_invalidate(struct keystore *ks, const char *addr)
{
	char norm[KEYMODEL_ADDR_MAX + 1], hash[SEAL_HASH_HEXLEN + 1];
	char why[160];
	enum km_status st;

	if (addr == NULL || keymodel_addr_normalize(addr, norm, sizeof(norm),
	    why, sizeof(why)) != KM_OK ||
	    seal_name_hash(ks->seal, norm, hash) != KM_OK) {
		log_warnx("keystore: invalidate: malformed address");
		return;
	}
	bump(&ks->invalidations);
	if (ks->l1 != NULL)
		memcache_invalidate(ks->l1, hash);
	memcache_invalidate(ks->released, hash);
	memcache_invalidate(ks->revc, hash);
	if (!ks->has_l2)
		return;
	ks->be.l2_del(ks->be.arg, K_UNLOCKED, norm);
	ks->be.l2_del(ks->be.arg, K_LOCKED, norm);
	if ((st = ks->be.l2_invalidate(ks->be.arg, norm)) != KM_OK)
		log_warnx("keystore: %s: invalidation not published: %s",
		    norm, km_status_name(st));
}

/* keystore_stats - a snapshot of the counters */
void
keystore_stats(struct keystore *ks, struct keystore_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->l1_hits = atomic_load(&ks->l1_hits);
	out->l2_hits = atomic_load(&ks->l2_hits);
	out->km_fetches = atomic_load(&ks->km_fetches);
	out->misses = atomic_load(&ks->misses);
	out->negative_hits = atomic_load(&ks->negative_hits);
	out->km_errors = atomic_load(&ks->km_errors);
	out->l2_errors = atomic_load(&ks->l2_errors);
	out->hook_calls = atomic_load(&ks->hook_calls);
	out->hook_unlocked = atomic_load(&ks->hook_unlocked);
	out->hook_locked = atomic_load(&ks->hook_locked);
	out->invalidations = atomic_load(&ks->invalidations);
	out->lookups = atomic_load(&ks->lookups);
	out->revc_fetches = atomic_load(&ks->revc_fetches);
	out->l2_stale = atomic_load(&ks->l2_stale);
}
