/*
 * keymodel_admin.c - administration of an address's generations in the
 * KM: enroll, renew, revoke, import, show.  See keymodel_admin.h.
 */
#include <ctype.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "certenc.h"
#include "keymodel.h"
#include "keymodel_admin.h"
#include "keymodel_cert.h"
#include "keymodel_int.h"
#include "keymodel_name.h"
#include "keymodel_p12.h"
#include "kmip.h"
#include "log.h"
#include "pkcs8pw.h"
#include "secmem.h"

/* --- administration sessions ----------------------------------------- */

void
keymodel_admin_close(struct admin *a)
{
	int i;

	for (i = 0; i < 2; i++) {
		keymodel_scan_clear(&a->s[i]);
		if (a->c[i] != NULL)
			kmip_pool_put(a->km->pool[i], a->c[i]);
		a->c[i] = NULL;
	}
	free(a->recs);
	a->recs = NULL;
}

/* keymodel_admin_open - check addr, take a connection to each server and
 * scan both */
enum km_status
keymodel_admin_open(struct admin *a, struct keymodel *km, const char *addr,
    struct kmerr *err)
{
	enum km_status st;
	int i;

	memset(a, 0, sizeof(*a));
	a->km = km;
	if ((st = keymodel_addr_normalize(addr, a->norm, sizeof(a->norm),
	    err)) != KM_OK ||
	    (st = keymodel_object_name(a->norm, a->name, sizeof(a->name),
	    err)) != KM_OK)
		return st;
	for (i = 0; i < 2; i++) {
		if ((st = kmip_pool_get(km->pool[i],
		    &a->c[i], err)) != KM_OK ||
		    (st = keymodel_scan_server(a->c[i], a->name, &a->s[i],
		    err)) != KM_OK) {
			keymodel_admin_close(a);
			return st;
		}
	}
	if (keymodel_build_gens(a->s, &a->recs, &a->nrecs) != KM_OK) {
		keymodel_admin_close(a);
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	}
	return KM_OK;
}

/* keymodel_admin_next_gen - one more than the highest generation on either
 * server */
int
keymodel_admin_next_gen(const struct admin *a)
{
	return a->nrecs > 0 ? a->recs[0].gen + 1 : 1;
}

/* admin_active - the newest Active generation with a certificate, or NULL */
static struct genrec *
admin_active(struct admin *a)
{
	size_t i;

	for (i = 0; i < a->nrecs; i++)
		if (a->recs[i].state == KMIP_STATE_ACTIVE &&
		    a->recs[i].ncert[0] + a->recs[i].ncert[1] > 0)
			return &a->recs[i];
	return NULL;
}

/* keymodel_admin_install - register a new generation on both servers,
 * activate it, then deactivate the older Active objects (harvested: the
 * certificate's Object Group says so).  Registered objects stay Pre-Active
 * (invisible to lookups) until all four exist; on failure they are
 * destroyed again. */
enum km_status
keymodel_admin_install(struct admin *a, int gen, X509 *cert,
    const unsigned char *der, size_t derlen, int enhanced, int harvested,
    struct kmerr *err)
{
	struct kmip_register_req q;
	char uids[4][KMIP_UID_MAX], group[KEYMODEL_GROUP_MAX];
	unsigned char *cder = NULL, *p, *sh[2] = { NULL, NULL };
	int clen, nreg = 0, i, srv;
	enum km_status st;

	if ((clen = i2d_X509(cert, NULL)) <= 0 ||
	    (cder = malloc((size_t)clen)) == NULL) {
		ERR_clear_error();
		return kmerr_set(err, KM_NOMEM, KMERR_NONE,
		    "cannot encode the certificate");
	}
	p = cder;
	i2d_X509(cert, &p);
	if (der != NULL && (st = keymodel_split(der, derlen, &sh[0], &sh[1],
	    err)) != KM_OK)
		goto fail;
	for (i = 0; i < 4; i++) {
		srv = i % 2;
		memset(&q, 0, sizeof(q));
		q.name = a->name;
		q.group = group;
		if (i < 2) {
			q.type = KMIP_OBJ_CERTIFICATE;
			q.data = cder;
			q.len = (size_t)clen;
			if (harvested)
				keymodel_group_format_harvested(gen, group,
				    sizeof(group));
			else
				keymodel_group_format(KEYMODEL_CERT, gen, 0,
				    group, sizeof(group));
		} else {
			if (der == NULL)
				break;
			q.type = KMIP_OBJ_SECRET_DATA;
			q.secret_type = KMIP_SECRET_SEED;
			q.data = sh[srv];
			q.len = derlen;
			keymodel_group_format(KEYMODEL_SHARE, gen, enhanced,
			    group, sizeof(group));
		}
		if ((st = kmip_register(a->c[srv], &q,
		    uids[i], err)) != KM_OK)
			goto fail;
		nreg++;
	}
	if ((st = keymodel_admin_yield(a, gen, uids[0], nreg, err)) != KM_OK)
		goto fail;
	keymodel_test_pause("registered");
	/* the shares first, then the certificates (server 0's, which
	 * lookups ask first, last): no certificate is Active without its
	 * key, and a crash in between is finished by keymodel_admin_tidy() */
	for (i = nreg - 1; i >= 0; i--) {
		if (i == 1)
			keymodel_test_pause("activating");
		if ((st = kmip_activate(a->c[i % 2],
		    uids[i], err)) != KM_OK)
			goto fail;
	}
	keymodel_test_pause("activated");
	st = keymodel_admin_supersede(a, gen, err);
	goto out;
fail:
	for (i = 0; i < nreg; i++) {
		struct kmerr e;

		/* a Pre-Active object can be destroyed; an activated one
		 * is revoked first */
		if (kmip_destroy(a->c[i % 2], uids[i], &e) != KM_OK &&
		    (kmip_revoke(a->c[i % 2], uids[i],
		    KMIP_REVOKE_KEY_COMPROMISE, "enrollment failed",
		    &e) != KM_OK ||
		    kmip_destroy(a->c[i % 2], uids[i], &e) != KM_OK))
			log_warnx("keymodel: %s: cannot remove half-made "
			    "object %s: %s", a->norm, uids[i], e.msg);
	}
out:
	free(cder);
	secmem_free(sh[0], derlen);
	secmem_free(sh[1], derlen);
	return st;
}

/* new_generation - make a key and certificate and install them; with pw
 * the key is escrowed as an EncryptedPrivateKeyInfo (level enhanced) */
static enum km_status
new_generation(struct admin *a, X509 *ca_cert, EVP_PKEY *ca_key,
    const char *keytype, int days, const char *pw, size_t pwlen,
    int *generation, struct kmerr *err)
{
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	unsigned char *der = NULL, *wrapped = NULL;
	size_t derlen = 0, wlen = 0;
	enum km_status st;
	int gen = keymodel_admin_next_gen(a);

	if ((st = keymodel_keygen(keytype, &key, err)) != KM_OK ||
	    (st = keymodel_issue_cert(key, a->norm, ca_cert, ca_key, days,
	    KEYMODEL_USE_ENCRYPT, &cert, err)) != KM_OK ||
	    (st = keymodel_pkey_to_der(key, &der, &derlen, err)) !=
	    KM_OK)
		goto out;
	EVP_PKEY_free(key);		/* wipes the key: only shares remain */
	key = NULL;
	if (pw != NULL) {
		if ((st = pkcs8pw_wrap_der(der, derlen, pw, pwlen, 0, &wrapped,
		    &wlen, err)) != KM_OK)
			goto out;
		secmem_free(der, derlen);
		der = NULL;
		derlen = 0;
	}
	if ((st = keymodel_admin_install(a, gen, cert, pw != NULL ? wrapped :
	    der, pw != NULL ? wlen : derlen, pw != NULL, 0, err)) ==
	    KM_OK && generation != NULL)
		*generation = gen;
out:
	OPENSSL_free(wrapped);
	secmem_free(der, derlen);
	EVP_PKEY_free(key);
	X509_free(cert);
	return st;
}

/* keymodel_enroll - first generation of an address's encryption key pair */
enum km_status
keymodel_enroll(struct keymodel *km, const char *addr, X509 *ca_cert,
    EVP_PKEY *ca_key, const char *keytype, int days, int *generation,
    struct kmerr *err)
{
	return keymodel_enroll_protected(km, addr, ca_cert, ca_key, keytype,
	    days, NULL, 0, generation, err);
}

/* keymodel_enroll_protected - enroll; with pw at protection level enhanced */
enum km_status
keymodel_enroll_protected(struct keymodel *km, const char *addr,
    X509 *ca_cert, EVP_PKEY *ca_key, const char *keytype, int days,
    const char *pw, size_t pwlen, int *generation, struct kmerr *err)
{
	struct admin a;
	struct genrec *cur;
	enum km_status st;
	char what[KMERR_MSG_MAX];

	if ((st = keymodel_admin_open(&a, km, addr, err)) != KM_OK)
		return st;
	/* kmctl revoke --ban bars every enrollment until kmctl unban */
	if ((st = keymodel_admin_refuse_banned(&a, err)) != KM_OK)
		goto out;
	if ((st = keymodel_admin_tidy(&a, what, sizeof(what), err)) != KM_OK)
		goto out;
	if ((cur = admin_active(&a)) != NULL) {
		st = kmerr_set(err, KM_PERMFAIL, KMERR_EXISTS,
		    "%s is already enrolled (generation %d "
		    "is Active): use renew", a.norm, cur->gen);
		goto out;
	}
	a.contend = 1;		/* keymodel_enroll_race.c */
	st = new_generation(&a, ca_cert, ca_key, keytype, days, pw, pwlen,
	    generation, err);
out:
	keymodel_admin_close(&a);
	return st;
}

/* cert_not_after - the expiry of a generation's certificate (server 0 or
 * 1), 0 when it cannot be read */
static enum km_status
cert_not_after(struct admin *a, const struct genrec *r, X509 **old,
    time_t *not_after, struct kmerr *err)
{
	int srv = r->ncert[0] > 0 ? 0 : 1;
	enum km_status st;

	*not_after = 0;
	if ((st = keymodel_fetch_cert(a->c[srv], r->cert[srv]->uid, old,
	    err)) == KM_OK && *old != NULL)
		*not_after = keymodel_cert_time(X509_get0_notAfter(*old));
	return st;
}

/* keymodel_renew - a new generation; the current one becomes Deactivated */
enum km_status
keymodel_renew(struct keymodel *km, const char *addr, X509 *ca_cert,
    EVP_PKEY *ca_key, const char *keytype, int days, int *generation,
    struct kmerr *err)
{
	return keymodel_renew_due(km, addr, ca_cert, ca_key, keytype, days, 0,
	    generation, err);
}

/* keymodel_renew_due - renew, with due_before != 0 only while the current
 * certificate still expires before due_before (re-read now) and nobody is
 * making a newer generation; *generation = 0 when skipped */
enum km_status
keymodel_renew_due(struct keymodel *km, const char *addr, X509 *ca_cert,
    EVP_PKEY *ca_key, const char *keytype, int days, time_t due_before,
    int *generation, struct kmerr *err)
{
	struct admin a;
	struct genrec *cur;
	X509 *old = NULL;
	enum km_status st;
	time_t not_after = 0;
	char what[KMERR_MSG_MAX];

	if (generation != NULL)
		*generation = 0;
	if ((st = keymodel_admin_open(&a, km, addr, err)) != KM_OK)
		return st;
	if ((st = keymodel_admin_tidy(&a, what, sizeof(what), err)) != KM_OK)
		goto out;
	a.elect = due_before != 0;
	if ((cur = admin_active(&a)) == NULL && due_before != 0 &&
	    a.nrecs > 0) {
		/* the caller saw an Active generation: another renewal is
		 * switching generations between our two scans */
		st = KM_OK;
		goto out;
	}
	if (cur == NULL) {
		st = kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no Active generation for %s: enroll "
		    "first", a.norm);
		goto out;
	}
	if (cur->enhanced) {
		/* a plain new generation would silently lower the level */
		st = kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s's key is protected by a password "
		    "(level enhanced): clear-password, renew, then "
		    "set-password again", a.norm);
		goto out;
	}
	if ((keytype == NULL || due_before != 0) &&
	    (st = cert_not_after(&a, cur, &old, &not_after, err)) != KM_OK)
		goto out;
	if (keytype == NULL && old != NULL)
		keytype = keymodel_keytype_of(old);
	if (due_before != 0 && (not_after >= due_before ||
	    a.recs[0].gen > cur->gen)) {
		/* renewed (or being renewed) since the caller looked */
		st = KM_OK;
		goto out;
	}
	st = new_generation(&a, ca_cert, ca_key, keytype, days, NULL, 0,
	    generation, err);
out:
	X509_free(old);
	keymodel_admin_close(&a);
	return st;
}

/* keymodel_revoke - mark one generation (or all) Compromised everywhere */
enum km_status
keymodel_revoke(struct keymodel *km, const char *addr, int generation,
    int *nrevoked, struct kmerr *err)
{
	struct admin a;
	enum km_status st;
	int srv, found = 0, done = 0;
	size_t j, k;

	if (nrevoked != NULL)
		*nrevoked = 0;
	if ((st = keymodel_admin_open(&a, km, addr, err)) != KM_OK)
		return st;
	for (srv = 0; srv < 2; srv++) {
		for (j = 0; j < a.s[srv].n; j++) {
			struct kobj *o = &a.s[srv].v[j];

			if (generation != 0 && o->gen != generation)
				continue;
			found = 1;
			if (o->state == KMIP_STATE_COMPROMISED ||
			    o->state == KMIP_STATE_DESTROYED_COMPROMISED)
				continue;
			if ((st = kmip_revoke(a.c[srv],
			    o->uid,
			    KMIP_REVOKE_KEY_COMPROMISE, "revoked by kmctl",
			    err)) != KM_OK)
				goto out;
			o->state = KMIP_STATE_COMPROMISED;
			for (k = 0; k < a.nrecs; k++)
				if (a.recs[k].gen == o->gen &&
				    !a.recs[k].revoked) {
					a.recs[k].revoked = 1;
					done++;
				}
		}
	}
	if (!found) {
		if (generation != 0)
			st = kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
			    "no generation %d for %s", generation, a.norm);
		else
			st = kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
			    "no keys or certificates for %s", a.norm);
	}
out:
	if (nrevoked != NULL)
		*nrevoked = done;
	keymodel_admin_close(&a);
	return st;
}

/* check_for_addr - refuse a certificate that is not for addr */
static enum km_status
check_for_addr(X509 *cert, const char *addr, struct kmerr *err)
{
	if (!certenc_names(cert, addr)) {
		ERR_clear_error();
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "the certificate is not issued to %s",
		    addr);
	}
	return KM_OK;
}

/* keymodel_import_p12 - a key and certificate from elsewhere, as a new
 * generation (the current one, if any, becomes Deactivated) */
enum km_status
keymodel_import_p12(struct keymodel *km, const char *addr,
    const unsigned char *buf, size_t len, const char *pw, size_t pwlen,
    int *generation, struct kmerr *err)
{
	struct admin a;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	unsigned char *der = NULL;
	size_t derlen = 0;
	enum km_status st;
	int gen;

	memset(&a, 0, sizeof(a));
	if ((st = keymodel_p12_parse(buf, len, pw, pwlen, &key, &cert, err)) !=
	    KM_OK || (st = certenc_check(cert, err)) != KM_OK ||
	    (st = keymodel_check_pair(cert, key, err)) != KM_OK ||
	    (st = keymodel_admin_open(&a, km, addr, err)) != KM_OK ||
	    (st = check_for_addr(cert, a.norm, err)) != KM_OK ||
	    (st = keymodel_admin_refuse_banned(&a, err)) != KM_OK ||
	    (st = keymodel_pkey_to_der(key, &der, &derlen, err)) !=
	    KM_OK)
		goto out;
	gen = keymodel_admin_next_gen(&a);
	if ((st = keymodel_admin_install(&a, gen, cert, der, derlen, 0, 0,
	    err)) ==
	    KM_OK && generation != NULL)
		*generation = gen;
out:
	keymodel_admin_close(&a);
	secmem_free(der, derlen);
	EVP_PKEY_free(key);
	X509_free(cert);
	return st;
}

/* keymodel_import_cert - an outside correspondent's certificate (PEM or
 * DER), on both servers, no key */
enum km_status
keymodel_import_cert(struct keymodel *km, const char *addr,
    const unsigned char *data, size_t len, int *generation, struct kmerr *err)
{
	struct admin a;
	const unsigned char *p = data;
	X509 *cert = NULL;
	BIO *b;
	enum km_status st;
	int gen;

	memset(&a, 0, sizeof(a));
	if (len > INT32_MAX)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "certificate file too large");
	if ((b = BIO_new_mem_buf(data, (int)len)) != NULL) {
		cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
		BIO_free(b);
	}
	if (cert == NULL) {
		p = data;
		cert = d2i_X509(NULL, &p, (long)len);
		if (cert != NULL && p != data + len) {
			X509_free(cert);
			cert = NULL;
		}
	}
	ERR_clear_error();
	if (cert == NULL)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "not an X.509 certificate (PEM or DER)");
	if ((st = certenc_check(cert, err)) != KM_OK ||
	    (st = keymodel_admin_open(&a, km, addr, err)) != KM_OK ||
	    (st = check_for_addr(cert, a.norm, err)) != KM_OK)
		goto out;
	gen = keymodel_admin_next_gen(&a);
	if ((st = keymodel_admin_install(&a, gen, cert, NULL, 0, 0, 0,
	    err)) ==
	    KM_OK && generation != NULL)
		*generation = gen;
out:
	keymodel_admin_close(&a);
	X509_free(cert);
	return st;
}

/* fill_info - describe one generation's certificate */
static void
fill_info(struct keymodel_info *in, X509 *x)
{
	const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
	BIGNUM *bn = ASN1_INTEGER_to_BN(sn, NULL);
	char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
	struct kmerr e;

	keymodel_cert_fingerprint(x, in->sha256, sizeof(in->sha256));
	X509_NAME_oneline(X509_get_subject_name(x), in->subject,
	    sizeof(in->subject));
	X509_NAME_oneline(X509_get_issuer_name(x), in->issuer,
	    sizeof(in->issuer));
	snprintf(in->serial, sizeof(in->serial), "%s", hex ? hex : "?");
	in->not_before = keymodel_cert_time(X509_get0_notBefore(x));
	in->not_after = keymodel_cert_time(X509_get0_notAfter(x));
	keymodel_key_type_name(X509_get0_pubkey(x), in->key_type,
	    sizeof(in->key_type));
	/* put there before kmctl import refused such certificates */
	if (certenc_check(x, &e) != KM_OK)
		snprintf(in->unusable, sizeof(in->unusable), "%s", e.msg);
	OPENSSL_free(hex);
	BN_free(bn);
	ERR_clear_error();
}

/* keymodel_show - every generation of an address, without key material */
enum km_status
keymodel_show(struct keymodel *km, const char *addr,
    struct keymodel_info **out, size_t *n, struct kmerr *err)
{
	struct admin a;
	struct keymodel_info *v = NULL;
	enum km_status st;
	size_t i;

	*out = NULL;
	*n = 0;
	if ((st = keymodel_admin_open(&a, km, addr, err)) != KM_OK)
		return st;
	if (a.nrecs == 0) {
		st = kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no keys or certificates for %s",
		    a.norm);
		goto out;
	}
	if ((v = calloc(a.nrecs, sizeof(*v))) == NULL) {
		st = kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		goto out;
	}
	for (i = 0; i < a.nrecs; i++) {
		struct genrec *r = &a.recs[i];
		int srv = r->ncert[0] > 0 ? 0 : 1;
		X509 *x;

		v[i].generation = r->gen;
		v[i].state = r->state;
		v[i].has_key = r->nshare[0] > 0 && r->nshare[1] > 0;
		v[i].enhanced = r->enhanced;
		v[i].harvested = r->harvested;
		if (r->ncert[srv] == 0)
			continue;
		if ((st = keymodel_fetch_cert(a.c[srv], r->cert[srv]->uid,
		    &x, err)) != KM_OK)
			goto out;
		if (x != NULL)
			fill_info(&v[i], x);
		X509_free(x);
	}
	*out = v;
	*n = a.nrecs;
	v = NULL;
	st = KM_OK;
out:
	free(v);
	keymodel_admin_close(&a);
	return st;
}

/* keymodel_infos_free - free what keymodel_show gave */
struct keymodel_info *
keymodel_infos_free(struct keymodel_info *v)
{
	free(v);
	return NULL;
}

/* list_add - addr into the sorted, unique list v (kind: 1 key share, 0 certificate) */
static enum km_status
list_add(struct keymodel_user **v, size_t *n, size_t *cap, const char *addr,
    int share, time_t not_after, struct kmerr *err)
{
	size_t lo = 0, hi = *n, len = strlen(addr);

	if (len > KEYMODEL_ADDR_MAX)
		return KM_OK;		/* not a name kmilter makes */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp((*v)[mid].addr, addr);

		if (c == 0) {
			(*v)[mid].has_key |= share;
			(*v)[mid].has_cert |= !share;
			(*v)[mid].ncert += !share;
			if (not_after > (*v)[mid].not_after)
				(*v)[mid].not_after = not_after;
			return KM_OK;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 32;
		struct keymodel_user *nv = realloc(*v, nc * sizeof(*nv));

		if (nv == NULL)
			return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		*v = nv;
		*cap = nc;
	}
	memmove(&(*v)[lo + 1], &(*v)[lo], (*n - lo) * sizeof(**v));
	memset(&(*v)[lo], 0, sizeof(**v));
	memcpy((*v)[lo].addr, addr, len + 1);
	(*v)[lo].has_key = share;
	(*v)[lo].has_cert = !share;
	(*v)[lo].ncert = !share;
	(*v)[lo].not_after = not_after;
	(*n)++;
	return KM_OK;
}

/* list_not_after - the expiry of the certificate uid on c (0 when it
 * does not parse) */
static enum km_status
list_not_after(struct kmip_conn *c, const char *uid, time_t *not_after,
    struct kmerr *err)
{
	X509 *x;
	enum km_status st;

	*not_after = 0;
	if ((st = keymodel_fetch_cert(c, uid, &x, err)) == KM_OK && x != NULL)
		*not_after = keymodel_cert_time(X509_get0_notAfter(x));
	X509_free(x);
	return st;
}

/* list_kind - the addresses of kmilter's objects of one type in one state
 * on c */
static enum km_status
list_kind(struct kmip_conn *c, enum kmip_object_type type,
    enum kmip_state state, struct keymodel_user **v, size_t *n, size_t *cap,
    struct kmerr *err)
{
	const size_t plen = strlen(KEYMODEL_NAME_PREFIX);
	struct kmip_locate_req q;
	struct kmip_uid_list *l = NULL;
	struct kmip_attrs at;
	enum km_status st;
	time_t not_after = 0;

	memset(&q, 0, sizeof(q));
	q.type = type;
	q.state = state;
	if ((st = kmip_locate(c, &q, &l, err)) != KM_OK)
		return st;
	for (size_t i = 0; i < l->count && st == KM_OK; i++) {
		if ((st = kmip_get_attributes(c, l->uids[i], &at, err)) != KM_OK)
			break;
		if (strncmp(at.name, KEYMODEL_NAME_PREFIX, plen) != 0 ||
		    at.name[plen] == '\0')
			continue;
		if (type == KMIP_OBJ_CERTIFICATE && (st = list_not_after(c,
		    l->uids[i], &not_after, err)) != KM_OK)
			break;
		st = list_add(v, n, cap, at.name + plen,
		    type == KMIP_OBJ_SECRET_DATA, not_after, err);
	}
	kmip_uid_list_free(l);
	return st;
}

/* keymodel_list - every address with an Active certificate or key share */
enum km_status
keymodel_list(struct keymodel *km, struct keymodel_user **out, size_t *n,
    struct kmerr *err)
{
	struct keymodel_user *v = NULL;
	struct kmip_conn *c = NULL;
	enum km_status st = KM_TEMPFAIL;
	size_t cap = 0;
	int i;

	*out = NULL;
	*n = 0;
	/* The first server that answers: both hold every address. */
	for (i = 0; i < 2; i++) {
		if ((st = kmip_pool_get(km->pool[i], &c, err)) != KM_OK)
			continue;
		st = list_kind(c, KMIP_OBJ_CERTIFICATE, KMIP_STATE_ACTIVE, &v,
		    n, &cap, err);
		if (st == KM_OK)
			st = list_kind(c, KMIP_OBJ_SECRET_DATA,
			    KMIP_STATE_ACTIVE, &v, n, &cap, err);
		kmip_pool_put(km->pool[i], c);
		if (st != KM_TEMPFAIL)
			break;
		free(v);
		v = NULL;
		*n = cap = 0;
	}
	if (st != KM_OK) {
		free(v);
		*n = 0;
		return st;
	}
	*out = v;
	return KM_OK;
}

/* keymodel_list_unfinished - every address with a Pre-Active object on
 * either server (an enrollment or renewal under way, or interrupted) */
enum km_status
keymodel_list_unfinished(struct keymodel *km, struct keymodel_user **out,
    size_t *n, struct kmerr *err)
{
	struct keymodel_user *v = NULL;
	struct kmip_conn *c = NULL;
	enum km_status st = KM_OK;
	size_t cap = 0;
	int i;

	*out = NULL;
	*n = 0;
	for (i = 0; i < 2 && st == KM_OK; i++) {
		if ((st = kmip_pool_get(km->pool[i], &c, err)) != KM_OK)
			break;
		st = list_kind(c, KMIP_OBJ_CERTIFICATE, KMIP_STATE_PRE_ACTIVE,
		    &v, n, &cap, err);
		if (st == KM_OK)
			st = list_kind(c, KMIP_OBJ_SECRET_DATA,
			    KMIP_STATE_PRE_ACTIVE, &v, n, &cap, err);
		kmip_pool_put(km->pool[i], c);
	}
	if (st != KM_OK) {
		free(v);
		*n = 0;
		return st;
	}
	*out = v;
	return KM_OK;
}

/* keymodel_finish - what an interrupted enrollment or renewal of addr left
 * finished or removed (keymodel_admin_tidy()); what gets one line, "" when
 * there was nothing to do */
enum km_status
keymodel_finish(struct keymodel *km, const char *addr, char *what,
    size_t whatlen, struct kmerr *err)
{
	struct admin a;
	enum km_status st;

	what[0] = '\0';
	if ((st = keymodel_admin_open(&a, km, addr, err)) != KM_OK)
		return st;
	st = keymodel_admin_tidy(&a, what, whatlen, err);
	keymodel_admin_close(&a);
	return st;
}
