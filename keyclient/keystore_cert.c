/*
 * keystore_cert.c - keystore_get_cert(): a user's current encryption
 * certificate through L1, L2 and the KM.  See keystore.h.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "keymodel_name.h"
#include "keystore.h"
#include "keystore_int.h"
#include "log.h"
#include "memcache.h"
#include "seal.h"
#include "secmem.h"

/*
 * An L1 certificate entry: the certificate and what the checks whose
 * answer never changes for it (keystore_cert_check_fixed: key usage, a
 * key CMS can encrypt to, the address named) said when it was stored, so
 * that a hit only checks the time.
 */
struct l1cert {
	X509		*cert;
	enum km_status	 fixed;
	struct kmerr	 err;		/* why, when fixed is not KM_OK */
};

/* l1cert_free - free an L1 entry (memcache free callback; NULL ok) */
static void
l1cert_free(void *p)
{
	struct l1cert *e = p;

	if (e != NULL) {
		X509_free(e->cert);
		free(e);
	}
}

/* l1cert_new - an L1 entry for norm's certificate c (taken over, also
 * on failure: NULL when out of memory) */
static struct l1cert *
l1cert_new(X509 *c, const char *norm)
{
	struct l1cert *e;

	if ((e = malloc(sizeof(*e))) == NULL) {
		X509_free(c);
		return NULL;
	}
	e->cert = c;
	kmerr_clear(&e->err);
	e->fixed = keystore_cert_check_fixed(c, norm, &e->err);
	return e;
}

/* l1cert_result - check the time, take the fixed checks' answer, and
 * hand out a reference */
static enum km_status
l1cert_result(const struct l1cert *e, const char *norm, X509 **cert,
    struct kmerr *err)
{
	enum km_status st;

	if ((st = keystore_cert_check_time(e->cert, norm, err)) != KM_OK)
		return st;
	if (e->fixed != KM_OK) {
		if (err != NULL)
			*err = e->err;
		return e->fixed;
	}
	X509_up_ref(e->cert);
	*cert = e->cert;
	return KM_OK;
}


/* ---- certificates ---- */

/* cert_from_l2 - addr's certificate from L2: KM_OK with *c (NULL when L2
 * has none usable: a bad one is deleted), KM_PERMFAIL on a negative entry
 * (remembered in L1) */
static enum km_status
cert_from_l2(struct keystore *ks, struct revc *rc, const char *norm,
    const char *hash, X509 **c, struct kmerr *err)
{
	unsigned char *buf = NULL;
	const unsigned char *p;
	size_t len = 0;
	int neg = 0;

	*c = NULL;
	(void)keystore_revc(ks, norm, hash, rc);
	if (keystore_l2_get(ks, rc, K_CERT, norm, hash, &buf, &len,
	    &neg) != KM_OK)
		return KM_OK;
	if (neg) {
		secmem_free(buf, len);
		bump(&ks->l2_hits);
		bump(&ks->negative_hits);
		if (ks->l1)
			memcache_put_negative(ks->l1, K_CERT, hash,
			    min_ms(ks->memory_ttl, ks->negative_ttl));
		return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no certificate for %s", norm);
	}
	p = buf;
	*c = d2i_X509(NULL, &p, (long)len);
	if (*c == NULL || p != buf + len) {
		X509_free(*c);
		*c = NULL;
		ERR_clear_error();
		log_warnx("keystore: %s: bad certificate in L2, deleted", norm);
		ks->be.l2_del(ks->be.arg, K_CERT, norm);
	} else
		bump(&ks->l2_hits);
	secmem_free(buf, len);
	return KM_OK;
}

/* cert_from_dirs - after the KM said "none": the directories' answer;
 * one that did not come is "none" for this lookup only (not cached) */
static enum km_status
cert_from_dirs(struct keystore *ks, const char *norm, X509 **c,
    int *cacheable, struct kmerr *err)
{
	enum km_status st;
	struct kmerr derr;

	*cacheable = 1;
	if (ks->be.dir_cert == NULL)
		return KM_PERMFAIL;
	kmerr_clear(&derr);
	st = ks->be.dir_cert(ks->be.arg, norm, c, &derr);
	if (st == KM_OK || st == KM_NOMEM) {
		if (st == KM_NOMEM)
			kmerr_set(err, st, KMERR_NONE, "%s", derr.msg);
		return st;
	}
	if (st != KM_PERMFAIL || !kmerr_is(&derr, KMERR_NOTFOUND)) {
		*cacheable = 0;
		log_warnx("keystore: %s: directory: %s", norm, derr.msg);
		return kmerr_set(err, KM_PERMFAIL, KMERR_UNREACHABLE,
		    "no certificate known for %s (directory: %s)", norm,
		    derr.msg);
	}
	return KM_PERMFAIL;
}

/* cert_from_km - addr's certificate from the KM, else from the
 * directories, kept in L2; a "none" is remembered in L2 and L1 */
static enum km_status
cert_from_km(struct keystore *ks, const struct revc *rc, const char *norm,
    const char *hash, X509 **c, struct kmerr *err)
{
	unsigned char *der = NULL;
	enum km_status st;
	int dl, cacheable = 1;

	if (!ks->has_km && ks->be.dir_cert == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "no KM configured");
	if (ks->has_km) {
		bump(&ks->km_fetches);
		st = ks->be.km_cert(ks->be.arg, norm, c, err);
	} else
		st = kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "no certificate for %s", norm);
	if (st == KM_PERMFAIL && kmerr_is(err, KMERR_NOTFOUND))
		st = cert_from_dirs(ks, norm, c, &cacheable, err);
	if (st == KM_PERMFAIL && !cacheable) {
		bump(&ks->misses);
		return KM_PERMFAIL;
	}
	if (st == KM_PERMFAIL) {
		bump(&ks->misses);
		keystore_l2_put(ks, rc, K_CERT, norm, NULL, 0, 1,
		    ks->negative_ttl);
		if (ks->l1)
			memcache_put_negative(ks->l1, K_CERT, hash,
			    min_ms(ks->memory_ttl, ks->negative_ttl));
		return KM_PERMFAIL;
	}
	if (st != KM_OK) {
		bump(&ks->km_errors);
		log_warnx("keystore: %s: KM: %s", norm, err != NULL ?
		    err->msg : km_status_name(st));
		return st;
	}
	if (ks->has_l2 && (dl = i2d_X509(*c, &der)) > 0) {
		keystore_l2_put(ks, rc, K_CERT, norm, der, (size_t)dl, 0,
		    ks->cert_ttl);
		OPENSSL_free(der);
	}
	return KM_OK;
}

/* keystore_get_cert - the current encryption certificate of addr */
enum km_status
keystore_get_cert(struct keystore *ks, const char *addr, X509 **cert,
    struct kmerr *err)
{
	char norm[KEYMODEL_ADDR_MAX + 1], hash[SEAL_HASH_HEXLEN + 1];
	struct memcache_ref *ref;
	struct l1cert *e;
	X509 *c = NULL;
	struct revc rc;
	enum km_status st;

	*cert = NULL;
	if ((st = keystore_prepare(ks, addr, norm, sizeof(norm), hash,
	    err)) != KM_OK)
		return st;
	if (keystore_l1_get(ks, K_CERT, hash, &ref) == KM_OK) {
		bump(&ks->l1_hits);
		if (memcache_is_negative(ref)) {
			bump(&ks->negative_hits);
			st = kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
			    "no certificate for %s", norm);
		} else
			st = l1cert_result(memcache_value(ref), norm, cert,
			    err);
		memcache_release(ref);
		return st;
	}
	memset(&rc, 0, sizeof(rc));
	if (ks->has_l2 && (st = cert_from_l2(ks, &rc, norm, hash, &c,
	    err)) != KM_OK)
		return st;
	if (c == NULL && (st = cert_from_km(ks, &rc, norm, hash, &c,
	    err)) != KM_OK)
		return st;
	if ((e = l1cert_new(c, norm)) == NULL)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	st = l1cert_result(e, norm, cert, err);
	if (ks->l1 == NULL || memcache_put(ks->l1, K_CERT, hash, e,
	    l1cert_free, min_ms(ks->memory_ttl, ks->cert_ttl)) != KM_OK)
		l1cert_free(e);
	return st;
}
