/*
 * cmd_keys.c - kmctl's commands that change a user's keys in the KM:
 * enroll, renew, set-password, clear-password (with this gateway's
 * signing key), revoke (--ban), unban, import, export, and retire-gateway.
 * See cmd.h and kmctl.8.
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
#include "keymodel_ban.h"
#include "keymodel_name.h"
#include "keymodel_p12.h"
#include "keymodel_protect.h"
#include "kmctl.h"
#include "kmctl_password.h"
#include "privfile.h"
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

/* ban - revoke --ban: the ban on both KM servers */
static int
ban(struct keymodel *km, const char *addr)
{
	struct kmerr err;
	enum km_status st;
	int added = 0;

	if ((st = keymodel_ban(km, addr, &added, &err)) != KM_OK) {
		kmctl_warn("revoke --ban %s: %s (nothing revoked; run it again)",
		    addr, err.msg);
		return kmctl_exit_for(st, &err);
	}
	printf("%s: %s\n", addr, added ? "banned from enrollment" :
	    "already banned");
	return EX_OK_;
}

/* cmd_revoke - revoke one generation, or all (--ban: and ban) */
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
	/* the ban first: no enrollment slips in between */
	if (o->ban && (rc = ban(km, addr)) != EX_OK_) {
		keymodel_free(km);
		return rc;
	}
	st = keymodel_revoke(km, addr, (int)gen, &n, &err);
	keymodel_free(km);
	rc = n > 0 || o->ban ? kmctl_after_change(conf, addr) : EX_OK_;
	if (st != KM_OK && !(o->ban && kmerr_is(&err, KMERR_NOTFOUND))) {
		kmctl_warn("revoke %s: %s", addr, err.msg);
		return kmctl_exit_for(st, &err);
	}
	printf("%s: %d generation%s revoked\n", addr, n, n == 1 ? "" : "s");
	return rc;
}

/* cmd_unban - lift revoke --ban */
int
cmd_unban(const struct kmilter_conf *conf, const struct opts *o,
    const char *addr, const char *a2)
{
	struct keymodel *km;
	struct kmerr err;
	enum km_status st;
	int changed = 0;

	(void)o;
	(void)a2;
	if ((km = kmctl_open_km(conf)) == NULL)
		return EX_FAIL;
	st = keymodel_unban(km, addr, &changed, &err);
	keymodel_free(km);
	if (st != KM_OK) {
		kmctl_warn("unban %s: %s (the ban holds until unban succeeds "
		    "on both KM servers)", addr, err.msg);
		return kmctl_exit_for(st, &err);
	}
	printf("%s: %s\n", addr, changed ? "ban lifted" : "was not banned");
	return kmctl_after_change(conf, addr);	/* negative entries go */
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

/* read_protection - --protection-password-fd/-file, in secmem (NULL and
 * *given 0 when neither option is there; NULL and *given 1 on error) */
static char *
read_protection(const struct opts *o, size_t *len, int *given)
{
	struct opts p = *o;

	*len = 0;
	*given = o->protfd >= 0 || o->protfile != NULL;
	if (!*given)
		return NULL;
	p.pwfd = o->protfd;
	p.pwfile = o->protfile;
	return kmctl_read_password(&p, len);
}

/* export_file - the PKCS#12 of key, cert and the org chain into o->p12 */
static int
export_file(const struct kmilter_conf *conf, const struct opts *o,
    const char *addr, EVP_PKEY *key, X509 *cert, const char *pw,
    size_t pwlen)
{
	STACK_OF(X509) *chain;
	unsigned char *der = NULL;
	struct kmerr err;
	size_t len = 0;
	enum km_status st;

	if ((chain = keymodel_read_chain(conf->org_ca_cert, &err)) == NULL) {
		kmctl_warn("export %s: %s", addr, err.msg);
		return EX_FAIL;
	}
	if ((st = keymodel_p12_build(key, cert, chain, addr, o->legacy, pw,
	    pwlen, &der, &len, &err)) == KM_OK)
		st = privfile_write(o->p12, der, len, &err);
	sk_X509_pop_free(chain, X509_free);
	OPENSSL_free(der);
	if (st != KM_OK) {
		kmctl_warn("export %s: %s", addr, err.msg);
		return EX_FAIL;
	}
	return EX_OK_;
}

/* cmd_export - a1's current key and certificate with the org chain as
 * PKCS#12 under a transport password; an enhanced key's protection
 * password is checked before anything is written */
int
cmd_export(const struct kmilter_conf *conf, const struct opts *o,
    const char *addr, const char *a2)
{
	struct keymodel *km = NULL;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	char *pw = NULL, *prot = NULL;
	struct kmerr err;
	size_t pwlen = 0, protlen = 0;
	enum km_status st;
	int rc = EX_FAIL, given, gen = 0;

	(void)a2;
	if ((prot = read_protection(o, &protlen, &given)) == NULL && given)
		return EX_FAIL;
	if ((pw = kmctl_get_named_password(o, 1, "transport password",
	    &pwlen)) == NULL)
		goto out;
	if ((km = kmctl_open_km(conf)) == NULL)
		goto out;
	if ((st = keymodel_export_key(km, addr, prot, protlen, &key, &cert,
	    &gen, &err)) != KM_OK) {
		kmctl_warn("export %s: %s%s", addr, err.msg,
		    kmerr_is(&err, KMERR_BADPASSWORD) && prot == NULL ?
		    " (--protection-password-fd or --protection-password-file)" :
		    "");
		rc = kmctl_exit_for(st, &err);
		goto out;
	}
	if ((rc = export_file(conf, o, addr, key, cert, pw, pwlen)) == EX_OK_)
		printf("%s: generation %d exported to %s%s\n", addr, gen, o->p12,
		    o->legacy ? " (legacy: AES-128-CBC, PBKDF2-HMAC-SHA1)" : "");
out:
	EVP_PKEY_free(key);
	X509_free(cert);
	keymodel_free(km);
	secmem_free(pw, pw != NULL ? PW_MAX + 1 : 0);
	secmem_free(prot, prot != NULL ? PW_MAX + 1 : 0);
	return rc;
}

/* retired_addr - an address whose signing certificate retire-gateway
 * revoked: every gateway drops what it cached for it */
static void
retired_addr(const char *addr, void *arg)
{
	const struct kmilter_conf *conf = arg;

	printf("revoked: signing certificate of %s\n", addr);
	kmctl_after_change(conf, addr);
}

/* cmd_retire_gateway - gateway a1 retired: its signing certificates
 * revoked in the KM, its name refused from now on */
int
cmd_retire_gateway(const struct kmilter_conf *conf, const struct opts *o,
    const char *gw, const char *a2)
{
	struct keymodel *km;
	struct kmerr err;
	enum km_status st;
	int n = 0;

	(void)o;
	(void)a2;
	if (!keymodel_gateway_name_ok(gw)) {
		kmctl_warn("retire-gateway: bad gateway name \"%s\"", gw);
		return EX_USAGE_;
	}
	if ((km = kmctl_open_km(conf)) == NULL)
		return EX_FAIL;
	st = keymodel_retire_gateway(km, gw, &n, retired_addr, (void *)conf,
	    &err);
	keymodel_free(km);
	if (st != KM_OK) {
		kmctl_warn("retire-gateway %s: %s (run it again)", gw, err.msg);
		return kmctl_exit_for(st, &err);
	}
	printf("gateway %s retired: %d signing certificate%s revoked\n", gw, n,
	    n == 1 ? "" : "s");
	return EX_OK_;
}
