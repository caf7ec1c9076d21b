/*
 * cache.c - the shared (L2) Redis cache of sealed entries, with a connection
 * pool, timeouts, outage back-off and the invalidation subscriber
 * (see cache.h).
 */
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "cache.h"
#include "clock.h"
#include "log.h"
#include "secmem.h"

#define CACHE_POOL_MAX	64

/* How to reach Redis: copied options shared by the pool and subscriber. */
struct conn {
	char		*host;
	int		 port;
	char		*unix_path;
	char		*password;	/* secmem */
	int		 database;
	struct timeval	 ctv, ttv;	/* connect, command timeouts */
	int		 backoff_min, backoff_max;
	char		 where[300];	/* for log lines: path or host:port */
};

/* Outage state: back-off and rate-limited logging. */
struct health {
	int		 down;		/* in an outage */
	int		 probing;	/* one thread is trying to reconnect */
	int64_t		 retry_at;	/* monotonic ms: no connect before */
	int		 backoff;	/* current back-off, ms */
	int64_t		 since;		/* monotonic ms the outage began */
	int64_t		 last_log;	/* monotonic ms of the last outage line */
	unsigned long	 failures;	/* failed calls during this outage */
};

struct cache {
	struct conn		 conn;
	const struct seal_key	*key;
	pthread_mutex_t		 mtx;
	redisContext		*idle[CACHE_POOL_MAX];
	int			 nidle, pool_size;
	struct health		 health;
	int64_t			 last_refused;	/* ms of the last error-reply line */
};

struct cache_sub {
	struct conn		 conn;
	cache_invalidate_fn	 fn;
	void			*arg;
	pthread_t		 tid;
	int			 wake[2];	/* self-pipe: stop request */
	struct health		 health;
};

/* seterr - format a reason into a caller's buffer (which may be NULL) */
static void KM_PRINTF(3, 4)
seterr(char *errstr, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errstr == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errstr, errlen, fmt, ap);
	va_end(ap);
}

/* ms_tv - a millisecond count as a struct timeval */
static struct timeval
ms_tv(int ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	return tv;
}

/*
 * A write to a connection that Redis closed raises SIGPIPE, which would kill
 * the whole process unless it ignores the signal.  Rather than change the
 * process's disposition from a library, each command runs with SIGPIPE
 * blocked in the calling thread; a SIGPIPE it caused is consumed before
 * the mask is restored (the write itself fails with EPIPE).
 */
struct pipe_guard {
	sigset_t	old;
	int		pending;	/* a SIGPIPE was pending before */
};

/* pipe_guard_begin - block SIGPIPE in this thread */
static void
pipe_guard_begin(struct pipe_guard *g)
{
	sigset_t set, pend;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, &g->old);
	sigpending(&pend);
	g->pending = sigismember(&pend, SIGPIPE) == 1;
}

/* pipe_guard_end - consume a SIGPIPE we caused and restore the mask */
static void
pipe_guard_end(struct pipe_guard *g)
{
	sigset_t set, pend;
	struct timespec zero = { 0, 0 };
	int saved = errno;

	if (!g->pending) {
		sigpending(&pend);
		if (sigismember(&pend, SIGPIPE) == 1) {
			sigemptyset(&set);
			sigaddset(&set, SIGPIPE);
			while (sigtimedwait(&set, NULL, &zero) == -1 &&
			    errno == EINTR)
				;
		}
	}
	pthread_sigmask(SIG_SETMASK, &g->old, NULL);
	errno = saved;
}

/* conn_clear - free the copied options */
static void
conn_clear(struct conn *cn)
{
	free(cn->host);
	free(cn->unix_path);
	secmem_strfree(cn->password);
	memset(cn, 0, sizeof(*cn));
}

/* conn_init - validate and copy the connection options */
static int
conn_init(struct conn *cn, const struct cache_opts *o, char *errstr,
    size_t errlen)
{
	int cms, tms;

	memset(cn, 0, sizeof(*cn));
	if (o == NULL) {
		seterr(errstr, errlen, "no cache options");
		return -1;
	}
	if (o->unix_path == NULL && (o->host == NULL || *o->host == '\0' ||
	    o->port <= 0 || o->port > 65535)) {
		seterr(errstr, errlen, "redis: need unix_path or host and a "
		    "port in 1..65535");
		return -1;
	}
	if (o->unix_path != NULL && (*o->unix_path == '\0' ||
	    strlen(o->unix_path) > 107)) {
		seterr(errstr, errlen, "redis: bad unix socket path");
		return -1;
	}
	if (o->database < 0 || o->database > 1000000 ||
	    o->connect_timeout_ms < 0 || o->command_timeout_ms < 0 ||
	    o->backoff_min_ms < 0 || o->backoff_max_ms < 0) {
		seterr(errstr, errlen, "redis: negative database, timeout or "
		    "back-off");
		return -1;
	}
	cms = o->connect_timeout_ms ? o->connect_timeout_ms :
	    CACHE_DEFAULT_CONNECT_MS;
	tms = o->command_timeout_ms ? o->command_timeout_ms :
	    CACHE_DEFAULT_COMMAND_MS;
	cn->ctv = ms_tv(cms);
	cn->ttv = ms_tv(tms);
	cn->backoff_min = o->backoff_min_ms ? o->backoff_min_ms :
	    CACHE_DEFAULT_BACKOFF_MIN_MS;
	cn->backoff_max = o->backoff_max_ms ? o->backoff_max_ms :
	    CACHE_DEFAULT_BACKOFF_MAX_MS;
	if (cn->backoff_max < cn->backoff_min)
		cn->backoff_max = cn->backoff_min;
	cn->port = o->port;
	cn->database = o->database;
	if (o->unix_path != NULL) {
		cn->unix_path = strdup(o->unix_path);
		snprintf(cn->where, sizeof(cn->where), "unix:%s", o->unix_path);
	} else {
		cn->host = strdup(o->host);
		snprintf(cn->where, sizeof(cn->where), "%s:%d", o->host,
		    o->port);
	}
	if (o->password != NULL)
		cn->password = secmem_strdup(o->password);
	if ((cn->unix_path == NULL && cn->host == NULL) ||
	    (o->password != NULL && cn->password == NULL)) {
		conn_clear(cn);
		seterr(errstr, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* is_timeout - 1 if the context failed on a socket timeout */
static int
is_timeout(const redisContext *ctx)
{
	return ctx->err == REDIS_ERR_IO &&
	    (strstr(ctx->errstr, "temporarily unavailable") != NULL ||
	    strstr(ctx->errstr, "timed out") != NULL);
}

/* conn_open1 - connect, set the command timeout, AUTH and SELECT */
static redisContext *
conn_open1(const struct conn *cn, char *errstr, size_t errlen)
{
	redisContext *ctx;
	redisReply *r = NULL;

	if (cn->unix_path != NULL)
		ctx = redisConnectUnixWithTimeout(cn->unix_path, cn->ctv);
	else
		ctx = redisConnectWithTimeout(cn->host, cn->port, cn->ctv);
	if (ctx == NULL) {
		seterr(errstr, errlen, "out of memory");
		return NULL;
	}
	if (ctx->err) {
		seterr(errstr, errlen, "connect: %s", ctx->errstr);
		goto fail;
	}
	if (redisSetTimeout(ctx, cn->ttv) != REDIS_OK) {
		seterr(errstr, errlen, "set timeout: %s", ctx->errstr);
		goto fail;
	}
	if (cn->password != NULL) {
		r = redisCommand(ctx, "AUTH %s", cn->password);
		if (r == NULL) {
			seterr(errstr, errlen, "AUTH: %s", is_timeout(ctx) ?
			    "no answer within the command timeout" :
			    ctx->errstr);
			goto fail;
		}
		if (r->type == REDIS_REPLY_ERROR) {
			/* Redis's own message never echoes the password. */
			seterr(errstr, errlen, "AUTH refused: %.80s", r->str);
			goto fail;
		}
		freeReplyObject(r);
		r = NULL;
	}
	if (cn->database != 0) {
		r = redisCommand(ctx, "SELECT %d", cn->database);
		if (r == NULL || r->type == REDIS_REPLY_ERROR) {
			seterr(errstr, errlen, "SELECT %d: %.80s", cn->database,
			    r ? r->str : is_timeout(ctx) ? "timeout" :
			    ctx->errstr);
			goto fail;
		}
		freeReplyObject(r);
		r = NULL;
	}
	return ctx;
fail:
	if (r != NULL)
		freeReplyObject(r);
	redisFree(ctx);
	return NULL;
}

/* conn_open - conn_open1 with SIGPIPE held off */
static redisContext *
conn_open(const struct conn *cn, char *errstr, size_t errlen)
{
	struct pipe_guard g;
	redisContext *ctx;

	pipe_guard_begin(&g);
	ctx = conn_open1(cn, errstr, errlen);
	pipe_guard_end(&g);
	return ctx;
}

/* health_fail - record a failure: start or extend the back-off, log once */
static void
health_fail(struct health *h, const struct conn *cn, const char *what,
    const char *reason)
{
	int64_t now = clock_ms();

	if (!h->down) {
		h->down = 1;
		h->since = now;
		h->backoff = cn->backoff_min;
		h->failures = 1;
		h->last_log = now;
		log_warnx("cache: redis %s unavailable (%s: %s); calls fail "
		    "fast, next try in %d ms", cn->where, what, reason,
		    h->backoff);
	} else {
		h->failures++;
		h->backoff = h->backoff > cn->backoff_max / 2 ?
		    cn->backoff_max : h->backoff * 2;
		if (now - h->last_log >= CACHE_OUTAGE_LOG_INTERVAL * 1000) {
			h->last_log = now;
			log_warnx("cache: redis %s still unavailable after "
			    "%lld s (%s: %s); %lu failed calls", cn->where,
			    (long long)(now - h->since) / 1000, what, reason,
			    h->failures);
		}
	}
	h->retry_at = now + h->backoff;
	h->probing = 0;
}

/* health_ok - record a success; log the end of an outage */
static void
health_ok(struct health *h, const struct conn *cn)
{
	if (h->down)
		log_info("cache: redis %s is back after %lld ms (%lu failed "
		    "calls)", cn->where, (long long)(clock_ms() - h->since),
		    h->failures);
	h->down = 0;
	h->probing = 0;
	h->backoff = 0;
	h->failures = 0;
}

/* drop_idle - close every pooled connection (locked) */
static void
drop_idle(struct cache *c)
{
	while (c->nidle > 0)
		redisFree(c->idle[--c->nidle]);
}

/* acquire - a pooled or new connection, or NULL while backing off */
static redisContext *
acquire(struct cache *c, int *fresh)
{
	redisContext *ctx;
	char err[200];

	pthread_mutex_lock(&c->mtx);
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

	ctx = conn_open(&c->conn, err, sizeof(err));
	*fresh = 1;
	pthread_mutex_lock(&c->mtx);
	if (ctx == NULL)
		health_fail(&c->health, &c->conn, "connect", err);
	else
		c->health.probing = 0;
	pthread_mutex_unlock(&c->mtx);
	return ctx;
}

/* release - give a healthy connection back to the pool */
static void
release(struct cache *c, redisContext *ctx)
{
	pthread_mutex_lock(&c->mtx);
	health_ok(&c->health, &c->conn);
	if (c->nidle < c->pool_size) {
		c->idle[c->nidle++] = ctx;
		ctx = NULL;
	}
	pthread_mutex_unlock(&c->mtx);
	if (ctx != NULL)
		redisFree(ctx);
}

/* refused - Redis answered a command with an error reply.  Access errors
 * (no or wrong password, ACL) are a configuration outage: back off and log
 * once.  Others (OOM, WRONGTYPE) keep the connection; their log line is
 * rate-limited like an outage. */
static enum km_status
refused(struct cache *c, redisContext *ctx, const char *what, const char *msg)
{
	char reason[128];
	int64_t now = clock_ms();

	snprintf(reason, sizeof(reason), "%s refused: %.100s", what, msg);
	if (strncmp(msg, "NOAUTH", 6) == 0 || strncmp(msg, "WRONGPASS", 9) == 0 ||
	    strncmp(msg, "NOPERM", 6) == 0) {
		redisFree(ctx);
		pthread_mutex_lock(&c->mtx);
		drop_idle(c);
		health_fail(&c->health, &c->conn, "access", reason);
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
	release(c, ctx);
	return KM_PROTO;
}

/* run - one command; *reply is set on KM_OK.  KM_PROTO: Redis refused this
 * command with an error reply other than an access error; KM_TEMPFAIL:
 * unavailable, slow, or access refused. */
static enum km_status
run(struct cache *c, const char *what, int argc, const char **argv,
    const size_t *argvlen, redisReply **reply)
{
	struct pipe_guard g;
	redisContext *ctx;
	redisReply *r;
	enum km_status st;
	char err[160];
	int fresh, attempt;

	*reply = NULL;
	for (attempt = 0; attempt < 2; attempt++) {
		if ((ctx = acquire(c, &fresh)) == NULL)
			return KM_TEMPFAIL;
		pipe_guard_begin(&g);
		r = redisCommandArgv(ctx, argc, argv, argvlen);
		pipe_guard_end(&g);
		if (r != NULL) {
			if (r->type == REDIS_REPLY_ERROR) {
				st = refused(c, ctx, what, r->str);
				freeReplyObject(r);
				return st;
			}
			release(c, ctx);
			*reply = r;
			return KM_OK;
		}
		snprintf(err, sizeof(err), "%s", is_timeout(ctx) ?
		    "no answer within the command timeout" : ctx->errstr);
		/* A pooled connection that the server closed (restart,
		 * idle timeout) is retried once on a fresh connection. */
		if (!fresh && !is_timeout(ctx)) {
			redisFree(ctx);
			continue;
		}
		redisFree(ctx);
		pthread_mutex_lock(&c->mtx);
		drop_idle(c);
		health_fail(&c->health, &c->conn, what, err);
		pthread_mutex_unlock(&c->mtx);
		return KM_TEMPFAIL;
	}
	/* Two stale connections in a row: the server is going away. */
	pthread_mutex_lock(&c->mtx);
	drop_idle(c);
	health_fail(&c->health, &c->conn, what, "connection lost");
	pthread_mutex_unlock(&c->mtx);
	return KM_TEMPFAIL;
}

/* cache_new - a cache handle; does not connect */
struct cache *
cache_new(const struct cache_opts *opts, char *errstr, size_t errlen)
{
	struct cache *c;

	if (opts == NULL || opts->key == NULL) {
		seterr(errstr, errlen, "cache: no seal key");
		return NULL;
	}
	if (opts->pool_size < 0 || opts->pool_size > CACHE_POOL_MAX) {
		seterr(errstr, errlen, "cache: pool size must be 0..%d",
		    CACHE_POOL_MAX);
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		seterr(errstr, errlen, "out of memory");
		return NULL;
	}
	if (conn_init(&c->conn, opts, errstr, errlen) == -1) {
		free(c);
		return NULL;
	}
	if (pthread_mutex_init(&c->mtx, NULL) != 0) {
		conn_clear(&c->conn);
		free(c);
		seterr(errstr, errlen, "cache: mutex init failed");
		return NULL;
	}
	c->key = opts->key;
	c->pool_size = opts->pool_size ? opts->pool_size : CACHE_DEFAULT_POOL;
	return c;
}

/* cache_free - close the pool and free the handle; returns NULL */
struct cache *
cache_free(struct cache *c)
{
	if (c == NULL)
		return NULL;
	drop_idle(c);
	pthread_mutex_destroy(&c->mtx);
	conn_clear(&c->conn);
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

/* valid_hash - 1 if s is exactly SEAL_HASH_HEXLEN lowercase hex digits */
static int
valid_hash(const char *s, size_t len)
{
	if (len != SEAL_HASH_HEXLEN)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* sub_wait - sleep up to ms, or until stop is requested; 1 if stopping */
static int
sub_wait(struct cache_sub *s, int ms)
{
	struct pollfd pfd = { s->wake[0], POLLIN, 0 };

	return poll(&pfd, 1, ms) > 0;
}

/* sub_handle - act on one reply from a subscribed connection */
static void
sub_handle(struct cache_sub *s, redisReply *r)
{
	redisReply *p;

	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(r->element[0]->str, "message") != 0)
		return;		/* subscribe confirmations */
	p = r->element[2];
	if (p->type != REDIS_REPLY_STRING || !valid_hash(p->str, p->len)) {
		log_warnx("cache: ignoring a malformed invalidation message "
		    "(%zu bytes)", p->type == REDIS_REPLY_STRING ?
		    (size_t)p->len : (size_t)0);
		return;
	}
	s->fn(p->str, s->arg);
}

/* sub_session - SUBSCRIBE on ctx; 1 when subscribed, 0 with a reason */
static int
sub_session(redisContext *ctx, char *err, size_t errlen)
{
	struct pipe_guard g;
	redisReply *r;

	pipe_guard_begin(&g);
	r = redisCommand(ctx, "SUBSCRIBE %s", CACHE_CHANNEL);
	pipe_guard_end(&g);
	if (r == NULL) {
		seterr(err, errlen, "SUBSCRIBE: %s", is_timeout(ctx) ?
		    "no answer within the command timeout" : ctx->errstr);
		return 0;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		seterr(err, errlen, "SUBSCRIBE refused: %.80s", r->str);
		freeReplyObject(r);
		return 0;
	}
	freeReplyObject(r);
	return 1;
}

/* sub_loop - read messages on a subscribed connection; 1 when stopping */
static int
sub_loop(struct cache_sub *s, redisContext *ctx, char *err, size_t errlen)
{
	struct pollfd pfd[2];
	void *rv;

	for (;;) {
		for (;;) {
			rv = NULL;
			if (redisGetReplyFromReader(ctx, &rv) != REDIS_OK) {
				seterr(err, errlen, "protocol: %s",
				    ctx->errstr);
				return 0;
			}
			if (rv == NULL)
				break;
			sub_handle(s, rv);
			freeReplyObject(rv);
		}
		pfd[0].fd = s->wake[0];
		pfd[0].events = POLLIN;
		pfd[1].fd = ctx->fd;
		pfd[1].events = POLLIN;
		pfd[0].revents = pfd[1].revents = 0;
		if (poll(pfd, 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			seterr(err, errlen, "poll: %s", strerror(errno));
			return 0;
		}
		if (pfd[0].revents)
			return 1;
		if (pfd[1].revents && redisBufferRead(ctx) != REDIS_OK) {
			seterr(err, errlen, "%s", ctx->errstr[0] ?
			    ctx->errstr : "connection lost");
			return 0;
		}
	}
}

/* sub_main - the subscriber thread: connect, subscribe, dispatch, retry */
static void *
sub_main(void *arg)
{
	struct cache_sub *s = arg;
	redisContext *ctx;
	char err[200];
	int subscribed_before = 0;

	for (;;) {
		if (s->health.down && sub_wait(s, s->health.backoff))
			break;
		err[0] = '\0';
		if ((ctx = conn_open(&s->conn, err, sizeof(err))) == NULL) {
			health_fail(&s->health, &s->conn, "subscribe", err);
			continue;
		}
		if (sub_session(ctx, err, sizeof(err)) == 0) {
			redisFree(ctx);
			health_fail(&s->health, &s->conn, "subscribe", err);
			continue;
		}
		health_ok(&s->health, &s->conn);
		log_debug(1, "cache: subscribed to %s on %s", CACHE_CHANNEL,
		    s->conn.where);
		/* Messages published while we were away are lost: tell the
		 * owner to drop everything it may hold. */
		if (subscribed_before)
			s->fn(NULL, s->arg);
		subscribed_before = 1;
		if (sub_loop(s, ctx, err, sizeof(err))) {
			redisFree(ctx);
			break;
		}
		redisFree(ctx);
		health_fail(&s->health, &s->conn, "subscription", err);
	}
	return NULL;
}

/* cache_subscribe_start - start the invalidation subscriber thread */
struct cache_sub *
cache_subscribe_start(const struct cache_opts *opts, cache_invalidate_fn fn,
    void *arg, char *errstr, size_t errlen)
{
	struct cache_sub *s;
	int rc;

	if (fn == NULL) {
		seterr(errstr, errlen, "cache: no invalidation callback");
		return NULL;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		seterr(errstr, errlen, "out of memory");
		return NULL;
	}
	s->wake[0] = s->wake[1] = -1;
	if (conn_init(&s->conn, opts, errstr, errlen) == -1)
		goto fail;
	if (pipe2(s->wake, O_CLOEXEC) == -1) {
		seterr(errstr, errlen, "pipe: %s", strerror(errno));
		goto fail;
	}
	s->fn = fn;
	s->arg = arg;
	if ((rc = pthread_create(&s->tid, NULL, sub_main, s)) != 0) {
		seterr(errstr, errlen, "pthread_create: %s", strerror(rc));
		goto fail;
	}
	return s;
fail:
	if (s->wake[0] != -1) {
		close(s->wake[0]);
		close(s->wake[1]);
	}
	conn_clear(&s->conn);
	free(s);
	return NULL;
}

/* cache_subscribe_stop - stop and join the subscriber; returns NULL */
struct cache_sub *
cache_subscribe_stop(struct cache_sub *s)
{
	ssize_t n;

	if (s == NULL)
		return NULL;
	do
		n = write(s->wake[1], "x", 1);
	while (n == -1 && errno == EINTR);
	pthread_join(s->tid, NULL);
	close(s->wake[0]);
	close(s->wake[1]);
	conn_clear(&s->conn);
	free(s);
	return NULL;
}
