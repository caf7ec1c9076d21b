/*
 * smimea-probe - a command-line probe over keyclient/smimea.c, for the
 * SMIMEA tests and the latency figure.
 *
 * usage: smimea-probe [options] command [args]
 *   -r ADDR[@PORT]   forward to this resolver   -s ADDR[@PORT]  stub server
 *   -a FILE          trust anchor file (required)
 *   -d DOMAIN        a domain of the stub (repeat)
 *   -T MS            timeout per lookup (default 2000)
 *   -v               debug log lines on stderr
 * commands:
 *   owner ADDR              print the owner name of ADDR's records
 *   lookup ADDR...          per address: "ok SHA256-FINGERPRINT", "permfail
 *                           notfound MSG" or "tempfail MSG", then " ms=N"
 *   bench N ADDR...         N rounds over the addresses, each a fresh
 *                           context for the cold round (DNSKEY and answer
 *                           fetched and validated) then a second lookup on
 *                           the same context (answered from its cache):
 *                           "cold_median_ms=.. cached_median_ms=.."
 *   threads T N ADDR        T threads share one handle, each N lookups:
 *                           "ok=.. other=.."
 * Exit status: 0 when the command ran, 2 on usage or setup errors.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "clock.h"
#include "log.h"
#include "smimea.h"

static struct smimea_opts opts;
static char *domains[16];

static void
usage(void)
{
	fprintf(stderr, "usage: smimea-probe [-r res] [-s stub] -a ta "
	    "[-d domain]... [-T ms] [-v] owner|lookup|bench|threads ...\n");
	exit(2);
}

/* one - one lookup, printed; 1 when a certificate came */
static int
one(struct smimea *sm, const char *addr, int quiet)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	struct kmerr err;
	enum km_status st;
	X509 *c = NULL;
	int64_t t0 = clock_ms();

	kmerr_clear(&err);
	st = smimea_lookup(sm, addr, &c, &err);
	if (quiet) {
		X509_free(c);
		return st == KM_OK;
	}
	if (st == KM_OK) {
		X509_digest(c, EVP_sha256(), md, &mdlen);
		printf("ok ");
		for (unsigned int i = 0; i < mdlen; i++)
			printf("%02X", md[i]);
	} else
		printf("%s %s %s", st == KM_TEMPFAIL ? "tempfail" : "permfail",
		    kmerr_is(&err, KMERR_NOTFOUND) ? "notfound" : "other",
		    err.msg);
	printf(" ms=%lld\n", (long long)(clock_ms() - t0));
	X509_free(c);
	return st == KM_OK;
}

static struct smimea *
open_sm(void)
{
	struct smimea *sm;
	struct kmerr err;

	kmerr_clear(&err);
	if ((sm = smimea_new(&opts, &err)) == NULL) {
		fprintf(stderr, "smimea-probe: %s\n", err.msg);
		exit(2);
	}
	return sm;
}

/* now_us - the monotonic clock in microseconds */
static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int
cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* bench - median cold (fresh context) and cached lookup times */
static void
bench(int n, char **addrs, int naddrs)
{
	int64_t *cold, *warm, t0;
	int k = 0, ok = 0;

	cold = calloc((size_t)(n * naddrs), sizeof(*cold));
	warm = calloc((size_t)(n * naddrs), sizeof(*warm));
	if (cold == NULL || warm == NULL)
		exit(2);
	for (int r = 0; r < n; r++)
		for (int i = 0; i < naddrs; i++, k++) {
			struct smimea *sm = open_sm();

			t0 = now_us();
			ok += one(sm, addrs[i], 1);
			cold[k] = now_us() - t0;
			t0 = now_us();
			ok += one(sm, addrs[i], 1);
			warm[k] = now_us() - t0;
			smimea_free(sm);
		}
	qsort(cold, (size_t)k, sizeof(*cold), cmp64);
	qsort(warm, (size_t)k, sizeof(*warm), cmp64);
	printf("lookups=%d ok=%d cold_median_ms=%.3f cached_median_ms=%.3f\n",
	    2 * k, ok, cold[k / 2] / 1000.0, warm[k / 2] / 1000.0);
	free(cold);
	free(warm);
}

struct tharg {
	struct smimea	*sm;
	const char	*addr;
	int		 n, ok;
};

static void *
thread_main(void *p)
{
	struct tharg *a = p;

	for (int i = 0; i < a->n; i++)
		a->ok += one(a->sm, a->addr, 1);
	return NULL;
}

/* threads - T threads on one handle */
static void
threads(int t, int n, const char *addr)
{
	struct smimea *sm = open_sm();
	pthread_t th[64];
	struct tharg a[64];
	int ok = 0;

	if (t < 1 || t > 64)
		usage();
	for (int i = 0; i < t; i++) {
		a[i] = (struct tharg){ sm, addr, n, 0 };
		pthread_create(&th[i], NULL, thread_main, &a[i]);
	}
	for (int i = 0; i < t; i++) {
		pthread_join(th[i], NULL);
		ok += a[i].ok;
	}
	printf("ok=%d other=%d\n", ok, t * n - ok);
	smimea_free(sm);
}

int
main(int argc, char **argv)
{
	char owner[SMIMEA_OWNER_MAX];
	int ch, verbose = 0;

	opts.timeout_ms = 2000;
	while ((ch = getopt(argc, argv, "r:s:a:d:T:v")) != -1) {
		switch (ch) {
		case 'r': opts.resolver = optarg; break;
		case 's': opts.stub = optarg; break;
		case 'a': opts.trust_anchor_file = optarg; break;
		case 'd':
			if (opts.ndomains >= 16)
				usage();
			domains[opts.ndomains++] = optarg;
			break;
		case 'T': opts.timeout_ms = atoi(optarg); break;
		case 'v': verbose = 1; break;
		default: usage();
		}
	}
	argc -= optind;
	argv += optind;
	opts.domains = opts.ndomains ? domains : NULL;
	log_init("smimea-probe", 0, 1, verbose ? 2 : 0);
	if (argc < 2)
		usage();
	if (strcmp(argv[0], "owner") == 0) {
		if (smimea_owner(argv[1], owner, sizeof(owner)) != 0)
			return 2;
		printf("%s\n", owner);
	} else if (strcmp(argv[0], "lookup") == 0) {
		struct smimea *sm = open_sm();

		for (int i = 1; i < argc; i++)
			one(sm, argv[i], 0);
		smimea_free(sm);
	} else if (strcmp(argv[0], "bench") == 0 && argc >= 3)
		bench(atoi(argv[1]), argv + 2, argc - 2);
	else if (strcmp(argv[0], "threads") == 0 && argc == 4)
		threads(atoi(argv[1]), atoi(argv[2]), argv[3]);
	else
		usage();
	return 0;
}
