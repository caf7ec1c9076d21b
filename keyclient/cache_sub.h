#ifndef KMILTER_KEYCLIENT_CACHE_SUB_H
#define KMILTER_KEYCLIENT_CACHE_SUB_H
/*
 * NAME
 *	cache_sub - the cache's invalidation subscriber
 * SUMMARY
 *	cache_subscribe_start(), cache_subscribe_stop(),
 *	cache_sub_start_conn() (internal, for cache_subscribe())
 * DESCRIPTION
 *	cache_invalidate() (cache.h) PUBLISHes seal_name_hash(addr) on
 *	channel CACHE_CHANNEL.  cache_subscribe_start() runs a thread with its
 *	own connection, SUBSCRIBEd to that channel, calling fn(addr_hash, arg)
 *	for each message; it reconnects with back-off (logged like the
 *	cache's outages).  Messages published while the subscriber was
 *	disconnected are lost, so after every re-subscription (not the first)
 *	it calls fn(NULL, arg): the owner should then drop everything it
 *	caches.  Payloads that are not 64 lowercase hex digits are logged and
 *	ignored.  With Sentinels (cache_opts.h) it connects to the master
 *	they name and, when they announce another, reconnects at once (and
 *	calls fn(NULL, arg): messages may have been lost meanwhile).
 *	Callers include cache.h, which includes this header.
 * OWNERSHIP
 *	cache_subscribe_start() copies the options; caller stops and frees
 *	the subscriber with cache_subscribe_stop(), which joins the thread
 *	and returns NULL (NULL is fine).  The addr_hash given to the callback
 *	is valid only during the call.
 * ERRORS
 *	cache_subscribe_start(): NULL with err set (no callback,
 *	bad options, no memory, no thread); it does not wait for Redis, so a
 *	Redis that is down is not an error.
 * THREADS
 *	The callback runs in the subscriber thread.  cache_subscribe_stop()
 *	may be called from any thread, once.
 */
#include <stddef.h>

#include "cache_opts.h"
#include "kmerr.h"

struct cache_sub;

typedef void	(*cache_invalidate_fn)(const char *addr_hash, void *arg);

struct cache_sub *cache_subscribe_start(const struct cache_opts *opts,
		    cache_invalidate_fn fn, void *arg, struct kmerr *err);
struct cache_sub *cache_subscribe_stop(struct cache_sub *sub);
struct cache_conn;
struct cache_sub *cache_sub_start_conn(const struct cache_conn *cn,
		    cache_invalidate_fn fn, void *arg, struct kmerr *err);

#endif
