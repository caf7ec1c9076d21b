/*
 * revcheck-bench - what a revocation check costs, cold and cached.
 *
 * usage: revcheck-bench CA_CERT CERT ITERATIONS
 *
 * Cold: a new checker (empty cache) asks about CERT, whose issuer is
 * CA_CERT, through whatever CERT names (OCSP responder, CRL distribution
 * point), ITERATIONS times.  Cached: one checker, asked ITERATIONS times
 * after a first answer.  Prints "cold_ms MEDIAN" and "cached_us MEDIAN",
 * and exits 1 when an answer is not "good".
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "conf.h"
#include "revcheck.h"

#define CONF "milter: { socket = \"unix:/tmp/x.sock\"; };\n" \
	"revocation: { check = \"hard\"; timeout_ms = 5000; };\n"

/* now - monotonic seconds */
static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* cmp - qsort on doubles */
static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* load - a PEM certificate */
static X509 *
load(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x;

	if (f == NULL)
		return NULL;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	return x;
}

/* once - one check, its time in seconds; < 0 when not good */
static double
once(struct revcheck *rv, X509 *cert, STACK_OF(X509) *chain)
{
	struct kmerr e;
	double t0 = now();

	if (revcheck_cert(rv, cert, chain, NULL, &e) != KM_OK) {
		fprintf(stderr, "revcheck-bench: %s\n", e.msg);
		return -1;
	}
	return now() - t0;
}

int
main(int argc, char **argv)
{
	struct kmilter_conf *c;
	struct revcheck *rv;
	STACK_OF(X509) *chain = sk_X509_new_null();
	X509 *ca, *cert;
	struct kmerr e;
	char err[512];
	double *cold, *warm;
	int n;

	if (argc != 4 || (n = atoi(argv[3])) < 1) {
		fprintf(stderr, "usage: revcheck-bench CA_CERT CERT ITERATIONS\n");
		return 2;
	}
	if ((ca = load(argv[1])) == NULL || (cert = load(argv[2])) == NULL ||
	    (c = conf_load_string(CONF, "bench", err, sizeof(err))) == NULL) {
		fprintf(stderr, "revcheck-bench: cannot load the certificates\n");
		return 2;
	}
	sk_X509_push(chain, ca);
	cold = calloc((size_t)n, sizeof(*cold));
	warm = calloc((size_t)n, sizeof(*warm));
	for (int i = 0; i < n; i++) {
		if ((rv = revcheck_new(c, &e)) == NULL ||
		    (cold[i] = once(rv, cert, chain)) < 0)
			return 1;
		revcheck_free(rv);
	}
	if ((rv = revcheck_new(c, &e)) == NULL || once(rv, cert, chain) < 0)
		return 1;
	for (int i = 0; i < n; i++)
		if ((warm[i] = once(rv, cert, chain)) < 0)
			return 1;
	qsort(cold, (size_t)n, sizeof(*cold), cmp);
	qsort(warm, (size_t)n, sizeof(*warm), cmp);
	printf("cold_ms %.2f\ncached_us %.2f\n", cold[n / 2] * 1e3,
	    warm[n / 2] * 1e6);
	revcheck_free(rv);
	conf_unref(c);
	sk_X509_free(chain);
	X509_free(ca);
	X509_free(cert);
	free(cold);
	free(warm);
	return 0;
}
