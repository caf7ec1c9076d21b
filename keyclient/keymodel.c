/*
 * keymodel.c - kmilter's key model in KMIP: XOR-split private keys, the
 * handle and lookups.  Addresses and names are in keymodel_name.c, keys
 * and certificates in keymodel_cert.c, administration in
 * keymodel_admin.c, the protection level in keymodel_protect.c.  See keymodel.h and docs/keymodel.md.
 */
#include <ctype.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "conf.h"
#include "keymodel.h"
#include "keymodel_cert.h"
#include "keymodel_int.h"
#include "keymodel_name.h"
#include "kmip.h"
#include "log.h"
#include "pkcs8pw.h"
#include "secmem.h"

/* --- pure parts ------------------------------------------------------ */

/* keymodel_split - split key into a random share A and B = key xor A */
enum km_status
keymodel_split(const unsigned char *key, size_t len, unsigned char **share_a,
    unsigned char **share_b, struct kmerr *err)
{
	unsigned char *a, *b;
	size_t i;

	*share_a = *share_b = NULL;
	if (key == NULL || len == 0 || len > INT32_MAX)
		return kmerr_set(err, KM_PROTO, KMERR_NONE, "nothing to split");
	a = secmem_alloc(len);
	b = secmem_alloc(len);
	if (a == NULL || b == NULL) {
		secmem_free(a, len);
		secmem_free(b, len);
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	}
	if (RAND_priv_bytes(a, (int)len) != 1) {
		secmem_free(a, len);
		secmem_free(b, len);
		return kmerr_ossl(err, KM_TEMPFAIL, "RAND_priv_bytes");
	}
	for (i = 0; i < len; i++)
		b[i] = key[i] ^ a[i];
	*share_a = a;
	*share_b = b;
	return KM_OK;
}

/* keymodel_combine - xor two shares of equal length back into the key */
enum km_status
keymodel_combine(const unsigned char *a, size_t alen, const unsigned char *b,
    size_t blen, unsigned char **out, size_t *outlen, struct kmerr *err)
{
	unsigned char *k;
	size_t i;

	*out = NULL;
	*outlen = 0;
	if (a == NULL || b == NULL || alen == 0 || alen != blen)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "key shares differ in length (%zu and "
		    "%zu bytes)", alen, blen);
	if ((k = secmem_alloc(alen)) == NULL)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	for (i = 0; i < alen; i++)
		k[i] = a[i] ^ b[i];
	*out = k;
	*outlen = alen;
	return KM_OK;
}


/* --- handle ---------------------------------------------------------- */

/* keymodel_new - open connection pools to both KM servers */
struct keymodel *
keymodel_new(const struct kmilter_conf *conf, struct kmerr *err)
{
	struct keymodel *km;
	struct kmip_server_opts o;
	int i;

	if (conf == NULL || conf->km_nservers != 2) {
		kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "the key model needs exactly two KM "
		    "servers in km.servers");
		return NULL;
	}
	if ((km = calloc(1, sizeof(*km))) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return NULL;
	}
	km->parallel = 1;
	for (i = 0; i < 2; i++) {
		memset(&o, 0, sizeof(o));
		o.name = conf->km_servers[i].name;
		o.host = conf->km_servers[i].host;
		o.port = conf->km_servers[i].port;
		o.ca_file = conf->km_ca_file;
		o.cert_file = conf->km_client_cert;
		o.key_file = conf->km_client_key;
		o.connect_timeout_ms = conf->km_connect_timeout_ms;
		o.io_timeout_ms = conf->km_io_timeout_ms;
		snprintf(km->name[i], sizeof(km->name[i]), "%s",
		    o.name != NULL ? o.name : (i == 0 ? "A" : "B"));
		km->pool[i] = kmip_pool_new(&o, conf->km_pool_size > 0 ?
		    conf->km_pool_size : 4, err);
		if (km->pool[i] == NULL)
			return keymodel_free(km);
	}
	return km;
}

/* keymodel_free - close both pools */
struct keymodel *
keymodel_free(struct keymodel *km)
{
	if (km == NULL)
		return NULL;
	kmip_pool_free(km->pool[0]);
	kmip_pool_free(km->pool[1]);
	free(km);
	return NULL;
}

/* keymodel_set_parallel - ask both servers at once (1) or in turn (0) */
void
keymodel_set_parallel(struct keymodel *km, int parallel)
{
	km->parallel = parallel;
}

/* keymodel_server_name - the configured name of server 0 or 1 */
const char *
keymodel_server_name(const struct keymodel *km, int server)
{
	return server == 0 || server == 1 ? km->name[server] : "?";
}

/* keymodel_ping - Discover Versions on one server, timed */
enum km_status
keymodel_ping(struct keymodel *km, int server, double *ms, char *version,
    size_t versionlen, struct kmerr *err)
{
	struct kmip_conn *c = NULL;
	struct kmip_version v[8];
	struct timespec t0, t1;
	enum km_status st;
	size_t n = 0;

	*ms = 0;
	if (versionlen > 0)
		version[0] = '\0';
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if ((st = kmip_pool_get(km->pool[server], &c,
	    err)) !=
	    KM_OK)
		return st;
	st = kmip_discover_versions(c, v, 8, &n,
	    err);
	kmip_pool_put(km->pool[server], c);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	*ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	if (st == KM_OK && n > 0 && versionlen > 0)
		snprintf(version, versionlen, "%d.%d", v[0].major, v[0].minor);
	return st;
}

/* --- scanning a server ----------------------------------------------- */

/* keymodel_scan_clear - wipe fetched bytes and free a scan */
void
keymodel_scan_clear(struct scan *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		secmem_free(s->v[i].data, s->v[i].len);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

/* keymodel_scan_server - Locate every object of name, with type, state,
 * generation */
enum km_status
keymodel_scan_server(struct kmip_conn *c, const char *name, struct scan *s,
    struct kmerr *err)
{
	struct kmip_locate_req q;
	struct kmip_uid_list *l = NULL;
	struct kmip_attrs a;
	enum km_status st;
	size_t i;

	memset(&q, 0, sizeof(q));
	q.name = name;
	s->v = NULL;
	s->n = 0;
	if ((st = kmip_locate(c, &q, &l,
	    err)) != KM_OK)
		return st;
	if (l->count > 0 && (s->v = calloc(l->count, sizeof(*s->v))) ==
	    NULL) {
		kmip_uid_list_free(l);
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	}
	for (i = 0; i < l->count; i++) {
		struct kobj *o = &s->v[s->n];

		if ((st = kmip_get_attributes(c,
		    l->uids[i], &a, err)) != KM_OK) {
			kmip_uid_list_free(l);
			keymodel_scan_clear(s);
			return st;
		}
		if (keymodel_group_parse(a.group, &o->kind, &o->gen,
		    &o->enhanced) != KM_OK ||
		    (o->kind == KEYMODEL_CERT &&
		    a.type != KMIP_OBJ_CERTIFICATE) ||
		    (o->kind == KEYMODEL_SHARE &&
		    a.type != KMIP_OBJ_SECRET_DATA)) {
			log_warnx("keymodel: %s: object %s of %s has an "
			    "unexpected type or group; ignored",
			    kmip_conn_name(c), l->uids[i], name);
			continue;
		}
		snprintf(o->uid, sizeof(o->uid), "%s", l->uids[i]);
		o->harvested = keymodel_group_harvested(a.group);
		o->type = a.type;
		o->state = a.state;
		o->created = a.initial_date;
		s->n++;
	}
	kmip_uid_list_free(l);
	return KM_OK;
}

/* keymodel_usable - may an object in this state be used to decrypt? */
int
keymodel_usable(int state)
{
	return state == KMIP_STATE_ACTIVE || state == KMIP_STATE_DEACTIVATED;
}

/* badness - rank of a state: the worst state of a generation wins */
static int
badness(int state)
{
	switch (state) {
	case KMIP_STATE_ACTIVE:
		return 0;
	case KMIP_STATE_DEACTIVATED:
		return 1;
	case KMIP_STATE_PRE_ACTIVE:
		return 2;
	case KMIP_STATE_COMPROMISED:
		return 4;
	case KMIP_STATE_DESTROYED:
	case KMIP_STATE_DESTROYED_COMPROMISED:
		return 5;
	default:
		return 3;
	}
}

/* gen_cmp - qsort: newest generation first */
static int
gen_cmp(const void *a, const void *b)
{
	const struct genrec *x = a, *y = b;

	return (y->gen > x->gen) - (y->gen < x->gen);
}

/* keymodel_build_gens - group the objects of both scans by generation */
enum km_status
keymodel_build_gens(struct scan s[2], struct genrec **out, size_t *nout)
{
	struct genrec *g;
	size_t n = 0, i, j;
	int srv;

	*out = NULL;
	*nout = 0;
	if (s[0].n + s[1].n == 0)
		return KM_OK;
	if ((g = calloc(s[0].n + s[1].n, sizeof(*g))) == NULL)
		return KM_NOMEM;
	for (srv = 0; srv < 2; srv++) {
		for (i = 0; i < s[srv].n; i++) {
			struct kobj *o = &s[srv].v[i];

			/* a Pre-Active share is being made (a new generation,
			 * whose certificate is Pre-Active too, or new shares of
			 * an existing one during a change of protection level):
			 * it neither counts nor changes the generation's state */
			if (o->kind == KEYMODEL_SHARE &&
			    o->state == KMIP_STATE_PRE_ACTIVE)
				continue;
			for (j = 0; j < n && g[j].gen != o->gen; j++)
				;
			if (j == n) {
				g[n].gen = o->gen;
				g[n].state = o->state;
				n++;
			} else if (badness(o->state) > badness(g[j].state))
				g[j].state = o->state;
			if (o->kind == KEYMODEL_CERT) {
				if (g[j].ncert[srv]++ == 0)
					g[j].cert[srv] = o;
				g[j].harvested |= o->harvested;
			} else {
				if (g[j].nshare[srv]++ == 0)
					g[j].share[srv] = o;
				g[j].enhanced |= o->enhanced;
			}
		}
	}
	qsort(g, n, sizeof(*g), gen_cmp);
	*out = g;
	*nout = n;
	return KM_OK;
}

/* --- lookups --------------------------------------------------------- */

/* cert_from - the Active certificate of name on one server */
static enum km_status
cert_from(struct keymodel *km, int srv, const char *name, const char *addr,
    X509 **out, struct kmerr *err)
{
	struct kmip_conn *c = NULL;
	struct kmip_locate_req q;
	struct kmip_uid_list *l = NULL;
	struct kmip_attrs a;
	enum keymodel_kind kind;
	const char *uid;
	size_t i;
	int gen, best = -1, enh;
	enum km_status st;

	if ((st = kmip_pool_get(km->pool[srv], &c,
	    err)) != KM_OK)
		return st;
	memset(&q, 0, sizeof(q));
	q.name = name;
	q.type = KMIP_OBJ_CERTIFICATE;
	q.state = KMIP_STATE_ACTIVE;
	if ((st = kmip_locate(c, &q, &l,
	    err)) != KM_OK)
		goto out;
	if (l->count == 0) {
		st = kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no certificate for %s", addr);
		goto out;
	}
	uid = l->uids[0];
	if (l->count > 1) {		/* renewal in progress: newest wins */
		for (i = 0; i < l->count; i++) {
			if ((st = kmip_get_attributes(c,
			    l->uids[i], &a,
			    err)) != KM_OK)
				goto out;
			if (keymodel_group_parse(a.group, &kind, &gen, &enh) ==
			    KM_OK && kind == KEYMODEL_CERT && gen > best) {
				best = gen;
				uid = l->uids[i];
			}
		}
	}
	if ((st = keymodel_fetch_cert(c, uid, out, err)) == KM_OK &&
	    *out == NULL)
		st = kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "server %s: object %s of %s is not an "
		    "X.509 certificate", km->name[srv], uid, addr);
out:
	kmip_uid_list_free(l);
	kmip_pool_put(km->pool[srv], c);
	return st;
}

/* keymodel_fetch_cert - the certificate object uid on c, NULL if it is none */
enum km_status
keymodel_fetch_cert(struct kmip_conn *c, const char *uid, X509 **out,
    struct kmerr *err)
{
	enum kmip_object_type type;
	unsigned char *data = NULL;
	const unsigned char *p;
	size_t len = 0;
	enum km_status st;

	*out = NULL;
	if ((st = kmip_get(c, uid, &type, &data, &len, err)) != KM_OK)
		return st;
	p = data;
	if (type == KMIP_OBJ_CERTIFICATE && len <= LONG_MAX)
		*out = d2i_X509(NULL, &p, (long)len);
	ERR_clear_error();
	secmem_free(data, len);
	return KM_OK;
}

/* keymodel_current_cert - the Active generation's certificate (A, then B) */
enum km_status
keymodel_current_cert(struct keymodel *km, const char *addr, X509 **out,
    struct kmerr *err)
{
	char name[KEYMODEL_NAME_MAX], norm[KEYMODEL_ADDR_MAX + 1];
	struct kmerr err0;
	enum km_status st;

	*out = NULL;
	if ((st = keymodel_addr_normalize(addr, norm, sizeof(norm),
	    err)) != KM_OK ||
	    (st = keymodel_object_name(norm, name, sizeof(name), err)) != KM_OK)
		return st;
	kmerr_clear(&err0);
	st = cert_from(km, 0, name, norm, out, &err0);
	if (st == KM_OK || st == KM_PERMFAIL || st == KM_NOMEM) {
		if (err != NULL)
			*err = err0;
		return st;
	}
	log_warnx("keymodel: %s; asking server %s", err0.msg, km->name[1]);
	st = cert_from(km, 1, name, norm, out, err);
	if (st == KM_TEMPFAIL || st == KM_PROTO)
		kmerr_set(err, st, KMERR_NONE, "%s (and %s)", err0.msg,
		    "server B failed too");
	return st;
}

/* revcount_from - how many of name's objects on one server are Compromised */
static enum km_status
revcount_from(struct keymodel *km, int srv, const char *name,
    uint32_t *count, struct kmerr *err)
{
	struct kmip_conn *c = NULL;
	struct kmip_locate_req q;
	struct kmip_uid_list *l = NULL;
	enum km_status st;

	if ((st = kmip_pool_get(km->pool[srv], &c,
	    err)) != KM_OK)
		return st;
	memset(&q, 0, sizeof(q));
	q.name = name;
	q.state = KMIP_STATE_COMPROMISED;
	if ((st = kmip_locate(c, &q, &l,
	    err)) == KM_OK)
		*count = l->count > UINT32_MAX ? UINT32_MAX :
		    (uint32_t)l->count;
	kmip_uid_list_free(l);
	kmip_pool_put(km->pool[srv], c);
	return st;
}

/* keymodel_revocation_count - Compromised objects of addr (A, then B) */
enum km_status
keymodel_revocation_count(struct keymodel *km, const char *addr,
    uint32_t *count, struct kmerr *err)
{
	char name[KEYMODEL_NAME_MAX], norm[KEYMODEL_ADDR_MAX + 1];
	struct kmerr err0;
	enum km_status st;

	*count = 0;
	if ((st = keymodel_addr_normalize(addr, norm, sizeof(norm),
	    err)) != KM_OK ||
	    (st = keymodel_object_name(norm, name, sizeof(name), err)) != KM_OK)
		return st;
	kmerr_clear(&err0);
	st = revcount_from(km, 0, name, count, &err0);
	if (st == KM_OK || st == KM_NOMEM) {
		if (err != NULL)
			*err = err0;
		return st;
	}
	log_warnx("keymodel: %s; asking server %s", err0.msg, km->name[1]);
	st = revcount_from(km, 1, name, count, err);
	if (st != KM_OK && st != KM_NOMEM)
		kmerr_set(err, st, KMERR_NONE, "%s (and %s)", err0.msg,
		    "server B failed too");
	return st;
}

struct fetch {
	struct keymodel	*km;
	int		 srv;
	const char	*name;
	int		 want;		/* fetch bytes of usable objects */
	struct scan	 scan;
	enum km_status	 st;
	struct kmerr	 err;
};

/* fetch_run - scan one server and Get the bytes of its usable objects */
static void *
fetch_run(void *arg)
{
	struct fetch *f = arg;
	struct kmip_conn *c = NULL;
	enum kmip_object_type type;
	size_t i;

	f->st = kmip_pool_get(f->km->pool[f->srv], &c,
	    &f->err);
	if (f->st != KM_OK)
		return NULL;
	f->st = keymodel_scan_server(c, f->name, &f->scan, &f->err);
	for (i = 0; f->st == KM_OK && f->want && i < f->scan.n; i++) {
		struct kobj *o = &f->scan.v[i];

		if (!keymodel_usable(o->state))
			continue;
		if (o->kind == KEYMODEL_CERT && f->srv != 0)
			continue;	/* certificates come from server A */
		f->st = kmip_get(c, o->uid, &type,
		    &o->data, &o->len, &f->err);
		if (f->st == KM_OK && type != o->type)
			f->st = kmerr_set(&f->err, KM_PROTO, KMERR_NONE,
			    "server %s: object %s changed type",
			    f->km->name[f->srv], o->uid);
	}
	if (f->st != KM_OK)
		keymodel_scan_clear(&f->scan);
	kmip_pool_put(f->km->pool[f->srv], c);
	return NULL;
}

/* fetch_both - run fetch_run on both servers, in parallel if allowed */
static enum km_status
fetch_both(struct keymodel *km, const char *name, int want, int parallel,
    struct scan s[2], struct kmerr *err)
{
	struct fetch f[2];
	pthread_t th;
	int i, threaded = 0;

	memset(f, 0, sizeof(f));
	for (i = 0; i < 2; i++) {
		f[i].km = km;
		f[i].srv = i;
		f[i].name = name;
		f[i].want = want;
	}
	if (parallel && pthread_create(&th, NULL, fetch_run, &f[1]) == 0)
		threaded = 1;
	fetch_run(&f[0]);
	if (threaded)
		pthread_join(th, NULL);
	else
		fetch_run(&f[1]);
	for (i = 0; i < 2; i++) {
		if (f[i].st != KM_OK) {
			if (err != NULL)
				*err = f[i].err;
			keymodel_scan_clear(&f[0].scan);
			keymodel_scan_clear(&f[1].scan);
			return f[i].st;
		}
	}
	s[0] = f[0].scan;
	s[1] = f[1].scan;
	return KM_OK;
}

/* keymodel_make_gen - combine one generation's shares and check them */
enum km_status
keymodel_make_gen(struct keymodel *km, const char *addr, struct genrec *r,
    struct keymodel_gen *g, struct kmerr *err)
{
	const unsigned char *p;
	enum pkcs8pw_kind kind;
	struct kmerr e;
	enum km_status st;

	memset(g, 0, sizeof(*g));
	g->generation = r->gen;
	g->state = r->state;
	if (r->nshare[0] != 1 || r->nshare[1] != 1)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "generation %d of %s: expected one key "
		    "share on each server, found %d on %s and %d on %s",
		    r->gen, addr, r->nshare[0], km->name[0], r->nshare[1],
		    km->name[1]);
	if (r->ncert[0] != 1 || r->cert[0]->data == NULL)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "generation %d of %s: expected one "
		    "certificate on server %s, found %d", r->gen, addr,
		    km->name[0], r->ncert[0]);
	p = r->cert[0]->data;
	if (r->cert[0]->len > LONG_MAX ||
	    (g->cert = d2i_X509(NULL, &p, (long)r->cert[0]->len)) == NULL) {
		ERR_clear_error();
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "generation %d of %s: the certificate "
		    "does not parse", r->gen, addr);
	}
	if ((st = keymodel_combine(r->share[0]->data, r->share[0]->len,
	    r->share[1]->data, r->share[1]->len, &g->der, &g->derlen,
	    &e)) != KM_OK)
		return kmerr_set(err, st, e.reason, "generation %d of %s: %s",
		    r->gen, addr, e.msg);
	kind = pkcs8pw_detect(g->der, g->derlen);
	if (kind == PKCS8PW_ENCRYPTED) {
		g->enhanced = 1;
		return KM_OK;
	}
	if (kind != PKCS8PW_PLAIN || (g->key = keymodel_der_to_pkey(g->der,
	    g->derlen)) == NULL)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "generation %d of %s: the key shares do "
		    "not combine into a PKCS#8 key", r->gen, addr);
	if (keymodel_check_pair(g->cert, g->key, NULL) != KM_OK)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "generation %d of %s: the combined key "
		    "does not match the certificate", r->gen, addr);
	return KM_OK;
}

/* keymodel_decryption_keys - every usable generation's key, both servers */
enum km_status
keymodel_decryption_keys(struct keymodel *km, const char *addr,
    struct keymodel_gen **out, size_t *n, struct kmerr *err)
{
	char name[KEYMODEL_NAME_MAX], norm[KEYMODEL_ADDR_MAX + 1];
	struct scan s[2];
	struct genrec *recs = NULL;
	struct keymodel_gen *gens = NULL;
	size_t nrecs = 0, ng = 0, i;
	enum km_status st;

	*out = NULL;
	*n = 0;
	if ((st = keymodel_addr_normalize(addr, norm, sizeof(norm),
	    err)) != KM_OK ||
	    (st = keymodel_object_name(norm, name, sizeof(name), err)) != KM_OK)
		return st;
	if ((st = fetch_both(km, name, 1, km->parallel, s, err)) !=
	    KM_OK)
		return st;
	if ((st = keymodel_build_gens(s, &recs, &nrecs)) != KM_OK) {
		kmerr_set(err, st, KMERR_NONE, "out of memory");
		goto out;
	}
	if (nrecs > 0 && (gens = calloc(nrecs, sizeof(*gens))) == NULL) {
		st = KM_NOMEM;
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		goto out;
	}
	for (i = 0; i < nrecs; i++) {
		if (!keymodel_usable(recs[i].state) ||
		    recs[i].nshare[0] + recs[i].nshare[1] == 0)
			continue;	/* revoked, half-made, or cert only */
		if ((st = keymodel_make_gen(km, norm, &recs[i], &gens[ng],
		    err)) != KM_OK) {
			keymodel_gens_free(gens, ng + 1);
			gens = NULL;
			ng = 0;
			goto out;
		}
		ng++;
	}
	if (ng == 0) {
		st = kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no keys for %s", norm);
		free(gens);
		gens = NULL;
		goto out;
	}
	*out = gens;
	*n = ng;
	st = KM_OK;
out:
	free(recs);
	keymodel_scan_clear(&s[0]);
	keymodel_scan_clear(&s[1]);
	return st;
}

/* keymodel_gens_free - wipe and free what keymodel_decryption_keys gave */
void
keymodel_gens_free(struct keymodel_gen *g, size_t n)
{
	size_t i;

	if (g == NULL)
		return;
	for (i = 0; i < n; i++) {
		X509_free(g[i].cert);
		EVP_PKEY_free(g[i].key);
		secmem_free(g[i].der, g[i].derlen);
	}
	free(g);
}
