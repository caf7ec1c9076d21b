/*
 * keymodel-probe.c - test tool for keyclient/keymodel.c and signstore.c.
 *
 *   keymodel-probe -c CONF keys ADDR [DIR]   decryption keys of ADDR: one
 *       line per generation; with DIR, writes DIR/genN.key (PEM, 0600) and
 *       DIR/genN.crt so a test can decrypt with openssl cms
 *   keymodel-probe -c CONF cert ADDR         the current certificate
 *   keymodel-probe -c CONF bench ADDR N      median/p90 latency of N
 *       keymodel_decryption_keys calls, parallel then sequential, and of
 *       keymodel_current_cert and keymodel_revocation_count (the
 *       keystore's check of an L2 entry when the counter is not in
 *       memory), warm connections
 *   keymodel-probe -c CONF plant ADDR GEN LENA LENB
 *       register a bogus generation GEN by hand: the current certificate
 *       on both servers and random "shares" of LENA/LENB bytes, Active
 *   keymodel-probe -c CONF plantcert ADDR GEN FILE
 *       register the PEM certificate in FILE by hand as generation GEN
 *       of ADDR, Active, without shares and without the checks of kmctl
 *       import: what an older kmctl or another tool may have left in the
 *       KM (a DSA certificate, one naming someone else)
 *   keymodel-probe -c CONF signload ADDR     signstore_load from state_dir
 *   keymodel-probe -c CONF maysign ADDR N    median/p90 latency of N
 *       keymodel_may_sign calls (milter.gateway_name retired? ADDR
 *       banned?), what the milter's signer lookup adds on a cache miss
 *
 * Exit: 0 ok, 1 failure (message on stderr), 2 usage, 3 not found,
 * 4 KM unreachable (KM_TEMPFAIL), 5 malformed (KM_PROTO).
 */
#include <sys/stat.h>

#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/rand.h>

#include "conf.h"
#include "keymodel.h"
#include "keymodel_ban.h"
#include "keymodel_cert.h"
#include "keymodel_name.h"
#include "kmip.h"
#include "log.h"
#include "seal.h"
#include "secmem.h"
#include "signstore.h"

/* code - exit code of a status */
static int
code(enum km_status st, const struct kmerr *err)
{
	switch (st) {
	case KM_OK:
		return 0;
	case KM_TEMPFAIL:
		return 4;
	case KM_PROTO:
		return 5;
	case KM_PERMFAIL:
		return kmerr_is(err, KMERR_NOTFOUND) ? 3 : 1;
	default:
		return 1;
	}
}

/* write_pem - write a key (0600) or certificate as PEM */
static int
write_pem(const char *path, X509 *x, EVP_PKEY *k)
{
	FILE *f;
	int fd, ok;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) == -1 ||
	    (f = fdopen(fd, "w")) == NULL)
		return -1;
	ok = x != NULL ? PEM_write_X509(f, x) :
	    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	return fclose(f) == 0 && ok == 1 ? 0 : -1;
}

/* keys - print (and write) the decryption keys of addr */
static int
keys(struct keymodel *km, const char *addr, const char *dir)
{
	struct keymodel_gen *g = NULL;
	struct kmerr err = { 0 };
	char fp[96], path[PATH_MAX];
	enum km_status st;
	size_t n = 0, i;

	st = keymodel_decryption_keys(km, addr, &g, &n, &err);
	if (st != KM_OK) {
		fprintf(stderr, "keymodel-probe: %s: %s\n",
		    km_status_name(st), err.msg);
		return code(st, &err);
	}
	for (i = 0; i < n; i++) {
		keymodel_cert_fingerprint(g[i].cert, fp, sizeof(fp));
		printf("generation %d state %s enhanced %d key %s "
		    "derlen %zu sha256 %s\n", g[i].generation,
		    kmip_state_name(g[i].state), g[i].enhanced,
		    g[i].key != NULL ? "matches-cert" : "none", g[i].derlen,
		    fp);
		if (dir == NULL)
			continue;
		snprintf(path, sizeof(path), "%s/gen%d.crt", dir,
		    g[i].generation);
		if (write_pem(path, g[i].cert, NULL) != 0)
			return 1;
		if (g[i].key == NULL)
			continue;
		snprintf(path, sizeof(path), "%s/gen%d.key", dir,
		    g[i].generation);
		if (write_pem(path, NULL, g[i].key) != 0)
			return 1;
	}
	keymodel_gens_free(g, n);
	return 0;
}

/* cert - print the current certificate's subject and fingerprint */
static int
cert(struct keymodel *km, const char *addr)
{
	X509 *x = NULL;
	struct kmerr err = { 0 };
	char fp[96], subj[256];
	enum km_status st;

	if ((st = keymodel_current_cert(km, addr, &x, &err)) !=
	    KM_OK) {
		fprintf(stderr, "keymodel-probe: %s: %s\n",
		    km_status_name(st), err.msg);
		return code(st, &err);
	}
	keymodel_cert_fingerprint(x, fp, sizeof(fp));
	X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
	printf("certificate %s sha256 %s\n", subj, fp);
	X509_free(x);
	return 0;
}

/* ms_since - milliseconds since t0 */
static double
ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 +
	    (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* dcmp - qsort doubles */
static int
dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static const char *bench_gateway;	/* maysign: milter.gateway_name */

/* bench_one - time n calls of one lookup; print median and p90 */
static int
bench_one(struct keymodel *km, const char *addr, int n, int what,
    const char *label)
{
	struct keymodel_gen *g;
	struct timespec t0;
	X509 *x;
	uint32_t rc;
	double *t;
	struct kmerr err = { 0 };
	size_t ng;
	int i;

	if ((t = calloc((size_t)n, sizeof(*t))) == NULL)
		return 1;
	for (i = -3; i < n; i++) {	/* 3 warm-up calls */
		enum km_status st;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (what == 0) {
			st = keymodel_decryption_keys(km, addr, &g, &ng, &err);
			if (st == KM_OK)
				keymodel_gens_free(g, ng);
		} else if (what == 1) {
			st = keymodel_current_cert(km, addr, &x, &err);
			X509_free(st == KM_OK ? x : NULL);
		} else if (what == 3)
			st = keymodel_may_sign(km, bench_gateway, addr, &err);
		else
			st = keymodel_revocation_count(km, addr, &rc, &err);
		if (st != KM_OK) {
			fprintf(stderr, "keymodel-probe: %s\n", err.msg);
			free(t);
			return code(st, &err);
		}
		if (i >= 0)
			t[i] = ms_since(&t0);
	}
	qsort(t, (size_t)n, sizeof(*t), dcmp);
	printf("%s: n=%d median %.2f ms p90 %.2f ms min %.2f ms\n", label, n,
	    t[n / 2], t[(n * 9) / 10], t[0]);
	free(t);
	return 0;
}

/* plant - register a bogus generation by hand, bypassing the key model:
 * the certificate in certfile (no shares when both lengths are 0), else
 * the current one */
static int
plant(const struct kmilter_conf *conf, struct keymodel *km, const char *addr,
    int gen, size_t lena, size_t lenb, const char *certfile)
{
	struct kmip_server_opts o;
	struct kmip_register_req q;
	struct kmip_conn *c;
	X509 *x = NULL;
	unsigned char *der = NULL, *p, share[8192];
	struct kmerr err = { 0 };
	char name[KEYMODEL_NAME_MAX], group[KEYMODEL_GROUP_MAX];
	char uid[KMIP_UID_MAX];
	int i, dlen, rc = 1;

	if (certfile != NULL) {
		FILE *f = fopen(certfile, "r");

		if (f != NULL) {
			x = PEM_read_X509(f, NULL, NULL, NULL);
			fclose(f);
		}
	}
	if (lena > sizeof(share) || lenb > sizeof(share) ||
	    (certfile != NULL && x == NULL) || (certfile == NULL &&
	    keymodel_current_cert(km, addr, &x, NULL) != KM_OK) ||
	    keymodel_object_name(addr, name, sizeof(name), NULL) != KM_OK ||
	    (dlen = i2d_X509(x, NULL)) <= 0 ||
	    (der = malloc((size_t)dlen)) == NULL) {
		fprintf(stderr, "keymodel-probe: plant: cannot start\n");
		goto out;
	}
	p = der;
	i2d_X509(x, &p);
	for (i = 0; i < 2; i++) {
		memset(&o, 0, sizeof(o));
		o.name = conf->km_servers[i].name;
		o.host = conf->km_servers[i].host;
		o.port = conf->km_servers[i].port;
		o.ca_file = conf->km_ca_file;
		o.cert_file = conf->km_client_cert;
		o.key_file = conf->km_client_key;
		if ((c = kmip_conn_new(&o, &err)) == NULL) {
			fprintf(stderr, "keymodel-probe: %s\n", err.msg);
			goto out;
		}
		memset(&q, 0, sizeof(q));
		q.type = KMIP_OBJ_CERTIFICATE;
		q.data = der;
		q.len = (size_t)dlen;
		q.name = name;
		q.group = group;
		keymodel_group_format(KEYMODEL_CERT, gen, 0, group,
		    sizeof(group));
		if (kmip_register(c, &q, uid, &err) != KM_OK ||
		    kmip_activate(c, uid, &err) != KM_OK)
			goto connfail;
		if (lena == 0 && lenb == 0) {
			kmip_conn_free(c);
			continue;
		}
		RAND_bytes(share, sizeof(share));
		q.type = KMIP_OBJ_SECRET_DATA;
		q.data = share;
		q.len = i == 0 ? lena : lenb;
		keymodel_group_format(KEYMODEL_SHARE, gen, 0, group,
		    sizeof(group));
		if (kmip_register(c, &q, uid, &err) != KM_OK ||
		    kmip_activate(c, uid, &err) != KM_OK)
			goto connfail;
		kmip_conn_free(c);
		continue;
connfail:
		fprintf(stderr, "keymodel-probe: %s\n", err.msg);
		kmip_conn_free(c);
		goto out;
	}
	printf("planted generation %d (shares %zu and %zu bytes)\n", gen, lena,
	    lenb);
	rc = 0;
out:
	free(der);
	X509_free(x);
	return rc;
}

/* signload - signstore_load and show what came back */
static int
signload(const struct kmilter_conf *conf, const char *addr)
{
	struct seal_key *sk;
	X509 *x = NULL;
	EVP_PKEY *k = NULL;
	STACK_OF(X509) *chain = NULL;
	char path[PATH_MAX], fp[96];
	struct kmerr err = { 0 };
	enum km_status st;

	if (signstore_seal_key_path(conf, path, sizeof(path)) != KM_OK ||
	    (sk = seal_key_load(path, &err)) == NULL) {
		fprintf(stderr, "keymodel-probe: no seal key\n");
		return 1;
	}
	st = signstore_load(conf->state_dir, sk, addr, &x, &k, &chain, &err);
	seal_key_free(sk);
	if (st != KM_OK) {
		fprintf(stderr, "keymodel-probe: %s: %s\n",
		    km_status_name(st), err.msg);
		return code(st, &err);
	}
	keymodel_cert_fingerprint(x, fp, sizeof(fp));
	printf("signing key %s matches certificate sha256 %s chain %d\n",
	    keymodel_check_pair(x, k, NULL) == KM_OK ? "really" : "NOT",
	    fp, sk_X509_num(chain));
	X509_free(x);
	EVP_PKEY_free(k);
	sk_X509_pop_free(chain, X509_free);
	return 0;
}

/* main - run one probe command */
int
main(int argc, char **argv)
{
	struct kmilter_conf *conf;
	struct keymodel *km;
	char err[2048];
	struct kmerr ke;
	const char *cfg = NULL;
	int rc = 2;

	log_init("keymodel-probe", 0, 1, 0);
	if (argc >= 3 && strcmp(argv[1], "-c") == 0) {
		cfg = argv[2];
		argv += 2;
		argc -= 2;
	}
	if (cfg == NULL || argc < 3) {
		fprintf(stderr, "usage: keymodel-probe -c CONF "
		    "keys|cert|bench|plant|plantcert|signload|maysign ADDR [args]\n");
		return 2;
	}
	if ((conf = conf_load(cfg, err, sizeof(err))) == NULL) {
		fprintf(stderr, "keymodel-probe: %s\n", err);
		return 1;
	}
	if (strcmp(argv[1], "signload") == 0) {
		rc = signload(conf, argv[2]);
		conf_unref(conf);
		return rc;
	}
	if ((km = keymodel_new(conf, &ke)) == NULL) {
		fprintf(stderr, "keymodel-probe: %s\n", ke.msg);
		conf_unref(conf);
		return 1;
	}
	if (strcmp(argv[1], "keys") == 0 && argc <= 4)
		rc = keys(km, argv[2], argc == 4 ? argv[3] : NULL);
	else if (strcmp(argv[1], "cert") == 0 && argc == 3)
		rc = cert(km, argv[2]);
	else if (strcmp(argv[1], "bench") == 0 && argc == 4) {
		int n = atoi(argv[3]);

		if (n < 1)
			n = 50;
		rc = bench_one(km, argv[2], n, 0, "decryption_keys parallel");
		keymodel_set_parallel(km, 0);
		if (rc == 0)
			rc = bench_one(km, argv[2], n, 0,
			    "decryption_keys sequential");
		keymodel_set_parallel(km, 1);
		if (rc == 0)
			rc = bench_one(km, argv[2], n, 1, "current_cert");
		if (rc == 0)
			rc = bench_one(km, argv[2], n, 2, "revocation_count");
	} else if (strcmp(argv[1], "plant") == 0 && argc == 6)
		rc = plant(conf, km, argv[2], atoi(argv[3]),
		    (size_t)atol(argv[4]), (size_t)atol(argv[5]), NULL);
	else if (strcmp(argv[1], "maysign") == 0 && argc == 4 &&
	    atoi(argv[3]) > 0) {
		bench_gateway = conf->gateway_name;
		rc = bench_one(km, argv[2], atoi(argv[3]), 3, "may_sign");
	} else if (strcmp(argv[1], "plantcert") == 0 && argc == 5)
		rc = plant(conf, km, argv[2], atoi(argv[3]), 0, 0, argv[4]);
	keymodel_free(km);
	conf_unref(conf);
	return rc;
}
