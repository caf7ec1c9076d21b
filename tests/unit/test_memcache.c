/*
 * test_memcache.c - unit tests for keyclient/memcache.c: hits, expiry on an
 * injected clock, LRU eviction, invalidation, references that outlive
 * their entry, and four threads hammering one cache.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "harness.h"
#include "memcache.h"

static atomic_int frees;		/* values freed so far */
static atomic_int allocs;		/* values made so far */

struct val {
	int	magic;
	int	n;
};

/* val_new - a test value */
static struct val *
val_new(int n)
{
	struct val *v = malloc(sizeof(*v));

	if (v != NULL) {
		atomic_fetch_add(&allocs, 1);
		v->magic = 0x5eed;
		v->n = n;
	}
	return v;
}

/* val_free - free callback that counts and poisons */
static void
val_free(void *p)
{
	struct val *v = p;

	if (v->magic != 0x5eed)
		abort();	/* double free */
	v->magic = 0;
	free(v);
	atomic_fetch_add(&frees, 1);
}

/* fake_clock - the injected clock: milliseconds in *arg */
static int64_t
fake_clock(void *arg)
{
	return *(int64_t *)arg;
}

/* get_n - look up and return the value's n, -1 on miss, -2 if negative */
static int
get_n(struct memcache *mc, const char *kind, const char *h)
{
	struct memcache_ref *r = NULL;
	int n;

	if (memcache_get(mc, kind, h, &r) != KM_OK)
		return r == NULL ? -1 : -99;
	n = memcache_is_negative(r) ? -2 : ((struct val *)memcache_value(r))->n;
	memcache_release(r);
	return n;
}

TEST(hit_and_miss)
{
	int64_t now = 1000;
	struct memcache *mc = memcache_new(8, fake_clock, &now);

	atomic_store(&frees, 0);
	CHECK(mc != NULL);
	CHECK_EQ_INT(get_n(mc, "cert", "aa"), -1);
	CHECK_EQ_INT(memcache_put(mc, "cert", "aa", val_new(1), val_free, 500),
	    KM_OK);
	CHECK_EQ_INT(memcache_put(mc, "enckey", "aa", val_new(2), val_free,
	    500), KM_OK);
	CHECK_EQ_INT(get_n(mc, "cert", "aa"), 1);
	CHECK_EQ_INT(get_n(mc, "enckey", "aa"), 2);
	CHECK_EQ_INT(get_n(mc, "cert", "ab"), -1);
	CHECK_EQ_INT(get_n(mc, "signkey", "aa"), -1);
	CHECK_EQ_INT(memcache_count(mc), 2);
	/* replacing frees the old value */
	CHECK_EQ_INT(memcache_put(mc, "cert", "aa", val_new(3), val_free, 500),
	    KM_OK);
	CHECK_EQ_INT(atomic_load(&frees), 1);
	CHECK_EQ_INT(get_n(mc, "cert", "aa"), 3);
	CHECK_EQ_INT(memcache_count(mc), 2);
	memcache_free(mc);
	CHECK_EQ_INT(atomic_load(&frees), 3);
}

TEST(negative)
{
	int64_t now = 0;
	struct memcache *mc = memcache_new(8, fake_clock, &now);

	CHECK(mc != NULL);
	CHECK_EQ_INT(memcache_put_negative(mc, "cert", "bb", 100), KM_OK);
	CHECK_EQ_INT(get_n(mc, "cert", "bb"), -2);
	now = 100;
	CHECK_EQ_INT(get_n(mc, "cert", "bb"), -1);
	/* a positive put replaces a negative one */
	CHECK_EQ_INT(memcache_put_negative(mc, "cert", "bb", 100), KM_OK);
	CHECK_EQ_INT(memcache_put(mc, "cert", "bb", val_new(7), val_free, 100),
	    KM_OK);
	CHECK_EQ_INT(get_n(mc, "cert", "bb"), 7);
	memcache_free(mc);
}

TEST(expiry)
{
	int64_t now = 5000;
	struct memcache *mc = memcache_new(8, fake_clock, &now);

	atomic_store(&frees, 0);
	CHECK(mc != NULL);
	CHECK_EQ_INT(memcache_put(mc, "cert", "cc", val_new(1), val_free, 30),
	    KM_OK);
	CHECK_EQ_INT(memcache_put(mc, "cert", "dd", val_new(2), val_free, 60),
	    KM_OK);
	now += 29;
	CHECK_EQ_INT(get_n(mc, "cert", "cc"), 1);
	now += 1;
	CHECK_EQ_INT(get_n(mc, "cert", "cc"), -1);
	CHECK_EQ_INT(atomic_load(&frees), 1);	/* removed when found */
	CHECK_EQ_INT(memcache_count(mc), 1);
	CHECK_EQ_INT(get_n(mc, "cert", "dd"), 2);
	now += 30;
	CHECK_EQ_INT(get_n(mc, "cert", "dd"), -1);
	CHECK_EQ_INT(memcache_count(mc), 0);
	memcache_free(mc);
	CHECK_EQ_INT(atomic_load(&frees), 2);
}

TEST(lru_eviction)
{
	int64_t now = 0;
	struct memcache *mc = memcache_new(3, fake_clock, &now);
	char h[8];

	atomic_store(&frees, 0);
	CHECK(mc != NULL);
	for (int i = 0; i < 3; i++) {
		snprintf(h, sizeof(h), "h%d", i);
		CHECK_EQ_INT(memcache_put(mc, "cert", h, val_new(i), val_free,
		    1000), KM_OK);
	}
	/* touch h0 so h1 is now the least recently used */
	CHECK_EQ_INT(get_n(mc, "cert", "h0"), 0);
	CHECK_EQ_INT(memcache_put(mc, "cert", "h3", val_new(3), val_free, 1000),
	    KM_OK);
	CHECK_EQ_INT(memcache_count(mc), 3);
	CHECK_EQ_INT(atomic_load(&frees), 1);
	CHECK_EQ_INT(get_n(mc, "cert", "h1"), -1);
	CHECK_EQ_INT(get_n(mc, "cert", "h0"), 0);
	CHECK_EQ_INT(get_n(mc, "cert", "h2"), 2);
	CHECK_EQ_INT(get_n(mc, "cert", "h3"), 3);
	/* order now (most recent first): h3 h2 h0 -> h0 goes next */
	CHECK_EQ_INT(memcache_put(mc, "cert", "h4", val_new(4), val_free, 1000),
	    KM_OK);
	CHECK_EQ_INT(get_n(mc, "cert", "h0"), -1);
	CHECK_EQ_INT(get_n(mc, "cert", "h2"), 2);
	/* many more puts keep the bound */
	for (int i = 10; i < 1000; i++) {
		snprintf(h, sizeof(h), "x%d", i);
		CHECK_EQ_INT(memcache_put(mc, "cert", h, val_new(i), val_free,
		    1000), KM_OK);
		CHECK(memcache_count(mc) <= 3);
	}
	CHECK_EQ_INT(get_n(mc, "cert", "x999"), 999);
	CHECK_EQ_INT(get_n(mc, "cert", "x996"), -1);
	memcache_free(mc);
	CHECK_EQ_INT(atomic_load(&frees), 990 + 5);
}

TEST(invalidate)
{
	int64_t now = 0;
	struct memcache *mc = memcache_new(64, fake_clock, &now);

	atomic_store(&frees, 0);
	CHECK(mc != NULL);
	CHECK_EQ_INT(memcache_put(mc, "cert", "alice", val_new(1), val_free,
	    1000), KM_OK);
	CHECK_EQ_INT(memcache_put(mc, "enckey", "alice", val_new(2), val_free,
	    1000), KM_OK);
	CHECK_EQ_INT(memcache_put_negative(mc, "signkey", "alice", 1000), KM_OK);
	CHECK_EQ_INT(memcache_put(mc, "cert", "bob", val_new(3), val_free,
	    1000), KM_OK);
	CHECK_EQ_INT(memcache_invalidate(mc, "alice"), 3);
	CHECK_EQ_INT(atomic_load(&frees), 2);
	CHECK_EQ_INT(get_n(mc, "cert", "alice"), -1);
	CHECK_EQ_INT(get_n(mc, "enckey", "alice"), -1);
	CHECK_EQ_INT(get_n(mc, "signkey", "alice"), -1);
	CHECK_EQ_INT(get_n(mc, "cert", "bob"), 3);
	CHECK_EQ_INT(memcache_invalidate(mc, "alice"), 0);
	CHECK_EQ_INT(memcache_invalidate(mc, "nobody"), 0);
	CHECK_EQ_INT(memcache_count(mc), 1);
	memcache_clear(mc);
	CHECK_EQ_INT(memcache_count(mc), 0);
	CHECK_EQ_INT(atomic_load(&frees), 3);
	memcache_free(mc);
}

TEST(ref_outlives_entry)
{
	int64_t now = 0;
	struct memcache *mc = memcache_new(4, fake_clock, &now);
	struct memcache_ref *r1 = NULL, *r2 = NULL;

	atomic_store(&frees, 0);
	CHECK(mc != NULL);
	CHECK_EQ_INT(memcache_put(mc, "cert", "e", val_new(42), val_free, 10),
	    KM_OK);
	CHECK_EQ_INT(memcache_get(mc, "cert", "e", &r1), KM_OK);
	CHECK_EQ_INT(memcache_get(mc, "cert", "e", &r2), KM_OK);
	CHECK(r1 == r2);
	/* invalidated while held: the value must stay valid */
	CHECK_EQ_INT(memcache_invalidate(mc, "e"), 1);
	CHECK_EQ_INT(atomic_load(&frees), 0);
	CHECK_EQ_INT(((struct val *)memcache_value(r1))->n, 42);
	r1 = memcache_release(r1);
	CHECK(r1 == NULL);
	CHECK_EQ_INT(atomic_load(&frees), 0);
	/* the cache itself goes away while a reference is held */
	memcache_free(mc);
	CHECK_EQ_INT(((struct val *)memcache_value(r2))->n, 42);
	memcache_release(r2);
	CHECK_EQ_INT(atomic_load(&frees), 1);
}

TEST(bad_arguments)
{
	struct memcache *mc = memcache_new(4, NULL, NULL);
	struct memcache_ref *r = (struct memcache_ref *)&r;
	char longh[200];
	struct val *v = val_new(1);

	atomic_store(&frees, 0);
	CHECK(mc != NULL && v != NULL);
	memset(longh, 'a', sizeof(longh) - 1);
	longh[sizeof(longh) - 1] = '\0';
	CHECK(memcache_new(0, NULL, NULL) == NULL);
	CHECK_EQ_INT(memcache_put(mc, NULL, "a", v, val_free, 10), KM_PROTO);
	CHECK_EQ_INT(memcache_put(mc, "", "a", v, val_free, 10), KM_PROTO);
	CHECK_EQ_INT(memcache_put(mc, "cert", "", v, val_free, 10), KM_PROTO);
	CHECK_EQ_INT(memcache_put(mc, "cert", NULL, v, val_free, 10), KM_PROTO);
	CHECK_EQ_INT(memcache_put(mc, "cert", longh, v, val_free, 10), KM_PROTO);
	CHECK_EQ_INT(memcache_put(mc, "cert", "a", v, val_free, 0), KM_PROTO);
	CHECK_EQ_INT(memcache_put(mc, "cert", "a", NULL, val_free, 10), KM_PROTO);
	CHECK_EQ_INT(memcache_put(NULL, "cert", "a", v, val_free, 10), KM_PROTO);
	CHECK_EQ_INT(atomic_load(&frees), 0);	/* caller still owns v */
	CHECK_EQ_INT(memcache_get(mc, "cert", longh, &r), KM_PROTO);
	CHECK(r == NULL);
	CHECK_EQ_INT(memcache_get(mc, "cert", "a", NULL), KM_PROTO);
	CHECK_EQ_INT(memcache_invalidate(mc, NULL), 0);
	CHECK(memcache_release(NULL) == NULL);
	CHECK(memcache_free(NULL) == NULL);
	/* the real clock works too */
	CHECK_EQ_INT(memcache_put(mc, "cert", "a", v, val_free, 60000), KM_OK);
	CHECK_EQ_INT(get_n(mc, "cert", "a"), 1);
	CHECK(memcache_free(mc) == NULL);
	CHECK_EQ_INT(atomic_load(&frees), 1);
}

#define HAMMER_THREADS	4
#define HAMMER_OPS	200000
#define HAMMER_KEYS	300

struct hammer {
	struct memcache	*mc;
	int		 seed;
	int		 bad;
	long		 hits;
};

/* hammer_run - random put/get/invalidate with value checks */
static void *
hammer_run(void *arg)
{
	struct hammer *h = arg;
	unsigned s = (unsigned)h->seed;
	char hash[16];

	for (int i = 0; i < HAMMER_OPS; i++) {
		int k = (int)(rand_r(&s) % HAMMER_KEYS), op = (int)(rand_r(&s) % 10);
		struct memcache_ref *r = NULL;

		snprintf(hash, sizeof(hash), "k%d", k);
		if (op < 3) {
			struct val *v = val_new(k);

			if (v == NULL ||
			    memcache_put(h->mc, k & 1 ? "cert" : "enckey", hash,
			    v, val_free, 1 + rand_r(&s) % 50) != KM_OK)
				h->bad++;
		} else if (op == 3) {
			memcache_put_negative(h->mc, "cert", hash, 5);
		} else if (op == 4) {
			memcache_invalidate(h->mc, hash);
		} else if (memcache_get(h->mc, k & 1 ? "cert" : "enckey", hash,
		    &r) == KM_OK) {
			struct val *v = memcache_value(r);

			/* the value must be intact for as long as we hold it */
			if (!memcache_is_negative(r) &&
			    (v == NULL || v->magic != 0x5eed || v->n != k))
				h->bad++;
			h->hits++;
			memcache_release(r);
		}
	}
	return NULL;
}

TEST(threads_hammer)
{
	struct memcache *mc = memcache_new(100, NULL, NULL);
	struct hammer h[HAMMER_THREADS];
	pthread_t tid[HAMMER_THREADS];
	long hits = 0;

	atomic_store(&frees, 0);
	atomic_store(&allocs, 0);
	CHECK(mc != NULL);
	for (int i = 0; i < HAMMER_THREADS; i++) {
		h[i] = (struct hammer){ mc, i + 1, 0, 0 };
		CHECK(pthread_create(&tid[i], NULL, hammer_run, &h[i]) == 0);
	}
	for (int i = 0; i < HAMMER_THREADS; i++) {
		pthread_join(tid[i], NULL);
		CHECK_EQ_INT(h[i].bad, 0);
		hits += h[i].hits;
	}
	CHECK(hits > 0);
	CHECK(memcache_count(mc) <= 100);
	memcache_free(mc);
	/* every value made was freed exactly once (val_free aborts twice) */
	CHECK_EQ_INT(atomic_load(&frees), atomic_load(&allocs));
}

static const struct test_case tests[] = {
	T(hit_and_miss),
	T(negative),
	T(expiry),
	T(lru_eviction),
	T(invalidate),
	T(ref_outlives_entry),
	T(bad_arguments),
	T(threads_hammer),
	{ 0 }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
