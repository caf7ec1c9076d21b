#ifndef KMILTER_KEYCLIENT_CACHE_CONN_H
#define KMILTER_KEYCLIENT_CACHE_CONN_H
/*
 * NAME
 *	cache_conn - one way to Redis, shared by the cache and its subscriber
 * SUMMARY
 *	cache_conn_init(), cache_conn_copy(), cache_conn_clear(),
 *	cache_conn_open(), cache_conn_follow(), cache_conn_reject(),
 *	cache_conn_timed_out(), cache_conn_guard_begin(),
 *	cache_conn_guard_end(), cache_conn_health_fail(),
 *	cache_conn_health_ok()
 * DESCRIPTION
 *	Internal to the cache (cache.c, cache_sub.c).  cache_conn_init()
 *	validates struct cache_opts (cache_opts.h) and copies what a
 *	connection needs; cache_conn_open() connects with the connect
 *	timeout, sets the command timeout, sends AUTH and SELECT, with
 *	SIGPIPE held off.  cache_conn_guard_begin()/_end() hold SIGPIPE off
 *	around any other command.
 *
 *	With Sentinels (cache_opts.h) the connection is to the master they
 *	name (sentinel.h): cache_conn_open() connects, AUTHs and SELECTs,
 *	then asks ROLE; a replica, an address that does not answer or
 *	refuses is rejected and the Sentinels are asked again, passing over
 *	what failed, until one names a master that is one or none is left.
 *	cache_conn_follow() returns the generation of the master's address
 *	(0 without Sentinels): a connection opened under an older one may be
 *	to the old master.  cache_conn_reject() tells the Sentinel module
 *	that ctx's server is not the master (it answered READONLY).
 *	cache_conn_copy() makes a second struct sharing the Sentinel state.
 *
 *	struct cache_health is an outage: cache_conn_health_fail() starts or
 *	extends the back-off (backoff_min doubling up to backoff_max) and logs
 *	the outage once, then at most once per CACHE_OUTAGE_LOG_INTERVAL;
 *	cache_conn_health_ok() ends it and logs its end.
 * OWNERSHIP
 *	cache_conn_init() and cache_conn_copy() copy the options (the
 *	password in secmem); free them with cache_conn_clear().  cache_conn_open() returns a context the
 *	caller frees with redisFree().
 * ERRORS
 *	cache_conn_init(): 0, or -1 with err set (bad options: KM_PERMFAIL,
 *	KMERR_BADINPUT; KM_NOMEM).  cache_conn_open(): NULL with err set
 *	(never the password): KM_TEMPFAIL with KMERR_UNREACHABLE (no
 *	connection), KMERR_TIMEOUT or KMERR_REFUSED (AUTH, SELECT said no);
 *	KM_NOMEM.
 * THREADS
 *	A struct cache_conn is read-only after cache_conn_init().  A struct
 *	cache_health must be guarded by its owner (the cache's mutex; the
 *	subscriber has only its own thread).  The guard is per thread.
 */
#include <sys/time.h>

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "cache_opts.h"
#include "kmerr.h"
#include "log.h"
#include "sentinel.h"

/* How to reach Redis: copied options shared by the pool and subscriber. */
struct cache_conn {
	char		*host;
	int		 port;
	char		*unix_path;
	char		*password;	/* secmem */
	int		 database;
	struct timeval	 ctv, ttv;	/* connect, command timeouts */
	int		 backoff_min, backoff_max;
	char		 where[300];	/* for log lines: path or host:port */
	struct sentinel	*sentinel;	/* NULL: host/port or unix_path */
};

/* Outage state: back-off and rate-limited logging. */
struct cache_health {
	int		 down;		/* in an outage */
	int		 probing;	/* one thread is trying to reconnect */
	int64_t		 retry_at;	/* monotonic ms: no connect before */
	int		 backoff;	/* current back-off, ms */
	int64_t		 since;		/* monotonic ms the outage began */
	int64_t		 last_log;	/* monotonic ms of the last outage line */
	unsigned long	 failures;	/* failed calls during this outage */
};

/*
 * A write to a connection that Redis closed raises SIGPIPE, which would kill
 * the whole process unless it ignores the signal.  Rather than change the
 * process's disposition from a library, each command runs with SIGPIPE
 * blocked in the calling thread; a SIGPIPE it caused is consumed before
 * the mask is restored (the write itself fails with EPIPE).
 */
struct cache_conn_guard {
	sigset_t	old;
	int		pending;	/* a SIGPIPE was pending before */
};

int		 cache_conn_init(struct cache_conn *, const struct cache_opts *,
		    struct kmerr *err);
int		 cache_conn_copy(struct cache_conn *, const struct cache_conn *,
		    struct kmerr *err);
void		 cache_conn_clear(struct cache_conn *);
unsigned	 cache_conn_follow(const struct cache_conn *);
void		 cache_conn_reject(const struct cache_conn *,
		    const redisContext *, const char *why);
redisContext	*cache_conn_open(const struct cache_conn *,
		    struct kmerr *err);
int		 cache_conn_timed_out(const redisContext *);
void		 cache_conn_guard_begin(struct cache_conn_guard *);
void		 cache_conn_guard_end(struct cache_conn_guard *);
void		 cache_conn_health_fail(struct cache_health *,
		    const struct cache_conn *, const char *what,
		    const char *reason);
void		 cache_conn_health_ok(struct cache_health *,
		    const struct cache_conn *);

#endif
