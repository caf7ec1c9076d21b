#ifndef KMILTER_KEYCLIENT_CACHE_OPTS_H
#define KMILTER_KEYCLIENT_CACHE_OPTS_H
/*
 * NAME
 *	cache_opts - how to reach the Redis cache: the options and defaults
 * SUMMARY
 *	struct cache_opts, CACHE_CHANNEL, CACHE_KINDS, CACHE_DEFAULT_*
 * DESCRIPTION
 *	The options shared by the cache (cache.h), its connections
 *	(cache_conn.h) and its invalidation subscriber (cache_sub.h): host+port
 *	(TCP) or unix_path (preferred), optional password (AUTH) and
 *	database (SELECT); zero timeouts and back-offs take the defaults
 *	below; pool_size 0 means CACHE_DEFAULT_POOL.  With nsentinels > 0
 *	host, port and unix_path are ignored: the master named
 *	sentinel_master is found by asking those Sentinels ("host:port",
 *	sentinel.h), with sentinel_password (their AUTH, NULL for none) and
 *	sentinel_timeout_ms; password and database still apply to the
 *	master.  Callers include cache.h,
 *	which includes this header.
 * OWNERSHIP
 *	The strings are the caller's; cache_new() and cache_subscribe_start()
 *	copy them.  key is borrowed (see cache.h).
 * ERRORS
 *	None: declarations only.
 * THREADS
 *	Nothing to share.
 */
#include "seal.h"

#define CACHE_CHANNEL			"kmilter:invalidate"
#define CACHE_KINDS			{ "cert", "certs", "enckey", "signcert", "signkey", NULL }
#define CACHE_DEFAULT_CONNECT_MS	200
#define CACHE_DEFAULT_COMMAND_MS	200
#define CACHE_DEFAULT_BACKOFF_MIN_MS	1000
#define CACHE_DEFAULT_BACKOFF_MAX_MS	30000
#define CACHE_DEFAULT_POOL		4
#define CACHE_OUTAGE_LOG_INTERVAL	60	/* seconds between outage lines */

struct cache_opts {
	const char		*host;		/* TCP, used if unix_path is NULL */
	int			 port;
	const char		*unix_path;
	const char		*password;	/* NULL: no AUTH */
	int			 database;
	int			 connect_timeout_ms;
	int			 command_timeout_ms;
	const struct seal_key	*key;
	int			 pool_size;
	int			 backoff_min_ms;
	int			 backoff_max_ms;
	const char *const	*sentinels;	/* "host:port"; NULL: none */
	int			 nsentinels;
	const char		*sentinel_master;
	const char		*sentinel_password;
	int			 sentinel_timeout_ms;
};

#endif
