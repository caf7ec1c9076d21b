/*
 * cmd_gateway.c - kmctl's commands for this gateway's own keys: keygen
 * (the gateway key that seals the caches and the signing keys),
 * signing-enroll (protected by the user's password at level enhanced).
 * See cmd.h and kmctl.8.
 */
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "conf.h"
#include "keymodel.h"
#include "keymodel_ban.h"
#include "keymodel_cert.h"
#include "keymodel_protect.h"
#include "kmctl.h"
#include "kmctl_password.h"
#include "seal.h"
#include "secmem.h"
#include "signstore.h"

/* ensure_seal_key - load the gateway key, creating it when missing */
static struct seal_key *
ensure_seal_key(const struct kmilter_conf *conf, int create, int *created)
{
	char path[PATH_MAX];
	struct kmerr err;
	struct seal_key *sk;

	*created = 0;
	if (signstore_seal_key_path(conf, path, sizeof(path)) != KM_OK) {
		kmctl_warn("no cache.seal_key_file and no milter.state_dir");
		return NULL;
	}
	if (create && access(path, F_OK) != 0 && errno == ENOENT) {
		if (conf->state_dir[0] != '\0' &&
		    mkdir(conf->state_dir, 0700) != 0 && errno != EEXIST) {
			kmctl_warn("%s: %s", conf->state_dir, strerror(errno));
			return NULL;
		}
		if (seal_key_create(path, &err) != KM_OK) {
			kmctl_warn("%s", err.msg);
			return NULL;
		}
		*created = 1;
	}
	if ((sk = seal_key_load(path, &err)) == NULL)
		kmctl_warn("%s", err.msg);
	return sk;
}

/* cmd_keygen - create the gateway key file if it is missing */
int
cmd_keygen(const struct kmilter_conf *conf, const struct opts *o,
    const char *a1, const char *a2)
{
	struct seal_key *sk;
	char path[PATH_MAX];
	int created;

	(void)o;
	(void)a1;
	(void)a2;
	if ((sk = ensure_seal_key(conf, 1, &created)) == NULL)
		return EX_FAIL;
	seal_key_free(sk);
	signstore_seal_key_path(conf, path, sizeof(path));
	printf("%s: %s\n", path, created ? "created" : "exists, kept");
	return EX_OK_;
}

/*
 * may_replace - addr has no signing key, or the administrator agrees to
 *	replace it: --yes (or --force), or "y" typed at the question when
 *	stdin is a terminal.  Without either it is kept.
 */
static int
may_replace(const struct kmilter_conf *conf, const struct opts *o,
    const struct seal_key *sk, const char *addr)
{
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	unsigned char *enc = NULL;
	size_t enclen = 0;
	char fp[96], answer[16];
	struct kmerr err;

	/* a key protected by the user's password is one too */
	if (signstore_open(conf->state_dir, sk, addr, &cert, &key, &enc,
	    &enclen, NULL, &err) != KM_OK)
		return 1;		/* none (or unreadable): enroll */
	keymodel_cert_fingerprint(cert, fp, sizeof(fp));
	X509_free(cert);
	EVP_PKEY_free(key);
	free(enc);
	if (o->yes || o->force)
		return 1;
	if (!isatty(STDIN_FILENO)) {
		kmctl_warn("signing-enroll: %s already has a signing key (sha256 %s): "
		    "kept; --yes replaces it", addr, fp);
		return 0;
	}
	fprintf(stderr, "kmctl: %s already has a signing key (sha256 %s).\n"
	    "Replace it? [y/N] ", addr, fp);
	if (fgets(answer, sizeof(answer), stdin) != NULL &&
	    (strcmp(answer, "y\n") == 0 || strcmp(answer, "yes\n") == 0))
		return 1;
	kmctl_warn("signing-enroll: %s: kept", addr);
	return 0;
}

/*
 * user_password - for a user at level enhanced, the protection password
 * (--password-fd/--password-file or the terminal), checked against the
 * escrowed key: the signing key is made protected by it.  0 with *pw NULL
 * for a user at level default (or no KM: the milter protects the key on
 * its first use if the level says so), -1 when it cannot be had.
 */
static int
user_password(const struct kmilter_conf *conf, const struct opts *o,
    const char *addr, char **pw, size_t *pwlen)
{
	struct keymodel *km;
	struct keymodel_gen *g = NULL;
	struct kmerr err;
	size_t n = 0, i;
	int enhanced = 0, rc = 0;

	*pw = NULL;
	if (conf->km_nservers == 0 || (km = kmctl_open_km(conf)) == NULL)
		return 0;
	if (keymodel_decryption_keys(km, addr, &g, &n, &err) != KM_OK) {
		keymodel_free(km);
		return 0;		/* not enrolled (or not now): plain */
	}
	for (i = 0; i < n; i++)
		enhanced |= g[i].enhanced;
	if (enhanced && (*pw = kmctl_get_password(o, 0, pwlen)) == NULL) {
		kmctl_warn("signing-enroll: %s is at protection level enhanced: "
		    "its signing key needs the protection password", addr);
		rc = -1;
	} else if (enhanced && keymodel_password_opens(g, n, *pw, *pwlen) != 1) {
		kmctl_warn("signing-enroll: %s: wrong password", addr);
		rc = -1;
	}
	if (rc != 0) {
		secmem_free(*pw, *pw != NULL ? PW_MAX + 1 : 0);
		*pw = NULL;
	}
	keymodel_gens_free(g, n);
	keymodel_free(km);
	return rc;
}

/* cmd_signing_enroll - this gateway's signing key and certificate */
int
cmd_signing_enroll(const struct kmilter_conf *conf, const struct opts *o,
    const char *addr, const char *a2)
{
	struct keymodel *km = NULL;
	struct seal_key *sk = NULL;
	X509 *ca = NULL, *cert = NULL;
	EVP_PKEY *cakey = NULL, *key = NULL;
	unsigned char *enc = NULL;
	char fp[96], *pw = NULL;
	struct kmerr err;
	size_t enclen = 0, pwlen = 0;
	enum km_status st;
	int created, made, rc = EX_FAIL;

	(void)a2;
	if (user_password(conf, o, addr, &pw, &pwlen) != 0)
		return EX_FAIL;
	if (kmctl_load_org_ca(conf, &ca, &cakey) != 0)
		goto out;
	if ((sk = ensure_seal_key(conf, 1, &created)) == NULL)
		goto out;
	if (mkdir(conf->state_dir, 0700) != 0 && errno != EEXIST) {
		kmctl_warn("%s: %s", conf->state_dir, strerror(errno));
		goto out;
	}
	if (!may_replace(conf, o, sk, addr))
		goto out;
	/* retired gateway, banned address: keymodel_ban.h */
	if ((km = kmctl_open_km(conf)) == NULL)
		goto out;
	if ((st = keymodel_signing_enroll(km, conf->gateway_name,
	    conf->state_dir, sk, addr, ca, cakey, o->keytype, o->days, pw,
	    pwlen, &made, &err)) != KM_OK ||
	    (st = signstore_open(conf->state_dir, sk, addr, &cert, &key, &enc,
	    &enclen, NULL, &err)) != KM_OK) {
		kmctl_warn("signing-enroll %s: %s", addr, err.msg);
		rc = kmctl_exit_for(st, &err);
		goto out;
	}
	keymodel_cert_fingerprint(cert, fp, sizeof(fp));
	/* what the file holds, as read back */
	printf("%s: signing certificate sha256 %s%s (recorded for gateway %s)\n",
	    addr, fp, enc != NULL ? ", key protected by the user's password" : "",
	    conf->gateway_name);
	/* a gateway may have cached "no signing key" */
	rc = kmctl_after_change(conf, addr);
out:
	keymodel_free(km);
	secmem_free(pw, pw != NULL ? PW_MAX + 1 : 0);
	free(enc);
	X509_free(cert);
	EVP_PKEY_free(key);
	seal_key_free(sk);
	X509_free(ca);
	EVP_PKEY_free(cakey);
	return rc;
}
