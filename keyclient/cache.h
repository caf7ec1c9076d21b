#ifndef KMILTER_KEYCLIENT_CACHE_H
#define KMILTER_KEYCLIENT_CACHE_H
/*
 * NAME
 *	cache - the shared (L2) Redis cache of sealed key entries
 * SUMMARY
 *	cache_new(), cache_free(), cache_get(), cache_put(),
 *	cache_put_negative(), cache_del(), cache_invalidate(),
 *	cache_subscribe(), cache_subscribe_start(), cache_subscribe_stop()
 *	(cache_sub.h)
 * DESCRIPTION
 *	Entries live in Redis under seal_entry_name(key, kind, addr) and are
 *	sealed with seal_seal(): Redis sees neither addresses nor key bytes.
 *	Every put is a SET ... EX ttl.  A negative entry ("no such key for
 *	this address") is a sealed value with the SEAL_NEGATIVE flag.
 *	A stored value that fails to open (tampered, copied under another
 *	name, sealed with another key, truncated) is deleted, logged and
 *	reported as a miss.
 *
 *	Redis being down slows kmilter, never stops it: connections are made
 *	lazily from a small mutex-guarded pool, with connect and command
 *	timeouts in milliseconds.  After a failure no new connection is tried
 *	for a back-off period (backoff_min_ms doubling up to backoff_max_ms),
 *	during which calls return KM_TEMPFAIL at once.  The outage is logged
 *	once (then at most once per 60 s) and its end is logged too.
 *
 *	cache_invalidate(addr) deletes every kind of that address (the kinds
 *	listed in CACHE_KINDS) and PUBLISHes seal_name_hash(addr) on channel
 *	CACHE_CHANNEL.  cache_subscribe_start() (cache_sub.h, included here)
 *	runs a thread with its own connection, SUBSCRIBEd to that channel,
 *	calling fn(addr_hash, arg) for each message; it reconnects with
 *	back-off.  Messages published while the subscriber was disconnected
 *	are lost, so after every re-subscription (not the first) it calls
 *	fn(NULL, arg): the owner should then drop everything it caches.
 *	Payloads that are not 64 lowercase hex digits are logged and ignored.
 *	cache_subscribe() is the same on the cache's own options; with
 *	Sentinels the subscriber then follows the master with the pool.
 *
 *	With Sentinels (cache_opts.h) the pool connects to the master they
 *	name and checks its ROLE (cache_conn.h, sentinel.h).  When the
 *	Sentinels announce a new master the pool drops its connections and
 *	ends any back-off; a READONLY answer (a replica: never written to)
 *	makes the Sentinels be asked again and counts as an outage until a
 *	master is found.
 *
 *	Options (cache_opts.h, included here): host+port (TCP) or unix_path
 *	(preferred), optional password (AUTH) and database (SELECT); zero
 *	timeouts and back-offs take the defaults there; pool_size 0 means
 *	CACHE_DEFAULT_POOL.
 * OWNERSHIP
 *	cache_new() copies every option except key, which is borrowed and
 *	must outlive the cache (and the subscriber).  Caller frees with
 *	cache_free(), which returns NULL.  cache_get() returns the payload
 *	in secmem: the caller frees it with secmem_free(buf, len); on a
 *	negative hit or any non-OK status *buf is NULL and *len 0.
 *	The addr_hash given to the subscriber callback is valid only during
 *	the call.
 * ERRORS
 *	cache_new(): NULL with err set (bad options, no memory);
 *	it does not connect, so a Redis that is down is not an error.
 *	cache_get(): KM_OK hit (check *negative), KM_PERMFAIL miss (or a bad
 *	entry, deleted), KM_TEMPFAIL Redis unavailable or slow, KM_PROTO bad
 *	kind/address, KM_NOMEM.
 *	cache_put*(), cache_del(), cache_invalidate(): KM_OK, KM_TEMPFAIL,
 *	KM_PROTO (bad argument, ttl <= 0), KM_NOMEM.
 * THREADS
 *	Thread-safe: every call borrows a context from the pool.  The
 *	subscriber callback runs in the subscriber thread.
 */
#include <stddef.h>

#include "cache_opts.h"
#include "cache_sub.h"
#include "kmerr.h"
#include "seal.h"
#include "status.h"

struct cache;

struct cache	*cache_new(const struct cache_opts *opts, struct kmerr *err);
struct cache	*cache_free(struct cache *c);

enum km_status	 cache_get(struct cache *c, const char *kind, const char *addr,
		    unsigned char **buf, size_t *len, int *negative);
enum km_status	 cache_put(struct cache *c, const char *kind, const char *addr,
		    const unsigned char *buf, size_t len, int ttl_seconds);
enum km_status	 cache_put_negative(struct cache *c, const char *kind,
		    const char *addr, int ttl_seconds);
enum km_status	 cache_del(struct cache *c, const char *kind, const char *addr);
enum km_status	 cache_invalidate(struct cache *c, const char *addr);
struct cache_sub *cache_subscribe(struct cache *c, cache_invalidate_fn fn,
		    void *arg, struct kmerr *err);

#endif
