/*
 * kmctl_util.c - what kmctl's commands share: messages, exit codes, the
 * key model handle, the organization CA, the cache invalidation.  See
 * kmctl.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/provider.h>

#include "conf.h"
#include "keymodel.h"
#include "keystore.h"
#include "kmctl.h"

/* kmctl_warn - one "kmctl: ..." line on stderr */
void
kmctl_warn(const char *fmt, ...)
{
	va_list ap;

	fputs("kmctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* kmctl_exit_for - the exit code for a failed keymodel call */
int
kmctl_exit_for(enum km_status st, const struct kmerr *err)
{
	if (st == KM_TEMPFAIL)
		return EX_UNREACH;
	if (st == KM_PERMFAIL && kmerr_is(err, KMERR_NOTFOUND))
		return EX_NOTFOUND;
	return EX_FAIL;
}

/* kmctl_after_change - after the keys of addr changed (enroll, renew, revoke,
 * import, signing-enroll, flush): drop the cached entries in Redis and
 * publish the invalidation every running kmilter subscribes to */
int
kmctl_after_change(const struct kmilter_conf *conf, const char *addr)
{
	struct kmerr err;
	struct keystore *ks = keystore_new(conf, &err);
	enum km_status st;

	if (ks == NULL) {
		kmctl_warn("cache not invalidated for %s: %s", addr, err.msg);
		return EX_FAIL;
	}
	st = keystore_invalidate(ks, addr);
	keystore_free(ks);
	if (st != KM_OK) {
		kmctl_warn("cache invalidation for %s not published: %s (the "
		    "gateways keep their cached entries until they expire; run "
		    "kmctl flush %s again)", addr, km_status_name(st), addr);
		return st == KM_TEMPFAIL ? EX_UNREACH : EX_FAIL;
	}
	return EX_OK_;
}

/* kmctl_read_file - read a whole file (at most FILE_MAX bytes) */
unsigned char *
kmctl_read_file(const char *path, size_t *len)
{
	unsigned char *buf;
	FILE *f;
	size_t n;

	*len = 0;
	if ((f = fopen(path, "rb")) == NULL) {
		kmctl_warn("%s: %s", path, strerror(errno));
		return NULL;
	}
	if ((buf = malloc(FILE_MAX + 1)) == NULL) {
		fclose(f);
		kmctl_warn("out of memory");
		return NULL;
	}
	n = fread(buf, 1, FILE_MAX + 1, f);
	if (ferror(f) || n == 0 || n > FILE_MAX) {
		kmctl_warn("%s: %s", path, ferror(f) ? strerror(errno) :
		    n == 0 ? "empty file" : "file too large");
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	*len = n;
	return buf;
}

static OSSL_PROVIDER *providers[2];

/* unload_providers - at exit, before OpenSSL's own clean-up */
static void
unload_providers(void)
{
	for (int i = 1; i >= 0; i--)
		if (providers[i] != NULL)
			OSSL_PROVIDER_unload(providers[i]);
}

/*
 * kmctl_legacy_providers - OpenSSL's legacy provider beside the default
 * one, for the PKCS#12 files Windows and older NSS export (RC2-40, and
 * other pre-AES algorithms).  Only kmctl reads such files: the daemon
 * never loads it.  Loading "default" first keeps it: once a provider is
 * loaded by name, OpenSSL no longer loads the default one by itself.
 * Without the legacy module the import of such a file says so
 * (keymodel_p12.h); other files still import.
 */
void
kmctl_legacy_providers(void)
{
	static int done;

	if (done++)
		return;
	if ((providers[0] = OSSL_PROVIDER_load(NULL, "default")) == NULL ||
	    (providers[1] = OSSL_PROVIDER_load(NULL, "legacy")) == NULL)
		ERR_clear_error();
	atexit(unload_providers);
}

/* no_pass - PEM password callback that refuses (keys must be plain) */
static int
no_pass(char *buf, int size, int rw, void *u)
{
	(void)buf;
	(void)size;
	(void)rw;
	(void)u;
	return -1;
}

/* kmctl_load_org_ca - the organization CA certificate and key from the config */
int
kmctl_load_org_ca(const struct kmilter_conf *conf, X509 **cert, EVP_PKEY **key)
{
	FILE *f;

	*cert = NULL;
	*key = NULL;
	if (conf->org_ca_cert[0] == '\0' || conf->org_ca_key[0] == '\0') {
		kmctl_warn("km.org_ca_cert and km.org_ca_key must be set to "
		    "issue certificates");
		return -1;
	}
	if ((f = fopen(conf->org_ca_cert, "r")) == NULL) {
		kmctl_warn("%s: %s", conf->org_ca_cert, strerror(errno));
		return -1;
	}
	*cert = PEM_read_X509(f, NULL, no_pass, NULL);
	fclose(f);
	if (*cert == NULL) {
		ERR_clear_error();
		kmctl_warn("%s: not a PEM certificate", conf->org_ca_cert);
		return -1;
	}
	if ((f = fopen(conf->org_ca_key, "r")) == NULL) {
		kmctl_warn("%s: %s", conf->org_ca_key, strerror(errno));
		goto fail;
	}
	*key = PEM_read_PrivateKey(f, NULL, no_pass, NULL);
	fclose(f);
	if (*key == NULL) {
		ERR_clear_error();
		kmctl_warn("%s: not an unencrypted PEM private key",
		    conf->org_ca_key);
		goto fail;
	}
	return 0;
fail:
	X509_free(*cert);
	*cert = NULL;
	return -1;
}

/* kmctl_open_km - the key model handle, or NULL after a message */
struct keymodel *
kmctl_open_km(const struct kmilter_conf *conf)
{
	struct keymodel *km;
	struct kmerr err;

	if ((km = keymodel_new(conf, &err)) == NULL)
		kmctl_warn("%s", err.msg);
	return km;
}
