/*
 * kmip-probe - run one KMIP operation with kmilter's client and print the result
 *
 * usage: kmip-probe -p PORT -C CA -c CERT -k KEY [-H HOST] [-n NAME]
 *                   [-t CONNECT_MS] [-T IO_MS] OPERATION ARGS...
 *   versions                          Discover Versions
 *   register cert|secret|key NAME FILE [GROUP [MASK]]  prints "uid=N"
 *   locate [name=X] [type=T] [state=S] [group=G]       prints "uid=N" lines
 *   get UID [OUTFILE]                 prints "type=T len=N", writes bytes
 *   attrs UID                         prints state=, type=, name=, group=...
 *   activate UID | destroy UID | revoke UID compromise|cessation
 *   bench-get UID COUNT warm|new      median/p90 latency of COUNT Gets
 *   repeat-get UID COUNT SLEEP_MS     Gets on one connection; prints connects=N
 *   pool-get UID THREADS COUNT MAX    COUNT Gets per thread via a pool
 * Exit status: 0 KM_OK, 1 KM_TEMPFAIL, 2 KM_PERMFAIL, 3 KM_NOMEM, 4 KM_PROTO,
 * 64 usage; the error line goes to stderr as "error: STATUS: text".
 * Types: cert secret key; states: preactive active compromised deactivated.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kmip.h"
#include "log.h"
#include "secmem.h"

static struct kmip_server_opts opts;

/* usage - print usage and exit 64 */
static void
usage(void)
{
	fprintf(stderr, "usage: kmip-probe -p PORT -C CA -c CERT -k KEY [-H HOST] "
	    "[-n NAME] [-t MS] [-T MS] OPERATION ARGS...\n");
	exit(64);
}

/* finish - print an error line if needed and map the status to an exit code */
static int
finish(enum km_status st, const char *err)
{
	if (st != KM_OK)
		fprintf(stderr, "error: %s: %s\n", km_status_name(st), err);
	return (int)st;
}

/* parse_type - object type from a word */
static enum kmip_object_type
parse_type(const char *s)
{
	if (strcmp(s, "cert") == 0)
		return KMIP_OBJ_CERTIFICATE;
	if (strcmp(s, "secret") == 0)
		return KMIP_OBJ_SECRET_DATA;
	if (strcmp(s, "key") == 0)
		return KMIP_OBJ_PRIVATE_KEY;
	fprintf(stderr, "unknown type %s\n", s);
	exit(64);
}

/* parse_state - state from a word */
static enum kmip_state
parse_state(const char *s)
{
	if (strcmp(s, "preactive") == 0)
		return KMIP_STATE_PRE_ACTIVE;
	if (strcmp(s, "active") == 0)
		return KMIP_STATE_ACTIVE;
	if (strcmp(s, "deactivated") == 0)
		return KMIP_STATE_DEACTIVATED;
	if (strcmp(s, "compromised") == 0)
		return KMIP_STATE_COMPROMISED;
	fprintf(stderr, "unknown state %s\n", s);
	exit(64);
}

/* read_file - whole file into a secmem buffer */
static unsigned char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *p;
	long n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) <= 0 ||
	    fseek(f, 0, SEEK_SET) != 0 || (p = secmem_alloc((size_t)n)) == NULL ||
	    fread(p, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "cannot read %s\n", path);
		exit(64);
	}
	fclose(f);
	*len = (size_t)n;
	return p;
}

/* now_us - monotonic microseconds */
static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* cmp_double - qsort comparator */
static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* bench_get - time COUNT Gets on a warm connection or new ones */
static int
bench_get(const char *uid, int count, int fresh)
{
	struct kmip_conn *c = NULL;
	enum kmip_object_type t;
	unsigned char *d;
	size_t n;
	double *ms = calloc((size_t)count, sizeof(double)), t0;
	struct kmerr err = { 0 };
	enum km_status st = KM_OK;

	if (ms == NULL)
		return 4;
	if (!fresh && (st = kmip_conn_open(&opts, &c, &err)) !=
	    KM_OK)
		return finish(st, err.msg);
	if (!fresh) {			/* warm up */
		if ((st = kmip_get(c, uid, &t, &d, &n, &err)) != KM_OK)
			return finish(st, err.msg);
		secmem_free(d, n);
	}
	for (int i = 0; i < count; i++) {
		t0 = now_us();
		if (fresh && (st = kmip_conn_open(&opts, &c, &err)) != KM_OK)
			return finish(st, err.msg);
		st = kmip_get(c, uid, &t, &d, &n, &err);
		if (fresh)
			c = kmip_conn_free(c);
		ms[i] = (now_us() - t0) / 1000.0;
		if (st != KM_OK)
			return finish(st, err.msg);
		secmem_free(d, n);
	}
	qsort(ms, (size_t)count, sizeof(double), cmp_double);
	printf("gets=%d mode=%s median_ms=%.3f p90_ms=%.3f min_ms=%.3f max_ms=%.3f"
	    " connects=%lu\n", count, fresh ? "new" : "warm", ms[count / 2],
	    ms[count * 9 / 10], ms[0], ms[count - 1],
	    c ? kmip_conn_connects(c) : (unsigned long)count);
	kmip_conn_free(c);
	free(ms);
	return 0;
}

struct pool_job {
	struct kmip_pool *pool;
	const char *uid;
	int count, ok, fail;
};

/* pool_worker - Gets through the pool */
static void *
pool_worker(void *arg)
{
	struct pool_job *j = arg;
	struct kmip_conn *c;
	enum kmip_object_type t;
	unsigned char *d;
	size_t n;
	struct kmerr err = { 0 };

	for (int i = 0; i < j->count; i++) {
		if (kmip_pool_get(j->pool, &c, &err) != KM_OK) {
			fprintf(stderr, "pool: %s\n", err.msg);
			j->fail++;
			continue;
		}
		if (kmip_get(c, j->uid, &t, &d, &n, &err) == KM_OK) {
			j->ok++;
			secmem_free(d, n);
		} else {
			fprintf(stderr, "get: %s\n", err.msg);
			j->fail++;
		}
		kmip_pool_put(j->pool, c);
	}
	return NULL;
}

/* pool_get - THREADS threads x COUNT Gets through a pool of MAX */
static int
pool_get(const char *uid, int threads, int count, int max)
{
	struct kmip_pool *p;
	struct pool_job jobs[64];
	pthread_t tid[64];
	struct kmerr err = { 0 };
	int ok = 0, fail = 0;
	double t0;

	if (threads < 1 || threads > 64)
		usage();
	if ((p = kmip_pool_new(&opts, max, &err)) == NULL)
		return finish(KM_PERMFAIL, err.msg);
	t0 = now_us();
	for (int i = 0; i < threads; i++) {
		jobs[i] = (struct pool_job){ p, uid, count, 0, 0 };
		pthread_create(&tid[i], NULL, pool_worker, &jobs[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(tid[i], NULL);
		ok += jobs[i].ok;
		fail += jobs[i].fail;
	}
	printf("ok=%d fail=%d seconds=%.3f\n", ok, fail, (now_us() - t0) / 1e6);
	kmip_pool_free(p);
	return fail ? 2 : 0;
}

int
main(int argc, char **argv)
{
	struct kmip_conn *c;
	enum km_status st;
	struct kmerr err = { 0 };
	char uid[KMIP_UID_MAX];
	const char *op;
	int ch;

	signal(SIGPIPE, SIG_IGN);
	log_init("kmip-probe", 0, 1, getenv("KMIP_PROBE_DEBUG") ? 3 : 0);
	opts.host = "127.0.0.1";
	opts.name = "km";
	opts.connect_timeout_ms = 3000;
	opts.io_timeout_ms = 3000;
	while ((ch = getopt(argc, argv, "H:p:C:c:k:n:t:T:")) != -1) {
		switch (ch) {
		case 'H': opts.host = optarg; break;
		case 'p': opts.port = atoi(optarg); break;
		case 'C': opts.ca_file = optarg; break;
		case 'c': opts.cert_file = optarg; break;
		case 'k': opts.key_file = optarg; break;
		case 'n': opts.name = optarg; break;
		case 't': opts.connect_timeout_ms = atoi(optarg); break;
		case 'T': opts.io_timeout_ms = atoi(optarg); break;
		default: usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage();
	op = argv[0];
	if (strcmp(op, "bench-get") == 0 && argc == 4)
		return bench_get(argv[1], atoi(argv[2]), strcmp(argv[3], "new") == 0);
	if (strcmp(op, "pool-get") == 0 && argc == 5)
		return pool_get(argv[1], atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	if ((st = kmip_conn_open(&opts, &c, &err)) != KM_OK)
		return finish(st, err.msg);
	if (strcmp(op, "versions") == 0) {
		struct kmip_version v[16];
		size_t n;

		if ((st = kmip_discover_versions(c, v, 16, &n, &err)) ==
		    KM_OK)
			for (size_t i = 0; i < n; i++)
				printf("version=%d.%d\n", v[i].major, v[i].minor);
	} else if (strcmp(op, "register") == 0 && argc >= 4) {
		struct kmip_register_req q = { 0 };

		q.type = parse_type(argv[1]);
		q.name = argv[2];
		q.data = read_file(argv[3], &q.len);
		q.group = argc >= 5 ? argv[4] : NULL;
		q.usage_mask = argc >= 6 ? (uint32_t)strtoul(argv[5], NULL, 0) : 0;
		if ((st = kmip_register(c, &q, uid, &err)) == KM_OK)
			printf("uid=%s\n", uid);
		secmem_free((void *)q.data, q.len);
	} else if (strcmp(op, "locate") == 0) {
		struct kmip_locate_req q = { 0 };
		struct kmip_uid_list *l;

		for (int i = 1; i < argc; i++) {
			if (strncmp(argv[i], "name=", 5) == 0)
				q.name = argv[i] + 5;
			else if (strncmp(argv[i], "type=", 5) == 0)
				q.type = parse_type(argv[i] + 5);
			else if (strncmp(argv[i], "state=", 6) == 0)
				q.state = parse_state(argv[i] + 6);
			else if (strncmp(argv[i], "group=", 6) == 0)
				q.group = argv[i] + 6;
			else if (strncmp(argv[i], "max=", 4) == 0)
				q.max_items = atoi(argv[i] + 4);
			else
				usage();
		}
		if ((st = kmip_locate(c, &q, &l, &err)) == KM_OK) {
			printf("count=%zu\n", l->count);
			for (size_t i = 0; i < l->count; i++)
				printf("uid=%s\n", l->uids[i]);
			kmip_uid_list_free(l);
		}
	} else if (strcmp(op, "get") == 0 && argc >= 2) {
		enum kmip_object_type t;
		unsigned char *d;
		size_t n;

		if ((st = kmip_get(c, argv[1], &t, &d, &n, &err)) ==
		    KM_OK) {
			printf("type=%s len=%zu\n", kmip_object_type_name(t), n);
			if (argc >= 3) {
				FILE *f = fopen(argv[2], "wb");

				if (f == NULL || fwrite(d, 1, n, f) != n ||
				    fclose(f) != 0) {
					fprintf(stderr, "cannot write %s\n", argv[2]);
					st = KM_PERMFAIL;
				}
			}
			secmem_free(d, n);
		}
	} else if (strcmp(op, "attrs") == 0 && argc >= 2) {
		struct kmip_attrs a;

		if ((st = kmip_get_attributes(c, argv[1], &a, &err)) ==
		    KM_OK)
			printf("state=%s\ntype=%s\nname=%s\ngroup=%s\n"
			    "initial_date=%lld\nactivation_date=%lld\n"
			    "usage_mask=%s%u\n", kmip_state_name(a.state),
			    kmip_object_type_name(a.type), a.name, a.group,
			    (long long)a.initial_date,
			    (long long)a.activation_date,
			    a.has_usage_mask ? "" : "none/", a.usage_mask);
	} else if (strcmp(op, "activate") == 0 && argc >= 2) {
		st = kmip_activate(c, argv[1], &err);
	} else if (strcmp(op, "destroy") == 0 && argc >= 2) {
		st = kmip_destroy(c, argv[1], &err);
	} else if (strcmp(op, "revoke") == 0 && argc >= 3) {
		st = kmip_revoke(c, argv[1], strcmp(argv[2], "compromise") == 0 ?
		    KMIP_REVOKE_KEY_COMPROMISE : KMIP_REVOKE_CESSATION_OF_OPERATION,
		    "kmip-probe", &err);
	} else if (strcmp(op, "repeat-get") == 0 && argc >= 4) {
		/* repeat-get UID COUNT SLEEP_MS: Gets on one connection with
		 * pauses, for reconnect tests; prints connects= at the end */
		enum kmip_object_type t;
		unsigned char *d;
		size_t n;

		st = KM_OK;
		for (int i = 0; i < atoi(argv[2]) && st == KM_OK; i++) {
			if (i > 0)
				usleep((useconds_t)atoi(argv[3]) * 1000);
			if ((st = kmip_get(c, argv[1], &t, &d, &n, &err)) == KM_OK)
				secmem_free(d, n);
		}
		printf("connects=%lu\n", kmip_conn_connects(c));
	} else {
		kmip_conn_free(c);
		usage();
	}
	if (st == KM_OK && strcmp(op, "register") != 0 &&
	    strcmp(op, "locate") != 0 && strcmp(op, "get") != 0 &&
	    strcmp(op, "attrs") != 0 && strcmp(op, "versions") != 0 &&
	    strcmp(op, "repeat-get") != 0)
		printf("ok\n");
	kmip_conn_free(c);
	return finish(st, err.msg);
}
