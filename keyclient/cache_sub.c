/*
 * cache_sub.c - the cache's invalidation subscriber: its thread, its
 * connection, its reconnects (see cache_sub.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "cache_conn.h"
#include "cache_sub.h"
#include "log.h"

struct cache_sub {
	struct cache_conn		 conn;
	cache_invalidate_fn	 fn;
	void			*arg;
	pthread_t		 tid;
	int			 wake[2];	/* self-pipe: stop request */
	int			 moved[2];	/* the master moved (Sentinels) */
	struct cache_health		 health;
};

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

/* sub_moved - 1 if the master moved since the last call (drains the pipe) */
static int
sub_moved(struct cache_sub *s)
{
	char buf[64];
	int moved = 0;

	if (s->moved[0] == -1)
		return 0;
	while (read(s->moved[0], buf, sizeof(buf)) > 0)
		moved = 1;
	return moved;
}

/* sub_wait - sleep up to ms, or until stop is requested or the master
 * moves; 1 if stopping */
static int
sub_wait(struct cache_sub *s, int ms)
{
	struct pollfd pfd[2] = { { s->wake[0], POLLIN, 0 },
	    { s->moved[0], POLLIN, 0 } };

	if (poll(pfd, 2, ms) > 0 && pfd[0].revents)
		return 1;
	sub_moved(s);
	return 0;
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
sub_session(redisContext *ctx, struct kmerr *err)
{
	struct cache_conn_guard g;
	redisReply *r;

	cache_conn_guard_begin(&g);
	r = redisCommand(ctx, "SUBSCRIBE %s", CACHE_CHANNEL);
	cache_conn_guard_end(&g);
	if (r == NULL) {
		kmerr_set(err, KM_TEMPFAIL, cache_conn_timed_out(ctx) ?
		    KMERR_TIMEOUT : KMERR_UNREACHABLE, "SUBSCRIBE: %s",
		    cache_conn_timed_out(ctx) ?
		    "no answer within the command timeout" : ctx->errstr);
		return 0;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		kmerr_set(err, KM_TEMPFAIL, KMERR_REFUSED,
		    "SUBSCRIBE refused: %.80s", r->str);
		freeReplyObject(r);
		return 0;
	}
	freeReplyObject(r);
	return 1;
}

/* sub_loop - read messages on a subscribed connection; 1 when stopping,
 * 2 when the master moved, 0 on a failure (err set) */
static int
sub_loop(struct cache_sub *s, redisContext *ctx, struct kmerr *err)
{
	struct pollfd pfd[3];
	void *rv;

	for (;;) {
		for (;;) {
			rv = NULL;
			if (redisGetReplyFromReader(ctx, &rv) != REDIS_OK) {
				kmerr_set(err, KM_TEMPFAIL, KMERR_BADINPUT,
				    "protocol: %s", ctx->errstr);
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
		pfd[2].fd = s->moved[0];
		pfd[2].events = POLLIN;
		pfd[0].revents = pfd[1].revents = pfd[2].revents = 0;
		if (poll(pfd, 3, -1) == -1) {
			if (errno == EINTR)
				continue;
			kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "poll: %s",
			    strerror(errno));
			return 0;
		}
		if (pfd[0].revents)
			return 1;
		if (pfd[2].revents && sub_moved(s))
			return 2;
		if (pfd[1].revents && redisBufferRead(ctx) != REDIS_OK) {
			kmerr_set(err, KM_TEMPFAIL, KMERR_UNREACHABLE, "%s",
			    ctx->errstr[0] ? ctx->errstr : "connection lost");
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
	struct kmerr err;
	int subscribed_before = 0, rc;

	for (;;) {
		if (s->health.down && sub_wait(s, s->health.backoff))
			break;
		kmerr_clear(&err);
		ctx = cache_conn_open(&s->conn, &err);
		if (ctx == NULL) {
			cache_conn_health_fail(&s->health, &s->conn,
			    "subscribe", err.msg);
			continue;
		}
		if (sub_session(ctx, &err) == 0) {
			redisFree(ctx);
			cache_conn_health_fail(&s->health, &s->conn,
			    "subscribe", err.msg);
			continue;
		}
		cache_conn_health_ok(&s->health, &s->conn);
		log_debug(1, "cache: subscribed to %s on %s", CACHE_CHANNEL,
		    s->conn.where);
		/* Messages published while we were away are lost: tell the
		 * owner to drop everything it may hold. */
		if (subscribed_before)
			s->fn(NULL, s->arg);
		subscribed_before = 1;
		rc = sub_loop(s, ctx, &err);
		redisFree(ctx);
		if (rc == 1)
			break;
		if (rc == 2) {
			log_debug(1, "cache: the master moved: subscribing "
			    "again");
			continue;
		}
		cache_conn_health_fail(&s->health, &s->conn, "subscription",
		    err.msg);
	}
	return NULL;
}

/* sub_close - close the pipes and free */
static void
sub_close(struct cache_sub *s)
{
	for (int i = 0; i < 2; i++) {
		if (s->wake[i] != -1)
			close(s->wake[i]);
		if (s->moved[i] != -1)
			close(s->moved[i]);
	}
	cache_conn_clear(&s->conn);
	free(s);
}

/* sub_start - start the thread on s, whose conn is set; NULL with err set
 * (s freed) */
static struct cache_sub *
sub_start(struct cache_sub *s, cache_invalidate_fn fn, void *arg,
    struct kmerr *err)
{
	int rc;

	if (pipe2(s->wake, O_CLOEXEC) == -1 ||
	    (s->conn.sentinel != NULL &&
	    pipe2(s->moved, O_CLOEXEC | O_NONBLOCK) == -1)) {
		kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "pipe: %s",
		    strerror(errno));
		goto fail;
	}
	if (s->conn.sentinel != NULL &&
	    sentinel_listen(s->conn.sentinel, s->moved[1]) == -1) {
		kmerr_set(err, KM_TEMPFAIL, KMERR_NONE,
		    "cache: too many Sentinel listeners");
		goto fail;
	}
	s->fn = fn;
	s->arg = arg;
	if ((rc = pthread_create(&s->tid, NULL, sub_main, s)) != 0) {
		kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "pthread_create: %s",
		    strerror(rc));
		if (s->conn.sentinel != NULL)
			sentinel_unlisten(s->conn.sentinel, s->moved[1]);
		goto fail;
	}
	return s;
fail:
	sub_close(s);
	return NULL;
}

/* sub_alloc - a subscriber with no pipes yet; NULL with err set */
static struct cache_sub *
sub_alloc(cache_invalidate_fn fn, struct kmerr *err)
{
	struct cache_sub *s;

	if (fn == NULL) {
		kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "cache: no invalidation callback");
		return NULL;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return NULL;
	}
	s->wake[0] = s->wake[1] = s->moved[0] = s->moved[1] = -1;
	return s;
}

/* cache_subscribe_start - start the invalidation subscriber thread;
 * NULL with err set */
struct cache_sub *
cache_subscribe_start(const struct cache_opts *opts, cache_invalidate_fn fn,
    void *arg, struct kmerr *err)
{
	struct cache_sub *s;

	if ((s = sub_alloc(fn, err)) == NULL)
		return NULL;
	if (cache_conn_init(&s->conn, opts, err) == -1) {
		free(s);
		return NULL;
	}
	return sub_start(s, fn, arg, err);
}

/* cache_sub_start_conn - the same on a copy of a connection's options */
struct cache_sub *
cache_sub_start_conn(const struct cache_conn *cn, cache_invalidate_fn fn,
    void *arg, struct kmerr *err)
{
	struct cache_sub *s;

	if ((s = sub_alloc(fn, err)) == NULL)
		return NULL;
	if (cache_conn_copy(&s->conn, cn, err) == -1) {
		free(s);
		return NULL;
	}
	return sub_start(s, fn, arg, err);
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
	if (s->conn.sentinel != NULL)
		sentinel_unlisten(s->conn.sentinel, s->moved[1]);
	sub_close(s);
	return NULL;
}
