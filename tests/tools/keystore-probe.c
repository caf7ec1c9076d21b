/*
 * keystore-probe.c - drive the keystore facade from the command line, for
 * tests/e2e/t-keystore.sh and for measuring lookup latency.
 *
 * usage: keystore-probe -c CONFIG [-v] COMMAND [ARGS]
 *   sealkey PATH             create a gateway seal key file
 *   enroll ADDR              keymodel_enroll (org CA from the config)
 *   enroll-enhanced ADDR PW  a fresh user's generation 1 with its key
 *                            held as PKCS#8 encrypted under PW (keymodel
 *                            has no call for that: registered here by the
 *                            keymodel.h conventions)
 *   revoke ADDR              revoke every generation, then invalidate
 *   invalidate ADDR          keystore_invalidate
 *   signing-enroll ADDR      signstore_enroll in state_dir
 *   cert ADDR [N]            N certificate lookups; one line each:
 *                            "cert STATUS LEVEL USEC [error]"
 *   keys ADDR [N]            N key lookups: "keys STATUS LEVEL USEC n=K
 *                            gens=G,G [error]"
 *   signer ADDR              "signer STATUS subject"
 *   watch ADDR SECONDS       look up ADDR's keys every 2 ms; print "ready"
 *                            after the first success and "changed
 *                            at=WALLMS after_ready_ms=MS STATUS error"
 *                            when a lookup first fails
 *                            (exit 0), exit 1 on timeout
 *   bench ADDR N             N certificate and N key lookups served by L1,
 *                            by L2 and by the KM: median and p99 latency
 *   ratio NUSERS NLOOKUPS    Zipf(1) lookups over NUSERS addresses
 *                            u0..u(N-1)@DOMAIN (-d DOMAIN); hit ratio
 * LEVEL is where the answer came from: L1, L2 or KM (from the stats).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "conf.h"
#include "keymodel.h"
#include "keymodel_admin.h"
#include "keymodel_cert.h"
#include "keymodel_name.h"
#include "keystore.h"
#include "kmip.h"
#include "log.h"
#include "pkcs8pw.h"
#include "secmem.h"
#include "seal.h"
#include "signstore.h"

static struct kmilter_conf *conf;

/* now_us - monotonic microseconds */
static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* wall_ms - wall-clock milliseconds, comparable between processes */
static long long
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* level - which level answered, from two stats snapshots */
static const char *
level(const struct keystore_stats *a, const struct keystore_stats *b)
{
	if (b->l1_hits > a->l1_hits)
		return "L1";
	if (b->l2_hits > a->l2_hits)
		return "L2";
	if (b->km_fetches > a->km_fetches)
		return "KM";
	return "-";
}

/* open_ks - a keystore of conf, or exit */
static struct keystore *
open_ks(const struct kmilter_conf *c)
{
	struct kmerr err = { 0 };
	struct keystore *ks = keystore_new(c, &err);

	if (ks == NULL) {
		fprintf(stderr, "keystore-probe: %s\n", err.msg);
		exit(2);
	}
	return ks;
}

/* load_ca - the org CA from the config */
static int
load_ca(X509 **ca, EVP_PKEY **cakey)
{
	FILE *f;

	if ((f = fopen(conf->org_ca_cert, "r")) == NULL)
		return -1;
	*ca = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if ((f = fopen(conf->org_ca_key, "r")) == NULL)
		return -1;
	*cakey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	return *ca && *cakey ? 0 : -1;
}

/* enroll_enhanced - register generation 1 with a password-protected key */
static enum km_status
enroll_enhanced(const char *addr, const char *pw, struct kmerr *err)
{
	char name[KEYMODEL_NAME_MAX], cgroup[KEYMODEL_GROUP_MAX];
	char sgroup[KEYMODEL_GROUP_MAX], uid[KMIP_UID_MAX];
	unsigned char *wder = NULL, *sh[2] = { NULL, NULL }, *cder = NULL;
	size_t wlen = 0;
	int clen;
	X509 *ca = NULL, *cert = NULL;
	EVP_PKEY *cakey = NULL, *key = NULL;
	enum km_status st;

	if (conf->km_nservers != 2 || load_ca(&ca, &cakey) < 0) {
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "need two KM servers and the org CA");
	}
	if ((st = keymodel_object_name(addr, name, sizeof(name), err)) != KM_OK ||
	    (st = keymodel_keygen("ec-p256", &key, err)) != KM_OK ||
	    (st = keymodel_issue_cert(key, addr, ca, cakey, KEYMODEL_DAYS_ENC,
	    KEYMODEL_USE_ENCRYPT, &cert, err)) != KM_OK ||
	    (st = pkcs8pw_wrap(key, pw, strlen(pw), 0, &wder, &wlen, err)) != KM_OK ||
	    (st = keymodel_split(wder, wlen, &sh[0], &sh[1], err)) !=
	    KM_OK)
		goto out;
	clen = i2d_X509(cert, &cder);
	keymodel_group_format(KEYMODEL_CERT, 1, 0, cgroup, sizeof(cgroup));
	keymodel_group_format(KEYMODEL_SHARE, 1, 1, sgroup, sizeof(sgroup));
	for (int srv = 0; srv < 2 && st == KM_OK; srv++) {
		struct kmip_server_opts o;
		struct kmip_register_req q;
		struct kmip_conn *c;

		memset(&o, 0, sizeof(o));
		o.name = conf->km_servers[srv].name;
		o.host = conf->km_servers[srv].host;
		o.port = conf->km_servers[srv].port;
		o.ca_file = conf->km_ca_file;
		o.cert_file = conf->km_client_cert;
		o.key_file = conf->km_client_key;
		if ((c = kmip_conn_new(&o, err)) == NULL) {
			st = KM_TEMPFAIL;
			break;
		}
		for (int i = 0; i < 2 && st == KM_OK; i++) {
			memset(&q, 0, sizeof(q));
			q.name = name;
			if (i == 0) {
				q.type = KMIP_OBJ_CERTIFICATE;
				q.data = cder;
				q.len = (size_t)clen;
				q.group = cgroup;
			} else {
				q.type = KMIP_OBJ_SECRET_DATA;
				q.secret_type = KMIP_SECRET_SEED;
				q.data = sh[srv];
				q.len = wlen;
				q.group = sgroup;
			}
			if ((st = kmip_register(c, &q, uid,
			    err)) ==
			    KM_OK)
				st = kmip_activate(c, uid,
				    err);
		}
		kmip_conn_free(c);
	}
out:
	secmem_free(sh[0], wlen);
	secmem_free(sh[1], wlen);
	OPENSSL_free(wder);
	OPENSSL_free(cder);
	X509_free(ca);
	X509_free(cert);
	EVP_PKEY_free(cakey);
	EVP_PKEY_free(key);
	return st;
}

/* cmd_admin - enroll, password, revoke, signing-enroll, invalidate */
static int
cmd_admin(const char *cmd, const char *addr, const char *pw)
{
	struct kmerr err = { 0 };
	struct keymodel *km = NULL;
	struct keystore *ks;
	X509 *ca = NULL;
	EVP_PKEY *cakey = NULL;
	enum km_status st = KM_OK;
	int gen = 0, n = 0;

	if (strcmp(cmd, "invalidate") != 0 &&
	    strcmp(cmd, "enroll-enhanced") != 0 &&
	    strcmp(cmd, "signing-enroll") != 0 &&
	    (km = keymodel_new(conf, &err)) == NULL) {
		fprintf(stderr, "keystore-probe: %s\n", err.msg);
		return 2;
	}
	if ((strcmp(cmd, "enroll") == 0 || strcmp(cmd, "signing-enroll") == 0 ||
	    strcmp(cmd, "enroll-enhanced") == 0)
	    && load_ca(&ca, &cakey) < 0) {
		fprintf(stderr, "keystore-probe: cannot load the org CA\n");
		return 2;
	}
	if (strcmp(cmd, "enroll") == 0)
		st = keymodel_enroll(km, addr, ca, cakey, "ec-p256", 0, &gen,
		    &err);
	else if (strcmp(cmd, "enroll-enhanced") == 0)
		st = enroll_enhanced(addr, pw, &err);
	else if (strcmp(cmd, "revoke") == 0)
		st = keymodel_revoke(km, addr, 0, &n, &err);
	else if (strcmp(cmd, "signing-enroll") == 0) {
		char path[1024];
		struct seal_key *sk = NULL;

		if (signstore_seal_key_path(conf, path, sizeof(path)) != KM_OK ||
		    (sk = seal_key_load(path, NULL)) == NULL) {
			fprintf(stderr, "keystore-probe: seal key\n");
			return 2;
		}
		st = signstore_enroll(conf->state_dir, sk, addr, ca, cakey,
		    "ec-p256", 0, &err);
		seal_key_free(sk);
	}
	X509_free(ca);
	EVP_PKEY_free(cakey);
	keymodel_free(km);
	if (st != KM_OK) {
		printf("%s %s %s\n", cmd, km_status_name(st), err.msg);
		return 1;
	}
	ks = open_ks(conf);
	keystore_invalidate(ks, addr);
	printf("%s OK gen=%d revoked=%d invalidated_at=%lld\n", cmd, gen, n,
	    wall_ms());
	keystore_free(ks);
	return 0;
}

/* one_cert - one certificate lookup, printed */
static enum km_status
one_cert(struct keystore *ks, const char *addr, int print, double *us,
    const char **lvl)
{
	struct keystore_stats a, b;
	struct kmerr err = { 0 };
	X509 *c = NULL;
	double t0;
	enum km_status st;

	keystore_stats(ks, &a);
	t0 = now_us();
	st = keystore_get_cert(ks, addr, &c, &err);
	*us = now_us() - t0;
	keystore_stats(ks, &b);
	*lvl = level(&a, &b);
	if (print)
		printf("cert %s %s %.0f %s\n", km_status_name(st), *lvl, *us,
		    err.msg);
	X509_free(c);
	return st;
}

/* one_keys - one key lookup, printed */
static enum km_status
one_keys(struct keystore *ks, const char *addr, int print, double *us,
    const char **lvl)
{
	struct keystore_stats a, b;
	struct keystore_key *k = NULL;
	size_t n = 0;
	char gens[256] = "";
	struct kmerr err = { 0 };
	double t0;
	enum km_status st;

	keystore_stats(ks, &a);
	t0 = now_us();
	st = keystore_get_keys(ks, addr, "PROBE", &k, &n, &err);
	*us = now_us() - t0;
	keystore_stats(ks, &b);
	*lvl = level(&a, &b);
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(gens);

		snprintf(gens + l, sizeof(gens) - l, "%s%d%s", i ? "," : "",
		    k[i].generation, k[i].current ? "*" : "");
		if (X509_check_private_key(k[i].cert, k[i].key) != 1)
			st = KM_PROTO;	/* would be a keystore bug */
	}
	if (print)
		printf("keys %s %s %.0f n=%zu gens=%s %s\n",
		    km_status_name(st), *lvl, *us, n, gens, err.msg);
	keystore_keys_free(k, n);
	return st;
}

/* cmd_lookup - cert/keys ADDR N */
static int
cmd_lookup(const char *cmd, const char *addr, int n)
{
	struct keystore *ks = open_ks(conf);
	enum km_status st = KM_OK;
	const char *lvl;
	double us;

	for (int i = 0; i < n; i++)
		st = strcmp(cmd, "cert") == 0 ?
		    one_cert(ks, addr, 1, &us, &lvl) :
		    one_keys(ks, addr, 1, &us, &lvl);
	keystore_free(ks);
	return st == KM_OK ? 0 : 1;
}

/* cmd_signer - signer ADDR */
static int
cmd_signer(const char *addr)
{
	struct keystore *ks = open_ks(conf);
	char subj[256] = "";
	struct kmerr err = { 0 };
	X509 *c = NULL;
	EVP_PKEY *k = NULL;
	STACK_OF(X509) *ch = NULL;
	enum km_status st;

	st = keystore_get_signer(ks, addr, NULL, &c, &k, &ch, &err);
	if (st == KM_OK)
		X509_NAME_oneline(X509_get_subject_name(c), subj, sizeof(subj));
	printf("signer %s %s%s chain=%d\n", km_status_name(st), subj, err.msg,
	    ch ? sk_X509_num(ch) : 0);
	X509_free(c);
	EVP_PKEY_free(k);
	if (ch)
		sk_X509_pop_free(ch, X509_free);
	keystore_free(ks);
	return st == KM_OK ? 0 : 1;
}

/* cmd_watch - report when a warm lookup starts failing */
static int
cmd_watch(const char *addr, int seconds)
{
	struct keystore *ks = open_ks(conf);
	double start = 0, us, end = now_us() + seconds * 1e6;
	const char *lvl;
	int ready = 0;
	struct kmerr err = { 0 };

	while (now_us() < end) {
		struct keystore_key *k = NULL;
		size_t n = 0;
		enum km_status st;

		st = keystore_get_keys(ks, addr, "WATCH", &k, &n, &err);
		keystore_keys_free(k, n);
		if (st == KM_OK && !ready) {
			ready = 1;
			one_keys(ks, addr, 0, &us, &lvl);
			printf("ready %s\n", lvl);	/* L1 now */
			fflush(stdout);
			start = now_us();
		} else if (st != KM_OK && ready) {
			printf("changed at=%lld after_ready_ms=%.0f %s %s\n",
			    wall_ms(), (now_us() - start) / 1e3,
			    km_status_name(st), err.msg);
			keystore_free(ks);
			return 0;
		}
		usleep(2000);
	}
	printf("timeout\n");
	keystore_free(ks);
	return 1;
}

/* dcmp - qsort comparison of doubles */
static int
dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* report - median and p99 of n samples of level want */
static void
report(const char *what, const char *want, double *v, int n, int wrong)
{
	qsort(v, n, sizeof(*v), dcmp);
	printf("%-5s %-3s n=%d median_us=%.1f p99_us=%.1f max_us=%.1f%s\n",
	    what, want, n, v[n / 2], v[(n * 99) / 100 < n ? (n * 99) / 100 :
	    n - 1], v[n - 1], wrong ? " (some lookups from another level!)" :
	    "");
}

/* bench_one - n lookups of addr through ks, all expected at level want */
static int
bench_one(struct keystore *ks, const char *what, const char *addr,
    const char *want, int n)
{
	double *v = calloc(n, sizeof(*v)), us;
	const char *lvl;
	int wrong = 0, bad = 0;

	for (int i = 0; i < n; i++) {
		enum km_status st = strcmp(what, "cert") == 0 ?
		    one_cert(ks, addr, 0, &us, &lvl) :
		    one_keys(ks, addr, 0, &us, &lvl);

		if (st != KM_OK)
			bad++;
		if (strcmp(lvl, want) != 0)
			wrong++;
		v[i] = us;
	}
	report(what, want, v, n, wrong);
	free(v);
	return bad || wrong;
}

/* cmd_bench - L1, L2 and KM latency side by side in one run */
static int
cmd_bench(const char *addr, int n)
{
	struct kmilter_conf c_l2 = *conf, c_km = *conf;
	struct keystore *l1, *l2, *km;
	double us;
	const char *lvl;
	int rc = 0;

	c_l2.memory_entries = 0;		/* no L1: every lookup L2 */
	c_km.memory_entries = 0;		/* no L1, no L2: every KM */
	c_km.redis_host = (char *)"";
	c_km.redis_socket = (char *)"";
	l1 = open_ks(conf);
	l2 = open_ks(&c_l2);
	km = open_ks(&c_km);
	for (int w = 0; w < 2; w++) {
		const char *what = w ? "keys" : "cert";

		/* warm L2 (and L1) */
		if (w == 0)
			one_cert(l1, addr, 0, &us, &lvl);
		else
			one_keys(l1, addr, 0, &us, &lvl);
		rc |= bench_one(l1, what, addr, "L1", n);
		rc |= bench_one(l2, what, addr, "L2", n);
		rc |= bench_one(km, what, addr, "KM", n < 200 ? n : 200);
	}
	keystore_free(l1);
	keystore_free(l2);
	keystore_free(km);
	return rc;
}

/* cmd_ratio - hit ratio of Zipf(1) lookups over nusers addresses */
static int
cmd_ratio(const char *domain, int nusers, int nlookups)
{
	struct keystore *ks = open_ks(conf);
	struct keystore_stats s;
	double *cdf = calloc(nusers, sizeof(*cdf)), sum = 0, t0;
	char addr[128];
	struct kmerr err = { 0 };

	for (int i = 0; i < nusers; i++)
		cdf[i] = (sum += 1.0 / (i + 1));
	srand(12345);
	t0 = now_us();
	for (int i = 0; i < nlookups; i++) {
		double r = (double)rand() / RAND_MAX * sum;
		int lo = 0, hi = nusers - 1;
		X509 *c = NULL;

		while (lo < hi) {
			int mid = (lo + hi) / 2;

			if (cdf[mid] < r)
				lo = mid + 1;
			else
				hi = mid;
		}
		snprintf(addr, sizeof(addr), "u%d@%s", lo, domain);
		keystore_get_cert(ks, addr, &c, &err);
		X509_free(c);
	}
	keystore_stats(ks, &s);
	printf("ratio users=%d lookups=%d l1=%lu l2=%lu km=%lu "
	    "hit_ratio=%.3f negative_hits=%lu km_errors=%lu seconds=%.1f\n",
	    nusers, nlookups, s.l1_hits, s.l2_hits, s.km_fetches,
	    (double)(s.l1_hits + s.l2_hits) / nlookups, s.negative_hits,
	    s.km_errors, (now_us() - t0) / 1e6);
	free(cdf);
	keystore_free(ks);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *cfg = NULL, *domain = "example.org";
	char err[2048];
	struct kmerr ke;
	int ch, verbose = 0;

	while ((ch = getopt(argc, argv, "c:d:v")) != -1) {
		switch (ch) {
		case 'c': cfg = optarg; break;
		case 'd': domain = optarg; break;
		case 'v': verbose++; break;
		default: goto usage;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 2)
		goto usage;
	log_init("keystore-probe", LOG_MAIL, 1, verbose);
	if (strcmp(argv[0], "sealkey") == 0) {
		if (seal_key_create(argv[1], &ke) != KM_OK) {
			fprintf(stderr, "keystore-probe: %s\n", ke.msg);
			return 2;
		}
		return 0;
	}
	if (cfg == NULL)
		goto usage;
	if ((conf = conf_load(cfg, err, sizeof(err))) == NULL) {
		fprintf(stderr, "keystore-probe: %s\n", err);
		return 2;
	}
	if (strcmp(argv[0], "enroll") == 0 || strcmp(argv[0], "revoke") == 0 ||
	    strcmp(argv[0], "invalidate") == 0 ||
	    strcmp(argv[0], "signing-enroll") == 0)
		return cmd_admin(argv[0], argv[1], NULL);
	if (strcmp(argv[0], "enroll-enhanced") == 0 && argc >= 3)
		return cmd_admin(argv[0], argv[1], argv[2]);
	if (strcmp(argv[0], "cert") == 0 || strcmp(argv[0], "keys") == 0)
		return cmd_lookup(argv[0], argv[1], argc > 2 ? atoi(argv[2]) :
		    1);
	if (strcmp(argv[0], "signer") == 0)
		return cmd_signer(argv[1]);
	if (strcmp(argv[0], "watch") == 0 && argc >= 3)
		return cmd_watch(argv[1], atoi(argv[2]));
	if (strcmp(argv[0], "bench") == 0 && argc >= 3)
		return cmd_bench(argv[1], atoi(argv[2]) > 0 ? atoi(argv[2]) :
		    1000);
	if (strcmp(argv[0], "ratio") == 0 && argc >= 3)
		return cmd_ratio(domain, atoi(argv[1]) > 0 ? atoi(argv[1]) :
		    1000, atoi(argv[2]) > 0 ? atoi(argv[2]) : 10000);
usage:
	fprintf(stderr, "usage: keystore-probe -c CONFIG [-v] [-d DOMAIN] "
	    "sealkey|enroll|enroll-enhanced|revoke|invalidate|signing-enroll|cert|"
	    "keys|signer|watch|bench|ratio ARGS\n");
	return 2;
}
