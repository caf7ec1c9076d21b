/*
 * cache.c - the shared (L2) Redis cache of sealed entries: get, put, delete
 * and invalidate over a connection pool with timeouts and outage back-off
 * (see cache.h; connections in cache_conn.c, the subscriber in cache_sub.c).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cache.h"
#include "cache_conn.h"
#include "clock.h"
#include "log.h"
#include "secmem.h"

#define CACHE_POOL_MAX	64

struct cache {
	struct cache_conn	 conn;
	const struct seal_key	*key;
	pthread_mutex_t		 mtx;
	redisContext		*idle[CACHE_POOL_MAX];
	int			 nidle, pool_size;
	struct cache_health		 health;
	int64_t			 last_refused;	/* ms of the last error-reply line */
	unsigned		 gen;		/* master generation of the pool */
};

/* drop_idle - close every pooled connection (locked) */
static void
drop_idle(struct cache *c)
{
	while (c->nidle > 0)
		redisFree(c->idle[--c->nidle]);
}

/* follow - the master moved (Sentinels): drop the pool's connections to
 * the old one and end the back-off, the new one is worth a try (locked) */
static void
follow(struct cache *c)
{
	unsigned gen = cache_conn_follow(&c->conn);

	if (gen == c->gen)
		return;
	c->gen = gen;
	drop_idle(c);
	if (c->health.down && !c->health.probing)
		c->health.retry_at = 0;
}

/* acquire - a pooled or new connection, or NULL while backing off; *gen
 * is the master generation it belongs to (for release) */
static redisContext *
acquire(struct cache *c, int *fresh, unsigned *gen)
{
	redisContext *ctx;
	struct kmerr err;

	pthread_mutex_lock(&c->mtx);
	follow(c);
	*gen = c->gen;
	if (c->nidle > 0) {
		ctx = c->idle[--c->nidle];
		pthread_mutex_unlock(&c->mtx);
		*fresh = 0;
		return ctx;
	}
	if (c->health.down) {
		if (c->health.probing || clock_ms() < c->health.retry_at) {
			c->health.failures++;
			pthread_mutex_unlock(&c->mtx);
			return NULL;
		}
		c->health.probing = 1;	/* this thread probes; others wait */
	}
	pthread_mutex_unlock(&c->mtx);

	ctx = cache_conn_open(&c->conn, &err);
	*fresh = 1;
	pthread_mutex_lock(&c->mtx);
	if (ctx == NULL)
		cache_conn_health_fail(&c->health, &c->conn, "connect",
		    err.msg);
	else
		c->health.probing = 0;
	pthread_mutex_unlock(&c->mtx);
	return ctx;
}

/* release - give a healthy connection back to the pool, unless the master
 * moved since it was acquired (generation gen): then it goes to the old one */
static void
release(struct cache *c, redisContext *ctx, unsigned gen)
{
	pthread_mutex_lock(&c->mtx);
	cache_conn_health_ok(&c->health, &c->conn);
	follow(c);
	if (gen == c->gen && c->nidle < c->pool_size) {
		c->idle[c->nidle++] = ctx;
		ctx = NULL;
	}
	pthread_mutex_unlock(&c->mtx);
	if (ctx != NULL)
		redisFree(ctx);
}

/* refused - Redis answered a command with an error reply.  Access errors
 * (no or wrong password, ACL) are a configuration outage: back off and log
 * once.  READONLY is a replica: never written to, the master has moved
 * (the Sentinels are asked again), an outage until it is found.  Others (OOM, WRONGTYPE) keep the connection; their log line is
 * rate-limited like an outage. */
static enum km_status
refused(struct cache *c, redisContext *ctx, unsigned gen, const char *what, const char *msg)
{
	char reason[128];
	int64_t now = clock_ms();

	snprintf(reason, sizeof(reason), "%s refused: %.100s", what, msg);
	if (strncmp(msg, "READONLY", 8) == 0)
		cache_conn_reject(&c->conn, ctx, "it answered READONLY");
	if (strncmp(msg, "NOAUTH", 6) == 0 || strncmp(msg, "WRONGPASS", 9) == 0 ||
	    strncmp(msg, "NOPERM", 6) == 0 || strncmp(msg, "READONLY", 8) == 0) {
		redisFree(ctx);
		pthread_mutex_lock(&c->mtx);
		drop_idle(c);
		cache_conn_health_fail(&c->health, &c->conn, "access", reason);
		/* The master moved: worth asking the Sentinels at once. */
		if (strncmp(msg, "READONLY", 8) == 0)
			c->health.retry_at = 0;
		pthread_mutex_unlock(&c->mtx);
		return KM_TEMPFAIL;
	}
	pthread_mutex_lock(&c->mtx);
	if (c->last_refused == 0 ||
	    now - c->last_refused >= CACHE_OUTAGE_LOG_INTERVAL * 1000) {
		c->last_refused = now;
		log_warnx("cache: redis %s: %s", c->conn.where, reason);
	}
	pthread_mutex_unlock(&c->mtx);
	release(c, ctx, gen);
	return KM_PROTO;
}

/* run - one command; *reply is set on KM_OK.  KM_PROTO: Redis refused this
 * command with an error reply other than an access error; KM_TEMPFAIL:
 * unavailable, slow, or access refused. */
static enum km_status
run(struct cache *c, const char *what, int argc, const char **argv,
    const size_t *argvlen, redisReply **reply)
{
	struct cache_conn_guard g;
	redisContext *ctx;
	redisReply *r;
	enum km_status st;
	char err[160];
	int fresh, attempt;
	unsigned gen;

	*reply = NULL;
	for (attempt = 0; attempt < 2; attempt++) {
		if ((ctx = acquire(c, &fresh, &gen)) == NULL)
			return KM_TEMPFAIL;
		cache_conn_guard_begin(&g);
		r = redisCommandArgv(ctx, argc, argv, argvlen);
		cache_conn_guard_end(&g);
		if (r != NULL) {
			if (r->type == REDIS_REPLY_ERROR) {
				st = refused(c, ctx, gen, what, r->str);
				freeReplyObject(r);
				return st;
			}
			release(c, ctx, gen);
			*reply = r;
			return KM_OK;
		}
		snprintf(err, sizeof(err), "%s", cache_conn_timed_out(ctx) ?
		    "no answer within the command timeout" : ctx->errstr);
		/* A pooled connection that the server closed (restart,
		 * idle timeout) is retried once on a fresh connection. */
		if (!fresh && !cache_conn_timed_out(ctx)) {
			redisFree(ctx);
			continue;
		}
		redisFree(ctx);
		pthread_mutex_lock(&c->mtx);
		drop_idle(c);
		cache_conn_health_fail(&c->health, &c->conn, what, err);
		pthread_mutex_unlock(&c->mtx);
		return KM_TEMPFAIL;
	}
	/* Two stale connections in a row: the server is going away. */
	pthread_mutex_lock(&c->mtx);
	drop_idle(c);
	cache_conn_health_fail(&c->health, &c->conn, what, "connection lost");
	pthread_mutex_unlock(&c->mtx);
	return KM_TEMPFAIL;
}

/* cache_new - a cache handle; does not connect; NULL with err set */
struct cache *
cache_new(const struct cache_opts *opts, struct kmerr *err)
{
	struct cache *c;

	if (opts == NULL || opts->key == NULL) {
		kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "cache: no seal key");
		return NULL;
	}
	if (opts->pool_size < 0 || opts->pool_size > CACHE_POOL_MAX) {
		kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "cache: pool size must be 0..%d", CACHE_POOL_MAX);
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return NULL;
	}
	if (cache_conn_init(&c->conn, opts, err) == -1) {
		free(c);
		return NULL;
	}
	if (pthread_mutex_init(&c->mtx, NULL) != 0) {
		cache_conn_clear(&c->conn);
		free(c);
		kmerr_set(err, KM_TEMPFAIL, KMERR_NONE,
		    "cache: mutex init failed");
		return NULL;
	}
	c->key = opts->key;
	c->pool_size = opts->pool_size ? opts->pool_size : CACHE_DEFAULT_POOL;
	return c;
}

/* cache_subscribe - cache_subscribe_start() on the cache's own options,
 * sharing its Sentinel state */
struct cache_sub *
cache_subscribe(struct cache *c, cache_invalidate_fn fn, void *arg,
    struct kmerr *err)
{
	return cache_sub_start_conn(&c->conn, fn, arg, err);
}

/* cache_free - close the pool and free the handle; returns NULL */
struct cache *
cache_free(struct cache *c)
{
	if (c == NULL)
		return NULL;
	drop_idle(c);
	pthread_mutex_destroy(&c->mtx);
	cache_conn_clear(&c->conn);
	free(c);
	return NULL;
}

/* del_name - DEL one entry by its name */
static enum km_status
del_name(struct cache *c, const char *name)
{
	const char *argv[2] = { "DEL", name };
	size_t lens[2] = { 3, strlen(name) };
	redisReply *r;
	enum km_status st;

	if ((st = run(c, "DEL", 2, argv, lens, &r)) == KM_OK)
		freeReplyObject(r);
	return st == KM_PROTO ? KM_TEMPFAIL : st;
}

/* cache_get - look up (kind, addr): hit, negative hit, miss or tempfail */
enum km_status
cache_get(struct cache *c, const char *kind, const char *addr,
    unsigned char **buf, size_t *len, int *negative)
{
	char name[SEAL_NAME_MAX];
	struct kmerr serr;
	const char *err = serr.msg;
	const char *argv[2];
	size_t lens[2];
	redisReply *r;
	unsigned char *plain = NULL;
	size_t plen = 0;
	unsigned flags = 0;
	enum km_status st;

	*buf = NULL;
	*len = 0;
	if (negative != NULL)
		*negative = 0;
	if (c == NULL)
		return KM_PROTO;
	if ((st = seal_entry_name(c->key, kind, addr, name)) != KM_OK)
		return st;
	argv[0] = "GET";
	argv[1] = name;
	lens[0] = 3;
	lens[1] = strlen(name);
	if ((st = run(c, "GET", 2, argv, lens, &r)) == KM_PROTO) {
		/* e.g. WRONGTYPE: whatever sits under our name is not ours */
		log_warnx("cache: bad entry %s for kind %s: GET refused; "
		    "deleted", name, kind);
		del_name(c, name);
		return KM_PERMFAIL;
	}
	if (st != KM_OK)
		return st;
	if (r->type == REDIS_REPLY_NIL) {
		freeReplyObject(r);
		return KM_PERMFAIL;
	}
	if (r->type != REDIS_REPLY_STRING) {
		log_warnx("cache: entry %.20s...: unexpected reply type %d, "
		    "deleting it", name, r->type);
		freeReplyObject(r);
		del_name(c, name);
		return KM_PERMFAIL;
	}
	st = seal_open(c->key, name, (const unsigned char *)r->str,
	    (size_t)r->len, (int64_t)time(NULL), &plain, &plen, &flags, NULL,
	    &serr);
	freeReplyObject(r);
	if (st == KM_NOMEM)
		return st;
	if (st != KM_OK) {
		/* Expired by its own timestamp, or a bad entry: either way
		 * it must go, and the caller sees a miss. */
		if (st == KM_PROTO)
			log_warnx("cache: bad entry %s for kind %s: %s; "
			    "deleted", name, kind, err);
		else
			log_debug(1, "cache: entry %s: %s; deleted", name, err);
		del_name(c, name);
		return KM_PERMFAIL;
	}
	if (flags & SEAL_NEGATIVE) {
		secmem_free(plain, plen);
		if (negative != NULL)
			*negative = 1;
		return KM_OK;
	}
	*buf = plain;
	*len = plen;
	return KM_OK;
}

/* put_sealed - seal and SET name value EX ttl */
static enum km_status
put_sealed(struct cache *c, const char *kind, const char *addr,
    const unsigned char *buf, size_t len, unsigned flags, int ttl)
{
	char name[SEAL_NAME_MAX], ttlbuf[16];
	struct kmerr serr;
	const char *argv[5];
	size_t lens[5];
	unsigned char *sealed = NULL;
	size_t slen = 0;
	redisReply *r;
	enum km_status st;

	if (c == NULL || ttl <= 0)
		return KM_PROTO;
	if ((st = seal_entry_name(c->key, kind, addr, name)) != KM_OK)
		return st;
	if ((st = seal_seal(c->key, name, buf, len, (int64_t)time(NULL) + ttl,
	    flags, &sealed, &slen, &serr)) != KM_OK) {
		log_warnx("cache: cannot seal entry %s: %s", name, serr.msg);
		return st;
	}
	snprintf(ttlbuf, sizeof(ttlbuf), "%d", ttl);
	argv[0] = "SET";
	argv[1] = name;
	argv[2] = (const char *)sealed;
	argv[3] = "EX";
	argv[4] = ttlbuf;
	lens[0] = 3;
	lens[1] = strlen(name);
	lens[2] = slen;
	lens[3] = 2;
	lens[4] = strlen(ttlbuf);
	st = run(c, "SET", 5, argv, lens, &r);
	free(sealed);
	if (st == KM_OK)
		freeReplyObject(r);
	return st == KM_PROTO ? KM_TEMPFAIL : st;
}

/* cache_put - store a sealed entry for ttl_seconds */
enum km_status
cache_put(struct cache *c, const char *kind, const char *addr,
    const unsigned char *buf, size_t len, int ttl_seconds)
{
	if (buf == NULL && len > 0)
		return KM_PROTO;
	return put_sealed(c, kind, addr, buf, len, 0, ttl_seconds);
}

/* cache_put_negative - store "no such key" for ttl_seconds */
enum km_status
cache_put_negative(struct cache *c, const char *kind, const char *addr,
    int ttl_seconds)
{
	return put_sealed(c, kind, addr, NULL, 0, SEAL_NEGATIVE, ttl_seconds);
}

/* cache_del - delete one entry */
enum km_status
cache_del(struct cache *c, const char *kind, const char *addr)
{
	char name[SEAL_NAME_MAX];
	enum km_status st;

	if (c == NULL)
		return KM_PROTO;
	if ((st = seal_entry_name(c->key, kind, addr, name)) != KM_OK)
		return st;
	return del_name(c, name);
}

/* cache_invalidate - delete every kind of addr and publish its hash */
enum km_status
cache_invalidate(struct cache *c, const char *addr)
{
	static const char *const kinds[] = CACHE_KINDS;
	char names[sizeof(kinds) / sizeof(kinds[0])][SEAL_NAME_MAX];
	char hash[SEAL_HASH_HEXLEN + 1];
	const char *argv[sizeof(kinds) / sizeof(kinds[0])];
	size_t lens[sizeof(kinds) / sizeof(kinds[0])];
	redisReply *r;
	enum km_status st;
	int n = 1;

	if (c == NULL)
		return KM_PROTO;
	if ((st = seal_name_hash(c->key, addr, hash)) != KM_OK)
		return st;
	argv[0] = "DEL";
	lens[0] = 3;
	for (int i = 0; kinds[i] != NULL; i++, n++) {
		if ((st = seal_entry_name(c->key, kinds[i], addr,
		    names[i])) != KM_OK)
			return st;
		argv[n] = names[i];
		lens[n] = strlen(names[i]);
	}
	if ((st = run(c, "DEL", n, argv, lens, &r)) != KM_OK)
		return st == KM_PROTO ? KM_TEMPFAIL : st;
	freeReplyObject(r);
	argv[0] = "PUBLISH";
	lens[0] = 7;
	argv[1] = CACHE_CHANNEL;
	lens[1] = strlen(CACHE_CHANNEL);
	argv[2] = hash;
	lens[2] = strlen(hash);
	if ((st = run(c, "PUBLISH", 3, argv, lens, &r)) != KM_OK)
		return st == KM_PROTO ? KM_TEMPFAIL : st;
	log_debug(1, "cache: invalidated %s, %lld subscribers told", hash,
	    r->type == REDIS_REPLY_INTEGER ? r->integer : -1LL);
	freeReplyObject(r);
	return KM_OK;
}
