/*
 * keymodel_ban.c - banned addresses, retired gateways and the signing
 * certificates gateways issued, as marks in the KM.  See keymodel_ban.h.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "keymodel.h"
#include "keymodel_ban.h"
#include "keymodel_int.h"
#include "keymodel_name.h"
#include "kmip.h"
#include "log.h"
#include "signstore.h"

#define BAN_PREFIX	"kmilter:ban:"
#define RETIRED_PREFIX	"kmilter:retired:"
#define GWCERT_PREFIX	"kmilter:gwcert:"
#define MARK_NAME_MAX	(sizeof(RETIRED_PREFIX) + KEYMODEL_ADDR_MAX + 1)

/* lower - s lower-cased in place */
static void
lower(char *s)
{
	for (; *s != '\0'; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* ban_name - the Name of addr's ban */
static enum km_status
ban_name(const char *addr, char *out, size_t outlen, struct kmerr *err)
{
	char norm[KEYMODEL_ADDR_MAX + 1];
	enum km_status st;

	if ((st = keymodel_addr_normalize(addr, norm, sizeof(norm), err)) !=
	    KM_OK)
		return st;
	snprintf(out, outlen, "%s%s", BAN_PREFIX, norm);
	lower(out);
	return KM_OK;
}

/* keymodel_gateway_name_ok - 1 when gateway is a name a mark can carry */
int
keymodel_gateway_name_ok(const char *gw)
{
	size_t n = strlen(gw);

	if (n == 0 || n > KEYMODEL_GATEWAY_MAX)
		return 0;
	for (; *gw != '\0'; gw++)
		if (*gw <= ' ' || *gw > '~')	/* printable ASCII, no space */
			return 0;
	return 1;
}

/* gateway_name - the Name prefix+gateway, lower-cased */
static enum km_status
gateway_name(const char *prefix, const char *gw, char *out, size_t outlen,
    struct kmerr *err)
{
	if (!keymodel_gateway_name_ok(gw))
		return kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "bad gateway name \"%.64s\" (printable ASCII without "
		    "spaces, at most %d characters)", gw, KEYMODEL_GATEWAY_MAX);
	snprintf(out, outlen, "%s%s", prefix, gw);
	lower(out);
	return KM_OK;
}

/* mark_find - the uids of name's objects of type on c (state
 * KMIP_STATE_NONE: any state) */
static enum km_status
mark_find(struct kmip_conn *c, const char *name, enum kmip_object_type type,
    enum kmip_state state, struct kmip_uid_list **l, struct kmerr *err)
{
	struct kmip_locate_req q;

	memset(&q, 0, sizeof(q));
	q.name = name;
	q.type = type;
	q.state = state;
	return kmip_locate(c, &q, l, err);
}

/* mark_present_conn - whether an Active mark name is on c */
static enum km_status
mark_present_conn(struct kmip_conn *c, const char *name, int *present,
    struct kmerr *err)
{
	struct kmip_uid_list *l = NULL;
	enum km_status st;

	*present = 0;
	if ((st = mark_find(c, name, KMIP_OBJ_SECRET_DATA, KMIP_STATE_ACTIVE,
	    &l, err)) == KM_OK)
		*present = l->count > 0;
	kmip_uid_list_free(l);
	return st;
}

/* mark_present - whether the mark name is on either server; one server
 * that cannot be asked is skipped when the other answers */
static enum km_status
mark_present(struct keymodel *km, const char *name, int *present,
    struct kmerr *err)
{
	struct kmip_conn *c;
	struct kmerr e;
	enum km_status st = KM_TEMPFAIL, one;
	int i, p, answered = 0;

	*present = 0;
	for (i = 0; i < 2 && !*present; i++) {
		if ((one = kmip_pool_get(km->pool[i], &c, &e)) == KM_OK) {
			one = mark_present_conn(c, name, &p, &e);
			kmip_pool_put(km->pool[i], c);
		}
		if (one == KM_OK) {
			answered = 1;
			*present = p;
			continue;
		}
		log_warnx("keymodel: %s: %s", km->name[i], e.msg);
		st = one;
		if (err != NULL)
			*err = e;
	}
	return answered ? KM_OK : st;
}

/* mark_set_conn - an Active mark name on c unless one is there; *added */
static enum km_status
mark_set_conn(struct kmip_conn *c, const char *name, const char *what,
    int *added, struct kmerr *err)
{
	struct kmip_register_req q;
	char uid[KMIP_UID_MAX];
	struct kmerr e;
	enum km_status st;
	int present;

	if ((st = mark_present_conn(c, name, &present, err)) != KM_OK ||
	    present)
		return st;
	memset(&q, 0, sizeof(q));
	q.type = KMIP_OBJ_SECRET_DATA;
	q.secret_type = KMIP_SECRET_SEED;
	q.data = (const unsigned char *)what;
	q.len = strlen(what);
	q.name = name;
	if ((st = kmip_register(c, &q, uid, err)) != KM_OK)
		return st;
	if ((st = kmip_activate(c, uid, err)) != KM_OK) {
		if (kmip_destroy(c, uid, &e) != KM_OK)
			log_warnx("keymodel: cannot remove half-made %s "
			    "object %s: %s", name, uid, e.msg);
		return st;
	}
	*added = 1;
	return KM_OK;
}

/* mark_set - the mark name on both servers; *added when one was new */
static enum km_status
mark_set(struct keymodel *km, const char *name, const char *what,
    int *added, struct kmerr *err)
{
	struct kmip_conn *c;
	enum km_status st = KM_OK;
	int i;

	*added = 0;
	for (i = 0; i < 2 && st == KM_OK; i++) {
		if ((st = kmip_pool_get(km->pool[i], &c, err)) != KM_OK)
			break;
		st = mark_set_conn(c, name, what, added, err);
		kmip_pool_put(km->pool[i], c);
	}
	return st;
}

/* mark_clear - revoke and destroy every object of name on both servers */
static enum km_status
mark_clear(struct keymodel *km, const char *name, int *removed,
    struct kmerr *err)
{
	struct kmip_uid_list *l = NULL;
	struct kmip_attrs at;
	struct kmip_conn *c;
	enum km_status st = KM_OK;
	size_t j;
	int i;

	*removed = 0;
	for (i = 0; i < 2 && st == KM_OK; i++) {
		if ((st = kmip_pool_get(km->pool[i], &c, err)) != KM_OK)
			break;
		st = mark_find(c, name, KMIP_OBJ_SECRET_DATA, KMIP_STATE_NONE,
		    &l, err);
		for (j = 0; st == KM_OK && j < l->count; j++) {
			if ((st = kmip_get_attributes(c, l->uids[j], &at,
			    err)) != KM_OK)
				break;
			if (at.state == KMIP_STATE_ACTIVE &&
			    (st = kmip_revoke(c, l->uids[j],
			    KMIP_REVOKE_CESSATION_OF_OPERATION, "lifted by kmctl",
			    err)) != KM_OK)
				break;
			if ((st = kmip_destroy(c, l->uids[j], err)) != KM_OK)
				break;
			*removed = 1;
		}
		l = kmip_uid_list_free(l);
		kmip_pool_put(km->pool[i], c);
	}
	return st;
}

/* keymodel_ban - mark addr banned on both servers */
enum km_status
keymodel_ban(struct keymodel *km, const char *addr, int *changed,
    struct kmerr *err)
{
	char name[MARK_NAME_MAX];
	enum km_status st;

	*changed = 0;
	if ((st = ban_name(addr, name, sizeof(name), err)) != KM_OK)
		return st;
	return mark_set(km, name, "kmilter ban: no enrollment", changed, err);
}

/* keymodel_unban - lift addr's ban on both servers */
enum km_status
keymodel_unban(struct keymodel *km, const char *addr, int *changed,
    struct kmerr *err)
{
	char name[MARK_NAME_MAX];
	enum km_status st;

	*changed = 0;
	if ((st = ban_name(addr, name, sizeof(name), err)) != KM_OK)
		return st;
	return mark_clear(km, name, changed, err);
}

/* keymodel_banned - whether addr is banned */
enum km_status
keymodel_banned(struct keymodel *km, const char *addr, int *banned,
    struct kmerr *err)
{
	char name[MARK_NAME_MAX];
	enum km_status st;

	*banned = 0;
	if ((st = ban_name(addr, name, sizeof(name), err)) != KM_OK)
		return st;
	return mark_present(km, name, banned, err);
}

/* keymodel_admin_refuse_banned - in an administration session: KM_OK
 * unless the session's address is banned on either server */
enum km_status
keymodel_admin_refuse_banned(struct admin *a, struct kmerr *err)
{
	char name[MARK_NAME_MAX];
	enum km_status st;
	int i, banned = 0;

	if ((st = ban_name(a->norm, name, sizeof(name), err)) != KM_OK)
		return st;
	for (i = 0; i < 2 && !banned; i++)
		if ((st = mark_present_conn(a->c[i], name, &banned, err)) !=
		    KM_OK)
			return st;
	if (banned)
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "%s is banned: no enrollment until kmctl unban", a->norm);
	return KM_OK;
}

/* tell_addr - each(addr of the certificate uid on c, arg): its subject
 * CN, which signstore_enroll() makes the address */
static void
tell_addr(struct kmip_conn *c, const char *uid,
    void (*each)(const char *, void *), void *arg)
{
	char cn[KEYMODEL_ADDR_MAX + 1];
	struct kmerr e;
	X509 *x = NULL;

	if (each == NULL || keymodel_fetch_cert(c, uid, &x, &e) != KM_OK ||
	    x == NULL)
		return;
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(x),
	    NID_commonName, cn, sizeof(cn)) > 0)
		each(cn, arg);
	ERR_clear_error();
	X509_free(x);
}

/* revoke_certs - revoke every recorded certificate of name on c;
 * *n counts those newly revoked */
static enum km_status
revoke_certs(struct kmip_conn *c, const char *name, int *n,
    void (*each)(const char *, void *), void *arg, struct kmerr *err)
{
	struct kmip_uid_list *l = NULL;
	struct kmip_attrs at;
	enum km_status st;
	size_t j;

	*n = 0;
	if ((st = mark_find(c, name, KMIP_OBJ_CERTIFICATE, KMIP_STATE_NONE,
	    &l, err)) != KM_OK)
		return st;
	for (j = 0; j < l->count; j++) {
		if ((st = kmip_get_attributes(c, l->uids[j], &at, err)) !=
		    KM_OK)
			break;
		if (at.state == KMIP_STATE_COMPROMISED ||
		    at.state == KMIP_STATE_DESTROYED_COMPROMISED)
			continue;
		if ((st = kmip_revoke(c, l->uids[j], KMIP_REVOKE_KEY_COMPROMISE,
		    "gateway retired by kmctl", err)) != KM_OK)
			break;
		(*n)++;
		tell_addr(c, l->uids[j], each, arg);
	}
	kmip_uid_list_free(l);
	return st;
}

/* keymodel_retire_gateway - the retired mark, then every recorded
 * signing certificate of the gateway revoked, on both servers */
enum km_status
keymodel_retire_gateway(struct keymodel *km, const char *gw, int *nrevoked,
    void (*each)(const char *addr, void *arg), void *arg, struct kmerr *err)
{
	char mark[MARK_NAME_MAX], certs[MARK_NAME_MAX];
	struct kmip_conn *c;
	enum km_status st;
	int i, n, added;

	*nrevoked = 0;
	if ((st = gateway_name(RETIRED_PREFIX, gw, mark, sizeof(mark),
	    err)) != KM_OK ||
	    (st = gateway_name(GWCERT_PREFIX, gw, certs, sizeof(certs),
	    err)) != KM_OK ||
	    (st = mark_set(km, mark, "kmilter retired gateway", &added,
	    err)) != KM_OK)
		return st;
	for (i = 0; i < 2; i++) {
		if ((st = kmip_pool_get(km->pool[i], &c, err)) != KM_OK)
			return st;
		st = revoke_certs(c, certs, &n, i == 0 ? each : NULL, arg, err);
		kmip_pool_put(km->pool[i], c);
		if (st != KM_OK)
			return st;
		if (n > *nrevoked)
			*nrevoked = n;
	}
	return KM_OK;
}

/* keymodel_gateway_retired - whether the gateway is retired */
enum km_status
keymodel_gateway_retired(struct keymodel *km, const char *gw, int *retired,
    struct kmerr *err)
{
	char mark[MARK_NAME_MAX];
	enum km_status st;

	*retired = 0;
	if ((st = gateway_name(RETIRED_PREFIX, gw, mark, sizeof(mark),
	    err)) != KM_OK)
		return st;
	return mark_present(km, mark, retired, err);
}

/* keymodel_gateway_record_cert - a signing certificate the gateway issued,
 * on both servers (refused once the gateway is retired) */
enum km_status
keymodel_gateway_record_cert(struct keymodel *km, const char *gw, X509 *cert,
    struct kmerr *err)
{
	struct kmip_register_req q;
	char name[MARK_NAME_MAX], uid[KMIP_UID_MAX];
	unsigned char *der = NULL;
	struct kmip_conn *c;
	enum km_status st;
	int i, len, retired;

	if ((st = gateway_name(GWCERT_PREFIX, gw, name, sizeof(name),
	    err)) != KM_OK ||
	    (st = keymodel_gateway_retired(km, gw, &retired, err)) != KM_OK)
		return st;
	if (retired)
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "gateway %s is retired (kmctl retire-gateway): it issues "
		    "no signing certificate", gw);
	if ((len = i2d_X509(cert, &der)) <= 0) {
		ERR_clear_error();
		return kmerr_set(err, KM_NOMEM, KMERR_NONE,
		    "cannot encode the certificate");
	}
	memset(&q, 0, sizeof(q));
	q.type = KMIP_OBJ_CERTIFICATE;
	q.data = der;
	q.len = (size_t)len;
	q.name = name;
	for (i = 0; i < 2; i++) {
		if ((st = kmip_pool_get(km->pool[i], &c, err)) != KM_OK)
			break;
		if ((st = kmip_register(c, &q, uid, err)) == KM_OK)
			st = kmip_activate(c, uid, err);
		kmip_pool_put(km->pool[i], c);
		if (st != KM_OK)
			break;
	}
	OPENSSL_free(der);
	return st;
}

/* keymodel_may_sign - whether gateway may enroll a signing key for addr */
enum km_status
keymodel_may_sign(struct keymodel *km, const char *gw, const char *addr,
    struct kmerr *err)
{
	enum km_status st;
	int retired, banned;

	if ((st = keymodel_gateway_retired(km, gw, &retired, err)) != KM_OK ||
	    (st = keymodel_banned(km, addr, &banned, err)) != KM_OK)
		return st;
	if (retired)
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "gateway %s is retired (kmctl retire-gateway): no signing "
		    "key is made or used under its name", gw);
	if (banned)
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "%s is banned: no enrollment until kmctl unban", addr);
	return KM_OK;
}

/* keymodel_signing_enroll - gateway's signing key for addr (protected by
 * pw when not NULL), checked and recorded in the KM (keymodel_ban.h) */
enum km_status
keymodel_signing_enroll(struct keymodel *km, const char *gw,
    const char *state_dir, const struct seal_key *seal, const char *addr,
    X509 *ca, EVP_PKEY *cakey, const char *keytype, int days, const char *pw,
    size_t pwlen, int *made, struct kmerr *err)
{
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	unsigned char *enc = NULL;
	size_t enclen = 0;
	struct kmerr e;
	enum km_status st;

	*made = 0;
	if (km != NULL && (st = keymodel_may_sign(km, gw, addr, err)) != KM_OK)
		return st;
	if ((st = signstore_enroll_protected(state_dir, seal, addr, ca, cakey,
	    keytype, days, pw, pwlen, err)) != KM_OK)
		return st;
	*made = 1;
	if (km == NULL)
		return KM_OK;
	/* a protected key stays sealed: only its certificate is read */
	if ((st = signstore_open(state_dir, seal, addr, &cert, &key, &enc,
	    &enclen, NULL, &e)) == KM_OK)
		st = keymodel_gateway_record_cert(km, gw, cert, &e);
	X509_free(cert);
	EVP_PKEY_free(key);
	free(enc);
	if (st != KM_OK)
		kmerr_set(err, st, e.reason, "signing key made, but its "
		    "certificate is not recorded in the KM (kmctl "
		    "retire-gateway would not revoke it): %s", e.msg);
	return st;
}
