/*
 * keystore.c - the key lookup facade: L1 (memcache) -> L2 (Redis, sealed)
 * -> KM (keymodel): construction of the handle and its default back end,
 * invalidation, counters.  The lookups are in keystore_cert.c,
 * keystore_keys.c and keystore_signer.c, the path they share (address,
 * L1, revocation counter, L2) in keystore_lookup.c, the admin hook for
 * password-protected keys in keystore_hook.c, the L2 entry format in
 * keystore_entry.c, certificate checks in keystore_certcheck.c.
 * See keystore.h and docs/keystore.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "cache.h"
#include "cache_conn.h"
#include "certdir.h"
#include "conf.h"
#include "hook.h"
#include "keymodel.h"
#include "keymodel_name.h"
#include "keymodel_ban.h"
#include "keystore.h"
#include "keystore_int.h"
#include "log.h"
#include "memcache.h"
#include "seal.h"
#include "secmem.h"
#include "signstore.h"

#define RELEASE_ENTRIES	10000

/* ---- default backend: the real KM, signstore, Redis and hook ---- */

/* real_km_cert - keymodel_current_cert */
static enum km_status
real_km_cert(void *arg, const char *addr, X509 **out, struct kmerr *err)
{
	struct keystore *ks = arg;

	return keymodel_current_cert(ks->km, addr, out, err);
}

/* real_km_keys - keymodel_decryption_keys */
static enum km_status
real_km_keys(void *arg, const char *addr, struct keymodel_gen **out,
    size_t *n, struct kmerr *err)
{
	struct keystore *ks = arg;

	return keymodel_decryption_keys(ks->km, addr, out, n, err);
}

/* real_km_revcount - keymodel_revocation_count */
static enum km_status
real_km_revcount(void *arg, const char *addr, uint32_t *count,
    struct kmerr *err)
{
	struct keystore *ks = arg;

	return keymodel_revocation_count(ks->km, addr, count, err);
}

/* real_km_gens_free - keymodel_gens_free */
static void
real_km_gens_free(void *arg, struct keymodel_gen *g, size_t n)
{
	(void)arg;
	keymodel_gens_free(g, n);
}

/* keystore_gateway_retired - KM_PERMFAIL (KMERR_REFUSED) when this
 * gateway is retired in the KM (keymodel_ban.h); KM_OK otherwise, also
 * when there is no KM or it cannot be asked (logged: the signing keys
 * are local, a KM outage does not stop signing) */
enum km_status
keystore_gateway_retired(struct keystore *ks, struct kmerr *err)
{
	struct kmerr e;
	int retired = 0;

	if (!ks->has_km || ks->km == NULL || ks->gateway == NULL)
		return KM_OK;
	if (keymodel_gateway_retired(ks->km, ks->gateway, &retired, &e) !=
	    KM_OK) {
		log_warnx("keystore: cannot tell whether gateway %s is retired: "
		    "%s", ks->gateway, e.msg);
		return KM_OK;
	}
	if (retired)
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "gateway %s is retired (kmctl retire-gateway): its signing "
		    "keys are not used", ks->gateway);
	return KM_OK;
}

/* may_sign - KM_PERMFAIL (KMERR_REFUSED) when this gateway is retired or
 * addr banned in the KM (keymodel_ban.h); KM_OK otherwise, also when the
 * KM cannot be asked (logged: the signing keys are local) */
static enum km_status
may_sign(struct keystore *ks, const char *addr, struct kmerr *err)
{
	struct kmerr e;
	enum km_status st;

	if (!ks->has_km || ks->km == NULL || ks->gateway == NULL)
		return KM_OK;
	if ((st = keymodel_may_sign(ks->km, ks->gateway, addr, &e)) == KM_OK)
		return KM_OK;
	if (st == KM_PERMFAIL && kmerr_is(&e, KMERR_REFUSED)) {
		if (err != NULL)
			*err = e;
		return st;
	}
	log_warnx("keystore: %s: cannot tell whether gateway %s is retired or "
	    "the address banned: %s", addr, ks->gateway, e.msg);
	return KM_OK;
}

/* real_signer - signstore_open from the state directory, unless the KM
 * says this gateway is retired or addr banned */
static enum km_status
real_signer(void *arg, const char *addr, X509 **cert, EVP_PKEY **key,
    unsigned char **enc, size_t *enclen, STACK_OF(X509) **chain,
    struct kmerr *err)
{
	struct keystore *ks = arg;

	if (ks->seal_err[0] != '\0')
		return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no signing key for %s here: %s",
		    addr, ks->seal_err);
	if (may_sign(ks, addr, err) != KM_OK) {
		log_warnx("keystore: %s: %s", addr, err->msg);
		return KM_PERMFAIL;
	}
	return signstore_open(ks->state_dir, ks->seal, addr, cert, key, enc,
	    enclen, chain, err);
}

/* real_signer_rewrap - signstore_rewrap in the state directory */
static enum km_status
real_signer_rewrap(void *arg, const char *addr, const char *oldpw,
    size_t oldlen, const char *newpw, size_t newlen, struct kmerr *err)
{
	struct keystore *ks = arg;
	int changed;

	if (ks->seal == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE, "no seal key");
	return signstore_rewrap(ks->state_dir, ks->seal, addr, oldpw, oldlen,
	    newpw, newlen, &changed, err);
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

/* ---- construction ---- */

/* read_secret_file - read a short secret file (password) into secmem */
static char *
read_secret_file(const char *path, struct kmerr *err)
{
	char buf[512], *s;
	ssize_t r;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s: %s", path, strerror(errno));
		return NULL;
	}
	r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r < 0) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s: %s", path, strerror(errno));
		return NULL;
	}
	buf[r] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	s = secmem_strdup(buf);
	secmem_wipe(buf, sizeof(buf));
	if (s == NULL)
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
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
    struct kmerr *err)
{
	char path[1024];
	struct kmerr why;
	unsigned char ikm[SEAL_KEY_LEN];

	kmerr_clear(&why);
	if (signstore_seal_key_path(conf, path, sizeof(path)) == KM_OK)
		ks->seal = seal_key_load(path, &why);
	else
		kmerr_set(&why, KM_PERMFAIL, KMERR_NONE,
		    "seal key path too long");
	if (ks->seal != NULL)
		return 0;
	if (need) {
		kmerr_set(err, why.status, why.reason, "seal key: %s",
		    why.msg);
		return -1;
	}
	/* No Redis: the key only names L1 entries, any key will do; the
	 * signing store cannot be opened without the real one. */
	snprintf(ks->seal_err, sizeof(ks->seal_err), "seal key: %.127s",
	    why.msg);
	if (RAND_priv_bytes(ikm, sizeof(ikm)) != 1) {
		kmerr_set(err, KM_TEMPFAIL, KMERR_NONE,
		    "no randomness for a seal key");
		return -1;
	}
	ks->seal = seal_key_from_bytes(ikm, sizeof(ikm), err);
	OPENSSL_cleanse(ikm, sizeof(ikm));
	if (ks->seal == NULL)
		return -1;
	log_info("keystore: %s; no signing keys (L1 names use a "
	    "temporary key)", ks->seal_err);
	return 0;
}

/* l2_opts - the Redis options of conf into o; pw[0] the password read,
 * pw[1] the Sentinels' (secmem, or NULL) */
static int
l2_opts(const struct kmilter_conf *conf, struct cache_opts *o, char **pw,
    struct kmerr *err)
{
	memset(o, 0, sizeof(*o));
	pw[0] = pw[1] = NULL;
	o->sentinels = (const char *const *)conf->redis_sentinels;
	o->nsentinels = conf->redis_nsentinels;
	o->sentinel_master = conf->redis_sentinel_master;
	o->sentinel_timeout_ms = conf->redis_sentinel_timeout_ms;
	if (conf->redis_sentinel_password_file &&
	    *conf->redis_sentinel_password_file) {
		if ((pw[1] = read_secret_file(conf->redis_sentinel_password_file,
		    err)) == NULL)
			return -1;
		o->sentinel_password = pw[1];
	}
	o->unix_path = conf->redis_socket && *conf->redis_socket ?
	    conf->redis_socket : NULL;
	o->host = conf->redis_host && *conf->redis_host ? conf->redis_host :
	    NULL;
	o->port = conf->redis_port;
	o->database = conf->redis_database;
	o->connect_timeout_ms = conf->redis_connect_timeout_ms;
	o->command_timeout_ms = conf->redis_command_timeout_ms;
	if (conf->redis_password_file && *conf->redis_password_file) {
		if ((pw[0] = read_secret_file(conf->redis_password_file,
		    err)) == NULL)
			return -1;
		o->password = pw[0];
	}
	return 0;
}

/* keystore_check_redis - connect, AUTH, SELECT and PING as the cache would */
int
keystore_check_redis(const struct kmilter_conf *conf, struct kmerr *err)
{
	struct cache_conn_guard g;
	struct cache_conn cn;
	struct cache_opts o;
	redisContext *ctx = NULL;
	redisReply *r = NULL;
	char *pw[2] = { NULL, NULL };
	int rc = -1;

	if (l2_opts(conf, &o, pw, err) != 0 || cache_conn_init(&cn, &o, err) != 0)
		goto out;
	if ((ctx = cache_conn_open(&cn, err)) != NULL) {
		cache_conn_guard_begin(&g);
		r = redisCommand(ctx, "PING");
		cache_conn_guard_end(&g);
		if (r == NULL || r->type == REDIS_REPLY_ERROR)
			kmerr_set(err, KM_TEMPFAIL, KMERR_UNREACHABLE, "PING: %.80s",
			    r ? r->str : ctx->errstr);
		else
			rc = 0;
	}
	cache_conn_clear(&cn);
out:
	if (r != NULL)
		freeReplyObject(r);
	if (ctx != NULL)
		redisFree(ctx);
	secmem_strfree(pw[0]);
	secmem_strfree(pw[1]);
	return rc;
}

/* start_l2 - connect the Redis cache and its invalidation subscriber */
static int
start_l2(struct keystore *ks, const struct kmilter_conf *conf,
    struct kmerr *err)
{
	struct cache_opts o;
	struct kmerr why;
	char *pw[2] = { NULL, NULL };
	int rc = -1;

	if (l2_opts(conf, &o, pw, err) != 0)
		goto out;
	o.key = ks->seal;
	if ((ks->cache = cache_new(&o, err)) == NULL)
		goto out;
	ks->sub = cache_subscribe(ks->cache, on_invalidate, ks, &why);
	if (ks->sub == NULL)
		log_warnx("keystore: no invalidation subscriber: %s", why.msg);
	rc = 0;
out:
	secmem_strfree(pw[0]);
	secmem_strfree(pw[1]);
	return rc;
}

/* start_hook - the admin hook of the configuration */
static int
start_hook(struct keystore *ks, const struct kmilter_conf *conf,
    struct kmerr *err)
{
	struct hook_opts ho;

	memset(&ho, 0, sizeof(ho));
	ho.path = conf->hook_path;
	ho.timeout_ms = conf->hook_timeout_ms;
	ho.max_running = conf->hook_max_running;
	ho.on_failure_unlock = conf->hook_on_failure ==
	    HOOKFAIL_TEMPFAIL ? HOOK_ACTION_TEMPFAIL :
	    HOOK_ACTION_KEEP_ENCRYPTED;
	ho.on_failure_release = HOOK_ACTION_DENY;
	if ((ks->hook = hook_new(&ho, err)) == NULL)
		return -1;
	return 0;
}

/* real_dir_cert - the directories of the configuration */
static enum km_status
real_dir_cert(void *arg, const char *addr, X509 **out, struct kmerr *err)
{
	struct keystore *ks = arg;

	return certdir_lookup(ks->dirs, addr, out, err);
}

/* use_real_backend - the default back end: signstore, the hook, the KM
 * servers of the configuration and Redis (when want_l2) */
static int
use_real_backend(struct keystore *ks, const struct kmilter_conf *conf,
    int want_l2, struct kmerr *err)
{
	ks->be.arg = ks;
	ks->be.signer = real_signer;
	ks->be.signer_rewrap = real_signer_rewrap;
	if (ks->hook != NULL)
		ks->be.hook_ask = keystore_real_hook_ask;
	if ((ks->dirs = certdir_new(conf, err)) == NULL)
		return -1;
	ks->be.dir_cert = real_dir_cert;
	if (conf->km_nservers > 0) {
		if ((ks->km = keymodel_new(conf, err)) == NULL)
			return -1;
		ks->be.km_cert = real_km_cert;
		ks->be.km_keys = real_km_keys;
		ks->be.km_gens_free = real_km_gens_free;
		ks->be.km_revcount = real_km_revcount;
		ks->has_km = 1;
	}
	if (want_l2) {
		if (start_l2(ks, conf, err) < 0)
			return -1;
		ks->be.l2_get = real_l2_get;
		ks->be.l2_put = real_l2_put;
		ks->be.l2_del = real_l2_del;
		ks->be.l2_invalidate = real_l2_invalidate;
		ks->has_l2 = 1;
	}
	return 0;
}

/* keystore_new_backend - a keystore over the given backend functions */
struct keystore *
keystore_new_backend(const struct kmilter_conf *conf,
    const struct keystore_backend *be, struct kmerr *err)
{
	struct keystore *ks;
	int want_l2 = (conf->redis_socket && *conf->redis_socket) ||
	    (conf->redis_host && *conf->redis_host) ||
	    conf->redis_nsentinels > 0;

	if ((ks = calloc(1, sizeof(*ks))) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
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
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		goto fail;
	}
	if (load_seal(ks, conf, be == NULL && want_l2, err) < 0)
		goto fail;
	if (conf->memory_entries > 0 && (ks->l1 = memcache_new(
	    (size_t)conf->memory_entries, be ? be->clock_ms : NULL,
	    be ? be->arg : NULL)) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		goto fail;
	}
	if ((ks->released = memcache_new(RELEASE_ENTRIES,
	    be ? be->clock_ms : NULL, be ? be->arg : NULL)) == NULL ||
	    (ks->revc = memcache_new(REVC_ENTRIES, be ? be->clock_ms : NULL,
	    be ? be->arg : NULL)) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		goto fail;
	}
	if (conf->hook_path && *conf->hook_path &&
	    (be == NULL || be->hook_ask == NULL) &&
	    start_hook(ks, conf, err) < 0)
		goto fail;
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
	if (use_real_backend(ks, conf, want_l2, err) < 0)
		goto fail;
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
keystore_new(const struct kmilter_conf *conf, struct kmerr *err)
{
	return keystore_new_backend(conf, NULL, err);
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
	ks->dirs = certdir_free(ks->dirs);
	ks->l1 = memcache_free(ks->l1);
	ks->released = memcache_free(ks->released);
	ks->revc = memcache_free(ks->revc);
	ks->seal = seal_key_free(ks->seal);
	free(ks->state_dir);
	free(ks->gateway);
	free(ks);
	return NULL;
}

/* ---- administration ---- */

/* keystore_invalidate - drop L1 and L2 entries of addr and publish */
enum km_status
keystore_invalidate(struct keystore *ks, const char *addr)
{
	char norm[KEYMODEL_ADDR_MAX + 1], hash[SEAL_HASH_HEXLEN + 1];
	enum km_status st;

	if (addr == NULL || keymodel_addr_normalize(addr, norm, sizeof(norm),
	    NULL) != KM_OK ||
	    seal_name_hash(ks->seal, norm, hash) != KM_OK) {
		log_warnx("keystore: invalidate: malformed address");
		return KM_PROTO;
	}
	bump(&ks->invalidations);
	if (ks->l1 != NULL)
		memcache_invalidate(ks->l1, hash);
	memcache_invalidate(ks->released, hash);
	memcache_invalidate(ks->revc, hash);
	if (!ks->has_l2)
		return KM_OK;
	ks->be.l2_del(ks->be.arg, K_UNLOCKED, norm);
	ks->be.l2_del(ks->be.arg, K_LOCKED, norm);
	if ((st = ks->be.l2_invalidate(ks->be.arg, norm)) != KM_OK)
		log_warnx("keystore: %s: invalidation not published: %s",
		    norm, km_status_name(st));
	return st;
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
