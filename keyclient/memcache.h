#ifndef KMILTER_KEYCLIENT_MEMCACHE_H
#define KMILTER_KEYCLIENT_MEMCACHE_H
/*
 * NAME
 *	memcache - the in-process (L1) cache of parsed keys and certificates
 * SUMMARY
 *	memcache_new(), memcache_free(), memcache_put(),
 *	memcache_put_negative(), memcache_get(), memcache_value(),
 *	memcache_is_negative(), memcache_release(), memcache_invalidate(),
 *	memcache_clear(), memcache_count()
 * DESCRIPTION
 *	A bounded hash table plus an LRU list: get and put are O(1).  An
 *	entry is named by (kind, addr_hash) where addr_hash is the keyed hash
 *	of the address, seal_name_hash(); all kinds of one address share a
 *	hash chain, so memcache_invalidate(addr_hash) (called from the Redis
 *	invalidation subscriber) drops every kind of that address at once.
 *
 *	Each entry has an expiry: now + ttl_ms on the cache's clock.  The
 *	clock is injectable for tests: clock(clock_arg) returns milliseconds;
 *	NULL means CLOCK_MONOTONIC.  An expired entry is a miss and is
 *	removed when found.  When the cache holds max_entries entries, put
 *	evicts the least recently used one.  Putting an existing
 *	(kind, addr_hash) replaces it.
 *
 *	Values are opaque pointers with a free callback (X509_free,
 *	EVP_PKEY_free, ...).  A negative entry has no value and says "this
 *	address has no such key"; memcache_is_negative() tells them apart.
 * OWNERSHIP
 *	memcache_new() returns a cache the caller frees with memcache_free(),
 *	which returns NULL.  On KM_OK memcache_put() takes ownership of value;
 *	on any other status the caller still owns it.
 *	memcache_get() returns a counted reference: the value stays valid,
 *	even if the entry is evicted, replaced or invalidated meanwhile,
 *	until the caller calls memcache_release(ref) (which returns NULL).
 *	The value's free_fn runs when the entry has left the cache and the
 *	last reference is released.  References may outlive the cache.
 *	kind and addr_hash are copied.
 * ERRORS
 *	memcache_get(): KM_OK hit (positive or negative), KM_PERMFAIL miss
 *	or expired, KM_PROTO bad argument.
 *	memcache_put*(): KM_OK, KM_NOMEM, KM_PROTO (NULL kind/hash, too long).
 * THREADS
 *	Thread-safe: one mutex guards the table; the free callbacks run
 *	outside it.
 */
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define MEMCACHE_KEY_MAX	128	/* kind + addr_hash */

struct memcache;
struct memcache_ref;

typedef void	(*memcache_free_fn)(void *value);
typedef int64_t	(*memcache_clock_fn)(void *clock_arg);

struct memcache		*memcache_new(size_t max_entries, memcache_clock_fn clock,
			    void *clock_arg);
struct memcache		*memcache_free(struct memcache *mc);

enum km_status		 memcache_put(struct memcache *mc, const char *kind,
			    const char *addr_hash, void *value,
			    memcache_free_fn free_fn, int64_t ttl_ms);
enum km_status		 memcache_put_negative(struct memcache *mc,
			    const char *kind, const char *addr_hash,
			    int64_t ttl_ms);
enum km_status		 memcache_get(struct memcache *mc, const char *kind,
			    const char *addr_hash, struct memcache_ref **ref);
void			*memcache_value(const struct memcache_ref *ref);
int			 memcache_is_negative(const struct memcache_ref *ref);
struct memcache_ref	*memcache_release(struct memcache_ref *ref);

size_t			 memcache_invalidate(struct memcache *mc,
			    const char *addr_hash);
void			 memcache_clear(struct memcache *mc);
size_t			 memcache_count(struct memcache *mc);

#endif
