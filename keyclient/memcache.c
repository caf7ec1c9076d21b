/*
 * memcache.c - the in-process (L1) cache: hash table + LRU list, counted
 * references (see memcache.h).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "memcache.h"

struct memcache_ref {
	struct memcache_ref	*hnext;		/* hash chain, then dead list */
	struct memcache_ref	*prev, *next;	/* LRU: head is most recent */
	atomic_int		 refs;		/* 1 for the cache + 1 per get */
	int64_t			 expires;	/* on the cache's clock, ms */
	int			 negative;
	void			*value;
	memcache_free_fn	 free_fn;
	size_t			 kindlen;	/* key is kind NUL addr_hash NUL */
	size_t			 keylen;
	uint32_t		 hv;		/* hash of addr_hash */
	char			 key[];
};

struct memcache {
	pthread_mutex_t		 mtx;
	struct memcache_ref	**buckets;
	size_t			 nbuckets;	/* a power of two */
	size_t			 count, max;
	struct memcache_ref	*head, *tail;
	memcache_clock_fn	 clock;
	void			*clock_arg;
};

/* mono_ms - default clock: CLOCK_MONOTONIC in milliseconds */
static int64_t
mono_ms(void *arg)
{
	struct timespec ts;

	(void)arg;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* hash_str - FNV-1a over a string */
static uint32_t
hash_str(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

/* memcache_new - a cache of at most max_entries entries */
struct memcache *
memcache_new(size_t max_entries, memcache_clock_fn clock, void *clock_arg)
{
	struct memcache *mc;
	size_t n = 16;

	if (max_entries == 0 || max_entries > (SIZE_MAX >> 4))
		return NULL;
	while (n < max_entries)
		n <<= 1;
	if ((mc = calloc(1, sizeof(*mc))) == NULL)
		return NULL;
	if ((mc->buckets = calloc(n, sizeof(*mc->buckets))) == NULL) {
		free(mc);
		return NULL;
	}
	if (pthread_mutex_init(&mc->mtx, NULL) != 0) {
		free(mc->buckets);
		free(mc);
		return NULL;
	}
	mc->nbuckets = n;
	mc->max = max_entries;
	mc->clock = clock ? clock : mono_ms;
	mc->clock_arg = clock_arg;
	return mc;
}

/* unref - drop one reference; the last one frees value and entry */
static void
unref(struct memcache_ref *e)
{
	if (atomic_fetch_sub(&e->refs, 1) != 1)
		return;
	if (e->value != NULL && e->free_fn != NULL)
		e->free_fn(e->value);
	free(e);
}

/* unlink_entry - take e out of its chain and the LRU list (locked) */
static void
unlink_entry(struct memcache *mc, struct memcache_ref *e)
{
	struct memcache_ref **pp = &mc->buckets[e->hv & (mc->nbuckets - 1)];

	while (*pp != NULL && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp == NULL)
		log_panic("memcache: entry missing from its hash chain");
	*pp = e->hnext;
	e->hnext = NULL;
	if (e->prev)
		e->prev->next = e->next;
	else
		mc->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		mc->tail = e->prev;
	e->prev = e->next = NULL;
	mc->count--;
}

/* push_head - make e the most recently used entry (locked) */
static void
push_head(struct memcache *mc, struct memcache_ref *e)
{
	e->prev = NULL;
	e->next = mc->head;
	if (mc->head)
		mc->head->prev = e;
	mc->head = e;
	if (mc->tail == NULL)
		mc->tail = e;
}

/* find - the entry for key in bucket hv (locked) */
static struct memcache_ref *
find(struct memcache *mc, uint32_t hv, const char *key, size_t keylen)
{
	struct memcache_ref *e;

	for (e = mc->buckets[hv & (mc->nbuckets - 1)]; e; e = e->hnext)
		if (e->hv == hv && e->keylen == keylen &&
		    memcmp(e->key, key, keylen) == 0)
			return e;
	return NULL;
}

/* make_key - kind NUL addr_hash NUL into buf; returns its length or 0 */
static size_t
make_key(char *buf, const char *kind, const char *addr_hash, size_t *kindlen)
{
	size_t kl, hl;

	if (kind == NULL || addr_hash == NULL)
		return 0;
	kl = strlen(kind);
	hl = strlen(addr_hash);
	if (kl == 0 || hl == 0 || kl + hl + 2 > MEMCACHE_KEY_MAX)
		return 0;
	memcpy(buf, kind, kl + 1);
	memcpy(buf + kl + 1, addr_hash, hl + 1);
	*kindlen = kl;
	return kl + hl + 2;
}

/* insert - add an entry, replacing an equal key, evicting the LRU tail */
static enum km_status
insert(struct memcache *mc, const char *kind, const char *addr_hash,
    void *value, memcache_free_fn free_fn, int negative, int64_t ttl_ms)
{
	char key[MEMCACHE_KEY_MAX];
	struct memcache_ref *e, *old, *dead = NULL;
	size_t keylen, kindlen = 0;

	if (mc == NULL || ttl_ms <= 0 ||
	    (keylen = make_key(key, kind, addr_hash, &kindlen)) == 0)
		return KM_PROTO;
	if ((e = calloc(1, sizeof(*e) + keylen)) == NULL)
		return KM_NOMEM;
	memcpy(e->key, key, keylen);
	e->keylen = keylen;
	e->kindlen = kindlen;
	e->hv = hash_str(addr_hash);
	e->value = value;
	e->free_fn = free_fn;
	e->negative = negative;
	atomic_init(&e->refs, 1);

	pthread_mutex_lock(&mc->mtx);
	e->expires = mc->clock(mc->clock_arg) + ttl_ms;
	if ((old = find(mc, e->hv, key, keylen)) != NULL) {
		unlink_entry(mc, old);
		old->hnext = dead;
		dead = old;
	}
	while (mc->count >= mc->max && mc->tail != NULL) {
		old = mc->tail;
		unlink_entry(mc, old);
		old->hnext = dead;
		dead = old;
	}
	e->hnext = mc->buckets[e->hv & (mc->nbuckets - 1)];
	mc->buckets[e->hv & (mc->nbuckets - 1)] = e;
	push_head(mc, e);
	mc->count++;
	pthread_mutex_unlock(&mc->mtx);

	while (dead != NULL) {
		old = dead;
		dead = dead->hnext;
		unref(old);
	}
	return KM_OK;
}

/* memcache_put - cache value (freed later with free_fn) for ttl_ms */
enum km_status
memcache_put(struct memcache *mc, const char *kind, const char *addr_hash,
    void *value, memcache_free_fn free_fn, int64_t ttl_ms)
{
	if (value == NULL)
		return KM_PROTO;
	return insert(mc, kind, addr_hash, value, free_fn, 0, ttl_ms);
}

/* memcache_put_negative - cache "no such key" for ttl_ms */
enum km_status
memcache_put_negative(struct memcache *mc, const char *kind,
    const char *addr_hash, int64_t ttl_ms)
{
	return insert(mc, kind, addr_hash, NULL, NULL, 1, ttl_ms);
}

/* memcache_get - look up (kind, addr_hash); a hit returns a reference */
enum km_status
memcache_get(struct memcache *mc, const char *kind, const char *addr_hash,
    struct memcache_ref **ref)
{
	char key[MEMCACHE_KEY_MAX];
	struct memcache_ref *e, *expired = NULL;
	size_t keylen, kindlen;
	enum km_status st = KM_PERMFAIL;

	if (ref != NULL)
		*ref = NULL;
	if (mc == NULL || ref == NULL ||
	    (keylen = make_key(key, kind, addr_hash, &kindlen)) == 0)
		return KM_PROTO;
	pthread_mutex_lock(&mc->mtx);
	if ((e = find(mc, hash_str(addr_hash), key, keylen)) != NULL) {
		if (mc->clock(mc->clock_arg) >= e->expires) {
			unlink_entry(mc, e);
			expired = e;
		} else {
			if (e != mc->head) {
				/* move to the front of the LRU list */
				e->prev->next = e->next;
				if (e->next)
					e->next->prev = e->prev;
				else
					mc->tail = e->prev;
				push_head(mc, e);
			}
			atomic_fetch_add(&e->refs, 1);
			*ref = e;
			st = KM_OK;
		}
	}
	pthread_mutex_unlock(&mc->mtx);
	if (expired)
		unref(expired);
	return st;
}

/* memcache_value - the value behind a reference (NULL if negative) */
void *
memcache_value(const struct memcache_ref *ref)
{
	return ref ? ref->value : NULL;
}

/* memcache_is_negative - 1 if the reference is a negative entry */
int
memcache_is_negative(const struct memcache_ref *ref)
{
	return ref ? ref->negative : 0;
}

/* memcache_release - give back a reference from memcache_get; NULL */
struct memcache_ref *
memcache_release(struct memcache_ref *ref)
{
	if (ref != NULL)
		unref(ref);
	return NULL;
}

/* memcache_invalidate - drop every kind cached for addr_hash */
size_t
memcache_invalidate(struct memcache *mc, const char *addr_hash)
{
	struct memcache_ref *e, *next, *dead = NULL;
	uint32_t hv;
	size_t n = 0;

	if (mc == NULL || addr_hash == NULL)
		return 0;
	hv = hash_str(addr_hash);
	pthread_mutex_lock(&mc->mtx);
	for (e = mc->buckets[hv & (mc->nbuckets - 1)]; e; e = next) {
		next = e->hnext;
		if (e->hv == hv &&
		    strcmp(e->key + e->kindlen + 1, addr_hash) == 0) {
			unlink_entry(mc, e);
			e->hnext = dead;
			dead = e;
			n++;
		}
	}
	pthread_mutex_unlock(&mc->mtx);
	while (dead != NULL) {
		e = dead;
		dead = dead->hnext;
		unref(e);
	}
	return n;
}

/* memcache_clear - drop every entry */
void
memcache_clear(struct memcache *mc)
{
	struct memcache_ref *e, *dead = NULL;

	if (mc == NULL)
		return;
	pthread_mutex_lock(&mc->mtx);
	while ((e = mc->head) != NULL) {
		unlink_entry(mc, e);
		e->hnext = dead;
		dead = e;
	}
	pthread_mutex_unlock(&mc->mtx);
	while (dead != NULL) {
		e = dead;
		dead = dead->hnext;
		unref(e);
	}
}

/* memcache_count - the number of entries (expired ones included) */
size_t
memcache_count(struct memcache *mc)
{
	size_t n;

	if (mc == NULL)
		return 0;
	pthread_mutex_lock(&mc->mtx);
	n = mc->count;
	pthread_mutex_unlock(&mc->mtx);
	return n;
}

/* memcache_free - drop every entry and free the cache; returns NULL */
struct memcache *
memcache_free(struct memcache *mc)
{
	if (mc == NULL)
		return NULL;
	memcache_clear(mc);
	pthread_mutex_destroy(&mc->mtx);
	free(mc->buckets);
	free(mc);
	return NULL;
}
