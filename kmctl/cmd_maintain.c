/*
 * cmd_maintain.c - kmctl's lifecycle commands: list (the users enrolled in
 * the KM, their level, generations and expiry; --expiring DAYS keeps those
 * whose current certificate runs out within DAYS) and maintain (meant to
 * run daily from kmctl-maintain.timer on every gateway: renews each
 * encryption certificate that expires within --days N, default 30, renews
 * this gateway's signing certificates likewise, deletes the expired
 * signing keys of addresses no longer enrolled, finishes (or removes) what
 * an enrollment or renewal killed half-way left once it is stale
 * (keymodel_finish()); one line per change and a summary).  maintain is idempotent; of gateways that run it at once, one
 * renews each address (keymodel_renew_due()).  See cmd.h and kmctl.8.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "cmd.h"
#include "conf.h"
#include "keymodel.h"
#include "keymodel_admin.h"
#include "keymodel_ban.h"
#include "keymodel_cert.h"
#include "kmctl.h"
#include "kmip.h"
#include "seal.h"
#include "signstore.h"

#define DAY		(24 * 60 * 60)
#define RENEW_DAYS	30		/* maintain's default window */

/* What list and maintain need of one address's generations. */
struct status {
	int	 ngens;			/* generations in the KM */
	int	 current;		/* the Active generation with a key, or 0 */
	int	 enhanced;		/* its level */
	time_t	 not_after;		/* its certificate's expiry */
};

/* day - a time as YYYY-MM-DD (UTC) */
static const char *
day(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (t == 0 || gmtime_r(&t, &tm) == NULL)
		return "?";
	strftime(buf, len, "%Y-%m-%d", &tm);
	return buf;
}

/* user_status - addr's current generation, level and expiry */
static enum km_status
user_status(struct keymodel *km, const char *addr, struct status *s,
    struct kmerr *err)
{
	struct keymodel_info *v = NULL;
	enum km_status st;
	size_t n = 0, i;

	memset(s, 0, sizeof(*s));
	if ((st = keymodel_show(km, addr, &v, &n, err)) != KM_OK)
		return st;
	s->ngens = (int)n;
	for (i = 0; i < n; i++)		/* newest first */
		if (v[i].state == KMIP_STATE_ACTIVE && v[i].has_key &&
		    v[i].not_after != 0) {
			s->current = v[i].generation;
			s->enhanced = v[i].enhanced;
			s->not_after = v[i].not_after;
			break;
		}
	keymodel_infos_free(v);
	return KM_OK;
}

/* cmd_list - the users enrolled in the KM, with --expiring DAYS only those
 * whose current certificate runs out within DAYS */
int
cmd_list(const struct kmilter_conf *conf, const struct opts *o,
    const char *a1, const char *a2)
{
	struct keymodel *km;
	struct keymodel_user *v = NULL;
	struct status s;
	struct kmerr err;
	enum km_status st;
	time_t limit = time(NULL) + (time_t)o->expiring * DAY;
	char d[16];
	size_t n, i;
	int rc = EX_OK_;

	(void)a1;
	(void)a2;
	if ((km = kmctl_open_km(conf)) == NULL)
		return EX_FAIL;
	if ((st = keymodel_list(km, &v, &n, &err)) != KM_OK) {
		keymodel_free(km);
		kmctl_warn("list: %s", err.msg);
		return kmctl_exit_for(st, &err);
	}
	for (i = 0; i < n; i++) {
		if (!v[i].has_key && o->expiring < 0) {
			printf("%s certificate-only\n", v[i].addr);
			continue;
		}
		if (!v[i].has_key)
			continue;	/* a correspondent's: nothing to renew */
		if ((st = user_status(km, v[i].addr, &s, &err)) != KM_OK) {
			kmctl_warn("list: %s: %s", v[i].addr, err.msg);
			rc = kmctl_exit_for(st, &err);
			continue;
		}
		if (o->expiring >= 0 && (s.current == 0 || s.not_after > limit))
			continue;
		printf("%s key level %s generations %d current %d expires %s\n",
		    v[i].addr, s.enhanced ? "enhanced" : "default", s.ngens,
		    s.current, day(s.not_after, d, sizeof(d)));
	}
	free(v);
	keymodel_free(km);
	return rc;
}

/* Counts for maintain's summary. */
struct tally {
	int	 users, renewed, elsewhere, failed, attention;
	int	 sign_renewed, sign_deleted, sign_kept, sign_failed;
};

/* renew_one - renew addr's encryption certificate if it expires before
 * limit (checked again inside keymodel_renew_due()) */
static void
renew_one(const struct kmilter_conf *conf, struct keymodel *km,
    const struct keymodel_user *u, X509 *ca, EVP_PKEY *cakey, time_t limit,
    struct tally *t)
{
	const char *addr = u->addr;
	struct status s;
	struct kmerr err;
	enum km_status st;
	char d[16];
	int gen = 0;

	if (u->not_after > limit)
		return;		/* the list saw no certificate due */
	if ((st = user_status(km, addr, &s, &err)) != KM_OK) {
		kmctl_warn("maintain: %s: %s", addr, err.msg);
		t->failed++;
		return;
	}
	if (s.current == 0 || s.not_after > limit)
		return;
	if (s.enhanced) {
		printf("attention %s: generation %d expires %s at level "
		    "enhanced: renewal needs its password (clear-password, "
		    "renew, set-password)\n", addr, s.current,
		    day(s.not_after, d, sizeof(d)));
		t->attention++;
		return;
	}
	st = keymodel_renew_due(km, addr, ca, cakey, NULL, 0, limit + 1, &gen,
	    &err);
	if (st == KM_OK && gen == 0) {
		printf("skipped %s: renewed elsewhere\n", addr);
		t->elsewhere++;
		return;
	}
	if (st == KM_PERMFAIL && err.reason == KMERR_EXISTS) {
		printf("skipped %s: renewed elsewhere (%s)\n", addr, err.msg);
		t->elsewhere++;
		return;
	}
	if (st != KM_OK) {
		kmctl_warn("maintain: renew %s: %s", addr, err.msg);
		t->failed++;
		return;
	}
	printf("renewed %s: generation %d (expires %s) -> %d\n", addr,
	    s.current, day(s.not_after, d, sizeof(d)), gen);
	t->renewed++;
	if (kmctl_after_change(conf, addr) != EX_OK_)
		t->failed++;
}

/* sign_addr - the address a signing certificate names (its CN) */
static int
sign_addr(X509 *x, char *out, size_t len)
{
	int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x),
	    NID_commonName, out, (int)len);

	return n > 0 && (size_t)n < len ? 0 : -1;
}

/* sign_one - one certificate file of STATE_DIR/signing: renew it when due
 * and its address is still enrolled, delete it when expired and not */
static void
sign_one(const struct kmilter_conf *conf, struct keymodel *km,
    const struct seal_key *sk, const char *path, const struct keymodel_user *users, size_t nusers,
    X509 *ca, EVP_PKEY *cakey, time_t limit, struct tally *t)
{
	char addr[KEYMODEL_ADDR_MAX + 1], d[16];
	X509 *x = NULL;
	FILE *fp;
	struct kmerr err;
	time_t not_after = 0, now = time(NULL);
	size_t i;
	int enrolled = 0, made;

	if ((fp = fopen(path, "r")) != NULL) {
		x = PEM_read_X509(fp, NULL, NULL, NULL);
		fclose(fp);
	}
	ERR_clear_error();
	if (x == NULL || sign_addr(x, addr, sizeof(addr)) != 0 ||
	    (not_after = keymodel_cert_time(X509_get0_notAfter(x))) == 0) {
		kmctl_warn("maintain: %s: not a signing certificate: left alone",
		    path);
		t->sign_failed++;
		X509_free(x);
		return;
	}
	for (i = 0; i < nusers; i++)
		if (strcmp(users[i].addr, addr) == 0 && users[i].has_key)
			enrolled = 1;
	if (not_after > limit) {
		t->sign_kept++;
	} else if (enrolled) {
		/* checked and recorded as signing-enroll does */
		if (keymodel_signing_enroll(km, conf->gateway_name,
		    conf->state_dir, sk, addr, ca, cakey, keymodel_keytype_of(x),
		    0, NULL, 0, &made, &err) != KM_OK) {
			kmctl_warn("maintain: signing %s: %s", addr, err.msg);
			t->sign_failed++;
		} else {
			printf("signing renewed %s: the certificate %s %s "
			    "replaced\n", addr, not_after <= now ? "expired" :
			    "expiring", day(not_after, d, sizeof(d)));
			t->sign_renewed++;
			if (kmctl_after_change(conf, addr) != EX_OK_)
				t->sign_failed++;
		}
	} else if (not_after <= now) {
		if (signstore_remove(conf->state_dir, sk, addr, &err) != KM_OK) {
			kmctl_warn("maintain: signing %s: %s", addr, err.msg);
			t->sign_failed++;
		} else {
			printf("signing deleted %s: expired %s, not enrolled\n",
			    addr, day(not_after, d, sizeof(d)));
			t->sign_deleted++;
		}
	} else
		t->sign_kept++;		/* due, but its user left the KM */
	X509_free(x);
}

/* sign_all - every signing certificate of this gateway */
static void
sign_all(const struct kmilter_conf *conf, struct keymodel *km,
    const struct keymodel_user *users,
    size_t nusers, X509 *ca, EVP_PKEY *cakey, time_t limit, struct tally *t)
{
	char dir[PATH_MAX], path[PATH_MAX + 256];
	struct seal_key *sk = NULL;
	struct kmerr err;
	struct dirent *de;
	DIR *d;
	size_t l;

	snprintf(dir, sizeof(dir), "%s/signing", conf->state_dir);
	if ((d = opendir(dir)) == NULL)
		return;			/* no signing keys here */
	if (signstore_seal_key_path(conf, path, sizeof(path)) != KM_OK ||
	    (sk = seal_key_load(path, &err)) == NULL) {
		kmctl_warn("maintain: signing keys left alone: no gateway key");
		t->sign_failed++;
		closedir(d);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		l = strlen(de->d_name);
		if (de->d_name[0] == '.' || l < 5 ||
		    strcmp(de->d_name + l - 4, ".crt") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		sign_one(conf, km, sk, path, users, nusers, ca, cakey, limit, t);
	}
	closedir(d);
	seal_key_free(sk);
}

/* finish_one - what an interrupted enrollment or renewal of addr left,
 * finished or removed (keymodel_finish()) */
static void
finish_one(struct keymodel *km, const char *addr, int *finished, int *failed)
{
	char what[KMERR_MSG_MAX];
	struct kmerr err;

	if (keymodel_finish(km, addr, what, sizeof(what), &err) != KM_OK) {
		kmctl_warn("maintain: finish %s: %s", addr, err.msg);
		(*failed)++;
	} else if (what[0] != '\0') {
		printf("finished %s: %s\n", addr, what);
		(*finished)++;
	}
}

/* finish_all - the addresses with Pre-Active objects, and those with more
 * than one Active certificate: changes a crash (SIGKILL, power) stopped
 * half-way, finished before the renewals are looked at */
static void
finish_all(struct keymodel *km, const struct keymodel_user *users,
    size_t nusers, struct tally *t)
{
	struct keymodel_user *v = NULL;
	struct kmerr err;
	enum km_status st;
	size_t n = 0, i;
	int finished = 0;

	if ((st = keymodel_list_unfinished(km, &v, &n, &err)) != KM_OK) {
		kmctl_warn("maintain: interrupted changes not looked for: %s",
		    err.msg);
		t->failed++;
	}
	for (i = 0; i < n; i++)
		finish_one(km, v[i].addr, &finished, &t->failed);
	for (i = 0; i < nusers; i++)
		if (users[i].has_key && users[i].ncert > 1)
			finish_one(km, users[i].addr, &finished, &t->failed);
	free(v);
	if (finished > 0)
		printf("maintain: %d interrupted change%s finished\n", finished,
		    finished == 1 ? "" : "s");
}

/* cmd_maintain - renew what expires within --days (default 30) */
int
cmd_maintain(const struct kmilter_conf *conf, const struct opts *o,
    const char *a1, const char *a2)
{
	struct keymodel *km;
	struct keymodel_user *v = NULL;
	struct tally t;
	struct kmerr err;
	enum km_status st;
	X509 *ca = NULL;
	EVP_PKEY *cakey = NULL;
	time_t limit;
	size_t n = 0, i;

	(void)a1;
	(void)a2;
	memset(&t, 0, sizeof(t));
	limit = time(NULL) + (time_t)(o->days > 0 ? o->days : RENEW_DAYS) * DAY;
	if (kmctl_load_org_ca(conf, &ca, &cakey) != 0)
		return EX_FAIL;
	if ((km = kmctl_open_km(conf)) == NULL) {
		X509_free(ca);
		EVP_PKEY_free(cakey);
		return EX_FAIL;
	}
	if ((st = keymodel_list(km, &v, &n, &err)) != KM_OK) {
		kmctl_warn("maintain: %s: nothing done", err.msg);
		keymodel_free(km);
		X509_free(ca);
		EVP_PKEY_free(cakey);
		return kmctl_exit_for(st, &err);
	}
	finish_all(km, v, n, &t);
	for (i = 0; i < n; i++) {
		if (!v[i].has_key)
			continue;	/* a correspondent's certificate */
		t.users++;
		renew_one(conf, km, &v[i], ca, cakey, limit, &t);
	}
	sign_all(conf, km, v, n, ca, cakey, limit, &t);
	printf("maintain: %d users, %d renewed, %d renewed elsewhere, "
	    "%d need attention, %d failed; signing keys: %d renewed, "
	    "%d deleted, %d kept, %d failed\n", t.users, t.renewed,
	    t.elsewhere, t.attention, t.failed, t.sign_renewed,
	    t.sign_deleted, t.sign_kept, t.sign_failed);
	free(v);
	keymodel_free(km);
	X509_free(ca);
	EVP_PKEY_free(cakey);
	return t.failed + t.sign_failed > 0 ? EX_FAIL : EX_OK_;
}
