/*
 * cache-probe - a command-line probe over keyclient's cache, memcache and
 * seal modules, for the scripted tests and the latency figures.
 *
 * usage: cache-probe [options] command [args]
 *   -s PATH   Redis unix socket        -H HOST -p PORT   Redis over TCP
 *   -k FILE   seal key file            -d DB             database
 *   -c MS     connect timeout          -t MS             command timeout
 *   -b MS     minimum back-off         -B MS             maximum back-off
 *   -v        more log output (stderr)
 *   -P FILE   loop: append "n=.. ok=.. permfail=.. tempfail=.." to FILE
 *             after every call (the progress a test waits for)
 *   The Redis password, if any, is read from $KM_REDIS_PASSWORD.
 * commands:
 *   keygen PATH                 create a seal key file
 *   name KIND ADDR              print the Redis entry name
 *   hash ADDR                   print the keyed hash of ADDR
 *   put KIND ADDR VALUE TTL     store VALUE for TTL seconds
 *   putneg KIND ADDR TTL        store a negative entry
 *   get KIND ADDR               print "ok VALUE", "ok negative", "permfail",
 *                               "tempfail", ... and "ms=N" on a second line
 *   del KIND ADDR / invalidate ADDR
 *   loop N INTERVAL_MS KIND ADDR  N gets; a miss is followed by a put;
 *                               prints counts, the slowest call and when
 *                               the first hit after a failure came
 *   subscribe N SECONDS         print "invalidate HASH" per message (and
 *                               "reset" after a reconnect); exit 0 after N
 *                               messages, 1 on timeout
 *   bench N                     L1 and L2 (Redis) hit latency, median/p99
 *   threads T N                 T threads share one handle (the pool), each
 *                               doing N put/get/check rounds on its own
 *                               addresses; prints "rounds=.. errors=.."
 * Exit status: 0 when the command ran (whatever the cache said), 1 on a
 * failed subscribe, 2 on usage or setup errors.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "cache.h"
#include "log.h"
#include "memcache.h"
#include "seal.h"
#include "secmem.h"

static struct cache_opts opts;
static const char *keyfile;
static const char *progress_path;

/* usage - print usage and exit 2 */
static void
usage(void)
{
	fprintf(stderr, "usage: cache-probe [-s path | -H host -p port] "
	    "[-k keyfile] [-d db] [-c ms] [-t ms] [-b ms] [-B ms] [-P file] [-v] "
	    "command [args]\n");
	exit(2);
}

/* mono_us - monotonic clock in microseconds */
static int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* load_key - the seal key named by -k, or exit */
static struct seal_key *
load_key(void)
{
	struct kmerr ke;
	struct seal_key *k;

	if (keyfile == NULL) {
		fprintf(stderr, "cache-probe: -k keyfile is required\n");
		exit(2);
	}
	if ((k = seal_key_load(keyfile, &ke)) == NULL) {
		fprintf(stderr, "cache-probe: %s\n", ke.msg);
		exit(2);
	}
	return k;
}

/* open_cache - a cache handle over the options, or exit */
static struct cache *
open_cache(const struct seal_key *k)
{
	struct kmerr err = { 0 };
	struct cache *c;

	opts.key = k;
	if ((c = cache_new(&opts, &err)) == NULL) {
		fprintf(stderr, "cache-probe: %s\n", err.msg);
		exit(2);
	}
	return c;
}

/* ttl_arg - parse a TTL argument */
static int
ttl_arg(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < -1 || v > 1000000000L) {
		fprintf(stderr, "cache-probe: bad number %s\n", s);
		exit(2);
	}
	return (int)v;
}

/* do_get - one lookup, printed */
static void
do_get(struct cache *c, const char *kind, const char *addr)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	int neg = 0;
	int64_t t0 = mono_us();
	enum km_status st = cache_get(c, kind, addr, &buf, &len, &neg);
	int64_t t1 = mono_us();

	if (st == KM_OK && neg)
		printf("ok negative\n");
	else if (st == KM_OK)
		printf("ok %.*s\n", (int)len, (const char *)buf);
	else
		printf("%s\n", km_status_name(st));
	printf("ms=%lld\n", (long long)((t1 - t0) / 1000));
	secmem_free(buf, len);
}

/* do_loop - N gets (a miss is refilled) with counts and timings */
static void
do_loop(struct cache *c, int n, int interval_ms, const char *kind,
    const char *addr)
{
	int counts[KM_PROTO + 1] = { 0 };
	int64_t max_us = 0, start = mono_us(), fail_at = -1, back_at = -1;
	enum km_status last = KM_OK;
	FILE *pf = NULL;

	if (progress_path != NULL) {
		if ((pf = fopen(progress_path, "a")) == NULL) {
			perror(progress_path);
			exit(2);
		}
		setvbuf(pf, NULL, _IOLBF, 0);	/* one write per line */
	}

	for (int i = 0; i < n; i++) {
		unsigned char *buf = NULL;
		size_t len = 0;
		int neg;
		int64_t t0 = mono_us(), dt;
		enum km_status st = cache_get(c, kind, addr, &buf, &len, &neg);

		dt = mono_us() - t0;
		if (dt > max_us)
			max_us = dt;
		secmem_free(buf, len);
		if (st == KM_PERMFAIL)
			cache_put(c, kind, addr, (const unsigned char *)"refill",
			    6, 60);
		if (st == KM_TEMPFAIL && fail_at < 0)
			fail_at = t0 - start;
		if (st != KM_TEMPFAIL && fail_at >= 0 && back_at < 0)
			back_at = t0 - start;
		counts[st]++;
		last = st;
		if (pf != NULL)
			fprintf(pf, "n=%d ok=%d permfail=%d tempfail=%d\n", i + 1,
			    counts[KM_OK], counts[KM_PERMFAIL],
			    counts[KM_TEMPFAIL]);
		if (interval_ms > 0)
			usleep((useconds_t)interval_ms * 1000);
	}
	printf("ok=%d permfail=%d tempfail=%d other=%d max_ms=%lld "
	    "first_fail_ms=%lld back_ms=%lld last=%s total_ms=%lld\n",
	    counts[KM_OK], counts[KM_PERMFAIL], counts[KM_TEMPFAIL],
	    counts[KM_NOMEM] + counts[KM_PROTO], (long long)(max_us / 1000),
	    (long long)(fail_at < 0 ? -1 : fail_at / 1000),
	    (long long)(back_at < 0 ? -1 : back_at / 1000),
	    km_status_name(last), (long long)((mono_us() - start) / 1000));
	if (pf != NULL)
		fclose(pf);
}

static pthread_mutex_t sub_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sub_cv = PTHREAD_COND_INITIALIZER;
static int sub_seen;

/* on_invalidate - subscriber callback: print and count */
static void
on_invalidate(const char *addr_hash, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&sub_mtx);
	if (addr_hash == NULL) {
		printf("reset\n");
	} else {
		printf("invalidate %s\n", addr_hash);
		sub_seen++;
	}
	fflush(stdout);
	pthread_cond_signal(&sub_cv);
	pthread_mutex_unlock(&sub_mtx);
}

/* do_subscribe - wait for n messages or seconds */
static int
do_subscribe(const struct seal_key *k, int n, int seconds)
{
	struct cache_sub *s;
	struct timespec deadline;
	struct kmerr err = { 0 };
	int ok;

	opts.key = k;
	if ((s = cache_subscribe_start(&opts, on_invalidate, NULL,
	    &err)) == NULL) {
		fprintf(stderr, "cache-probe: %s\n", err.msg);
		return 2;
	}
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += seconds;
	pthread_mutex_lock(&sub_mtx);
	while (sub_seen < n &&
	    pthread_cond_timedwait(&sub_cv, &sub_mtx, &deadline) == 0)
		;
	ok = sub_seen >= n;
	pthread_mutex_unlock(&sub_mtx);
	cache_subscribe_stop(s);
	printf("%s %d\n", ok ? "done" : "timeout", sub_seen);
	return ok ? 0 : 1;
}

struct worker {
	struct cache	*c;
	int		 id, n, errors;
};

/* worker_run - put/get rounds on this worker's own addresses */
static void *
worker_run(void *arg)
{
	struct worker *w = arg;
	char addr[64], val[64];

	for (int i = 0; i < w->n; i++) {
		unsigned char *buf = NULL;
		size_t len = 0;
		int neg = 0;

		snprintf(addr, sizeof(addr), "w%d-%d@example.org", w->id, i % 50);
		snprintf(val, sizeof(val), "value-%d-%d", w->id, i);
		if (cache_put(w->c, "cert", addr, (const unsigned char *)val,
		    strlen(val), 60) != KM_OK ||
		    cache_get(w->c, "cert", addr, &buf, &len, &neg) != KM_OK ||
		    neg || len != strlen(val) || memcmp(buf, val, len) != 0)
			w->errors++;
		secmem_free(buf, len);
	}
	return NULL;
}

/* do_threads - t threads hammering one cache handle */
static int
do_threads(struct cache *c, int t, int n)
{
	struct worker w[16];
	pthread_t tid[16];
	int errors = 0;

	if (t < 1 || t > 16)
		return 2;
	for (int i = 0; i < t; i++) {
		w[i] = (struct worker){ c, i, n, 0 };
		if (pthread_create(&tid[i], NULL, worker_run, &w[i]) != 0)
			return 2;
	}
	for (int i = 0; i < t; i++) {
		pthread_join(tid[i], NULL);
		errors += w[i].errors;
	}
	printf("rounds=%d errors=%d\n", t * n, errors);
	return errors ? 1 : 0;
}

/* cmp_i64 - qsort comparator */
static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* report - print median and p99 of n samples (ns) */
static void
report(const char *what, int64_t *ns, int n)
{
	qsort(ns, (size_t)n, sizeof(*ns), cmp_i64);
	printf("%-22s n=%d median_us=%.2f p99_us=%.2f max_us=%.2f\n", what, n,
	    ns[n / 2] / 1000.0, ns[(int)((long)n * 99 / 100)] / 1000.0,
	    ns[n - 1] / 1000.0);
}

/* ns_now - monotonic nanoseconds */
static int64_t
ns_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* do_bench - L1 and L2 hit latency side by side */
static int
do_bench(struct cache *c, const struct seal_key *k, int n)
{
	struct memcache *mc = memcache_new(1024, NULL, NULL);
	unsigned char value[1500], *buf;
	char addr[64], hash[SEAL_HASH_HEXLEN + 1];
	int64_t *l1 = calloc((size_t)n, sizeof(int64_t));
	int64_t *l1h = calloc((size_t)n, sizeof(int64_t));
	int64_t *l2 = calloc((size_t)n, sizeof(int64_t));
	size_t len;
	int neg, bad = 0;

	if (mc == NULL || l1 == NULL || l1h == NULL || l2 == NULL)
		return 2;
	RAND_bytes(value, sizeof(value));
	/* 1000 addresses in L1, each a 1500-byte value */
	for (int i = 0; i < 1000; i++) {
		unsigned char *v = malloc(sizeof(value));

		snprintf(addr, sizeof(addr), "user%d@example.org", i);
		if (v == NULL || seal_name_hash(k, addr, hash) != KM_OK)
			return 2;
		memcpy(v, value, sizeof(value));
		memcache_put(mc, "cert", hash, v, free, 3600 * 1000);
	}
	if (cache_put(c, "cert", "bench@example.org", value, sizeof(value),
	    300) != KM_OK) {
		fprintf(stderr, "cache-probe: bench: cannot put into Redis\n");
		return 2;
	}
	for (int i = 0; i < n; i++) {
		struct memcache_ref *r;
		int64_t t0;

		snprintf(addr, sizeof(addr), "user%d@example.org", i % 1000);
		seal_name_hash(k, addr, hash);
		t0 = ns_now();
		if (memcache_get(mc, "cert", hash, &r) != KM_OK)
			bad++;
		memcache_release(r);
		l1[i] = ns_now() - t0;

		t0 = ns_now();
		seal_name_hash(k, addr, hash);
		if (memcache_get(mc, "cert", hash, &r) != KM_OK)
			bad++;
		memcache_release(r);
		l1h[i] = ns_now() - t0;

		t0 = ns_now();
		if (cache_get(c, "cert", "bench@example.org", &buf, &len,
		    &neg) != KM_OK || len != sizeof(value) ||
		    memcmp(buf, value, len) != 0)
			bad++;
		l2[i] = ns_now() - t0;
		secmem_free(buf, len);
	}
	report("l1_get", l1, n);
	report("l1_hash+get", l1h, n);
	report("l2_redis_get+open", l2, n);
	printf("errors=%d\n", bad);
	free(l1);
	free(l1h);
	free(l2);
	memcache_free(mc);
	return bad ? 1 : 0;
}

int
main(int argc, char **argv)
{
	struct seal_key *k = NULL;
	struct cache *c = NULL;
	const char *cmd;
	char out[SEAL_NAME_MAX];
	struct kmerr ke;
	int ch, verbose = 0, rc = 0;
	enum km_status st;

	while ((ch = getopt(argc, argv, "s:H:p:k:d:c:t:b:B:P:v")) != -1) {
		switch (ch) {
		case 's': opts.unix_path = optarg; break;
		case 'H': opts.host = optarg; break;
		case 'p': opts.port = atoi(optarg); break;
		case 'k': keyfile = optarg; break;
		case 'd': opts.database = atoi(optarg); break;
		case 'c': opts.connect_timeout_ms = atoi(optarg); break;
		case 't': opts.command_timeout_ms = atoi(optarg); break;
		case 'b': opts.backoff_min_ms = atoi(optarg); break;
		case 'B': opts.backoff_max_ms = atoi(optarg); break;
		case 'P': progress_path = optarg; break;
		case 'v': verbose++; break;
		default: usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage();
	log_init("cache-probe", LOG_MAIL, 1, verbose);
	setvbuf(stdout, NULL, _IOLBF, 0);
	opts.password = getenv("KM_REDIS_PASSWORD");
	cmd = argv[0];

	if (strcmp(cmd, "keygen") == 0 && argc == 2) {
		if (seal_key_create(argv[1], &ke) != KM_OK) {
			fprintf(stderr, "cache-probe: %s\n", ke.msg);
			return 2;
		}
		return 0;
	}
	k = load_key();
	if (strcmp(cmd, "name") == 0 && argc == 3) {
		st = seal_entry_name(k, argv[1], argv[2], out);
		printf("%s\n", st == KM_OK ? out : km_status_name(st));
	} else if (strcmp(cmd, "hash") == 0 && argc == 2) {
		char h[SEAL_HASH_HEXLEN + 1];

		st = seal_name_hash(k, argv[1], h);
		printf("%s\n", st == KM_OK ? h : km_status_name(st));
	} else if (strcmp(cmd, "subscribe") == 0 && argc == 3) {
		rc = do_subscribe(k, ttl_arg(argv[1]), ttl_arg(argv[2]));
	} else {
		c = open_cache(k);
		if (strcmp(cmd, "put") == 0 && argc == 5)
			printf("%s\n", km_status_name(cache_put(c, argv[1],
			    argv[2], (const unsigned char *)argv[3],
			    strlen(argv[3]), ttl_arg(argv[4]))));
		else if (strcmp(cmd, "putneg") == 0 && argc == 4)
			printf("%s\n", km_status_name(cache_put_negative(c,
			    argv[1], argv[2], ttl_arg(argv[3]))));
		else if (strcmp(cmd, "get") == 0 && argc == 3)
			do_get(c, argv[1], argv[2]);
		else if (strcmp(cmd, "del") == 0 && argc == 3)
			printf("%s\n", km_status_name(cache_del(c, argv[1],
			    argv[2])));
		else if (strcmp(cmd, "invalidate") == 0 && argc == 2)
			printf("%s\n", km_status_name(cache_invalidate(c,
			    argv[1])));
		else if (strcmp(cmd, "loop") == 0 && argc == 5)
			do_loop(c, ttl_arg(argv[1]), ttl_arg(argv[2]), argv[3],
			    argv[4]);
		else if (strcmp(cmd, "threads") == 0 && argc == 3)
			rc = do_threads(c, ttl_arg(argv[1]), ttl_arg(argv[2]));
		else if (strcmp(cmd, "bench") == 0 && argc == 2)
			rc = do_bench(c, k, ttl_arg(argv[1]) > 0 ?
			    ttl_arg(argv[1]) : 10000);
		else
			usage();
	}
	cache_free(c);
	seal_key_free(k);
	return rc;
}
