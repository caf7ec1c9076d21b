/*
 * cmd_keys.c - kmctl's commands that change a user's keys in the KM:
 * enroll, renew, set-password, clear-password (with this gateway's
 * signing key), revoke, import.  See cmd.h and kmctl.8.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pkcs12.h>

#include "cmd.h"
#include "conf.h"
#include "keymodel.h"
#include "keymodel_admin.h"
#include "keymodel_name.h"
#include "keymodel_p12.h"
#include "keymodel_protect.h"
#include "kmctl.h"
#include "kmctl_password.h"
#include "seal.h"
#include "secmem.h"
#include "signstore.h"

/* enroll_or_renew - enroll or renew: a new generation issued by the org CA */
static int
enroll_or_renew(const struct kmilter_conf *conf, const struct opts *o,
    const char *addr, int renew)
{
	struct keymodel *km = NULL;
	X509 *ca = NULL;
	EVP_PKEY *cakey = NULL;
	char *pw = NULL;
	struct kmerr err;
	size_t pwlen = 0;
	enum km_status st;
	int gen = 0, rc = EX_FAIL;

	if (o->protect && renew) {
		kmctl_warn("renew: --protect is for enroll (see set-password)");
		return EX_USAGE_;
	}
	if (!o->protect && (o->pwfd >= 0 || o->pwfile != NULL)) {
		kmctl_warn("%s: a password is only read with --protect",
		    renew ? "renew" : "enroll");
		return EX_USAGE_;
	}
	if (o->protect && (pw = kmctl_get_password(o, 1, &pwlen)) == NULL)
		return EX_FAIL;
	if (kmctl_load_org_ca(conf, &ca, &cakey) != 0)
		goto out;
	if ((km = kmctl_open_km(conf)) == NULL)
		goto out;
	if (renew)
		st = keymodel_renew(km, addr, ca, cakey, o->keytype, o->days,
		    &gen, &err);
	else
		st = keymodel_enroll_protected(km, addr, ca, cakey, o->keytype,
		    o->days, pw, pwlen, &gen, &err);
	if (st != KM_OK) {
		kmctl_warn("%s %s: %s", renew ? "renew" : "enroll", addr,
		    err.msg);
		rc = kmctl_exit_for(st, &err);
		goto out;
	}
	printf("%s: generation %d is Active%s\n", addr, gen,
	    pw != NULL ? ", protection enhanced" : "");
	rc = kmctl_after_change(conf, addr);
out:
	secmem_free(pw, pw != NULL ? PW_MAX + 1 : 0);
	keymodel_free(km);
	X509_free(ca);
	EVP_PKEY_free(cakey);
	return rc;
}

/*
 * signing_follow - this gateway's signing key of addr (if it has one) at
 * the level the KM now has: protected by pw (set) or plain (clear).  The
 * other gateways' follow on their next use (docs/keymodel.md); so a
 * failure here is reported, not fatal: 0, or -1 when it failed.
 */
static int
signing_follow(const struct kmilter_conf *conf, const char *addr,
    const char *pw, size_t pwlen, int set)
{
	char path[PATH_MAX];
	struct seal_key *sk;
	struct kmerr err;
	enum km_status st;
	int changed = 0;

	if (signstore_seal_key_path(conf, path, sizeof(path)) != KM_OK ||
	    access(path, F_OK) != 0)
		return 0;		/* no gateway key: no signing keys */
	if ((sk = seal_key_load(path, &err)) == NULL) {
		kmctl_warn("%s: signing key on this gateway not changed: %s",
		    addr, err.msg);
		return -1;
	}
	st = signstore_rewrap(conf->state_dir, sk, addr, set ? NULL : pw,
	    set ? 0 : pwlen, set ? pw : NULL, set ? pwlen : 0, &changed,
	    &err);
	seal_key_free(sk);
	if (st != KM_OK && kmerr_is(&err, KMERR_NOTFOUND))
		return 0;		/* none here */
	if (st != KM_OK) {
		kmctl_warn("%s: signing key on this gateway not changed: %s",
		    addr, err.msg);
		return -1;
	}
	printf("%s: signing key on this gateway %s\n", addr, !changed ?
	    "already at that level" : set ? "protected" : "plain");
	return 0;
}

/* change_password - set-password (set 1) or clear-password (set 0): every
 * usable generation of addr re-escrowed at the other protection level,
 * and this gateway's signing key likewise */
static int
change_password(const struct kmilter_conf *conf, const struct opts *o,
    const char *addr, int set)
{
	struct keymodel *km = NULL;
	char *pw;
	struct kmerr err;
	size_t pwlen = 0;
	enum km_status st;
	int n = 0, rc, sfail = 0;

	if ((pw = kmctl_get_password(o, set, &pwlen)) == NULL)
		return EX_FAIL;
	if ((km = kmctl_open_km(conf)) == NULL) {
		secmem_free(pw, PW_MAX + 1);
		return EX_FAIL;
	}
	if (set)
		st = keymodel_set_password(km, addr, pw, pwlen, &n, &err);
	else
		st = keymodel_clear_password(km, addr, pw, pwlen, &n, &err);
	if (st == KM_OK)
		sfail = signing_follow(conf, addr, pw, pwlen, set);
	secmem_free(pw, PW_MAX + 1);
	keymodel_free(km);
	if (st != KM_OK) {
		if (n > 0)		/* some generations did change */
			kmctl_after_change(conf, addr);
		kmctl_warn("%s %s: %s", set ? "set-password" : "clear-password",
		    addr, err.msg);
		return kmctl_exit_for(st, &err);
	}
	rc = kmctl_after_change(conf, addr);	/* also when nothing changed */
	printf("%s: protection %s (%d generation%s changed)\n", addr,
	    set ? "enhanced" : "default", n, n == 1 ? "" : "s");
	return rc == EX_OK_ && sfail ? EX_FAIL : rc;
}

/* cmd_enroll - a first key pair for a1, issued by the organization CA;
 * with --from, for every address of a file (cmd_bulk.c) */
int
cmd_enroll(const struct kmilter_conf *conf, const struct opts *o,
    const char *a1, const char *a2)
{
	(void)a2;
	if (o->from != NULL)
		return cmd_enroll_bulk(conf, o);
	return enroll_or_renew(conf, o, a1, 0);
}

/* cmd_renew - a new generation for a1, the current one deactivated */
int
cmd_renew(const struct kmilter_conf *conf, const struct opts *o,
    const char *a1, const char *a2)
{
	(void)a2;
	return enroll_or_renew(conf, o, a1, 1);
}

/* cmd_set_password - a1's keys escrowed under a password */
int
cmd_set_password(const struct kmilter_conf *conf, const struct opts *o,
    const char *a1, const char *a2)
{
	(void)a2;
	return change_password(conf, o, a1, 1);
}

/* cmd_clear_password - a1's keys escrowed plain again */
int
cmd_clear_password(const struct kmilter_conf *conf, const struct opts *o,
    const char *a1, const char *a2)
{
	(void)a2;
	return change_password(conf, o, a1, 0);
}

/* cmd_revoke - revoke one generation, or all */
int
cmd_revoke(const struct kmilter_conf *conf, const struct opts *o,
    const char *addr, const char *genarg)
{
	struct keymodel *km;
	char *end;
	struct kmerr err;
	enum km_status st;
	long gen = 0;
	int n = 0, rc;

	(void)o;
	if (genarg != NULL) {
		errno = 0;
		gen = strtol(genarg, &end, 10);
		if (errno != 0 || *end != '\0' || gen < 1 ||
		    gen > KEYMODEL_GEN_MAX) {
			kmctl_warn("revoke: bad generation \"%s\"", genarg);
			return EX_USAGE_;
		}
	}
	if ((km = kmctl_open_km(conf)) == NULL)
		return EX_FAIL;
	st = keymodel_revoke(km, addr, (int)gen, &n, &err);
	keymodel_free(km);
	rc = n > 0 ? kmctl_after_change(conf, addr) : EX_OK_;
	if (st != KM_OK) {
		kmctl_warn("revoke %s: %s", addr, err.msg);
		return kmctl_exit_for(st, &err);
	}
	printf("%s: %d generation%s revoked\n", addr, n, n == 1 ? "" : "s");
	return rc;
}

/* cmd_import - a PKCS#12 (key + certificate) or a certificate alone */
int
cmd_import(const struct kmilter_conf *conf, const struct opts *o,
    const char *addr, const char *file)
{
	struct keymodel *km = NULL;
	unsigned char *buf;
	char *pw = NULL;
	struct kmerr err;
	size_t len, pwlen = 0;
	enum km_status st;
	int gen = 0, rc = EX_FAIL, is_p12;

	if ((buf = kmctl_read_file(file, &len)) == NULL)
		return EX_FAIL;
	if ((is_p12 = keymodel_p12_sniff(buf, len)))
		kmctl_legacy_providers();
	if (is_p12 && (o->pwfd >= 0 || o->pwfile != NULL) &&
	    (pw = kmctl_read_password(o, &pwlen)) == NULL)
		goto out;
	if (!is_p12 && (o->pwfd >= 0 || o->pwfile != NULL))
		kmctl_warn("%s is not PKCS#12: password ignored", file);
	if ((km = kmctl_open_km(conf)) == NULL)
		goto out;
	if (is_p12)
		st = keymodel_import_p12(km, addr, buf, len, pw ? pw : "",
		    pwlen, &gen, &err);
	else
		st = keymodel_import_cert(km, addr, buf, len, &gen, &err);
	if (st != KM_OK) {
		kmctl_warn("import %s: %s", addr, err.msg);
		rc = kmctl_exit_for(st, &err);
		goto out;
	}
	printf("%s: imported %s as generation %d\n", addr,
	    is_p12 ? "key and certificate" : "certificate", gen);
	rc = kmctl_after_change(conf, addr);
out:
	keymodel_free(km);
	secmem_free(pw, pw != NULL ? PW_MAX + 1 : 0);
	free(buf);
	return rc;
}
