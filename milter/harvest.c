/*
 * harvest.c - keep the encryption certificates correspondents send in
 * their verified signatures (see harvest.h).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certenc.h"
#include "clock.h"
#include "harvest.h"
#include "keymodel_cert.h"
#include "keymodel_harvest.h"
#include "keymodel_name.h"
#include "keystore_certcheck.h"
#include "keystore_harvest.h"
#include "log.h"
#include "policy.h"
#include "revcheck.h"

/*
 * What the KM said lately, so that a correspondent's every message does not
 * cost an administration scan: per certificate and address, a refusal or
 * "already there" for MEMO_MS; after a KM failure, no KM write at all for
 * BACKOFF_MS.
 */
#define MEMO_SLOTS	256
#define MEMO_MS		(600 * 1000)
#define BACKOFF_MS	(60 * 1000)

struct memo {
	char	 fp[96];
	char	 addr[KEYMODEL_ADDR_MAX + 1];
	int64_t	 until;
};

static struct memo memo[MEMO_SLOTS];
static int64_t km_backoff_until;
static pthread_mutex_t memo_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t write_mtx = PTHREAD_MUTEX_INITIALIZER;

/* memo_slot - the slot of a fingerprint (FNV-1a) */
static struct memo *
memo_slot(const char *f)
{
	uint32_t h = 2166136261u;

	for (; *f != '\0'; f++)
		h = (h ^ (unsigned char)*f) * 16777619u;
	return &memo[h % MEMO_SLOTS];
}

/* memo_recall - did the KM answer for this certificate and address
 * lately, or is the KM in back-off? */
static int
memo_recall(const char *f, const char *addr)
{
	struct memo *m = memo_slot(f);
	int64_t now = clock_ms();
	int r;

	pthread_mutex_lock(&memo_mtx);
	r = now < km_backoff_until || (now < m->until &&
	    strcmp(m->fp, f) == 0 && strcasecmp(m->addr, addr) == 0);
	pthread_mutex_unlock(&memo_mtx);
	return r;
}

/* memo_keep - remember a KM answer (backoff: the KM failed) */
static void
memo_keep(const char *f, const char *addr, int backoff)
{
	struct memo *m = memo_slot(f);

	pthread_mutex_lock(&memo_mtx);
	if (backoff)
		km_backoff_until = clock_ms() + BACKOFF_MS;
	else {
		snprintf(m->fp, sizeof(m->fp), "%s", f);
		snprintf(m->addr, sizeof(m->addr), "%s", addr);
		m->until = clock_ms() + MEMO_MS;
	}
	pthread_mutex_unlock(&memo_mtx);
}

/* harvest_forget - forget what the KM said (tests) */
void
harvest_forget(void)
{
	pthread_mutex_lock(&memo_mtx);
	memset(memo, 0, sizeof(memo));
	km_backoff_until = 0;
	pthread_mutex_unlock(&memo_mtx);
}

/* fp - a certificate's "AB:CD:..." SHA-256 fingerprint */
static const char *
fp(X509 *x, char *buf, size_t len)
{
	keymodel_cert_fingerprint(x, buf, len);
	return buf;
}

/* refuse - log one refusal */
static void
refuse(const char *qid, const char *addr, X509 *x, const char *why)
{
	char f[96];

	log_info("%s: harvest: refused %s sha256=%s: %s", qid, addr,
	    fp(x, f, sizeof(f)), why);
}

/* chain - does x chain to the trust store (the set as intermediates)? */
static enum km_status
chain(X509_STORE *trust, STACK_OF(X509) *set, X509 *x, struct kmerr *err)
{
	enum km_status st;

	if (trust == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "no trust store");
	if ((st = certenc_chain(x, set, trust, 0, err)) == KM_PERMFAIL)
		kmerr_prefix(err, "untrusted: ");
	return st;
}

/* check - may this candidate be stored?  KM_OK, else why in err */
static enum km_status
check(X509_STORE *trust, struct revcheck *rv, STACK_OF(X509) *set,
    const char *addr, X509 *x, struct kmerr *err)
{
	enum km_status st;

	if ((st = keystore_cert_check(x, addr, err)) != KM_OK ||
	    (st = chain(trust, set, x, err)) != KM_OK)
		return st;
	if ((st = revcheck_cert(rv, x, set, trust, err)) == KM_PERMFAIL)
		kmerr_prefix(err, "revoked: ");
	else if (st != KM_OK)
		kmerr_prefix(err, "revocation status unknown: ");
	return st;
}

/* newest_first - qsort: by notBefore, newest first */
static int
newest_first(const void *a, const void *b)
{
	X509 *x = *(X509 *const *)a, *y = *(X509 *const *)b;

	return ASN1_TIME_compare(X509_get0_notBefore(y),
	    X509_get0_notBefore(x));
}

/*
 * candidates - what encKeyPref names, else the end-entity certificates of
 * the set that name addr and can be encrypted to; newest first.  How many
 * in *n (at most HARVEST_SET_MAX)
 */
static void
candidates(const struct smime_signer_certs *sc, const char *addr,
    X509 **out, size_t *n)
{
	struct kmerr e;

	*n = 0;
	if (sc->pref != NULL) {
		out[(*n)++] = sc->pref;
		return;
	}
	for (int i = 0; i < sk_X509_num(sc->certs); i++) {
		X509 *x = sk_X509_value(sc->certs, i);

		if (X509_check_ca(x) == 0 && certenc_names(x, addr) &&
		    certenc_check(x, &e) == KM_OK)
			out[(*n)++] = x;
	}
	ERR_clear_error();
	qsort(out, *n, sizeof(*out), newest_first);
}

/* store_one - hand one checked certificate to store and log the outcome */
static int
store_one(const struct kmilter_conf *c, const char *qid, const char *addr,
    X509 *x, harvest_store_fn store, void *arg)
{
	struct keymodel_harvest_rules r = {
		.replace_imported = c->in_harvest_replace_imported,
		.max_per_address = c->in_harvest_max_per_address
	};
	struct kmerr e;
	char f[96];
	int gen = 0;
	enum km_status st;

	fp(x, f, sizeof(f));
	if (memo_recall(f, addr)) {
		log_debug(1, "%s: harvest: %s sha256=%s: decided lately, or "
		    "the KM is in back-off", qid, addr, f);
		return 0;
	}
	/* one KM write at a time in this process, and none waits for it:
	 * a correspondent's next message tries again */
	if (pthread_mutex_trylock(&write_mtx) != 0) {
		log_debug(1, "%s: harvest: %s sha256=%s: another harvest is "
		    "being written; skipped", qid, addr, f);
		return 0;
	}
	kmerr_clear(&e);
	st = store(arg, addr, x, &r, &gen, &e);
	pthread_mutex_unlock(&write_mtx);
	if (st == KM_PERMFAIL && (e.reason == KMERR_EXISTS ||
	    e.reason == KMERR_REFUSED))
		memo_keep(f, addr, 0);
	else if (st == KM_TEMPFAIL)
		memo_keep(f, addr, 1);
	if (st == KM_OK) {
		log_info("%s: harvest: stored %s sha256=%s generation %d", qid,
		    addr, f, gen);
		return 1;
	}
	if (st == KM_PERMFAIL && e.reason == KMERR_EXISTS)
		log_debug(1, "%s: harvest: %s sha256=%s: %s", qid, addr, f,
		    e.msg);
	else if (st == KM_PERMFAIL && e.reason == KMERR_REFUSED)
		refuse(qid, addr, x, e.msg);
	else
		log_warnx("%s: harvest: %s sha256=%s: not stored: %s "
		    "(the message goes on%s)", qid, addr, f, e.msg,
		    st == KM_TEMPFAIL ? "; no harvest for 60 s" : "");
	return 0;
}

/* harvest_signature - store what a verified signature carries for addr */
int
harvest_signature(const struct kmilter_conf *c, X509_STORE *trust,
    struct revcheck *rv, const char *qid, const char *addr,
    const struct smime_signer_certs *sc, harvest_store_fn store, void *arg)
{
	X509 *cand[HARVEST_SET_MAX], *ok[HARVEST_SET_MAX];
	size_t n = 0, nok = 0, i;
	struct kmerr e;
	char why[160];
	int stored = 0;

	if (!c->in_harvest || sc->certs == NULL || addr == NULL ||
	    *addr == '\0')
		return 0;
	if (policy_domain_internal(c, addr)) {
		/* our own users' certificates come from the KM, not the mail */
		log_debug(1, "%s: harvest: %s is internal: not harvested", qid,
		    addr);
		return 0;
	}
	if (sk_X509_num(sc->certs) > HARVEST_SET_MAX) {
		log_info("%s: harvest: refused %s: the signature carries %d "
		    "certificates (more than %d are not looked into)", qid,
		    addr, sk_X509_num(sc->certs), HARVEST_SET_MAX);
		return 0;
	}
	candidates(sc, addr, cand, &n);
	for (i = 0; i < n; i++) {
		kmerr_clear(&e);
		if (i >= (size_t)c->in_harvest_max_per_message) {
			snprintf(why, sizeof(why), "more than %d certificates "
			    "for %s in one message "
			    "(harvest_max_per_message)",
			    c->in_harvest_max_per_message, addr);
			refuse(qid, addr, cand[i], why);
		} else if (check(trust, rv, sc->certs, addr, cand[i],
		    &e) != KM_OK)
			refuse(qid, addr, cand[i], e.msg);
		else
			ok[nok++] = cand[i];
	}
	while (nok > 0)		/* oldest first: the newest ends up current */
		stored += store_one(c, qid, addr, ok[--nok], store, arg);
	return stored;
}

/* harvest_store_keystore - the milter's store: keystore_harvest() */
enum km_status
harvest_store_keystore(void *arg, const char *addr, X509 *cert,
    const struct keymodel_harvest_rules *r, int *generation,
    struct kmerr *err)
{
	return keystore_harvest(arg, addr, cert, r, generation, err);
}
