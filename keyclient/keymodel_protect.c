/*
 * keymodel_protect.c - change of protection level (set-password,
 * clear-password): re-escrow every usable generation's key as new XOR
 * shares.  See keymodel_protect.h.
 */
#include <stdlib.h>
#include <string.h>

#include "keymodel.h"
#include "keymodel_protect.h"
#include "keymodel_cert.h"
#include "keymodel_int.h"
#include "keymodel_name.h"
#include "kmip.h"
#include "log.h"
#include "pkcs8pw.h"
#include "secmem.h"

/* remove_obj - take one object out of use: revoke it (Cessation of
 * Operation) when it is Active, then Destroy it */
static enum km_status
remove_obj(struct kmip_conn *c, const char *uid, int active, struct kmerr *err)
{
	enum km_status st;

	if (active && (st = kmip_revoke(c, uid,
	    KMIP_REVOKE_CESSATION_OF_OPERATION, "replaced by kmctl",
	    err)) != KM_OK)
		return st;
	return kmip_destroy(c, uid, err);
}

/* reshare - replace one generation's two shares by shares of der: register
 * them (Pre-Active: lookups ignore them), activate them (and deactivate
 * them again for a Deactivated generation), then remove the old ones.
 * Until the new shares are active nothing visible changed, and a failure
 * removes them again. */
static enum km_status
reshare(struct admin *a, struct genrec *r, const unsigned char *der,
    size_t len, int enhanced, struct kmerr *err)
{
	struct kmip_register_req q;
	char uids[2][KMIP_UID_MAX], group[KEYMODEL_GROUP_MAX];
	struct kmerr e;
	unsigned char *sh[2] = { NULL, NULL };
	int srv, nreg = 0, active = 0;
	enum km_status st;

	if ((st = keymodel_split(der, len, &sh[0], &sh[1], err)) !=
	    KM_OK)
		return st;
	keymodel_group_format(KEYMODEL_SHARE, r->gen, enhanced, group,
	    sizeof(group));
	for (srv = 0; srv < 2; srv++) {
		memset(&q, 0, sizeof(q));
		q.name = a->name;
		q.group = group;
		q.type = KMIP_OBJ_SECRET_DATA;
		q.secret_type = KMIP_SECRET_SEED;
		q.data = sh[srv];
		q.len = len;
		if ((st = kmip_register(a->c[srv], &q,
		    uids[srv], err)) != KM_OK)
			goto fail;
		nreg++;
	}
	for (srv = 0; srv < 2; srv++) {
		if ((st = kmip_activate(a->c[srv],
		    uids[srv], err)) != KM_OK)
			goto fail;
		active = srv + 1;
	}
	if (r->state == KMIP_STATE_DEACTIVATED)
		for (srv = 0; srv < 2; srv++)
			if (kmip_revoke(a->c[srv], uids[srv],
			    KMIP_REVOKE_CESSATION_OF_OPERATION,
			    "earlier generation", &e) != KM_OK)
				log_warnx("keymodel: %s: new share %s of "
				    "generation %d stays Active: %s", a->norm,
				    uids[srv], r->gen, e.msg);
	for (srv = 0; srv < 2; srv++) {
		struct kobj *o = r->share[srv];

		if ((st = remove_obj(a->c[srv], o->uid, o->state ==
		    KMIP_STATE_ACTIVE, &e)) != KM_OK) {
			kmerr_set(err, st, KMERR_NONE, "generation %d: new key "
			    "shares are in place, but the old share %s on %s "
			    "could not be removed (%s): remove it by hand",
			    r->gen, o->uid, a->km->name[srv], e.msg);
			log_warnx("keymodel: %s: %s", a->norm,
			    err != NULL ? err->msg : "");
			goto out;
		}
	}
	st = KM_OK;
	goto out;
fail:
	for (srv = 0; srv < nreg; srv++)
		if (remove_obj(a->c[srv], uids[srv], srv < active, &e) !=
		    KM_OK)
			log_warnx("keymodel: %s: cannot remove half-made "
			    "share %s: %s", a->norm, uids[srv], e.msg);
out:
	secmem_free(sh[0], len);
	secmem_free(sh[1], len);
	return st;
}

/* fetch_gen - Get one generation's certificate (A) and shares (A, B) */
static enum km_status
fetch_gen(struct admin *a, struct genrec *r, struct kmerr *err)
{
	struct kobj *objs[3];
	enum kmip_object_type t;
	int i, srv;
	enum km_status st;

	if (r->nshare[0] != 1 || r->nshare[1] != 1 || r->ncert[0] != 1)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "generation %d of %s: expected one "
		    "certificate on %s and one key share on each server, "
		    "found %d, %d and %d", r->gen, a->norm, a->km->name[0],
		    r->ncert[0], r->nshare[0], r->nshare[1]);
	objs[0] = r->cert[0];
	objs[1] = r->share[0];
	objs[2] = r->share[1];
	for (i = 0; i < 3; i++) {
		srv = i == 2 ? 1 : 0;
		if (objs[i]->data != NULL)
			continue;
		if ((st = kmip_get(a->c[srv], objs[i]->uid,
		    &t,
		    &objs[i]->data, &objs[i]->len,
		    err)) != KM_OK)
			return st;
		if (t != objs[i]->type)
			return kmerr_set(err, KM_PROTO, KMERR_NONE,
			    "server %s: object %s changed "
			    "type", a->km->name[srv], objs[i]->uid);
	}
	return KM_OK;
}

/* drop_leftovers - destroy Pre-Active shares of usable generations: what an
 * interrupted change of protection level left behind */
static void
drop_leftovers(struct admin *a)
{
	struct kmerr e;
	size_t i, k;
	int srv;

	for (srv = 0; srv < 2; srv++) {
		for (i = 0; i < a->s[srv].n; i++) {
			struct kobj *o = &a->s[srv].v[i];

			if (o->kind != KEYMODEL_SHARE ||
			    o->state != KMIP_STATE_PRE_ACTIVE)
				continue;
			for (k = 0; k < a->nrecs; k++)
				if (a->recs[k].gen == o->gen)
					break;
			if (k == a->nrecs || !keymodel_usable(a->recs[k].state))
				continue;
			if (kmip_destroy(a->c[srv], o->uid, &e) == KM_OK)
				log_info("keymodel: %s: removed left-over share "
				    "%s of generation %d", a->norm, o->uid,
				    o->gen);
			else
				log_warnx("keymodel: %s: cannot remove "
				    "left-over share %s: %s", a->norm, o->uid,
				    e.msg);
		}
	}
}

/* gen_clear - free what make_gen put into one struct keymodel_gen */
static void
gen_clear(struct keymodel_gen *g)
{
	X509_free(g->cert);
	EVP_PKEY_free(g->key);
	secmem_free(g->der, g->derlen);
	memset(g, 0, sizeof(*g));
}

/* change_level - re-escrow every usable generation's key: oldpw NULL
 * protects it under newpw, newpw NULL removes oldpw's protection.  Every
 * generation is checked and converted before anything changes in the KM;
 * generations already at the wanted level are left alone (so running an
 * interrupted change again finishes it). */
static enum km_status
change_level(struct keymodel *km, const char *addr, const char *oldpw,
    size_t oldlen, const char *newpw, size_t newlen, int *nchanged,
    struct kmerr *err)
{
	struct admin a;
	struct keymodel_gen g;
	unsigned char **nder = NULL;
	size_t *nlen = NULL, i, nkeys = 0;
	struct kmerr e;
	enum km_status st;
	int done = 0;

	if (nchanged != NULL)
		*nchanged = 0;
	if ((st = keymodel_admin_open(&a, km, addr, err)) != KM_OK)
		return st;
	if (a.nrecs > 0 && ((nder = calloc(a.nrecs, sizeof(*nder))) == NULL ||
	    (nlen = calloc(a.nrecs, sizeof(*nlen))) == NULL)) {
		st = kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		goto out;
	}
	drop_leftovers(&a);
	for (i = 0; i < a.nrecs; i++) {
		struct genrec *r = &a.recs[i];

		if (!keymodel_usable(r->state) ||
		    r->nshare[0] + r->nshare[1] == 0)
			continue;	/* revoked, half-made, or cert only */
		nkeys++;
		memset(&g, 0, sizeof(g));
		if ((st = fetch_gen(&a, r, err)) != KM_OK ||
		    (st = keymodel_make_gen(km, a.norm, r, &g, err)) != KM_OK) {
			gen_clear(&g);
			goto out;
		}
		if (g.enhanced == (newpw != NULL)) {
			/* already at the wanted level: with the same
			 * password? */
			st = newpw != NULL ? keymodel_rewrap(g.cert, g.der,
			    g.derlen, newpw, newlen, NULL, 0, 0, &nder[i],
			    &nlen[i], &e) : KM_OK;
			secmem_free(nder[i], nlen[i]);
			nder[i] = NULL;
			nlen[i] = 0;
			if (st == KM_PERMFAIL)
				kmerr_set(err, st, KMERR_BADPASSWORD,
				    "generation %d of %s is already protected "
				    "by another password: clear-password first",
				    r->gen, a.norm);
			else if (st != KM_OK)
				kmerr_set(err, st, e.reason, "generation %d of "
				    "%s: %s", r->gen, a.norm, e.msg);
		} else {
			st = keymodel_rewrap(g.cert, g.der, g.derlen, oldpw,
			    oldlen, newpw, newlen, 0, &nder[i], &nlen[i], &e);
			if (st == KM_PERMFAIL)
				kmerr_set(err, st, KMERR_BADPASSWORD, "wrong "
				    "password for generation %d of %s", r->gen,
				    a.norm);
			else if (st != KM_OK)
				kmerr_set(err, st, e.reason, "generation %d of "
				    "%s: %s", r->gen, a.norm, e.msg);
		}
		gen_clear(&g);
		if (st != KM_OK)
			goto out;
	}
	if (nkeys == 0) {
		st = kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no keys for %s", a.norm);
		goto out;
	}
	for (i = 0; i < a.nrecs; i++) {
		if (nder[i] == NULL)
			continue;
		if ((st = reshare(&a, &a.recs[i], nder[i], nlen[i],
		    newpw != NULL, err)) != KM_OK)
			goto out;
		done++;
		log_info("keymodel: %s: generation %d is now at protection "
		    "level %s", a.norm, a.recs[i].gen, newpw != NULL ?
		    "enhanced" : "default");
	}
	st = KM_OK;
out:
	for (i = 0; nder != NULL && i < a.nrecs; i++)
		secmem_free(nder[i], nlen[i]);
	free(nder);
	free(nlen);
	if (nchanged != NULL)
		*nchanged = done;
	keymodel_admin_close(&a);
	return st;
}

/* keymodel_set_password - protect every usable generation's escrowed key
 * under pw (level enhanced) */
enum km_status
keymodel_set_password(struct keymodel *km, const char *addr, const char *pw,
    size_t pwlen, int *nchanged, struct kmerr *err)
{
	if (pw == NULL || pwlen == 0)
		return kmerr_set(err, KM_PROTO, KMERR_NONE, "empty password");
	return change_level(km, addr, NULL, 0, pw, pwlen, nchanged, err);
}

/* keymodel_clear_password - back to level default; pw must be the current
 * protection password */
enum km_status
keymodel_clear_password(struct keymodel *km, const char *addr,
    const char *pw, size_t pwlen, int *nchanged, struct kmerr *err)
{
	if (pw == NULL || pwlen == 0)
		return kmerr_set(err, KM_PROTO, KMERR_NONE, "empty password");
	return change_level(km, addr, pw, pwlen, NULL, 0, nchanged, err);
}

/* keymodel_password_opens - does pw open one of the enhanced generations
 * (the password of record)?  1 yes, 0 no, -1 none is enhanced */
int
keymodel_password_opens(const struct keymodel_gen *g, size_t n,
    const char *pw, size_t pwlen)
{
	unsigned char *plain = NULL;
	size_t plen = 0;
	struct kmerr e;
	int seen = 0;

	for (size_t i = 0; i < n; i++) {
		if (!g[i].enhanced || g[i].der == NULL)
			continue;
		seen = 1;
		if (pkcs8pw_unwrap(g[i].der, g[i].derlen, pw, pwlen, &plain,
		    &plen, &e) == KM_OK) {
			secmem_free(plain, plen);
			return 1;
		}
	}
	return seen ? 0 : -1;
}
