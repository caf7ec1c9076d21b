/*
 * cache_conn.c - how kmilter reaches Redis: the copied options, a connection
 * with AUTH and SELECT, SIGPIPE held off, and the outage back-off shared by
 * the cache's pool and the invalidation subscriber (see cache_conn.h).
 */
#include <sys/time.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "cache_conn.h"
#include "clock.h"
#include "log.h"
#include "secmem.h"

/* ms_tv - a millisecond count as a struct timeval */
static struct timeval
ms_tv(int ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	return tv;
}

/* cache_conn_guard_begin - block SIGPIPE in this thread */
void
cache_conn_guard_begin(struct cache_conn_guard *g)
{
	sigset_t set, pend;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, &g->old);
	sigpending(&pend);
	g->pending = sigismember(&pend, SIGPIPE) == 1;
}

/* cache_conn_guard_end - consume a SIGPIPE we caused and restore the mask */
void
cache_conn_guard_end(struct cache_conn_guard *g)
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

/* cache_conn_clear - free the copied options */
void
cache_conn_clear(struct cache_conn *cn)
{
	free(cn->host);
	free(cn->unix_path);
	secmem_strfree(cn->password);
	sentinel_unref(cn->sentinel);
	memset(cn, 0, sizeof(*cn));
}

/* conn_sentinel - the Sentinel state of the options */
static int
conn_sentinel(struct cache_conn *cn, const struct cache_opts *o,
    struct kmerr *err)
{
	struct sentinel_opts so;

	memset(&so, 0, sizeof(so));
	so.addrs = o->sentinels;
	so.naddrs = o->nsentinels;
	so.master = o->sentinel_master;
	so.password = o->sentinel_password;
	so.timeout_ms = o->sentinel_timeout_ms;
	if ((cn->sentinel = sentinel_new(&so, err)) == NULL)
		return -1;
	snprintf(cn->where, sizeof(cn->where), "master %s (Sentinels)",
	    o->sentinel_master);
	return 0;
}

/* cache_conn_init - validate and copy the connection options */
int
cache_conn_init(struct cache_conn *cn, const struct cache_opts *o,
    struct kmerr *err)
{
	int cms, tms;

	memset(cn, 0, sizeof(*cn));
	if (o == NULL) {
		kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT, "no cache options");
		return -1;
	}
	if (o->nsentinels == 0 && o->unix_path == NULL && (o->host == NULL ||
	    *o->host == '\0' || o->port <= 0 || o->port > 65535)) {
		kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "redis: need unix_path or "
		    "host and a port in 1..65535");
		return -1;
	}
	if (o->nsentinels == 0 && o->unix_path != NULL &&
	    (*o->unix_path == '\0' ||
	    strlen(o->unix_path) > 107)) {
		kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "redis: bad unix socket path");
		return -1;
	}
	if (o->database < 0 || o->database > 1000000 ||
	    o->connect_timeout_ms < 0 || o->command_timeout_ms < 0 ||
	    o->backoff_min_ms < 0 || o->backoff_max_ms < 0) {
		kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "redis: negative database, "
		    "timeout or back-off");
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
	if (o->nsentinels > 0) {
		if (conn_sentinel(cn, o, err) == -1)
			return -1;
	} else if (o->unix_path != NULL) {
		cn->unix_path = strdup(o->unix_path);
		snprintf(cn->where, sizeof(cn->where), "unix:%s", o->unix_path);
	} else {
		cn->host = strdup(o->host);
		snprintf(cn->where, sizeof(cn->where), "%s:%d", o->host,
		    o->port);
	}
	if (o->password != NULL)
		cn->password = secmem_strdup(o->password);
	if ((cn->unix_path == NULL && cn->host == NULL &&
	    cn->sentinel == NULL) || (o->password != NULL && cn->password == NULL)) {
		cache_conn_clear(cn);
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return -1;
	}
	return 0;
}

/* cache_conn_copy - a second copy of src, sharing its Sentinel state */
int
cache_conn_copy(struct cache_conn *dst, const struct cache_conn *src,
    struct kmerr *err)
{
	*dst = *src;
	dst->host = dst->unix_path = dst->password = NULL;
	dst->sentinel = sentinel_ref(src->sentinel);
	if ((src->host != NULL && (dst->host = strdup(src->host)) == NULL) ||
	    (src->unix_path != NULL &&
	    (dst->unix_path = strdup(src->unix_path)) == NULL) ||
	    (src->password != NULL &&
	    (dst->password = secmem_strdup(src->password)) == NULL)) {
		cache_conn_clear(dst);
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return -1;
	}
	return 0;
}

/* cache_conn_follow - the generation of the master's address */
unsigned
cache_conn_follow(const struct cache_conn *cn)
{
	return cn->sentinel != NULL ? sentinel_gen(cn->sentinel) : 0;
}

/* cache_conn_reject - ctx's server is not the master (READONLY) */
void
cache_conn_reject(const struct cache_conn *cn, const redisContext *ctx,
    const char *why)
{
	struct sentinel_addr a;

	if (cn->sentinel == NULL || ctx->tcp.host == NULL)
		return;
	snprintf(a.host, sizeof(a.host), "%s", ctx->tcp.host);
	a.port = ctx->tcp.port;
	sentinel_reject(cn->sentinel, &a, why);
}

/* cache_conn_timed_out - 1 if the context failed on a socket timeout */
int
cache_conn_timed_out(const redisContext *ctx)
{
	return ctx->err == REDIS_ERR_IO &&
	    (strstr(ctx->errstr, "temporarily unavailable") != NULL ||
	    strstr(ctx->errstr, "timed out") != NULL);
}

/* conn_open1 - connect to host:port (or the unix path), set the command
 * timeout, AUTH and SELECT */
static redisContext *
conn_open1(const struct cache_conn *cn, const char *host, int port,
    struct kmerr *err)
{
	redisContext *ctx;
	redisReply *r = NULL;

	if (host == NULL)
		ctx = redisConnectUnixWithTimeout(cn->unix_path, cn->ctv);
	else
		ctx = redisConnectWithTimeout(host, port, cn->ctv);
	if (ctx == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return NULL;
	}
	if (ctx->err) {
		kmerr_set(err, KM_TEMPFAIL, KMERR_UNREACHABLE, "connect: %s",
		    ctx->errstr);
		goto fail;
	}
	if (redisSetTimeout(ctx, cn->ttv) != REDIS_OK) {
		kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "set timeout: %s",
		    ctx->errstr);
		goto fail;
	}
	if (cn->password != NULL) {
		r = redisCommand(ctx, "AUTH %s", cn->password);
		if (r == NULL) {
			kmerr_set(err, KM_TEMPFAIL, cache_conn_timed_out(ctx) ?
			    KMERR_TIMEOUT : KMERR_UNREACHABLE, "AUTH: %s",
			    cache_conn_timed_out(ctx) ?
			    "no answer within the command timeout" :
			    ctx->errstr);
			goto fail;
		}
		if (r->type == REDIS_REPLY_ERROR) {
			/* Redis's own message never echoes the password. */
			kmerr_set(err, KM_TEMPFAIL, KMERR_REFUSED,
			    "AUTH refused: %.80s", r->str);
			goto fail;
		}
		freeReplyObject(r);
		r = NULL;
	}
	if (cn->database != 0) {
		r = redisCommand(ctx, "SELECT %d", cn->database);
		if (r == NULL || r->type == REDIS_REPLY_ERROR) {
			kmerr_set(err, KM_TEMPFAIL, r != NULL ? KMERR_REFUSED :
			    KMERR_NONE, "SELECT %d: %.80s",
			    cn->database, r ? r->str :
			    cache_conn_timed_out(ctx) ? "timeout" :
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

/* is_master - 1 if ctx's server says ROLE master; 0 with err set */
static int
is_master(redisContext *ctx, struct kmerr *err)
{
	redisReply *r;
	int rc = 0;

	if ((r = redisCommand(ctx, "ROLE")) == NULL) {
		kmerr_set(err, KM_TEMPFAIL, cache_conn_timed_out(ctx) ?
		    KMERR_TIMEOUT : KMERR_UNREACHABLE, "ROLE: %s",
		    cache_conn_timed_out(ctx) ?
		    "no answer within the command timeout" : ctx->errstr);
		return 0;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
	    r->element[0]->type == REDIS_REPLY_STRING &&
	    strcmp(r->element[0]->str, "master") == 0)
		rc = 1;
	else
		kmerr_set(err, KM_TEMPFAIL, KMERR_REFUSED, "ROLE says %.40s, "
		    "not master", r->type == REDIS_REPLY_ERROR ? r->str :
		    r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
		    r->element[0]->type == REDIS_REPLY_STRING ?
		    r->element[0]->str : "something else");
	freeReplyObject(r);
	return rc;
}

/* open_master - the master the Sentinels name, checked with ROLE; what
 * fails is rejected and passed over, until none is left */
static redisContext *
open_master(const struct cache_conn *cn, struct kmerr *err)
{
	struct sentinel_addr skip[SENTINEL_MAX + 1], a;
	redisContext *ctx;
	int nskip = 0;

	while (nskip <= SENTINEL_MAX) {
		if (sentinel_master(cn->sentinel, skip, nskip, &a, err) == -1)
			return NULL;
		ctx = conn_open1(cn, a.host, a.port, err);
		if (ctx != NULL && is_master(ctx, err)) {
			sentinel_confirm(cn->sentinel, &a);
			return ctx;
		}
		if (ctx != NULL)
			redisFree(ctx);
		sentinel_reject(cn->sentinel, &a, err->msg);
		skip[nskip++] = a;
	}
	return NULL;
}

/* cache_conn_open - connect (to the master, with Sentinels) with SIGPIPE
 * held off */
redisContext *
cache_conn_open(const struct cache_conn *cn, struct kmerr *err)
{
	struct cache_conn_guard g;
	redisContext *ctx;

	cache_conn_guard_begin(&g);
	if (cn->sentinel != NULL)
		ctx = open_master(cn, err);
	else
		ctx = conn_open1(cn, cn->unix_path ? NULL : cn->host, cn->port,
		    err);
	cache_conn_guard_end(&g);
	return ctx;
}

/* cache_conn_health_fail - record a failure: start or extend the back-off,
 * log once */
void
cache_conn_health_fail(struct cache_health *h, const struct cache_conn *cn,
    const char *what, const char *reason)
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

/* cache_conn_health_ok - record a success; log the end of an outage */
void
cache_conn_health_ok(struct cache_health *h, const struct cache_conn *cn)
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

